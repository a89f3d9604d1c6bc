"""Pushing entries to Loki: byte-bounded batches per tenant, gzip, bounded retries, honest counts.

What Loki answers, read from its source (pkg/distributor/distributor.go, pkg/validation/validate.go,
pkg/ingester/stream.go, pkg/util/errors.go) and what the job makes of it:

* ``204 No Content`` is a push Loki accepted. A 2xx with an empty body counts too (a proxy may turn
  204 into 200), but **a 2xx with a body is not an acknowledgement**: Loki never sends one to a push,
  while an ingress login page or an OAuth proxy does (``200 text/html``). The run fails, unsaved.
* Redirects are never followed (``allow_redirects=False``; requests would re-POST a 307/308 with our
  headers): the credentials and the tenant go to the Loki given in ``--loki-url`` and nowhere else. A
  3xx fails the run, naming the Location's host (never its path or query, which may hold a token).
* ``400`` has two shapes. *Entry rejections*: Loki stored the request's valid entries and lists the
  rest. The distributor's validation errors (too old, too new, line too long, structured metadata too
  large) come as Go's ``util.GroupedErrors``: one message, or ``N errors like: MSG; M errors like: MSG2``;
  the ingester's (too far behind, out of order) as ``entry with timestamp T ignored, reason: '...',``
  lines and ``user 'TENANT', total ignored: N out of M for stream: {...}`` (Loki 3; 2.x had ``total
  ignored: N out of M``). The N's are counted as ``rejected`` and the run goes on. *Request
  rejections*: a malformed request, a label Loki cannot take (it drops the whole stream), structured
  metadata on a Loki that disallows it (``stream '...' includes structured metadata, but this feature
  is disallowed``: every entry carries it, so nothing would ever land), or any reason this module does
  not know as per-entry. They fail the run at once with Loki's reason and no checkpoint save, as does
  a run in which Loki accepted none of the entries it was sent.
* ``429``, ``5xx`` and connection errors are retried with backoff within ``--retry-budget``; a
  ``Retry-After`` is honoured. What retrying cannot fix fails at once with a hint: TLS verification
  (a certificate problem: ``--loki-ca-file``), ``401``/``403`` (credentials or tenant), ``404`` (the URL
  has no push API), ``413`` for a single entry.

A SIGTERM reaches the main thread as KeyboardInterrupt wherever it waits on the sender (a full queue,
``flush``); ``close()`` then sets the stop event, which ends the sender's retry wait at once, and does
not wait for a request in flight: the worker is a daemon and sends nothing after the stop, so the
process exits with the Lease released.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import logging
import queue
import random
import re
import threading
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import msgspec
import requests

from job import __version__, logproto
from job.clock import Clock
from job.cmd import Config, redact_url, shown_url, valid_token
from job.deps import Deps
from job.lines import Labels
from job.logs import Redactor

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


def push_target(url: str) -> tuple[str, str, tuple[str, str] | None]:
    """(push URL without user info, "base" or "full", basic auth from the user info or None).

    --loki-url may be the base URL or the full push URL that Alloy, Promtail and Grafana Cloud hand
    out; appending the push path to the latter would give a 404.
    """
    parts = urlsplit(url)
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    path = parts.path.rstrip("/")
    form = "full" if path.endswith(PUSH_PATH) else "base"
    if form == "base":
        path += PUSH_PATH
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, parts.query, "")), form, auth


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

    def sorted_streams(self) -> list[tuple[Labels, list[Entry]]]:
        # Oldest first within each stream: Loki rejects entries too far behind the newest.
        for entries in self.streams.values():
            entries.sort(key=lambda e: (e[0], e[1]))
        return list(self.streams.items())

    def stream_objects(self) -> list[dict[str, object]]:
        return [{"stream": dict(labels), "values": [[str(ts), line, md] if md else [str(ts), line]
                                                    for ts, line, md in entries]}
                for labels, entries in self.sorted_streams()]

    def payload(self, push_format: str = "json") -> bytes:
        """The uncompressed request body in ``push_format`` (json or protobuf)."""
        if push_format == "protobuf":
            return logproto.push_request(self.sorted_streams())
        return _enc.encode({"streams": self.stream_objects()})

    def split(self) -> tuple[Batch, Batch]:
        flat = [(lb, e) for lb, es in self.streams.items() for e in es]
        halves = (Batch(), Batch())
        for i, (lb, (ts, line, md)) in enumerate(flat):
            halves[0 if i < len(flat) // 2 else 1].add(lb, ts, line, md)
        return halves


# --- what a 400 means --------------------------------------------------------------------------------

# The ingester's per-stream summary (Loki 3: "user 'T', total ignored: N out of M for stream: {...}").
_INGESTER_TOTAL = re.compile(r"total ignored: (\d+) out of \d+")
# util.GroupedErrors: "N errors like: MSG" joined by "; " (a lone message that occurred once has no prefix).
_GROUPED = re.compile(r"(?:^|; )(\d+) errors like: ")
# Loki's reasons for refusing one entry for what it is (validate.go); anything else refuses the request.
_ENTRY_REASONS = (
    "has timestamp too old",
    "has timestamp too new",
    "Max entry size",
    "has structured metadata too large",
    "has too many structured metadata labels",
    "entry too far behind",
    "entry out of order",
)
_SM_DISALLOWED = "includes structured metadata, but this feature is disallowed"
_TENANT_IN_BODY = re.compile(r"user '[^']*'")


@dataclass(frozen=True)
class Verdict:
    """A 400's meaning: how many entries Loki refused one by one, or why it refused the request."""

    rejected: int
    request_reason: str = ""


