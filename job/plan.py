"""`python -m job plan`: what a CronJob schedule costs, and whether it can lose events.

Exit 0 when the plan is safe, 1 when it is not (each reason is printed), 2 for a bad flag.

Every figure comes from one of these formulas. Inputs: the run times of the schedule over the next
7 days (HORIZON) and the gaps g between them; r = --events-per-hour (distinct events written per
hour); T = --event-ttl; D = --active-deadline; P = --page-size.

    runs per day       R = runs in HORIZON / 7
    longest gap        G = max(g);  shortest gap g_min = min(g);  mean gap g_mean
    new per run        N = r * g_mean / 3600
    listed per run     L = r * T / 3600              every run lists all the API server still holds
    API requests/run   Q = max(1, ceil(L / P)) + RUN_REQUESTS (+ CONFIGMAP_REQUESTS for a ConfigMap store)
                       (+ 1 for --list-from cache: GET /version, to know the cache can page)
    --enrich           min(--enrich-max-requests, 3 * N) more requests/run, BYTES_PER_LOOKUP each
    etcd reads/run     --list-from etcd: ceil(L / P) before Kubernetes 1.34, 1 from 1.34 (the first page's
                       revision check; the watch cache serves the rest); --list-from cache: 0 on 1.34+
                       (docs/performance.md, "The API server's side")
    bytes listed/run   B = L * BYTES_PER_LISTED_EVENT
    CPU per run        C = CPU_S_PER_RUN + L * CPU_S_PER_EVENT + N * CPU_S_PER_NEW_EVENT
    CPU per day        R * C, printed next to DAEMON_CPU_S_PER_DAY (an always-on daemon, measured)
    run time           W = C                         the benchmark's runs are CPU-bound (0.382 of 0.403 s)
    expected delay     sum(g^2) / (2 * sum(g)) + W   an event waits half the gap it falls in; long gaps catch more
    worst-case delay   G + D                         missed by one listing, then a run as slow as its deadline
    ledger entries     E = r * (T + PRUNE_MARGIN_S) / 3600   what the checkpoint remembers
    checkpoint bytes   E * CHECKPOINT_BYTES_PER_ENTRY
    ConfigMap capacity (CONFIGMAP_LIMIT - CONFIGMAP_HEADROOM) / CHECKPOINT_BYTES_PER_ENTRY entries
    margin             T - (G + D)                   an event must be listed by a successful run before it expires
    alert window       A = G + W + ALERT_SLACK_S, rounded up to a minute
                       an entry carries the event's time but reaches Loki up to G + W later, so a rule's
                       [window] must reach back that far, plus one ruler evaluation and the push retries
    worst-case window  G + D + RULER_INTERVAL_S      also covers a run as slow as its deadline
    gap-marker window  T + W + ALERT_SLACK_S, rounded up to a minute
                       a gap marker's time is its run's time minus T, so it lands about one TTL in the past

The plan is NOT OK when the margin is not positive (the longest gap plus a run reaches the TTL), when
D is not below g_min (a stuck run collides with the next one, which is then skipped), or when E
exceeds the chosen store's capacity (the job must then prune entries the API server still holds, and
events older than the moved horizon are never shipped).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from typing import IO, Any

from job.cmd import Config, UsageError
from job.dedupe import PRUNE_MARGIN_S

# --- model constants ----------------------------------------------------------------------------------
# CPU model, fitted to `python -m bench` (docs/performance.md; three runs, 2-core build machine, lean
# kubernetes client, two-phase decoding and the compact ledger codec): the "nothing new CPU s" column,
# 0.16-0.17 CPU-s at 1,000 listed events, 0.20-0.21 at 10,000, 0.63-0.64 at 100,000 and 1.16-1.17 at
# 200,000 (slope 5.0 us per listed event, intercept 0.16 s); the "CPU s" (first run) column minus that
# added 6.6-7.6 us per new event at 100,000 and 200,000. Refresh from a new benchmark run.
CPU_S_PER_RUN = 0.16  # interpreter and library start-up, client set-up, Lease and checkpoint round trips
CPU_S_PER_EVENT = 5.0e-6  # list, scan and dedupe one event the API server holds
CPU_S_PER_NEW_EVENT = 6.8e-6  # format, batch, compress and push one new occurrence
# An always-on daemon for comparison: Fluent Bit's kubernetes_events input at 10,000 events/h,
# about 82 CPU-s a day (the figure given with issue 12; not re-measured by `python -m bench`).
DAEMON_CPU_S_PER_DAY = 82.0
DAEMON_EVENTS_PER_HOUR = 10_000
# bench/events.py's real-shaped events, managedFields included, are about 1.26 KB each as listed.
BYTES_PER_LISTED_EVENT = 1260
# Requests besides the list pages: the benchmark made 24 at 10,000 events with page size 500 (20
# pages) and a file checkpoint, i.e. 4 for the Lease; a ConfigMap checkpoint adds a read and a write.
RUN_REQUESTS = 4
CONFIGMAP_REQUESTS = 2
# state.base.encode() of 50,000 random v4 uids, counts 1-9 and times spread over T + margin:
# 858,639 bytes, 17.2 bytes an entry (17.1 at 60,000). tests/test_plan.py re-measures it.
CHECKPOINT_BYTES_PER_ENTRY = 17.2
CONFIGMAP_LIMIT = 1_048_576  # state/configmap.py LIMIT: the API server's 1 MiB
CONFIGMAP_HEADROOM = 4096  # job/sync.py keeps the checkpoint this far below the limit
CONFIGMAP_CAPACITY = int((CONFIGMAP_LIMIT - CONFIGMAP_HEADROOM) / CHECKPOINT_BYTES_PER_ENTRY)
# Alert windows: the ruler evaluates every minute by default, and a push may be retried for up to
# --retry-budget (2 minutes by default) before it lands.
RULER_INTERVAL_S = 60
RETRY_BUDGET_S = 120
ALERT_SLACK_S = RULER_INTERVAL_S + RETRY_BUDGET_S

# --enrich: a metadata-only GET of a Pod, ReplicaSet or Deployment (labels, ownerReferences, one
# managedFields entry) measured 666-690 bytes in bench/enrich.py; objects written by several managers
# carry more managedFields, so the model rounds up. The walk reads at most 3 objects per occurrence (Pod, ReplicaSet,
# Deployment; Pod, Job, CronJob), fewer when owners are shared, and never more than the budget.
BYTES_PER_LOOKUP = 800
LOOKUPS_PER_NEW_EVENT = 3

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


def store_kind(state: str) -> str:
    """configmap, s3 or file; the CronJob's default (no --state) is the ConfigMap."""
    scheme = state.split("://", 1)[0] if "://" in state else ""
    return scheme or "configmap"


