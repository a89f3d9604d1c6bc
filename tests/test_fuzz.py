"""Fuzzing the edges where bytes from outside enter the job: EventList pages and stored checkpoints.

Pages: every item shape a producer could send inside a well-formed EventList envelope (missing fields,
nulls where objects belong, wrong types, 1 MB messages, control characters, lone surrogates written as
JSON escapes, unreadable or zone-less timestamps, unknown fields, items that are not objects). Each
decoded event then goes through every line format and label style.

Checkpoints: random bytes and mutations of a real encode() output must be refused as CheckpointCorrupt
or load as a checkpoint the job can use and save again, never raise anything else.

Every input tried is counted in INPUTS and printed at the end of the module (pytest -s).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import struct
import zlib
from collections import Counter
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from job.events import Event, decode_page, parse_time_ns
from job.lines import Formatter, json_line, to_line
from state.base import MAGIC, VERSION, Checkpoint, CheckpointCorrupt, decode, encode

EXAMPLES = max(200, int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")))
# Large generated inputs are the point here, so the size health checks would only get in the way; no
# example database, so the suite writes nothing into the project tree.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])

LINE_FORMATS = ("json", "logfmt", "seed", "alloy")
LABEL_STYLES = ("default", "seed", "alloy")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
LOKI_LABEL_VALUE_MAX = 2048  # bytes, Loki's default limit on a label value
# The marker _truncate leaves in place of the cut part of a message, at its longest (a 1 MB cut).
WORST_MARKER = "…[truncated 99999999 bytes]"

INPUTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\n[test_fuzz] inputs tried: {dict(INPUTS)}; total {sum(INPUTS.values())}")


# ------------------------------------------------------------------------------------------ strategies

SPECIAL_STRINGS = ["", " ", "\x00", "\x1b[31mred\x1b[0m", "a\nb\r\tc", "\x7f\x85", "\u2028\u2029", "\ufeff",
                   "💥", "é" * 700, "ß" * 1100, "a=b c\"d\\e", "{\"json\":true}", "null", "Warning"]
LONE_SURROGATES = ["\ud800", "\udfff", "x\udc00y", "\udbff\ud800"]


def strings(*, surrogates: bool) -> st.SearchStrategy[str]:
    s = st.one_of(st.text(max_size=60), st.sampled_from(SPECIAL_STRINGS))
    if surrogates:
        s = st.one_of(s, st.tuples(s, st.sampled_from(LONE_SURROGATES), s).map("".join))
    return s


def huge_messages(*, surrogates: bool) -> st.SearchStrategy[str]:
    # Built by repetition: drawing a megabyte character by character would take the whole budget.
    def build(chunk: str, size: int) -> str:
        return (chunk * (size // len(chunk) + 1))[:size]

    return st.builds(build, strings(surrogates=surrogates).filter(bool),
                     st.sampled_from([300, 4096, 262_144, 1_000_000]) | st.integers(0, 1_000_000))


def _rfc(d: dt.datetime, frac: str, zone: str) -> str:
    # strftime does not zero-pad years below 1000 on every libc; write the fields by hand.
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f"{frac}{zone}")


DATETIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
ZONED_TIMES = st.one_of(
    DATETIMES.map(lambda d: _rfc(d, "", "Z")),  # Time
    DATETIMES.map(lambda d: _rfc(d, f".{d.microsecond:06d}", "Z")),  # MicroTime
    st.tuples(DATETIMES, st.integers(-23 * 60 - 59, 23 * 60 + 59)).map(
        lambda t: _rfc(t[0], "", f"{'+' if t[1] >= 0 else '-'}{abs(t[1]) // 60:02d}:{abs(t[1]) % 60:02d}")),
)
BAD_TIMES = st.one_of(
    DATETIMES.map(lambda d: _rfc(d, "", "")),  # no timezone
    DATETIMES.map(lambda d: _rfc(d, f".{d.microsecond:06d}", "")),
    st.sampled_from(["", "yesterday", "2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "2020-01-01T24:00:01Z",
                     "2020-01-01T23:59:60Z", "2020-01-01", "0000-01-01T00:00:00Z", "2020-01-01T00:00:00.Z",
                     "2020-01-01t00:00:00z", "2020-01-01T00:00:00.1234567891Z", "2020-01-01 00:00:00Z",
                     "+10000-01-01T00:00:00Z", "2020-01-01T00:00:00+24:00", "1e9", "NaN"]),
    st.text(max_size=30),
)


def json_values(strs: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), strs)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(strs, c, max_size=4),
                        max_leaves=8)


def sometimes(right: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any], in_20: int) -> st.SearchStrategy[Any]:
    # `in_20` draws out of 20 take `wrong`; one integer decides, so shrinking heads to `right`.
    return st.integers(0, 19).flatmap(lambda i: wrong if i >= 20 - in_20 else right)


def event_items(*, surrogates: bool, plausible: bool) -> st.SearchStrategy[Any]:
    """Items shaped like core/v1 Events with some fields broken.

    plausible: metadata.uid and lastTimestamp are present and one value in twenty is null or of a
    wrong type, so most items decode and reach the formatter; otherwise any field may be missing and
    about a third of the values are wrong.
    """
    chaos = 1 if plausible else 7
    strs = strings(surrogates=surrogates)
    anything = json_values(strs)
    wrong = st.one_of(st.none(), anything)
    times = st.one_of(ZONED_TIMES, ZONED_TIMES, ZONED_TIMES, BAD_TIMES)
    text = sometimes(strs, wrong, chaos)
    when = sometimes(times, wrong, chaos)
    counts = sometimes(st.one_of(st.integers(-3, 20), st.integers(-(2**63), 2**64)), wrong, chaos)
    uids = sometimes(st.one_of(st.uuids().map(str), st.uuids().map(str), strs), wrong, chaos)

    def obj(fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
        # Unknown extra fields ride along, as managedFields and annotations do on real events.
        extra = st.dictionaries(st.sampled_from(["managedFields", "annotations", "labels", "x-unknown"]),
                                anything, max_size=2)
        req = {k: v for k, v in fields.items() if plausible and k in required}
        opt = {k: v for k, v in fields.items() if k not in req}
        shaped = st.tuples(st.fixed_dictionaries(req, optional=opt), extra).map(lambda t: {**t[1], **t[0]})
        return sometimes(shaped, wrong, chaos)

    return obj({
        "apiVersion": text, "kind": text,
        "metadata": obj({"name": text, "namespace": text, "uid": uids, "creationTimestamp": when,
                         "resourceVersion": text}, required=("uid",)),
        "involvedObject": obj({"kind": text, "namespace": text, "name": text, "uid": text,
                               "apiVersion": text, "fieldPath": text}),
        "reason": text,
        "message": sometimes(st.one_of(strs, strs, huge_messages(surrogates=surrogates)), wrong, chaos),
        "source": obj({"component": text, "host": text}),
        "firstTimestamp": when, "lastTimestamp": when, "eventTime": when,
        "count": counts, "type": text,
        "series": obj({"count": counts, "lastObservedTime": when}),
        "action": text, "reportingComponent": text, "reportingInstance": text,
        "related": anything, "deprecatedCount": anything,
    }, required=("metadata", "lastTimestamp"))


def good_items() -> st.SearchStrategy[dict[str, Any]]:
    """An event any API server could send: it must always decode, whatever its neighbours are."""
    return st.builds(
        lambda uid, t, n, msg: {"metadata": {"name": "p.1", "namespace": "default", "uid": uid},
                                "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "BackOff",
                                "message": msg, "lastTimestamp": t, "count": n, "type": "Warning"},
        st.uuids().map(str), ZONED_TIMES, st.integers(1, 2**31 - 1), st.text(max_size=40))


def any_items(*, surrogates: bool) -> st.SearchStrategy[Any]:
    """Plausible events, badly broken ones, and JSON values that are not objects at all."""
    return st.one_of(event_items(surrogates=surrogates, plausible=True),
                     event_items(surrogates=surrogates, plausible=False), json_values(strings(surrogates=surrogates)))


def page_bytes(items: list[Any]) -> bytes:
    """The envelope the API sends around items; lone surrogates become \\uXXXX escapes, as in JSON."""
    text = json.dumps({"kind": "EventList", "apiVersion": "v1", "metadata": {"continue": ""}, "items": items},
                      ensure_ascii=False, allow_nan=False)
    # A lone surrogate can only sit inside a JSON string here; spell it the way JSON escapes it.
    text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode("utf-8")


# ------------------------------------------------------------------------------------------- the pages


def check_page(items: list[Any], data: bytes) -> list[tuple[Event, int]]:
    page = decode_page(data)
    # Conservation: every item is an event or a malformed report, never silently dropped or doubled.
    assert len(page.events) + len(page.malformed) == len(items)
    for e, t_ns in page.events:
        assert e.meta.uid, "an event without a uid must be malformed"
        # The Loki timestamp (what Formatter.ts() used to compute) is the event's own time, parsed.
        assert e.time is not None and type(t_ns) is int and t_ns == parse_time_ns(e.time)
    # Determinism from the first step: the same bytes decode to the same events, times and reports.
    assert decode_page(data) == page
    return page.events


@SETTINGS
@given(items=st.lists(any_items(surrogates=False), max_size=6))
def test_decode_page_never_raises_and_accounts_for_every_item(items: list[Any]) -> None:
    INPUTS["pages"] += 1
    check_page(items, page_bytes(items))


@SETTINGS
@given(items=st.lists(any_items(surrogates=True), min_size=1, max_size=6))
def test_decode_page_never_raises_on_lone_surrogate_escapes(items: list[Any]) -> None:
    # "\ud800" is valid JSON grammar (RFC 8259 section 8.2) though not valid Unicode: at worst the
    # item is malformed, never the page. The promise in job/events.py: "A bad item costs a slower
    # second pass, never the page."
    INPUTS["pages with surrogates"] += 1
    check_page(items, page_bytes(items))


@SETTINGS
@given(before=st.lists(any_items(surrogates=False), max_size=3), good=good_items(),
       after=st.lists(any_items(surrogates=False), max_size=3))
def test_a_bad_item_never_costs_a_good_neighbour(before: list[Any], good: dict[str, Any], after: list[Any]) -> None:
    INPUTS["pages with a good item"] += 1
    items = [*before, good, *after]
    events = check_page(items, page_bytes(items))
    assert good["metadata"]["uid"] in {e.meta.uid for e, _ in events}


# ------------------------------------------------------------------------------------------- the lines


def formatter_settings(max_line_bytes: int) -> Iterator[dict[str, Any]]:
    for label_style in LABEL_STYLES:
        for line_format in LINE_FORMATS:
            for sm in (False, True):
                yield dict(label_style=label_style, line_format=line_format, cluster="prod-eu",
                           max_line_bytes=max_line_bytes, structured_metadata=sm)


def rendered(fmt: Formatter, e: Event, new: int, backfill: str) -> tuple[Any, ...]:
    return fmt.labels(e), fmt.labels(e, backfill), fmt.line(e, new), fmt.metadata(e)


def fits_without_its_message(e: Event, new: int, limit: int) -> bool:
    """Whether truncating the message alone can bring the JSON line under the limit."""
    f = to_line(e, new)
    f.message = WORST_MARKER
    return len(json_line(f).encode()) <= limit


def one_per_line_format(max_line_bytes: int) -> Iterator[dict[str, Any]]:
    """A Formatter per line format: the line, and so its cutting, depends on the format alone."""
    for line_format in LINE_FORMATS:
        yield dict(label_style="default", line_format=line_format, cluster="prod-eu",
                   max_line_bytes=max_line_bytes, structured_metadata=False)


def check_formatting(e: Event, new: int, max_line_bytes: int,
                     settings: Callable[[int], Iterator[dict[str, Any]]] = formatter_settings) -> None:
    backfill = "2026-11-25T10"
    for kw in settings(max_line_bytes):
        fmt = Formatter(**kw)
        labels, labels_bf, line, md = rendered(fmt, e, new, backfill)
        # Determinism: the same formatter again, and a fresh one (as after a crash), give the same
        # bytes, so a re-sent entry is an exact duplicate that Loki drops.
        assert rendered(fmt, e, new, backfill) == (labels, labels_bf, line, md)
        assert rendered(Formatter(**kw), e, new, backfill) == (labels, labels_bf, line, md)

        assert len(line.encode()) <= max_line_bytes
        for name, value in (*labels, *labels_bf):
            assert LABEL_NAME.fullmatch(name), name
            assert value, f"empty label value for {name}"
            assert len(value.encode()) <= LOKI_LABEL_VALUE_MAX, name
        assert len({n for n, _ in labels}) == len(labels), "a label name twice"
        assert ("backfill", backfill) in labels_bf
        if md is not None:
            assert all(isinstance(v, str) and v for v in md.values())
            assert set(md) <= {"name", "uid", "reason", "node", "object_uid", "api_version", "level"}
        if kw["line_format"] == "json" and fits_without_its_message(e, new, max_line_bytes):
            parsed = json.loads(line)
            assert parsed["uid"] == e.meta.uid
            assert parsed["count"] == e.occurrences
            assert parsed["new"] == new


@SETTINGS
@given(items=st.lists(event_items(surrogates=False, plausible=True), min_size=1, max_size=4),
       new=st.integers(1, 2**31 - 1), max_line_bytes=st.sampled_from([300, 1024, 255 * 1024]))
def test_every_decoded_event_formats_within_loki_limits_in_every_style(
        items: list[Any], new: int, max_line_bytes: int) -> None:
    INPUTS["events formatted"] += 1
    for e, _ in check_page(items, page_bytes(items)):
        check_formatting(e, new, max_line_bytes)


@SETTINGS
@given(good=good_items(), message=huge_messages(surrogates=False), new=st.integers(1, 100),
       max_line_bytes=st.sampled_from([300, 1024, 255 * 1024]))
def test_a_huge_message_is_cut_to_the_line_limit_and_the_json_still_parses(
        good: dict[str, Any], message: str, new: int, max_line_bytes: int) -> None:
    INPUTS["huge messages"] += 1
    good["message"] = message
    [(e, _)] = check_page([good], page_bytes([good]))
    # Labels and metadata do not depend on the message; every style of them is checked above, on
    # messages of every kind, and each line format here costs up to a megabyte quoted three times.
    check_formatting(e, new, max_line_bytes, one_per_line_format)
    line = Formatter(label_style="default", line_format="json", cluster="", max_line_bytes=max_line_bytes,
                     structured_metadata=False).line(e, new)
    too_long = len(json_line(to_line(e, new)).encode()) > max_line_bytes
    if too_long and fits_without_its_message(e, new, max_line_bytes):
        assert "…[truncated " in json.loads(line)["message"]  # the cut says so


# ------------------------------------------------------------------------------------- the checkpoint


NOW_NS = 1_795_600_000 * 10**9


def is_usable(cp: Checkpoint, now_ns: int | None) -> None:
    """A loaded checkpoint the job can run with and save again, and load again as the same."""
    assert isinstance(cp, Checkpoint)
    for value in (cp.watermark_ns, cp.prune_horizon_ns, cp.listed_ns, cp.scope_since_ns):
        assert type(value) is int and 0 <= value < 2**63
    assert cp.last_success_ns is None or type(cp.last_success_ns) is int
    assert isinstance(cp.last_run, dict) and isinstance(cp.scope, str) and isinstance(cp.list_rv, str)
    for uid, (count, t_s) in cp.ledger.items():
        assert isinstance(uid, str) and uid and type(count) is int and 1 <= count <= 2**31 - 1 and type(t_s) is int
    if now_ns is not None:  # every time within years of the job's clock
        for value in (cp.watermark_ns, cp.prune_horizon_ns, cp.listed_ns, cp.last_success_ns or 0):
            assert not value or abs(value - now_ns) <= 10 * 365 * 86_400 * 10**9
    assert decode(encode(cp), "again", now_ns=now_ns) == cp


def load_or_refuse(data: bytes, now_ns: int | None = NOW_NS) -> None:
    for now in (now_ns, None):
        try:
            cp = decode(data, "fuzz", now_ns=now)
        except CheckpointCorrupt:
            continue
        is_usable(cp, now)


checkpoints = st.builds(
    lambda w, ledger, horizon, last: Checkpoint(watermark_ns=w * 10**9 + 123, prune_horizon_ns=horizon * 10**9,
                                                ledger={u: (c, w - age) for u, (c, age) in ledger.items()},
                                                last_success_ns=last, last_run={"new": len(ledger), "lines": 3},
                                                listed_ns=w * 10**9 - 7, list_rv=str(w % 977),
                                                scope="fieldSelector=type=Warning", scope_since_ns=horizon * 10**9),
    st.integers(1_700_000_000, 1_900_000_000),
    st.dictionaries(st.one_of(st.uuids().map(str), st.uuids().map(str), st.text(min_size=1, max_size=20)),
                    st.tuples(st.integers(1, 2**31 - 1), st.integers(0, 10_000)), max_size=40),
    st.integers(0, 1_700_000_000),
    st.one_of(st.none(), st.integers(0, 2**63)),
)

mutations = st.lists(st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
), min_size=1, max_size=4)


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    b = bytearray(data)
    for op in ops:
        at = op[1] % (len(b) + 1)
        if op[0] == "truncate":
            del b[at:]
        elif op[0] == "flip" and at < len(b):
            b[at] ^= 1 << op[2]
        elif op[0] == "set" and at < len(b):
            b[at] = op[2]
        elif op[0] == "insert":
            b[at:at] = op[2]
        elif op[0] == "delete":
            del b[at:at + op[2]]
    return bytes(b)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=600),
                      st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=600)).map(
                          lambda t: struct.pack(">4sBI", MAGIC, VERSION, t[0]) + t[1])))
def test_random_bytes_are_refused_as_corrupt_or_load_as_a_usable_checkpoint(data: bytes) -> None:
    INPUTS["checkpoint random bytes"] += 1
    load_or_refuse(data)


@SETTINGS
@given(cp=checkpoints, ops=mutations)
def test_a_mutated_checkpoint_is_refused_as_corrupt_or_loads_as_a_usable_one(
        cp: Checkpoint, ops: list[tuple[Any, ...]]) -> None:
    INPUTS["checkpoint mutations"] += 1
    load_or_refuse(mutate(encode(cp), ops))


def header_bytes(header: Any, body: bytes) -> bytes:
    head = json.dumps(header, allow_nan=True).encode()
    return struct.pack(">4sBI", MAGIC, VERSION, len(head)) + head + zlib.compress(body)


HEADER_VALUES = st.one_of(st.integers(-(2**70), 2**70), st.floats(),
                          st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300, -0.0, 2**64]),
                          st.none(), st.booleans(), st.text(max_size=5),
                          st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2))


@SETTINGS
@given(fields=st.fixed_dictionaries({}, optional={
    "watermark_ns": HEADER_VALUES, "prune_horizon_ns": HEADER_VALUES, "last_success_ns": HEADER_VALUES,
    "last_run": HEADER_VALUES, "entries": HEADER_VALUES, "listed_ns": HEADER_VALUES, "list_rv": HEADER_VALUES,
    "scope": HEADER_VALUES, "scope_since_ns": HEADER_VALUES, "base_s": HEADER_VALUES,
    "other": st.one_of(HEADER_VALUES, st.lists(st.lists(HEADER_VALUES, max_size=4), max_size=3)),
}), body=st.one_of(st.just(b""), st.binary(max_size=96)))
def test_a_checkpoint_header_with_any_json_values_is_refused_as_corrupt_or_usable(
        fields: dict[str, Any], body: bytes) -> None:
    # A well-formed header to start from, so each field's bad value is reached and not masked by
    # another missing key. NaN and Infinity are what Python's json writes for float specials.
    header = {"watermark_ns": 0, "prune_horizon_ns": 0, "last_success_ns": None, "last_run": {},
              "entries": 0, "other": [], "listed_ns": 0, "list_rv": "", "scope": "", "scope_since_ns": 0,
              "base_s": 0, **fields}
    INPUTS["checkpoint headers"] += 1
    load_or_refuse(header_bytes(header, body))


@pytest.mark.parametrize("header", [
    {"watermark_ns": float("inf"), "prune_horizon_ns": 0, "last_success_ns": None, "last_run": {}, "entries": 0,
     "other": [], "listed_ns": 0, "list_rv": "", "scope": "", "scope_since_ns": 0, "base_s": 0},
    {"watermark_ns": 0, "prune_horizon_ns": 0, "last_success_ns": None, "last_run": {}, "entries": 0,
     "other": [["not-a-uuid", float("-inf"), 0]], "listed_ns": 0, "list_rv": "", "scope": "", "scope_since_ns": 0,
     "base_s": 0},
    {"watermark_ns": 0, "prune_horizon_ns": 0, "last_success_ns": None, "last_run": {}, "entries": 10**12,
     "other": [], "listed_ns": 0, "list_rv": "", "scope": "", "scope_since_ns": 0, "base_s": 0},
], ids=["infinite-watermark", "infinite-count", "a-trillion-entries"])
def test_an_infinite_number_in_the_header_is_refused_as_corrupt(header: dict[str, Any]) -> None:
    INPUTS["checkpoint regressions"] += 1
    with pytest.raises(CheckpointCorrupt):
        decode(header_bytes(header, b""), "fuzz")


def test_a_deeply_nested_header_is_refused_as_corrupt() -> None:
    INPUTS["checkpoint regressions"] += 1
    head = b"[" * 100_000
    with pytest.raises(CheckpointCorrupt):
        decode(struct.pack(">4sBI", MAGIC, VERSION, len(head)) + head, "fuzz")


# ---------------------------------------------------------------------------- two-phase decoding


@SETTINGS
@given(items=st.lists(st.one_of(good_items(), any_items(surrogates=False)), max_size=8),
       known=st.lists(st.booleans(), min_size=8, max_size=8), include=st.sampled_from([None, "Warning", "Normal"]))
def test_scanning_heads_first_ships_exactly_what_decoding_in_full_ships(
        items: list[Any], known: list[bool], include: str | None) -> None:
    """scan_page (what a run uses on the API's pages) decides as decode_page does, whatever the items."""
    import re as _re

    from job.dedupe import Ledger
    from job.events import scan_page, undecoded_page
    from job.filters import Filters
    from job.selection import select
    from job.summary import Summary

    INPUTS["two-phase pages"] += 1
    data = page_bytes(items)
    shipped = []
    for page_of in (decode_page, scan_page, undecoded_page):
        cp = Checkpoint()
        # Some uids already in the ledger at count 1, so duplicates and bumps are both on the page.
        for i, item in enumerate(items):
            uid = ((item.get("metadata") or {}) if isinstance(item, dict) else {})
            uid = uid.get("uid") if isinstance(uid, dict) else None
            if isinstance(uid, str) and uid and known[i % 8]:
                cp.ledger[uid] = (1, 1_795_600_000)
        ledger = Ledger(cp, ttl_s=3600, now_ns=NOW_NS)
        filters = Filters(include_types=_re.compile(include)) if include else Filters()
        s = Summary()
        out = [(e.meta.uid, ts, new, skew) for e, ts, new, skew in select(page_of(data), ledger, filters, s)]
        shipped.append((out, s.new, dict(cp.ledger)))
    assert shipped[0] == shipped[1] == shipped[2]
