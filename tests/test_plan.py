"""`python -m job plan`: the cost of a schedule and whether it can lose events, via job.main.main."""
from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
import uuid
from typing import Any

import pytest

from job import plan as model
from job.clock import Clock
from job.dedupe import PRUNE_MARGIN_S
from job.deps import Deps
from job.main import main
from state.base import Checkpoint, encode

# plan looks a week ahead from now: a fixed now (a Monday, 00:00 UTC) keeps every figure the same
# whatever the time of day the suite runs.
NOW = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)


def plan(*args: str, err: io.StringIO | None = None) -> tuple[int, str]:
    out = io.StringIO()
    deps = Deps(stdout=out, stderr=err or io.StringIO(), clock=Clock(now=lambda: NOW))
    code = main(["plan", *args], env={}, deps=deps)
    return code, out.getvalue()


def plan_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out = plan(*args, "--output", "json")
    return code, json.loads(out)


def row(text: str, key: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(key + "  ")]
    return line[len(key):].strip()


@pytest.mark.parametrize("schedule", ["every 10 minutes", "61 * * * *", "*/5 * * * * *", "0 0 30 2 *"])
def test_invalid_schedule_exits_2_with_one_line_naming_it_and_an_example(
        schedule: str) -> None:
    stderr = io.StringIO()
    code, out = plan("--schedule", schedule, err=stderr)
    err = stderr.getvalue()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert repr(schedule) in err and '"*/10 * * * *"' in err


def test_every_15_minutes_at_10k_per_hour_runs_96_times_a_day_with_margin() -> None:
    code, out = plan("--schedule", "*/15 * * * *", "--events-per-hour", "10000", "--event-ttl", "1h")
    assert code == 0
    assert row(out, "runs per day") == "96"
    assert row(out, "longest gap").startswith("15 min")
    assert row(out, "new events per run").startswith("2500 ")
    cpu_per_run = model.CPU_S_PER_RUN + 10_000 * model.CPU_S_PER_EVENT + 2500 * model.CPU_S_PER_NEW_EVENT
    assert row(out, "CPU per day").startswith(f"{model._num(96 * cpu_per_run)} s")
    assert row(out, "verdict") == "OK: margin 36 minutes before unseen events expire"  # 60 - 15 - 9


def test_the_json_output_holds_every_figure_by_the_docstring_formulas() -> None:
    code, p = plan_json("--schedule", "*/10 * * * *", "--events-per-hour", "10000", "--event-ttl", "1h")
    assert code == 0 and p["ok"] is True and p["problems"] == []
    assert (p["runs_per_day"], p["longest_gap_s"], p["shortest_gap_s"]) == (144, 600, 600)
    assert p["listed_per_run"] == 10_000 and p["new_per_run"] == pytest.approx(10_000 / 6)
    # 20 list pages of 500, the Lease's requests, and the ConfigMap checkpoint's read and write.
    assert p["api_requests_per_run"] == 20 + model.RUN_REQUESTS + model.CONFIGMAP_REQUESTS
    assert p["bytes_listed_per_run"] == 10_000 * model.BYTES_PER_LISTED_EVENT
    run = model.CPU_S_PER_RUN + 10_000 * model.CPU_S_PER_EVENT + p["new_per_run"] * model.CPU_S_PER_NEW_EVENT
    assert p["cpu_s_per_run"] == pytest.approx(run) and p["cpu_s_per_day"] == pytest.approx(144 * run)
    assert p["daemon_cpu_s_per_day"] == 82
    assert p["expected_delay_s"] == pytest.approx(300 + run)  # half of a constant interval, plus the run
    assert p["worst_case_delay_s"] == 600 + 540
    assert p["ledger_entries"] == pytest.approx(10_000 * (3600 + PRUNE_MARGIN_S) / 3600)
    assert p["margin_s"] == 3600 - 600 - 540
    # The rules in deploy/components/alerts use [15m] for this schedule: wide enough.
    assert p["min_alert_window_s"] == math.ceil((600 + run + model.ALERT_SLACK_S) / 60) * 60 == 14 * 60


