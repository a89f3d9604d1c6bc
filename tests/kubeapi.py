"""A small, fast, faithful Kubernetes API server for tests (standard library only).

It speaks real HTTP/1.1 (keep-alive, exact Content-Length) on 127.0.0.1, so the official
``kubernetes`` Python client talks to it through an ordinary kubeconfig, exactly as it would
talk to kube-apiserver. Behaviour follows docs/kubernetes.md and the apiserver sources it names:

* core/v1 Events: list (cluster and namespace scope) with ``limit``/``continue`` pagination,
  field and label selectors, consistent snapshots (MVCC, like etcd), 410 Expired with an
  inconsistent-resume token, ``compact()``; plus get/create/update/patch/delete by name.
* ConfigMaps and coordination.k8s.io/v1 Leases: get/list/create/update/patch/delete with the
  apiserver's optimistic concurrency, validation and error Status objects.
* The kinds --enrich's owner walk reads (pods, replicasets, deployments, statefulsets, daemonsets,
  jobs, cronjobs; ``serve_resource()`` adds a custom one): get and list, with the metadata-only
  conversion (``Accept: ...;as=PartialObjectMetadata;g=meta.k8s.io;v=v1``, 406 for a list or an
  unknown ``as=``) and the discovery documents (/api, /api/v1, /apis, /apis/G, /apis/G/V; 404 for a
  group or version not served), as docs/kubernetes.md, "Metadata-only reads and discovery", says.
* Faults: ``fail()``, ``forbid()``, ``expire_continue_after()``, ``empty_pages()``,
  ``repeat_continue()``, bearer tokens.
* RBAC, opt-in per test (``enforce_rbac()``): bearer tokens authenticate as users
  (``add_token()``), and Roles, ClusterRoles, RoleBindings and ClusterRoleBindings given as
  the dicts their YAML holds (``apply_rbac()``) authorise each request as kube-apiserver's RBAC
  authorizer does: a ClusterRoleBinding grants at every scope, a RoleBinding (to a Role or a
  ClusterRole) only in its namespace, a rule with ``resourceNames`` only requests that name one
  object. A denial is 403 with the real message, e.g. ``events is forbidden: User
  "system:serviceaccount:ns:sa" cannot list resource "events" in API group "" at the cluster
  scope``. Without ``enforce_rbac()`` every token may do everything (``forbid()`` aside).
* The watch cache (``watch_cache``, ``lag_watch_cache()``): lists with ``resourceVersion=0``
  ("any") or ``resourceVersion=N&resourceVersionMatch=NotOlderThan`` (and rv=N without limit)
  are served from the cache, at the cache's revision, which may trail etcd's. ``"snapshot"``
  (1.34+, ListFromCacheSnapshot on by default) pages them with ``limit``/``continue``;
  ``"unpaginated"`` (before 1.33, or the gate off) ignores ``limit`` and answers in one page.
  NotOlderThan a revision the cache has not reached gets 504 ``Too large resource version``
  (the real cacher waits 3 s first). ``served_from`` records "etcd" or "cache" per list request.
  ``minor_version`` is what GET /version reports (set ``watch_cache`` to match it).

Deliberate differences from a real apiserver (none matter to a client that only lists):
no watch, no server-side apply, no gzip, no managedFields; ``remainingItemCount`` also counts
deleted keys not yet compacted (docs/kubernetes.md: it is an estimate); RBAC groups and
aggregated ClusterRoles are not modelled. Request bodies over 3 MiB get 413, as real.

Things worth knowing when writing tests against it (all real apiserver/client behaviour):
an injected 429 carries ``Retry-After`` (see ``retry_after``), and urllib3 inside the kubernetes
client then sleeps and retries up to 3 times on its own; reading a Lease through the model and
writing it back re-sends whole-second times via ``isoformat()`` and gets 400.

Lease times: a MicroTime the apiserver cannot decode (anything but exactly six fractional
digits, followed by ``Z`` or ``+hh:mm``) fails with **400 BadRequest**, as kube-apiserver does,
because it is a decode error, not a validation error (422 is reserved for validation such as
``leaseDurationSeconds <= 0``). Offsets are accepted and stored normalised to UTC ``...Z``, so
``datetime.isoformat()`` of an aware datetime with non-zero microseconds works, as for real.

Self-benchmark (measured on this machine: 2 vCPU, Python 3.11, server and client in one
process, so they share one GIL). 100,000 example-sized events (~1 KB each) listed with
``limit=500`` (200 pages) over one keep-alive connection, three runs:

    raw urllib3 PoolManager, bytes only:          653k / 706k / 716k events/s  (~0.15 s)
    requests.Session, bytes only:                 378k / 365k / 408k events/s
    raw urllib3 + json.loads of every page:       206k / 223k / 212k events/s  (client-bound)
    put_events() setup:                            69k /  80k /  81k events/s

So the server serves far above the 150k events/s target; a client that parses is the limit.

Re-measure with ``python tests/kubeapi.py`` (runs ``_benchmark()``).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import datetime as _dt
import email.utils
import json
import os
import posixpath
import random
import re
import socket
import string
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DEFAULT_USER", "MAX_CONFIGMAP_BYTES", "KubeAPI"]

MAX_CONFIGMAP_BYTES = 1048576
# kube-apiserver refuses request bodies above 3 MiB before decoding them.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
DEFAULT_USER = "system:serviceaccount:loki-event-sync:loki-event-sync"
# Real clusters never start at 1; a non-trivial start catches code that treats RVs as small ints.
_FIRST_RESOURCE_VERSION = 1000

_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_EXPIRED_TOO_OLD = "The resourceVersion for the provided list is too old."
_INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token in "
    "this response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)
_OPTIMISTIC_LOCK = "the object has been modified; please apply your changes to the latest version and try again"

_PATH_RE = re.compile(
    r"^/(api/v1|apis/[^/]+/[^/]+)(?:/namespaces/([^/]+))?/([a-z]+)(?:/([^/]+))?/?$"
)
# Discovery documents (docs/kubernetes.md, "Metadata-only reads and discovery"): /api, /api/v1,
# /apis, /apis/GROUP and /apis/GROUP/VERSION; any user who is authenticated may read them.
_DISCOVERY_RE = re.compile(r"^/(?:(api)(?:/(v1))?()|(apis)(?:/([^/]+)(?:/([^/]+))?)?)/?$")
# The one metadata-only media type kube-apiserver converts a single object to (handlers/response.go).
_PARTIAL = ("PartialObjectMetadata", "meta.k8s.io", "v1")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
# Go's time.Parse with layout RFC3339Micro ("2006-01-02T15:04:05.000000Z07:00").
_MICROTIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(?:Z|[+-]\d\d:\d\d)$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_LABEL_KEY_RE = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
)
_META_FIELDS = ("metadata.namespace", "metadata.name")

# A stored revision of one key: (resourceVersion, JSON bytes or None for a deletion,
# selectable fields, labels). Tuples keep the page loop cheap.
_Version = tuple[int, "bytes | None", "dict[str, str] | None", "dict[str, str] | None"]
_Predicate = Callable[[_Version], bool]


# --------------------------------------------------------------------------------------------
# errors


class ApiError(Exception):
    """An error that becomes a metav1.Status response."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        continue_token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = _REASONS.get(code, "") if reason is None else reason
        self.details = details
        self.continue_token = continue_token
        self.headers = dict(headers or {})

    def status(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.continue_token:
            meta["continue"] = self.continue_token
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": meta,
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _dumps(obj: Any) -> bytes:
    # Go's encoding/json escapes these; mirror it so byte-level tests see what a client would.
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if "<" in s or ">" in s or "&" in s or "\u2028" in s or "\u2029" in s:
        s = (
            s.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return s.encode("utf-8", "replace")


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# resources


def _event_fields(obj: dict[str, Any]) -> dict[str, str]:
    io = obj.get("involvedObject") or {}
    md = obj.get("metadata") or {}
    reporting = _s(obj.get("reportingComponent"))
    # pkg/registry/core/event/strategy.go: "source" falls back to reportingController.
    source = _s((obj.get("source") or {}).get("component")) or reporting
    return {
        "involvedObject.kind": _s(io.get("kind")),
        "involvedObject.namespace": _s(io.get("namespace")),
        "involvedObject.name": _s(io.get("name")),
        "involvedObject.uid": _s(io.get("uid")),
        "involvedObject.apiVersion": _s(io.get("apiVersion")),
        "involvedObject.resourceVersion": _s(io.get("resourceVersion")),
        "involvedObject.fieldPath": _s(io.get("fieldPath")),
        "reason": _s(obj.get("reason")),
        "reportingComponent": reporting,
        "source": source,
        "type": _s(obj.get("type")),
        "metadata.namespace": _s(md.get("namespace")),
        "metadata.name": _s(md.get("name")),
    }


def _meta_fields(obj: dict[str, Any]) -> dict[str, str]:
    md = obj.get("metadata") or {}
    return {"metadata.namespace": _s(md.get("namespace")), "metadata.name": _s(md.get("name"))}


def _decode_error(res: _Resource, detail: str) -> ApiError:
    return ApiError(
        400, f'{res.kind} in version "v1" cannot be handled as a {res.kind}: {detail}'
    )


def _check_str_map(res: _Resource, obj: dict[str, Any], field: str) -> dict[str, Any]:
    value = obj.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _decode_error(res, f"json: cannot unmarshal {type(value).__name__} into Go struct field"
                                 f" {res.kind}.{field} of type map[string]string")
    for v in value.values():
        if not isinstance(v, str):
            raise _decode_error(res, f"json: cannot unmarshal {type(v).__name__} into Go struct field"
                                     f" {res.kind}.{field} of type string")
    return value


def _configmap_decode(res: _Resource, obj: dict[str, Any]) -> None:
    _check_str_map(res, obj, "data")
    for key, value in _check_str_map(res, obj, "binaryData").items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _decode_error(res, f"illegal base64 data in binaryData[{key}]: {exc}") from None


def _configmap_validate(res: _Resource, obj: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    total = 0
    for field, mapping in (("data", data), ("binaryData", binary)):
        for key in mapping:
            if len(key) > 253 or key in (".", "..") or not _CONFIG_KEY_RE.match(key):
                errs.append(
                    f'{field}[{key}]: Invalid value: "{key}": a valid config key must consist of '
                    "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  "
                    "or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                )
    for key in data:
        if key in binary:
            errs.append(f'data[{key}]: Invalid value: "{key}": duplicate of key present in binaryData')
    for value in data.values():
        total += len(value.encode("utf-8"))
    for value in binary.values():
        total += len(base64.b64decode(value))
    if total > MAX_CONFIGMAP_BYTES:
        errs.append(f"[]: Too long: may not be more than {MAX_CONFIGMAP_BYTES} bytes")
    return errs


def _lease_decode(res: _Resource, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise _decode_error(res, "json: cannot unmarshal into Go struct field Lease.spec of type v1.LeaseSpec")
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is None:
            continue
        ok = isinstance(value, str) and bool(_MICROTIME_RE.match(value))
        if ok:
            try:
                _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                ok = False
        if not ok:
            raise _decode_error(
                res,
                f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": '
                f'cannot parse "{str(value)[19:]}" as ".000000"',
            )
    for field in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _decode_error(
                res, f"json: cannot unmarshal {type(value).__name__} into Go struct field"
                     f" LeaseSpec.spec.{field} of type int32"
            )
    holder = spec.get("holderIdentity")
    if holder is not None and not isinstance(holder, str):
        raise _decode_error(res, "json: cannot unmarshal into Go struct field LeaseSpec.spec.holderIdentity"
                                 " of type string")


def _lease_validate(res: _Resource, obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    errs: list[str] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(f"spec.leaseDurationSeconds: Invalid value: {duration}: must be greater than 0")
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(f"spec.leaseTransitions: Invalid value: {transitions}: must be greater than or equal to 0")
    return errs


def _lease_normalize(obj: dict[str, Any]) -> None:
    # The apiserver re-encodes MicroTime as UTC with six digits, whatever offset was sent.
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if isinstance(value, str) and not value.endswith("Z"):
            parsed = _dt.datetime.fromisoformat(value)
            spec[field] = parsed.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _no_decode(res: _Resource, obj: dict[str, Any]) -> None:
    return None


def _no_validate(res: _Resource, obj: dict[str, Any]) -> list[str]:
    return []


def _no_normalize(obj: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class _Resource:
    plural: str
    kind: str
    group: str
    api_version: str
    prefix: str  # URL prefix: "api/v1" or "apis/<group>/<version>"
    unconditional_update: bool  # strategy.AllowUnconditionalUpdate()
    fields: Callable[[dict[str, Any]], dict[str, str]]
    field_labels: tuple[str, ...]
    decode: Callable[[_Resource, dict[str, Any]], None]
    validate: Callable[[_Resource, dict[str, Any]], list[str]]
    normalize: Callable[[dict[str, Any]], None]

    @property
    def qualified_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, name: str, **extra: Any) -> dict[str, Any]:
        # metav1.StatusDetails: name is omitempty, so a list's Forbidden carries only kind (and group).
        out: dict[str, Any] = {"name": name} if name else {}
        if self.group:
            out["group"] = self.group
        out["kind"] = self.plural
        out.update(extra)
        return out

    def head(self) -> bytes:
        # Single-object responses carry kind/apiVersion; list items (what we store) do not.
        return f'{{"kind":"{self.kind}","apiVersion":"{self.api_version}",'.encode()


_RESOURCES: dict[str, _Resource] = {
    "events": _Resource(
        "events", "Event", "", "v1", "api/v1", True,
        _event_fields, _EVENT_FIELDS, _no_decode, _no_validate, _no_normalize,
    ),
    "configmaps": _Resource(
        "configmaps", "ConfigMap", "", "v1", "api/v1", True,
        _meta_fields, _META_FIELDS, _configmap_decode, _configmap_validate, _no_normalize,
    ),
    # Cluster-scoped in Kubernetes; stored under "default/" here, and read only by list (for
    # --tenant-label: the namespaces carrying a label).
    "namespaces": _Resource(
        "namespaces", "Namespace", "", "v1", "api/v1", True,
        _meta_fields, _META_FIELDS, _no_decode, _no_validate, _no_normalize,
    ),
    "leases": _Resource(
        "leases", "Lease", "coordination.k8s.io", "coordination.k8s.io/v1",
        "apis/coordination.k8s.io/v1", False,
        _meta_fields, _META_FIELDS, _lease_decode, _lease_validate, _lease_normalize,
    ),
}


def workload_resource(plural: str, kind: str, group: str, version: str) -> _Resource:
    """A resource read by the owner walk of --enrich: stored as given, served by get and list."""
    api_version = f"{group}/{version}" if group else version
    prefix = f"apis/{api_version}" if group else "api/v1"
    return _Resource(plural, kind, group, api_version, prefix, True,
                     _meta_fields, _META_FIELDS, _no_decode, _no_validate, _no_normalize)


for _plural, _kind, _group in (("pods", "Pod", ""), ("replicasets", "ReplicaSet", "apps"),
                               ("deployments", "Deployment", "apps"), ("statefulsets", "StatefulSet", "apps"),
                               ("daemonsets", "DaemonSet", "apps"), ("jobs", "Job", "batch"),
                               ("cronjobs", "CronJob", "batch")):
    _RESOURCES[_plural] = workload_resource(_plural, _kind, _group, "v1")


def _not_found(res: _Resource, name: str) -> ApiError:
    return ApiError(404, f'{res.qualified_resource} "{name}" not found', details=res.details(name))


def _conflict(res: _Resource, name: str, why: str = _OPTIMISTIC_LOCK) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {res.qualified_resource} "{name}": {why}',
        details=res.details(name),
    )


def _invalid(res: _Resource, name: str, errs: list[str]) -> ApiError:
    text = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    return ApiError(422, f'{res.qualified_kind} "{name}" is invalid: {text}', details=res.details(name))


# --------------------------------------------------------------------------------------------
# selectors


def _split_unescaped(text: str) -> list[str]:
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise ApiError(400, f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            raise ApiError(400, f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if in_slash:
        raise ApiError(400, "invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _parse_field_selector(selector: str, res: _Resource) -> list[tuple[str, bool, str]]:
    """apimachinery fields.ParseSelector, then the per-kind field label conversion."""
    terms: list[tuple[str, bool, str]] = []
    for part in _split_unescaped(selector):
        if not part:
            continue
        for i in range(len(part)):
            rest = part[i:]
            op = next((o for o in ("!=", "==", "=") if rest.startswith(o)), None)
            if op is not None:
                lhs, rhs = part[:i], part[i + len(op):]
                break
        else:
            raise ApiError(400, f"invalid selector: '{selector}'; can't understand '{part}'")
        terms.append((lhs, op == "!=", _unescape_field_value(rhs)))
    for lhs, _, _ in terms:
        if lhs not in res.field_labels:
            if res.plural == "events":
                raise ApiError(400, f"field label not supported: {lhs}")
            raise ApiError(
                400, f'"{lhs}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
    return terms


def _label_req(key: str, op: str, values: frozenset[str]) -> Callable[[dict[str, str]], bool]:
    # A function per requirement, binding key and values now (a lambda in the parser's loop would
    # see the loop's last values). "=" is "in" one value, "!=" is "notin" one value.
    if op == "in":
        return lambda lb: lb.get(key) in values
    if op == "notin":
        return lambda lb: lb.get(key) not in values
    if op == "exists":
        return lambda lb: key in lb
    return lambda lb: key not in lb


def _parse_label_selector(selector: str) -> list[Callable[[dict[str, str]], bool]]:
    """The common subset of labels.Parse: =, ==, !=, in, notin, exists, !exists."""
    reqs: list[Callable[[dict[str, str]], bool]] = []
    parts: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(selector):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])

    def bad(part: str, why: str) -> ApiError:
        return ApiError(400, f"unable to parse requirement: {why}: {part.strip()!r}")

    def key_ok(key: str, part: str) -> str:
        if not _LABEL_KEY_RE.match(key):
            raise bad(part, f"invalid label key {key!r}")
        return key

    for part in parts:
        term = part.strip()
        if not term:
            if len(parts) > 1:
                raise bad(part, "found ',', expected: !, identifier, or 'end of string'")
            continue
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", term)
        if m:
            key = key_ok(m.group(1), part)
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            if m.group(2) == "in":
                reqs.append(_label_req(key, "in", values))
            else:
                reqs.append(_label_req(key, "notin", values))
            continue
        m = re.fullmatch(r"(.*?)\s*(!=|==|=)\s*(.*)", term)
        if m:
            key = key_ok(m.group(1), part)
            value = m.group(3)
            if not _LABEL_VALUE_RE.match(value):
                raise bad(part, f"invalid label value {value!r}")
            if m.group(2) == "!=":
                reqs.append(_label_req(key, "notin", frozenset([value])))
            else:
                reqs.append(_label_req(key, "in", frozenset([value])))
            continue
        if term.startswith("!"):
            key = key_ok(term[1:].strip(), part)
            reqs.append(_label_req(key, "!", frozenset()))
            continue
        key = key_ok(term, part)
        reqs.append(_label_req(key, "exists", frozenset()))
    return reqs


def _compile_predicate(res: _Resource, field_selector: str, label_selector: str) -> _Predicate | None:
    fterms = _parse_field_selector(field_selector, res) if field_selector else []
    lreqs = _parse_label_selector(label_selector) if label_selector else []
    if not fterms and not lreqs:
        return None

    def pred(version: _Version) -> bool:
        fields = version[2] or {}
        for name, negate, value in fterms:
            if (fields.get(name, "") == value) == negate:
                return False
        labels = version[3] or {}
        return all(req(labels) for req in lreqs)

    return pred


# --------------------------------------------------------------------------------------------
# continue tokens (k8s.io/apiserver/pkg/storage/continue.go)


def _encode_continue(key: str, prefix: str, rv: int) -> str:
    raw = json.dumps(
        {"v": "meta.k8s.io/v1", "rv": rv, "start": key[len(prefix):]}, separators=(",", ":")
    ).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_continue(token: str, prefix: str) -> tuple[str, int]:
    def invalid(detail: str) -> ApiError:
        return ApiError(400, f"invalid continue token: continue key is not valid{detail}")

    if not _B64URL_RE.match(token) or len(token) % 4 == 1:
        raise invalid(": illegal base64 data")
    try:
        c = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as exc:
        raise invalid(f": {exc}") from None
    if not isinstance(c, dict):
        raise invalid(": json: cannot unmarshal into Go value of type storage.continueToken")
    if c.get("v") != "meta.k8s.io/v1":
        raise invalid(f": server does not recognize this encoded version {c.get('v', '')}")
    rv = c.get("rv", 0)
    if not isinstance(rv, int) or isinstance(rv, bool):
        raise invalid(": json: cannot unmarshal rv")
    if rv == 0:
        raise invalid(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    start = c.get("start", "")
    if not isinstance(start, str):
        raise invalid(": json: cannot unmarshal start")
    if not start:
        raise invalid(": encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    # Path traversal defence, as upstream: the key must already be clean.
    if posixpath.normpath(key) != key:
        raise invalid(f": {start}")
    return prefix + key[1:], rv


# --------------------------------------------------------------------------------------------
# storage


class _Store:
    """One resource's keyspace with etcd-like history, so a paginated list is a snapshot."""

    __slots__ = ("hist", "keys", "pending")

    def __init__(self) -> None:
        self.hist: dict[str, list[_Version]] = {}
        self.keys: list[str] = []  # sorted; includes keys whose newest version is a deletion
        self.pending: list[str] = []  # new keys not yet merged into `keys` (sorted lazily)

    def latest(self, key: str) -> _Version | None:
        h = self.hist.get(key)
        if h is None or h[-1][1] is None:
            return None
        return h[-1]

    def write(self, key: str, version: _Version) -> None:
        h = self.hist.get(key)
        if h is not None:
            h.append(version)
            return
        self.hist[key] = [version]
        # Bulk loads usually arrive in key order; only out-of-order keys pay for a sort.
        if not self.pending and (not self.keys or key > self.keys[-1]):
            self.keys.append(key)
        else:
            self.pending.append(key)

    def sorted_keys(self) -> list[str]:
        if self.pending:
            self.keys.extend(self.pending)
            self.keys.sort()
            self.pending.clear()
        return self.keys

    def page(
        self, start: str, end_key: str | None, snapshot: int, limit: int, pred: _Predicate | None
    ) -> tuple[list[bytes], str | None, bool, int]:
        """Items at `snapshot` from `start` (inclusive), like etcd3 store GetList."""
        keys = self.sorted_keys()
        hist = self.hist
        i = bisect.bisect_left(keys, start)
        end = len(keys) if end_key is None else bisect.bisect_left(keys, end_key, i)
        if limit <= 0:
            limit = end + 1
        out: list[bytes] = []
        append = out.append
        last: str | None = None
        more = False
        while i < end:
            h = hist[keys[i]]
            v = h[-1]
            if v[0] > snapshot:
                v = next((old for old in reversed(h) if old[0] <= snapshot), None)  # type: ignore[assignment]
                if v is None:
                    i += 1
                    continue
            if v[1] is None:
                i += 1
                continue
            if len(out) >= limit:
                more = True
                break
            last = keys[i]
            i += 1
            if pred is None or pred(v):
                append(v[1])
        return out, last, more, (end - i if more else 0)

    def compact(self, revision: int) -> None:
        dead: list[str] = []
        for key, h in self.hist.items():
            j = len(h) - 1
            while j > 0 and h[j][0] > revision:
                j -= 1
            if j > 0:
                del h[:j]
            if len(h) == 1 and h[0][1] is None and h[0][0] <= revision:
                dead.append(key)
        if dead:
            for key in dead:
                del self.hist[key]
            gone = set(dead)
            self.keys = [k for k in self.sorted_keys() if k not in gone]


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, api: KubeAPI) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)


_PHRASES = {s.value: s.phrase for s in HTTPStatus}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeapi-test"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY_BYTES:
            self.close_connection = True  # body left unread: the connection cannot be reused
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        api = self.server.api
        method = self.command
        path = self.path
        try:
            body = self._read_body()
            api._record(method, path, self.headers.get("User-Agent") or "")
            hook = api.on_request
            if hook is not None:
                hook(method, path)
            if body is None:
                raise ApiError(413, f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}")
            code, payload, headers = api._dispatch(method, path, self.headers, body)
            with api._lock:
                api.bytes_sent += len(payload)
        except ApiError as err:
            code, payload, headers = err.code, _dumps(err.status()), err.headers
        except Exception as exc:  # a bug here or in a hook must surface, not hang the client
            api.errors.append(exc)
            internal = ApiError(500, f"Internal error occurred: {exc!r}")
            code, payload, headers = 500, _dumps(internal.status()), {}
        self._send(code, payload, headers)

    def _send(self, code: int, body: bytes, headers: Mapping[str, str]) -> None:
        lines = [
            f"HTTP/1.1 {code} {_PHRASES.get(code, '')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-cache, private",
            f"Date: {email.utils.formatdate(usegmt=True)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if len(body) < 65536:
                self.wfile.write(head + body)
            else:
                self.wfile.write(head)
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------------------------
# the server


class KubeAPI:
    """In-process Kubernetes API server. See the module docstring for what it implements."""

    def __init__(self, *, token: str | None = None) -> None:
        self.token: str | None = token
        self.url: str = ""
        self.user: str = DEFAULT_USER  # the identity named in RBAC denial messages
        self.requests: list[tuple[str, str]] = []
        self.user_agents: set[str] = set()  # every User-Agent a request carried
        self.on_request: Callable[[str, str], None] | None = None
        self.errors: list[BaseException] = []  # unexpected exceptions inside the server or hook
        # Injected 429s carry Retry-After like API Priority and Fairness does. urllib3 (so the
        # kubernetes client) then silently sleeps and retries up to 3 times; None disables it.
        self.retry_after: int | None = 1
        self._lock = threading.Lock()
        self._rev = _FIRST_RESOURCE_VERSION
        self._compacted = 0
        self._resources = dict(_RESOURCES)  # plus serve_resource()'s custom ones
        self._stores: dict[str, _Store] = {name: _Store() for name in _RESOURCES}
        self._faults: list[list[Any]] = []  # [method, regex, status, remaining, message]
        self._forbidden: set[tuple[str, str]] = set()
        self._rbac = False
        self._users: dict[str, str] = {}  # bearer token -> user name
        self._rbac_objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name)
        self._repeat_continue = 0
        # "snapshot": 1.34+ pages cache-served lists; "unpaginated": older caches ignore limit.
        self.watch_cache = "snapshot"
        self.list_metadata_last = False  # True: lists put "metadata" after "items", as a re-encoding proxy might
        self.minor_version = "34"  # GET /version: 1.<this>; vendors write e.g. "31+"
        self._cache_rev: int | None = None  # None: the cache is up to date with etcd
        self.served_from: list[str] = []  # "etcd" or "cache", per list request
        self.bytes_sent = 0  # response body bytes, all requests
        self._expire_after: int | None = None
        self._empty_pages = 0
        self._token_pages: dict[str, int] = {}  # issued continue token -> pages served so far
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> KubeAPI:
        if self._server is not None:
            return self
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"kubeapi:{port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Idle keep-alive connections would otherwise keep being served by their threads.
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "loki-event-sync",
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> str:
        """Kubeconfig (JSON is valid YAML) with one cluster/user/context "test".

        Without `token` or `token_file`, the server's current token (if any) is written.
        """
        if not self.url:
            raise RuntimeError("start() the server before writing a kubeconfig")
        user: dict[str, Any] = {}
        if token is not None:
            user["token"] = token
        elif token_file is not None:
            user["tokenFile"] = os.fspath(token_file)
        elif self.token is not None:
            user["token"] = self.token
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [
                {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}
            ],
            "current-context": "test",
            "preferences": {},
        }
        out = os.fspath(path)
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2)
        return out

    # ---------------------------------------------------------------- direct store access

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion (etcd revision)."""
        with self._lock:
            return str(self._rev)

    def put_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an Event by (metadata.namespace, metadata.name).

        Like the apiserver, the stored form is a list item: top-level kind/apiVersion are
        dropped. A replace keeps the existing uid and creationTimestamp unless given (an update,
        as the old recorder's PATCH); delete_event() then put_event() gives a new uid (a re-create
        after TTL expiry). Returns the stored dict.
        """
        with self._lock:
            return self._put_locked(_RESOURCES["events"], event)

    def put_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Bulk put_event under one lock acquisition (fast benchmark setup); returns the count."""
        res = _RESOURCES["events"]
        n = 0
        with self._lock:
            for event in events:
                self._put_locked(res, event)
                n += 1
        return n

    def delete_event(self, namespace: str, name: str) -> None:
        """Remove an Event (as TTL expiry does). A missing event is a no-op."""
        with self._lock:
            store = self._stores["events"]
            key = f"{namespace}/{name}"
            if store.latest(key) is not None:
                self._rev += 1
                store.write(key, (self._rev, None, None, None))

    def events(self) -> list[dict[str, Any]]:
        """Current events, in key order, as list items."""
        with self._lock:
            store = self._stores["events"]
            datas = [v[1] for k in store.sorted_keys() if (v := store.latest(k)) is not None]
        return [json.loads(d) for d in datas if d is not None]

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap or Lease (kind "configmaps"/"leases"; "events" works too) as GET returns it."""
        res = self._resource(kind)
        with self._lock:
            v = self._stores[res.plural].latest(f"{namespace}/{name}")
        return None if v is None or v[1] is None else json.loads(res.head() + v[1][1:])

    def existing(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """get_object for an object the test expects to exist: a missing one fails the test by name."""
        obj = self.get_object(kind, namespace, name)
        assert obj is not None, f"{kind} {namespace}/{name} does not exist"
        return obj

    def put_object(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Direct store write for test setup: no validation, bumps resourceVersion."""
        res = self._resource(kind)
        with self._lock:
            stored = self._put_locked(res, obj)
        return {"kind": res.kind, "apiVersion": res.api_version, **stored}

    def delete_object(self, kind: str, namespace: str, name: str) -> None:
        res = self._resource(kind)
        with self._lock:
            store = self._stores[res.plural]
            key = f"{namespace}/{name}"
            if store.latest(key) is not None:
                self._rev += 1
                store.write(key, (self._rev, None, None, None))

    def compact(self) -> None:
        """etcd compaction at the current revision: older continue tokens now get 410 Expired."""
        with self._lock:
            self._compacted = self._rev
            for store in self._stores.values():
                store.compact(self._rev)

    # ---------------------------------------------------------------- faults

    def expire_continue_after(self, pages: int) -> None:
        """One-shot: the next continue request of a list that has already served `pages` pages
        gets 410 Expired carrying an inconsistent-resume token (rv -1), like etcd compaction."""
        with self._lock:
            self._expire_after = pages

    def empty_pages(self, times: int = 1) -> None:
        """The next `times` list responses hold zero items but a continue token that resumes at
        the same place, as the apiserver may do when a selector filters a whole chunk."""
        with self._lock:
            self._empty_pages = times

    def fail(self, method: str, path_regex: str, status: int, times: int = 1, message: str = "injected") -> None:
        """The next `times` requests whose method matches ("*" for any) and whose path-with-query
        matches `path_regex` (re.search) get a Status with `status`."""
        with self._lock:
            self._faults.append([method.upper(), re.compile(path_regex), status, times, message])

    def repeat_continue(self, times: int = 1) -> None:
        """The next `times` continue requests get an empty page carrying the very token they sent,
        as a broken proxy or server might: a client that trusts it would list forever."""
        with self._lock:
            self._repeat_continue = times

    def lag_watch_cache(self) -> None:
        """Freeze the watch cache at the current revision: cache-served lists see this snapshot,
        and later writes only in etcd, until catch_up_watch_cache()."""
        with self._lock:
            self._cache_rev = self._rev

    def catch_up_watch_cache(self) -> None:
        with self._lock:
            self._cache_rev = None

    # ---------------------------------------------------------------- RBAC

    def enforce_rbac(self) -> None:
        """From now on every request is authenticated by its bearer token (add_token(); the
        server's own `token`, if any, stays the user `user`) and authorised by apply_rbac()'s objects."""
        with self._lock:
            self._rbac = True
            if self.token is not None:
                self._users.setdefault(self.token, self.user)

    def add_token(self, token: str, user: str) -> None:
        """A bearer token that authenticates as `user` (e.g. system:serviceaccount:NS:NAME)."""
        with self._lock:
            self._users[token] = user

    def apply_rbac(self, *objects: dict[str, Any]) -> None:
        """Create or replace Roles, ClusterRoles, RoleBindings, ClusterRoleBindings (YAML dicts)."""
        with self._lock:
            for obj in objects:
                kind = obj.get("kind")
                if kind not in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
                    raise ValueError(f"not an RBAC object: {kind!r}")
                md = obj.get("metadata") or {}
                ns = md.get("namespace", "default") if kind in ("Role", "RoleBinding") else ""
                self._rbac_objects[(kind, ns, md["name"])] = obj

    def _allowed(self, user: str, verb: str, res: _Resource, namespace: str | None, name: str | None) -> bool:
        """rbac.authorizer: any binding of the user to a role with a matching rule allows."""
        def subject_is_user(binding: dict[str, Any], binding_ns: str) -> bool:
            for sub in binding.get("subjects") or []:
                kind = sub.get("kind")
                if kind == "ServiceAccount":
                    if user == f"system:serviceaccount:{sub.get('namespace') or binding_ns}:{sub.get('name')}":
                        return True
                elif kind == "User" and sub.get("name") == user:
                    return True
            return False

        def rules(ref: dict[str, Any], binding_ns: str) -> list[dict[str, Any]]:
            kind = str(ref.get("kind") or "")
            role = self._rbac_objects.get((kind, binding_ns if kind == "Role" else "", ref.get("name", "")))
            return list((role or {}).get("rules") or [])

        def matches(rule: dict[str, Any]) -> bool:
            def has(key: str, value: str) -> bool:
                values = rule.get(key) or []
                return "*" in values or value in values

            names = rule.get("resourceNames") or []
            return (has("verbs", verb) and has("apiGroups", res.group) and has("resources", res.plural)
                    and (not names or (name is not None and name in names)))

        with self._lock:
            objects = list(self._rbac_objects.items())
        for (kind, ns, _), obj in objects:
            bound = kind == "ClusterRoleBinding" or (kind == "RoleBinding" and namespace and ns == namespace)
            if bound and subject_is_user(obj, ns) and any(matches(r) for r in rules(obj.get("roleRef") or {}, ns)):
                return True
        return False

    def serve_resource(self, plural: str, kind: str, group: str, version: str) -> None:
        """Serve a custom resource (as a CustomResourceDefinition would): discovery, get and list."""
        with self._lock:
            self._resources[plural] = workload_resource(plural, kind, group, version)
            self._stores.setdefault(plural, _Store())

    def forbid(self, verb: str, resource: str) -> None:
        """RBAC denial of `verb` ("*" for all) on `resource` ("events", "configmaps", "leases")."""
        with self._lock:
            self._forbidden.add((verb, resource))

    def permit(self, verb: str, resource: str) -> None:
        with self._lock:
            self._forbidden.discard((verb, resource))

    # ---------------------------------------------------------------- internals

    def _resource(self, kind: str) -> _Resource:
        try:
            return self._resources[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}; use one of {sorted(self._resources)}") from None

    def connections(self) -> set[socket.socket]:
        """The client connections open now; one leaves this set once its last request was answered."""
        with self._lock:
            return set(self._conns)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _record(self, method: str, path: str, user_agent: str = "") -> None:
        with self._lock:
            self.requests.append((method, path))
            self.user_agents.add(user_agent)

    def _put_locked(self, res: _Resource, obj: dict[str, Any]) -> dict[str, Any]:
        stored = dict(obj)
        stored.pop("kind", None)
        stored.pop("apiVersion", None)
        md = dict(stored.get("metadata") or {})
        stored["metadata"] = md
        name = md.get("name")
        if not name:
            raise ValueError("metadata.name is required")
        if not md.get("namespace"):
            md["namespace"] = "default"
        store = self._stores[res.plural]
        old = store.latest(f"{md['namespace']}/{name}")
        if old is not None and old[1] is not None and (not md.get("uid") or not md.get("creationTimestamp")):
            old_md = json.loads(old[1])["metadata"]
            md.setdefault("uid", old_md.get("uid"))
            md.setdefault("creationTimestamp", old_md.get("creationTimestamp"))
        if not md.get("uid"):
            md["uid"] = str(uuid.uuid4())
        if not md.get("creationTimestamp"):
            md["creationTimestamp"] = _now_rfc3339()
        self._write_locked(res, stored)
        return stored

    def _write_locked(self, res: _Resource, obj: dict[str, Any]) -> None:
        """Assign the next resourceVersion and store `obj` (list-item form)."""
        md = obj["metadata"]
        self._rev += 1
        md["resourceVersion"] = str(self._rev)
        labels = md.get("labels")
        version: _Version = (
            self._rev,
            _dumps(obj),
            res.fields(obj),
            dict(labels) if isinstance(labels, dict) else None,
        )
        self._stores[res.plural].write(f"{md['namespace']}/{md['name']}", version)

    def _check_auth(self, headers: Any) -> str:
        """The authenticated user's name (401 if the token is not accepted)."""
        # As kube-apiserver's bearertoken authenticator: trim the header, split on single spaces, and
        # take the second part, so "Bearer   tok" (a token with leading blanks) is refused.
        parts = (headers.get("Authorization") or "").strip().split(" ", 2)
        presented = parts[1] if len(parts) >= 2 and parts[0].lower() == "bearer" else None
        with self._lock:
            rbac, users = self._rbac, dict(self._users)
        if rbac:
            if presented is None:
                return "system:anonymous"
            if presented not in users:
                raise ApiError(401, "Unauthorized")
            return users[presented]
        if self.token is not None and presented != self.token:
            raise ApiError(401, "Unauthorized")
        return self.user

    def _check_rbac(self, user: str, verb: str, res: _Resource, namespace: str | None, name: str | None) -> None:
        with self._lock:
            denied = any(
                (v == verb or v == "*") and (r == res.plural or r == "*") for v, r in self._forbidden
            )
            rbac = self._rbac
        if not denied and rbac:
            denied = not self._allowed(user, verb, res, namespace, name)
        if not denied:
            return
        what = f'User "{user}" cannot {verb} resource "{res.plural}" in API group "{res.group}"'
        what += f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        subject = f'{res.qualified_resource} "{name}"' if name else res.qualified_resource
        raise ApiError(403, f"{subject} is forbidden: {what}", details=res.details(name or ""))

    def _check_faults(self, method: str, path: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault[0] in ("*", method) and fault[1].search(path):
                    fault[3] -= 1
                    if fault[3] <= 0:
                        self._faults.remove(fault)
                    status, message = fault[2], fault[4]
                    break
            else:
                return
        headers: dict[str, str] | None = None
        details: dict[str, Any] | None = None
        if status == 429 and self.retry_after is not None:
            headers = {"Retry-After": str(self.retry_after)}
            details = {"retryAfterSeconds": self.retry_after}
        raise ApiError(status, message, details=details, headers=headers)

    def _dispatch(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, bytes, Mapping[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        user = self._check_auth(headers)

        if method == "GET" and path in ("/version", "/version/"):  # the client asks for /version/
            self._check_faults(method, raw_path)
            return 200, _dumps({
                "major": "1", "minor": self.minor_version, "gitVersion": f"v1.{self.minor_version}.0",
                "platform": "linux/amd64", "goVersion": "go1.24.0",
            }), {}
        found = _DISCOVERY_RE.match(path) if method == "GET" else None
        if found:
            self._check_faults(method, raw_path)
            core, apis = found.group(1, 2, 3), found.group(4, 5, 6)
            root, group, version = core if core[0] else apis
            return 200, self._discovery(root, group, version or None), {}
        m = _PATH_RE.match(path)
        res = self._resources.get(m.group(3)) if m else None
        if m is None or res is None or res.prefix != m.group(1) or (m.group(2) is None and m.group(4)):
            self._check_faults(method, raw_path)
            raise ApiError(404, "the server could not find the requested resource", details={})
        namespace = unquote(m.group(2)) if m.group(2) else None
        name = unquote(m.group(4)) if m.group(4) else None

        verb = {
            "GET": "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
        self._check_rbac(user, verb, res, namespace, name)
        self._check_faults(method, raw_path)
        dry_run = bool(query.get("dryRun"))

        view = _media_view(headers.get("Accept") or "")
        if verb == "list":
            if view is not None:
                raise ApiError(406, "you requested PartialObjectMetadata, but the requested object is a list "
                               f"(*{res.group or 'core'}.{res.kind}List)", reason="NotAcceptable")
            return 200, self._list(res, namespace, query), {}
        if verb == "get":
            body = self._get(res, namespace or "", name or "")
            return 200, (self._partial(body) if view is not None else body), {}
        if namespace is None or verb in ("watch", "deletecollection"):
            raise ApiError(405, f"the server does not allow this method on the requested resource ({verb})")
        if verb == "create" and name is None:
            return 201, self._create(res, namespace, self._json_body(body), dry_run), {}
        if name is None:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if verb == "update":
            return 200, self._update(res, namespace, name, self._json_body(body), dry_run), {}
        if verb == "patch":
            ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            return 200, self._patch(res, namespace, name, ctype, body, dry_run), {}
        if verb == "delete":
            return 200, self._delete(res, namespace, name, body, dry_run), {}
        raise ApiError(405, "the server does not allow this method on the requested resource")

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(body or b"null")
        except ValueError as exc:
            raise ApiError(400, f"couldn't get version/kind; json parse error: {exc}") from None
        if not isinstance(obj, dict):
            raise ApiError(400, "couldn't get version/kind; json parse error: not an object")
        return obj

    # ------------------------------------------------------------ list

    def _list(self, res: _Resource, namespace: str | None, query: dict[str, str]) -> bytes:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, f"invalid limit: {query.get('limit')!r}") from None
        cont = query.get("continue", "")
        rv = query.get("resourceVersion", "")
        rvm = query.get("resourceVersionMatch", "")
        pred = _compile_predicate(res, query.get("fieldSelector", ""), query.get("labelSelector", ""))
        prefix = f"{namespace}/" if namespace else ""
        end_key = f"{namespace}0" if namespace else None  # "0" sorts right after "/"

        def list_invalid(why: str) -> ApiError:
            return ApiError(422, f'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: {why}')

        if rvm and rvm not in ("Exact", "NotOlderThan"):
            raise list_invalid(f'Unsupported value: "{rvm}": supported values: "Exact", "NotOlderThan"')
        if rvm and not rv:
            raise list_invalid("Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")
        if rvm and cont:
            raise list_invalid("Forbidden: resourceVersionMatch is forbidden when continue is provided")
        if rvm == "Exact" and rv == "0":
            raise list_invalid('Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if cont and rv not in ("", "0"):
            raise ApiError(400, "specifying resource version is not allowed when using continue")
        start, token_rv = _decode_continue(cont, prefix) if cont else (prefix, 0)
        requested = 0
        if rv and not cont:
            try:
                requested = int(rv)
                if requested < 0:
                    raise ValueError
            except ValueError:
                raise ApiError(400, f'invalid resource version "{rv}"') from None

        # Which lists the watch cache serves (k8s.io/apiserver cacher, docs/kubernetes.md): "any"
        # (rv=0) and "not older than" (rv=N with NotOlderThan, or without limit); continue pages
        # of a cache-served list too when it pages them (ListFromCacheSnapshot).
        from_cache = rv == "0" or (rv != "" and not cont and (rvm == "NotOlderThan" or (rvm == "" and limit <= 0)))
        with self._lock:
            store = self._stores[res.plural]
            current = self._rev
            cache_rev = current if self._cache_rev is None else self._cache_rev
            served = 0
            if cont and self._repeat_continue > 0:
                self._repeat_continue -= 1
                self.served_from.append("etcd")
                return (f'{{"kind":"{res.kind}List","apiVersion":"{res.api_version}","metadata":'
                        f'{{"resourceVersion":"{current}","continue":"{cont}"}},"items":[]}}').encode()
            if cont:
                served = self._token_pages.get(cont, 1)
                expired = 0 < token_rv < self._compacted
                if not expired and self._expire_after is not None and served >= self._expire_after:
                    self._expire_after = None
                    expired = True
                if expired:
                    resume = _encode_continue(start, prefix, -1)
                    self._token_pages[resume] = served
                    raise ApiError(410, _INCONSISTENT_CONTINUE, continue_token=resume)
                snapshot = current if token_rv < 0 else min(token_rv, current)
            elif from_cache:
                if requested > cache_rev:
                    raise ApiError(
                        504, f"Timeout: Too large resource version: {requested}, current: {cache_rev}",
                        details={"causes": [{"reason": "ResourceVersionTooLarge",
                                             "message": "Too large resource version"}],
                                 "retryAfterSeconds": 1},
                    )
                snapshot = cache_rev
                if self.watch_cache == "unpaginated":
                    limit = 0  # the watch cache before ListFromCacheSnapshot ignores limit: one page
            elif requested:
                if requested > current:
                    raise ApiError(
                        504, f"Too large resource version: {requested}, current: {current}",
                        details={"causes": [{"reason": "ResourceVersionTooLarge",
                                             "message": "Too large resource version"}],
                                 "retryAfterSeconds": 1},
                    )
                exact = rvm == "Exact" or (rvm == "" and limit > 0)
                if exact and requested < self._compacted:
                    raise ApiError(410, _EXPIRED_TOO_OLD)
                snapshot = requested if exact else current
            else:
                snapshot = current

            # 1.34 serves every continue page from a cache snapshot while it has one (75 s).
            self.served_from.append("cache" if from_cache or (cont and self.watch_cache == "snapshot") else "etcd")
            if self._empty_pages > 0:
                self._empty_pages -= 1
                items: list[bytes] = []
                # The key moves on (by a NUL no name holds), as a real server's does past the keys a
                # selector filtered out, so the token is never the one the client sent.
                token = _encode_continue(start + "\x00", prefix, snapshot)
                remaining = -1
            else:
                items, last, more, remaining = store.page(start, end_key, snapshot, limit, pred)
                token = ""
                if more and last is not None:
                    token = _encode_continue(last + "\x00", prefix, snapshot)
            if token:
                if len(self._token_pages) > 100_000:
                    self._token_pages.clear()
                self._token_pages[token] = served + 1

        meta = f'"resourceVersion":"{snapshot}"'
        if token:
            meta += f',"continue":"{token}"'
            if pred is None and remaining >= 0:
                meta += f',"remainingItemCount":{remaining}'
        if self.list_metadata_last:  # valid JSON, but not the order kube-apiserver writes
            head = f'{{"kind":"{res.kind}List","apiVersion":"{res.api_version}","items":['
            return b"".join((head.encode(), b",".join(items), f'],"metadata":{{{meta}}}}}'.encode()))
        head = f'{{"kind":"{res.kind}List","apiVersion":"{res.api_version}","metadata":{{{meta}}},"items":['
        return b"".join((head.encode(), b",".join(items), b"]}"))

    # ------------------------------------------------------------ single objects

    def _get(self, res: _Resource, namespace: str, name: str) -> bytes:
        with self._lock:
            v = self._stores[res.plural].latest(f"{namespace}/{name}")
        if v is None or v[1] is None:
            raise _not_found(res, name)
        return res.head() + v[1][1:]

    @staticmethod
    def _partial(body: bytes) -> bytes:
        """The object as PartialObjectMetadata: its metadata only, managedFields included, as real."""
        return _dumps({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": json.loads(body)["metadata"]})

    def _discovery(self, root: str, group: str | None, version: str | None) -> bytes:
        """The unaggregated discovery documents; a group or version not served is a 404, as real."""
        with self._lock:
            served = list(self._resources.values())
        if root == "api":
            if group is None:
                return _dumps({"kind": "APIVersions", "versions": ["v1"]})
            return _dumps(_resource_list("v1", [r for r in served if not r.group]))
        groups: dict[str, list[str]] = {}
        for r in served:
            if r.group:
                versions = groups.setdefault(r.group, [])
                if r.api_version.split("/")[1] not in versions:
                    versions.append(r.api_version.split("/")[1])
        if group is None:
            return _dumps({"kind": "APIGroupList", "apiVersion": "v1",
                           "groups": [_api_group(g, v) for g, v in sorted(groups.items())]})
        if group not in groups or (version is not None and version not in groups[group]):
            raise ApiError(404, "the server could not find the requested resource", details={})
        if version is None:
            return _dumps({"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, groups[group])})
        gv = f"{group}/{version}"
        return _dumps(_resource_list(gv, [r for r in served if r.api_version == gv]))

    def _response(self, res: _Resource, obj: dict[str, Any]) -> bytes:
        return res.head() + _dumps(obj)[1:]

    @staticmethod
    def _prepare(res: _Resource, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        """Decode-level checks (400), done before any storage lookup, like the apiserver."""
        kind = obj.get("kind")
        if kind not in (None, "", res.kind):
            raise ApiError(400, f"the object provided is unrecognized (must be of type {res.kind}): kind {kind}")
        obj = dict(obj)
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
        md = obj.get("metadata")
        if md is None:
            md = {}
        if not isinstance(md, dict):
            raise _decode_error(res, "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta")
        md = dict(md)
        obj["metadata"] = md
        if md.get("namespace") and md["namespace"] != namespace:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        md["namespace"] = namespace
        res.decode(res, obj)
        return obj

    def _create(self, res: _Resource, namespace: str, body: dict[str, Any], dry_run: bool) -> bytes:
        obj = self._prepare(res, body, namespace)
        md = obj["metadata"]
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = md.get("name") or ""
        if not name:
            raise _invalid(res, "", ["metadata.name: Required value: name or generateName is required"])
        errs = res.validate(res, obj)
        if errs:
            raise _invalid(res, name, errs)
        res.normalize(obj)
        with self._lock:
            store = self._stores[res.plural]
            if md.get("resourceVersion"):
                raise ApiError(500, "resourceVersion should not be set on objects to be created", reason="")
            if store.latest(f"{namespace}/{name}") is not None:
                raise ApiError(409, f'{res.qualified_resource} "{name}" already exists',
                               reason="AlreadyExists", details=res.details(name))
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = _now_rfc3339()
            if not dry_run:
                self._write_locked(res, obj)
        return self._response(res, obj)

    def _replace_locked(
        self, res: _Resource, namespace: str, name: str, obj: dict[str, Any],
        cur: _Version, conditional_rv: str, dry_run: bool,
    ) -> bytes:
        """Shared tail of update and patch: preconditions, validation, write."""
        assert cur[1] is not None
        cur_md = json.loads(cur[1])["metadata"]
        md = obj["metadata"]
        if conditional_rv and conditional_rv != cur_md.get("resourceVersion"):
            raise _conflict(res, name)
        if md.get("uid") and md["uid"] != cur_md.get("uid"):
            raise _conflict(
                res, name,
                f"Precondition failed: UID in precondition: {md['uid']}, UID in object meta: {cur_md.get('uid')}",
            )
        errs = res.validate(res, obj)
        if errs:
            raise _invalid(res, name, errs)
        res.normalize(obj)
        md["uid"] = cur_md.get("uid")
        md["creationTimestamp"] = cur_md.get("creationTimestamp")
        md["name"] = name
        if dry_run:
            md["resourceVersion"] = cur_md.get("resourceVersion")
        else:
            self._write_locked(res, obj)
        return self._response(res, obj)

    def _update(self, res: _Resource, namespace: str, name: str, body: dict[str, Any], dry_run: bool) -> bytes:
        obj = self._prepare(res, body, namespace)
        md = obj["metadata"]
        if md.get("name") and md["name"] != name:
            raise ApiError(400, f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        rv = _s(md.get("resourceVersion"))
        with self._lock:
            cur = self._stores[res.plural].latest(f"{namespace}/{name}")
            if cur is None:
                raise _not_found(res, name)
            if not rv and not res.unconditional_update:
                raise _invalid(res, name,
                               ["metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"])
            return self._replace_locked(res, namespace, name, obj, cur, rv, dry_run)

    def _patch(self, res: _Resource, namespace: str, name: str, ctype: str, body: bytes, dry_run: bool) -> bytes:
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            try:
                patch: Any = json.loads(body or b"null")
            except ValueError as exc:
                raise ApiError(400, f"error decoding patch: {exc}") from None
            def apply(doc: dict[str, Any]) -> Any:
                return _merge_patch(doc, patch)
        elif ctype == "application/json-patch+json":
            try:
                ops = json.loads(body or b"null")
            except ValueError as exc:
                raise ApiError(400, f"error decoding patch: {exc}") from None
            if not isinstance(ops, list):
                raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            def apply(doc: dict[str, Any]) -> Any:
                return _json_patch(doc, ops)
        else:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json-patch+json, application/merge-patch+json,"
                f" application/strategic-merge-patch+json ({ctype})",
            )
        with self._lock:
            cur = self._stores[res.plural].latest(f"{namespace}/{name}")
            if cur is None or cur[1] is None:
                raise _not_found(res, name)
            doc = json.loads(res.head() + cur[1][1:])
            patched = apply(doc)
            if not isinstance(patched, dict):
                raise ApiError(422, "patched object is not a JSON object")
            obj = self._prepare(res, patched, namespace)
            md = obj["metadata"]
            if md.get("name") != name:
                raise _invalid(res, name, [f'metadata.name: Invalid value: "{md.get("name")}": field is immutable'])
            # A patch that carries metadata.resourceVersion is a precondition (optimistic lock).
            return self._replace_locked(res, namespace, name, obj, cur, _s(md.get("resourceVersion")), dry_run)

    def _delete(self, res: _Resource, namespace: str, name: str, body: bytes, dry_run: bool) -> bytes:
        pre: dict[str, Any] = {}
        if body:
            opts = self._json_body(body)
            pre = opts.get("preconditions") or {}
        with self._lock:
            store = self._stores[res.plural]
            key = f"{namespace}/{name}"
            cur = store.latest(key)
            if cur is None or cur[1] is None:
                raise _not_found(res, name)
            cur_md = json.loads(cur[1])["metadata"]
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur_md.get("resourceVersion"):
                raise _conflict(
                    res, name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {cur_md.get('resourceVersion')}",
                )
            if pre.get("uid") and pre["uid"] != cur_md.get("uid"):
                raise _conflict(
                    res, name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {cur_md.get('uid')}",
                )
            if not dry_run:
                self._rev += 1
                store.write(key, (self._rev, None, None, None))
        return _dumps({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": res.details(name, uid=cur_md.get("uid")),
        })


# --------------------------------------------------------------------------------------------
# patches


def _media_view(accept: str) -> tuple[str, str, str] | None:
    """The conversion an Accept header asks for: None for the plain object, _PARTIAL for metadata only.

    As kube-apiserver's negotiation: the first acceptable media range wins; `as=` with `g=` and `v=`
    names a conversion, and one the server does not offer for a single object is 406 NotAcceptable.
    """
    for media in accept.split(","):
        kind, *params = (p.strip() for p in media.split(";"))
        if kind not in ("application/json", "application/*", "*/*", ""):
            continue
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        if "as" not in opts:
            return None
        if (opts["as"], opts.get("g")) == _PARTIAL[:2] and opts.get("v") in ("v1", "v1beta1"):
            return _PARTIAL
    raise ApiError(406, "only the following media types are accepted: application/json, application/yaml, "
                   "application/vnd.kubernetes.protobuf", reason="NotAcceptable")


def _resource_list(group_version: str, resources: list[_Resource]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.plural != "namespaces",
                           "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update"]}
                          for r in sorted(resources, key=lambda r: r.plural)]}


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge: these kinds have no list keys)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch."""

    def fail(why: str) -> ApiError:
        return ApiError(422, f"the server rejected our request due to an error in our request: {why}")

    def parse(pointer: str) -> list[str]:
        if pointer == "":
            return []
        if not pointer.startswith("/"):
            raise fail(f"invalid JSON pointer {pointer!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]

    def walk(root: Any, parts: list[str]) -> Any:
        for p in parts:
            if isinstance(root, dict) and p in root:
                root = root[p]
            elif isinstance(root, list) and p.isdigit() and int(p) < len(root):
                root = root[int(p)]
            else:
                raise fail(f"path {p!r} not found")
        return root

    def remove(root: Any, parts: list[str]) -> Any:
        parent = walk(root, parts[:-1])
        last = parts[-1]
        if isinstance(parent, dict) and last in parent:
            return parent.pop(last)
        if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            return parent.pop(int(last))
        raise fail(f"unable to remove nonexistent key: {last}")

    def add(root: Any, parts: list[str], value: Any) -> Any:
        if not parts:
            return value
        parent = walk(root, parts[:-1])
        last = parts[-1]
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif last.isdigit() and int(last) <= len(parent):
                parent.insert(int(last), value)
            else:
                raise fail(f"index {last} out of range")
        else:
            raise fail("cannot add to a scalar")
        return root

    doc = json.loads(json.dumps(doc))
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "invalid JSON patch operation")
        kind, parts = op["op"], parse(op["path"])
        if kind == "add":
            doc = add(doc, parts, op.get("value"))
        elif kind == "remove":
            remove(doc, parts)
        elif kind == "replace":
            walk(doc, parts)
            if parts:
                remove(doc, parts)
            doc = add(doc, parts, op.get("value"))
        elif kind in ("move", "copy"):
            src = parse(op.get("from", ""))
            value = remove(doc, src) if kind == "move" else json.loads(json.dumps(walk(doc, src)))
            doc = add(doc, parts, value)
        elif kind == "test":
            if walk(doc, parts) != op.get("value"):
                raise fail(f"testing value {op['path']} failed: test failed")
        else:
            raise ApiError(400, f"unexpected kind: {kind}")
    return doc


# --------------------------------------------------------------------------------------------
# benchmark


def _benchmark(n: int = 100_000, limit: int = 500) -> dict[str, float]:
    """Events/s served listing `n` example-sized events with `limit` via raw urllib3/requests."""
    import urllib3

    template = {
        "apiVersion": "v1", "kind": "Event", "count": 61, "eventTime": None,
        "firstTimestamp": "2020-09-23T07:22:15Z",
        "involvedObject": {
            "apiVersion": "v1", "fieldPath": "spec.containers{kubernetes-dashboard}", "kind": "Pod",
            "name": "kubernetes-dashboard-556b9ff8f8-gf6lg", "namespace": "kube-system",
            "resourceVersion": "39702943", "uid": "4f22e027-6a03-4ec1-8ce9-83850dd3d431",
        },
        "lastTimestamp": "2020-10-12T08:51:05Z",
        "message": "Liveness probe failed: Get https://172.20.1.96:8443/: net/http: request canceled "
                   "(Client.Timeout exceeded while awaiting headers)",
        "reason": "Unhealthy", "reportingComponent": "", "reportingInstance": "",
        "source": {"component": "kubelet", "host": "node2"}, "type": "Warning",
    }
    results: dict[str, float] = {}
    with KubeAPI(token="bench") as api:
        t0 = time.perf_counter()
        api.put_events(
            {**template, "metadata": {"namespace": f"ns-{i % 20:02d}", "name": f"pod-{i:07d}.17a0b1c2d3e4f5a6"}}
            for i in range(n)
        )
        results["put_events_per_s"] = n / (time.perf_counter() - t0)
        auth = {"Authorization": "Bearer bench"}

        def run(fetch: Callable[[str], bytes], parse: bool) -> float:
            token, seen = "", 0
            t = time.perf_counter()
            while True:
                url = f"{api.url}/api/v1/events?limit={limit}" + (f"&continue={token}" if token else "")
                data = fetch(url)
                if parse:
                    page = json.loads(data)
                    seen += len(page["items"])
                    token = page["metadata"].get("continue", "")
                else:
                    # Cheap scan for the token; the count comes from the server's own total.
                    i = data.find(b'"continue":"', 0, 2000)
                    token = data[i + 12:data.index(b'"', i + 12)].decode() if i >= 0 else ""
                    seen += limit if token else 0
                if not token:
                    break
            return n / (time.perf_counter() - t)

        pool = urllib3.PoolManager(maxsize=1)
        results["urllib3_events_per_s"] = run(lambda u: pool.request("GET", u, headers=auth).data, False)
        results["urllib3_json_loads_events_per_s"] = run(lambda u: pool.request("GET", u, headers=auth).data, True)
        try:
            import requests
        except ImportError:
            pass
        else:
            with requests.Session() as s:
                s.headers.update(auth)
                results["requests_events_per_s"] = run(lambda u: s.get(u).content, False)
    return results


if __name__ == "__main__":
    for key, value in _benchmark().items():
        print(f"{key:36s} {value:12,.0f}")