def read_400(text: str, sent: int) -> Verdict:
    """Tell entry rejections (count them, go on) from request rejections (fail the run)."""
    totals = _INGESTER_TOTAL.findall(text)
    if totals:
        return Verdict(min(sum(map(int, totals)), sent))
    body = text.strip()
    if not body:
        return Verdict(0, "no reason given")
    groups = list(_GROUPED.finditer(body))
    if groups:
        messages = [(int(m.group(1)), body[m.end():groups[i + 1].start() if i + 1 < len(groups) else None])
                    for i, m in enumerate(groups)]
    else:
        messages = [(1, body)]
    rejected = 0
    for n, message in messages:
        if _SM_DISALLOWED in message or not any(r in message for r in _ENTRY_REASONS):
            return Verdict(0, message)
        rejected += n
    return Verdict(min(rejected, sent))


def one_line(text: str, limit: int = 300, tenant: str = "") -> str:
    """Loki's reason as one printable line, with the tenant it names taken out.

    Loki names the tenant as user '...'; a gateway may echo it anywhere, so the request's own tenant
    goes too, however short (the Redactor only hides secrets of 3 characters or more everywhere).
    """
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or "no reason given"
    first = _TENANT_IN_BODY.sub("user '***'", first)
    if tenant:
        first = re.sub(rf"(?<![A-Za-z0-9]){re.escape(tenant)}(?![A-Za-z0-9])", "***", first)
    return first if len(first) <= limit else first[:limit] + "..."


# --- the pusher ----------------------------------------------------------------------------------------


def pusher_for(cfg: Config, deps: Deps) -> Pusher:
    """The Pusher a run's settings ask for, on the run's clock and random source."""
    verify: bool | str = cfg.loki_ca_file or True
    if cfg.insecure_skip_tls_verify:
        log.warning("TLS verification of Loki is OFF (--insecure-skip-tls-verify): pushes can be intercepted")
        verify = False
    pusher = Pusher(
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
        redactor=deps.redactor,
        push_format=cfg.push_format,
    )
    if pusher.url and not cfg.dry_run:
        how = "the full push URL given" if pusher.form == "full" else f"{PUSH_PATH} appended to the base URL"
        log.info("pushing to %s (%s)", pusher.safe_url, how)
    return pusher


