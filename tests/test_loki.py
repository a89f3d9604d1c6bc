"""Pushing options end to end: auth and tenancy, line formats, truncation, structured metadata, filters."""
from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

from state import Checkpoint
from job.dedupe import Ledger
from job.checkpointing import fit as _fit
from job.summary import Summary
from tests.conftest import Harness, legacy_event
from tests.lokidouble import LokiDouble


def _run_against(h: Harness, loki: LokiDouble, *extra: str, env: dict[str, str] | None = None) -> int:
    args = h.args("run", *extra)
    args[args.index("--loki-url") + 1] = loki.url
    return h.run(raw=args, env=env)


def test_basic_auth_and_tenant_reach_a_gateway_that_demands_them(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1"))
    with LokiDouble(basic_auth=("bob", "s3cret-pw"), tenant_required=True) as gateway:
        assert _run_against(h, gateway, "--tenant", "team-a") == 1  # no credentials: 401
        assert "401" in h.stderr and "--loki-username" in h.stderr
        env = {"LOKI_EVENT_SYNC_LOKI_USERNAME": "bob", "LOKI_EVENT_SYNC_LOKI_PASSWORD": "s3cret-pw"}
        assert _run_against(h, gateway, "--tenant", "team-a", env=env) == 0
        assert len(gateway.entries()) == 1 and gateway.tenants_seen == {"team-a"}
        assert "s3cret-pw" not in h.stderr and "team-a" not in h.stderr


def test_bearer_token_file_is_read_for_each_push(h: Harness, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    h.kube.put_event(legacy_event("a.1"))
    with LokiDouble(bearer_token="second-token") as gateway:
        assert _run_against(h, gateway, "--loki-bearer-token-file", str(token)) == 1
        token.write_text("second-token\n")  # a projected token rotated between runs
        assert _run_against(h, gateway, "--loki-bearer-token-file", str(token)) == 0
        assert len(gateway.entries()) == 1


def test_insecure_tls_is_announced_loudly(h: Harness) -> None:
    assert h.run("run", "--insecure-skip-tls-verify") == 0
    assert any(r["level"] == "warning" and "TLS verification of Loki is OFF" in r["msg"] for r in h.logs())


def test_logfmt_lines_carry_the_same_fields(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1", message='said "hi" = ok', count=3))
    assert h.run("run", "--line-format", "logfmt") == 0
    (entry,) = h.loki.entries()
    assert entry.line.startswith("type=Normal reason=Started kind=Pod namespace=default name=a")
    assert 'message="said \\"hi\\" = ok"' in entry.line and " count=3 new=3 " in entry.line


def test_a_line_over_the_limit_is_truncated_with_a_marker_not_dropped(h: Harness) -> None:
    h.kube.put_event(legacy_event("big.1", message="x" * 5000 + "é" * 100))
    assert h.run("run", "--max-line-bytes", "2048") == 0
    (entry,) = h.loki.entries()
    line = json.loads(entry.line)
    assert len(entry.line.encode()) <= 2048 and "[truncated " in line["message"]
    assert h.summary()["truncated"] == 1 and h.summary()["rejected"] == 0


def test_structured_metadata_holds_name_uid_reason_and_node(h: Harness) -> None:
    e = h.kube.put_event(legacy_event("a.1"))
    assert h.run("run", "--structured-metadata") == 0
    (entry,) = h.loki.entries()
    assert entry.metadata == {"name": "a", "uid": e["metadata"]["uid"], "reason": "Started", "node": "node-1",
                              "api_version": "v1"}


def test_client_side_filters_include_and_exclude_by_regex(h: Harness) -> None:
    h.kube.put_event(legacy_event("a.1", ns="kube-system", type_="Warning"))
    h.kube.put_event(legacy_event("b.1", ns="shop", type_="Warning"))
    h.kube.put_event(legacy_event("c.1", ns="shop", type_="Normal", reason="Pulled"))
    assert h.run("run", "--exclude-namespaces", "kube-.*", "--include-types", "Warning|Normal",
                 "--exclude-reasons", "Pulled") == 0
    assert [json.loads(e.line)["name"] for e in h.loki.entries()] == ["b"]
    assert h.summary()["filtered"] == 2


class _SmallStore:
    name = "configmap://test/small"
    max_bytes = 200_000


def test_size_limit_prunes_oldest_first_and_moves_the_horizon() -> None:
    cp = Checkpoint()
    ledger = Ledger(cp, ttl_s=3600)
    base = 1_795_600_000
    rnd = random.Random(7)
    for i in range(20_000):  # random uids: they do not compress, as in a real cluster
        ledger.consider(str(uuid.UUID(int=rnd.getrandbits(128), version=4)), 1, (base + i % 3000) * 10**9)
    s = Summary()
    data = _fit(cp, ledger, _SmallStore(), s)  # type: ignore[arg-type]
    assert len(data) <= _SmallStore.max_bytes - 4096
    assert s.pruned > 0 and s.ledger == len(cp.ledger) < 20_000
    oldest_kept = min(t for _, t in cp.ledger.values())
    assert cp.prune_horizon_ns <= oldest_kept * 10**9
    # An event older than the horizon is never re-shipped, even though the ledger forgot it.
    assert ledger.consider("00000000-0000-4000-8000-000000000000", 1, base * 10**9).why == "before-horizon"


def test_the_json_line_of_the_seed_example_is_stable_to_the_byte() -> None:
    from job.events import decode_page
    from job.lines import Formatter

    doc = json.loads((Path(__file__).resolve().parent.parent / "examples" / "events.json").read_text())
    page = decode_page(json.dumps({"items": doc["items"][:1]}).encode())
    (e, t_ns), = page.events
    fmt = Formatter(label_style="default", line_format="json", cluster="", max_line_bytes=261120,
                    structured_metadata=False)
    assert t_ns == 1602492665 * 10**9  # lastTimestamp 2020-10-12T08:51:05Z
    assert fmt.line(e, 61) == (
        '{"type":"Warning","reason":"Unhealthy","kind":"Pod","namespace":"kube-system",'
        '"name":"kubernetes-dashboard-556b9ff8f8-gf6lg","fieldPath":"spec.containers{kubernetes-dashboard}",'
        '"message":"Liveness probe failed: Get https://172.20.1.96:8443/: net/http: request canceled '
        '(Client.Timeout exceeded while awaiting headers)","component":"kubelet","host":"node2",'
        '"firstTimestamp":"2020-09-23T07:22:15Z","lastTimestamp":"2020-10-12T08:51:05Z","count":61,"new":61,'
        '"event":"kubernetes-dashboard-556b9ff8f8-gf6lg.163758b70d2070c1","uid":"270a4ca9-e24c-4a40-b7e2-784352fd51ac",'
        '"apiVersion":"v1","objectUID":"4f22e027-6a03-4ec1-8ce9-83850dd3d431"}'
    )