def test_the_api_servers_cost_at_100k_events_is_about_200_requests_and_126_mb_a_run() -> None:
    _, p = plan_json("--events-per-hour", "100000", "--state", "s3://bucket/key")
    assert p["api_requests_per_run"] == 200 + model.RUN_REQUESTS  # no ConfigMap round trips with S3
    assert p["bytes_listed_per_run"] == pytest.approx(126e6)


@pytest.mark.parametrize("rate", ["100000", "200000"])
def test_a_rate_beyond_the_configmap_ledger_capacity_is_not_ok_and_names_the_s3_store(rate: str) -> None:
    code, out = plan("--events-per-hour", rate)
    assert code == 1
    verdict = row(out, "verdict")
    assert verdict.startswith("NOT OK: ") and "ConfigMap checkpoint's capacity" in verdict and "s3://" in verdict
    # The same rate is fine with a store that has no size limit.
    assert plan("--events-per-hour", rate, "--state", "s3://bucket/checkpoint")[0] == 0


def test_the_configmap_capacity_is_about_40k_events_an_hour_at_the_default_ttl() -> None:
    per_hour = model.CONFIGMAP_CAPACITY * 3600 / (3600 + PRUNE_MARGIN_S)
    assert 55_000 < model.CONFIGMAP_CAPACITY < 65_000 and 35_000 < per_hour < 45_000
    assert plan("--events-per-hour", str(int(per_hour) - 100))[0] == 0
    assert plan("--events-per-hour", str(int(per_hour) + 100))[0] == 1


def test_the_bytes_per_ledger_entry_constant_matches_the_checkpoint_encoding() -> None:
    rnd = random.Random(5)
    w = 1_795_600_000
    n = 20_000
    ledger = {str(uuid.UUID(int=rnd.getrandbits(128), version=4)): (1 + rnd.randrange(9), w - rnd.randrange(5520))
              for _ in range(n)}
    size = len(encode(Checkpoint(watermark_ns=w * 10**9, ledger=ledger, last_success_ns=w * 10**9)))
    assert size / n == pytest.approx(model.CHECKPOINT_BYTES_PER_ENTRY, rel=0.1)


def test_an_active_deadline_not_below_the_interval_is_not_ok() -> None:
    code, out = plan("--schedule", "*/5 * * * *", "--active-deadline", "540s")
    assert code == 1 and "activeDeadlineSeconds (540s) is not below the shortest interval (300s)" in row(out, "verdict")
    assert plan("--schedule", "*/5 * * * *", "--active-deadline", "240s")[0] == 0


def test_every_two_hours_risks_losing_events_beyond_the_ttl() -> None:
    code, p = plan_json("--schedule", "0 */2 * * *", "--event-ttl", "1h")
    assert code == 1 and p["runs_per_day"] == 12
    (problem,) = p["problems"]
    assert "reaches the event TTL (60 min): up to 69 minutes of events may expire unseen" in problem  # 120 + 9 - 60


def test_expected_delay_weights_long_gaps_by_the_events_they_catch() -> None:
    # Runs at :00 and :10 leave gaps of 10 and 50 minutes: (10^2 + 50^2) / (2 * 60) = 21.7 minutes,
    # not the 15 minutes a plain mean of half-intervals would claim.
    code, p = plan_json("--schedule", "0,10 * * * *", "--active-deadline", "5m")
    assert code == 0
    assert p["longest_gap_s"] == 3000 and p["shortest_gap_s"] == 600
    assert p["expected_delay_s"] - p["run_s"] == pytest.approx(21.67 * 60, abs=1)
    assert p["margin_s"] == 3600 - 3000 - 300


def test_hourly_schedule_is_not_ok_because_the_run_itself_takes_time() -> None:
    code, out = plan("--schedule", "@hourly", "--event-ttl", "1h")
    assert code == 1
    assert row(out, "verdict").startswith("NOT OK:") and "up to 9 minutes" in row(out, "verdict")


