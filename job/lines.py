"""What an event becomes in Loki: its stream labels, its line and its timestamp.

Lines are deterministic: the same event at the same count always gives the same bytes (fixed key
order, times as the API wrote them, no wall-clock values), so a re-sent entry is an exact
duplicate that Loki drops.
"""
from __future__ import annotations

from typing import Callable

import msgspec

from job.events import Event

JOB_LABEL = "loki-event-sync"

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


FIELDS = Line.__struct_fields__


def to_line(e: Event, new: int) -> Line:
    # Positional, in Line's field order: on the hot path keywords cost a third more.
    o, src, m = e.obj, e.src, e.meta
    return Line(
        e.type or "", e.reason or "", o.kind or "", m.namespace or "", o.name or "", o.fieldPath or "",
        e.message or "", src.component or e.reportingComponent or "", src.host or "", e.reportingInstance or "",
        e.action or "", e.firstTimestamp or "", e.lastTimestamp or "", e.eventTime or "", e.occurrences, new,
        m.name or "", m.uid or "",
    )


_encode = msgspec.json.Encoder().encode


def json_line(f: Line | dict[str, object]) -> str:
    return _encode(f).decode()


def _present(f: Line) -> list[tuple[str, object]]:
    return [(k, v) for k in FIELDS if (v := getattr(f, k)) not in ("", 0)]


def logfmt_line(f: Line) -> str:
    out = []
    for k, v in _present(f):
        s = str(v)
        if any(c in s for c in ' "=\\') or not s.isprintable():
            s = _encode(s).decode()  # JSON string quoting is valid logfmt quoting
        out.append(f"{k}={s}")
    return " ".join(out)


_SEED_KEYS = {
    "type": "Type", "reason": "Reason", "kind": "Kind", "namespace": "Namespace", "name": "Name",
    "fieldPath": "FieldPath", "message": "Message", "component": "Component", "host": "Host",
    "firstTimestamp": "FirstTimestamp", "lastTimestamp": "LastTimestamp", "eventTime": "EventTime",
    "count": "Count", "new": "New",
}


def seed_line(f: Line) -> str:
    """LokiEventCollector's `Key:value, ` text."""
    return ", ".join(f"{_SEED_KEYS[k]}:{v}" for k, v in _present(f) if k in _SEED_KEYS)


FORMATTERS: dict[str, Callable[[Line], str]] = {"json": json_line, "logfmt": logfmt_line, "seed": seed_line}


class Formatter:
    """Turns an event into its labels, line and structured metadata."""

    def __init__(self, *, label_style: str, line_format: str, cluster: str, max_line_bytes: int,
                 structured_metadata: bool) -> None:
        self.seed = label_style == "seed"
        self.cluster = cluster
        self.format = FORMATTERS[line_format]
        self.max_line_bytes = max_line_bytes
        self.structured_metadata = structured_metadata
        self.truncated = 0
        self._labels: dict[tuple[str, ...], Labels] = {}  # few distinct label sets, many events

    def labels(self, e: Event, backfill: str = "") -> Labels:
        return self.stream(e.meta.namespace or "", e.type or "", e.obj.kind or "",
                           (e.src.host or "") if self.seed else "", backfill)

    def stream(self, namespace: str, type_: str, kind: str, host: str = "", backfill: str = "") -> Labels:
        """The stream labels in the chosen style, for events and for the job's own marker lines."""
        key = (namespace, type_, kind, host, backfill)
        found = self._labels.get(key)
        if found is None:
            if self.seed:
                base: Labels = (("_host", host), ("_namespace", namespace), ("_type", type_), ("_kind", kind))
            else:
                base = (("cluster", self.cluster), ("job", JOB_LABEL), ("namespace", namespace), ("type", type_),
                        ("kind", kind))
            if backfill:
                base += (("backfill", backfill),)
            # Loki drops empty values itself; dropping them here keeps our stream keys equal to Loki's.
            found = self._labels[key] = tuple((k, _label_value(v)) for k, v in base if v)
        return found

    def line(self, e: Event, new: int) -> str:
        f = to_line(e, new)
        line = self.format(f)
        if len(line) * 4 > self.max_line_bytes:  # only then can the UTF-8 size be over the limit
            size = len(line.encode())
            if size > self.max_line_bytes:
                line = self._truncate(f, size)
        return line

    def _truncate(self, f: Line, size: int) -> str:
        """Cut the message, not the event: the line stays parseable and says how much was cut."""
        self.truncated += 1
        msg = f.message.encode()
        excess = size - self.max_line_bytes
        for _ in range(4):  # escaping can change the size a little; converge in a step or two
            keep = max(len(msg) - excess - 64, 0)
            f.message = msg[:keep].decode(errors="ignore") + f"…[truncated {len(msg) - keep} bytes]"
            line = self.format(f)
            size = len(line.encode())
            if size <= self.max_line_bytes:
                return line
            excess += size - self.max_line_bytes
        return line.encode()[: self.max_line_bytes].decode(errors="ignore")

    def metadata(self, e: Event) -> dict[str, str] | None:
        if not self.structured_metadata:
            return None
        md = {"name": e.obj.name, "uid": e.meta.uid, "reason": e.reason, "node": e.src.host}
        return {k: v for k, v in md.items() if v}


def _label_value(v: str) -> str:
    # Loki refuses a value over 2048 bytes (the whole stream); Kubernetes names never get close.
    return v.encode()[:2048].decode(errors="ignore")
