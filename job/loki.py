"""Pushing entries to Loki: byte-bounded batches, gzip, bounded retries, honest counts."""
from __future__ import annotations

import datetime as dt
import gzip
import logging
import queue
import random
import re
import threading
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

import msgspec
import requests

from job import __version__
from job.clock import Clock
from job.cmd import Config
from job.deps import Deps
from job.lines import Labels

log = logging.getLogger(__name__)
PUSH_PATH = "/loki/api/v1/push"
_enc = msgspec.json.Encoder()
# Per-entry JSON overhead besides the line: timestamp string, brackets, quotes.
_ENTRY_OVERHEAD = 30


class PushError(Exception):
    """Loki did not take a batch and retrying will not help (or the retry budget ran out)."""


@dataclass
class PushStats:
    requests: int = 0
    batches: int = 0
    lines: int = 0
    bytes_raw: int = 0
    bytes_sent: int = 0
    rejected: int = 0
    retries: int = 0


def redact_url(url: str) -> str:
    """The URL without user info: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()


Entry = tuple[int, str, "dict[str, str] | None"]


@dataclass
class Batch:
    streams: dict[Labels, list[Entry]] = field(default_factory=dict)
    size: int = 0
    count: int = 0

    def add(self, labels: Labels, ts: int, line: str, md: dict[str, str] | None) -> None:
        self.streams.setdefault(labels, []).append((ts, line, md))
        self.size += len(line) + _ENTRY_OVERHEAD
        self.count += 1

    def stream_objects(self) -> list[dict[str, object]]:
        # Oldest first within each stream: Loki rejects entries too far behind the newest.
        out: list[dict[str, object]] = []
        for labels, entries in self.streams.items():
            entries.sort(key=lambda e: (e[0], e[1]))
            values = [[str(ts), line, md] if md else [str(ts), line] for ts, line, md in entries]
            out.append({"stream": dict(labels), "values": values})
        return out

    def payload(self) -> bytes:
        return _enc.encode({"streams": self.stream_objects()})

    def split(self) -> tuple["Batch", "Batch"]:
        flat = [(lb, e) for lb, es in self.streams.items() for e in es]
        halves = (Batch(), Batch())
        for i, (lb, (ts, line, md)) in enumerate(flat):
            halves[0 if i < len(flat) // 2 else 1].add(lb, ts, line, md)
        return halves


def pusher_for(cfg: Config, deps: Deps) -> "Pusher":
    """The Pusher a run's settings ask for, on the run's clock and random source."""
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
        clock=deps.clock,
        rng=deps.random,
    )


class Pusher:
    """Collects entries into batches of at most ``batch_bytes`` and ships each one.

    With ``out`` set (dry-run) a batch is printed as the streams it would push, one per line.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_bytes: int,
        timeout: float = 15.0,
        retry_budget: float = 120.0,
        tenant: str = "",
        auth: tuple[str, str] | None = None,
        bearer_token_file: str = "",
        verify: bool | str = True,
        out: IO[str] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url.rstrip("/") + PUSH_PATH if url else ""
        self.safe_url = redact_url(self.url)
        self.batch_bytes = batch_bytes
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.bearer_token_file = bearer_token_file
        self.out = out
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.stats = PushStats()
        self.batch = Batch()
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self._error: PushError | None = None
        self._worker = threading.Thread(target=self._work, name="loki-pusher", daemon=True)
        self.session = requests.Session()
        self.session.headers.update({
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"loki-event-sync/{__version__}",
        })
        if tenant:
            self.session.headers["X-Scope-OrgID"] = tenant
        if auth:
            self.session.auth = auth
        self.session.verify = verify

    def add(self, labels: Labels, ts: int, line: str, md: dict[str, str] | None = None) -> None:
        self.batch.add(labels, ts, line, md)
        if self.batch.size >= self.batch_bytes:
            self._submit()

    def flush(self) -> None:
        """Send what is pending and wait until Loki acknowledged every batch; raise what failed."""
        self._submit()
        self._queue.join()
        self._raise()

    def close(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()
        self.session.close()

    def _submit(self) -> None:
        # One background sender overlaps pushing (gzip releases the GIL, the socket waits) with
        # listing and decoding the next page; a single worker keeps each stream's batches in order.
        self._raise()
        batch, self.batch = self.batch, Batch()
        if batch.count:
            if not self._worker.is_alive():
                self._worker.start()
            self._queue.put(batch)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None:  # after a failure, nothing more is sent
                    self._ship(batch)
            except PushError as exc:
                self._error = exc
            except Exception as exc:  # surfaced in the main thread, never lost in this one
                self._error = PushError(f"pushing to {self.safe_url} failed: {type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _ship(self, batch: Batch) -> None:
        if self.out is not None:
            encoded = [_enc.encode(stream) for stream in batch.stream_objects()]
            self.out.write("".join(e.decode() + "\n" for e in encoded))
            self._count(batch, sum(map(len, encoded)), 0)
            return
        body = batch.payload()
        # Level 1: most of the ratio at a fraction of the CPU of the default level.
        gz = gzip.compress(body, compresslevel=1, mtime=0)
        status, text = self._post(gz)
        if status == 413 and batch.count > 1:
            for half in batch.split():
                self._ship(half)
            return
        self._count(batch, len(body), len(gz))
        if status == 400:
            rejected = _count_rejected(text, batch.count)
            self.stats.rejected += rejected
            log.warning(
                "Loki rejected %d of %d entries (not retried): %s",
                rejected, batch.count, text.strip().splitlines()[0][:500] if text.strip() else "no reason given",
            )
            return
        if status == 413:
            raise PushError(f"Loki at {self.safe_url} refused a single entry as too large (413); "
                            "lower --max-line-bytes")
        if status == 401 or status == 403:
            raise PushError(
                f"Loki at {self.safe_url} refused the push with {status}: {text.strip()[:200]}; "
                "check --tenant, --loki-username/--loki-password or --loki-bearer-token-file"
            )
        if not 200 <= status < 300:
            raise PushError(f"Loki at {self.safe_url} answered {status}: {text.strip()[:200]}")

    def _count(self, batch: Batch, raw: int, sent: int) -> None:
        self.stats.batches += 1
        self.stats.lines += batch.count
        self.stats.bytes_raw += raw
        self.stats.bytes_sent += sent

    def _post(self, gz: bytes) -> tuple[int, str]:
        """POST with retries on 429, 5xx and connection errors, within the retry budget.

        Not urllib3's Retry: it has no overall deadline and sleeps for any Retry-After a gateway
        sends, and a CronJob that hangs holds the Lease and blocks every later run.
        """
        deadline = self.clock.monotonic() + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            self.stats.requests += 1
            headers = {}
            if self.bearer_token_file:
                headers["Authorization"] = f"Bearer {_read_token(self.bearer_token_file)}"
            retry_after: float | None = None
            try:
                resp = self.session.post(self.url, data=gz, headers=headers, timeout=(5.0, self.timeout))
            except requests.RequestException as exc:
                problem = f"cannot reach Loki at {self.safe_url}: {_short(exc)}"
            else:
                if resp.status_code != 429 and resp.status_code < 500:
                    return resp.status_code, resp.text
                problem = f"Loki at {self.safe_url} answered {resp.status_code}: {resp.text.strip()[:200]}"
                retry_after = _retry_after(resp.headers.get("Retry-After"), self.clock.now())
            backoff = min(0.5 * 2 ** (attempt - 1), 30.0) * self.rng.uniform(0.5, 1.0)
            delay = max(backoff, retry_after or 0.0)
            if self.clock.monotonic() + delay > deadline:
                raise PushError(f"{problem}; gave up after {attempt} attempts within --retry-budget "
                                f"{self.retry_budget:g}s")
            log.warning("%s; retry %d in %.1fs", problem, attempt, delay)
            self.stats.retries += 1
            self.clock.sleep(delay)


def _count_rejected(text: str, total: int) -> int:
    m = re.search(r"total ignored: (\d+) out of", text)
    if m:
        return min(int(m.group(1)), total)
    n = text.count("ignored, reason")
    return min(n, total) if n else total


def _retry_after(value: str | None, now: dt.datetime) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max((parsedate_to_datetime(value) - now).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return None


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise PushError(f"cannot read --loki-bearer-token-file {path}: {exc.strerror}") from None


def _short(exc: Exception) -> str:
    """An exception's kind without its text: requests puts full URLs (with credentials) in it."""
    return type(exc).__name__
