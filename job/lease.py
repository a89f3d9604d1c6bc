"""The coordination.k8s.io/v1 Lease that keeps two runs from overlapping.

concurrencyPolicy: Forbid does not see Jobs made by hand (`kubectl create job --from`), so this
compare-and-swap on the Lease's resourceVersion is the only real lock.

Expiry is judged as renewTime + leaseDurationSeconds + a skew allowance against the local clock
(5 s, or the duration itself when that is shorter). client-go instead watches the record for a full
duration, which a short-lived job cannot afford; the allowance covers clocks that disagree a little.

The install creates the Lease; a missing one fails the run (exit 2: job/failure.py) with the command that creates it,
because the job's own namespace is a setting and a typo must not create Leases wherever it points.
Releasing writes holderIdentity "" and leaseDurationSeconds 1, as client-go does. SIGTERM can land
between sending the taking write and reading its answer; that write may have been applied, or may
still be applied after the run looked, so release() after such an acquire first writes at the version
the taking write was conditioned on (one of the two writes then gets 409), and clears the Lease when
a fresh read shows it is ours.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from urllib3.exceptions import HTTPError

from job.failure import RunFailed
from job.kube import ApiClient, ApiException, CoordinationV1Api, KubeError, explain, is_status, read_object

log = logging.getLogger(__name__)
SKEW_S = 5.0
# A renewal that fails for a transient reason (a 5xx, a timeout, the API server restarting) is retried
# until this share of the Lease's duration has passed since the last good renewal, as client-go's
# leader election retries until renewDeadline (10 s of a 15 s lease there): a third of the duration is
# left before anyone else may take it, so giving up then is still in time.
RENEW_DEADLINE_SHARE = 2 / 3
RETRY_SHARE = 2 / 15  # client-go's retryPeriod: 2 s of 15 s


def micro_time(t: dt.datetime) -> str:
    """MicroTime needs exactly six fractional digits; isoformat() drops them at .000000."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Decision:
    """What to do with a Lease as read: ``take`` it (free, expired or already ours), ``renew`` it (held
    by us), ``skip`` the run (another holds it), or it is ``lost`` (we held it, another holds it now)."""

    action: str
    transitions: int = 0  # leaseTransitions to write when taking
    why: str = ""


def decide(spec: dict[str, Any], identity: str, now: dt.datetime, held: bool, where: str = "the Lease") -> Decision:
    """The pure part of the Lease: no I/O, the clock given. tests/test_lease.py holds it to a table."""
    holder = str(spec.get("holderIdentity") or "")
    if held:
        if holder == identity:
            return Decision("renew")
        return Decision("lost", why=f"{where} is now held by {holder or 'nobody'}")
    ends = expiry(spec)
    if holder and holder != identity and ends is not None and ends > now:
        return Decision("skip", why=f"{where} is held by {holder} until {micro_time(ends)}")
    return Decision("take", int(spec.get("leaseTransitions") or 0) + (1 if holder != identity else 0))


def expiry(spec: dict[str, Any]) -> dt.datetime | None:
    """renewTime + leaseDurationSeconds + the skew allowance; None for a Lease never renewed."""
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    if renewed is None:
        return None
    duration = int(spec.get("leaseDurationSeconds") or 0)
    return renewed + dt.timedelta(seconds=duration + min(SKEW_S, duration))


def keep_trying(renewed: dt.datetime, now: dt.datetime, duration_s: float) -> bool:
    """Whether a renewal that failed for a transient reason may still be retried at ``now``."""
    return now < renewed + dt.timedelta(seconds=duration_s * RENEW_DEADLINE_SHARE)


