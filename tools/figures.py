"""The figures README.md and docs/performance.md state, computed from their one source each.

    python tools/figures.py        # print the tables the docs hold

Sources: `plan`'s model (job/plan.py, fitted to `python -m bench`), the benchmark's recorded result
(docs/benchmark.json, written by `python -m bench --sizes 1000,10000,100000 --json docs/benchmark.json`),
the install (deploy/base/cronjob.yaml) and job/failure.py. tests/test_docs.py fails when a document
states a figure these do not give; refresh the docs by pasting what this prints.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from job import plan  # noqa: E402
from job.cmd import parse  # noqa: E402
from job.failure import CAUSES  # noqa: E402

RECORDED = ROOT / "docs" / "benchmark.json"
START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)  # any Monday: a */N schedule's gaps do not depend on it
EVENTS_PER_HOUR = 10_000
SCHEDULES = (("*/5 * * * *", "240s"), ("*/10 * * * *", "540s"), ("*/15 * * * *", "540s"),
             ("*/30 * * * *", "540s"))
SIZES = (1_000, 10_000, 100_000)


def recorded() -> dict[str, Any]:
    return dict(json.loads(RECORDED.read_text(encoding="utf-8")))


def planned(schedule: str = "*/10 * * * *", deadline: str = "540s",
            events_per_hour: int = EVENTS_PER_HOUR) -> dict[str, Any]:
    cfg = parse(["plan", "--schedule", schedule, "--active-deadline", deadline,
                 "--events-per-hour", str(events_per_hour)], {})
    return plan.evaluate(cfg, START)


def run_cpu_s(listed: int, new: int) -> float:
    """plan's CPU model for one run that lists ``listed`` events and ships ``new`` of them."""
    return plan.CPU_S_PER_RUN + listed * plan.CPU_S_PER_EVENT + new * plan.CPU_S_PER_NEW_EVENT


def peak_rss_mb(n: int) -> float:
    """The highest peak RSS the recorded benchmark measured for a run at ``n`` events (any paged mode)."""
    (row,) = [r for r in recorded()["runs"] if r["n"] == n]
    paged = [m["peak_rss_mb"] for m in row["api_modes"] if m["mode"] != "cache (unpaginated)"]
    return float(max([row["peak_rss_mb"], *paged]))


def cost_table() -> str:
    out = ["| events the API server holds | CPU s, first run | CPU s, a run with nothing new | peak RSS MB |",
           "|---|---|---|---|"]
    for n in SIZES:
        out.append(f"| {n:,} | {run_cpu_s(n, n):.2f} | {run_cpu_s(n, 0):.2f} | {peak_rss_mb(n):.0f} |")
    return "\n".join(out)


def schedule_table() -> str:
    out = ["| schedule | activeDeadlineSeconds | runs a day | CPU s a run | CPU s a day | expected delay | "
           "worst-case delay | margin before the TTL |", "|---|---|---|---|---|---|---|---|"]
    for schedule, deadline in SCHEDULES:
        p = planned(schedule, deadline)
        out.append(f"| `{schedule}` | {deadline} | {p['runs_per_day']:.0f} | {p['cpu_s_per_run']:.2f} | "
                   f"{p['cpu_s_per_day']:.0f} | {p['expected_delay_s'] / 60:.0f} min | "
                   f"{p['worst_case_delay_s'] / 60:.0f} min | {p['margin_s'] / 60:.0f} min |")
    return "\n".join(out)


def exit_code_table() -> str:
    out = ["| exit | cause | outcome | means |", "|---|---|---|---|"]
    for name, c in sorted(CAUSES.items(), key=lambda kv: kv[1].code):
        out.append(f"| {c.code} | `{name}` | `{c.outcome}` | {c.means} |")
    return "\n".join(out)


def targets_table() -> str:
    out = ["| target | limit | measured | |", "|---|---|---|---|"]
    out += [f"| {g['target']} | {g['limit']} | {g['measured']} | {g['met']} |" for g in recorded()["targets"]]
    return "\n".join(out)


def runs_table() -> str:
    out = ["| N | first run CPU s | nothing new CPU s | +1k new CPU s | peak RSS MB | run RSS MB | floor ev/s | "
           "÷ floor |", "|---|---|---|---|---|---|---|---|"]
    for r in recorded()["runs"]:
        out.append(f"| {r['n']:,} | {r['cpu_s']} | {r['second_run_cpu_s']} | {r['plus_1k_cpu_s']} | "
                   f"{r['peak_rss_mb']} | {r['run_rss_mb']} | {r['floor_per_s']:,} | {r['vs_floor']} |")
    return "\n".join(out)


def api_modes_table() -> str:
    out = ["| N | --list-from | API requests | list requests | served by etcd | response MB | job peak RSS MB |",
           "|---|---|---|---|---|---|---|"]
    for r in recorded()["runs"]:
        for m in r["api_modes"]:
            out.append(f"| {r['n']:,} | {m['mode']} | {m['api_requests']} | {m['list_requests']} | "
                       f"{m['etcd_lists']} | {m['api_mb']} | {m['peak_rss_mb']} |")
    return "\n".join(out)


def imports_table() -> str:
    out = ["| import | CPU s | CPU s (at the end) | RSS MB |", "|---|---|---|---|"]
    out += [f"| {i['option']} | {i['cpu_s']} | {i['cpu_s_end']} | {i['rss_mb']} |" for i in recorded()["imports"]]
    return "\n".join(out)


if __name__ == "__main__":
    for table in (cost_table(), schedule_table(), exit_code_table(), targets_table(), runs_table(),
                  api_modes_table(), imports_table()):
        print(table, end="\n\n")
