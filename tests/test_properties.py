"""Property tests of the exactly-once promise, driving the code `python -m job run` uses.

A simulated Kubernetes API holds events that are created, bumped, updated as series, re-created after
expiry, written late, and deleted one TTL after their last write; some are reported by nodes whose
clocks are off (2 h ahead or behind, 92 min behind, 11 min ahead, a month ahead, fixed dates in 2100
and 9999). The API server's own clock (creationTimestamp, the TTL) and the job's clock are right.

A run does what job/sync.py does, with the same functions: the listing is rendered as EventList JSON
pages (in an arbitrary order, cut at arbitrary places), decoded by job.events.scan_page, fed to
job.selection.select with a job.dedupe.Ledger over the checkpoint the previous run saved, the list is
finished with Ledger.finish(complete=True), sometimes pruned harder with Ledger.prune_to (the ConfigMap
size limit, as job/checkpointing.fit does), and the checkpoint goes through state.base.encode/decode.
The lines come from job.lines.Formatter, and a model of Loki's push rules (docs/ledger.md: too new, too old,
too far behind a stream's newest, exact duplicates dropped) receives them. Some runs "crash" after
their push: nothing is saved and the next run re-sends.

Raise the number of histories with HYPOTHESIS_EXAMPLES=2000.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from job.dedupe import AHEAD_NS, NS, SKEW_S, Ledger, hour_bucket
from job.events import decode_page, parse_time_ns, undecoded_page
from job.filters import Filters
from job.lines import Formatter
from job.selection import list_scope, select
from job.summary import Summary
from state.base import Checkpoint, decode, encode

EXAMPLES = max(200, int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")))
# No example database: the suite must not write into the project tree, and every run searches afresh.
# No explain phase: on a failure it re-runs long histories many times and would take a minute.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])

TTL_S = 3600  # kube-apiserver --event-ttl default
DELETE_SLACK_S = 60  # "an event disappears between 1 h and 1 h 01 min after its last write"
LATE_MAX_S = 1800  # new-recorder series counts reach the server up to 30 min late
T0 = 1_795_600_000  # an arbitrary start of the simulated clock, in seconds
# Loki's defaults (docs/ledger.md): creation_grace_period, reject_old_samples_max_age, max_chunk_age / 2.
LOKI_TOO_NEW_NS, LOKI_TOO_OLD_NS, LOKI_TOO_FAR_BEHIND_NS = 600 * NS, 7 * 86_400 * NS, 3600 * NS
YEAR_2100_NS = 4_102_444_800 * NS
YEAR_9999_NS = 253_402_300_799 * NS  # 9999-12-31T23:59:59Z
# A reporter's clock: an offset in seconds from the true time, or a fixed date it always writes.
CLOCKS: list[tuple[str, int]] = [("offset", 0)] * 5 + [
    ("offset", 2 * 3600), ("offset", -2 * 3600), ("offset", -92 * 60), ("offset", 11 * 60),
    ("offset", 30 * 86_400), ("fixed", YEAR_2100_NS), ("fixed", YEAR_9999_NS)]

# --field-selector of a run: the API lists only what matches, and the ledger's scope changes with it.
SELECTORS = ["", "", "", "type=Warning"]

HISTORIES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\n[test_properties] histories simulated: {dict(HISTORIES)}; total {sum(HISTORIES.values())}")


# --------------------------------------------------------------------------------------------- the model


def rfc(ns: int, micro: bool = False) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ns // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")


@dataclass
class ApiEvent:
    uid: str
    name: str
    count: int
    t_ns: int  # the reported occurrence time (lastTimestamp or series.lastObservedTime), reporter's clock
    created_s: int  # creationTimestamp: the API server's clock
    written_s: int  # the last write restarts the TTL
    clock: tuple[str, int]
    series: bool = False
    type_: str = "Warning"

    def item(self) -> dict[str, Any]:
        e: dict[str, Any] = {
            "metadata": {"name": self.name, "namespace": "default", "uid": self.uid,
                         "creationTimestamp": rfc(self.created_s * NS)},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": self.name},
            "reason": "BackOff", "message": "m", "type": self.type_, "source": {"component": "kubelet"},
        }
        if self.series:
            e["eventTime"] = rfc(self.created_s * NS, micro=True)
            if self.count > 1:
                e["series"] = {"count": self.count, "lastObservedTime": rfc(self.t_ns, micro=True)}
        else:
            e.update(count=self.count, firstTimestamp=rfc(self.t_ns), lastTimestamp=rfc(self.t_ns))
        return e


@dataclass
class Pushed:
    """One entry as a run sent it."""

    run: int
    now_ns: int
    labels: tuple[tuple[str, str], ...]
    ts: int
    line: str
    t_ns: int  # the event's own time
    crashed: bool


@dataclass
class Stream:
    highest: int = -(2**80)
    last: tuple[int, str] | None = None
    seen: set[tuple[int, str]] = field(default_factory=set)


class Loki:
    """Loki's push rules (docs/ledger.md), in the order tests/lokidouble.py checks them."""

    def __init__(self) -> None:
        self.streams: dict[tuple[tuple[str, str], ...], Stream] = {}
        self.rejected: list[tuple[str, Pushed]] = []
        self.rejected_copies: list[Pushed] = []
        self.stored: list[Pushed] = []

    def push(self, entries: list[Pushed], now_ns: int) -> None:
        by_stream: dict[tuple[tuple[str, str], ...], list[Pushed]] = {}
        for p in entries:
            by_stream.setdefault(p.labels, []).append(p)
        for labels, batch in by_stream.items():
            s = self.streams.setdefault(labels, Stream())
            for p in sorted(batch, key=lambda p: (p.ts, p.line)):  # job/loki.py sorts each stream
                if p.ts > now_ns + LOKI_TOO_NEW_NS:
                    self.rejected.append(("too new", p))
                elif p.ts < now_ns - LOKI_TOO_OLD_NS:
                    self.rejected.append(("too old", p))
                elif s.last == (p.ts, p.line):
                    pass
                elif p.ts < s.highest - LOKI_TOO_FAR_BEHIND_NS:
                    # Loki checks this before its duplicate check: a re-sent old entry is a 400 that
                    # the job counts and goes past; it is harmless only if the original is there.
                    if (p.ts, p.line) in s.seen:
                        self.rejected_copies.append(p)
                    else:
                        self.rejected.append(("too far behind", p))
                else:
                    s.last = (p.ts, p.line)
                    s.highest = max(s.highest, p.ts)
                    if (p.ts, p.line) not in s.seen:
                        s.seen.add((p.ts, p.line))
                        self.stored.append(p)


