"""Real-shaped events for the benchmark: about 1.2 KB each as the API returns them, managedFields included."""
from __future__ import annotations

import random
import time
import uuid
from typing import Any

_REASONS = [
    ("Warning", "BackOff", "Back-off restarting failed container {c} in pod {p}_{ns}({u})"),
    ("Normal", "Pulled", 'Successfully pulled image "registry.example.com/team/{c}:v1.{i}" in 1.{i}s'
                         " (1.{i}s including waiting). Image size: 48213{i} bytes."),
    ("Warning", "Unhealthy", "Readiness probe failed: Get \"http://10.42.{i}.7:8080/healthz\": context deadline"
                             " exceeded (Client.Timeout exceeded while awaiting headers)"),
    ("Normal", "Scheduled", "Successfully assigned {ns}/{p} to node-{i}"),
    ("Warning", "FailedScheduling", "0/12 nodes are available: 3 Insufficient memory, 9 node(s) didn't match"
                                    " Pod's node affinity/selector. preemption: 0/12 nodes are available:"
                                    " 12 No preemption victims found for incoming pod."),
]


def _t(ts: float, micro: bool = False) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{base}.{int(ts * 1e6) % 1_000_000:06d}Z" if micro else base + "Z"


def make_event(i: int, now: float) -> dict[str, Any]:
    ns = f"team-{i % 40}"
    pod = f"svc-{i % 977}-7d9f8b6c5-{i:05x}"
    typ, reason, msg = _REASONS[i % len(_REASONS)]
    t = now - (i * 7919 % 3300)  # spread over the last 55 minutes, in no particular order
    message = msg.format(c=f"app{i % 13}", p=pod, ns=ns, u=uuid.UUID(int=i), i=i % 97)
    uid = str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4))
    meta = {
        "name": f"{pod}.{i:016x}", "namespace": ns, "uid": uid, "resourceVersion": str(1000 + i),
        "creationTimestamp": _t(t - 60),
        "managedFields": [{
            "manager": "kubelet" if i % 2 else "deployment-controller", "operation": "Update", "apiVersion": "v1",
            "time": _t(t), "fieldsType": "FieldsV1",
            "fieldsV1": {"f:count": {}, "f:firstTimestamp": {}, "f:involvedObject": {}, "f:lastTimestamp": {},
                         "f:message": {}, "f:reason": {}, "f:reportingComponent": {}, "f:reportingInstance": {},
                         "f:source": {"f:component": {}, "f:host": {}}, "f:type": {}},
        }],
    }
    obj = {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns,
           "uid": str(uuid.UUID(int=i + 10**9)), "resourceVersion": str(5000 + i)}
    if i % 4 == 3:  # new recorder: eventTime, series, no count
        obj["kind"] = "Deployment"
        return {"metadata": meta, "involvedObject": obj, "reason": reason, "message": message,
                "source": {}, "firstTimestamp": None, "lastTimestamp": None, "type": typ,
                "eventTime": _t(t - 120, micro=True), "action": "Reconcile",
                "series": {"count": 2 + i % 5, "lastObservedTime": _t(t, micro=True)},
                "reportingComponent": "deployment-controller", "reportingInstance": f"kcm-{i % 3}"}
    obj["fieldPath"] = f"spec.containers{{app{i % 13}}}"
    return {"metadata": meta, "involvedObject": obj, "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": f"node-{i % 50}"},
            "firstTimestamp": _t(t - 600), "lastTimestamp": _t(t), "count": 1 + i % 9, "type": typ,
            "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": f"node-{i % 50}"}
