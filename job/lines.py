"""What an event becomes in Loki: its stream labels, its line and its timestamp.

Lines are deterministic: the same event at the same count always gives the same bytes (fixed key
order, no wall-clock values), so a re-sent entry is an exact duplicate that Loki drops.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

import msgspec

from job.events import Event, to_ns

JOB_LABEL = "loki-event-sync"
_json = msgspec.json.Encoder()

Labels = tuple[tuple[str, str], ...]


def _ts(t: dt.datetime | None) -> str:
    if t is None:
        return ""
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def fields(e: Event, new: int) -> dict[str, object]:
    """Every non-empty field the LokiEventCollector line had, plus count and new occurrences."""
    o = e.involvedObject
    raw: dict[str, object] = {
        "type": e.type,
        "reason": e.reason,
        "kind": o.kind,
        "namespace": e.metadata.namespace,
        "name": o.name,
        "fieldPath": o.fieldPath,
        "message": e.message,
        "component": e.source.component or e.reportingComponent,
        "host": e.source.host,
        "reportingInstance": e.reportingInstance,
        "action": e.action,
        "firstTimestamp": _ts(e.firstTimestamp),
        "lastTimestamp": _ts(e.lastTimestamp),
        "eventTime": _ts(e.eventTime),
        "count": e.occurrences,
        "new": new,
        "event": e.metadata.name,
        "uid": e.metadata.uid,
    }
    return {k: v for k, v in raw.items() if v != ""}


def json_line(f: dict[str, object]) -> str:
    return _json.encode(f).decode()


def logfmt_line(f: dict[str, object]) -> str:
    out = []
    for k, v in f.items():
        s = str(v)
        if not s or any(c in s for c in ' "=\\') or not s.isprintable():
            s = _json.encode(s).decode()  # JSON string quoting is a valid logfmt quoting
        out.append(f"{k}={s}")
    return " ".join(out)


_SEED_KEYS = {
    "type": "Type", "reason": "Reason", "kind": "Kind", "namespace": "Namespace", "name": "Name",
    "fieldPath": "FieldPath", "message": "Message", "component": "Component", "host": "Host",
    "firstTimestamp": "FirstTimestamp", "lastTimestamp": "LastTimestamp", "eventTime": "EventTime",
    "count": "Count", "new": "New",
}


def seed_line(f: dict[str, object]) -> str:
    """LokiEventCollector's `Key:value, ` text."""
    return ", ".join(f"{_SEED_KEYS[k]}:{v}" for k, v in f.items() if k in _SEED_KEYS)


FORMATTERS: dict[str, Callable[[dict[str, object]], str]] = {
    "json": json_line, "logfmt": logfmt_line, "seed": seed_line,
}


class Formatter:
    """Turns an event into (labels, ts_ns, line, structured metadata)."""

    def __init__(self, *, label_style: str, line_format: str, cluster: str, max_line_bytes: int,
                 structured_metadata: bool) -> None:
        self.seed = label_style == "seed"
        self.cluster = cluster
        self.format = FORMATTERS[line_format]
        self.max_line_bytes = max_line_bytes
        self.structured_metadata = structured_metadata
        self.truncated = 0

    def labels(self, e: Event, backfill: str = "") -> Labels:
        if self.seed:
            base: Labels = (("_host", e.source.host), ("_namespace", e.metadata.namespace),
                            ("_type", e.type), ("_kind", e.involvedObject.kind))
        else:
            base = (("cluster", self.cluster), ("job", JOB_LABEL), ("namespace", e.metadata.namespace),
                    ("type", e.type), ("kind", e.involvedObject.kind))
        if backfill:
            base += (("backfill", backfill),)
        # Loki drops empty values itself; dropping them here keeps our stream keys equal to Loki's.
        return tuple((k, _label_value(v)) for k, v in base if v)

    def line(self, e: Event, new: int) -> str:
        f = fields(e, new)
        line = self.format(f)
        size = len(line.encode())
        if size > self.max_line_bytes:
            line = self._truncate(f, size)
        return line

    def _truncate(self, f: dict[str, object], size: int) -> str:
        """Cut the message, not the event: the line stays parseable and says how much was cut."""
        self.truncated += 1
        msg = str(f.get("message", "")).encode()
        excess = size - self.max_line_bytes
        for _ in range(3):  # quoting can change the size a little; converge in a step or two
            keep = max(len(msg) - excess - 64, 0)
            f["message"] = msg[:keep].decode(errors="ignore") + f"…[truncated {len(msg) - keep} bytes]"
            line = self.format(f)
            size = len(line.encode())
            if size <= self.max_line_bytes:
                return line
            excess += size - self.max_line_bytes
        return line.encode()[: self.max_line_bytes].decode(errors="ignore")

    def metadata(self, e: Event) -> dict[str, str] | None:
        if not self.structured_metadata:
            return None
        md = {"name": e.involvedObject.name, "uid": e.metadata.uid, "reason": e.reason, "node": e.source.host}
        return {k: v for k, v in md.items() if v}

    @staticmethod
    def ts(e: Event) -> int:
        t = e.time
        assert t is not None  # decode_page rejects events without any time
        return to_ns(t)


def _label_value(v: str) -> str:
    # Loki refuses values over 2048 bytes for the whole request; Kubernetes names never get close.
    return v if len(v) <= 512 else v[:512]
