"""Run metrics for a Prometheus Pushgateway: a CronJob lives too briefly to be scraped.

A successful run replaces the whole group (PUT), including the success timestamp. A failed run
only adds its own values (POST) and leaves the last success timestamp in place, so "time since the
last success" keeps growing and LokiEventSyncStale (deploy/alerts.yaml) can fire.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from job.cmd import Config, redact_url

if TYPE_CHECKING:
    from job.summary import Summary

log = logging.getLogger(__name__)
JOB = "loki-event-sync"
TIMEOUT_S = 10.0  # a hung push must not keep the pod (and its Lease) alive


def push(cfg: Config, summary: Summary, code: int) -> None:
    """Push this run's metrics; a Pushgateway failure is logged once and never fails the run."""
    # Imported here: only runs with --pushgateway-url pay for it at start-up.
    from urllib.parse import unquote, urlsplit

    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway, pushadd_to_gateway

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, registry=registry).set(value)

    # A run skipped because another holds the Lease returns 0 without listing a single page; it did
    # no sync, so it must not refresh the success timestamp.
    synced = code == 0 and summary.pages > 0
    if synced:
        gauge("loki_event_sync_last_success_timestamp_seconds",
              "Unix time the last successful run finished", time.time())
    gauge("loki_event_sync_run_duration_seconds", "Duration of the last run", summary.duration_s)
    gauge("loki_event_sync_events_listed", "Events listed by the last run", summary.listed)
    gauge("loki_event_sync_events_shipped", "New event occurrences pushed to Loki by the last run", summary.new)
    gauge("loki_event_sync_events_skipped",
          "Events the last run did not ship: already shipped, filtered, outside the window or pruned",
          summary.duplicates + summary.filtered + summary.out_of_window + summary.before_horizon)
    gauge("loki_event_sync_loki_rejected_entries", "Entries Loki refused (400) in the last run", summary.rejected)
    gauge("loki_event_sync_gap_seconds",
          "Seconds of events that may be missing because no run succeeded within the event TTL",
          summary.gap_seconds)
    gauge("loki_event_sync_ledger_entries", "Occurrences remembered in the checkpoint", summary.ledger)
    gauge("loki_event_sync_last_run_exit_code", "Exit code of the last run (0 = success)", code)

    parts = urlsplit(cfg.pushgateway_url)
    safe_url = redact_url(cfg.pushgateway_url)
    # Percent-encoded in the URL (cmd.http_url insists on it), sent decoded.
    user, password = unquote(parts.username or ""), unquote(parts.password or "")

    def with_basic_auth(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                        data: bytes) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    # urllib cannot send user:password@host itself; prometheus_client's handler does basic auth.
    handler = with_basic_auth if user else default_handler

    grouping_key = {"cluster": cfg.cluster} if cfg.cluster else None
    send = push_to_gateway if synced else pushadd_to_gateway
    try:
        send(safe_url, job=JOB, registry=registry, grouping_key=grouping_key, timeout=TIMEOUT_S,
             handler=handler)
    except Exception as exc:  # URLError, HTTPError, timeouts, InvalidURL, prometheus_client's non-2xx error
        # A warning, never a failure: the sync already kept its promise (Loki has the events, the
        # checkpoint is saved), and failing now would make the next run re-check for nothing. A lasting
        # Pushgateway outage still shows: the success timestamp stops moving and LokiEventSyncStale fires.
        log.warning("could not push metrics to the Pushgateway at %s: %s", safe_url,
                    getattr(exc, "reason", None) or type(exc).__name__)