def missing(where: str, namespace: str, name: str) -> str:
    body = json.dumps({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": namespace}}, separators=(",", ":"))
    return (f"{where} does not exist (or namespace {namespace} does not: check --namespace); "
            f"the job never creates it: `kubectl apply -f cronjob.yaml` creates the install, or create the "
            f"Lease alone with `kubectl create -f- <<<'{body}'`")


class Lease:
    """Acquire, renew, check and release one Lease by compare-and-swap.

    Every write is a JSON merge patch of spec fields alone, carrying metadata.resourceVersion as the
    precondition (a stale one gets 409, as a PUT would), so the labels and annotations GitOps tools
    and Helm put on the Lease are never touched. RBAC: get and patch on this resourceName; the Lease
    is created by the install, never here (create cannot be limited to one name).
    """

    def __init__(self, api: ApiClient, namespace: str, name: str, identity: str, duration_s: float,
                 clock: Callable[[], dt.datetime], timeout: float = 30.0) -> None:
        self.remote = LeaseAPI(api, namespace, name, timeout)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = max(round(duration_s), 1)
        self.clock = clock
        self.timeout = timeout
        self.obj: dict[str, Any] | None = None
        self.lost = False
        self.renewed = clock()  # when the last write of ours landed (the margin counts from it)
        # The resourceVersion the taking write is conditioned on, from the moment it is sent until its
        # answer is read. If the run is interrupted (SIGTERM) or the answer is lost in between, that
        # write may have landed, or may still land later: release() settles which (see there).
        self._pending: str | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def acquire(self) -> str | None:
        """Take the Lease; return None on success, or why another run holds it.

        A 409 on the taking write means the Lease changed since it was read: another run took it,
        or someone edited only its metadata (a GitOps sync). Read it again and decide again, a few
        times, instead of skipping the run for a label.
        """
        for _ in range(3):
            current = self.remote.get()
            if current is None:
                raise RunFailed(missing(self.where, self.namespace, self.name), "lease-missing")
            now = self.clock()
            spec = current.get("spec") or {}
            verdict = decide(spec, self.identity, now, held=False, where=self.where)
            if verdict.action == "skip":
                return verdict.why
            self._pending = str(current["metadata"]["resourceVersion"])
            try:
                self.obj = self.remote.patch(self._pending, {
                    "holderIdentity": self.identity, "leaseDurationSeconds": self.duration_s,
                    "acquireTime": micro_time(now), "renewTime": micro_time(now),
                    "leaseTransitions": verdict.transitions,
                })
            except _Conflict:
                self._pending = None  # a 409 is an answer: our write did not land
                continue
            except _NotFound:
                self._pending = None
                raise RunFailed(missing(self.where, self.namespace, self.name), "lease-missing") from None
            self._pending = None
            self.renewed = now
            if verdict.transitions > int(spec.get("leaseTransitions") or 0) and spec.get("holderIdentity"):
                log.warning("took over expired %s from %s", self.where, spec["holderIdentity"])
            return None
        return f"{self.where} kept changing while this run tried to take it; another run is taking it"

    def renew(self) -> str:
        """One renewal: "renewed", "retry" (a transient error inside the margin) or "lost"."""
        with self._lock:
            if self.obj is None or self.lost:
                return "lost"
            now = self.clock()
            try:
                self.obj = self.remote.patch_ours(self.obj, {"renewTime": micro_time(now)}, self.identity)
            except KubeError as exc:
                if keep_trying(self.renewed, self.clock(), self.duration_s):
                    log.warning("could not renew %s, retrying: %s", self.where, exc)
                    return "retry"
                log.error("lost %s: no renewal succeeded within %.0f s: %s", self.where,
                          self.duration_s * RENEW_DEADLINE_SHARE, exc)
            except (_Conflict, _NotFound) as exc:
                log.error("lost %s while renewing it: %s", self.where, exc)
            else:
                self.renewed = now
                return "renewed"
            self.lost = True
            return "lost"

    def still_held(self) -> bool:
        """Re-read the Lease right before saving: a checkpoint must never be written by a loser."""
        with self._lock:
            if self.obj is None or self.lost:
                return False
            try:
                current = self.remote.get()
            except KubeError as exc:
                log.error("cannot confirm %s is still ours: %s", self.where, exc)
                return False
            held = current is not None and decide(current.get("spec") or {}, self.identity, self.clock(),
                                                  held=True).action == "renew"
            if not held:
                self.lost = True
            return held

    def release(self) -> None:
        """Give the Lease up; also after an interrupted acquire whose write may have landed.

        After an interrupted acquire, a look alone cannot tell: the taking write may still be in the
        apiserver and land after the look. So release writes first, at the version the taking write
        was conditioned on: if that succeeds, the taking write can no longer land (409), and the
        Lease, which was free or expired at that version, is left free; if it gets 409, the Lease
        moved on, and it is cleared only if a fresh read shows us as the holder.
        """
        with self._lock:
            if self.lost or (self.obj is None and self._pending is None):
                return
            try:
                current = self.obj
                if current is None and self._pending is not None:  # the acquire was cut short
                    try:
                        # renewTime makes the write a real change: a no-op patch would not move the version.
                        self.remote.patch(self._pending, {"holderIdentity": "", "leaseDurationSeconds": 1,
                                                    "renewTime": micro_time(self.clock())})
                        return
                    except _Conflict:
                        current = self.remote.get()
                if current is None or _holder(current) != self.identity:
                    return
                self.remote.patch_ours(current, {"holderIdentity": "", "leaseDurationSeconds": 1}, self.identity)
            except (_Conflict, _NotFound, KubeError) as exc:
                log.warning("could not release %s (it expires on its own): %s", self.where,
                            exc)
            finally:
                self.obj = None
                self._pending = None


def _holder(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("holderIdentity") or "")


class _NotFound(Exception):
    def __str__(self) -> str:
        return "it was deleted"


class _Conflict(Exception):
    def __str__(self) -> str:
        return "another run holds it now"


class LeaseAPI:
    """The Lease's API calls: read it, and patch its spec at a resourceVersion. No decisions here."""

    def __init__(self, api: ApiClient, namespace: str, name: str, timeout: float) -> None:
        self.api = CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self.where = f"Lease {namespace}/{name}"

    def patch_ours(self, current: dict[str, Any], spec: dict[str, Any], identity: str) -> dict[str, Any]:
        """Patch our Lease at the version we hold. A 409 whose fresh read still shows us as holder
        means someone changed only metadata (a GitOps sync adding a label): patch that version."""
        rv = current["metadata"]["resourceVersion"]
        for _ in range(3):
            try:
                return self.patch(rv, spec)
            except _Conflict:
                fresh = self.get()
                if fresh is None or _holder(fresh) != identity:
                    raise
                rv = fresh["metadata"]["resourceVersion"]
        raise _Conflict()

    def patch(self, resource_version: str, spec: dict[str, Any]) -> dict[str, Any]:
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        return self._call(self.api.patch_namespaced_lease, self.name, self.namespace, patch,
                          _content_type="application/merge-patch+json")

    def get(self) -> dict[str, Any] | None:
        try:
            return self._call(self.api.read_namespaced_lease, self.name, self.namespace)
        except _NotFound:
            return None

    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> dict[str, Any]:
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kw)
        except ApiException as exc:
            # Only the apiserver's own Status means "no such Lease"; a proxy's 404 page means nothing.
            if exc.status == 404 and is_status(exc.body):
                raise _NotFound() from None
            if exc.status == 409:
                raise _Conflict() from None
            hint = ""
            if exc.status == 403:
                hint = f" (grant get and patch on leases/{self.name} in {self.namespace}, see cronjob.yaml)"
            raise KubeError(explain(exc, f"{self.where}") + hint) from None
        except HTTPError as exc:
            raise KubeError(f"{self.where}: cannot reach the Kubernetes API: {type(exc).__name__}") from None
        return read_object(resp.data, self.where)


class Renewer:
    """Renews the Lease every third of its duration while the run works."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-renewer", daemon=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease.timeout + 5)

    def _loop(self) -> None:
        wait = self.lease.duration_s / 3
        while not self._stop.wait(wait):
            verdict = self.lease.renew()
            if verdict == "lost":
                return
            wait = self.lease.duration_s * (RETRY_SHARE if verdict == "retry" else 1 / 3)
