"""What an event becomes in Loki: its stream labels, its line and its timestamp.

Lines are deterministic: the same event at the same count always gives the same bytes (fixed key
order, times as the API wrote them, no wall-clock values), so a re-sent entry is an exact
duplicate that Loki drops.

Label styles (docs/migration.md has the cardinality of each):
- default: cluster, job="loki-event-sync", namespace, type, kind.
- seed: _host, _namespace, _type, _kind, as LokiEventCollector.
- alloy: job="loki.source.kubernetes_events", instance, namespace (the involved object's), as Grafana
  Alloy's loki.source.kubernetes_events writes them, plus cluster when set.
Every style adds `level` (Normal -> info, Warning -> warning) and `service_name`, so Loki neither
guesses the level from the words of a message nor files the streams under unknown_service.
"""
from __future__ import annotations

from typing import Any, Callable

import msgspec

from job.events import Event

JOB_LABEL = "loki-event-sync"
# Alloy's defaults (internal/component/loki/source/kubernetes_events, docs/migration.md): its job label,
# and the service_name Loki derives from that job label when nothing else names the service.
ALLOY_JOB = "loki.source.kubernetes_events"
# Alloy sets instance to its component ID (loki.source.kubernetes_events.<label>); ours differs on
# purpose, so streams of both stay apart while they run side by side during a migration.
ALLOY_INSTANCE = "loki-event-sync"
LABEL_STYLES = ("default", "seed", "alloy")
SERVICE_NAMES = {"default": JOB_LABEL, "seed": JOB_LABEL, "alloy": ALLOY_JOB}
# Loki's level names (detected_level); any other type is "unknown", as Loki says itself.
LEVELS = {"Normal": "info", "Warning": "warning"}

Labels = tuple[tuple[str, str], ...]


class Line(msgspec.Struct, omit_defaults=True):
    """Every non-empty field the LokiEventCollector line had, plus count and new occurrences.

    Field order is the key order in the JSON line; empty values are left out.
    """

    type: str = ""
    reason: str = ""
    kind: str = ""
    namespace: str = ""
    name: str = ""
    fieldPath: str = ""
    message: str = ""
    component: str = ""
    host: str = ""
    reportingInstance: str = ""
    action: str = ""
    firstTimestamp: str = ""
    lastTimestamp: str = ""
    eventTime: str = ""
    count: int = 0
    new: int = 0
    event: str = ""
    uid: str = ""
    # The involved object's API version and uid, last so older lines keep their key order.
    apiVersion: str = ""
    objectUID: str = ""


FIELDS = Line.__struct_fields__


def to_line(e: Event, new: int) -> Line:
    # Positional, in Line's field order: on the hot path keywords cost a third more.
    o, src, m = e.obj, e.src, e.meta
    return Line(
        e.type or "", e.reason or "", o.kind or "", m.namespace or "", o.name or "", o.fieldPath or "",
        e.message or "", src.component or e.reportingComponent or "", src.host or "", e.reportingInstance or "",
        e.action or "", e.firstTimestamp or "", e.lastTimestamp or "", e.eventTime or "", e.occurrences, new,
        m.name or "", m.uid or "", o.apiVersion or "", o.uid or "",
    )


class AlloyLine(msgspec.Struct, omit_defaults=True):
    """The fields of Alloy's logfmt line, in its order, then ours (new, uid, objectUID) before msg.

    Alloy writes `count` only when the deprecated count field is set; ours is always the occurrence
    count (series.count, else count), so series events are counted too. `message` is written as msg.
    Alloy's eventRV is left out on purpose: the Event's resourceVersion moves on writes that change
    no count, so a line re-sent after a crash would differ and Loki would keep both copies.
    """

    name: str = ""
    kind: str = ""
    action: str = ""
    objectAPIversion: str = ""
    objectRV: str = ""
    reportinginstance: str = ""
    reportingcontroller: str = ""
    sourcecomponent: str = ""
    sourcehost: str = ""
    reason: str = ""
    type: str = ""
    count: int = 0
    new: int = 0
    uid: str = ""
    objectUID: str = ""
    message: str = ""


