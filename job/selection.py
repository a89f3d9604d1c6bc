"""The pure heart of a run: which listed occurrences ship, and what the ledger records.

No I/O: `python -m job run` feeds it the decoded pages and the property tests feed it simulated
histories, so both exercise this same code.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator

from job.dedupe import BEFORE_HORIZON, DUPLICATE, NS, Ledger
from job.events import Event, Page
from job.filters import Filters
from job.summary import Summary

log = logging.getLogger(__name__)
_MAX_MALFORMED_LOGGED = 20


@dataclass(frozen=True)
class Window:
    """What a run ships: everything (a sync), or a backfill's [since, until) replayed per hour."""

    until_ns: int = 0  # 0 = no end
    backfill: bool = False


def hour_bucket(t_ns: int) -> str:
    # A backfill stream per hour of event time: its entries are never 1 h apart, so Loki's
    # too_far_behind cannot reject them whatever the regular stream already holds.
    return time.strftime("%Y-%m-%dT%H", time.gmtime(t_ns // NS))


def select(page: Page, ledger: Ledger, filters: Filters, window: Window, s: Summary) -> Iterator[tuple[Event, int, int]]:
    """Yield (event, event time in ns, occurrences not shipped before) for what ships from one page.

    Each yielded occurrence is already recorded in the ledger; the caller saves the ledger only
    once Loki has acknowledged every push, so a failed run forgets these records with it.
    """
    s.pages += 1
    for bad in page.malformed:
        s.malformed += 1
        if s.malformed <= _MAX_MALFORMED_LOGGED:
            log.warning("skipping a malformed event %s: %s", bad.where, bad.reason)
    s.listed += len(page.events)
    check = filters.matches if filters.active() else None
    until_ns = window.until_ns
    consider = ledger.consider
    for e, t_ns in page.events:  # the hot loop: bound names, no per-event allocation on skips
        if check is not None and not check(e):
            s.filtered += 1
            continue
        if until_ns and t_ns >= until_ns:
            s.out_of_window += 1
            continue
        v = consider(e.meta.uid or "", e.occurrences, t_ns)
        if not v.new:
            if v is DUPLICATE:
                s.duplicates += 1
            elif v is BEFORE_HORIZON:
                s.before_horizon += 1
            else:
                s.out_of_window += 1
            continue
        s.new += 1
        yield e, t_ns, v.new


def log_malformed_total(s: Summary) -> None:
    if s.malformed > _MAX_MALFORMED_LOGGED:
        log.warning("%d malformed events in all (only the first %d were logged)", s.malformed, _MAX_MALFORMED_LOGGED)
