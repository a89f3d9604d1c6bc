"""The objects an Event is about, for --enrich: Deployments, ReplicaSets and Pods in the API test server,
linked by the controller ownerReferences their controllers write, and events about them."""
from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Harness, legacy_event
from tests.kubeapi import KubeAPI


def put(kube: KubeAPI, plural: str, name: str, *, owner: dict[str, Any] | None = None, ns: str = "default",
        labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "labels": labels or {},
                          "annotations": annotations or {}}
    if owner is not None:
        md["ownerReferences"] = [owner]
    return kube.put_object(plural, {"metadata": md, "spec": {"big": "x" * 2000}})


def ref(obj: dict[str, Any]) -> dict[str, Any]:
    """The controller ownerReference a controller writes into what it creates."""
    md = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def about(kube: KubeAPI, obj: dict[str, Any], reason: str = "BackOff", count: int = 1) -> dict[str, Any]:
    md = obj["metadata"]
    e = legacy_event(f"{md['name']}.{uuid.uuid4().hex[:8]}", ns=md.get("namespace") or "default", kind=obj["kind"],
                     reason=reason, count=count)
    e["involvedObject"].update(name=md["name"], uid=md["uid"], apiVersion=obj["apiVersion"])
    kube.put_event(e)
    return e


def chain(kube: KubeAPI, name: str = "web", labels: dict[str, str] | None = None) -> tuple[dict[str, Any], ...]:
    deploy = put(kube, "deployments", name)
    rs = put(kube, "replicasets", f"{name}-7d9f8", owner=ref(deploy))
    pod = put(kube, "pods", f"{name}-7d9f8-abc12", owner=ref(rs), labels=labels)
    return deploy, rs, pod


def enrich_run(h: Harness, *args: str) -> int:
    """A run with a budget that is not the subject of the test (the default 5 is sized for cost, not tests)."""
    budget = () if "--enrich-max-requests" in args else ("--enrich-max-requests", "100")
    return h.run("run", *args, *budget)