@dataclass
class History:
    loki: Loki = field(default_factory=Loki)
    pushed: list[Pushed] = field(default_factory=list)
    listed: set[tuple[str, int]] = field(default_factory=set)
    shipped: list[tuple[int, str, int, int, bool]] = field(default_factory=list)  # (run, uid, count, new, crashed)
    # uid -> (run, recorded second, that run's start second) of each size-forced drop
    dropped: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    crashes: int = 0
    runs: int = 0
    scope_changes: list[int] = field(default_factory=list)  # runs whose selector differs from the last saved one
    saved_runs: list[int] = field(default_factory=list)
    horizon_cleared: list[int] = field(default_factory=list)  # runs that saw a new scope and set the horizon aside

    def loki_entries(self) -> dict[tuple[str, int], list[Pushed]]:
        out: dict[tuple[str, int], list[Pushed]] = {}
        for p in self.loki.stored:
            f = json.loads(p.line)
            out.setdefault((f["uid"], f["count"]), []).append(p)
        return out


Create = tuple[str, int]  # ("create", clock): a new object, count 1, reported by a node with that clock
Recreate = tuple[str, int]  # ("recreate", n): an expired object written again: new uid, count > 1
Late = tuple[str, int]  # ("late", d): a new series object created d s after its eventTime (API retries)
Bump = tuple[str, int, int]  # ("bump", i, k): old recorder, same uid, count + k, lastTimestamp = its now
Series = tuple[str, int, int, int]  # ("series", i, k, lag): series.count + k, lastObservedTime = now - lag
Advance = tuple[str, int, bool]  # ("advance", s, busy): busy also writes a fresh event at the new time
Expire = tuple[str]  # ("expire",): the API deletes what it may (last write older than the TTL)
# ("run", keep, crash, selector): keep = prune_to(keep); crash: push, no save; selector: SELECTORS[i]
Run = tuple[str, int | None, bool, int]
# One of the above; typed loosely because mypy cannot narrow a union of tuples by the tag in op[0].
Op = tuple[Any, ...]


