"""What `plan --from-cluster` costs, against a normal run at the same size (one `python -m bench` run).

It reads the checkpoint and lists every Event once, as a run does, but ships and saves nothing, so
its CPU must stay under a run's with nothing new (the cheapest run there is). Both are child
processes against the same API test server, start-up included.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.events import make_event
from bench.pages import DiscardSink
from tests.kubeapi import KubeAPI

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "loki-event-sync"
PAGE = 500
COLUMNS = [("n", "N"), ("first_run_cpu_s", "first run CPU s"), ("nothing_new_cpu_s", "run CPU s"),
           ("plan_cpu_s", "plan --from-cluster CPU s"), ("plan_vs_run", "÷ run"), ("met", "< run")]


def _cpu_s(args: list[str]) -> float:
    """CPU-s of one `python -m job` child (start-up included); a failure stops the benchmark."""
    proc = subprocess.Popen([sys.executable, "-m", "job", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # plan exits 1 for a schedule that is not safe
        raise SystemExit(f"python -m job {args[0]} failed:\n{err.decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def measure(n: int, tmp: str, repeat: int = 3) -> dict[str, Any]:
    """CPU-s of a first run, and the median of ``repeat`` runs with nothing new and of as many
    `plan --from-cluster`, alternated so both meet the same load, at n Events."""
    with KubeAPI() as kube, DiscardSink() as sink:
        kube.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": "loki-event-sync", "namespace": NAMESPACE}, "spec": {}})
        kube.put_events(make_event(i, time.time()) for i in range(n))
        kc = kube.write_kubeconfig(os.path.join(tmp, f"kc-plan-{n}"), namespace=NAMESPACE)
        common = ["--kubeconfig", kc, "--state", f"file://{tmp}/cp-plan-{n}", "--page-size", str(PAGE),
                  "--namespace", NAMESPACE]
        run = ["run", *common, "--loki-url", sink.url]
        first = _cpu_s(run)
        again, plan = [], []
        for _ in range(repeat):
            again.append(_cpu_s(run))
            plan.append(_cpu_s(["plan", "--from-cluster", *common, "--output", "json"]))
    return _row(n, first, statistics.median(again), statistics.median(plan))


def _row(n: int, first: float, again: float, plan: float) -> dict[str, Any]:
    return {"n": n, "first_run_cpu_s": round(first, 3), "nothing_new_cpu_s": round(again, 3),
            "plan_cpu_s": round(plan, 3), "plan_vs_run": round(plan / again, 2) if again else None,
            "met": "yes" if plan < again else "NO"}