class Pusher:
    """Collects entries into batches of at most ``batch_bytes`` per tenant and ships each one.

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
        redactor: Redactor | None = None,
        push_format: str = "json",
    ) -> None:
        self.url, self.form, url_auth = push_target(url) if url else ("", "base", None)
        self.safe_url = redact_url(self.url)
        self.batch_bytes = batch_bytes
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.tenant = tenant
        self.bearer_token_file = bearer_token_file
        self.out = out
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.redactor = redactor
        self.stats = PushStats()
        self.batches: dict[str, Batch] = {}
        self.first_reject = ""
        self._queue: queue.Queue[tuple[str, Batch] | None] = queue.Queue(maxsize=2)
        self._error: PushError | None = None
        self._stop = threading.Event()
        self._flushed = False
        self._worker = threading.Thread(target=self._work, name="loki-pusher", daemon=True)
        self.push_format = push_format
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"loki-event-sync/{__version__}"
        if push_format == "protobuf":  # snappy block-compressed, as Promtail and Alloy send it
            self.session.headers["Content-Type"] = "application/x-protobuf"
        else:
            self.session.headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
        # The URL we post to carries no user info: exceptions that quote it cannot leak a password.
        if auth or url_auth:
            self.session.auth = auth or url_auth
        # Passed on every request, not set on the session: requests lets REQUESTS_CA_BUNDLE or
        # CURL_CA_BUNDLE override a session's verify, which would silently ignore --loki-ca-file.
        self.verify = verify

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
        """Send what is pending and wait until Loki acknowledged every batch; raise what failed."""
        for key in list(self.batches):
            self._submit(key)
        self._queue.join()
        self._raise()
        if self.out is None and self.stats.lines and self.stats.rejected >= self.stats.lines:
            raise PushError(f"Loki at {self.safe_url} accepted none of the {self.stats.lines} entries it was sent "
                            f"({self.first_reject}); not saving the checkpoint, so the next run sends them again")
        self._flushed = True

    def close(self) -> None:
        """Stop the sender. After a flush it is idle and ends at once; otherwise (a failure, SIGTERM) it
        may be waiting out a retry, and is not waited for: it sends nothing more."""
        self._stop.set()
        if self._worker.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            if self._flushed:
                self._worker.join()
        self.session.close()

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
                    self._ship(*item)
            except PushError as exc:
                self._error = exc
            except Exception as exc:  # surfaced in the main thread, never lost in this one
                self._error = PushError(f"pushing to {self.safe_url} failed: {type(exc).__name__}")
            finally:
                self._queue.task_done()
            if self._stop.is_set():
                return

    def _ship(self, tenant: str, batch: Batch) -> None:
        if self.out is not None:
            encoded = [_enc.encode(stream) for stream in batch.stream_objects()]
            self.out.write("".join(e.decode() + "\n" for e in encoded))
            self._count(batch, sum(map(len, encoded)), 0)
            return
        body = batch.payload(self.push_format)
        gz = _compress(body, self.push_format)
        resp = self._post(gz, tenant)
        status, text = resp.status_code, resp.text
        if status == 413 and batch.count > 1:
            for half in batch.split():
                self._ship(tenant, half)
            return
        if 200 <= status < 300:
            if text.strip():
                raise PushError(
                    f"Loki at {self.safe_url} answered {status} with a {resp.headers.get('Content-Type') or 'body'} "
                    "instead of 204 No Content, so nothing was acknowledged: is --loki-url a login page or a "
                    "proxy in front of Loki?")
            self._count(batch, len(body), len(gz))
            return
        if status == 400:
            verdict = read_400(text, batch.count)
            if verdict.request_reason:
                hint = ("turn off --structured-metadata, or allow it in Loki (limits_config.allow_structured_metadata)"
                        if _SM_DISALLOWED in verdict.request_reason else
                        "retrying cannot help; the checkpoint is not saved")
                raise PushError(f"Loki at {self.safe_url} refused the whole request (400): "
                                f"{one_line(verdict.request_reason, tenant=tenant)}; {hint}")
            self._count(batch, len(body), len(gz))
            self.stats.rejected += verdict.rejected
            self.first_reject = self.first_reject or one_line(text, tenant=tenant)
            log.warning("Loki rejected %d of %d entries (not retried): %s", verdict.rejected, batch.count,
                        one_line(text, 500, tenant))
            return
        if 300 <= status < 400:
            location = resp.headers.get("Location")
            where = shown_url(urljoin(self.url, location)) if location else "nowhere (no Location header)"
            raise PushError(f"Loki at {self.safe_url} answered {status}, a redirect to {where}; a push is never "
                            "sent on (the credentials and tenant are for the Loki you gave): set --loki-url to the "
                            "address that answers the push itself")
        if status == 413:
            raise PushError(f"Loki at {self.safe_url} refused a single entry as too large (413); "
                            "lower --max-line-bytes")
        if status in (401, 403):
            raise PushError(
                f"Loki at {self.safe_url} refused the push with {status}: {one_line(text, 200, tenant)}; "
                "check --tenant (and --tenant-map/--tenant-label), --loki-username/--loki-password or "
                "--loki-bearer-token-file"
            )
        if status == 404:
            raise PushError(f"Loki at {self.safe_url} answered 404: there is no push API at this URL; set "
                            f"--loki-url to Loki's base URL (e.g. http://loki-gateway.monitoring) or its full "
                            f"push URL ending in {PUSH_PATH}")
        raise PushError(f"Loki at {self.safe_url} answered {status}: {one_line(text, 200, tenant)}")

    def _count(self, batch: Batch, raw: int, sent: int) -> None:
        self.stats.batches += 1
        self.stats.lines += batch.count
        self.stats.bytes_raw += raw
        self.stats.bytes_sent += sent

    def _post(self, gz: bytes, tenant: str) -> requests.Response:
        """POST with retries on 429, 5xx and connection errors, within the retry budget.

        Not urllib3's Retry: it has no overall deadline and sleeps for any Retry-After a gateway
        sends, and a CronJob that hangs holds the Lease and blocks every later run.
        """
        deadline = self.clock.monotonic() + self.retry_budget
        attempt = 0
        while True:
            if self._stop.is_set():
                raise PushError("stopped before Loki acknowledged every batch")
            attempt += 1
            self.stats.requests += 1
            headers = {}
            if tenant:
                headers["X-Scope-OrgID"] = tenant
            if self.bearer_token_file:
                headers["Authorization"] = f"Bearer {self._token()}"
            retry_after: float | None = None
            try:
                resp = self.session.post(self.url, data=gz, headers=headers, timeout=(5.0, self.timeout),
                                         allow_redirects=False, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                raise PushError(f"TLS with Loki at {self.safe_url} failed ({_tls_reason(exc)}): a certificate "
                                "problem, not a network one, so it is not retried; pass the CA that signed Loki's "
                                "certificate with --loki-ca-file, or fix the certificate") from None
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
                raise PushError(f"cannot push to {self.safe_url}: {type(exc).__name__};"
                                " check the Loki settings") from None
            except requests.RequestException as exc:
                problem = f"cannot reach Loki at {self.safe_url}: {_short(exc)}"
            else:
                if resp.status_code != 429 and resp.status_code < 500:
                    return resp
                problem = f"Loki at {self.safe_url} answered {resp.status_code}: {one_line(resp.text, 200, tenant)}"
                retry_after = _retry_after(resp.headers.get("Retry-After"), self.clock.now())
            backoff = min(0.5 * 2 ** (attempt - 1), 30.0) * self.rng.uniform(0.5, 1.0)
            delay = max(backoff, retry_after or 0.0)
            if self.clock.monotonic() + delay > deadline:
                raise PushError(f"{problem}; gave up after {attempt} attempts within --retry-budget "
                                f"{self.retry_budget:g}s")
            log.warning("%s; retry %d in %.1fs", problem, attempt, delay)
            self.stats.retries += 1
            self.clock.wait(delay, self._stop)  # close() (SIGTERM) ends the wait, and no retry follows

    def _token(self) -> str:
        """The bearer token as the file holds it now; each one read becomes a secret the logs hide."""
        try:
            with open(self.bearer_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PushError(f"cannot read --loki-bearer-token-file {self.bearer_token_file}: "
                            f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        if self.redactor is not None:
            self.redactor.add(token)
        if not valid_token(token):
            raise PushError(f"--loki-bearer-token-file {self.bearer_token_file} holds an empty token or one with a "
                            "line break or control character inside; an HTTP header cannot carry it")
        return token


def _compress(body: bytes, push_format: str) -> bytes:
    if push_format == "protobuf":
        import cramjam  # only runs that push protobuf load it

        return bytes(cramjam.snappy.compress_raw(body))
    # Level 1: most of the ratio at a fraction of the CPU of the default level.
    return gzip.compress(body, compresslevel=1, mtime=0)


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


def _tls_reason(exc: Exception) -> str:
    """'certificate verify failed: self-signed certificate' out of requests' nested wrapper text."""
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^'\"()]+?)\s*(?:\(_ssl|['\")]|$)", text)
    if m:
        return f"certificate verify failed: {m.group(1).strip()}"
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\]", text)
    return m.group(1).lower().replace("_", " ") if m else "SSLError"


def _short(exc: Exception) -> str:
    """An exception's kind without its text: requests puts full URLs (with credentials) in it."""
    return type(exc).__name__
