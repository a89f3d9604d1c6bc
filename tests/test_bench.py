"""The benchmark runs end to end at a small N, so it cannot rot."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


@pytest.mark.timeout(120)
def test_benchmark_reports_every_figure_at_small_n(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["--sizes", "300", "--ledger-entries", "2000", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["lines"] == 300 and run["second_run_lines"] == 0
    for key in ("wall_s", "events_per_s", "cpu_s", "peak_rss_mb", "startup_s", "api_requests", "loki_requests",
                "bytes_raw", "bytes_sent", "checkpoint_bytes", "parse_everything_per_s", "naive_per_s"):
        assert run[key] > 0, key
    assert {r["store"] for r in result["ledger"]} == {"file", "configmap", "s3"}
    assert "ev/s" in capsys.readouterr().out
