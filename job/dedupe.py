"""The (uid, count) ledger: which occurrences have shipped, when an entry may be forgotten, and
which Loki timestamp an occurrence gets.

Time you can trust. Every time an Event reports about itself (lastTimestamp, eventTime,
series.lastObservedTime) comes from the clock of whoever wrote it: a node whose clock is hours off,
or anyone allowed to create Events. So none of them decides what else ships. The ledger trusts only
the job's own clock (deps.clock, passed in as ``now_ns``), the API server's creationTimestamp (the
server sets it, a client cannot), and what the API server lists.

Forgetting. An entry is forgotten when a *complete* list no longer contains its uid: the API server
has deleted the Event, and a uid is never reused, so a forgotten uid can never come back and be
re-shipped. A list is complete when
- it came from the API (never --from-file: a dump says nothing about what was deleted),
- every page was read to an empty ``continue`` (a 410 restarts the list from the start and the
  run fails if the restarts run out; uids seen in an abandoned pass are only ever kept, never
  dropped, so a restart cannot forget anything),
- it is not older than the list the checkpoint reflects (``list_rv``, compared as the integers the
  API server hands out; a list served from a stale cache must not read as "deleted"), and
- it could contain the entry: the list's *scope* (the --field-selector, and the namespaces it
  covers) is stored with the checkpoint, and absence only counts for entries recorded under the same
  scope. An event's selectable fields (type, reason, involvedObject, source, names) are part of its
  identity for both recorders, so an Event listed under a selector keeps matching it until deleted.
  Client-side --include/--exclude filters do not change the list at all, so they change nothing here:
  a filtered event is still seen.
  When the scope changes, entries recorded before the change and not seen under the new scope are
  kept until the job's clock says the API server has certainly deleted them at the count recorded:
  TTL + OUT_OF_SCOPE_MARGIN_S after the job recorded it (deletion comes 1 h to 1 h 01 min after
  the last write, which came before the job saw it). If such an event is listed again later it can
  only carry a higher count: a new (uid, count) pair, never a duplicate.

Size-forced pruning (the ConfigMap's 1 MiB) drops the entries whose count the job recorded longest
ago by its own clock: an Event is deleted a TTL after its last write, so those are the nearest to
deletion. They may still be alive, so the prune horizon moves to the API server's creation time they
could have: any unknown uid the API server created before it is skipped ("before-horizon"), and a
dropped entry is never re-shipped. The horizon never moves past this run's start minus SKEW_S, so it
cannot swallow an event no complete list has offered yet (every uid created earlier was in this
run's list); an entry recorded in the last SKEW_S before the run is the price, and may re-ship once.
A scope change clears the horizon (a wider scope offers old uids for the first time), so entries
dropped for size before it may also ship once more: a duplicate rather than a loss.

Loki timestamps. A sent entry must be sent again identically after a crash (the checkpoint was not
saved, so the next run re-sends), which is what lets Loki drop the copy. So the timestamp comes from
the Event and from the checkpoint the run loaded, never from the run's clock alone:
- ``base`` = max(creationTimestamp, the start of the last complete list), both trusted times at or
  before this occurrence's write: a pair not in the ledger was not there (or not at this count) when
  that list was taken, or it would have shipped then.
- An occurrence time ``t`` is plausible when lo <= t <= now + AHEAD_NS, with
  lo = max(creationTimestamp - BEHIND_CREATED_NS, last list start - BEHIND_LIST_NS): series counts
  reach the API up to 30 min late, and no occurrence precedes the object's creation.
- A plausible t is the Loki timestamp, as before. An implausible one (a node clock behind or ahead,
  an Event dated 2100 or 9999) gets ``base``: never more than ``now`` (Loki refuses more than 10 min
  ahead), never earlier than the run before this one. It goes to its own stream with the label
  ``clock_skew="<UTC hour of that timestamp>"``, so within a stream no entry is ever an hour behind
  another (Loki's too_far_behind) whatever the regular stream holds. The line keeps the Event's own
  times, so nothing is hidden.
- A backfill or --from-file run uses creationTimestamp alone for ``base`` and ``lo`` (a backfill
  re-ships what earlier lists already held; a dump is not the API), so a repeated backfill stamps
  the same. Without creationTimestamp and without a list, ``base`` falls back to the run's clock.
The one residue of the run's clock is "ahead" (t > now + AHEAD_NS): an occurrence between AHEAD_NS
and AHEAD_NS + one schedule interval ahead that is re-sent after a crash can be stamped t the second
time, and then shows twice in Loki. Far-ahead times (2100, 9999) stay ahead and are re-sent exactly.
A re-send is identical when the next saved run re-sends it, which is the case unless a run under
another --field-selector (that did not list the event) saved a newer list time in between.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from itertools import filterfalse, islice
from typing import NamedTuple

from state.base import Checkpoint

NS = 1_000_000_000
MINUTE_NS = 60 * NS
AHEAD_NS = 5 * MINUTE_NS  # half Loki's creation_grace_period (10 min): the other half is for Loki's clock
BEHIND_CREATED_NS = 5 * MINUTE_NS  # a reporter's clock may trail the API server's this much
BEHIND_LIST_NS = 40 * MINUTE_NS  # 30 min late series counts, plus 10 min for clocks and run length
OUT_OF_SCOPE_MARGIN_S = 5 * 60  # deletion comes within 1 min of the TTL; the rest is clock slack
SKEW_S = 120  # the API server's clock against the job's, for creation-time comparisons
# How long an entry outlives its Event's TTL, for `plan`'s ledger size estimate: the API server
# deletes it within 1 min of the TTL after its last write, and the next complete list notices; 32 min
# covers any schedule up to */30 (it was the prune margin of 0.1, so the estimate is unchanged).
PRUNE_MARGIN_S = 32 * 60
_CREATED_CACHE = 8192  # distinct creationTimestamps remembered per run (an hour holds 3,600 seconds)

Labels = tuple[tuple[str, str], ...]
NO_LABELS: Labels = ()


class Verdict(NamedTuple):
    """A NamedTuple, not a frozen dataclass: one is made per shipped event, and a frozen dataclass's
    __init__ (four object.__setattr__ calls) cost about 1 µs of it."""

    new: int = 0  # occurrences not shipped before; 0 means skip
    why: str = ""  # for skips: "duplicate", "before-horizon", "out-of-window"
    ts_ns: int = 0  # the Loki timestamp
    skew: Labels = NO_LABELS  # the extra stream label of an implausible time, else none


# Skips are the common case of a steady-state run: share them instead of allocating one per event.
DUPLICATE = Verdict(0, "duplicate")
BEFORE_HORIZON = Verdict(0, "before-horizon")
OUT_OF_WINDOW = Verdict(0, "out-of-window")


def hour_bucket(t_ns: int) -> str:
    """The UTC hour of a Loki timestamp: entries of one such stream are never an hour apart."""
    return time.strftime("%Y-%m-%dT%H", time.gmtime(t_ns // NS))


def created_ns(text: str | None) -> int:
    """creationTimestamp in Unix ns, 0 when absent or unreadable (then nothing is compared with it)."""
    if not text:
        return 0
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return 0
    if t.tzinfo is None:
        return 0
    return int(t.timestamp()) * NS  # a Time: whole seconds


class Ledger:
    """Decides, event by event, whether an occurrence is new, and records it as shipped.

    The record happens before the push is acknowledged, but it is only saved after every push
    was acknowledged, so a failed run leaves the stored ledger as it was. ``finish`` ends the run's
    part: it forgets what a complete list showed deleted and returns how many.
    """

    def __init__(self, cp: Checkpoint, *, ttl_s: float, now_ns: int, since_ns: int = 0, until_ns: int = 0,
                 replay: bool = False, api_list: bool = True, scope: str = "") -> None:
        self.cp = cp
        self.ttl_s = ttl_s
        self.now_ns = now_ns
        self.now_s = now_ns // NS
        self.since_ns = since_ns
        self.until_ns = until_ns
        # A backfill re-ships what the ledger already holds; it still records what it ships.
        self.replay = replay
        self.api_list = api_list
        self.scope = scope
        # Only a sync of the API relies on "not shipped at the last list means written after it".
        self.listed_ns = cp.listed_ns if api_list and not replay else 0
        # The first list (or the first after an upgrade from 0.1) sets the scope; only a later list
        # under another scope is a change.
        self.scope_changed = api_list and bool(cp.listed_ns or cp.scope) and cp.scope != scope
        # A wider scope can hold uids created long ago that no list offered: the horizon would
        # swallow them. Better that an entry dropped for size ships once more.
        self.horizon_ns = 0 if self.scope_changed else cp.prune_horizon_ns
        # Forgetting by absence only ever concerns the entries loaded with the checkpoint: they are the
        # first ``_loaded`` keys of the dict (insertion order; nothing is deleted before finish), and
        # an entry recorded by this run was listed by it. So ``seen`` holds only loaded uids that were
        # listed again: a first run keeps no set at all (4 MB at 100k events, 8 MB at 200k).
        self._loaded = len(cp.ledger)
        self.seen: set[str] = set()
        self._seen_add = self.seen.add
        self.complete = False
        # The share of the last page that shipped (job/selection.py decides how to decode the next by
        # it): all of it on a first run or a backfill, little in a steady state.
        self.ship_share = 1.0 if replay or not cp.ledger else 0.0
        # One (count, now) tuple per count recorded this run, shared by every entry recorded at that
        # count (most counts are 1): a tuple per entry was 56 bytes of the ledger's memory each.
        self._records: dict[int, tuple[int, int]] = {}
        self._created: dict[str, int] = {}
        # The plausible-time bounds that do not depend on the event.
        self._lo_listed = self.listed_ns - BEHIND_LIST_NS if self.listed_ns else 0
        self._latest_ns = now_ns + AHEAD_NS

    def saw(self, uid: str) -> None:
        """An event listed but not considered (a client-side filter): still proof it exists."""
        if uid in self.cp.ledger:
            self._seen_add(uid)

    def is_duplicate(self, uid: str, n: int) -> bool:
        """The cheap first question (needs no time): is count ``n`` of ``uid`` already shipped?"""
        prev = self.cp.ledger.get(uid)
        if prev is None:
            return False
        self._seen_add(uid)
        return n <= prev[0] and not self.replay

    def consider(self, uid: str, n: int, t_ns: int, created: str | None = None) -> Verdict:
        """Whether occurrence count ``n`` of ``uid`` (occurrence time ``t_ns``) ships, and as what."""
        ledger = self.cp.ledger
        prev = ledger.get(uid)
        if prev is not None:
            self._seen_add(uid)
            if n <= prev[0] and not self.replay:
                return DUPLICATE
        c_ns = self._created.get(created) if created else 0
        if c_ns is None:
            c_ns = self._created_ns(created)
        if prev is None and not self.replay and c_ns and c_ns < self.horizon_ns:
            # Created before entries were dropped for size: it may be one of them, so never re-ship.
            return BEFORE_HORIZON
        # The Loki timestamp: the event's own time when plausible (nearly every event, so inline), else _skewed.
        lo = c_ns - BEHIND_CREATED_NS if c_ns else 0
        if lo < self._lo_listed:
            lo = self._lo_listed
        if lo <= t_ns <= self._latest_ns:
            ts, skew = t_ns, NO_LABELS
        else:
            ts, skew = self._skewed(c_ns)
        if ts < self.since_ns or (self.until_ns and ts >= self.until_ns):
            return OUT_OF_WINDOW
        shipped = prev[0] if prev is not None else 0
        if n > shipped:
            ledger[uid] = self._records.get(n) or self._record(n)
        if ts > self.cp.watermark_ns:
            self.cp.watermark_ns = ts
        return Verdict(n if self.replay else n - shipped, "", ts, skew)

    def _created_ns(self, created: str | None) -> int:
        # creationTimestamp has whole seconds and an hour of events spans about 3,600 of them, so a
        # small cache parses each once (fromisoformat was a tenth of a first run's CPU).
        if len(self._created) >= _CREATED_CACHE:
            self._created.clear()
        c_ns = self._created[created] = created_ns(created)  # type: ignore[index]
        return c_ns

    def _record(self, n: int) -> tuple[int, int]:
        record = self._records[n] = (n, self.now_s)
        return record

    def _skewed(self, c_ns: int) -> tuple[int, Labels]:
        """An implausible occurrence time: stamped at its creation or the last list, never too new, and labelled."""
        base = max(c_ns, self.listed_ns) or self.now_ns
        base = min(base, self._latest_ns)  # an API server clock ahead of ours: still not too new
        return base, (("clock_skew", hour_bucket(base)),)

    def finish(self, *, complete: bool, list_rv: str = "") -> int:
        """End of the listing at resourceVersion ``list_rv``: record the scope this run's entries were
        recorded under and, with a complete list no older than the checkpoint's, forget every entry it
        showed deleted. (The floor itself, ``cp.list_rv``, is advanced by job/checkpointing.py alone.)"""
        cp = self.cp
        # The scope this run recorded entries under, whether or not its list was complete (a first
        # watch-cache list is not): else a later complete list under another scope would read their
        # absence as deletion, and a list under this scope again would ship them once more.
        if self.api_list and cp.scope != self.scope:
            if self.scope_changed:
                cp.scope_since_ns = self.now_ns
                cp.prune_horizon_ns = 0
            cp.scope = self.scope
        if not (complete and self.api_list) or _older(list_rv, cp.list_rv):
            return 0
        self.complete = True
        ledger, since_s = cp.ledger, cp.scope_since_ns // NS
        gone = list(filterfalse(self.seen.__contains__, islice(ledger, self._loaded)))
        if since_s:
            expired_s = self.now_s - int(self.ttl_s) - OUT_OF_SCOPE_MARGIN_S
            gone = _rescope(ledger, self.seen, gone, since_s, expired_s, self._record)
        for uid in gone:
            del ledger[uid]
        if since_s and all(t > since_s for _, t in ledger.values()):
            cp.scope_since_ns = 0  # every entry left was recorded under the current scope
        cp.listed_ns = self.now_ns
        return len(gone)

    def prune_to(self, keep: int) -> int:
        """Size-forced pruning: keep the ``keep`` entries recorded most recently; the horizon moves."""
        ledger = self.cp.ledger
        if len(ledger) <= keep:
            return 0
        times = sorted(t for _, t in ledger.values())
        cutoff_s = times[len(times) - keep - 1]  # drop everything recorded at or before this second
        old = [uid for uid, (_, t) in ledger.items() if t <= cutoff_s]
        for uid in old:
            del ledger[uid]
        # A dropped uid was created no later than the job recorded it (give or take SKEW_S). Every
        # uid created before the last complete list began was in that list, so up to there the
        # horizon only skips uids that were offered already.
        listed_s = (self.now_ns if self.complete else self.cp.listed_ns) // NS
        horizon_s = min(cutoff_s + 1 + SKEW_S, listed_s - SKEW_S)
        self.cp.prune_horizon_ns = max(self.cp.prune_horizon_ns, horizon_s * NS)
        return len(old)


def _rescope(ledger: dict[str, tuple[int, int]], seen: set[str], gone: list[str], since_s: int, expired_s: int,
             record: Callable[[int], tuple[int, int]]) -> list[str]:
    """After a scope change: of the loaded entries the list left out, those it shows deleted.

    An entry recorded under the older scope (at or before ``since_s``; in the very second of the
    change counts as before, the safe side) may be absent only because of the scope: its absence
    says nothing, and the job's clock decides (forgotten once recorded before ``expired_s``). A
    listed one recorded then is recorded anew (``record``), now under the current scope.
    """
    for uid in seen:
        entry = ledger.get(uid)
        if entry is not None and entry[1] <= since_s:
            ledger[uid] = record(entry[0])
    return [u for u in gone if not (expired_s <= ledger[u][1] <= since_s)]


def _older(rv: str, than: str) -> bool:
    """Whether list resourceVersion ``rv`` is known to be older than ``than`` (both etcd revisions)."""
    try:
        return bool(rv and than) and int(rv) < int(than)
    except ValueError:  # not integers: opaque, as the API allows; the list is taken as fresh
        return False
