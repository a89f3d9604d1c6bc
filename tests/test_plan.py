"""`python -m job plan`: the cost of a schedule and whether it can lose events, via job.main.main."""
from __future__ import annotations

import io

import pytest

from job.main import main
from job.deps import Deps


def plan(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["plan", *args], env={}, deps=Deps(stdout=out, stderr=io.StringIO()))
    return code, out.getvalue()


def row(text: str, key: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(key + "  ")]
    return line[len(key):].strip()


@pytest.mark.parametrize("schedule", ["every 10 minutes", "61 * * * *", "*/5 * * * * *", "0 0 30 2 *"])
def test_invalid_schedule_exits_2_with_one_line_naming_it_and_an_example(
        schedule: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = plan("--schedule", schedule)
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert repr(schedule) in err and '"*/10 * * * *"' in err


def test_every_15_minutes_at_10k_per_hour_runs_96_times_a_day_with_margin() -> None:
    code, out = plan("--schedule", "*/15 * * * *", "--events-per-hour", "10000", "--event-ttl", "1h")
    assert code == 0
    assert row(out, "runs per day") == "96"
    assert row(out, "longest gap") == "15 min"
    assert row(out, "expected delay") == "7.5 min"  # half of a constant interval
    assert row(out, "new events per run").startswith("2500 ")
    # 96 runs x (0.6 s start-up + 10,000 listed events x 10 us)
    assert row(out, "CPU per day") == "40 s"  # 96 x (0.35 + 10000 x 5us + 2500 x 6.5us)
    assert row(out, "verdict") == "OK: margin 40 minutes"  # 60 - 15 - 5


def test_every_two_hours_risks_losing_events_beyond_the_ttl() -> None:
    code, out = plan("--schedule", "0 */2 * * *", "--event-ttl", "1h")
    assert code == 0
    assert row(out, "runs per day") == "12"
    assert row(out, "verdict") == ("RISK: events older than the TTL are deleted before the next run: "
                                   "up to 65 minutes of events may be lost per gap")  # 120 + 5 - 60


def test_expected_delay_weights_long_gaps_by_the_events_they_catch() -> None:
    # Runs at :00 and :10 leave gaps of 10 and 50 minutes: (10^2 + 50^2) / (2 * 60) = 21.7 minutes,
    # not the 15 minutes a plain mean of half-intervals would claim.
    code, out = plan("--schedule", "0,10 * * * *")
    assert code == 0
    assert row(out, "longest gap") == "50 min"
    assert row(out, "expected delay") == "21.7 min"
    assert row(out, "verdict") == "OK: margin 5 minutes"


def test_hourly_schedule_is_a_risk_because_the_run_itself_takes_time() -> None:
    code, out = plan("--schedule", "@hourly", "--event-ttl", "1h")
    assert code == 0
    assert row(out, "verdict").startswith("RISK:") and "up to 5 minutes" in row(out, "verdict")


def test_table_columns_are_aligned() -> None:
    _, out = plan("--schedule", "*/10 * * * *")
    starts = {len(ln) - len(ln[ln.index("  "):].lstrip()) for ln in out.splitlines()}
    assert len(starts) == 1
