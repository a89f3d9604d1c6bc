"""End to end: install, make real events, run the CronJob's Job, and read Loki's query API: every
(uid, count) the API server shows is in Loki exactly once; then again after the counts grow, after
a backfill, with two runs at once (one skips on the Lease), and with a pod deleted mid-run.

"Shows" means shown both before a run started and after it ended: an occurrence the API server
recorded while the run listed may or may not be in that run, and the next run must ship it."""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable

import pytest

from tests.e2e.drivers import Driver, Run
from tests.e2e.loki import occurrences


def selector(d: Driver, *, backfill: bool = False) -> str:
    streams = 'backfill=~".+"' if backfill else 'backfill=""'
    return f'{{job="loki-event-sync", cluster="{d.cluster}", namespace="{d.namespace}", {streams}}}'


def shipped_exactly_once(d: Driver, shown: set[tuple[str, int]], start_ns: int, *, backfill: bool = False) -> None:
    """Loki's regular (or backfill) streams hold each pair in SHOWN once, and nothing twice."""
    def problems() -> list[str]:
        seen = occurrences(d.loki_url, selector(d, backfill=backfill), start_ns)
        missing = sorted(p for p in shown if seen[p] == 0)
        twice = sorted(p for p, n in seen.items() if n > 1)
        return [f"missing {missing}"] * bool(missing) + [f"more than once {twice}"] * bool(twice)
    give_up = time.monotonic() + d.patience_s
    while (found := problems()) and time.monotonic() < give_up:
        time.sleep(2)
    assert not found, found


def observed(d: Driver, run: Callable[[], Run]) -> tuple[Run, set[tuple[str, int]]]:
    before = d.visible()
    result = run()
    return result, before & d.visible()


@pytest.mark.parametrize("method", ["chart", "kustomize"])
def test_every_occurrence_the_api_server_shows_is_in_loki_exactly_once(driver: Driver, method: str) -> None:
    d = driver
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)
    start_ns = int(start.timestamp()) * 10**9
    d.install(method)
    d.make_events()

    first, shown = observed(d, d.run)
    assert first.succeeded, first.log
    assert shown, "no events to ship: the driver made none"
    shipped_exactly_once(d, shown, start_ns)

    d.bump_counts()
    again, bumped = observed(d, d.run)
    assert again.succeeded, again.log
    assert bumped - shown, "bump_counts changed no count"
    shipped_exactly_once(d, shown | bumped, start_ns)

    backfill, window = observed(d, lambda: d.backfill(start))
    assert backfill.succeeded, backfill.log
    shipped_exactly_once(d, window, start_ns, backfill=True)
    shipped_exactly_once(d, shown | bumped, start_ns)  # the regular streams got nothing more

    a, b = d.run_two_at_once()
    assert a.succeeded and b.succeeded, a.log + b.log
    if d.overlap_guaranteed:
        assert [a.skipped, b.skipped].count(True) == 1, a.log + b.log

    midway = d.run_deleting_a_pod_midway()
    assert midway.succeeded, midway.log
    final, last = observed(d, d.run)
    assert final.succeeded, final.log
    shipped_exactly_once(d, shown | bumped | last, start_ns)

    kept = d.uninstall()
    expect_kept = method == "chart"  # helm.sh/resource-policy: keep; kubectl delete removes all
    assert kept == {"Lease": expect_kept, "ConfigMap": expect_kept}


def test_both_drivers_are_the_same_driver_to_the_scenario() -> None:
    # The cluster driver cannot run here; mypy checks it against the interface through this test.
    from tests.e2e.cluster import ClusterDriver
    from tests.e2e.local import LocalDriver

    drivers: list[type[Driver]] = [LocalDriver, ClusterDriver]
    for cls in drivers:
        for name in ("install", "make_events", "bump_counts", "visible", "run", "backfill", "run_two_at_once",
                     "run_deleting_a_pod_midway", "uninstall", "overlap_guaranteed", "patience_s"):
            assert hasattr(cls, name), (cls.__name__, name)


def test_the_e2e_workflow_runs_this_suite_on_kind_for_the_oldest_and_newest_minor_with_a_pinned_loki() -> None:
    # The workflow cannot run here: its shape, and the Loki it deploys, are checked instead.
    import re
    from pathlib import Path

    import kubernetes_validate
    import yaml

    from tests.manifests import K8S_VERSIONS

    root = Path(__file__).resolve().parents[2]
    wf = yaml.safe_load((root / ".github" / "workflows" / "e2e.yml").read_text(encoding="utf-8"))
    assert {"pull_request", "schedule"} <= set(wf[True])
    (job,) = wf["jobs"].values()
    matrix = job["strategy"]["matrix"]["include"]
    assert tuple(m["minor"] for m in matrix) == K8S_VERSIONS
    for m in matrix:
        assert re.fullmatch(rf"kindest/node:v{re.escape(m['minor'])}\.\S+@sha256:[0-9a-f]{{64}}", m["node"]), m
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    for needle in ("kind load docker-image loki-event-sync:e2e", "kubectl apply -f tests/e2e/loki.yaml",
                   "python -m pytest tests/e2e"):
        assert needle in runs, needle
    env = next(s["env"] for s in job["steps"] if "pytest tests/e2e" in s.get("run", ""))
    assert {"E2E_KUBECONFIG", "E2E_LOKI_URL", "E2E_LOKI_PUSH_URL", "E2E_IMAGE"} <= set(env)
    loki = [d for d in yaml.safe_load_all((root / "tests" / "e2e" / "loki.yaml").read_text(encoding="utf-8")) if d]
    for doc in loki:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    (deployment,) = [d for d in loki if d["kind"] == "Deployment"]
    (image,) = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert re.fullmatch(r"docker\.io/grafana/loki:\d+\.\d+\.\d+", image)