ALLOY_FIELDS = tuple("msg" if k == "message" else k for k in AlloyLine.__struct_fields__)


def to_alloy_line(e: Event, new: int) -> AlloyLine:
    o, src, m = e.obj, e.src, e.meta
    return AlloyLine(
        o.name or "", o.kind or "", e.action or "", o.apiVersion or "", o.resourceVersion or "",
        e.reportingInstance or "", e.reportingComponent or "", src.component or "",
        src.host or "", e.reason or "", e.type or "", e.occurrences, new, m.uid or "", o.uid or "",
        e.message or "",
    )


_encode = msgspec.json.Encoder().encode


def json_line(f: Line | dict[str, object]) -> str:
    return _encode(f).decode()


def _present(f: Line) -> list[tuple[str, object]]:
    return [(k, v) for k in FIELDS if (v := getattr(f, k)) not in ("", 0)]


def logfmt_line(f: Line) -> str:
    return logfmt_pairs(_present(f))


def logfmt_pairs(pairs: Any) -> str:
    out = []
    for k, v in pairs:
        s = str(v)
        if any(c in s for c in ' "=\\') or not s.isprintable():
            s = _encode(s).decode()  # JSON string quoting is valid logfmt quoting
        out.append(f"{k}={s}")
    return " ".join(out)


_SEED_KEYS = {
    "type": "Type", "reason": "Reason", "kind": "Kind", "namespace": "Namespace", "name": "Name",
    "fieldPath": "FieldPath", "message": "Message", "component": "Component", "host": "Host",
    "firstTimestamp": "FirstTimestamp", "lastTimestamp": "LastTimestamp", "eventTime": "EventTime",
    "count": "Count", "new": "New", "apiVersion": "APIVersion", "objectUID": "ObjectUID",
}


