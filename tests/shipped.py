"""What the real job pushes to Loki under each label style: the events every alert rule is about.

One run of `python -m job run` (through main(), against the API test server and the Loki double)
per label style ships one event per alert rule, a Normal event no rule should match, a gap marker
(the first run is dated two hours earlier) and a Loki reject. The dashboard's and the rules' tests
run their queries over exactly these entries, so a query naming a label or field the job does not
write finds nothing and fails.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import Harness, legacy_event, now, put_install
from tests.kubeapi import KubeAPI
from tests.lokidouble import LokiDouble

# (label style, line format, structured metadata): each label style with the line format it is
# documented with, and the two styles where structured metadata changes what is a label.
SETTINGS = [("default", "json", False), ("default", "json", True), ("seed", "seed", False),
            ("alloy", "alloy", False), ("alloy", "alloy", True)]
LINE_FORMAT = {"default": "json", "seed": "seed", "alloy": "alloy"}
REJECTED = "reject-this-line"


@dataclasses.dataclass(frozen=True)
class Item:
    """One entry: stream labels with structured metadata merged in, as Loki 3 queries see them."""

    labels: dict[str, str]
    line: str
    name: str  # the involved object's name (from its uid in the line), "" for the gap marker


@dataclasses.dataclass
class Shipped:
    items: list[Item]
    job_log: list[Item]  # the job's own log lines, labelled as a log agent would label its pod's logs

    def named(self, name: str) -> list[Item]:
        return [i for i in self.items if i.name == name]


def _event(name: str, *, kind: str, type_: str, reason: str, message: str, count: int, ns: str = "shop",
           host: str = "node-1") -> dict[str, Any]:
    e = legacy_event(f"{name}.{uuid.uuid4().hex[:8]}", count=count, ns=ns, kind=kind, type_=type_, reason=reason,
                     message=message)
    e["involvedObject"].update(name=name, uid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)))
    if kind == "Node":  # cluster-scoped: the event lives in default, the object in no namespace
        e["metadata"]["namespace"] = "default"
        e["involvedObject"].pop("namespace", None)
    e["source"]["host"] = host
    return e


# name -> the event; the rules' tests say which alert each one is for.
EVENTS: dict[str, dict[str, Any]] = {
    "web-crash": dict(kind="Pod", type_="Warning", reason="BackOff", count=5,
                      message="Back-off restarting failed container app in pod web-crash_shop(1234)"),
    "node-oom": dict(kind="Node", type_="Warning", reason="OOMKilling", count=1,
                     message="Memory cgroup out of memory: Killed process 4242 (python) total-vm:1024kB"),
    "web-pending": dict(kind="Pod", type_="Warning", reason="FailedScheduling", count=4,
                        message="0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are "
                                "available: 3 No preemption victims found for incoming pod."),
    "web-mount": dict(kind="Pod", type_="Warning", reason="FailedMount", count=2,
                      message='MountVolume.SetUp failed for volume "data" : secret "db" not found'),
    "web-image": dict(kind="Pod", type_="Warning", reason="Failed", count=3, message="Error: ImagePullBackOff"),
    "web-image-backoff": dict(kind="Pod", type_="Warning", reason="BackOff", count=2,
                              message='Back-off pulling image "registry.example.com/web:nope"'),
    "node-down": dict(kind="Node", type_="Normal", reason="NodeNotReady", count=1,
                      message="Node node-down status is now: NodeNotReady"),
    "web-fine": dict(kind="Pod", type_="Normal", reason="Pulled", count=1,
                     message='Successfully pulled image "registry.example.com/web:v1" in 1.2s'),
    "web-rejected": dict(kind="Pod", type_="Warning", reason="Unhealthy", count=1,
                         message=f"Readiness probe failed: {REJECTED}"),
}

_cache: dict[tuple[str, str, bool], Shipped] = {}


def shipped(style: str, line_format: str, structured_metadata: bool, tmp: Path) -> Shipped:
    key = (style, line_format, structured_metadata)
    if key not in _cache:
        _cache[key] = _ship(*key, tmp)
    return _cache[key]


def _ship(style: str, line_format: str, sm: bool, tmp: Path) -> Shipped:
    with KubeAPI() as kube, LokiDouble() as loki:
        put_install(kube)
        h = Harness(kube, loki, tmp)
        flags = ["--label-style", style, "--line-format", line_format, "--cluster", "prod",
                 *(["--structured-metadata"] if sm else [])]
        earlier = now() - dt.timedelta(hours=2)
        assert h.run("run", *flags, clock=lambda: earlier) == 0, h.stderr  # the last success, long ago
        uids = {}
        for name, spec in EVENTS.items():
            e = kube.put_event(_event(name, **spec))
            uids[e["involvedObject"]["uid"]] = name
        loki.reject_matching(REJECTED)
        assert h.run("run", *flags) == 0, h.stderr
        assert h.summary()["rejected"] == 1
        items = []
        for entry in loki.entries():
            name = next((n for u, n in uids.items() if u in entry.line), "")
            items.append(Item({**entry.labels, **(entry.metadata or {})}, entry.line, name))
        pod_labels = {"namespace": "loki-event-sync", "container": "loki-event-sync", "pod": "loki-event-sync-1"}
        job_log = [Item(pod_labels, line, "") for line in h.stderr.splitlines()]
    return Shipped(items, job_log)
