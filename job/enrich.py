"""--enrich: which workload an event is about, from the involved object's metadata and its owners.

For each occurrence that ships (select() has already decided that; enrichment never changes it),
the involved object's metadata is read with the API server's metadata-only conversion
(``Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1``, docs/kubernetes.md,
"Metadata-only reads and discovery") and its controller ownerReferences are walked up: Pod ->
ReplicaSet -> Deployment, Pod -> Job -> CronJob, Pod -> StatefulSet/DaemonSet, and any custom kind
whose group and version discovery says are served.

Correct, not plausible: an object counts only when its uid is the one asked for (the event's
involvedObject.uid, or the uid in the child's ownerReference); a pod deleted and recreated under
the same name is another object. The fields name the highest controller known; when the walk had
to stop below the top (the owner's group or kind is not served, `get` on it is not permitted, it is
gone or was replaced, the request budget or the time ran out), ``workload_stop`` says why, and the
fields name that owner as the child's ownerReference names it. When the involved object itself
cannot be read, the occurrence ships without any of these fields. Nothing here fails a run.

Cost: one lookup per distinct object per run (cached by uid; owners shared by many pods are read
once), at most --enrich-max-requests requests, all within one --api-timeout.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from job.cmd import Config
from job.events import Event
from job.summary import Summary

log = logging.getLogger(__name__)

PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
# The kinds the walk reads without asking discovery: their resources have been these since
# apps/v1 (1.9) and batch/v1 CronJob (1.21), and deploy/components/enrich-rbac grants `get` on them.
BUILTIN: dict[tuple[str, str], str] = {
    ("", "Pod"): "pods", ("apps", "ReplicaSet"): "replicasets", ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets", ("apps", "DaemonSet"): "daemonsets", ("batch", "Job"): "jobs",
    ("batch", "CronJob"): "cronjobs",
}
MAX_DEPTH = 8  # an ownerReference cycle (never written by Kubernetes' controllers) ends here
# Why the walk stopped, as workload_stop says it, and the summary count each one goes to.
COUNTS = {"forbidden": "enrich_forbidden", "missing": "enrich_missing", "changed": "enrich_missing",
          "not_served": "enrich_missing", "over_budget": "enrich_over_budget", "timeout": "enrich_errors",
          "error": "enrich_errors"}

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Fields:
    pairs: Pairs = ()  # for the line and the structured metadata, in a fixed order
    labels: Pairs = ()  # the ones --enrich-index-labels makes stream labels
    stop: str = ""  # why the walk stopped short ("" = complete, or nothing was looked up)


NONE = Fields()


def field_name(prefix: str, key: str) -> str:
    """label_<name>: a label or annotation key as a Loki label name ([a-zA-Z0-9_])."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", key)


@dataclass(frozen=True)
class _Obj:
    kind: str
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: dict[str, Any] | None  # the controller ownerReference


