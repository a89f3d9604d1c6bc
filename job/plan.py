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
    the CronJob itself OWN_EVENTS_PER_RUN Events and OWN_API_WRITES_PER_RUN writes per run, R times a day;
                       a pod start's node time POD_START_NODE_S; a daemon's watch requests and Lease writes

With --from-cluster (job/measure.py, job/history.py) the inputs are measured instead: H = the Events
the API server holds now, H_own = the job's own among them, the checkpoint's recorded runs (up to
state.base.HISTORY_RUNS) with n_i new occurrences, and its ledger (E_now entries, S bytes).

    r                  sum(n_i, i > 1) / (last end - first end)   else H * 3600 / T with one run
    listed per run     L = H - H_own + OWN_EVENTS_PER_RUN * T / g_mean   the job's own re-counted per schedule
    CPU per run, W     the median recorded run's, + (N - its new) * CPU_S_PER_NEW_EVENT
    bytes listed/run   L * (list bytes / H)
    ledger entries     E = max(L * (T + PRUNE_MARGIN_S) / T, E_now + growth/h * (T + PRUNE_MARGIN_S) / 3600)
                       growth is the recorded ledger's slope; it can last at most one retention window
    capacity           (CONFIGMAP_LIMIT - CONFIGMAP_HEADROOM) / (S / E_now)   the checkpoint's own bytes per entry

and every schedule of COMPARED is planned beside the configured one.

The plan is NOT OK when the margin is not positive (the longest gap plus a run reaches the TTL), when
D is not below g_min (a stuck run collides with the next one, which is then skipped), when a recorded
run took g_min or longer (runs overlap), or when E exceeds the chosen store's capacity (the store
would fill: the job must then prune entries the API server still holds, and events older than the
moved horizon are never shipped).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import math
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from job.cmd import Config, UsageError
from job.dedupe import PRUNE_MARGIN_S

if TYPE_CHECKING:
    from job.deps import Deps

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

# The CronJob machinery's own work per run (docs/kubernetes.md, "What a CronJob run costs the cluster"):
# the Events the CronJob and Job controllers, the scheduler and the kubelet record about the run, and
# the object writes they make (creates, status updates, the binding, the finalizer, history deletes).
OWN_EVENTS_PER_RUN = 9
OWN_API_WRITES_PER_RUN = 15
# The node's time for a pod start, image cached: from the job's own interpreter and client start-up
# (CPU_S_PER_RUN, measured) to SIG Scalability's pod start-up SLO, 5 s at the 99th percentile.
POD_START_NODE_S = (CPU_S_PER_RUN, 5.0)
# A daemon instead: a client-go informer re-opens its watch every 5 to 10 minutes (the reflector's
# minWatchTimeout, 5 min, times 1 to 2), and leader election renews its Lease every RetryPeriod, 2 s.
DAEMON_WATCH_REQUESTS_PER_DAY = (144, 288)
DAEMON_LEASE_WRITES_PER_DAY = 43_200
_EVERY = {"*/5 * * * *": 5, "*/10 * * * *": 10, "*/15 * * * *": 15, "*/30 * * * *": 30}  # minutes
COMPARED = tuple(_EVERY)
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


def run_times(schedule: str, start: dt.datetime, horizon: dt.timedelta = HORIZON) -> list[dt.datetime]:
    """The runs over ``horizon`` from start, plus the first one after; UsageError for a bad schedule."""
    text = schedule.strip()
    times: list[dt.datetime] = []
    step = _EVERY.get(text)
    if step is not None:  # the COMPARED schedules, as croniter runs them, without importing it (0.1 CPU-s)
        times.append(start + dt.timedelta(minutes=step - start.minute % step))
        while len(times) < 2 or times[-1] < start + horizon:
            times.append(times[-1] + dt.timedelta(minutes=step))
        return times
    from croniter import CroniterBadDateError, croniter  # only plan needs it: keep `run` start-up lean

    fields = text.split()
    # croniter also takes seconds and years (6-7 fields), which the CronJob controller refuses.
    if not ((len(fields) == 5 or text in _MACROS) and croniter.is_valid(text)):
        raise UsageError(f"--schedule {schedule!r} is not a valid CronJob schedule; use five fields, "
                         f"e.g. {_EXAMPLE}")
    it = croniter(text, start)
    try:
        # Include the first run past the horizon (and at least two runs), so the last gap counts too.
        while len(times) < 2 or times[-1] < start + horizon:
            times.append(it.get_next(dt.datetime))
    except CroniterBadDateError:
        raise UsageError(f"--schedule {schedule!r} never runs (no such date); use e.g. {_EXAMPLE}") from None
    return times


def store_kind(state: str) -> str:
    """configmap, s3 or file; the CronJob's default (no --state) is the ConfigMap."""
    scheme = state.split("://", 1)[0] if "://" in state else ""
    return scheme or "configmap"


