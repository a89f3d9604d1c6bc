"""Every setting in one place: flags, their environment variables, defaults, and validation.

Each flag --some-name falls back to the environment variable LOKI_EVENT_SYNC_SOME_NAME (one prefix,
so a stray NAMESPACE or SINCE in a shell is never read as a setting); --kubeconfig keeps the
ecosystem's KUBECONFIG. A test holds every flag to its variable.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from job import __version__
from job.filters import OWN_EVENTS, Filters

DEFAULT_LEASE_NAME = "loki-event-sync"
DEFAULT_CHECKPOINT_CONFIGMAP = "loki-event-sync-checkpoint"
DEFAULT_CRONJOB_NAME = "loki-event-sync"  # cronjob.yaml's
# The install's namespace: the default for the Lease and the checkpoint, off-cluster too.
DEFAULT_NAMESPACE = "loki-event-sync"
MiB = 1024 * 1024
# Below the install's activeDeadlineSeconds (540 s): the run ends itself, reports and releases the Lease
# with a minute to spare for a slow pod start, instead of being killed by the kubelet's SIGTERM.
DEFAULT_DEADLINE_S = 480.0
# --enrich-max-requests: in plan's request model a run at 10,000 events/h (TTL 1h, page size 500) makes
# 20 list pages + 4 Lease requests = 24 with an S3 or file checkpoint (26 with the ConfigMap's read and
# write); 20 % of the smaller is 4.8, so 4 keeps every store at or under a fifth (15-17 %).
ENRICH_MAX_REQUESTS = 4
ENRICH_MAX_INDEX_LABELS = 3


@dataclass(frozen=True)
class Config:
    command: str
    loki_url: str = ""
    tenant: str = ""
    tenant_map: tuple[tuple[re.Pattern[str], str], ...] = ()
    tenant_label: str = ""
    loki_username: str = ""
    loki_password: str = ""
    loki_bearer_token_file: str = ""
    loki_ca_file: str = ""
    insecure_skip_tls_verify: bool = False
    state: str = ""  # "" = the checkpoint ConfigMap in the job's namespace, decided once that is known
    s3_endpoint_url: str = ""
    reset_checkpoint: bool = False
    kubeconfig: str = ""
    context: str = ""
    namespace: str = ""
    lease_name: str = DEFAULT_LEASE_NAME
    lease_duration: float = 60.0
    cluster: str = ""
    field_selector: str = ""
    filters: Filters = field(default_factory=Filters)
    dry_run: bool = False
    from_file: str = ""
    since: str = ""
    until: str = ""
    event_ttl: float = 3600.0
    label_style: str = "default"
    line_format: str = "json"
    structured_metadata: bool = False
    enrich: tuple[str, ...] = ()  # "owner", "labels"
    enrich_labels: tuple[str, ...] = ()
    enrich_annotations: tuple[str, ...] = ()
    enrich_index_labels: tuple[str, ...] = ()
    enrich_max_requests: int = ENRICH_MAX_REQUESTS
    max_line_bytes: int = 256 * 1024 - 1024
    batch_bytes: int = MiB
    page_size: int = 500
    event_namespaces: tuple[str, ...] = ()  # () = cluster-wide
    list_from: str = "etcd"
    own_events: str = "warnings"
    cronjob_name: str = DEFAULT_CRONJOB_NAME
    pod_name: str = ""  # HOSTNAME, the running Pod's name in a cluster: not a setting, the job's identity
    from_cluster: bool = False
    api_timeout: float = 30.0
    push_format: str = "json"
    push_timeout: float = 15.0
    retry_budget: float = 120.0
    pushgateway_url: str = ""
    log_format: str = "json"
    log_level: str = "INFO"
    output: str = "text"
    # plan
    schedule: str = "*/10 * * * *"
    events_per_hour: int = 10_000
    active_deadline: float = 540.0  # the CronJob's activeDeadlineSeconds
    deadline: float = 0.0  # the run's own: it stops itself (outcome "deadline") once this long has passed
    # manifest
    manifest_file: str = "cronjob.yaml"

    def secrets(self) -> list[str]:
        """Values that must never reach a log line, a summary or an exception message."""
        # The tenant too: the README promises X-Scope-OrgID is never printed, and it often sits in
        # the same Secret as the password.
        found = [self.loki_password, self.tenant, *(tenant for _, tenant in self.tenant_map)]
        creds = [(self.loki_username, self.loki_password)] if self.loki_password else []
        for url in (self.loki_url, self.pushgateway_url):
            parts = urlsplit(url)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
                creds.append((unquote(parts.username or ""), unquote(parts.password)))
        # A gateway that echoes request headers in its error body sends basic auth back base64-encoded.
        for user, password in creds:
            found.append(base64.b64encode(f"{user}:{password}".encode("latin-1", "replace")).decode())
        if self.loki_bearer_token_file:
            try:
                with open(self.loki_bearer_token_file, encoding="utf-8") as f:
                    found.append(f.read().strip())
            except OSError:
                pass
        return [s for s in found if len(s) >= 3]


class UsageError(Exception):
    """A bad flag or environment value: exit 2 with a one-line message."""


# --- value parsers: raise ArgumentTypeError with the expected format -----------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """'30s', '1h30m', '2h' -> seconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text.strip()):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text.strip()) or total <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h or 1h30m")
    return total