class Enricher:
    """One run's lookups: call it with each event that ships; finish() logs what was left out."""

    def __init__(self, cfg: Config, api: Any, monotonic: Callable[[], float], s: Summary) -> None:
        self.s = s
        self.api = _Api(api, cfg, monotonic, s)
        self.owner = "owner" in cfg.enrich
        self.labels = cfg.enrich_labels if "labels" in cfg.enrich else ()
        self.annotations = cfg.enrich_annotations
        self.index = frozenset(cfg.enrich_index_labels)
        self.done: dict[str, Fields | str] = {}  # involved uid -> fields, or why there are none
        self.objs: dict[str, _Obj | str] = {}  # uid -> metadata read, or why it could not be
        self.tops: dict[str, tuple[str, str, str, str]] = {}  # uid -> (kind, name, namespace, stop)
        self.denied: set[str] = set()  # "pods in namespace a", from a 403

    def __call__(self, e: Event) -> Fields:
        o = e.obj
        group, _, version = (o.apiVersion or "").rpartition("/")
        if (group, o.kind or "") not in BUILTIN:  # a Node, a Service ...: no walk, nothing to add
            return NONE
        uid = o.uid or ""
        found = self.done.get(uid) if uid else "missing"
        if found is None:
            found = self.done[uid] = self._resolve(e, group, version)
        if isinstance(found, str):
            self._count(found)
            return NONE
        self.s.enriched += 1
        if found.stop:
            self._count(found.stop)
        return found

    def _count(self, why: str) -> None:
        name = COUNTS[why]
        setattr(self.s, name, getattr(self.s, name) + 1)

    def _resolve(self, e: Event, group: str, version: str) -> Fields | str:
        o = e.obj
        namespace = o.namespace or e.meta.namespace or ""
        obj = self._read(group, version or "v1", o.kind or "", namespace, o.name or "", o.uid or "")
        if isinstance(obj, str):
            return obj
        pairs: list[tuple[str, str]] = []
        stop = ""
        if self.owner:
            kind, name, ns, stop = self._top(o.uid or "", obj, 0)
            pairs += [("workload_kind", kind), ("workload_name", name)]
            if ns != (e.meta.namespace or ""):
                pairs.append(("workload_namespace", ns))
            if stop:
                pairs.append(("workload_stop", stop))
        pairs += [(field_name("label_", k), obj.labels[k]) for k in self.labels if obj.labels.get(k)]
        pairs += [(field_name("annotation_", k), obj.annotations[k]) for k in self.annotations
                  if obj.annotations.get(k)]
        return Fields(tuple(pairs), tuple(p for p in pairs if p[0] in self.index), stop)

    def _top(self, uid: str, obj: _Obj, depth: int) -> tuple[str, str, str, str]:
        """The highest controller above obj (itself when it has none), and why the walk stopped there."""
        top = self.tops.get(uid)
        if top is not None:
            return top
        ref = obj.owner
        if ref is None or depth >= MAX_DEPTH:
            top = (obj.kind, obj.name, obj.namespace, "")
        else:
            group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
            kind, name, owner_uid = str(ref.get("kind") or ""), str(ref.get("name") or ""), str(ref.get("uid") or "")
            # ownerReferences name objects in the dependent's own namespace (or cluster-scoped ones).
            owner = self._read(group, version, kind, obj.namespace, name, owner_uid)
            top = ((kind, name, obj.namespace, owner) if isinstance(owner, str)
                   else self._top(owner_uid, owner, depth + 1))
        self.tops[uid] = top
        return top

    def _read(self, group: str, version: str, kind: str, namespace: str, name: str, uid: str) -> _Obj | str:
        """The object's metadata if it is the one with this uid, else why not (a workload_stop value)."""
        found = self.objs.get(uid)
        if found is None:
            found = self.objs[uid] = self._fetch(group, version, kind, namespace, name, uid) if uid else "missing"
        return found

    def _fetch(self, group: str, version: str, kind: str, namespace: str, name: str, uid: str) -> _Obj | str:
        resource = self.api.resource(group, version, kind)
        if isinstance(resource, str):
            return resource
        plural, namespaced = resource
        where = f"{plural}{'.' + group if group else ''} in " + (f"namespace {namespace}" if namespaced
                                                                 else "the cluster")
        if where in self.denied:
            return "forbidden"
        base = f"/apis/{group}/{version}" if group else "/api/v1"
        if namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        answer = self.api.get(f"{base}/{plural}/{quote(name, safe='')}")
        if isinstance(answer, str):
            if answer == "forbidden":
                self.denied.add(where)
            return answer
        meta = answer.get("metadata") if isinstance(answer, dict) else None
        if not isinstance(meta, dict):
            return "error"
        if meta.get("uid") != uid:
            return "changed"  # deleted and recreated under the same name: another object
        refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict) and r.get("controller")]
        return _Obj(kind, name, namespace, _strings(meta.get("labels")), _strings(meta.get("annotations")),
                    refs[0] if refs else None)

    def finish(self) -> None:
        """One warning line for each kind of gap a run's lookups left, naming the fix."""
        s = self.s
        if self.denied:
            log.warning("--enrich: the service account may not get %s (HTTP 403); %d occurrences shipped without "
                        "those fields: apply the kustomize component deploy/components/enrich-rbac (or the namespaced "
                        "variant under it)", ", ".join(sorted(self.denied)), s.enrich_forbidden)
        if s.enrich_over_budget:
            log.warning("--enrich: --enrich-max-requests %d reached; %d occurrences shipped without workload "
                        "fields (python -m job plan shows what a larger budget costs)", self.api.max_requests,
                        s.enrich_over_budget)
        if self.api.broken:
            log.warning("--enrich: %s; the lookups stopped and %d occurrences shipped without workload fields",
                        self.api.broken, s.enrich_errors)


