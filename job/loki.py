"""The push pipeline: entries become byte-bounded batches per tenant, shipped in order by one sender.

The pipeline pushes to a ``Sink``: job/lokiclient.py's LokiClient (one batch, one acknowledged
request; job/lokianswers.py reads Loki's answers) or, for --dry-run, job/dryrun.py's DryRunSink.

A SIGTERM reaches the main thread as KeyboardInterrupt wherever it waits on the sender (a full queue,
``flush``); ``close()`` then stops the sink, which ends its retry wait at once and sends nothing more,
and joins the sender (at most the request in flight, bounded by --push-timeout) before the run reads
the counts.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Protocol

from job.batch import Batch
from job.cmd import Config
from job.deps import Deps
from job.dryrun import DryRunSink
from job.lines import Labels
from job.lokiclient import PUSH_PATH, LokiClient
from job.transport import PushError, PushStats

__all__ = ["Batch", "PushError", "PushStats", "Pusher", "Sink", "pusher_for"]
log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the pipeline's batches go: one ``send`` per batch, in order, from one thread."""

    stats: PushStats
    safe_url: str  # where it pushes, fit for a log line

    def send(self, tenant: str, batch: Batch) -> None: ...
    def finish(self) -> None: ...  # after the last batch: raise what the whole run got wrong
    def stop(self) -> None: ...  # from another thread: end any wait, send nothing more
    def close(self) -> None: ...


def pusher_for(cfg: Config, deps: Deps) -> Pusher:
    """The Pusher a run's settings ask for, on the run's clock and random source."""
    if cfg.dry_run:
        return Pusher(DryRunSink(deps.stdout), batch_bytes=cfg.batch_bytes, tenant=cfg.tenant)
    verify: bool | str = cfg.loki_ca_file or True
    if cfg.insecure_skip_tls_verify:
        log.warning("TLS verification of Loki is OFF (--insecure-skip-tls-verify): pushes can be intercepted")
        verify = False
    client = LokiClient(
        cfg.loki_url, timeout=cfg.push_timeout, retry_budget=cfg.retry_budget,
        auth=(cfg.loki_username, cfg.loki_password) if cfg.loki_username else None,
        bearer_token_file=cfg.loki_bearer_token_file, verify=verify, clock=deps.clock, rng=deps.random,
        redactor=deps.redactor, push_format=cfg.push_format)
    how = "the full push URL given" if client.form == "full" else f"{PUSH_PATH} appended to the base URL"
    log.info("pushing to %s (%s)", client.safe_url, how)
    return Pusher(client, batch_bytes=cfg.batch_bytes, tenant=cfg.tenant)


class Pusher:
    """Collects entries into batches of at most ``batch_bytes`` per tenant and hands each to the sink."""

    def __init__(self, sink: Sink, *, batch_bytes: int, tenant: str = "") -> None:
        self.sink = sink
        self.batch_bytes = batch_bytes
        self.tenant = tenant
        self.batches: dict[str, Batch] = {}
        self._queue: queue.Queue[tuple[str, Batch] | None] = queue.Queue(maxsize=2)
        self._error: PushError | None = None
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="loki-pusher", daemon=True)

    @property
    def stats(self) -> PushStats:
        return self.sink.stats

    def add(self, labels: Labels, ts: int, line: str, md: dict[str, str] | None = None,
            tenant: str | None = None) -> None:
        """Queue one entry for ``tenant`` (None: the default --tenant)."""
        key = self.tenant if tenant is None else tenant
        batch = self.batches.get(key)
        if batch is None:
            batch = self.batches[key] = Batch()
        batch.add(labels, ts, line, md)
        if batch.size >= self.batch_bytes:
            self._submit(key)

    def flush(self) -> None:
        """Send what is pending and wait until the sink took every batch; raise what failed."""
        for key in list(self.batches):
            self._submit(key)
        self._queue.join()
        self._raise()
        self.sink.finish()

    def close(self) -> None:
        """Stop the sender and wait for it: after a flush it is idle; after a failure or SIGTERM it
        sends nothing more and ends with the request in flight, if any."""
        self._stop.set()
        self.sink.stop()
        if self._worker.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._worker.join()
        self.sink.close()

    def _submit(self, key: str) -> None:
        # One background sender overlaps pushing (gzip releases the GIL, the socket waits) with
        # listing and decoding the next page; a single worker keeps each stream's batches in order.
        self._raise()
        batch = self.batches.pop(key, None)
        if batch is not None and batch.count:
            if not self._worker.is_alive():
                self._worker.start()
            self._queue.put((key, batch))

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._stop.is_set():  # after a failure, nothing more is sent
                    self.sink.send(*item)
            except PushError as exc:
                self._error = exc
            except Exception as exc:  # surfaced in the main thread, never lost in this one
                self._error = PushError(f"pushing to {self.sink.safe_url} failed: {type(exc).__name__}")
            finally:
                self._queue.task_done()
            if self._stop.is_set():
                return
