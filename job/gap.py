"""Gaps: a run that comes after the API server may already have deleted events nobody shipped."""
from __future__ import annotations

import logging

from job.cmd import Config
from job.dedupe import NS
from job.events import rfc3339
from job.lines import Formatter, Labels, json_line
from state import Checkpoint

log = logging.getLogger(__name__)


def gap_seconds(cp: Checkpoint, cfg: Config, now_ns: int) -> int:
    """How long a window the API server may have deleted unseen (0 = none): since the last success, beyond the TTL."""
    if not cp.last_success_ns:
        return 0
    return max(0, (now_ns - int(cfg.event_ttl * NS) - cp.last_success_ns) // NS)


def warn(cp: Checkpoint, now_ns: int, gap_s: int) -> None:
    log.warning("the last successful sync was %ds ago, longer than the event TTL: events from a "
                "%ds window may be lost; run more often (see `python -m job plan`)",
                (now_ns - (cp.last_success_ns or 0)) // NS, gap_s)


def marker(fmt: Formatter, cfg: Config, namespace: str, start_ns: int, end_ns: int) -> tuple[Labels, int, str]:
    """One line saying events in [start, end) may be missing; deterministic, so re-sent copies drop."""
    labels = fmt.stream(namespace, "Warning", "LokiEventSync")
    start, end = rfc3339(start_ns), rfc3339(end_ns)
    f = {
        "type": "Warning",
        "reason": "EventsMayBeMissing",
        "kind": "LokiEventSync",
        "namespace": namespace,
        "message": f"events between {start} and {end} may be missing: no successful sync ran while the "
                   f"API server still held them (event TTL {int(cfg.event_ttl)}s)",
        "gapStart": start,
        "gapEnd": end,
        "gapSeconds": (end_ns - start_ns) // NS,
    }
    return labels, end_ns, json_line(f)
