"""Run metrics pushed to a Pushgateway: names, values, PUT vs POST semantics, and failures that only log."""
from __future__ import annotations

import base64
import datetime as dt
import logging
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from job import metrics
from job.cmd import Config, parse
from job.summary import Summary
from tests.conftest import NAMESPACE, Harness, legacy_event, now


class Gateway:
    """A tiny Pushgateway stand-in that records every request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self.status = status
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                gateway.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def values(self, index: int = -1) -> dict[str, float]:
        return {name: value for name, _, value in self.samples(index)}

    def samples(self, index: int = -1) -> list[tuple[str, dict[str, str], float]]:
        body = self.requests[index][3]
        return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(body) for s in family.samples]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    gw.thread.start()
    yield gw
    gw.server.shutdown()
    gw.server.server_close()


def config(url: str, *extra: str) -> Config:
    return parse(["run", "--dry-run", "--pushgateway-url", url, *extra], env={})


SUMMARY = Summary(listed=120, new=7, duplicates=100, filtered=5, out_of_window=3, before_horizon=2, rejected=1,
                  gap_seconds=30, ledger=900, duration_s=1.25, pages=1, checkpoint_bytes=15_000,
                  checkpoint_limit_bytes=1_048_576, cpu_s=0.5, delay_p50_s=42.0, delay_p95_s=300.0,
                  outcome="ok", cause="ok")
FAILED = replace(SUMMARY, outcome="failed", cause="loki", exit_code=1)
ENDED_S = 1_800_000_000.0  # the run's clock when it ended, as main() hands it over


def test_a_successful_run_replaces_the_group_with_every_metric(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), SUMMARY, ENDED_S)
    ((method, path, _, _),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/loki-event-sync")
    assert {labels["outcome"] for _, labels, _ in gateway.samples()} == {"ok"}
    values = gateway.values()
    assert values.pop("loki_event_sync_last_success_timestamp_seconds") == ENDED_S  # the run's clock, not time.time()
    assert values.pop("loki_event_sync_last_run_timestamp_seconds") == ENDED_S
    assert values == {
        "loki_event_sync_run_duration_seconds": 1.25,
        "loki_event_sync_run_cpu_seconds": 0.5,
        "loki_event_sync_delay_p50_seconds": 42.0,
        "loki_event_sync_delay_p95_seconds": 300.0,
        "loki_event_sync_events_listed": 120,
        "loki_event_sync_events_shipped": 7,
        "loki_event_sync_events_skipped": 110,  # duplicates + filtered + out of window + before horizon
        "loki_event_sync_loki_rejected_entries": 1,
        "loki_event_sync_gap_seconds": 30,
        "loki_event_sync_ledger_entries": 900,
        "loki_event_sync_last_run_exit_code": 0,
        "loki_event_sync_checkpoint_bytes": 15_000,
        "loki_event_sync_checkpoint_limit_bytes": 1_048_576,
    }


def test_a_failed_run_adds_its_values_but_keeps_the_last_success_timestamp(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), FAILED, ENDED_S)
    ((method, _, _, _),) = gateway.requests
    assert method == "POST"  # POST replaces only the metrics it sends; PUT would drop the timestamp
    values = gateway.values()
    assert "loki_event_sync_last_success_timestamp_seconds" not in values
    assert values["loki_event_sync_last_run_exit_code"] == 1
    assert values["loki_event_sync_ledger_entries"] == 900  # the true figures of a failed run
    assert "loki_event_sync_checkpoint_bytes" not in values  # it saved none: no 0 over the last size


def test_a_run_skipped_for_a_held_lease_does_not_count_as_a_success(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), Summary(outcome="skipped", cause="skipped", duration_s=0.05), ENDED_S)
    assert gateway.requests[0][0] == "POST"
    assert {labels["outcome"] for _, labels, _ in gateway.samples()} == {"skipped"}
    assert set(gateway.values()) == {  # no ledger_entries=0
        "loki_event_sync_last_run_timestamp_seconds", "loki_event_sync_run_duration_seconds",
        "loki_event_sync_last_run_exit_code"}


def test_cluster_becomes_part_of_the_grouping_key(gateway: Gateway) -> None:
    metrics.push(config(gateway.url, "--cluster", "prod-eu"), SUMMARY, ENDED_S)
    assert gateway.requests[0][1] == "/metrics/job/loki-event-sync/cluster/prod-eu"


def test_credentials_in_the_url_become_basic_auth_and_never_reach_the_log(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.status = 500
    url = gateway.url.replace("http://", "http://pusher:s3cret-pw@")
    with caplog.at_level(logging.WARNING):
        metrics.push(config(url), SUMMARY, ENDED_S)
    headers = gateway.requests[0][2]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"pusher:s3cret-pw").decode()
    (record,) = caplog.records
    assert gateway.url in record.getMessage() and "s3cret-pw" not in record.getMessage()


def test_an_unreachable_pushgateway_only_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens there any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING):
        metrics.push(config(f"http://127.0.0.1:{port}"), SUMMARY, ENDED_S)  # must not raise
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and f"127.0.0.1:{port}" in record.getMessage()


def test_a_pushgateway_answering_garbage_after_a_successful_sync_is_only_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # Not HTTP at all: http.client raises BadStatusLine, which is no OSError. The sync already
    # succeeded, so this must stay a warning (exit 0), not an "unexpected" failure of the run.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HELLO-NOT-HTTP\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with caplog.at_level(logging.WARNING):
            metrics.push(config(f"http://127.0.0.1:{server.getsockname()[1]}"), SUMMARY, ENDED_S)  # must not raise
    finally:
        t.join(timeout=5)
        server.close()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "BadStatusLine" in record.getMessage()


def test_a_pushgateway_url_with_a_space_is_refused_before_the_run() -> None:
    with pytest.raises(Exception, match="space"):
        config("http://pgw:9091/job x")


# --- every ending of a real run: one summary line, one push, the same outcome and figures ------------------


def _ending(h: Harness, gateway: Gateway, *extra: str, command: str = "run",
            clock: Callable[[], dt.datetime] | None = None) -> tuple[int, dict[str, Any]]:
    gateway.requests.clear()
    code = h.run(command, *extra, "--pushgateway-url", gateway.url, clock=clock)
    summaries = [r["summary"] for r in h.logs() if "summary" in r]
    assert len(summaries) == 1 and "summary" in h.logs()[-1], h.stderr  # one, and the run's last line
    assert len(gateway.requests) == 1, gateway.requests
    (summary,) = summaries
    assert {labels["outcome"] for _, labels, _ in gateway.samples()} == {summary["outcome"]}
    pushed = gateway.values()
    assert pushed["loki_event_sync_last_run_exit_code"] == code == summary["exit_code"]
    assert pushed["loki_event_sync_run_duration_seconds"] == summary["duration_s"]
    for metric, field in (("events_listed", "listed"), ("events_shipped", "new"), ("ledger_entries", "ledger")):
        assert pushed.get(f"loki_event_sync_{metric}") == summary.get(field), metric
    return code, summary


def test_a_successful_run_ends_with_outcome_ok(h: Harness, gateway: Gateway) -> None:
    h.seed(120)
    ended = now()
    code, s = _ending(h, gateway, clock=lambda: ended)
    assert (code, s["outcome"], s["new"], s["ledger"]) == (0, "ok", 120, 120)
    assert gateway.requests[0][0] == "PUT"
    # Stamped by the run's clock: a test, or a run under a moved clock, reads back exactly that time.
    assert gateway.values()["loki_event_sync_last_success_timestamp_seconds"] == ended.timestamp()


def test_a_skipped_run_ends_with_outcome_skipped_and_pushes_no_counts(h: Harness, gateway: Gateway) -> None:
    h.seed(120)
    h.put_lease("busy-run", now(), 3600)
    code, s = _ending(h, gateway)
    assert (code, s["outcome"]) == (0, "skipped") and "ledger" not in s
    assert "run skipped: Lease loki-event-sync/loki-event-sync is held by busy-run" in h.logs()[-1]["msg"]
    assert "completed" not in h.stderr and "loki_event_sync_ledger_entries" not in gateway.values()


def test_a_failed_run_that_retried_reports_its_true_figures(h: Harness, gateway: Gateway) -> None:
    h.seed(120)
    assert h.run() == 0
    for i in range(5):
        h.kube.put_event(legacy_event(f"late-{i}.{i:x}"))
    h.loki.fail_next(503, times=100)  # until the 3 s retry budget is spent
    code, s = _ending(h, gateway)
    assert (code, s["outcome"], s["cause"]) == (1, "failed", "loki")
    assert s["retries"] > 0 and s["ledger"] == 120 and (s["listed"], s["new"]) == (125, 5)
    # The run's clock advanced by exactly the waits it chose: the duration is theirs, not 0.0.
    assert s["duration_s"] == pytest.approx(sum(h.clock.sleeps), abs=0.01) and s["duration_s"] > 0
    assert gateway.requests[0][0] == "POST"


def test_sigterm_ends_with_outcome_terminated_and_still_pushes(h: Harness, gateway: Gateway) -> None:
    h.seed(120)
    armed: list[str] = []

    def term(method: str, path: str) -> None:
        if path.startswith("/api/v1/events") and not armed:
            armed.append("listing")

    def now_or_sigterm() -> dt.datetime:
        # What job/__main__.py makes of SIGTERM: a KeyboardInterrupt in the run's own thread, here
        # once the list has begun. Raised there by the clock the run asks, not by interrupt_main(),
        # whose pending interrupt a finalizer may swallow on a loaded machine.
        if armed == ["listing"] and threading.current_thread() is threading.main_thread():
            armed.append("raised")
            raise KeyboardInterrupt
        return dt.datetime.now(dt.timezone.utc)

    h.kube.on_request = term
    code, s = _ending(h, gateway, clock=now_or_sigterm)
    h.kube.on_request = None
    assert armed == ["listing", "raised"]
    assert (code, s["outcome"], s["cause"]) == (1, "terminated", "terminated")
    assert "interrupted" in h.logs()[-1]["msg"]
    assert h.kube.existing("leases", NAMESPACE, "loki-event-sync")["spec"]["holderIdentity"] == ""


def test_a_run_past_its_deadline_ends_with_outcome_deadline(h: Harness, gateway: Gateway) -> None:
    h.seed(120)

    def slow(method: str, path: str) -> None:  # each page "takes" a minute on the run's clock
        if path.startswith("/api/v1/events"):
            h.clock.skipped += 60

    h.kube.on_request = slow
    code, s = _ending(h, gateway, "--deadline", "90s")
    h.kube.on_request = None
    assert (code, s["outcome"]) == (1, "deadline") and s["duration_s"] >= 90
    assert s["listed"] < 120  # it stopped at a page boundary, not at the end