def evaluate(cfg: Config, start: dt.datetime, measured: dict[str, Any] | None = None,
             horizon: dt.timedelta = HORIZON) -> dict[str, Any]:
    """Every figure of the plan, by the formulas in the module docstring; ``measured`` from job/measure.py.

    ``horizon``: a schedule that repeats every hour (COMPARED) has the same figures over one day as
    over a week, for a seventh of croniter's time.
    """
    times = run_times(cfg.schedule, start, horizon)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    runs_per_day = sum(1 for t in times if t <= start + horizon) / (horizon / dt.timedelta(days=1))
    longest, shortest, mean = max(gaps), min(gaps), sum(gaps) / len(gaps)
    ttl, deadline, kind = cfg.event_ttl, cfg.active_deadline, store_kind(cfg.state)
    p = _inputs(cfg, mean, measured)
    pages = max(1, math.ceil(p["listed_per_run"] / cfg.page_size))
    requests = pages + RUN_REQUESTS + (CONFIGMAP_REQUESTS if kind == "configmap" else 0)
    requests += 1 if cfg.list_from == "cache" else 0  # GET /version, to know the cache can page
    # Older servers list from etcd whatever was asked, with a warning.
    etcd_reads = {"before_1_34": pages, "from_1_34": 0 if cfg.list_from == "cache" else 1}
    run_s, margin = p["run_s"], ttl - (longest + deadline)
    p.update({
        "schedule": cfg.schedule, "event_ttl_s": ttl, "active_deadline_s": deadline, "page_size": cfg.page_size,
        "store": kind, "runs_per_day": runs_per_day, "longest_gap_s": longest, "shortest_gap_s": shortest,
        "api_requests_per_run": requests, "api_requests_per_day": requests * runs_per_day,
        "list_from": cfg.list_from, "etcd_reads_per_run": etcd_reads,
        "bytes_listed_per_run": p["listed_per_run"] * p["bytes_per_event"],
        "bytes_listed_per_day": p["listed_per_run"] * p["bytes_per_event"] * runs_per_day,
        "cpu_s_per_day": p["cpu_s_per_run"] * runs_per_day,
        "daemon_cpu_s_per_day": DAEMON_CPU_S_PER_DAY, "daemon_events_per_hour": DAEMON_EVENTS_PER_HOUR,
        "expected_delay_s": sum(g * g for g in gaps) / (2 * sum(gaps)) + run_s,
        "worst_case_delay_s": longest + deadline,
        "margin_s": margin,
        "min_alert_window_s": math.ceil((longest + run_s + ALERT_SLACK_S) / 60) * 60,
        "worst_case_alert_window_s": longest + deadline + RULER_INTERVAL_S,
        "gap_alert_window_s": math.ceil((ttl + run_s + ALERT_SLACK_S) / 60) * 60,
        "own": _own_cost(runs_per_day),
        "enrich": enrich_cost(requests, runs_per_day, p["new_per_run"], cfg.enrich_max_requests),
    })
    if kind != "configmap":
        p["ledger_capacity"] = None
    problems = _problems(p)
    p.update(ok=not problems, problems=problems)
    return p


def _inputs(cfg: Config, mean_gap: float, measured: dict[str, Any] | None) -> dict[str, Any]:
    """Rate, list size, run cost and ledger: from the flags, or measured where the cluster says more.

    Measured, a run's CPU and time are the median recorded run's, moved by the new occurrences this
    schedule ships per run instead of the recorded runs' (the list costs every schedule the same); the
    Events the API server holds are the ones listed now, with the job's own re-counted for this
    schedule's runs.
    """
    ttl = cfg.event_ttl
    hist = (measured or {}).get("history") or {}
    rate = float(cfg.events_per_hour)
    listed = rate * ttl / 3600
    bytes_per_event, per_entry = float(BYTES_PER_LISTED_EVENT), CHECKPOINT_BYTES_PER_ENTRY
    ledger = rate * (ttl + PRUNE_MARGIN_S) / 3600
    if measured is not None:
        held = measured["events_held"] - measured["own_events_held"] + OWN_EVENTS_PER_RUN * ttl / mean_gap
        rate = hist.get("new_per_hour") or measured["events_held"] * 3600 / ttl
        listed = held
        bytes_per_event = measured["bytes_per_event"] or bytes_per_event
        if measured["ledger_entries"]:
            per_entry = measured["checkpoint_bytes"] / measured["ledger_entries"]
        # The ledger forgets after TTL + margin: growth seen now can last at most that long.
        growth = max(0.0, hist.get("ledger_growth_per_h") or 0.0)
        ledger = max(held * (ttl + PRUNE_MARGIN_S) / ttl,
                     measured["ledger_entries"] + growth * (ttl + PRUNE_MARGIN_S) / 3600)
    new = rate * mean_gap / 3600
    cpu = CPU_S_PER_RUN + listed * CPU_S_PER_EVENT + new * CPU_S_PER_NEW_EVENT
    run_s = cpu
    if hist:
        moved = (new - hist["new_per_run"]) * CPU_S_PER_NEW_EVENT
        cpu, run_s = max(0.0, hist["cpu_s_per_run"] + moved), max(0.0, hist["run_s"] + moved)
    return {
        "measured": measured is not None, "events_per_hour": rate, "new_per_run": new, "listed_per_run": listed,
        "bytes_per_event": bytes_per_event, "cpu_s_per_run": cpu, "run_s": run_s,
        "longest_run_s": max(run_s, hist.get("longest_run_s", 0.0)), "ledger_entries": ledger,
        "checkpoint_bytes": ledger * per_entry,
        "ledger_capacity": int((CONFIGMAP_LIMIT - CONFIGMAP_HEADROOM) / per_entry),
    }