def at_most(limit_s: float, shown: str, least_s: float = 0.0) -> Any:
    """A duration type bounded to [least_s, limit_s]: an absurd value is a usage error, not an overflow later."""
    def check(text: str) -> float:
        value = duration(text)
        if value > limit_s:
            raise argparse.ArgumentTypeError(f"{text!r} is longer than the {shown} this setting allows")
        if value < least_s:
            raise argparse.ArgumentTypeError(f"{text!r} is shorter than the {least_s:g}s this setting needs")
        return value

    check.__name__ = "duration"
    return check


_DAY = 86_400.0
_MAX_WINDOW_S = 3650 * _DAY  # --since/--until: 10 years back is any cluster's whole history


def time_or_duration(text: str) -> str:
    """--since/--until: a duration ago or an RFC3339 time; validated here, resolved against the clock later."""
    try:
        value = duration(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        if value > _MAX_WINDOW_S:
            raise argparse.ArgumentTypeError(f"{text!r} reaches back more than 10 years (3650d); use a shorter window")
        return text
    try:
        parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (2h, 30m) nor an RFC3339 time (2026-11-25T10:00:00Z)"
        ) from None
    return text


def parse_rfc3339(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("no timezone")
    return value


def resolve_time(text: str, now: dt.datetime) -> dt.datetime:
    try:
        return now - dt.timedelta(seconds=duration(text))
    except argparse.ArgumentTypeError:
        return parse_rfc3339(text)


def shown_url(text: str) -> str:
    """Scheme, host and port of a URL, and nothing else: safe to print whatever the URL holds.

    Never raises. The host is what follows the last '@' of the authority, so a password with a raw
    '@' or '/' still shows no part of itself.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "<not a URL>"
    if "@" in rest:
        rest = rest.rpartition("@")[2]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return f"{scheme.lower()}://{host}" if scheme.isascii() and scheme.isalpha() else "<not a URL>"


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return shown_url(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


_URL_HINT = "use e.g. http://loki-gateway.monitoring:80"


def http_url(text: str) -> str:
    """An http(s) URL, parsed strictly so that what is sent is what was meant.

    User info (user:password@) must be percent-encoded: a raw '@', '/', '?' or '#' in it makes the
    host ambiguous (urlsplit and urllib3 would each guess), so it is refused, and the error shows
    only the scheme, host and port. Whitespace and control characters are refused too: urllib
    would fail on them later, after the sync, instead of now.
    """
    shown = shown_url(text)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise argparse.ArgumentTypeError(
            f"the URL {shown} holds a space or control character; percent-encode it (%20) or remove it")
    scheme, sep, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not sep:
        raise argparse.ArgumentTypeError(f"{shown!r} is not an http(s) URL; {_URL_HINT}")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.count("@") > 1 or "@" in rest[len(authority):]:
        raise argparse.ArgumentTypeError(
            f"the user info of the URL {shown} holds a raw '@', '/', '?' or '#': percent-encode them "
            "(%40, %2F, %3F, %23), or use --loki-username/--loki-password")
    try:
        parts = urlsplit(text)
        port = parts.port  # urlsplit parses lazily: a bad port only shows when asked for
    except ValueError as exc:  # 'http://[::1' and friends
        raise argparse.ArgumentTypeError(f"{shown!r} is not a valid URL ({exc}); {_URL_HINT}") from None
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{shown!r} has no host; {_URL_HINT}")
    if port == 0:
        raise argparse.ArgumentTypeError(f"{shown!r} has an invalid port")
    for what, value in (("user name", parts.username), ("password", parts.password)):
        if value and not _latin1(unquote(value)):
            raise argparse.ArgumentTypeError(
                f"the {what} in the URL {shown} has characters outside latin-1, which basic auth cannot "
                "carry; use an ASCII password")
    return text


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _header_safe(text: str) -> bool:
    """An HTTP header can carry it: latin-1 and no control character (CR or LF would smuggle a header)."""
    return _latin1(text) and not any(ord(c) < 32 or ord(c) == 127 for c in text)


# dskit's tenant.ValidTenantID, which Loki applies to X-Scope-OrgID: these characters, at most 150.
_TENANT_RE = re.compile(r"[a-zA-Z0-9!._*'()-]{1,150}")


def _check_tenant(value: str, where: str) -> None:
    """A bad tenant is named by where it came from, never by its value: tenants are secret here."""
    if not _TENANT_RE.fullmatch(value) or value in (".", ".."):
        raise UsageError(
            f"{where} is not a valid Loki tenant ID: use 1 to 150 of the letters, digits and ! - _ . * ' ( ) "
            "(the value is not shown: tenants are treated as secrets)")


def tenant_map(text: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """'regex=tenant,regex2=tenant2' -> ((pattern, tenant), ...), in order (first full match wins).

    A comma inside a regex (a quantifier such as {1,3}) is written '\\,', and unescaped before the
    regex is compiled; the tenant is what follows the last '=', so a regex may hold '=' as is (a
    tenant ID never does).
    """
    pairs: list[tuple[re.Pattern[str], str]] = []
    for item in re.split(r"(?<!\\),", text):
        if not item.strip():
            continue
        pattern, eq, tenant = item.rpartition("=")
        if not eq or not pattern:
            raise argparse.ArgumentTypeError(
                "an entry has no REGEX before '=' or no '=TENANT' (not shown: it may be a tenant); use "
                "NAMESPACE_REGEX=TENANT pairs joined by commas, "
                "e.g. 'team-a-.*=team-a,shop|cart=shop'")
        try:
            _check_tenant(tenant, "a tenant in --tenant-map")
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        compiled = regex(pattern.replace("\\,", ","))
        if compiled is not None:  # always: the pattern is not empty
            pairs.append((compiled, tenant))
    if not pairs:
        raise argparse.ArgumentTypeError("is empty; use NAMESPACE_REGEX=TENANT pairs joined by commas")
    return tuple(pairs)


def label_key(text: str) -> str:
    """A Kubernetes label key: an optional DNS-subdomain prefix and '/', then a name of up to 63."""
    if not re.fullmatch(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", text) or len(text) > 316:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Kubernetes label key, e.g. example.com/loki-tenant")
    return text


def enrich_what(text: str) -> tuple[str, ...]:
    """--enrich owner,labels: which fields to look up ('' = off)."""
    parts = tuple(sorted({p.strip() for p in text.split(",") if p.strip()}))
    for p in parts:
        if p not in ("owner", "labels"):
            raise argparse.ArgumentTypeError(f"{p!r} is not owner or labels; use owner, labels or owner,labels")
    return parts


def label_keys(text: str) -> tuple[str, ...]:
    """A comma-separated list of Kubernetes label (or annotation) keys, in the order given."""
    return tuple(dict.fromkeys(label_key(k.strip()) for k in text.split(",") if k.strip()))


def existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a readable file")
    return text


def state_url(text: str) -> str:
    parts = urlsplit(text)
    ok = {
        "configmap": bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", parts.netloc))
        and bool(re.fullmatch(r"/[a-z0-9]([-.a-z0-9]*[a-z0-9])?", parts.path)),
        "s3": bool(parts.netloc) and len(parts.path) > 1,
        "file": bool(parts.netloc + parts.path),
    }.get(parts.scheme, False)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a checkpoint URL; use configmap://NAMESPACE/NAME, s3://BUCKET/KEY or file://PATH"
        )
    return text


def k8s_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Kubernetes name (lower case, digits, '-', '.')")
    return text


MAX_REGEX_CHARS = 1000  # a filter names namespaces, reasons, types or kinds; longer is a mistake


def regex(text: str) -> re.Pattern[str] | None:
    """A full-match filter; '' is no filter (unset), never "match only empty values"."""
    if text == "":
        return None
    if len(text) > MAX_REGEX_CHARS:
        raise argparse.ArgumentTypeError(f"a regular expression of {len(text)} characters is longer than the "
                                         f"{MAX_REGEX_CHARS} allowed; list fewer alternatives")
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a valid regular expression: {exc}") from None
    except (OverflowError, RecursionError, MemoryError) as exc:  # e.g. a{4294967296}, or nesting too deep
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is too large a regular expression ({exc}); "
                                         "use smaller repetition counts") from None


def field_selector(text: str) -> str:
    """Check the syntax locally so a typo fails fast; the API server still judges the field names."""
    for term in re.split(r"(?<!\\),", text):
        if term and not re.fullmatch(r"[A-Za-z.]+\s*(==|!=|=)\s*(\\[,=\\]|[^,=\\])*", term.strip()):
            raise argparse.ArgumentTypeError(
                f"{term!r} is not a field selector term; use field=value, field==value or field!=value, "
                "joined by commas, e.g. type=Warning,involvedObject.kind!=Pod"
            )
    return text


def namespace_list(text: str) -> tuple[str, ...]:
    """--event-namespaces a,b,c: each a namespace name (DNS-1123 label), no repeats."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n):
            raise argparse.ArgumentTypeError(f"{n!r} is not a namespace name;"
                                             " use e.g. --event-namespaces team-a,team-b")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a namespace twice")
    return names


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def byte_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|Ki|Mi|K|M)?", text.strip())
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; use e.g. 262144, 256KiB or 1MiB")
    mult = {"KiB": 1024, "Ki": 1024, "K": 1024, "MiB": MiB, "Mi": MiB, "M": MiB}.get(m.group(2) or "", 1)
    return int(m.group(1)) * mult


