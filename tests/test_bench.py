"""The benchmark runs end to end at a small N, so it cannot rot; it asserts what it reports, never speed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import urllib3

from bench.__main__ import TARGETS, main
from bench.pages import DiscardSink, PageServer, fetch_pages
from tests.kubeapi import KubeAPI


@pytest.mark.timeout(300)
def test_benchmark_reports_every_figure_and_target_at_small_n(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["--sizes", "300", "--repeat", "1", "--ledger-entries", "2000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["lines"] == 300 and run["second_run_lines"] == 0 and run["plus_1k_lines"] == 1000
    for key in ("wall_s", "events_per_s", "cpu_s", "peak_rss_mb", "startup_s", "api_requests", "loki_requests",
                "bytes_raw", "bytes_sent", "checkpoint_bytes", "floor_per_s", "vs_floor", "loki_vs_floor",
                "naive_per_s", "second_run_cpu_s", "steady_ratio", "plus_1k_cpu_s"):
        assert run[key] > 0, key
    assert run["run_rss_mb"] < run["peak_rss_mb"]
    modes = {m["mode"]: m for m in run["api_modes"]}
    assert set(modes) == {"etcd", "cache (snapshot)", "cache (unpaginated)"}
    assert modes["etcd"]["etcd_lists"] >= 1 and modes["cache (snapshot)"]["etcd_lists"] == 0
    assert modes["cache (unpaginated)"]["list_requests"] == 1  # 1,300 events in one answer, limit ignored
    assert all(m["complete"] for m in modes.values())  # each follows a run that recorded its resourceVersion
    assert {r["option"] for r in result["imports"]} >= {"import kubernetes (the whole client)",
                                                          "the job's imports, lean client"}
    assert {t["target"] for t in result["targets"]} <= {what for _, what, _, _ in TARGETS}
    assert {r["store"] for r in result["ledger"]} == {"file", "configmap", "s3"}
    printed = capsys.readouterr().out
    assert "x floor" in printed and "--list-from" in printed and "import kubernetes" in printed


def test_page_server_serves_the_api_servers_pages_byte_for_byte_and_relays_the_rest() -> None:
    with KubeAPI() as kube:
        for i in range(7):
            kube.put_event({"metadata": {"name": f"e{i}", "namespace": "ns"}, "reason": "R"})
        kube.put_object("leases", {"metadata": {"name": "l", "namespace": "ns"}, "spec": {}})
        pages = fetch_pages(kube.url, 3)
        assert len(pages) == 3 and pages[""] == urllib3.request("GET", f"{kube.url}/api/v1/events?limit=3").data
        with PageServer(pages, kube.url) as server:
            http = urllib3.PoolManager()
            token, items = "", []
            while True:
                doc = json.loads(http.request("GET", f"{server.url}/api/v1/events",
                                              fields={"limit": "3", **({"continue": token} if token else {})}).data)
                items += doc["items"]
                token = doc["metadata"].get("continue", "")
                if not token:
                    break
            assert [i["metadata"]["name"] for i in items] == [f"e{i}" for i in range(7)]
            lease = http.request("GET", f"{server.url}/apis/coordination.k8s.io/v1/namespaces/ns/leases/l")
            assert lease.status == 200 and json.loads(lease.data)["metadata"]["name"] == "l"
            assert server.requests == 4


def test_discard_sink_accepts_a_push_and_keeps_only_its_size() -> None:
    with DiscardSink() as sink:
        resp = urllib3.request("POST", f"{sink.url}/loki/api/v1/push", body=b"x" * 100)
        assert resp.status == 204 and sink.requests == 1 and sink.bytes_received == 100


def test_the_test_servers_benchmark_reports_both_rates_at_small_n(tmp_path: Path) -> None:
    from bench import doubles

    out = tmp_path / "doubles.json"
    assert doubles.main(["--events", "300", "--limit", "50", "--batches", "2", "--batch-entries", "100",
                         "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"kubeapi_list_events_per_s", "loki_ingest_entries_per_s"}
    assert all(v > 0 for v in figures.values())