def _own_cost(runs_per_day: float) -> dict[str, Any]:
    """What the CronJob machinery itself does per run and per day (docs/kubernetes.md), and a daemon's."""
    return {
        "events_per_run": OWN_EVENTS_PER_RUN, "events_per_day": OWN_EVENTS_PER_RUN * runs_per_day,
        "api_writes_per_run": OWN_API_WRITES_PER_RUN, "api_writes_per_day": OWN_API_WRITES_PER_RUN * runs_per_day,
        "pod_start_node_s": list(POD_START_NODE_S),
        "pod_start_node_s_per_day": [x * runs_per_day for x in POD_START_NODE_S],
        "daemon_watch_requests_per_day": list(DAEMON_WATCH_REQUESTS_PER_DAY),
        "daemon_lease_writes_per_day": DAEMON_LEASE_WRITES_PER_DAY,
    }


def _problems(p: dict[str, Any]) -> list[str]:
    longest, shortest, ttl, deadline = p["longest_gap_s"], p["shortest_gap_s"], p["event_ttl_s"], p["active_deadline_s"]
    margin, ledger, capacity = p["margin_s"], p["ledger_entries"], p["ledger_capacity"]
    problems = []
    if margin <= 0:
        problems.append(f"the longest gap ({_minutes(longest)} min) plus a run as long as activeDeadlineSeconds "
                        f"({_minutes(deadline)} min) reaches the event TTL ({_minutes(ttl)} min): up to "
                        f"{_minutes(-margin)} minutes of events may expire unseen per gap; run more often")
    if deadline >= shortest:
        problems.append(f"activeDeadlineSeconds ({deadline:.0f}s) is not below the shortest interval "
                        f"({shortest:.0f}s): a stuck run overlaps the next, which is then skipped; lower it")
    elif p["longest_run_s"] >= shortest:
        problems.append(f"a run took {p['longest_run_s']:.0f}s, not less than the shortest interval ({shortest:.0f}s): "
                        "runs overlap and the next is skipped; run less often")
    if capacity is not None and ledger > capacity:
        problems.append(f"{ledger:.0f} ledger entries exceed the ConfigMap checkpoint's capacity ({capacity}, "
                        f"about {capacity * 3600 / (ttl + PRUNE_MARGIN_S):.0f} events/h at this TTL): "
                        "the store would fill and early pruning would skip events; use --state s3://BUCKET/KEY")
    return problems


def enrich_cost(requests: int, runs_per_day: float, new_per_run: float, budget: int) -> dict[str, float]:
    """What --enrich adds at most: min(budget, 3 lookups per new occurrence) requests a run, and their bytes."""
    extra = min(budget, math.ceil(new_per_run * LOOKUPS_PER_NEW_EVENT))
    return {"max_requests": budget, "requests_per_run": extra, "requests_per_day": extra * runs_per_day,
            "bytes_per_run": extra * BYTES_PER_LOOKUP, "bytes_per_day": extra * BYTES_PER_LOOKUP * runs_per_day,
            "added_share": extra / requests}


def main(cfg: Config, out: IO[str], now: dt.datetime, deps: Deps | None = None) -> int:
    start = now.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
    if cfg.from_cluster and deps is not None:
        from job.measure import measure

        return _compare(cfg, out, start, measure(cfg, deps))
    p = evaluate(cfg, start)
    if cfg.output == "json":
        out.write(json.dumps(p, indent=2) + "\n")
    else:
        _table(out, _rows(cfg, p))
    return 0 if p["ok"] else 1


