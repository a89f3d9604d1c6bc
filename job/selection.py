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
from job.events import Event, Page
from job.filters import Filters
from job.summary import Summary

__all__ = ["hour_bucket", "list_scope", "log_clock_skew", "log_malformed_total", "select"]

log = logging.getLogger(__name__)
_MAX_MALFORMED_LOGGED = 20


def list_scope(field_selector: str, namespaces: str = "") -> str:
    """What a list can contain, as stored with the checkpoint: absence only means deletion within it."""
    return f"fieldSelector={field_selector}" + (f";namespaces={namespaces}" if namespaces else "")


def select(page: Page, ledger: Ledger, filters: Filters, s: Summary) -> Iterator[tuple[Event, int, int, Labels]]:
    """Yield (event, Loki timestamp in ns, occurrences not shipped before, extra stream labels).

    Each yielded occurrence is already recorded in the ledger; the caller saves the ledger only
    once Loki has acknowledged every push, so a failed run forgets these records with it.
    """
    s.pages += 1
    if page.resource_version:
        ledger.list_rv = page.resource_version
    for bad in page.malformed:
        s.malformed += 1
        if s.malformed <= _MAX_MALFORMED_LOGGED:
            log.warning("skipping a malformed event %s: %s", bad.where, bad.reason)
    s.listed += len(page.events)
    check = filters.matches if filters.active() else None
    consider, saw = ledger.consider, ledger.saw
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
        if v.skew:
            s.clock_skew += 1
        yield e, v.ts_ns, v.new, v.skew


def log_malformed_total(s: Summary) -> None:
    if s.malformed > _MAX_MALFORMED_LOGGED:
        log.warning("%d malformed events in all (only the first %d were logged)", s.malformed, _MAX_MALFORMED_LOGGED)


def log_clock_skew(s: Summary) -> None:
    if s.clock_skew:
        log.warning("%d events carried a time too far ahead of the job's clock or behind their creation; they were "
                    "shipped with a trusted Loki timestamp and the stream label clock_skew (their lines keep their "
                    "own times): check the clocks of the nodes that reported them", s.clock_skew)