def test_table_columns_are_aligned() -> None:
    _, out = plan("--schedule", "*/10 * * * *")
    starts = {len(ln) - len(ln[ln.index("  "):].lstrip()) for ln in out.splitlines()}
    assert len(starts) == 1


def test_the_text_names_the_daemon_figure_the_api_cost_and_the_alert_window() -> None:
    _, out = plan()
    assert "always-on daemon: about 82 s at 10000/h" in row(out, "CPU per day")
    assert row(out, "API requests").startswith("26 per run")
    assert row(out, "alert window").startswith(">= 14m")


def test_watch_cache_mode_costs_etcd_nothing_on_1_34_and_one_version_request() -> None:
    _, etcd = plan_json("--events-per-hour", "100000")
    _, cache = plan_json("--events-per-hour", "100000", "--list-from", "cache")
    assert etcd["etcd_reads_per_run"] == {"before_1_34": 200, "from_1_34": 1}
    assert cache["etcd_reads_per_run"] == {"before_1_34": 200, "from_1_34": 0}
    assert cache["api_requests_per_run"] == etcd["api_requests_per_run"] + 1


# --- plan --from-cluster: against the API test server, with a seeded checkpoint history -------------

RUN_GAP_S = 600
NEW = [400, 50, 60, 40, 70, 80]  # the first run shipped the backlog; its shipments are before the history
CPU_MS = [900, 300, 320, 280, 350, 310]
DURATION_MS = [1200, 400, 450, 380, 500, 420]


def history_row(i: int, *, new: int, cpu_ms: int, duration_ms: int, ledger: int, gap_s: int = RUN_GAP_S) -> list[int]:
    # FIELDS: end_s duration_ms cpu_ms listed new duplicates filtered list_bytes ledger delay_p50_s delay_p95_s
    return [1_790_000_000 + i * gap_s, duration_ms, cpu_ms, 30, new, 30 - new % 30, 0, 30 * 1000, ledger,
            100 + i, 300 + 10 * i]


def seed_cluster(h: Any, history: list[list[int]], ledger_entries: int = 100) -> bytes:

    rng = random.Random(7)
    now_s = int(NOW.timestamp())
    ledger = {str(uuid.UUID(int=rng.getrandbits(128), version=4)): (1, now_s - rng.randrange(3600))
              for _ in range(ledger_entries)}
    data = encode(Checkpoint(ledger=ledger, last_success_ns=now_s * 10**9, history=history))
    h.put_checkpoint(data)
    from tests.conftest import legacy_event

    for i in range(30):  # 10 of them repeated: count 3
        h.kube.put_event(legacy_event(f"e-{i}.{i:x}", ns=("busy", "busy", "calm")[i % 3], count=3 if i < 10 else 1,
                                      reason="BackOff" if i % 3 == 0 else "Pulled"))
    return data