def _compare(cfg: Config, out: IO[str], start: dt.datetime, measured: dict[str, Any]) -> int:
    """The measured figures, then every schedule of COMPARED and the configured one side by side."""
    schedules = list(dict.fromkeys([*COMPARED, cfg.schedule]))
    plans = [evaluate(dataclasses.replace(cfg, schedule=s), start, measured,
                      dt.timedelta(days=1) if s in COMPARED else HORIZON) for s in schedules]
    configured = plans[-1] if cfg.schedule not in COMPARED else plans[COMPARED.index(cfg.schedule)]
    if cfg.output == "json":
        out.write(json.dumps({"measured": measured, "configured": cfg.schedule, "plans": plans}, indent=2) + "\n")
        return 0 if configured["ok"] else 1
    _table(out, _measured_rows(measured))
    out.write("\n")
    _table(out, [("schedule", *[p["schedule"] + (" (configured)" if p is configured else "") for p in plans]),
                 *[(key, *[fmt(p) for p in plans]) for key, fmt in _COLUMNS],
                 ("verdict", *["OK" if p["ok"] else "NOT OK" for p in plans])])
    for p in plans:
        for problem in p["problems"]:
            out.write(f"NOT OK {p['schedule']}: {problem}\n")
    return 0 if configured["ok"] else 1


def _measured_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    h = m["history"]
    rows = [("measured", f"{m['store']}: {h.get('runs', 0)} recorded runs over {_num(h.get('span_h', 0))} h; "
                         f"{m['events_held']} Events held now ({m['own_events_held']} the job's own)")]
    if h:
        rate = "n/a (one run)" if h["new_per_hour"] is None else f"{_num(h['new_per_hour'])}/h"
        growth = h["ledger_growth_per_h"]
        rows += [("new occurrences", rate),
                 ("run", f"{_num(h['run_s'])} s, {_num(h['cpu_s_per_run'])} CPU-s (median run)"),
                 ("delay to Loki", f"median {_num(h['delay_p50_s'])} s, p95 {_num(h['delay_p95_s'])} s (measured)"),
                 ("ledger", f"{m['ledger_entries']} entries, {_num(m['checkpoint_bytes'] / 1024)} KiB, "
                            f"{'n/a' if growth is None else _num(growth)} entries/h growth")]
    rows += [("bytes per Event", "n/a" if m["bytes_per_event"] is None else _num(m["bytes_per_event"])),
             ("repeats", f"{_num(100 * m['repeat_share'])}% of occurrences are an Event's count above 1"),
             ("busiest namespaces", ", ".join(f"{k} {v}" for k, v in m["busiest_namespaces"]) or "none"),
             ("busiest reasons", ", ".join(f"{k} {v}" for k, v in m["busiest_reasons"]) or "none")]
    return rows


_COLUMNS: list[tuple[str, Any]] = [
    ("runs per day", lambda p: _num(p["runs_per_day"])),
    ("longest gap (min)", lambda p: _minutes(p["longest_gap_s"])),
    ("expected delay (min)", lambda p: _minutes(p["expected_delay_s"])),
    ("worst delay (min)", lambda p: _minutes(p["worst_case_delay_s"])),
    ("new per run", lambda p: _num(p["new_per_run"])),
    ("listed per run", lambda p: _num(p["listed_per_run"])),
    ("API requests/day", lambda p: _num(p["api_requests_per_day"])),
    ("own Events/day", lambda p: _num(p["own"]["events_per_day"])),
    ("own API writes/day", lambda p: _num(p["own"]["api_writes_per_day"])),
    ("pod starts: node s/day", lambda p: "-".join(_num(x) for x in p["own"]["pod_start_node_s_per_day"])),
    ("CPU s/run", lambda p: f"{p['cpu_s_per_run']:.2f}"),
    ("CPU s/day", lambda p: _num(p["cpu_s_per_day"])),
    ("ledger entries", lambda p: _num(p["ledger_entries"])),
    ("margin (min)", lambda p: _minutes(p["margin_s"])),
]


def _rows(cfg: Config, p: dict[str, Any]) -> list[tuple[str, str]]:
    verdict = (f"OK: margin {_minutes(p['margin_s'])} minutes before unseen events expire" if p["ok"]
               else "NOT OK: " + "; ".join(p["problems"]))
    capacity = "no limit" if p["ledger_capacity"] is None else f"capacity {p['ledger_capacity']}"
    own = p["own"]
    return [
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
        ("CronJob itself", f"{own['events_per_run']} Events and {own['api_writes_per_run']} API writes per run "
                           f"({_num(own['events_per_day'])} and {_num(own['api_writes_per_day'])} per day), a pod "
                           f"start of {'-'.join(_num(x) for x in POD_START_NODE_S)} s on a node; a daemon: "
                           f"{'-'.join(map(str, DAEMON_WATCH_REQUESTS_PER_DAY))} watch requests a day, "
                           f"{DAEMON_LEASE_WRITES_PER_DAY} Lease writes if it elects a leader"),
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


def _table(out: IO[str], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


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