# Room for every field but the message of any real Event (a typical line without its message is about
# 500 bytes), so a truncated line is still JSON and keeps its uid. Only names near the API's 253-char
# limit in every field at once would not fit; Loki's own limit is 256 KiB.
MIN_LINE_BYTES = 1024


def line_size(text: str) -> int:
    value = byte_size(text)
    if value < MIN_LINE_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is below the {MIN_LINE_BYTES}-byte minimum (1KiB): a shorter "
                                         "line cannot hold the event's fields and its uid")
    return value


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def choice(*options: str) -> Any:
    def check(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return check


# --- the parser ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see --help)")


ENV_PREFIX = "LOKI_EVENT_SYNC_"
_ECOSYSTEM_VARS = {"kubeconfig": "KUBECONFIG"}


def env_var(flag: str) -> str:
    """The environment variable behind --flag."""
    return _ECOSYSTEM_VARS.get(flag) or ENV_PREFIX + flag.upper().replace("-", "_")


@dataclass(frozen=True)
class Flag:
    """One setting: --name, its environment variable env_var(name), its default and its value type.

    ``show`` is the default as --help states it; ``switch`` is an on/off flag; ``env=False`` (with
    ``required``) is a per-invocation value that no environment variable may set.
    """

    name: str
    help: str
    default: Any = ""
    type: Callable[[str], Any] | None = None
    show: Any = None
    switch: bool = False
    env: bool = True
    required: bool = False


def _switch(name: str, help: str) -> Flag:
    return Flag(name, help, False, switch=True)


_TTL = Flag("event-ttl", "the API server's --event-ttl (at most 30d); sets the gap warning and when out-of-scope "
            "ledger entries are forgotten", 3600.0, at_most(30 * _DAY, "30d"), "1h")
_PAGE_SIZE = Flag("page-size", "events per list page", 500, positive_int)
_LIST_FROM = Flag("list-from", "etcd: every list reads the most recent data from etcd; cache: the API server's watch "
                  "cache serves it (resourceVersionMatch=NotOlderThan the previous run's list), cheaper for the API "
                  "server and etcd, see docs/performance.md", "etcd", choice("etcd", "cache"))
_OUTPUT = Flag("output", "text or json", "text", choice("text", "json"))
_CRONJOB = Flag("cronjob-name", "the job's CronJob, in the job's namespace, whose Jobs and Pods are its own",
                DEFAULT_CRONJOB_NAME, k8s_name)
_WINDOW = ("window", (Flag("since", "window start: 2h or RFC3339", None, time_or_duration, env=False, required=True),
                      Flag("until", "window end (default: now)", None, time_or_duration, env=False)))

LOGGING: tuple[str, tuple[Flag, ...]] = ("logging", (
    Flag("log-format", "log as one JSON object per line, or text for a terminal", "json", choice("json", "text")),
    Flag("log-level", "DEBUG, INFO, WARNING or ERROR", "INFO", choice("DEBUG", "INFO", "WARNING", "ERROR")),
))
KUBERNETES: tuple[str, tuple[Flag, ...]] = ("kubernetes", (
    Flag("kubeconfig", "kubeconfig file, used when not running in a cluster", show="in-cluster, then ~/.kube/config"),
    Flag("context", "kubeconfig context", show="the current context"),
    Flag("namespace", "the job's own namespace, for the Lease and the default checkpoint ConfigMap", "", k8s_name,
         f"the service account's in a cluster, else {DEFAULT_NAMESPACE} (never the kubeconfig context's)"),
    Flag("api-timeout", "timeout of each Kubernetes API call (at most 1h)", 30.0, at_most(3600, "1h"), "30s"),
))
CHECKPOINT: tuple[str, tuple[Flag, ...]] = ("checkpoint", (
    Flag("state", "checkpoint store: configmap://NAMESPACE/NAME, s3://BUCKET/KEY or file://PATH", "", state_url,
         f"configmap://<namespace>/{DEFAULT_CHECKPOINT_CONFIGMAP}, in a cluster and off it; a local file only when "
         "asked for; none for --from-file --dry-run"),
    Flag("s3-endpoint-url", "S3-compatible endpoint (MinIO ...); credentials come from boto3's chain", "", http_url,
         "AWS"),
))
LOKI: tuple[str, tuple[Flag, ...]] = ("loki", (
    Flag("loki-url", "Loki base URL (/loki/api/v1/push is appended) or the full push URL ending in /loki/api/v1/push",
         "", http_url, "none, required unless --dry-run"),
    Flag("tenant", "X-Scope-OrgID for multi-tenant Loki: the default tenant, for namespaces no --tenant-map or "
         "--tenant-label entry names", show="none"),
    Flag("tenant-map", "route namespaces to tenants: 'REGEX=TENANT,REGEX2=TENANT2', each regex fully matching the "
         "namespace, first match wins; a comma inside a regex is written \\,", None, tenant_map, "none"),
    Flag("tenant-label", "namespace label naming the tenant for that namespace's events (opt-in: needs list on "
         "namespaces); beats --tenant-map", "", label_key, "none"),
    Flag("loki-username", "basic auth user for a Loki gateway", show="none"),
    Flag("loki-password", "basic auth password (prefer the env var or a Secret)", show="none"),
    Flag("loki-bearer-token-file", "file holding a bearer token, re-read on every push", show="none"),
    Flag("loki-ca-file", "CA bundle for Loki's TLS certificate", "", existing_file, "system CAs"),
    _switch("insecure-skip-tls-verify", "do not verify Loki's TLS certificate (logs a warning)"),
    Flag("push-format", "json (gzip level 1) or protobuf (Loki's native logproto with snappy, as Promtail and "
         "Alloy send)", "json", choice("json", "protobuf")),
    Flag("push-timeout", "timeout of one push request (at most 1h)", 15.0, at_most(3600, "1h"), "15s"),
    Flag("retry-budget", "give up retrying 429/5xx/connection errors after this long (at most 1d)", 120.0,
         at_most(_DAY, "1d"), "2m"),
    Flag("batch-bytes", "uncompressed size limit of one push", MiB, byte_size, "1MiB"),
    Flag("max-line-bytes", "longer lines are truncated with a marker (at least 1KiB)", 256 * 1024 - 1024,
         line_size, "255KiB"),
    Flag("label-style", "stream labels: default (cluster, namespace, type, kind, job), seed (_host, _namespace, "
         "_type, _kind as LokiEventCollector) or alloy (job, instance, namespace as Alloy's "
         "loki.source.kubernetes_events); each adds level and service_name", "default",
         choice("default", "seed", "alloy")),
    Flag("line-format", "json, logfmt, seed (LokiEventCollector's Key:value text) or alloy (Alloy's logfmt keys)",
         "json", choice("json", "logfmt", "seed", "alloy")),
    _switch("structured-metadata", "also send name, uid, reason, node, object_uid and api_version as structured "
            "metadata (Loki >= 3)"),
    Flag("cluster", "value of the cluster label", show="none (no label)"),
))
ENRICH: tuple[str, tuple[Flag, ...]] = ("enrich (the involved object's workload and labels, docs/kubernetes.md)", (
    Flag("enrich", "look up each shipped occurrence's involved object: owner (its top controller: workload_kind, "
         "workload_name), labels (--enrich-labels), or owner,labels; needs get on the workload kinds "
         "(deploy/components/enrich-rbac)", (), enrich_what, "off"),
    Flag("enrich-labels", "labels of the involved object to send as label_<name>, e.g. app.kubernetes.io/name,team",
         (), label_keys, "none"),
    Flag("enrich-annotations", "annotations of the involved object to send as annotation_<name>, each named (never "
         "all: they carry last-applied configurations and sometimes secrets)", (), label_keys, "none"),
    Flag("enrich-index-labels", f"at most {ENRICH_MAX_INDEX_LABELS} enrich fields to make stream labels too, e.g. "
         "workload_name (each multiplies the streams: README, \"Which workload\")", (), label_keys,
         "none (structured metadata and the line only)"),
    Flag("enrich-max-requests", "API requests the lookups may make per run; the rest ship without the fields",
         ENRICH_MAX_REQUESTS, positive_int, f"{ENRICH_MAX_REQUESTS}, a fifth of a run's requests at 10,000 events/h"),
))
EVENTS: tuple[str, tuple[Flag, ...]] = ("events", (
    Flag("field-selector", "server-side field selector, e.g. type=Warning,involvedObject.kind!=Pod", "",
         field_selector, "none"),
    *(Flag(f"{how}-{what}", f"{verb} events whose {what[:-1]} fully matches this regex ('' = no filter)", None,
           regex, shown)
      for what in ("namespaces", "reasons", "types", "kinds")
      for how, verb, shown in (("include", "ship only", "all"), ("exclude", "skip", "none"))),
    _PAGE_SIZE,
    Flag("event-namespaces", "list events only in these namespaces (comma-separated), each with its own paged list, "
         "so a Role per namespace is enough instead of the ClusterRole", (), namespace_list,
         "all namespaces (cluster-wide list)"),
    _LIST_FROM,
    _TTL,
    Flag("from-file", "read a saved `kubectl get events -A -o json` (or - for stdin) instead of the API",
         show="none"),
    _switch("dry-run", "print the streams and lines that would be pushed; touch nothing"),
    _switch("reset-checkpoint", "ignore an unreadable checkpoint and start over (it is overwritten)"),
    Flag("own-events", "the Events about the job's own CronJob, Jobs and Pods: warnings ships only their Warnings, "
         "all ships them all, none ships none (docs/kubernetes.md)", "warnings", choice(*OWN_EVENTS)),
    _CRONJOB,
    Flag("lease-name", "Lease that keeps two runs from overlapping", DEFAULT_LEASE_NAME, k8s_name),
    Flag("lease-duration", "Lease duration, 1s to 1h; renewed every third of it", 60.0,
         at_most(3600, "1h", least_s=1), "60s"),
    Flag("deadline", "stop a run that is still going after this long (not saving; outcome deadline), before the "
         "CronJob's activeDeadlineSeconds has it killed ('0s' = never; at most 1d)", DEFAULT_DEADLINE_S,
         at_most(_DAY, "1d"), "8m, below the install's activeDeadlineSeconds of 540s"),
    Flag("pushgateway-url", "push run metrics to this Prometheus Pushgateway", "", http_url, "none"),
))
SYNC = (LOGGING, KUBERNETES, CHECKPOINT, LOKI, ENRICH, EVENTS)
# Each command: its help, and the groups of flags it takes.
COMMANDS: dict[str, tuple[str, tuple[tuple[str, tuple[Flag, ...]], ...]]] = {
    "run": ("one sync (the CronJob's command)", (*SYNC, ("first run", (
        Flag("since", "on a first run, ship only events newer than this", "", time_or_duration,
             "everything the API holds"),)))),
    "backfill": ("re-ship a window, even what the ledger says was shipped", (*SYNC, _WINDOW)),
    "status": ("what the checkpoint says", (LOGGING, KUBERNETES, CHECKPOINT, ("status", (_OUTPUT, _TTL)))),
    "plan": ("cost and risk of a schedule (exit 1: not safe)", (LOGGING, KUBERNETES, CHECKPOINT, ("plan", (
        _switch("from-cluster", "measure the inputs: the checkpoint's recent runs and one list of the Events the "
                "API server holds (needs the run's access)"),
        _CRONJOB,
        Flag("schedule", "cron expression", "*/10 * * * *"),
        Flag("events-per-hour", "expected events per hour", 10_000, positive_int),
        _TTL,
        Flag("active-deadline", "the CronJob's activeDeadlineSeconds", 540.0, duration, "540s"),
        _PAGE_SIZE, _LIST_FROM,
        Flag("enrich-max-requests", "--enrich's request budget per run, for what it adds", ENRICH_MAX_REQUESTS,
             positive_int),
        _OUTPUT)))),
    "manifest": ("print a ready backfill Job from cronjob.yaml", (LOGGING, _WINDOW, ("manifest", (
        Flag("manifest-file", "the CronJob manifest to derive it from", "cronjob.yaml"),)))),
}


def _add(p: argparse._ActionsContainer, f: Flag, env: Mapping[str, str]) -> None:
    """Add --name. An environment value stays a string until argparse converts the default, which it
    does only for the command that runs, after --help and --version had their chance."""
    if not f.env:
        p.add_argument(f"--{f.name}", default=f.default, type=f.type or str, required=f.required, help=f.help)
        return
    var = env_var(f.name)
    raw = env.get(var)
    shown = f.default if f.show is None else f.show
    help = f"{f.help} [env {var}; default: {shown}]"
    if f.switch:  # store_true has no type: parse() converts an environment value
        p.add_argument(f"--{f.name}", action="store_true", default=False if raw is None else raw, help=help)
        return
    kind = f.type
    convert = None
    if kind is not None:
        def convert(text: str, _kind: Callable[[str], Any] = kind) -> Any:
            if text == "" and f.default == "":  # "" means unset and is always allowed
                return text
            try:
                return _kind(text)
            except argparse.ArgumentTypeError as exc:
                if raw is not None and text is raw:
                    raise UsageError(f"environment variable {var}: {exc}") from None
                raise
        convert.__name__ = getattr(kind, "__name__", "value")
    p.add_argument(f"--{f.name}", default=f.default if raw is None else raw, type=convert, help=help)


def get_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    root = _Parser(prog="python -m job", description="Ship Kubernetes Events to Loki, once each.")
    root.add_argument("--version", action="version", version=f"loki-event-sync {__version__}")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command, (help, groups) in COMMANDS.items():
        p = sub.add_parser(command, help=help)
        if command == "manifest":
            p.add_argument("kind", choices=["backfill"], help="what to print")
        for title, flags in groups:
            g = p.add_argument_group(title)
            for f in flags:
                _add(g, f, env)
    return root


def _switches(cfg_values: dict[str, Any]) -> None:
    """An on/off setting from the environment, converted now that the command is known."""
    for f in (f for _, groups in COMMANDS.values() for _, flags in groups for f in flags if f.switch):
        key = f.name.replace("-", "_")
        if isinstance(cfg_values.get(key), str):
            try:
                cfg_values[key] = boolean(cfg_values[key])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"environment variable {env_var(f.name)}: {exc}") from None