def seed_line(f: Line) -> str:
    """LokiEventCollector's `Key:value, ` text."""
    return ", ".join(f"{_SEED_KEYS[k]}:{v}" for k, v in _present(f) if k in _SEED_KEYS)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """Go's strconv.Quote (Alloy writes msg with %q), so the same message gives the same text."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = []
    for c in s:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


_NEEDS_QUOTES = ' "=\\'


def alloy_line(f: AlloyLine) -> str:
    """Alloy's `key=value` text: values bare, as Alloy writes them, quoted only where a bare one would
    not parse back (Alloy would write those broken); msg always quoted."""
    out = []
    for k in AlloyLine.__struct_fields__:
        v = getattr(f, k)
        if k == "message":
            out.append(f"msg={go_quote(v)}")
        elif v not in ("", 0):
            s = str(v)
            if any(c in s for c in _NEEDS_QUOTES) or not s.isprintable():
                s = go_quote(s)
            out.append(f"{k}={s}")
    return " ".join(out)


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "json": json_line, "logfmt": logfmt_line, "seed": seed_line, "alloy": alloy_line,
}
LINE_FORMATS = tuple(FORMATTERS)


class Formatter:
    """Turns an event into its labels, line and structured metadata."""

    def __init__(self, *, label_style: str, line_format: str, cluster: str, max_line_bytes: int,
                 structured_metadata: bool) -> None:
        self.style = label_style
        self.seed = label_style == "seed"
        self.alloy = label_style == "alloy"
        self.service_name = SERVICE_NAMES[label_style]
        # Under the default and seed styles type is a label already, so a level label adds no stream.
        # Alloy's streams have no type label: there level would double them, unless it can ride along
        # as structured metadata.
        self.level_in_metadata = self.alloy and structured_metadata
        self.cluster = cluster
        self.format = FORMATTERS[line_format]
        self._to_line: Callable[[Event, int], Any] = to_alloy_line if line_format == "alloy" else to_line
        self.max_line_bytes = max_line_bytes
        self.structured_metadata = structured_metadata
        self.truncated = 0
        self._labels: dict[tuple[str, ...], Labels] = {}  # few distinct label sets, many events

    def labels(self, e: Event, backfill: str = "") -> Labels:
        if self.alloy:  # Alloy labels the involved object's namespace (none for a Node), not the event's
            return self.stream(e.obj.namespace or "", e.type or "", "", "", backfill)
        return self.stream(e.meta.namespace or "", e.type or "", e.obj.kind or "",
                           (e.src.host or "") if self.seed else "", backfill)

    def stream(self, namespace: str, type_: str, kind: str, host: str = "", backfill: str = "") -> Labels:
        """The stream labels in the chosen style, for events and for the job's own marker lines."""
        key = (namespace, type_, kind, host, backfill)
        found = self._labels.get(key)
        if found is None:
            level = (LEVELS.get(type_, "unknown") if type_ else "")
            if self.seed:
                base: Labels = (("_host", host), ("_namespace", namespace), ("_type", type_), ("_kind", kind),
                                ("level", level))
            elif self.alloy:
                base = (("cluster", self.cluster), ("job", ALLOY_JOB), ("instance", ALLOY_INSTANCE),
                        ("namespace", namespace), ("level", "" if self.level_in_metadata else level))
            else:
                base = (("cluster", self.cluster), ("job", JOB_LABEL), ("namespace", namespace), ("type", type_),
                        ("kind", kind), ("level", level))
            base += (("service_name", self.service_name),)
            if backfill:
                base += (("backfill", backfill),)
            # Loki drops empty values itself; dropping them here keeps our stream keys equal to Loki's.
            found = self._labels[key] = tuple((k, _label_value(v)) for k, v in base if v)
        return found

    def line(self, e: Event, new: int, extra: Labels = ()) -> str:
        """The line; ``extra`` (--enrich's fields) is appended as more keys of the json and logfmt formats."""
        f = self._to_line(e, new)
        line = self.format(f)
        tail = self._tail(extra) if extra else ""
        limit = self.max_line_bytes - len(tail.encode()) if tail else self.max_line_bytes
        if (len(line) + len(tail)) * 4 > self.max_line_bytes:  # only then can the UTF-8 size be over the limit
            size = len(line.encode())
            if size > limit:
                line = self._truncate(f, size, limit)
        if not tail:
            return line
        if self.format is json_line:
            return line[:-1] + ("," if len(line) > 2 else "") + tail + "}"
        return f"{line} {tail}" if line else tail

    def _tail(self, extra: Labels) -> str:
        if self.format is json_line:
            return ",".join(f"{_encode(k).decode()}:{_encode(v).decode()}" for k, v in extra)
        if self.format is logfmt_line:
            return logfmt_pairs(extra)
        return ""  # seed and alloy keep the other tools' exact keys

    def _truncate(self, f: Line | AlloyLine, size: int, limit: int) -> str:
        """Cut the message, not the event: the line stays parseable and says how much was cut."""
        self.truncated += 1
        msg = f.message.encode()
        excess = size - limit
        for _ in range(4):  # escaping can change the size a little; converge in a step or two
            keep = max(len(msg) - excess - 64, 0)
            f.message = msg[:keep].decode(errors="ignore") + f"…[truncated {len(msg) - keep} bytes]"
            line = self.format(f)
            size = len(line.encode())
            if size <= limit:
                return line
            excess += size - limit
        return line.encode()[: max(limit, 0)].decode(errors="ignore")

    def metadata(self, e: Event, extra: Labels = ()) -> dict[str, str] | None:
        """Structured metadata: --structured-metadata's fields, then --enrich's (always metadata)."""
        md: dict[str, str | None] = {}
        if self.structured_metadata:
            md = {"name": e.obj.name, "uid": e.meta.uid, "reason": e.reason, "node": e.src.host,
                  "object_uid": e.obj.uid, "api_version": e.obj.apiVersion}
            if self.level_in_metadata and e.type:
                md["level"] = LEVELS.get(e.type, "unknown")
        md.update(extra)
        return {k: v for k, v in md.items() if v} or None


def _label_value(v: str) -> str:
    # Loki refuses a value over 2048 bytes (the whole stream); Kubernetes names never get close.
    return v.encode()[:2048].decode(errors="ignore")
