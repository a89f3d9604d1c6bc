"""One run: list events, keep the occurrences not shipped before, push them, then save the checkpoint."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Iterator

from job import kube
from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_FILE_STATE, Config, Filters, resolve_time
from job.dedupe import BEFORE_HORIZON, DUPLICATE, NS, Ledger
from job.events import Event, Page, decode_page, to_ns
from job.lease import Lease, Renewer
from job.lines import Formatter, Labels, json_line
from job.logs import Redactor
from job.loki import Pusher
from state import Checkpoint, Store, StoreError, decode, encode, open_store

log = logging.getLogger(__name__)
_MAX_MALFORMED_LOGGED = 20


class RunFailed(Exception):
    """The run did not complete; the checkpoint was not advanced past what Loki acknowledged."""


@dataclass
class Deps:
    """What a run touches outside itself, injectable for tests."""

    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[bytes] | None = None  # None: the process's stdin, looked up only for --from-file -
    sleep: Callable[[float], None] = time.sleep
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    redactor: Redactor | None = None  # set by main(); learns credentials found while running


@dataclass
class Summary:
    listed: int = 0
    new: int = 0
    duplicates: int = 0
    filtered: int = 0
    out_of_window: int = 0
    before_horizon: int = 0
    malformed: int = 0
    lines: int = 0
    bytes: int = 0
    bytes_sent: int = 0
    rejected: int = 0
    truncated: int = 0
    pages: int = 0
    pushes: int = 0
    retries: int = 0
    pruned: int = 0
    ledger: int = 0
    gap_seconds: int = 0
    duration_s: float = 0.0
    watermark: str = ""


class Context:
    """Lazily built connections, so a --from-file dry run needs no cluster at all."""

    def __init__(self, cfg: Config, redactor: Redactor | None = None) -> None:
        self.cfg = cfg
        self.redactor = redactor
        self._api: Any = None
        self._namespace = cfg.namespace

    def api(self) -> Any:
        if self._api is None:
            self._api = kube.api_client(self.cfg.kubeconfig, self.cfg.context)
            if self.redactor is not None:
                for secret in kube.credentials(self._api):
                    self.redactor.add(secret)
        return self._api

    def namespace(self) -> str:
        if not self._namespace:
            self._namespace = kube.own_namespace(self.cfg.kubeconfig, self.cfg.context)
        return self._namespace

    def state_url(self) -> str:
        if self.cfg.state:
            return self.cfg.state
        if kube.in_cluster():
            return f"configmap://{self.namespace()}/{DEFAULT_CHECKPOINT_CONFIGMAP}"
        return DEFAULT_FILE_STATE

    def store(self) -> Store:
        return open_store(self.state_url(), kube=self.api, s3_endpoint_url=self.cfg.s3_endpoint_url or None)


def load_checkpoint(store: Store, reset: bool) -> tuple[Checkpoint, Any, bool]:
    """(checkpoint, version, existed). A corrupt one stops the run unless --reset-checkpoint."""
    data, version = store.load()
    if data is None:
        return Checkpoint(), version, False
    try:
        return decode(data, store.name), version, True
    except StoreError:
        if not reset:
            raise
        log.warning("--reset-checkpoint: discarding the unreadable checkpoint at %s", store.name)
        return Checkpoint(), version, False


def _matches(f: Filters, e: Event) -> bool:
    for value, inc, exc in (
        (e.meta.namespace, f.include_namespaces, f.exclude_namespaces),
        (e.reason, f.include_reasons, f.exclude_reasons),
        (e.type, f.include_types, f.exclude_types),
        (e.obj.kind, f.include_kinds, f.exclude_kinds),
    ):
        if inc is not None and not inc.fullmatch(value or ""):
            return False
        if exc is not None and exc.fullmatch(value or ""):
            return False
    return True


def _hour_bucket(t_ns: int) -> str:
    # A backfill stream per hour of event time: its entries are never 1 h apart, so Loki's
    # too_far_behind cannot reject them whatever the regular stream already holds.
    return time.strftime("%Y-%m-%dT%H", time.gmtime(t_ns // NS))


def _pages(cfg: Config, ctx: Context, deps: Deps) -> Iterator[Page]:
    if cfg.from_file:
        try:
            data = (deps.stdin or sys.stdin.buffer).read() if cfg.from_file == "-" else open(cfg.from_file, "rb").read()
        except OSError as exc:
            raise RunFailed(f"cannot read --from-file {cfg.from_file}: {exc.strerror}") from None
        try:
            yield decode_page(data)
        except ValueError as exc:
            raise RunFailed(
                f"--from-file {cfg.from_file} is not an EventList or List in JSON ({exc}); "
                "make it with `kubectl get events -A -o json`"
            ) from None
        return
    yield from kube.list_event_pages(
        ctx.api(), page_size=cfg.page_size, field_selector=cfg.field_selector, timeout=cfg.api_timeout,
        decode=decode_page,
    )


def make_pusher(cfg: Config, deps: Deps) -> Pusher:
    verify: bool | str = cfg.loki_ca_file or True
    if cfg.insecure_skip_tls_verify:
        log.warning("TLS verification of Loki is OFF (--insecure-skip-tls-verify): pushes can be intercepted")
        verify = False
    return Pusher(
        cfg.loki_url,
        batch_bytes=cfg.batch_bytes,
        timeout=cfg.push_timeout,
        retry_budget=cfg.retry_budget,
        tenant=cfg.tenant,
        auth=(cfg.loki_username, cfg.loki_password) if cfg.loki_username else None,
        bearer_token_file=cfg.loki_bearer_token_file,
        verify=verify,
        out=deps.stdout if cfg.dry_run else None,
        sleep=deps.sleep,
    )


def gap_marker(fmt: Formatter, cfg: Config, namespace: str, start_ns: int, end_ns: int) -> tuple[Labels, int, str]:
    """One line saying events in [start, end) may be missing; deterministic, so re-sent copies drop."""
    labels = fmt.stream(namespace, "Warning", "LokiEventSync")
    start = dt.datetime.fromtimestamp(start_ns / NS, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = dt.datetime.fromtimestamp(end_ns / NS, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    f = {
        "type": "Warning",
        "reason": "EventsMayBeMissing",
        "kind": "LokiEventSync",
        "namespace": namespace,
        "message": f"events between {start} and {end} may be missing: no successful sync ran while the "
                   f"API server still held them (event TTL {int(cfg.event_ttl)}s)",
        "gapStart": start,
        "gapEnd": end,
        "gapSeconds": (end_ns - start_ns) // NS,
    }
    return labels, end_ns, json_line(f)


def run(cfg: Config, deps: Deps, s: Summary) -> int:
    """A sync (cfg.command == "run") or a backfill, counting into ``s``. Returns the exit code."""
    started = time.monotonic()
    now = deps.clock()
    ctx = Context(cfg, deps.redactor)
    backfill = cfg.command == "backfill"
    store = ctx.store()
    uses_api = not cfg.from_file or ctx.state_url().startswith("configmap:")
    lease: Lease | None = None
    if not cfg.dry_run and uses_api:
        lease = Lease(ctx.api(), ctx.namespace(), cfg.lease_name, deps.identity, cfg.lease_duration,
                      deps.clock, cfg.api_timeout)
        holder = lease.acquire()
        if holder is not None:
            if backfill:  # a backfill Job that did nothing must not look like a success
                raise RunFailed(f"{holder}; the backfill did not run: retry once that run has finished")
            log.info("skipping this run: %s", holder)
            return 0
    try:
        with Renewer(lease) if lease else contextlib.nullcontext():
            return _run_locked(cfg, deps, ctx, store, lease, now, started, backfill, s)
    finally:
        if lease:
            lease.release()


def _run_locked(cfg: Config, deps: Deps, ctx: Context, store: Store, lease: Lease | None, now: dt.datetime,
                started: float, backfill: bool, s: Summary) -> int:
    cp, version, existed = load_checkpoint(store, cfg.reset_checkpoint)
    since_ns = to_ns(resolve_time(cfg.since, now)) if cfg.since and (backfill or not existed) else 0
    until_ns = to_ns(resolve_time(cfg.until, now)) if cfg.until else 0
    ledger = Ledger(cp, ttl_s=cfg.event_ttl, since_ns=since_ns, replay=backfill)
    fmt = Formatter(label_style=cfg.label_style, line_format=cfg.line_format, cluster=cfg.cluster,
                    max_line_bytes=cfg.max_line_bytes, structured_metadata=cfg.structured_metadata)
    pusher = make_pusher(cfg, deps)
    now_ns = to_ns(now)
    try:
        if existed and cp.last_success_ns and not backfill:
            gap_ns = now_ns - int(cfg.event_ttl * NS) - cp.last_success_ns
            if gap_ns > 0:
                s.gap_seconds = gap_ns // NS
                log.warning("the last successful sync was %ds ago, longer than the event TTL: events from a "
                            "%ds window may be lost; run more often (see `python -m job plan`)",
                            (now_ns - cp.last_success_ns) // NS, s.gap_seconds)
                pusher.add(*gap_marker(fmt, cfg, ctx.namespace(), cp.last_success_ns,
                                       now_ns - int(cfg.event_ttl * NS)))
        progress = _Progress(deps.stderr) if cfg.log_format == "text" and _isatty(deps.stderr) else None
        check = _matches if cfg.filters != Filters() else None
        consider, add, labels, line, metadata = ledger.consider, pusher.add, fmt.labels, fmt.line, fmt.metadata
        for page in _pages(cfg, ctx, deps):
            s.pages += 1
            if progress:
                progress.show(s)
            for bad in page.malformed:
                s.malformed += 1
                if s.malformed <= _MAX_MALFORMED_LOGGED:
                    log.warning("skipping a malformed event %s: %s", bad.where, bad.reason)
            s.listed += len(page.events)
            for e, t_ns in page.events:  # the hot loop: bound names, no per-event allocation on skips
                if check is not None and not check(cfg.filters, e):
                    s.filtered += 1
                    continue
                if until_ns and t_ns >= until_ns:
                    s.out_of_window += 1
                    continue
                v = consider(e.meta.uid or "", e.occurrences, t_ns)
                if not v.new:
                    if v is DUPLICATE:
                        s.duplicates += 1
                    elif v is BEFORE_HORIZON:
                        s.before_horizon += 1
                    else:
                        s.out_of_window += 1
                    continue
                s.new += 1
                add(labels(e, _hour_bucket(t_ns) if backfill else ""), t_ns, line(e, v.new),
                    metadata(e) if cfg.structured_metadata else None)
        pusher.flush()
        if progress:
            progress.done()
    finally:
        pusher.close()
        st = pusher.stats
        s.lines, s.bytes, s.bytes_sent, s.rejected = st.lines, st.bytes_raw, st.bytes_sent, st.rejected
        s.pushes, s.retries, s.truncated = st.requests, st.retries, fmt.truncated
    if s.malformed > _MAX_MALFORMED_LOGGED:
        log.warning("%d malformed events in all (only the first %d were logged)", s.malformed, _MAX_MALFORMED_LOGGED)
    s.pruned = ledger.prune()
    s.ledger = len(cp.ledger)
    s.watermark = _rfc3339(cp.watermark_ns)
    s.duration_s = round(time.monotonic() - started, 3)
    if cfg.dry_run:
        log.info("**DRY-RUN**: would push %d lines in %d requests; nothing was written", s.lines, st.batches)
        return 0
    if lease is not None and not lease.still_held():
        raise RunFailed(f"{lease.where} was lost during the run; not saving the checkpoint "
                        "(the next run re-sends, and Loki drops the duplicates)")
    cp.last_success_ns = to_ns(deps.clock())
    cp.last_run = {k: v for k, v in asdict(s).items() if k not in ("watermark",)}
    data = _fit(cp, ledger, store, s)
    store.save(data, version)
    return 0


def _fit(cp: Checkpoint, ledger: Ledger, store: Store, s: Summary) -> bytes:
    """Encode, pruning the oldest entries first if the store has a size limit (never re-shipped)."""
    data = encode(cp)
    limit = store.max_bytes
    while limit is not None and len(data) > limit - 4096:
        keep = int(len(cp.ledger) * (limit - 4096) / len(data) * 0.97)
        dropped = ledger.prune_to(keep)
        s.pruned += dropped
        s.ledger = len(cp.ledger)
        log.warning("the checkpoint would exceed %s's %d-byte limit: pruned the %d oldest ledger entries early; "
                    "events older than %s are never re-shipped; use an s3:// store for more room",
                    store.name, limit, dropped, _rfc3339(cp.prune_horizon_ns))
        data = encode(cp)
    return data


class _Progress:
    """Pages and events so far, redrawn on one terminal line at most twice a second."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last = 0.0

    def show(self, s: Summary) -> None:
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            self.out.write(f"\r  pages {s.pages}  events {s.listed}  new {s.new}  duplicates {s.duplicates} ")
            self.out.flush()

    def done(self) -> None:
        if self.last:
            self.out.write("\n")


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rfc3339(ns: int) -> str:
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns // NS, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(cfg: Config, deps: Deps) -> dict[str, Any]:
    ctx = Context(cfg, deps.redactor)
    store = ctx.store()
    data, _ = store.load()
    if data is None:
        return {"store": store.name, "exists": False}
    cp = decode(data, store.name)
    now_ns = to_ns(deps.clock())
    ago = (now_ns - cp.last_success_ns) // NS if cp.last_success_ns else None
    return {
        "store": store.name,
        "exists": True,
        "watermark": _rfc3339(cp.watermark_ns),
        "ledger_entries": len(cp.ledger),
        "prune_horizon": _rfc3339(cp.prune_horizon_ns),
        "last_success": _rfc3339(cp.last_success_ns or 0),
        "last_success_seconds_ago": ago,
        "stale": ago is not None and ago > cfg.event_ttl,
        "last_run": cp.last_run,
        "bytes": len(data),
    }

