"""Run metrics for a Prometheus Pushgateway: a CronJob lives too briefly to be scraped.

Every ending of a run pushes once (job/main.py), and every sample carries the run's ``outcome``
label (ok, skipped, failed, terminated, deadline: job/failure.py). A successful run replaces the
whole group (PUT), the success timestamp included. Any other ending only adds its own values (POST)
and leaves the last success timestamp in place, so "time since the last success" keeps growing and
LokiEventSyncStale (deploy/alerts.yaml) fires. A skipped run did no sync: it pushes how it ended and
its duration only, never zeros for counts it did not take (the ledger size above all).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from job.cmd import Config, redact_url

if TYPE_CHECKING:
    from job.summary import Summary

log = logging.getLogger(__name__)
JOB = "loki-event-sync"
TIMEOUT_S = 10.0  # a hung push must not keep the pod (and its Lease) alive

# name, help, the Summary fields it sums; pushed only when the run reports them (Summary.figures).
GAUGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("run_duration_seconds", "Duration of the last run", ("duration_s",)),
    ("run_cpu_seconds", "CPU time of the last run's process, start-up included", ("cpu_s",)),
    ("delay_p50_seconds", "Median time from an occurrence to its push, over the last run's", ("delay_p50_s",)),
    ("delay_p95_seconds", "95th percentile of the time from an occurrence to its push", ("delay_p95_s",)),
    ("last_run_exit_code", "Exit code of the last run (0 = ok or skipped)", ("exit_code",)),
    ("events_listed", "Events listed by the last run", ("listed",)),
    ("events_shipped", "New event occurrences pushed to Loki by the last run", ("new",)),
    ("events_skipped", "Events the last run did not ship: already shipped, filtered, outside the window or "
     "pruned", ("duplicates", "filtered", "out_of_window", "before_horizon")),
    ("loki_rejected_entries", "Entries Loki refused (400) in the last run", ("rejected",)),
    ("gap_seconds", "Seconds of events that may be missing because no run succeeded within the event TTL",
     ("gap_seconds",)),
    ("ledger_entries", "Occurrences remembered in the checkpoint", ("ledger",)),
    ("checkpoint_bytes", "Size of the checkpoint the last run saved", ("checkpoint_bytes",)),
    ("checkpoint_limit_bytes", "Size limit of the checkpoint's store (0 = none)", ("checkpoint_limit_bytes",)),
)

# Every series a push can hold (deploy/alerts.yaml and the dashboard may name no other).
NAMES = frozenset(f"loki_event_sync_{name}" for name in (
    "last_success_timestamp_seconds", "last_run_timestamp_seconds", *(g[0] for g in GAUGES)))


def push(cfg: Config, summary: Summary, now_s: float) -> None:
    """Push this run's metrics as of Unix time ``now_s`` (the run's injected clock); a Pushgateway
    failure is logged once and never fails the run."""
    # Imported here: only runs with --pushgateway-url pay for it at start-up.
    from urllib.parse import unquote, urlsplit

    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway, pushadd_to_gateway

    registry = CollectorRegistry()
    outcome = summary.outcome or "ok"

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"loki_event_sync_{name}", doc, ["outcome"], registry=registry).labels(outcome).set(value)

    synced = outcome == "ok"
    if synced:
        gauge("last_success_timestamp_seconds", "Unix time the last successful run finished", now_s)
    gauge("last_run_timestamp_seconds", "Unix time the last run ended, whatever its outcome", now_s)
    figures = summary.figures()
    for name, doc, fields in GAUGES:
        # Only a run that saved has a checkpoint size: a failed one must not push it as 0.
        if all(f in figures for f in fields) and (synced or not name.startswith("checkpoint")):
            gauge(name, doc, sum(figures[f] for f in fields))

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
