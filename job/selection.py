"""The pure heart of a run: which listed occurrences ship, with which Loki timestamp and stream.

No I/O: `python -m job run` feeds it the decoded pages and the property tests feed it simulated
histories, so both exercise this same code. A run is: a Ledger over the loaded checkpoint, select()
for every page, then Ledger.finish(complete=...) once the list is over, which forgets what the
list showed deleted (job/dedupe.py says when a list counts as complete).
"""
from __future__ import annotations

import logging
from typing import Iterator

from job.dedupe import BEFORE_HORIZON, DUPLICATE, Labels, Ledger, hour_bucket
from job.events import Event, Page, decode_page, scan_page
from job.filters import Filters
from job.summary import Summary

__all__ = ["hour_bucket", "list_scope", "log_clock_skew", "log_malformed_total", "select"]

log = logging.getLogger(__name__)
_MAX_MALFORMED_LOGGED = 20
_SCAN_BELOW = 0.03  # the share of the last page that shipped, below which the next is scanned heads first


def list_scope(field_selector: str, namespaces: str = "") -> str:
    """What a list can contain, as stored with the checkpoint: absence only means deletion within it."""
    return f"fieldSelector={field_selector}" + (f";namespaces={namespaces}" if namespaces else "")


def select(page: Page, ledger: Ledger, filters: Filters, s: Summary) -> Iterator[tuple[Event, int, int, Labels]]:
    """Yield (event, Loki timestamp in ns, occurrences not shipped before, extra stream labels).

    Each yielded occurrence is already recorded in the ledger; the caller saves the ledger only
    once Loki has acknowledged every push, so a failed run forgets these records with it.
    """
    s.pages += 1
    if page.heads is None and page.data:
        # Heads first pays when most of a page is already shipped; when much of the last page
        # shipped, decoding whole is cheaper (tools/ledger_bench.py, docs/ledger.md).
        page = scan_page(page.data) if ledger.ship_share <= _SCAN_BELOW else decode_page(page.data)
    scanned = page.heads is not None
    if scanned:
        page = _second_phase(page, ledger, filters, s)
    _report_malformed(page, s)
    s.listed += len(page.events)
    check = filters.matches if filters.active() else None
    consider, saw = ledger.consider, ledger.saw
    shipped = 0
    for e, t_ns in page.events:  # the hot loop: bound names, no per-event allocation on skips
        m = e.meta
        uid = m.uid or ""
        if check is not None and not check(e):
            saw(uid)  # listed, so not deleted, whatever the filter says
            s.filtered += 1
            continue
        v = consider(uid, e.occurrences, t_ns, m.creationTimestamp)
        if not v.new:
            if v is DUPLICATE:
                s.duplicates += 1
            elif v is BEFORE_HORIZON:
                s.before_horizon += 1
            else:
                s.out_of_window += 1
            continue
        s.new += 1
        shipped += 1
        if v.skew:
            s.clock_skew += 1
        yield e, v.ts_ns, v.new, v.skew
    if page.events and not scanned:
        ledger.ship_share = shipped / len(page.events)


def _report_malformed(page: Page, s: Summary) -> None:
    for bad in page.malformed:
        s.malformed += 1
        if s.malformed <= _MAX_MALFORMED_LOGGED:
            log.warning("skipping a malformed event %s: %s", bad.where, bad.reason)


def _second_phase(page: Page, ledger: Ledger, filters: Filters, s: Summary) -> Page:
    """Settle what the heads alone can settle (filtered, duplicate), and decode in full only the
    rest: a page of duplicates is never decoded further. Counts what it settles into ``s``."""
    heads = page.heads or []
    check = filters.matches if filters.active() else None
    duplicate, saw = ledger.is_duplicate, ledger.saw
    rest: set[str] = set()
    for h in heads:
        uid = h.meta.uid
        if not uid:
            rest.add("")  # the full decode reports it as malformed, with its name
            continue
        if check is not None and not check(h):  # type: ignore[arg-type]  # reads meta, reason, type, obj.kind
            saw(uid)
            s.filtered += 1
            s.listed += 1
        elif duplicate(uid, h.occurrences):
            s.duplicates += 1
            s.listed += 1
        else:
            rest.add(uid)
    ledger.ship_share = len(rest) / len(heads) if heads else 0.0
    if not rest:
        return Page([], [], page.resource_version)
    # Few to ship (the usual run): decode just those items; many: the whole page at once is cheaper.
    full = page.full() if len(rest) * 4 > len(heads) else page.some({i for i, h in enumerate(heads)
                                                                      if (h.meta.uid or "") in rest})
    events = [(e, t) for e, t in full.events if e.meta.uid in rest]
    return Page(events, full.malformed, page.resource_version)


def log_malformed_total(s: Summary) -> None:
    if s.malformed > _MAX_MALFORMED_LOGGED:
        log.warning("%d malformed events in all (only the first %d were logged)", s.malformed, _MAX_MALFORMED_LOGGED)


def log_clock_skew(s: Summary) -> None:
    if s.clock_skew:
        log.warning("%d events carried a time too far ahead of the job's clock or behind their creation; they were "
                    "shipped with a trusted Loki timestamp and the stream label clock_skew (their lines keep their "
                    "own times): check the clocks of the nodes that reported them", s.clock_skew)
