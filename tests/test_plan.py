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