def _check_enrich(cfg: Config) -> None:
    from job.enrich import field_name

    if len(cfg.enrich_index_labels) > ENRICH_MAX_INDEX_LABELS:
        raise UsageError(f"--enrich-index-labels names {len(cfg.enrich_index_labels)} fields; at most "
                         f"{ENRICH_MAX_INDEX_LABELS} (each multiplies the number of streams)")
    known = {"workload_kind", "workload_name", "workload_namespace", "workload_stop"}
    known |= {field_name("label_", k) for k in cfg.enrich_labels}
    known |= {field_name("annotation_", k) for k in cfg.enrich_annotations}
    for name in cfg.enrich_index_labels:
        if name not in known:
            raise UsageError(f"--enrich-index-labels {name} is not one of the fields --enrich sends: "
                             f"{', '.join(sorted(known))}")
    if bool(cfg.enrich_labels) != ("labels" in cfg.enrich):
        raise UsageError("--enrich labels and --enrich-labels go together: name the labels to copy, e.g. "
                         "--enrich owner,labels --enrich-labels app.kubernetes.io/name,team")
    if (cfg.enrich_annotations or cfg.enrich_index_labels
            or (cfg.enrich_max_requests != ENRICH_MAX_REQUESTS and cfg.command != "plan")) and not cfg.enrich:
        raise UsageError("--enrich-annotations, --enrich-index-labels and --enrich-max-requests need --enrich")