def uid_for(i: int) -> str:
    # Mostly canonical UUIDs (the binary columns of the checkpoint), some other strings (its JSON part).
    if i % 5 == 4:
        return f"Not-A-UUID-{i}"
    return f"{i:08x}-0000-4000-8000-{(i * 7919) % 16**12:012x}"


class Simulation:
    """The API server, the clocks, Loki and the checkpoint store, driven by a list of operations."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.now = T0
        self.live: dict[str, ApiEvent] = {}
        self.expired: list[ApiEvent] = []
        self.stored: bytes | None = None
        self.next_id = 0
        self.h = History()
        self.scope = list_scope("")
        self.fmt = Formatter(label_style="default", line_format="json", cluster="sim", max_line_bytes=255 * 1024,
                             structured_metadata=False)

    def reported(self, clock: tuple[str, int], true_ns: int) -> int:
        kind, value = clock
        return value if kind == "fixed" else true_ns + value * NS

    def _new(self, count: int, clock: tuple[str, int], lag_s: int = 0, series: bool = False,
             name: str | None = None) -> None:
        self.next_id += 1
        uid = uid_for(self.next_id)
        t = self.reported(clock, (self.now - lag_s) * NS)
        self.live[uid] = ApiEvent(uid, name or f"ev{self.next_id}", count, t, self.now, self.now, clock, series,
                                  "Normal" if self.next_id % 3 == 0 else "Warning")

    def _pick(self, i: int) -> ApiEvent | None:
        if not self.live:
            return None
        return sorted(self.live.values(), key=lambda e: (e.written_s, e.uid))[i % len(self.live)]

    def _delete_expired(self, older_than_s: int) -> None:
        for uid in [u for u, e in self.live.items() if self.now - e.written_s > older_than_s]:
            self.expired.append(self.live.pop(uid))

    def apply(self, op: Op) -> None:
        kind = op[0]
        if kind == "create":
            self._new(1, CLOCKS[op[1] % len(CLOCKS)])
        elif kind == "recreate":
            if self.expired:
                old = self.expired.pop(op[1] % len(self.expired))
                self._new(old.count + 1, old.clock, name=old.name)
            else:
                self._new(op[1], CLOCKS[op[1] % len(CLOCKS)])
        elif kind == "late":
            self._new(1, ("offset", 0), lag_s=op[1], series=True)
        elif kind in ("bump", "series"):
            e = self._pick(op[1])
            if e is not None:
                e.count += op[2]
                lag = op[3] if kind == "series" and e.series else 0
                e.t_ns = max(e.t_ns, self.reported(e.clock, (self.now - lag) * NS))
                e.written_s = self.now
        elif kind == "advance":
            self.now += op[1]
            if op[2]:
                self._new(1, ("offset", 0))
        elif kind == "expire":
            self._delete_expired(TTL_S)
        elif kind == "run":
            self.run(op[1], op[2], SELECTORS[op[3]])
        else:  # pragma: no cover - the strategies only build the kinds above
            raise AssertionError(op)

    def selected(self, selector: str) -> list[ApiEvent]:
        return [e for e in self.live.values() if not selector or f"type={e.type_}" == selector]

    def pages(self, run_no: int, selector: str) -> list[bytes]:
        """The listing as the API sends it: EventList pages in some order, cut anywhere."""
        order = self.data.draw(st.permutations(sorted(self.selected(selector), key=lambda e: e.uid)),
                               label=f"listing order of run {run_no}")
        cuts = sorted(set(self.data.draw(st.lists(st.integers(1, max(1, len(order))), max_size=3),
                                         label=f"page cuts of run {run_no}")))
        bounds = [0, *[c for c in cuts if c < len(order)], len(order)]
        rv = str(1000 + self.next_id * 10 + run_no)
        return [json.dumps({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                            "items": [e.item() for e in order[a:b]]}).encode()
                for a, b in itertools.pairwise(bounds)]

    def run(self, keep: int | None, crash: bool, selector: str = "") -> None:
        """What job/sync.py does with a listing, minus HTTP: the same select, Ledger and codec."""
        self._delete_expired(TTL_S + DELETE_SLACK_S)  # the API server has certainly deleted these
        self.h.runs += 1
        run_no, now_ns = self.h.runs, self.now * NS
        cp = decode(self.stored, "sim", now_ns=now_ns) if self.stored is not None else Checkpoint()
        ledger = Ledger(cp, ttl_s=TTL_S, now_ns=now_ns, scope=list_scope(selector))
        if ledger.scope_changed:  # crashed runs too: the horizon is set aside as soon as the scope changes
            self.h.horizon_cleared.append(run_no)
        s = Summary()
        out: list[Pushed] = []
        for data in self.pages(run_no, selector):
            page = undecoded_page(data)  # as job/source.py hands the API's pages to select()
            for e, ts, new, skew in select(page, ledger, Filters(), s):
                labels = self.fmt.labels(e) + skew
                line = self.fmt.line(e, new)
                out.append(Pushed(run_no, now_ns, labels, ts, line, parse_time_ns(e.time or ""), crash))
                self.h.shipped.append((run_no, e.meta.uid or "", e.occurrences, new, crash))
        for listed in self.selected(selector):
            self.h.listed.add((listed.uid, listed.count))
        self.h.loki.push(out, now_ns)
        self.h.pushed += out
        if crash:  # pushed, then killed before the save: the next run loads the same checkpoint
            self.h.crashes += 1
            return
        ledger.finish(complete=True)
        self.h.saved_runs.append(run_no)
        if list_scope(selector) != self.scope:
            self.h.scope_changes.append(run_no)
            self.scope = list_scope(selector)
        if keep is not None:
            before = dict(cp.ledger)
            ledger.prune_to(keep)
            for uid in before.keys() - cp.ledger.keys():
                self.h.dropped.setdefault(uid, []).append((run_no, before[uid][1], self.now))
        cp.last_success_ns = now_ns
        self.stored = encode(cp)
        assert decode(self.stored, "sim", now_ns=now_ns) == cp  # the next run loads what this one decided


def simulate(ops: list[Op], data: st.DataObject) -> History:
    sim = Simulation(data)
    for op in ops:
        sim.apply(op)
    sim.apply(("run", None, False, 0))  # a last clean run, so a final crash's entries were re-sent
    return sim.h


def operations(*, prune_to: bool, crash: bool, selectors: bool = True) -> st.SearchStrategy[list[Op]]:
    keep = st.one_of(st.none(), st.integers(0, 6)) if prune_to else st.none()
    crashes = st.one_of(st.just(False), st.just(False), st.booleans()) if crash else st.just(False)
    lag = st.one_of(st.sampled_from([0, 600, 1799, LATE_MAX_S]), st.integers(0, LATE_MAX_S))
    # The recorders retry a create for about two minutes; creation itself is never 30 min late.
    create_lag = st.integers(0, 240)
    step = st.one_of(st.sampled_from([1, 300, 600, 1200, 1800, 3000, TTL_S, TTL_S + DELETE_SLACK_S]),
                     st.integers(1, 2400))
    clock = st.integers(0, len(CLOCKS) - 1)
    run = st.tuples(st.just("run"), keep, crashes, st.integers(0, len(SELECTORS) - 1 if selectors else 0))
    op = st.one_of(
        st.tuples(st.just("create"), clock),
        st.tuples(st.just("create"), clock),
        st.tuples(st.just("recreate"), st.integers(2, 40)),
        st.tuples(st.just("late"), create_lag),
        st.tuples(st.just("bump"), st.integers(0, 1000), st.integers(1, 3)),
        st.tuples(st.just("series"), st.integers(0, 1000), st.integers(1, 5), lag),
        st.tuples(st.just("advance"), step, st.booleans()),
        st.tuples(st.just("expire")),
        run, run,  # runs twice as likely: most histories should be observed
    )
    return st.lists(op, min_size=8, max_size=40)


def ahead_flip(entries: list[Pushed]) -> bool:
    """The documented residue (job/dedupe.py): stamped "ahead" by a crashed run, then as its own time."""
    skewed = [p for p in entries if any(k == "clock_skew" for k, _ in p.labels)]
    plain = [p for p in entries if p not in skewed]
    return len(entries) == 2 and len(skewed) == 1 and len(plain) == 1 and skewed[0].crashed \
        and skewed[0].t_ns > skewed[0].now_ns + AHEAD_NS and plain[0].t_ns <= plain[0].now_ns + AHEAD_NS


def restamped_after_scope_change(entries: list[Pushed], h: History) -> bool:
    """The other residue: a crashed run's skewed entry, re-sent only after a run under another
    --field-selector saved a newer list time without it, is stamped from that list time."""
    first, *rest = sorted(entries, key=lambda p: p.run)
    return len(rest) == 1 and first.crashed and any(first.run < r < rest[0].run for r in h.saved_runs) \
        and any(any(k == "clock_skew" for k, _ in p.labels) for p in entries)


# ---------------------------------------------------------------------------------------- the properties


@SETTINGS
@given(ops=operations(prune_to=False, crash=True), data=st.data())
def test_every_listed_pair_lands_in_loki_exactly_once_whatever_the_reporters_clocks(
        ops: list[Op], data: st.DataObject) -> None:
    h = simulate(ops, data)
    HISTORIES["exactly once in Loki, skewed clocks and crashes"] += 1
    assert not h.loki.rejected, h.loki.rejected[:3]  # never too new, too old or too far behind
    landed = h.loki_entries()
    assert set(landed) == h.listed  # nothing lost, nothing invented
    for pair, entries in landed.items():
        # Crash re-sends were identical, but for the two documented residues.
        assert len(entries) == 1 or ahead_flip(entries) or restamped_after_scope_change(entries, h), (pair, entries)


@SETTINGS
@given(ops=operations(prune_to=False, crash=False), data=st.data())
def test_without_crashes_each_pair_is_sent_exactly_once_even_across_selector_changes(
        ops: list[Op], data: st.DataObject) -> None:
    h = simulate(ops, data)
    HISTORIES["sent once"] += 1
    sent = Counter((uid, n) for _, uid, n, _, _ in h.shipped)
    assert sent == Counter(h.listed)  # each pair sent exactly once: forgetting never causes a re-ship


@SETTINGS
@given(ops=operations(prune_to=False, crash=False, selectors=False), data=st.data())
def test_under_one_selector_new_values_telescope_to_the_highest_count(ops: list[Op], data: st.DataObject) -> None:
    # With one scope the ledger forgets only deleted uids. (After a --field-selector change an entry
    # outside the new selector is forgotten a TTL after its count was recorded; if it comes back with
    # a higher count, its `new` counts from 0: documented in job/dedupe.py.)
    h = simulate(ops, data)
    HISTORIES["new telescopes"] += 1
    total: Counter[str] = Counter()
    highest: dict[str, int] = {}
    for _, uid, n, new, _ in h.shipped:
        assert new >= 1
        total[uid] += new
        highest[uid] = max(highest.get(uid, 0), n)
    assert dict(total) == highest  # the ledger never forgot a live uid, so `new` never overstates


@SETTINGS
@given(ops=operations(prune_to=False, crash=False), data=st.data())
def test_loki_timestamps_are_the_events_own_time_unless_it_is_implausible(ops: list[Op], data: st.DataObject) -> None:
    h = simulate(ops, data)
    HISTORIES["timestamps"] += 1
    for p in h.pushed:
        skewed = any(k == "clock_skew" for k, _ in p.labels)
        assert p.ts <= p.now_ns + AHEAD_NS  # never too new for Loki, even from 9999
        if not skewed:
            assert p.ts == p.t_ns  # a plausible time is kept as it is
        else:
            assert p.ts != p.t_ns and p.ts <= p.now_ns and dict(p.labels)["clock_skew"] == hour_bucket(p.ts)


@SETTINGS
@given(ops=operations(prune_to=True, crash=True), data=st.data())
def test_size_forced_pruning_skips_only_dropped_uids_and_reships_only_entries_dropped_right_away(
        ops: list[Op], data: st.DataObject) -> None:
    h = simulate(ops, data)
    HISTORIES["size-forced pruning" + (" (with drops)" if h.dropped else " (none dropped)")] += 1
    assert not h.loki.rejected, h.loki.rejected[:3]
    landed = h.loki_entries()
    dropped_pairs = {p for p in h.listed if p[0] in h.dropped}
    # Nothing outside the dropped uids is lost: the horizon never swallows a uid no list offered.
    assert h.listed - dropped_pairs <= set(landed)
    for pair, entries in landed.items():
        if len(entries) > 1 and not ahead_flip(entries) and not restamped_after_scope_change(entries, h):
            # A re-ship only for an entry dropped within 2 SKEW_S of the run that recorded it, or dropped
            # before a scope change (which clears the horizon rather than let it swallow old uids).
            drops = h.dropped.get(pair[0], [])
            assert any(listed_s - recorded_s <= 2 * SKEW_S for _, recorded_s, listed_s in drops) or any(
                c > run for run, _, _ in drops for c in h.horizon_cleared), (pair, entries, drops)


def test_one_event_dated_in_the_future_does_not_stop_the_others_from_shipping() -> None:
    """Issue 9, finding 1, as one fixed history through decode_page, select and the codec."""
    now = T0 * NS
    future = ApiEvent("f0000000-0000-4000-8000-000000000000", "future", 1, now + 7200 * NS, T0, T0, ("offset", 7200))
    later = [ApiEvent(f"{i:08x}-0000-4000-8000-000000000001", f"e{i}", 1, now + 600 * NS, T0 + 600, T0 + 600,
                      ("offset", 0)) for i in range(20)]
    cp = Checkpoint()
    for run, (events, at) in enumerate([([future], now), ([future, *later], now + 600 * NS)]):
        ledger = Ledger(cp, ttl_s=TTL_S, now_ns=at)
        page = decode_page(json.dumps({"items": [e.item() for e in events]}).encode())
        s = Summary()
        shipped = list(select(page, ledger, Filters(), s))
        ledger.finish(complete=True)
        cp = decode(encode(cp), "x", now_ns=at)
        assert s.new == (1 if run == 0 else 20)
        if run == 0:
            ((_, ts, _, skew),) = shipped
            assert ts == T0 * NS and skew == (("clock_skew", hour_bucket(ts)),)  # its creation, not 2 h ahead
    assert s.before_horizon == 0 and len(cp.ledger) == 21


# The checkpoint itself: whatever the ledger holds must come back from a save and a load unchanged,
# or the next run re-ships (an entry lost) or skips (an entry invented). The API server only hands
# out canonical lower-case UUIDs, but --from-file dumps can carry any non-empty string (decode_page
# rejects an empty uid), and counts are int32.


def uid_pieces() -> st.SearchStrategy[list[str]]:
    # Canonical UUIDs written back to back, then cut anywhere: strings that are not UUIDs one by one
    # (lengths need not be 36), though their concatenation is.
    def cut(uuids: list[str], cuts: list[int]) -> list[str]:
        joined = "".join(uuids)
        at = sorted({c % len(joined) for c in cuts} - {0})
        return [joined[i:j] for i, j in zip([0, *at], [*at, len(joined)], strict=True)]

    return st.builds(cut, st.lists(st.uuids().map(str), min_size=1, max_size=3),
                     st.lists(st.integers(1, 107), min_size=1, max_size=3))


@SETTINGS
@given(uids=st.one_of(
    uid_pieces(),  # alone, so the pieces are the whole ledger, as a fast path on all uids would see it
    st.lists(st.one_of(st.uuids().map(lambda u: [str(u)]), st.uuids().map(lambda u: [str(u).upper()]),
                       st.text(min_size=1, max_size=40).map(lambda s: [s]), uid_pieces()),
             max_size=12).map(lambda groups: [u for g in groups for u in g])),
       counts=st.lists(st.integers(1, 2**31 - 1), min_size=24, max_size=24),
       ages=st.lists(st.integers(0, 10 * TTL_S), min_size=24, max_size=24))
def test_checkpoint_round_trip_keeps_every_ledger_entry_whatever_the_uids(
        uids: list[str], counts: list[int], ages: list[int]) -> None:
    HISTORIES["checkpoint round trip"] += 1
    ledger = {u: (counts[i % 24], T0 - ages[i % 24]) for i, u in enumerate(uids)}
    cp = Checkpoint(watermark_ns=T0 * NS, prune_horizon_ns=(T0 - 2 * TTL_S) * NS, ledger=ledger,
                    last_success_ns=T0 * NS, last_run={"new": len(ledger)}, listed_ns=T0 * NS - 5, list_rv="77",
                    scope=list_scope("type=Warning"), scope_since_ns=(T0 - 60) * NS)
    assert decode(encode(cp), "x", now_ns=T0 * NS) == cp


def test_checkpoint_round_trip_keeps_two_uids_that_only_together_spell_two_uuids() -> None:
    # The smallest case behind the property above: a 37- and a 35-character uid, neither a UUID, whose
    # concatenation in sorted order is two canonical (and here equal) UUIDs.
    cp = Checkpoint(watermark_ns=T0 * NS, ledger={"0aaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa0": (1, T0),
                                                  "aaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa": (2, T0)})
    assert decode(encode(cp), "x") == cp


def test_checkpoint_round_trip_keeps_two_uids_that_only_together_spell_a_uuid() -> None:
    cp = Checkpoint(watermark_ns=T0 * NS, ledger={"0": (1, T0), "aaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa": (2, T0)})
    assert decode(encode(cp), "x") == cp
