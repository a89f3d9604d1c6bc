"""The HTTP side of a push: headers, compression, auth, bearer token files, TLS, and bounded retries."""
from __future__ import annotations

import gzip
import logging
import random
import re
import threading
from dataclasses import dataclass

import requests

from job import __version__
from job.clock import Clock
from job.cmd import valid_token
from job.logs import Redactor
from job.lokianswers import one_line, retry_after
from job.summary import Summary

log = logging.getLogger(__name__)


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
    split_requests: int = 0  # extra requests that split a batch Loki refused (413, an unknown 400)
    loki_truncated: int = 0  # lines cut to Loki's own max entry size and re-sent
    metadata_dropped: int = 0  # entries re-sent without the structured metadata Loki refused

    def count_into(self, s: Summary) -> None:
        s.lines, s.bytes, s.bytes_sent, s.rejected = self.lines, self.bytes_raw, self.bytes_sent, self.rejected
        s.pushes, s.retries, s.split_requests = self.requests, self.retries, self.split_requests
        s.loki_truncated, s.metadata_dropped = self.loki_truncated, self.metadata_dropped


class Transport:
    """POSTs a body to Loki until it answers something retrying cannot change, within the budget."""

    def __init__(self, url: str, safe_url: str, *, timeout: float, retry_budget: float,
                 auth: tuple[str, str] | None, bearer_token_file: str, verify: bool | str, clock: Clock,
                 rng: random.Random, redactor: Redactor | None, push_format: str, stats: PushStats,
                 stop: threading.Event) -> None:
        self.url, self.safe_url = url, safe_url
        self.timeout, self.retry_budget = timeout, retry_budget
        self.bearer_token_file = bearer_token_file
        self.clock, self.rng, self.redactor = clock, rng, redactor
        self.push_format, self.stats, self.stop = push_format, stats, stop
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"loki-event-sync/{__version__}"
        if push_format == "protobuf":  # snappy block-compressed, as Promtail and Alloy send it
            self.session.headers["Content-Type"] = "application/x-protobuf"
        else:
            self.session.headers.update({"Content-Type": "application/json", "Content-Encoding": "gzip"})
        # The URL we post to carries no user info: exceptions that quote it cannot leak a password.
        if auth:
            self.session.auth = auth
        # Passed on every request, not set on the session: requests lets REQUESTS_CA_BUNDLE or
        # CURL_CA_BUNDLE override a session's verify, which would silently ignore --loki-ca-file.
        self.verify = verify

    def post(self, body: bytes, tenant: str) -> tuple[requests.Response, int]:
        """(Loki's answer, the compressed size sent) with retries on 429, 5xx and connection errors.

        Not urllib3's Retry: it has no overall deadline and sleeps for any Retry-After a gateway
        sends, and a CronJob that hangs holds the Lease and blocks every later run.
        """
        data = compress(body, self.push_format)
        deadline = self.clock.monotonic() + self.retry_budget
        attempt = 0
        while True:
            if self.stop.is_set():
                raise PushError("stopped before Loki acknowledged every batch")
            attempt += 1
            self.stats.requests += 1
            wait: float | None = None
            try:
                resp = self.session.post(self.url, data=data, headers=self._headers(tenant),
                                         timeout=(5.0, self.timeout), allow_redirects=False, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                raise PushError(f"TLS with Loki at {self.safe_url} failed ({_tls_reason(exc)}): a certificate "
                                "problem, not a network one, so it is not retried; pass the CA that signed Loki's "
                                "certificate with --loki-ca-file, or fix the certificate") from None
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL) as exc:
                raise PushError(f"cannot push to {self.safe_url}: {type(exc).__name__};"
                                " check the Loki settings") from None
            except requests.RequestException as exc:
                problem = f"cannot reach Loki at {self.safe_url}: {type(exc).__name__}"  # its text may hold a URL
            else:
                if resp.status_code != 429 and resp.status_code < 500:
                    return resp, len(data)
                problem = f"Loki at {self.safe_url} answered {resp.status_code}: {one_line(resp.text, 200, tenant)}"
                wait = retry_after(resp.headers.get("Retry-After"), self.clock.now())
            backoff = min(0.5 * 2 ** (attempt - 1), 30.0) * self.rng.uniform(0.5, 1.0)
            delay = max(backoff, wait or 0.0)
            if self.clock.monotonic() + delay > deadline:
                raise PushError(f"{problem}; gave up after {attempt} attempts within --retry-budget "
                                f"{self.retry_budget:g}s")
            log.warning("%s; retry %d in %.1fs", problem, attempt, delay)
            self.stats.retries += 1
            self.clock.wait(delay, self.stop)  # close() (SIGTERM) ends the wait, and no retry follows

    def _headers(self, tenant: str) -> dict[str, str]:
        headers = {}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        if self.bearer_token_file:
            headers["Authorization"] = f"Bearer {self._token()}"
        return headers

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


def _tls_reason(exc: Exception) -> str:
    """'certificate verify failed: self-signed certificate' out of requests' nested wrapper text."""
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^'\"()]+?)\s*(?:\(_ssl|['\")]|$)", text)
    if m:
        return f"certificate verify failed: {m.group(1).strip()}"
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\]", text)
    return m.group(1).lower().replace("_", " ") if m else "SSLError"


def compress(body: bytes, push_format: str) -> bytes:
    if push_format == "protobuf":
        import cramjam  # only runs that push protobuf load it

        return bytes(cramjam.snappy.compress_raw(body))
    # Level 1: most of the ratio at a fraction of the CPU of the default level.
    return gzip.compress(body, compresslevel=1, mtime=0)
