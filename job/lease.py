"""The coordination.k8s.io/v1 Lease that keeps two runs from overlapping.

concurrencyPolicy: Forbid does not see Jobs made by hand (`kubectl create job --from`), so this
compare-and-swap on the Lease's resourceVersion is the only real lock.

Expiry is judged as renewTime + leaseDurationSeconds + a skew allowance against the local clock
(5 s, or the duration itself when that is shorter). client-go instead watches the record for a full
duration, which a short-lived job cannot afford; the allowance covers clocks that disagree a little.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any, Callable

from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from job.kube import KubeError, explain

log = logging.getLogger(__name__)
SKEW_S = 5.0


def micro_time(t: dt.datetime) -> str:
    """MicroTime needs exactly six fractional digits; isoformat() drops them at .000000."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Lease:
    def __init__(self, api: ApiClient, namespace: str, name: str, identity: str, duration_s: float,
                 clock: Callable[[], dt.datetime], timeout: float = 30.0) -> None:
        self.api = CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = max(int(round(duration_s)), 1)
        self.clock = clock
        self.timeout = timeout
        self.obj: dict[str, Any] | None = None
        self.lost = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def acquire(self) -> str | None:
        """Take the Lease; return None on success, or why another run holds it."""
        current = self._get()
        now = self.clock()
        if current is None:
            body = self._body(None, now, transitions=0)
            try:
                self.obj = self._call(self.api.create_namespaced_lease, self.namespace, body)
                return None
            except _Conflict:
                current = self._get()
                if current is None:
                    return f"{self.where} is being created by another run"
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        ends = self._expiry(spec)
        if holder and holder != self.identity and ends is not None and ends > now:
            return f"{self.where} is held by {holder} until {micro_time(ends)}"
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder != self.identity else 0)
        body = self._body(current, now, transitions)
        try:
            self.obj = self._call(self.api.replace_namespaced_lease, self.name, self.namespace, body)
        except _Conflict:
            return f"{self.where} was taken by another run a moment ago"
        if holder and holder != self.identity:
            log.warning("took over expired %s from %s", self.where, holder)
        return None

    def renew(self) -> bool:
        with self._lock:
            if self.obj is None or self.lost:
                return False
            body = json.loads(json.dumps(self.obj))
            body["spec"]["renewTime"] = micro_time(self.clock())
            try:
                self.obj = self._call(self.api.replace_namespaced_lease, self.name, self.namespace, body)
                return True
            except (_Conflict, KubeError) as exc:
                log.error("lost %s while renewing it: %s", self.where, exc)
                self.lost = True
                return False

    def still_held(self) -> bool:
        """Re-read the Lease right before saving: a checkpoint must never be written by a loser."""
        with self._lock:
            if self.obj is None or self.lost:
                return False
            try:
                current = self._get()
            except KubeError as exc:
                log.error("cannot confirm %s is still ours: %s", self.where, exc)
                return False
            held = bool(current) and (current.get("spec") or {}).get("holderIdentity") == self.identity
            if not held:
                self.lost = True
            return held

    def release(self) -> None:
        with self._lock:
            if self.obj is None or self.lost:
                return
            body = json.loads(json.dumps(self.obj))
            body["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1})
            try:
                self._call(self.api.replace_namespaced_lease, self.name, self.namespace, body)
            except (_Conflict, KubeError) as exc:
                log.warning("could not release %s (it expires on its own): %s", self.where, exc)
            self.obj = None

    def _expiry(self, spec: dict[str, Any]) -> dt.datetime | None:
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        if renewed is None:
            return None
        duration = int(spec.get("leaseDurationSeconds") or 0)
        return renewed + dt.timedelta(seconds=duration + min(SKEW_S, duration))

    def _body(self, current: dict[str, Any] | None, now: dt.datetime, transitions: int) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            },
        }

    def _get(self) -> dict[str, Any] | None:
        try:
            return self._call(self.api.read_namespaced_lease, self.name, self.namespace)
        except _NotFound:
            return None

    def _call(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                raise _NotFound() from None
            if exc.status == 409:
                raise _Conflict() from None
            hint = ""
            if exc.status == 403:
                hint = f" (grant get and update on leases/{self.name} in {self.namespace}, see cronjob.yaml)"
            raise KubeError(explain(exc, f"{self.where}") + hint) from None
        except HTTPError as exc:
            raise KubeError(f"{self.where}: cannot reach the Kubernetes API: {type(exc).__name__}") from None
        return json.loads(resp.data)


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    pass


class Renewer:
    """Renews the Lease every third of its duration while the run works."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-renewer", daemon=True)

    def __enter__(self) -> "Renewer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease.timeout + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.duration_s / 3):
            if not self.lease.renew():
                return