def parse(argv: Sequence[str] | None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    ns = get_parser(env).parse_args(argv)
    values = vars(ns)
    _switches(values)
    filters = Filters(**{k: values.pop(k) for k in list(values) if k.startswith(("include_", "exclude_"))})
    values = {k: v for k, v in values.items() if k in Config.__dataclass_fields__ and v is not None}
    cfg = Config(filters=filters, pod_name=env.get("HOSTNAME", ""), **values)
    if cfg.command in ("run", "backfill") and not cfg.dry_run and not cfg.loki_url:
        raise UsageError(f"--loki-url (or {env_var('loki-url')}) is required;"
                         " or use --dry-run to print what would be pushed")
    if cfg.loki_username and not cfg.loki_password:
        raise UsageError(f"--loki-username needs --loki-password (or {env_var('loki-password')})")
    _check_headers(cfg)
    _check_enrich(cfg)
    if cfg.command == "backfill" and cfg.until:
        now = dt.datetime.now(dt.timezone.utc)
        if resolve_time(cfg.until, now) <= resolve_time(cfg.since, now):
            raise UsageError("--until must be later than --since")
    return cfg


def _check_headers(cfg: Config) -> None:
    """Values that become HTTP headers: a bad one is a configuration error now, not a failed push later.

    requests refuses a header with CR or LF (it could smuggle another header) and encodes basic auth
    as latin-1; both would otherwise surface mid-run as an 'unexpected' error, or be retried.
    """
    if cfg.tenant:
        _check_tenant(cfg.tenant, f"--tenant (or {env_var('tenant')})")
    for flag, value in (("loki-username", cfg.loki_username), ("loki-password", cfg.loki_password)):
        if not _header_safe(value):
            raise UsageError(f"--{flag} (or {env_var(flag)}) holds a control character or a character outside "
                             "latin-1, which basic auth cannot carry (the value is not shown)")
    if ":" in cfg.loki_username:
        raise UsageError("--loki-username cannot hold ':' (basic auth separates user and password with it)")
    if cfg.loki_bearer_token_file:
        try:
            with open(cfg.loki_bearer_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError):
            return  # a projected token may appear later; each push reads it and says what is wrong
        if not valid_token(token):
            raise UsageError(f"--loki-bearer-token-file {cfg.loki_bearer_token_file} holds a line break, a control "
                             "character or a non-latin-1 character inside the token; an HTTP header cannot carry it")


def valid_token(token: str) -> bool:
    """A bearer token an Authorization header can carry (after stripping surrounding whitespace)."""
    return bool(token) and _header_safe(token)