def evaluate(cfg: Config, start: dt.datetime) -> dict[str, Any]:
    """Every figure of the plan, by the formulas in the module docstring."""
    times = run_times(cfg.schedule, start)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    runs_per_day = sum(1 for t in times if t <= start + HORIZON) / HORIZON.days
    longest, shortest, mean = max(gaps), min(gaps), sum(gaps) / len(gaps)
    rate, ttl, deadline = cfg.events_per_hour, cfg.event_ttl, cfg.active_deadline
    new_per_run = rate * mean / 3600
    listed_per_run = rate * ttl / 3600
    kind = store_kind(cfg.state)
    requests = max(1, math.ceil(listed_per_run / cfg.page_size)) + RUN_REQUESTS
    requests += CONFIGMAP_REQUESTS if kind == "configmap" else 0
    pages = max(1, math.ceil(listed_per_run / cfg.page_size))
    if cfg.list_from == "cache":
        requests += 1
        etcd_reads = {"before_1_34": pages, "from_1_34": 0}  # older servers are listed from etcd, with a warning
    else:
        etcd_reads = {"before_1_34": pages, "from_1_34": 1}
    cpu_per_run = CPU_S_PER_RUN + listed_per_run * CPU_S_PER_EVENT + new_per_run * CPU_S_PER_NEW_EVENT
    run_s = cpu_per_run
    ledger = rate * (ttl + PRUNE_MARGIN_S) / 3600
    capacity = CONFIGMAP_CAPACITY if kind == "configmap" else None
    margin = ttl - (longest + deadline)
    window = math.ceil((longest + run_s + ALERT_SLACK_S) / 60) * 60
    problems = []
    if margin <= 0:
        problems.append(f"the longest gap ({_minutes(longest)} min) plus a run as long as activeDeadlineSeconds "
                        f"({_minutes(deadline)} min) reaches the event TTL ({_minutes(ttl)} min): up to "
                        f"{_minutes(-margin)} minutes of events may expire unseen per gap; run more often")
    if deadline >= shortest:
        problems.append(f"activeDeadlineSeconds ({deadline:.0f}s) is not below the shortest interval "
                        f"({shortest:.0f}s): a stuck run overlaps the next, which is then skipped; lower it")
    if capacity is not None and ledger > capacity:
        problems.append(f"{ledger:.0f} ledger entries exceed the ConfigMap checkpoint's capacity ({capacity}, "
                        f"about {capacity * 3600 / (ttl + PRUNE_MARGIN_S):.0f} events/h at this TTL): "
                        "early pruning would skip events; use --state s3://BUCKET/KEY")
    return {
        "schedule": cfg.schedule,
        "events_per_hour": rate,
        "event_ttl_s": ttl,
        "active_deadline_s": deadline,
        "page_size": cfg.page_size,
        "store": kind,
        "runs_per_day": runs_per_day,
        "longest_gap_s": longest,
        "shortest_gap_s": shortest,
        "new_per_run": new_per_run,
        "listed_per_run": listed_per_run,
        "api_requests_per_run": requests,
        "api_requests_per_day": requests * runs_per_day,
        "list_from": cfg.list_from,
        "etcd_reads_per_run": etcd_reads,
        "bytes_listed_per_run": listed_per_run * BYTES_PER_LISTED_EVENT,
        "bytes_listed_per_day": listed_per_run * BYTES_PER_LISTED_EVENT * runs_per_day,
        "cpu_s_per_run": cpu_per_run,
        "cpu_s_per_day": cpu_per_run * runs_per_day,
        "daemon_cpu_s_per_day": DAEMON_CPU_S_PER_DAY,
        "daemon_events_per_hour": DAEMON_EVENTS_PER_HOUR,
        "run_s": run_s,
        "expected_delay_s": sum(g * g for g in gaps) / (2 * sum(gaps)) + run_s,
        "worst_case_delay_s": longest + deadline,
        "ledger_entries": ledger,
        "ledger_capacity": capacity,
        "checkpoint_bytes": ledger * CHECKPOINT_BYTES_PER_ENTRY,
        "margin_s": margin,
        "min_alert_window_s": window,
        "worst_case_alert_window_s": longest + deadline + RULER_INTERVAL_S,
        "gap_alert_window_s": math.ceil((ttl + run_s + ALERT_SLACK_S) / 60) * 60,
        "enrich": enrich_cost(requests, runs_per_day, new_per_run, cfg.enrich_max_requests),
        "ok": not problems,
        "problems": problems,
    }


