"""Run metrics pushed to a Pushgateway: names, values, PUT vs POST semantics, and failures that only log."""
from __future__ import annotations

import base64
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from job import metrics
from job.cmd import Config, parse
from job.summary import Summary


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
        body = self.requests[index][3]
        return {s.name: s.value for family in text_string_to_metric_families(body) for s in family.samples}


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
                  gap_seconds=30, ledger=900, duration_s=1.25, pages=1)


def test_a_successful_run_replaces_the_group_with_every_metric(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), SUMMARY, 0)
    ((method, path, _, _),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/loki-event-sync")
    values = gateway.values()
    assert values.pop("loki_event_sync_last_success_timestamp_seconds") > 1.7e9
    assert values == {
        "loki_event_sync_run_duration_seconds": 1.25,
        "loki_event_sync_events_listed": 120,
        "loki_event_sync_events_shipped": 7,
        "loki_event_sync_events_skipped": 110,  # duplicates + filtered + out of window + before horizon
        "loki_event_sync_loki_rejected_entries": 1,
        "loki_event_sync_gap_seconds": 30,
        "loki_event_sync_ledger_entries": 900,
        "loki_event_sync_last_run_exit_code": 0,
    }


def test_a_failed_run_adds_its_values_but_keeps_the_last_success_timestamp(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), SUMMARY, 1)
    ((method, _, _, _),) = gateway.requests
    assert method == "POST"  # POST replaces only the metrics it sends; PUT would drop the timestamp
    values = gateway.values()
    assert "loki_event_sync_last_success_timestamp_seconds" not in values
    assert values["loki_event_sync_last_run_exit_code"] == 1


def test_a_run_skipped_for_a_held_lease_does_not_count_as_a_success(gateway: Gateway) -> None:
    metrics.push(config(gateway.url), Summary(), 0)
    assert gateway.requests[0][0] == "POST"
    assert "loki_event_sync_last_success_timestamp_seconds" not in gateway.values()


def test_cluster_becomes_part_of_the_grouping_key(gateway: Gateway) -> None:
    metrics.push(config(gateway.url, "--cluster", "prod-eu"), SUMMARY, 0)
    assert gateway.requests[0][1] == "/metrics/job/loki-event-sync/cluster/prod-eu"


def test_credentials_in_the_url_become_basic_auth_and_never_reach_the_log(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.status = 500
    url = gateway.url.replace("http://", "http://pusher:s3cret-pw@")
    with caplog.at_level(logging.WARNING):
        metrics.push(config(url), SUMMARY, 0)
    headers = gateway.requests[0][2]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"pusher:s3cret-pw").decode()
    (record,) = caplog.records
    assert gateway.url in record.getMessage() and "s3cret-pw" not in record.getMessage()


def test_an_unreachable_pushgateway_only_logs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens there any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING):
        metrics.push(config(f"http://127.0.0.1:{port}"), SUMMARY, 0)  # must not raise
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
            metrics.push(config(f"http://127.0.0.1:{server.getsockname()[1]}"), SUMMARY, 0)  # must not raise
    finally:
        t.join(timeout=5)
        server.close()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "BadStatusLine" in record.getMessage()


def test_a_pushgateway_url_with_a_space_is_refused_before_the_run() -> None:
    with pytest.raises(Exception, match="space"):
        config("http://pgw:9091/job x")
