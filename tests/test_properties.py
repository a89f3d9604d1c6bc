"""Property tests of the exactly-once promise: every simulated run is a real run of the job.

A simulated Kubernetes API holds events that are created, bumped, updated as series, re-created after
expiry, written late, and deleted one TTL after their last write; some are reported by nodes whose
clocks are off (2 h ahead or behind, 92 min behind, 11 min ahead, a month ahead, fixed dates in 2100
and 9999). The API server's own clock (creationTimestamp, the TTL) and the job's clock are right.

The events live in tests/kubeapi.py's KubeAPI (put_event with their own uid and creationTimestamp,
delete_event once the TTL expired them), and each run is ``python -m job run`` in-process through
tests/conftest.py's Harness: job.main.main with the simulation's clock in a FastClock, a seeded
random, and the ConfigMap checkpoint, against tests/lokidouble.py's LokiDouble, whose clock is the
simulation's and which applies Loki's push rules (docs/ledger.md: too new, too old, too far behind a
stream's newest, exact duplicates dropped). So whatever sync.run does (the Lease, checkpointing.load
and fit, the since/until window, the list-RV hand-off, finish, the save) is what is under test.

A run varies its --page-size (where the pages are cut), --field-selector (the ledger's scope) and
--list-from (etcd, or the watch cache at NotOlderThan the last list's resourceVersion). The listing
order is KubeAPI's, by name, as etcd's; it cannot be shuffled per run, so the names are drawn in an
order unrelated to creation. Some runs are size-limited: another key of the checkpoint ConfigMap
takes all but a few hundred bytes of its 1 MiB, so checkpointing.fit prunes the ledger for real.
Some runs "crash": either after their push (the checkpoint's PATCH fails) or during it (Loki refuses
the push with a 401 and stores none of it); the run exits non-zero and saves nothing, and the next
run re-sends.

What the assertions read: what the LokiDouble stored, every entry it was sent (record_received=True),
and two observations of the run's Ledger (a subclass patched into job.sync: whether the run saw a
new scope, and which uids checkpointing.fit's prune_to dropped). The CPU time a run records in the
checkpoint's history is the FastClock's constant, so the checkpoint's size, and so what fit prunes,
depends on the history alone.

Raise the number of histories with HYPOTHESIS_EXAMPLES=2000.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from job import sync
from job.checkpointing import fit
from job.dedupe import AHEAD_NS, NS, SKEW_S, Ledger, hour_bucket
from job.events import decode_page
from job.filters import Filters
from job.selection import list_scope, select
from job.summary import Summary
from state.base import Checkpoint, StoreError, decode, encode
from state.configmap import LIMIT
from tests.conftest import NAMESPACE, Harness, put_install
from tests.kubeapi import ApiError, KubeAPI
from tests.lokidouble import Entry, LokiDouble

EXAMPLES = max(1, int(os.environ.get("HYPOTHESIS_EXAMPLES", "50")))
# No example database: the suite must not write into the project tree, and every run searches afresh.
# No explain phase: on a failure it re-runs long histories many times and would take a minute.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
# The codec's property is cheap: it keeps its former number of examples.
CODEC_SETTINGS = settings(SETTINGS, max_examples=max(200, EXAMPLES))

TTL_S = 3600  # kube-apiserver --event-ttl default
DELETE_SLACK_S = 60  # "an event disappears between 1 h and 1 h 01 min after its last write"
LATE_MAX_S = 1800  # new-recorder series counts reach the server up to 30 min late
T0 = 1_795_600_000  # an arbitrary start of the simulated clock, in seconds
YEAR_2100_NS = 4_102_444_800 * NS
YEAR_9999_NS = 253_402_300_799 * NS  # 9999-12-31T23:59:59Z
# A reporter's clock: an offset in seconds from the true time, or a fixed date it always writes.
CLOCKS: list[tuple[str, int]] = [("offset", 0)] * 5 + [
    ("offset", 2 * 3600), ("offset", -2 * 3600), ("offset", -92 * 60), ("offset", 11 * 60),
    ("offset", 30 * 86_400), ("fixed", YEAR_2100_NS), ("fixed", YEAR_9999_NS)]

# --field-selector of a run: the API lists only what matches, and the ledger's scope changes with it.
SELECTORS = ["", "", "", "type=Warning"]
CHECKPOINT_CM = "loki-event-sync-checkpoint"

HISTORIES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\n[test_properties] histories simulated: {dict(HISTORIES)}; total {sum(HISTORIES.values())}")


# ------------------------------------------------------------------------------- the servers and spies


class SimClock:
    """The simulation's one clock: the job's (through FastClock), the API server's and Loki's."""

    def __init__(self) -> None:
        self.now_s = T0

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now_s, dt.timezone.utc)

    def now_ns(self) -> int:
        return self.now_s * NS


@dataclass(frozen=True)
class Received:
    """One entry as it reached Loki, whatever Loki then did with it, comparable with what Loki stored."""

    labels: tuple[tuple[str, str], ...]
    ts: int
    line: str

    @classmethod
    def of(cls, e: Entry) -> Received:
        return cls(tuple(sorted(e.labels.items())), e.ts, e.line)


class SpyLedger(Ledger):
    """job.dedupe.Ledger, unchanged, noting what the assertions need to know about each run."""

    made: ClassVar[list[SpyLedger]] = []

    def __init__(self, cp: Checkpoint, **kwargs: Any) -> None:
        super().__init__(cp, **kwargs)
        self.drops: list[tuple[str, int]] = []  # (uid, the second its count was recorded)
        SpyLedger.made.append(self)

    def prune_to(self, keep: int) -> int:
        before = dict(self.cp.ledger)
        dropped = super().prune_to(keep)
        self.drops += [(uid, before[uid][1]) for uid in before.keys() - self.cp.ledger.keys()]
        return dropped


@dataclass
class Servers:
    kube: KubeAPI
    loki: LokiDouble
    clock: SimClock
    tmp: Path
    crash: bool = False  # the next checkpoint PATCH fails

    def refuse_save(self, method: str, path: str) -> None:
        if self.crash and method == "PATCH" and f"/configmaps/{CHECKPOINT_CM}" in path:
            raise ApiError(403, "injected: the run is killed before its save")

    def reset(self) -> Harness:
        """A fresh cluster and Loki for the next history: hypothesis examples share the servers."""
        for e in self.kube.events():
            self.kube.delete_event(e["metadata"]["namespace"], e["metadata"]["name"])
        self.kube.compact()
        put_install(self.kube)
        self.loki.reset()
        self.clock.now_s = T0
        self.crash = False
        SpyLedger.made.clear()
        return Harness(self.kube, self.loki, self.tmp)  # run numbers, so Lease holders, from 1 again


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    clock = SimClock()
    loki = LokiDouble(now_ns=clock.now_ns, record_received=True)
    with KubeAPI() as kube, loki, mock.patch.object(sync, "Ledger", SpyLedger):
        s = Servers(kube, loki, clock, tmp_path_factory.mktemp("properties"))
        kube.on_request = s.refuse_save
        yield s


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
    event_time_ns: int = 0  # a series' eventTime: the first occurrence, reporter's clock

    def item(self) -> dict[str, Any]:
        e: dict[str, Any] = {
            "metadata": {"name": self.name, "namespace": "default", "uid": self.uid,
                         "creationTimestamp": rfc(self.created_s * NS)},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": self.name},
            "reason": "BackOff", "message": "m", "type": self.type_, "source": {"component": "kubelet"},
        }
        if self.series:
            e["eventTime"] = rfc(self.event_time_ns, micro=True)
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
class History:
    pushed: list[Pushed] = field(default_factory=list)  # the entries with a uid the runs sent
    unstored: list[Received] = field(default_factory=list)  # sent, yet not in Loki: refused for good
    stored: list[Pushed] = field(default_factory=list)  # as Loki holds them, each with the first run that sent it
    listed: set[tuple[str, int]] = field(default_factory=set)
    shipped: list[tuple[int, str, int, int, bool]] = field(default_factory=list)  # (run, uid, count, new, crashed)
    # uid -> (run, recorded second, that run's start second) of each size-forced drop
    dropped: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    crashes: int = 0
    runs: int = 0
    saved_runs: list[int] = field(default_factory=list)
    horizon_cleared: list[int] = field(default_factory=list)  # runs that saw a new scope and set the horizon aside
    final_ledger: set[str] = field(default_factory=set)  # the uids of the checkpoint the last run saved
    final_live: set[str] = field(default_factory=set)  # the uids the API held at the last run

    def loki_entries(self) -> dict[tuple[str, int], list[Pushed]]:
        out: dict[tuple[str, int], list[Pushed]] = {}
        for p in self.stored:
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
# ("run", room, crash, selector, page size, cache): room = None (no size limit) or the bytes a size-limited
# checkpoint may have beyond the last one with an empty ledger; crash: 0, or how the run fails before
# its save (Simulation.run); selector: SELECTORS[i]; cache: --list-from cache
Run = tuple[str, int | None, int, int, int, bool]
# One of the above; typed loosely because mypy cannot narrow a union of tuples by the tag in op[0].
Op = tuple[Any, ...]


def uid_for(i: int) -> str:
    # Mostly canonical UUIDs (the binary columns of the checkpoint), some other strings (its JSON part).
    if i % 5 == 4:
        return f"Not-A-UUID-{i}"
    return f"{i:08x}-0000-4000-8000-{(i * 7919) % 16**12:012x}"


class Simulation:
    """The clocks and the events, driven by a list of operations, in KubeAPI; each "run" runs the job."""

    def __init__(self, servers: Servers, name_salt: int) -> None:
        self.servers = servers
        self.kube = servers.kube
        self.loki = servers.loki
        self.harness = servers.reset()
        self.clock = servers.clock
        self.name_salt = name_salt
        self.live: dict[str, ApiEvent] = {}
        self.expired: list[ApiEvent] = []
        self.next_id = 0
        self.h = History()
        self.times: dict[tuple[str, int], int] = {}  # (uid, count) -> the event's own time then

    @property
    def now(self) -> int:
        return self.clock.now_s

    def reported(self, clock: tuple[str, int], true_ns: int) -> int:
        kind, value = clock
        return value if kind == "fixed" else true_ns + value * NS

    def _put(self, e: ApiEvent) -> None:
        self.kube.put_event(e.item())
        self.times[(e.uid, e.count)] = e.t_ns

    def _new(self, count: int, clock: tuple[str, int], lag_s: int = 0, series: bool = False,
             name: str | None = None) -> None:
        self.next_id += 1
        uid = uid_for(self.next_id)
        t = self.reported(clock, (self.now - lag_s) * NS)
        if name is None or any(e.name == name for e in self.live.values()):
            # The listing is in name order: names in an order of their own, not the creation order.
            name = f"ev{(self.next_id * self.name_salt) % 9973:04d}-{self.next_id}"
        e = ApiEvent(uid, name, count, t, self.now, self.now, clock, series,
                     "Normal" if self.next_id % 3 == 0 else "Warning", event_time_ns=t)
        self.live[uid] = e
        self._put(e)

    def _pick(self, i: int) -> ApiEvent | None:
        if not self.live:
            return None
        return sorted(self.live.values(), key=lambda e: (e.written_s, e.uid))[i % len(self.live)]

    def _delete_expired(self, older_than_s: int) -> None:
        for uid in [u for u, e in self.live.items() if self.now - e.written_s > older_than_s]:
            e = self.live.pop(uid)
            self.kube.delete_event("default", e.name)
            self.expired.append(e)

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
                self._put(e)
        elif kind == "advance":
            self.clock.now_s += op[1]
            if op[2]:
                self._new(1, ("offset", 0))
        elif kind == "expire":
            self._delete_expired(TTL_S)
        elif kind == "run":
            self.run(*op[1:])
        else:  # pragma: no cover - the strategies only build the kinds above
            raise AssertionError(op)

    def selected(self, selector: str) -> list[ApiEvent]:
        return [e for e in self.live.values() if not selector or f"type={e.type_}" == selector]

    def _checkpoint_map(self) -> dict[str, Any]:
        return self.kube.existing("configmaps", NAMESPACE, CHECKPOINT_CM)

    def _saved(self) -> bytes | None:
        binary = self._checkpoint_map().get("binaryData") or {}
        return base64.b64decode(binary["checkpoint"]) if "checkpoint" in binary else None

    def _limit(self, room: int | None) -> None:
        """Leave the checkpoint ``room`` bytes beyond the last one's with an empty ledger (about one entry
        per 12 bytes; this run's own header may need more than that, and then it keeps none), or the
        whole 1 MiB."""
        cm = self._checkpoint_map()
        cm.pop("data", None)
        saved = self._saved()
        if room is not None and saved is not None:  # a first run's header is not known beforehand
            empty = decode(saved, "sim")
            empty.ledger = {}
            # fit() keeps the checkpoint 4 KiB under what the other keys leave of the 1 MiB.
            cm["data"] = {"padding": "x" * (LIMIT - 4096 - len(encode(empty)) - room)}
        self.kube.put_object("configmaps", cm)

    def run(self, room: int | None, crash: int, selector: str | int = 0, page_size: int = 50,
            cache: bool = False) -> None:
        """One `python -m job run`, at the simulation's time, against the simulated API and Loki.

        ``crash`` 1: the run pushes, then its save fails; 2: Loki refuses the run's first push (if it
        pushes at all), so it stores nothing of it, and the run fails before its save."""
        selector = SELECTORS[selector] if isinstance(selector, int) else selector
        self._delete_expired(TTL_S + DELETE_SLACK_S)  # the API server has certainly deleted these
        self.h.runs += 1
        run_no, now_ns = self.h.runs, self.now * NS
        self._limit(room)
        before, sent_before, made_before = self._saved(), len(self.loki.received), len(SpyLedger.made)
        pushes = self.loki.pushes
        self.servers.crash = crash == 1
        if crash == 2:
            self.loki.fail_next(401, body="injected: this run's push is refused")
        extra = ["--page-size", str(page_size), "--event-ttl", f"{TTL_S}s"]
        extra += ["--field-selector", selector] if selector else []
        extra += ["--list-from", "cache"] if cache else []
        code = self.harness.run("run", *extra, clock=self.clock.now)
        self.servers.crash = False
        refused = crash == 2 and self.loki.pushes > pushes  # a run with nothing to push was not refused
        self.loki.clear_injected()
        crashed = crash == 1 or refused
        assert (code != 0) == crashed, self.harness.stderr
        (ledger,) = SpyLedger.made[made_before:]
        if ledger.scope_changed:  # crashed runs too: the horizon is set aside as soon as the scope changes
            self.h.horizon_cleared.append(run_no)
        for r in self.loki.received[sent_before:]:
            f = json.loads(r.line)
            if "uid" not in f:
                continue  # the gap marker, when the runs were further apart than the TTL
            uid, n = f["uid"], f["count"]
            self.h.pushed.append(Pushed(run_no, now_ns, Received.of(r).labels, r.ts, r.line, self.times[(uid, n)],
                                        crashed))
            self.h.shipped.append((run_no, uid, n, f["new"], crashed))
        # What a run listed must land, unless Loki refused the run's push: then only what a later run lists
        # again (a higher count's line covers the count only the refused run listed, in its `new`).
        for listed in self.selected(selector) if not refused else []:
            self.h.listed.add((listed.uid, listed.count))
        if crashed:  # nothing saved: the next run loads the same checkpoint and sends again
            assert self._saved() == before
            self.h.crashes += 1
            return
        self.h.saved_runs.append(run_no)
        for uid, recorded_s in ledger.drops:
            self.h.dropped.setdefault(uid, []).append((run_no, recorded_s, self.now))

    def finish(self) -> History:
        self.run(None, 0)  # a last clean run, so a final crash's entries were re-sent
        saved = self._saved()
        self.h.final_ledger = set(decode(saved, "sim").ledger) if saved is not None else set()
        self.h.final_live = set(self.live)
        stored = set(map(Received.of, self.loki.entries()))
        self.h.unstored = [r for r in map(Received.of, self.loki.received) if r not in stored]
        first: dict[Received, Pushed] = {}
        for p in self.h.pushed:
            first.setdefault(Received(p.labels, p.ts, p.line), p)
        self.h.stored = [first[k] for k in sorted(stored, key=lambda k: (k.ts, k.line)) if k in first]
        return self.h


def simulate(servers: Servers, ops: list[Op], name_salt: int) -> History:
    sim = Simulation(servers, name_salt)
    for op in ops:
        sim.apply(op)
    return sim.finish()


def operations(*, prune_to: bool, crash: bool, selectors: bool = True) -> st.SearchStrategy[list[Op]]:
    room = st.one_of(st.none(), st.integers(0, 150), st.integers(0, 40)) if prune_to else st.none()
    crashes = st.sampled_from([0, 0, 0, 0, 1, 2]) if crash else st.just(0)
    lag = st.one_of(st.sampled_from([0, 600, 1799, LATE_MAX_S]), st.integers(0, LATE_MAX_S))
    # The recorders retry a create for about two minutes; creation itself is never 30 min late.
    create_lag = st.integers(0, 240)
    step = st.one_of(st.sampled_from([1, 300, 600, 1200, 1800, 3000, TTL_S, TTL_S + DELETE_SLACK_S]),
                     st.integers(1, 2400))
    clock = st.integers(0, len(CLOCKS) - 1)
    run = st.tuples(st.just("run"), room, crashes, st.integers(0, len(SELECTORS) - 1 if selectors else 0),
                    st.one_of(st.just(500), st.integers(1, 6)), st.booleans())
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


NAME_SALT = st.integers(1, 9972)


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
@given(ops=operations(prune_to=False, crash=True), salt=NAME_SALT)
def test_every_listed_pair_lands_in_loki_exactly_once_whatever_the_reporters_clocks(
        servers: Servers, ops: list[Op], salt: int) -> None:
    h = simulate(servers, ops, salt)
    HISTORIES["exactly once in Loki, skewed clocks and crashes"] += 1
    # Never too new, too old or too far behind: whatever Loki refused, it holds that very entry already.
    assert not h.unstored, h.unstored[:3]
    landed = h.loki_entries()
    assert set(landed) == h.listed  # nothing lost, nothing invented
    for pair, entries in landed.items():
        # Crash re-sends were identical, but for the two documented residues.
        assert len(entries) == 1 or ahead_flip(entries) or restamped_after_scope_change(entries, h), (pair, entries)


@SETTINGS
@given(ops=operations(prune_to=False, crash=False), salt=NAME_SALT)
def test_without_crashes_each_pair_is_sent_exactly_once_even_across_selector_changes(
        servers: Servers, ops: list[Op], salt: int) -> None:
    h = simulate(servers, ops, salt)
    HISTORIES["sent once"] += 1
    sent = Counter((uid, n) for _, uid, n, _, _ in h.shipped)
    assert sent == Counter(h.listed)  # each pair sent exactly once: forgetting never causes a re-ship


@SETTINGS
@given(ops=operations(prune_to=False, crash=False, selectors=False), salt=NAME_SALT)
def test_under_one_selector_new_values_telescope_to_the_highest_count_and_the_ledger_forgets_the_deleted(
        servers: Servers, ops: list[Op], salt: int) -> None:
    # With one scope the ledger forgets only deleted uids. (After a --field-selector change an entry
    # outside the new selector is forgotten a TTL after its count was recorded; if it comes back with
    # a higher count, its `new` counts from 0: documented in job/dedupe.py.)
    h = simulate(servers, ops, salt)
    HISTORIES["new telescopes"] += 1
    total: Counter[str] = Counter()
    highest: dict[str, int] = {}
    for _, uid, n, new, _ in h.shipped:
        assert new >= 1
        total[uid] += new
        highest[uid] = max(highest.get(uid, 0), n)
    assert dict(total) == highest  # the ledger never forgot a live uid, so `new` never overstates
    assert h.final_ledger == h.final_live  # and the last complete list made it forget every deleted one


@SETTINGS
@given(ops=operations(prune_to=False, crash=False), salt=NAME_SALT)
def test_loki_timestamps_are_the_events_own_time_unless_it_is_implausible(
        servers: Servers, ops: list[Op], salt: int) -> None:
    h = simulate(servers, ops, salt)
    HISTORIES["timestamps"] += 1
    for p in h.pushed:
        skewed = any(k == "clock_skew" for k, _ in p.labels)
        assert p.ts <= p.now_ns + AHEAD_NS  # never too new for Loki, even from 9999
        if not skewed:
            assert p.ts == p.t_ns  # a plausible time is kept as it is
        else:
            assert p.ts != p.t_ns and p.ts <= p.now_ns and dict(p.labels)["clock_skew"] == hour_bucket(p.ts)


@SETTINGS
@given(ops=operations(prune_to=True, crash=True), salt=NAME_SALT)
def test_size_forced_pruning_skips_only_dropped_uids_and_reships_only_entries_dropped_right_away(
        servers: Servers, ops: list[Op], salt: int) -> None:
    h = simulate(servers, ops, salt)
    HISTORIES["size-forced pruning" + (" (with drops)" if h.dropped else " (none dropped)")] += 1
    assert not h.unstored, h.unstored[:3]
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


def test_a_first_list_from_the_watch_cache_keeps_its_scope_so_a_narrower_selector_forgets_nothing(
        servers: Servers) -> None:
    """Found by the properties: a first watch-cache list is not complete (it has no resourceVersion
    to be at least as new as), and its entries once had no scope, so a later list under
    --field-selector type=Warning read the Normal event's absence as deletion and the next
    unfiltered run shipped it again."""
    ops: list[Op] = [("create", 0), ("create", 0), ("create", 0), ("advance", 1, False),
                     ("run", None, 0, 0, 500, True), ("run", None, 0, 3, 500, False)]
    h = simulate(servers, ops, 1)
    assert Counter((uid, n) for _, uid, n, _, _ in h.shipped) == Counter(h.listed)
    assert len(h.listed) == 3 and not h.unstored


@pytest.mark.parametrize("max_bytes", [4096 + 100, 200], ids=["within-the-limit", "beyond-it"])
def test_a_checkpoint_that_cannot_shrink_further_is_saved_within_the_limit_or_refused_beyond_it(
        max_bytes: int) -> None:
    """Found by the properties: when even an empty ledger does not fit inside the 4 KiB margin, fit
    pruned forever. Now it gives up the margin, never the store's limit."""
    @dataclass
    class Tiny:  # a store whose other contents leave little room
        name: str = "tiny"
        max_bytes: int | None = None

    cp = Checkpoint(watermark_ns=T0 * NS, listed_ns=T0 * NS, ledger={uid_for(i): (1, T0) for i in range(5)})
    s, ledger = Summary(), Ledger(cp, ttl_s=TTL_S, now_ns=T0 * NS)
    if max_bytes > len(encode(Checkpoint(watermark_ns=T0 * NS, listed_ns=T0 * NS))):
        data = fit(cp, ledger, Tiny(max_bytes=max_bytes), s)  # type: ignore[arg-type]
        assert len(data) <= max_bytes and decode(data, "x") == cp
    else:
        with pytest.raises(StoreError, match=r"even with an empty ledger.*move the other keys out of it"):
            fit(cp, ledger, Tiny(max_bytes=max_bytes), s)  # type: ignore[arg-type]
    assert not cp.ledger and s.pruned == 5


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


@CODEC_SETTINGS
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
