"""One run: list events, keep the occurrences not shipped before, push them, then save the checkpoint."""
from __future__ import annotations

import contextlib
import logging
from array import array
from dataclasses import replace

from job import checkpointing, gap, history
from job.cmd import Config, resolve_time
from job.connections import Connections
from job.dedupe import NS, Ledger
from job.deps import Deps
from job.enrich import NONE, enricher_for
from job.events import rfc3339, to_ns
from job.failure import RunFailed, RunSkipped
from job.filters import OwnEvents
from job.kube import Listing
from job.lease import Lease, Renewer
from job.lines import Formatter
from job.loki import pusher_for
from job.progress import Progress
from job.selection import hour_bucket, list_scope, log_clock_skew, log_malformed_total, select
from job.source import pages
from job.summary import Summary
from job.tenants import router_for
from state import Checkpoint, Store

log = logging.getLogger(__name__)


def run(cfg: Config, deps: Deps, s: Summary) -> int:
    """A sync (cfg.command == "run") or a backfill, counting into ``s``. Returns 0; raises RunSkipped
    when another run holds the Lease, and RunFailed (or the failing component's error) otherwise."""
    started = deps.clock.monotonic()
    conn = Connections(cfg, deps.redactor)
    backfill = cfg.command == "backfill"
    store = conn.store()
    uses_api = not cfg.from_file or conn.state_url().startswith("configmap:")
    lease: Lease | None = None
    # The finally covers the acquire too: a SIGTERM while the taking write is in flight may leave it
    # applied, and release() then clears the Lease if it turns out to be ours.
    try:
        if not cfg.dry_run and uses_api:
            lease = Lease(conn.api(), conn.namespace(), cfg.lease_name, deps.holder(), cfg.lease_duration,
                          deps.clock.now, cfg.api_timeout)
            holder = lease.acquire()
            if holder is not None:
                if backfill:  # a backfill Job that did nothing must not look like a success
                    raise RunFailed(f"{holder}; the backfill did not run: retry once that run has finished",
                                    "lease-held")
                raise RunSkipped(holder)
        with Renewer(lease) if lease else contextlib.nullcontext():
            return _run_locked(cfg, deps, conn, store, lease, started, backfill, s)
    finally:
        if lease:
            lease.release()


def _run_locked(cfg: Config, deps: Deps, conn: Connections, store: Store, lease: Lease | None,
                started: float, backfill: bool, s: Summary) -> int:
    now = deps.clock.now()
    now_ns = to_ns(now)
    cp, version, existed = checkpointing.load(store, cfg.reset_checkpoint, now_ns)
    s.ledger = len(cp.ledger)
    since_ns = to_ns(resolve_time(cfg.since, now)) if cfg.since and (backfill or not existed) else 0
    until_ns = to_ns(resolve_time(cfg.until, now)) if cfg.until else 0
    ledger = Ledger(cp, ttl_s=cfg.event_ttl, now_ns=now_ns, since_ns=since_ns, until_ns=until_ns,
                    replay=backfill, api_list=not cfg.from_file,
                    scope=list_scope(cfg.field_selector, ",".join(cfg.event_namespaces)))
    # The last complete list's resourceVersion: a watch-cache list must be at least that new.
    listing = Listing(not_older_than=cp.list_rv)
    batches = _ship(cfg, deps, conn, cp, ledger, listing, existed and not backfill, started, backfill, now_ns, s)
    s.resource_version, s.list_complete = listing.resource_version, listing.complete
    s.list_requests, s.list_bytes = listing.requests, listing.bytes
    log_malformed_total(s)
    log_clock_skew(s)
    # Only a list read to its end, and not older than the last run's, says what was deleted.
    s.pruned = ledger.finish(complete=listing.complete and not cfg.from_file, list_rv=listing.resource_version)
    checkpointing.advance_list_rv(cp, listing.resource_version)
    s.ledger = len(cp.ledger)
    s.watermark = rfc3339(cp.watermark_ns)
    s.duration_s = round(deps.clock.monotonic() - started, 3)  # for the history; main() sets the summary's
    s.cpu_s = round(deps.clock.cpu(), 3)
    if cfg.dry_run:
        log.info("**DRY-RUN**: would push %d lines in %d requests; nothing was written", s.lines, batches)
        return 0
    if lease is not None and not lease.still_held():
        raise RunFailed(f"{lease.where} was lost during the run; not saving the checkpoint "
                        "(the next run re-sends, and Loki drops the duplicates)", "lease-lost")
    cp.last_success_ns = to_ns(deps.clock.now())
    cp.last_run = s.last_run()
    history.record(cp, s, cp.last_success_ns)
    data = checkpointing.fit(cp, ledger, store, s)
    store.save(data, version)
    s.checkpoint_bytes, s.checkpoint_limit_bytes = len(data), store.max_bytes or 0
    return 0