def enrich_cost(requests: int, runs_per_day: float, new_per_run: float, budget: int) -> dict[str, float]:
    """What --enrich adds at most: min(budget, 3 lookups per new occurrence) requests a run, and their bytes."""
    extra = min(budget, math.ceil(new_per_run * LOOKUPS_PER_NEW_EVENT))
    return {"max_requests": budget, "requests_per_run": extra, "requests_per_day": extra * runs_per_day,
            "bytes_per_run": extra * BYTES_PER_LOOKUP, "bytes_per_day": extra * BYTES_PER_LOOKUP * runs_per_day,
            "added_share": extra / requests}


def main(cfg: Config, out: IO[str], now: dt.datetime) -> int:
    p = evaluate(cfg, now.astimezone(dt.timezone.utc).replace(second=0, microsecond=0))
    if cfg.output == "json":
        out.write(json.dumps(p, indent=2) + "\n")
        return 0 if p["ok"] else 1
    verdict = (f"OK: margin {_minutes(p['margin_s'])} minutes before unseen events expire" if p["ok"]
               else "NOT OK: " + "; ".join(p["problems"]))
    capacity = "no limit" if p["ledger_capacity"] is None else f"capacity {p['ledger_capacity']}"
    rows = [
        ("schedule", f"{cfg.schedule} (UTC, next 7 days)"),
        ("runs per day", _num(p["runs_per_day"])),
        ("longest gap", f"{_minutes(p['longest_gap_s'])} min (shortest {_minutes(p['shortest_gap_s'])} min)"),
        ("expected delay", f"{_minutes(p['expected_delay_s'])} min to Loki "
                           f"(worst case {_minutes(p['worst_case_delay_s'])} min)"),
        ("new events per run", f"{_num(p['new_per_run'])} at {cfg.events_per_hour}/h"),
        ("listed per run", f"{_num(p['listed_per_run'])} (event TTL {_minutes(cfg.event_ttl)} min)"),
        ("API requests", f"{p['api_requests_per_run']} per run, {_num(p['api_requests_per_day'])} per day "
                         f"(page size {cfg.page_size})"),
        ("etcd reads", f"{p['etcd_reads_per_run']['from_1_34']} per run on Kubernetes 1.34+, "
                       f"{p['etcd_reads_per_run']['before_1_34']} before (--list-from {p['list_from']})"),
        ("bytes listed", f"{_mb(p['bytes_listed_per_run'])} MB per run, {_mb(p['bytes_listed_per_day'])} MB per day"),
        ("with --enrich", _enrich_row(p["enrich"])),
        ("CPU per day", f"{_num(p['cpu_s_per_day'])} s ({_num(p['cpu_s_per_run'])} s per run); an always-on "
                        f"daemon: about {_num(DAEMON_CPU_S_PER_DAY)} s at {DAEMON_EVENTS_PER_HOUR}/h"),
        ("ledger", f"{_num(p['ledger_entries'])} entries, {_mb(p['checkpoint_bytes'])} MB "
                   f"({p['store']} store, {capacity})"),
        ("alert window", f">= {_minutes(p['min_alert_window_s'])}m (a run as slow as its deadline: "
                         f"{_minutes(p['worst_case_alert_window_s'])}m; gap markers: "
                         f">= {_minutes(p['gap_alert_window_s'])}m)"),
        ("verdict", verdict),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")
    return 0 if p["ok"] else 1


def _enrich_row(e: dict[str, float]) -> str:
    return (f"up to {e['requests_per_run']:.0f} more requests ({e['added_share']:.0%}) and "
            f"{e['bytes_per_run'] / 1000:.0f} KB per run, {_num(e['requests_per_day'])} requests and "
            f"{_mb(e['bytes_per_day'])} MB per day (--enrich-max-requests {e['max_requests']:.0f})")


def _minutes(seconds: float) -> str:
    return _num(seconds / 60)


def _mb(n: float) -> str:
    return _num(n / 1e6)


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or abs(x - round(x)) < 0.05 else f"{x:.1f}"
