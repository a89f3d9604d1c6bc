"""The checkpoint's short history of runs: what each run records, and the figures read back from it.

Each record is a list of integers in the order of FIELDS (state/base.py bounds how many and how
long); a record from another version with fewer fields reads the missing ones as 0, one with more
keeps only these. `plan --from-cluster` and `status` derive their measured figures here.
"""
from __future__ import annotations

import statistics
from array import array
from typing import Any

from job.dedupe import NS
from job.summary import Summary
from state import Checkpoint
from state.base import HISTORY_RUNS

FIELDS = ("end_s", "duration_ms", "cpu_ms", "listed", "new", "duplicates", "filtered", "list_bytes", "ledger",
          "delay_p50_s", "delay_p95_s")


def delays(stamps: array, pushed_ns: int) -> tuple[float, float]:
    """Median and 95th percentile (nearest rank) of pushed_ns minus each occurrence time, in seconds."""
    if not stamps:
        return 0.0, 0.0
    ordered = sorted(stamps, reverse=True)  # the newest occurrence is the shortest delay
    n = len(ordered)
    p50, p95 = ordered[(n - 1) // 2], ordered[max(0, -(-95 * n // 100) - 1)]
    return round(max(0, pushed_ns - p50) / NS, 1), round(max(0, pushed_ns - p95) / NS, 1)


def record(cp: Checkpoint, s: Summary, end_ns: int) -> None:
    """Append this run to the history, keeping the last HISTORY_RUNS."""
    values = {"end_s": end_ns // NS, "duration_ms": round(s.duration_s * 1000), "cpu_ms": round(s.cpu_s * 1000),
              "list_bytes": s.list_bytes, "delay_p50_s": round(s.delay_p50_s), "delay_p95_s": round(s.delay_p95_s),
              "listed": s.listed, "new": s.new, "duplicates": s.duplicates, "filtered": s.filtered, "ledger": s.ledger}
    cp.history = [*cp.history, [max(0, int(values[f])) for f in FIELDS]][-HISTORY_RUNS:]


def runs(history: list[list[int]]) -> list[dict[str, int]]:
    return [dict(zip(FIELDS, [*r, *[0] * len(FIELDS)], strict=False)) for r in history]


def figures(history: list[list[int]]) -> dict[str, Any]:
    """What the recorded runs measured; {} without one. Rates need two runs and are None with one.

    new_per_hour counts the occurrences the runs after the first shipped, over the time since the
    first ended (the first's own shipments belong to the time before it); run time, CPU and listed
    are the median run's, and so is the delay (the median of the runs' medians and of their p95s: a
    first run's backlog, an hour old, is one run's p95, not the figure).
    """
    rs = runs(history)
    if not rs:
        return {}
    span_h = (rs[-1]["end_s"] - rs[0]["end_s"]) / 3600
    per_hour = span_h > 0 and len(rs) >= 2

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in rs))

    listed = sum(r["listed"] for r in rs)
    return {
        "runs": len(rs),
        "span_h": span_h,
        "new_per_hour": sum(r["new"] for r in rs[1:]) / span_h if per_hour else None,
        "listed_per_run": median("listed"),
        "new_per_run": median("new"),
        "bytes_per_event": sum(r["list_bytes"] for r in rs) / listed if listed else None,
        "run_s": median("duration_ms") / 1000,
        "cpu_s_per_run": median("cpu_ms") / 1000,
        "ledger_entries": rs[-1]["ledger"],
        "ledger_growth_per_h": (rs[-1]["ledger"] - rs[0]["ledger"]) / span_h if per_hour else None,
        "delay_p50_s": median("delay_p50_s"),
        "delay_p95_s": median("delay_p95_s"),
        "longest_run_s": max(r["duration_ms"] for r in rs) / 1000,
    }