class _Api:
    """The lookups' requests: through the official client, within the budget and one --api-timeout."""

    def __init__(self, api: Any, cfg: Config, monotonic: Callable[[], float], s: Summary) -> None:
        self.api = api
        self.s = s
        self.max_requests = cfg.enrich_max_requests
        self.timeout = cfg.api_timeout
        self.monotonic = monotonic
        self.deadline: float | None = None  # one --api-timeout for all lookups, from the first
        self.resources: dict[str, dict[str, tuple[str, bool]] | str] = {}  # group/version -> kind -> resource
        self.broken = ""  # a timeout or connection error: the API server is not answering in time

    def resource(self, group: str, version: str, kind: str) -> tuple[str, bool] | str:
        """(resource, namespaced) for a kind, or why it cannot be read; discovery for kinds not built in."""
        builtin = BUILTIN.get((group, kind))
        if builtin is not None:
            return builtin, True
        gv = f"{group}/{version}" if group else version
        served = self.resources.get(gv)
        if served is None:
            doc = self.get(f"/apis/{gv}" if group else f"/api/{version}", accept="application/json")
            if isinstance(doc, dict):
                served = {str(r.get("kind")): (str(r.get("name")), bool(r.get("namespaced")))
                          for r in doc.get("resources") or [] if isinstance(r, dict) and "/" not in str(r.get("name"))}
            else:
                served = "not_served" if doc == "missing" else doc
            self.resources[gv] = served
        if isinstance(served, str):
            return served
        return served.get(kind) or "not_served"

    def get(self, path: str, accept: str = PARTIAL_METADATA) -> dict[str, Any] | str:
        """One GET through the official client within the budget and the deadline; the JSON, or why not."""
        from urllib3.exceptions import HTTPError

        from job.kube import ApiException

        if self.broken:
            return "timeout"
        if self.s.enrich_requests >= self.max_requests:
            return "over_budget"
        now = self.monotonic()
        if self.deadline is None:
            self.deadline = now + self.timeout
        left = self.deadline - now
        if left <= 0:
            self.broken = "the lookups took longer than --api-timeout"
            return "timeout"
        self.s.enrich_requests += 1
        try:
            # urllib3 (inside the client) retries a timed-out GET up to 3 times: a quarter of what is
            # left for each try keeps even a fully retried lookup inside the deadline.
            resp = self.api.call_api(path, "GET", header_params={"Accept": accept}, auth_settings=["BearerToken"],
                                     _preload_content=False, _request_timeout=left / 4)
            data = resp.data
            resp.release_conn()
        except ApiException as exc:
            self.s.enrich_bytes += len(exc.body or b"")
            return _refusal(exc)
        except HTTPError as exc:
            self.broken = f"{type(exc).__name__} from the API server"
            return "timeout"
        self.s.enrich_bytes += len(data)
        try:
            doc = json.loads(data)
        except ValueError:
            return "error"
        return doc if isinstance(doc, dict) else "error"


def _refusal(exc: Any) -> str:
    """404 with a name is a missing object; 404 without one is a resource the server does not serve."""
    if exc.status == 403:
        return "forbidden"
    if exc.status != 404:
        return "error"
    try:
        details = json.loads(exc.body).get("details") or {}
    except (TypeError, ValueError, AttributeError):
        details = {}
    return "missing" if isinstance(details, dict) and details.get("name") else "not_served"


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def enricher_for(cfg: Config, api: Callable[[], Any], monotonic: Callable[[], float], s: Summary) -> Enricher | None:
    """The run's Enricher, or None without --enrich or for a --from-file run (no API to ask)."""
    if not cfg.enrich:
        return None
    if cfg.from_file:
        log.info("--enrich reads the API server; a --from-file run ships without workload fields")
        return None
    return Enricher(cfg, api(), monotonic, s)