def from_cluster(h: Any, *extra: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    deps = Deps(stdout=out, stderr=err, clock=Clock(now=lambda: NOW))
    code = main(["plan", "--from-cluster", "--kubeconfig", h.kubeconfig, *extra], env={}, deps=deps)
    assert not err.getvalue() or code, err.getvalue()
    return code, out.getvalue()


def test_from_cluster_derives_every_measured_figure_from_the_history_and_the_list(h: Any) -> None:
    rows = [history_row(i, new=n, cpu_ms=c, duration_ms=d, ledger=100) for i, (n, c, d)
            in enumerate(zip(NEW, CPU_MS, DURATION_MS, strict=True))]
    data = seed_cluster(h, rows)
    code, out = from_cluster(h, "--output", "json")
    got = json.loads(out)
    m, hist = got["measured"], got["measured"]["history"]
    assert code == 0 and got["configured"] == "*/10 * * * *"
    span_h = 5 * RUN_GAP_S / 3600
    assert hist["new_per_hour"] == pytest.approx(sum(NEW[1:]) / span_h)  # 300 over 50 minutes: 360/h
    assert hist["cpu_s_per_run"] == pytest.approx(0.315) and hist["run_s"] == pytest.approx(0.435)
    assert (hist["delay_p50_s"], hist["delay_p95_s"]) == (102.5, 325)  # the medians of 100..105 and 300..350
    assert m["events_held"] == 30 and m["own_events_held"] == 0
    assert m["repeat_share"] == pytest.approx(20 / 50)  # 10 Events at count 3: 20 repeats of 50 occurrences
    assert m["busiest_namespaces"] == [["busy", 20], ["calm", 10]]
    assert m["busiest_reasons"] == [["Pulled", 20], ["BackOff", 10]]
    assert m["ledger_entries"] == 100 and m["checkpoint_bytes"] == len(data)
    assert [p["schedule"] for p in got["plans"]] == list(model.COMPARED)
    by = {p["schedule"]: p for p in got["plans"]}
    ten = by["*/10 * * * *"]
    assert ten["new_per_run"] == pytest.approx(360 * 600 / 3600)  # 60
    # The median run's CPU, moved by the new occurrences this schedule ships instead of the median run's 65.
    assert ten["cpu_s_per_run"] == pytest.approx(0.315 + (60 - 65) * model.CPU_S_PER_NEW_EVENT)
    # The held Events are listed, the job's own re-counted for each schedule: 9 a run, one TTL's worth.
    assert ten["listed_per_run"] == pytest.approx(30 + 9 * 6)
    assert by["*/5 * * * *"]["listed_per_run"] == pytest.approx(30 + 9 * 12)
    assert ten["own"]["events_per_day"] == 9 * 144 and ten["own"]["api_writes_per_day"] == 15 * 144
    assert ten["ledger_capacity"] == int((model.CONFIGMAP_LIMIT - model.CONFIGMAP_HEADROOM) / (len(data) / 100))
    # The default activeDeadlineSeconds (540 s) is longer than */5's interval.
    assert [p["ok"] for p in got["plans"]] == [False, True, True, True]


def test_from_cluster_text_shows_the_measured_figures_and_the_schedules_side_by_side(h: Any) -> None:
    seed_cluster(h, [history_row(i, new=n, cpu_ms=300, duration_ms=400, ledger=100) for i, n in enumerate(NEW)])
    code, out = from_cluster(h, "--schedule", "*/20 * * * *", "--active-deadline", "240s")
    assert code == 0
    assert row(out, "new occurrences") == "360/h"
    assert row(out, "delay to Loki") == "median 102 s, p95 325 s (measured)"
    header = row(out, "schedule").split()
    assert header == ["*/5", "*", "*", "*", "*", "*/10", "*", "*", "*", "*", "*/15", "*", "*", "*", "*", "*/30",
                      "*", "*", "*", "*", "*/20", "*", "*", "*", "*", "(configured)"]
    assert row(out, "runs per day").split() == ["288", "144", "96", "48", "72"]
    assert row(out, "verdict").split() == ["OK"] * 5


def test_from_cluster_is_not_ok_where_a_measured_run_overlaps_the_next(h: Any) -> None:
    slow = [history_row(i, new=60, cpu_ms=300, duration_ms=d, ledger=100) for i, d in enumerate([400, 420, 360_000])]
    seed_cluster(h, slow)
    code, out = from_cluster(h, "--active-deadline", "200s")
    assert code == 0  # */10: a 360 s run fits its 600 s gap
    assert row(out, "verdict").split() == ["NOT", "OK", "OK", "OK", "OK"]
    assert "NOT OK */5 * * * *: a run took 360s, not less than the shortest interval (300s)" in out
    code, _ = from_cluster(h, "--active-deadline", "200s", "--schedule", "*/5 * * * *")
    assert code == 1


def test_from_cluster_is_not_ok_where_the_ledgers_growth_would_fill_the_configmap(h: Any) -> None:
    # 4,000 entries recorded in four minutes: 60,000 an hour, for the TTL and margin it can keep growing.
    growing = [history_row(i, new=1000, cpu_ms=300, duration_ms=400, ledger=1000 * i, gap_s=60) for i in range(5)]
    data = seed_cluster(h, growing, ledger_entries=4000)
    code, out = from_cluster(h, "--output", "json")
    got = json.loads(out)
    assert code == 1
    projected = 4000 + 60_000 * (3600 + PRUNE_MARGIN_S) / 3600
    capacity = int((model.CONFIGMAP_LIMIT - model.CONFIGMAP_HEADROOM) / (len(data) / 4000))
    for p in got["plans"]:
        assert p["ledger_entries"] == pytest.approx(projected) and p["ledger_capacity"] == capacity
        assert not p["ok"] and any("the store would fill" in r for r in p["problems"])


def test_each_run_records_its_cpu_and_measured_delay_and_status_shows_the_recent_runs(h: Any) -> None:
    from tests.conftest import FAKE_CPU_S, STATE, legacy_event, now

    ran_at = now()
    for i in range(4):  # occurred 2 minutes before the push (the injected clock stands still in a run)
        h.kube.put_event(legacy_event(f"a-{i}.{i}", last=ran_at - dt.timedelta(seconds=120 + 60 * i)))
    assert h.run(clock=lambda: ran_at) == 0
    h.kube.put_event(legacy_event("late.1", last=ran_at))
    later = ran_at + dt.timedelta(minutes=10)
    assert h.run(clock=lambda: later) == 0
    raw = ["status", "--kubeconfig", h.kubeconfig, "--state", STATE]
    assert h.run(raw=[*raw, "--output", "json"], clock=lambda: later) == 0
    info = json.loads(h.stdout)
    last = info["last_run"]
    assert last["cpu_s"] == FAKE_CPU_S and (last["delay_p50_s"], last["delay_p95_s"]) == (600, 600)
    assert "resource_version" not in last  # the floor lives in the checkpoint's list_rv alone
    recent = info["recent_runs"]
    # Run 1: delays 120, 180, 240, 300 s: median (nearest rank) 180, p95 300. Run 2: one at 600 s.
    assert recent["runs"] == 2 and recent["new_per_hour"] == pytest.approx(1 / (10 / 60))
    assert recent["delay_p50_s"] == (180 + 600) / 2 and recent["delay_p95_s"] == (300 + 600) / 2
    assert h.run(raw=raw, clock=lambda: later) == 0
    assert row(h.stdout, "delay to Loki").startswith("median 390 s, p95 450 s")
    assert row(h.stdout, "ledger") == "5 entries"


@pytest.mark.parametrize("schedule", model.COMPARED)
@pytest.mark.parametrize("start", [NOW, NOW + dt.timedelta(minutes=7), NOW + dt.timedelta(hours=5, minutes=30)])
def test_the_compared_schedules_run_exactly_when_croniter_says(schedule: str, start: dt.datetime) -> None:
    from croniter import croniter

    times = model.run_times(schedule, start, dt.timedelta(days=1))
    it = croniter(schedule, start)
    expected = [it.get_next(dt.datetime)]
    while len(expected) < 2 or expected[-1] < start + dt.timedelta(days=1):
        expected.append(it.get_next(dt.datetime))
    assert times == expected


def test_status_text_says_no_checkpoint_yet_and_plan_from_cluster_plans_from_the_list_alone(h: Any) -> None:
    from tests.conftest import STATE, legacy_event

    assert h.run(raw=["status", "--kubeconfig", h.kubeconfig, "--state", STATE]) == 0
    assert row(h.stdout, "checkpoint").endswith(": none yet")
    for i in range(12):
        h.kube.put_event(legacy_event(f"e-{i}.{i:x}"))
    code, out = from_cluster(h, "--output", "json")
    got = json.loads(out)
    assert code == 0 and got["measured"]["history"] == {} and got["measured"]["events_held"] == 12
    # No runs recorded: the rate is what the API server holds over one TTL, the CPU the benchmark's model.
    ten = got["plans"][1]
    assert ten["events_per_hour"] == 12 and ten["new_per_run"] == pytest.approx(2)
    listed = 12 + 9 * 6
    assert ten["cpu_s_per_run"] == pytest.approx(model.CPU_S_PER_RUN + listed * model.CPU_S_PER_EVENT
                                                 + 2 * model.CPU_S_PER_NEW_EVENT)
