"""`python -m job plan`: what a CronJob schedule costs, and whether it can lose events.

Events expire --event-ttl after their last write, and nothing can list them afterwards, so the
longest gap between two runs (plus the time a run takes) must stay below the TTL.
"""
from __future__ import annotations

import datetime as dt
import sys
from typing import IO

from job.cmd import Config, UsageError

# Measured with `python -m bench` on the 2-core build machine: a run with nothing new costs
# 0.40 CPU-s at 10k listed events and 0.85 at 100k; shipping every event of 100k adds 0.65.
CPU_S_PER_EVENT = 5e-6  # list, decode and dedupe one event the API server holds
CPU_S_PER_NEW_EVENT = 6.5e-6  # format, batch, compress and push one new occurrence
CPU_S_PER_RUN = 0.35  # interpreter and library start-up, client set-up, Lease and checkpoint round trips

RUN_ALLOWANCE_S = 5 * 60  # what a run itself may take, between listing and the next run's listing
HORIZON = dt.timedelta(days=7)  # a week covers every hour-of-day and day-of-week pattern
# Kubernetes' cron parser (robfig/cron ParseStandard) takes five fields or one of these.
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_EXAMPLE = '"*/10 * * * *"'


def run_times(schedule: str, start: dt.datetime) -> list[dt.datetime]:
    """The runs over HORIZON from start, plus the first one after; UsageError for a bad schedule."""
    from croniter import CroniterBadDateError, croniter  # only plan needs it: keep `run` start-up lean

    text = schedule.strip()
    fields = text.split()
    # croniter also takes seconds and years (6-7 fields), which the CronJob controller refuses.
    if not ((len(fields) == 5 or text in _MACROS) and croniter.is_valid(text)):
        raise UsageError(f"--schedule {schedule!r} is not a valid CronJob schedule; use five fields, "
                         f"e.g. {_EXAMPLE}")
    it = croniter(text, start)
    times: list[dt.datetime] = []
    try:
        # Include the first run past the horizon (and at least two runs), so the last gap counts too.
        while len(times) < 2 or times[-1] < start + HORIZON:
            times.append(it.get_next(dt.datetime))
    except CroniterBadDateError:
        raise UsageError(f"--schedule {schedule!r} never runs (no such date); use e.g. {_EXAMPLE}") from None
    return times


def main(cfg: Config, out: IO[str], err: IO[str] | None = None) -> int:
    # main.py does not catch UsageError from a command, so the one-line error is printed here.
    start = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    try:
        times = run_times(cfg.schedule, start)
    except UsageError as exc:
        print(f"error: {exc}", file=err or sys.stderr)
        return 2
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    runs_per_day = sum(1 for t in times if t <= start + HORIZON) / HORIZON.days
    longest = max(gaps)
    # A random event waits half the interval it falls into, and longer intervals catch more events.
    delay = sum(i * i for i in gaps) / (2 * sum(gaps))
    mean = sum(gaps) / len(gaps)
    new_per_run = cfg.events_per_hour * mean / 3600
    # Every run lists all the events the API server still holds (about one TTL's worth), not just
    # the new ones: that is what the per-event CPU cost applies to.
    listed_per_run = cfg.events_per_hour * cfg.event_ttl / 3600
    cpu_per_day = runs_per_day * (CPU_S_PER_RUN + listed_per_run * CPU_S_PER_EVENT
                                  + new_per_run * CPU_S_PER_NEW_EVENT)
    excess = longest + RUN_ALLOWANCE_S - cfg.event_ttl
    if excess > 0:
        verdict = (f"RISK: events older than the TTL are deleted before the next run: up to "
                   f"{_minutes(excess)} minutes of events may be lost per gap")
    else:
        verdict = f"OK: margin {_minutes(-excess)} minutes"
    rows = [
        ("schedule", f"{cfg.schedule} (UTC, next 7 days)"),
        ("runs per day", _num(runs_per_day)),
        ("longest gap", f"{_minutes(longest)} min"),
        ("expected delay", f"{_minutes(delay)} min"),
        ("new events per run", f"{_num(new_per_run)} at {cfg.events_per_hour}/h"),
        ("listed per run", f"{_num(listed_per_run)} (event TTL {_minutes(cfg.event_ttl)} min)"),
        ("CPU per day", f"{_num(cpu_per_day)} s"),
        ("verdict", verdict),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")
    return 0


def _minutes(seconds: float) -> str:
    return _num(seconds / 60)


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or abs(x - round(x)) < 0.05 else f"{x:.1f}"