def _ship(cfg: Config, deps: Deps, conn: Connections, cp: Checkpoint, ledger: Ledger, listing: Listing,
          check_gap: bool, started: float, backfill: bool, now_ns: int, s: Summary) -> int:
    """List, select and push every new occurrence (after a gap marker, if ``check_gap`` finds the
    last success older than the TTL); returns the batches pushed. The counts reach ``s`` on every
    ending: the pusher is closed, and its stats read, in the finally."""
    fmt = Formatter(label_style=cfg.label_style, line_format=cfg.line_format, cluster=cfg.cluster,
                    max_line_bytes=cfg.max_line_bytes, structured_metadata=cfg.structured_metadata)
    pusher = pusher_for(cfg, deps)
    route = router_for(cfg, conn.api, deps.redactor)
    filters = replace(cfg.filters, own=OwnEvents(conn.namespace(), cfg.cronjob_name, cfg.pod_name, cfg.own_events))
    stamps = array("q")  # each shipped occurrence's time, for the run's measured delay
    try:
        if check_gap:
            s.gap_seconds = gap.gap_seconds(cp, cfg, now_ns)
            if s.gap_seconds:
                gap.warn(cp, now_ns, s.gap_seconds)
                pusher.add(*gap.marker(fmt, cfg, conn.namespace(), cp.last_success_ns or 0,
                                       now_ns - int(cfg.event_ttl * NS)))
        progress = Progress(deps.stderr, deps.clock.monotonic) if Progress.wanted(cfg.log_format, deps.stderr) else None
        add, labels, line = pusher.add, fmt.labels, fmt.line
        # --enrich: lookups only for what select() ships; they add fields, never change what ships.
        enrich = enricher_for(cfg, conn.api, deps.clock.monotonic, s)
        metadata = fmt.metadata if cfg.structured_metadata or enrich else None
        for page in pages(cfg, conn, deps, listing):
            _check_deadline(cfg, deps, started)
            for e, ts_ns, new, skew in select(page, ledger, filters, s):
                stamps.append(ts_ns)
                x = enrich(e) if enrich else NONE
                add(labels(e, hour_bucket(ts_ns) if backfill else "") + skew + x.labels, ts_ns, line(e, new, x.pairs),
                    metadata(e, x.pairs) if metadata else None, route(e.meta.namespace) if route else None)
            if progress:
                progress.show(s)
        pusher.flush()
        s.delay_p50_s, s.delay_p95_s = history.delays(stamps, to_ns(deps.clock.now()))
        if enrich:
            enrich.finish()
        if progress:
            progress.done()
    finally:
        pusher.close()
        pusher.stats.count_into(s)
        s.truncated = fmt.truncated
    return pusher.stats.batches


def _check_deadline(cfg: Config, deps: Deps, started: float) -> None:
    """Stop at --deadline, before the kubelet's SIGTERM at activeDeadlineSeconds: the run then ends
    itself, releases the Lease and reports outcome "deadline" instead of being killed mid-step."""
    if cfg.deadline and deps.clock.monotonic() - started >= cfg.deadline:
        raise RunFailed(f"the run reached its --deadline of {cfg.deadline:g}s; not saving the checkpoint "
                        "(the next run goes on from the last one saved)", "deadline")
