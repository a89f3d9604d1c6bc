"""Decoding core/v1 Events: only the fields the job uses, straight from the API's bytes.

Typed decoding into Structs is several times faster than json.loads of the whole answer,
because msgspec skips the fields we do not declare (managedFields, annotations, ...).
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import msgspec

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class Meta(msgspec.Struct, omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    creationTimestamp: dt.datetime | None = None


class ObjectRef(msgspec.Struct, omit_defaults=True):
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    apiVersion: str = ""
    fieldPath: str = ""


class Source(msgspec.Struct, omit_defaults=True):
    component: str = ""
    host: str = ""


class Series(msgspec.Struct, omit_defaults=True):
    count: int = 0
    lastObservedTime: dt.datetime | None = None


class Event(msgspec.Struct, omit_defaults=True):
    metadata: Meta = msgspec.field(default_factory=Meta)
    involvedObject: ObjectRef = msgspec.field(default_factory=ObjectRef)
    reason: str = ""
    message: str = ""
    source: Source = msgspec.field(default_factory=Source)
    firstTimestamp: dt.datetime | None = None
    lastTimestamp: dt.datetime | None = None
    eventTime: dt.datetime | None = None
    count: int = 0
    type: str = ""
    series: Series | None = None
    action: str = ""
    reportingComponent: str = ""
    reportingInstance: str = ""

    @property
    def occurrences(self) -> int:
        """series.count, else count, else 1 (KUBERNETES.md)."""
        if self.series is not None and self.series.count > 0:
            return self.series.count
        return self.count if self.count > 0 else 1

    @property
    def time(self) -> dt.datetime | None:
        """series.lastObservedTime, else lastTimestamp, eventTime, firstTimestamp, creationTimestamp."""
        if self.series is not None and self.series.lastObservedTime is not None:
            return self.series.lastObservedTime
        return self.lastTimestamp or self.eventTime or self.firstTimestamp or self.metadata.creationTimestamp


class ListMeta(msgspec.Struct):
    continue_: str = msgspec.field(default="", name="continue")
    resourceVersion: str = ""


class EventList(msgspec.Struct):
    items: list[Event] | None = None
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)


class _RawList(msgspec.Struct):
    items: list[msgspec.Raw] | None = None
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)


_list_decoder = msgspec.json.Decoder(EventList)
_raw_list_decoder = msgspec.json.Decoder(_RawList)
_event_decoder = msgspec.json.Decoder(Event)


class Malformed(msgspec.Struct):
    """An item that is not a usable Event; counted and reported, never fatal."""

    reason: str
    where: str


class Page(msgspec.Struct):
    events: list[Event]
    malformed: list[Malformed]
    continue_token: str


def decode_page(data: bytes) -> Page:
    """Decode one EventList page. A bad item costs a slower second pass, never the page."""
    try:
        lst = _list_decoder.decode(data)
        events = lst.items or []
        bad: list[Malformed] = []
    except msgspec.ValidationError:
        raw = _raw_list_decoder.decode(data)  # a broken envelope still raises: the page is unusable
        lst = EventList(metadata=raw.metadata)
        events, bad = [], []
        for i, item in enumerate(raw.items or []):
            try:
                events.append(_event_decoder.decode(item))
            except msgspec.ValidationError as exc:
                bad.append(Malformed(str(exc), _describe(bytes(item), i)))
    good: list[Event] = []
    for e in events:
        problem = check(e)
        if problem:
            bad.append(Malformed(problem, f"{e.metadata.namespace}/{e.metadata.name}"))
        else:
            good.append(e)
    return Page(good, bad, lst.metadata.continue_)


def check(e: Event) -> str:
    if not e.metadata.uid:
        return "metadata.uid is missing"
    if e.time is None:
        return "the event has no timestamp at all"
    return ""


def _describe(item: bytes, index: int) -> str:
    try:
        meta = msgspec.json.decode(item, type=dict).get("metadata") or {}
        return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    except (msgspec.DecodeError, msgspec.ValidationError, AttributeError):
        return f"item #{index}"


def iter_file(data: bytes) -> Iterator[Page]:
    """A saved `kubectl get events -A -o json` (EventList or List) is one page."""
    yield decode_page(data)


def to_ns(t: dt.datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
