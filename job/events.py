"""Decoding core/v1 Events: only the fields the job uses, straight from the API's bytes.

Typed decoding into Structs is several times faster than json.loads of the whole answer,
because msgspec skips the fields we do not declare (managedFields, annotations, ...). Times stay
the API's own strings: only the one that is the event's time is parsed, and lines repeat the rest
byte for byte. Every field accepts null, which some producers send for empty values.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import msgspec

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_INT32 = Annotated[int, msgspec.Meta(le=2**31 - 1)]  # the API's counts are int32
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class Meta(msgspec.Struct):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None


class ObjectRef(msgspec.Struct):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    fieldPath: str | None = None
    # kind and name alone are ambiguous: an Ingress of two API groups, an object deleted and re-created.
    # All three are also fields --field-selector can select on, for a dump as the API server does.
    apiVersion: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None  # only the alloy line format writes it (objectRV)


class Source(msgspec.Struct):
    component: str | None = None
    host: str | None = None


class Series(msgspec.Struct):
    count: _INT32 | None = None
    lastObservedTime: str | None = None


_NO_META, _NO_REF, _NO_SOURCE = Meta(), ObjectRef(), Source()


class Event(msgspec.Struct):
    metadata: Meta | None = None
    involvedObject: ObjectRef | None = None
    reason: str | None = None
    message: str | None = None
    source: Source | None = None
    firstTimestamp: str | None = None
    lastTimestamp: str | None = None
    eventTime: str | None = None
    count: _INT32 | None = None
    type: str | None = None
    series: Series | None = None
    action: str | None = None
    reportingComponent: str | None = None
    reportingInstance: str | None = None

    @property
    def meta(self) -> Meta:
        return self.metadata or _NO_META

    @property
    def obj(self) -> ObjectRef:
        return self.involvedObject or _NO_REF

    @property
    def src(self) -> Source:
        return self.source or _NO_SOURCE

    @property
    def occurrences(self) -> int:
        """series.count, else count, else 1 (docs/ledger.md, "Facts it relies on")."""
        if self.series is not None and self.series.count and self.series.count > 0:
            return self.series.count
        return self.count if self.count and self.count > 0 else 1

    @property
    def time(self) -> str | None:
        """series.lastObservedTime, else lastTimestamp, eventTime, firstTimestamp, creationTimestamp."""
        if self.series is not None and self.series.lastObservedTime:
            return self.series.lastObservedTime
        return self.lastTimestamp or self.eventTime or self.firstTimestamp or self.meta.creationTimestamp


class _ListMeta(msgspec.Struct):
    resourceVersion: str | None = None


class _List(msgspec.Struct):
    items: list[Event] | None = None
    metadata: _ListMeta | None = None


class _RawList(msgspec.Struct):
    items: list[msgspec.Raw] | None = None
    metadata: _ListMeta | None = None


_list_decoder = msgspec.json.Decoder(_List)
_raw_list_decoder = msgspec.json.Decoder(_RawList)
_event_decoder = msgspec.json.Decoder(Event)


class Malformed(msgspec.Struct):
    """An item that is not a usable Event; counted and reported, never fatal."""

    reason: str
    where: str


class Page(msgspec.Struct):
    events: list[tuple[Event, int]]  # each with its time in Unix ns
    malformed: list[Malformed]
    resource_version: str = ""  # the list's, for telling a stale list from a fresh one
    # Two-phase (scan_page): the light heads of every item, and the page's bytes for decoding in
    # full only if something on it ships. None for a page decoded in full at once (decode_page).
    heads: list[Head] | None = None
    data: bytes = b""

    def full(self) -> Page:
        """The page decoded in full (decode_page), for the heads that ship."""
        return decode_page(self.data)

    def some(self, indexes: set[int]) -> Page:
        """Only the items at ``indexes`` (positions in ``heads``) decoded in full, as decode_page does."""
        raws = (_raw_list_decoder.decode(self.data).items or [])
        return decode_page(b'{"items":[' + b",".join(bytes(r) for i, r in enumerate(raws) if i in indexes) + b"]}")


class _Kind(msgspec.Struct):
    kind: str | None = None


_NO_KIND = _Kind()


class Head(msgspec.Struct):
    """The fields the ledger and the client-side filters read, and nothing else.

    Most events of a steady-state run are already in the ledger; deciding that needs only the
    uid and the counts, so the rest of each Event (and the time, which costs a parse) is decoded
    only for what ships. Decoding these is about 3x cheaper than whole Events (docs/ledger.md).
    """

    metadata: Meta | None = None
    involvedObject: _Kind | None = None
    reason: str | None = None
    type: str | None = None
    count: _INT32 | None = None
    series: Series | None = None

    @property
    def meta(self) -> Meta:
        return self.metadata or _NO_META

    @property
    def obj(self) -> _Kind:
        return self.involvedObject or _NO_KIND

    @property
    def occurrences(self) -> int:
        """series.count, else count, else 1: the same rule as Event.occurrences."""
        if self.series is not None and self.series.count and self.series.count > 0:
            return self.series.count
        return self.count if self.count and self.count > 0 else 1


class _HeadList(msgspec.Struct):
    items: list[Head] | None = None
    metadata: _ListMeta | None = None


_head_list_decoder = msgspec.json.Decoder(_HeadList)


def undecoded_page(data: bytes) -> Page:
    """A page not decoded yet: select() picks heads-first (scan_page) or whole (decode_page) for it."""
    return Page([], [], "", None, data)


def scan_page(data: bytes) -> Page:
    """Phase one of decoding an EventList page: the heads only (Page.heads), the rest on demand.

    A page whose heads do not decode (a wrong type in one of their fields) is decoded in full at
    once, so a bad item still costs only itself.
    """
    try:
        whole = _head_list_decoder.decode(data)
    except msgspec.MsgspecError:
        return decode_page(data)
    meta = whole.metadata
    return Page([], [], (meta.resourceVersion or "") if meta is not None else "", whole.items or [], data)


def decode_page(data: bytes) -> Page:
    """Decode one EventList page. A bad item costs a slower second pass, never the page.

    Raises ValueError when the envelope itself is not an EventList.
    """
    bad: list[Malformed] = []
    meta: _ListMeta | None
    try:
        try:
            whole = _list_decoder.decode(data)
        except msgspec.DecodeError:
            # Go never writes a lone surrogate escape, but Python-made dumps can; msgspec refuses the
            # whole document for one. Replace each with U+FFFD so the page, and that event, survive.
            data = _LONE_SURROGATE.sub(lambda m: m.group(0) if len(m.group(0)) == 12 else rb"\ufffd", data)
            whole = _list_decoder.decode(data)
        events, meta = whole.items or [], whole.metadata
    except msgspec.ValidationError:
        try:
            raw = _raw_list_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            raise ValueError(str(exc)) from None
        meta = raw.metadata
        events = []
        for i, item in enumerate(raw.items or []):
            try:
                events.append(_event_decoder.decode(item))
            except msgspec.ValidationError as exc:
                bad.append(Malformed(str(exc), _describe(bytes(item), i)))
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    good: list[tuple[Event, int]] = []
    for e in events:
        m = e.meta
        if not m.uid:
            bad.append(Malformed("metadata.uid is missing", f"{m.namespace}/{m.name}"))
            continue
        t = e.time
        if not t:
            bad.append(Malformed("the event has no timestamp at all", f"{m.namespace}/{m.name}"))
            continue
        try:
            good.append((e, parse_time_ns(t)))
        except ValueError:
            bad.append(Malformed(f"unreadable time {t[:40]!r}", f"{m.namespace}/{m.name}"))
    return Page(good, bad, (meta.resourceVersion or "") if meta is not None else "")


class _Head(msgspec.Struct):
    kind: str | None = None
    apiVersion: str | None = None


class _Dump(msgspec.Struct):
    kind: str | None = None
    apiVersion: str | None = None
    items: list[msgspec.Raw] | None = None


_dump_decoder = msgspec.json.Decoder(_Dump)
_head_decoder = msgspec.json.Decoder(_Head)


def _item_kinds(items: list[msgspec.Raw]) -> set[str]:
    """The kinds of a dump's items that are not core/v1 Events (non-objects are decode_page's to judge)."""
    found = set()
    for item in items:
        try:
            h = _head_decoder.decode(item)
        except msgspec.MsgspecError:
            continue
        if h.kind and (h.kind != "Event" or (h.apiVersion or "v1") != "v1"):
            found.add(f"{h.apiVersion or ''} {h.kind}".strip())
    return found


class NotEvents(ValueError):
    """A dump that is valid JSON but not core/v1 Events: a usage error, said in one line."""


def decode_dump(data: bytes) -> Page:
    """A saved dump (--from-file): an EventList, a List of Events, or a single Event.

    Anything else is refused with what it holds, instead of shipping nothing (a Table) or shipping
    other objects as if they were Events (a PodList): NotEvents for those, ValueError for bad JSON.
    """
    try:
        head = _dump_decoder.decode(data)
    except msgspec.ValidationError:
        raise NotEvents("it is JSON but not a Kubernetes object or list") from None
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    kind, api = head.kind or "", head.apiVersion or ""
    if api.startswith("events.k8s.io/"):
        raise NotEvents(f"it holds {api} {kind or 'objects'}, the other view of Events; "
                        "dump core/v1 with `kubectl get events -A -o json`")
    if kind == "Event":
        return decode_page(b'{"items":[' + data + b"]}")
    if kind == "EventList" or (kind == "List" and head.items is not None):
        found = sorted(_item_kinds(head.items or []))
        if found:
            raise NotEvents(f"its items are {', '.join(found)}, not core/v1 Events")
        return decode_page(data)
    if not kind and head.items is not None:
        return decode_page(data)  # an envelope without kind: judged item by item, as from the API
    raise NotEvents(f"it holds a {kind or 'document without a kind'}" + (
        " (kubectl's table view)" if kind == "Table" else "") + ", not Events")


def parse_time_ns(text: str) -> int:
    """RFC3339 (Time or MicroTime) to Unix ns; anything without a zone is an error."""
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"no timezone in {text!r}")
    return to_ns(t)


def _describe(item: bytes, index: int) -> str:
    try:
        meta = msgspec.json.decode(item, type=dict).get("metadata") or {}
        return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    except (msgspec.MsgspecError, AttributeError):
        return f"item #{index}"


def to_ns(t: dt.datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def rfc3339(ns: int) -> str:
    """Whole seconds in UTC, for messages and the summary; "" for 0 (never)."""
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
