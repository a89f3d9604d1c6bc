"""What --enrich owner,labels adds to a run at 10k events listed with 1.7k new, as ratios to the same run without it.

    python -m bench.enrich [--listed 10000] [--new 1700]

Real `python -m job run` children against the API test server (tests/kubeapi.py), pushing to a Loki
that discards. Every Pod event's involved object exists as a Pod owned by a ReplicaSet owned by a
Deployment (bench.events names 977 workloads), with labels and managedFields as a controller writes
them. One run ships the first listed - new events; its checkpoint is copied, the new events are
added, and the same run is measured from that checkpoint without --enrich, with it at the default
--enrich-max-requests, and with a budget large enough to enrich everything. CPU is the child's user
+ system time; requests are what the API server answered during the run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from bench.events import make_event
from bench.pages import DiscardSink
from tests.kubeapi import KubeAPI

NAMESPACE = "loki-event-sync"
ENRICH = ["--enrich", "owner,labels", "--enrich-labels", "app.kubernetes.io/name,team"]


def _managed(manager: str) -> list[dict[str, Any]]:
    return [{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2026-11-25T10:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}},
                                                   "f:spec": {"f:containers": {}}}}]


def _owner(kind: str, api_version: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def seed_workloads(kube: KubeAPI, events: list[dict[str, Any]]) -> int:
    """A Pod -> ReplicaSet -> Deployment chain for each Pod the events name; returns the objects made."""
    made = 0
    for e in events:
        o = e["involvedObject"]
        if o["kind"] != "Pod":
            continue
        ns, workload = o["namespace"], o["name"].split("-7d9f8b6c5-")[0]
        rs_name = f"{workload}-7d9f8b6c5"
        labels = {"app.kubernetes.io/name": workload, "team": ns, "pod-template-hash": "7d9f8b6c5"}
        if kube.get_object("deployments", ns, workload) is None:
            kube.put_object("deployments", {"metadata": {"name": workload, "namespace": ns, "uid": f"d-{ns}-{workload}",
                                                         "labels": labels, "managedFields": _managed("kubectl")}})
            kube.put_object("replicasets", {"metadata": {
                "name": rs_name, "namespace": ns, "uid": f"r-{ns}-{workload}", "labels": labels,
                "ownerReferences": [_owner("Deployment", "apps/v1", workload, f"d-{ns}-{workload}")],
                "managedFields": _managed("kube-controller-manager")}})
            made += 2
        kube.put_object("pods", {"metadata": {
            "name": o["name"], "namespace": ns, "uid": o["uid"], "labels": labels,
            "ownerReferences": [_owner("ReplicaSet", "apps/v1", rs_name, f"r-{ns}-{workload}")],
            "managedFields": _managed("kube-controller-manager")}, "spec": {"containers": [{"name": "app"}]}})
        made += 1
    return made


def measure(tmp: str, listed: int = 10_000, new: int = 1_700) -> dict[str, Any]:
    from bench.__main__ import _KubeFirstRequest, run_job

    now = time.time()
    with KubeAPI() as kube, DiscardSink() as sink:
        kube.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": "loki-event-sync", "namespace": NAMESPACE}, "spec": {}})
        old = [make_event(i, now) for i in range(listed - new)]
        kube.put_events(old)
        kc = kube.write_kubeconfig(os.path.join(tmp, "kc-enrich"), namespace=NAMESPACE)
        base = os.path.join(tmp, "cp-enrich-base")
        run_job(_KubeFirstRequest(kube), sink.url, kc, f"file://{base}")
        fresh = [make_event(listed - new + i, now) for i in range(new)]
        kube.put_events(fresh)
        objects = seed_workloads(kube, old + fresh)
        runs: dict[str, dict[str, Any]] = {}
        for name, extra in (("without", []), ("default budget", ENRICH),
                            ("unlimited budget", [*ENRICH, "--enrich-max-requests", "100000"])):
            state = os.path.join(tmp, f"cp-enrich-{len(runs)}")
            shutil.copy(base, state)
            before = len(kube.requests)
            r = run_job(_KubeFirstRequest(kube), sink.url, kc, f"file://{state}", extra)
            runs[name] = {"cpu_s": r["cpu_s"], "api_requests": len(kube.requests) - before,
                          "lines": r["summary"]["lines"], "enriched": r["summary"]["enriched"],
                          "enrich_requests": r["summary"]["enrich_requests"],
                          "enrich_bytes": r["summary"]["enrich_bytes"]}
        kube.on_request = None
    plain = runs["without"]
    rows = []
    for name, r in runs.items():
        per_lookup = round(r["enrich_bytes"] / r["enrich_requests"]) if r["enrich_requests"] else 0
        rows.append({"run": name, **r, "cpu_ratio": round(r["cpu_s"] / plain["cpu_s"], 2),
                     "requests_ratio": round(r["api_requests"] / plain["api_requests"], 2),
                     "bytes_per_lookup": per_lookup})
    return {"listed": listed, "new": new, "objects": objects, "runs": rows}


COLUMNS = [("run", "--enrich owner,labels"), ("cpu_s", "CPU s"), ("cpu_ratio", "CPU ÷ without"),
           ("api_requests", "API requests"), ("requests_ratio", "requests ÷ without"), ("enriched", "enriched"),
           ("lines", "lines"), ("bytes_per_lookup", "bytes/lookup")]


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import table

    p = argparse.ArgumentParser(prog="python -m bench.enrich", description=__doc__.splitlines()[0])
    p.add_argument("--listed", type=int, default=10_000)
    p.add_argument("--new", type=int, default=1_700)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(tmp, args.listed, args.new)
    print(f"--enrich at {res['listed']} listed, {res['new']} new ({res['objects']} workload objects), "
          f"Python {sys.version.split()[0]}")
    print(table(res["runs"], COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
