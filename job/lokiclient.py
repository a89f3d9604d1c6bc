"""One Loki push: a batch becomes one acknowledged request, or a PushError saying why not.

What Loki answers, read from its source (pkg/distributor, pkg/validation/validate.go,
pkg/ingester/stream.go, pkg/util/errors.go; job/lokianswers.py reads the 400s) and what the job makes of it:

* ``204 No Content`` is a push Loki accepted. A 2xx with an empty body counts too (a proxy may turn
  204 into 200), but **a 2xx with a body is not an acknowledgement**: Loki never sends one to a push,
  while an ingress login page or an OAuth proxy does (``200 text/html``), and Loki 3.4+ answers a
  tenant whose ingestion is blocked with ``260`` and ``ingestion blocked for user ...``. The run fails.
* Redirects are never followed (``allow_redirects=False``; requests would re-POST a 307/308 with our
  headers): the credentials and the tenant go to the Loki given in ``--loki-url`` and nowhere else.
* ``400``: entries Loki refused one by one are counted and the run goes on; a line too long for Loki's
  ``max entry size 'N'`` is cut to N with the truncation marker and re-sent, structured metadata too
  large or too many is dropped and the entry re-sent; a reason every entry shares fails the run. A
  reason this module does not know is found out by splitting the batch down to single entries within
  ``SPLIT_BOUND`` extra requests: Loki drops what it already stored as duplicates, a single entry still
  refused is counted, and a refusal that every single entry gets fails the run.
* ``429``, ``5xx`` and connection errors are retried with backoff within ``--retry-budget``; a
  ``Retry-After`` is honoured. ``413`` splits the batch; for a single entry, and for TLS, ``401``/
  ``403`` and ``404``, the run fails at once with a hint.
"""
from __future__ import annotations

import logging
import random
import threading
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from job.batch import Batch
from job.clock import Clock
from job.cmd import redact_url, shown_url
from job.logs import Redactor
from job.lokianswers import SM_DISALLOWED, Verdict, blocked_until, one_line, read_400, shorten
from job.transport import PushError, PushStats, Transport

log = logging.getLogger(__name__)
PUSH_PATH = "/loki/api/v1/push"
# Extra requests one refused batch may cost to single out entries refused for an unknown reason:
# 2*log2(n) find one bad entry among n, so 64 single out a few among the ~2000 of a 1 MiB batch.
SPLIT_BOUND = 64


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


class LokiClient:
    """Sends one batch as one request and reads Loki's answer; knows nothing of batching or queues."""

    def __init__(self, url: str, *, timeout: float = 15.0, retry_budget: float = 120.0,
                 auth: tuple[str, str] | None = None, bearer_token_file: str = "", verify: bool | str = True,
                 clock: Clock | None = None, rng: random.Random | None = None, redactor: Redactor | None = None,
                 push_format: str = "json") -> None:
        self.url, self.form, url_auth = push_target(url)
        self.safe_url = redact_url(self.url)
        self.push_format = push_format
        self.stats = PushStats()
        self.first_reject = ""
        self._stop = threading.Event()
        self.http = Transport(self.url, self.safe_url, timeout=timeout, retry_budget=retry_budget,
                              auth=auth or url_auth, bearer_token_file=bearer_token_file, verify=verify,
                              clock=clock or Clock(), rng=rng or random.Random(), redactor=redactor,
                              push_format=push_format, stats=self.stats, stop=self._stop)

    def send(self, tenant: str, batch: Batch) -> None:
        """Deliver ``batch``: return once Loki acknowledged it (or refused entries one by one)."""
        splits = _Splits(SPLIT_BOUND)
        refused = self._deliver(tenant, batch, splits)
        self.stats.batches += 1
        self.stats.lines += batch.count
        if refused and refused >= batch.count and splits.used:
            raise PushError(f"Loki at {self.safe_url} refused the whole request (400): "
                            f"{one_line(splits.reason, tenant=tenant)}; every single entry got that refusal, "
                            "so retrying cannot help; the checkpoint is not saved")

    def finish(self) -> None:
        if self.stats.lines and self.stats.rejected >= self.stats.lines:
            raise PushError(f"Loki at {self.safe_url} accepted none of the {self.stats.lines} entries it was sent "
                            f"({self.first_reject}); not saving the checkpoint, so the next run sends them again")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.http.session.close()

    def _deliver(self, tenant: str, batch: Batch, splits: _Splits) -> int:
        """Push ``batch``; the number of its entries Loki refused for good."""
        body = batch.payload(self.push_format)
        resp, sent = self.http.post(body, tenant)
        status, text = resp.status_code, resp.text
        self.stats.bytes_raw += len(body)
        self.stats.bytes_sent += sent
        if status == 413 and batch.count > 1:
            return self._split(tenant, batch, splits, "")
        if 200 <= status < 300:
            if text.strip():
                raise PushError(self._not_acknowledged(status, resp.headers.get("Content-Type"), text))
            return 0
        if status == 400:
            return self._refused(tenant, batch, read_400(text, batch.count), text, splits)
        raise PushError(self._failure(status, text, resp.headers.get("Location"), tenant))

    def _refused(self, tenant: str, batch: Batch, verdict: Verdict, text: str, splits: _Splits) -> int:
        if verdict.request_reason:
            hint = ("turn off --structured-metadata, or allow it in Loki (limits_config.allow_structured_metadata)"
                    if SM_DISALLOWED in verdict.request_reason.lower() else
                    "retrying cannot help; the checkpoint is not saved")
            raise PushError(f"Loki at {self.safe_url} refused the whole request (400): "
                            f"{one_line(verdict.request_reason, tenant=tenant)}; {hint}")
        if verdict.unknown:
            if batch.count > 1:
                return self._split(tenant, batch, splits, verdict.unknown)
            verdict = Verdict(1)
        refused = verdict.rejected
        if verdict.mendable:
            refused -= self._mend(tenant, batch, verdict, splits)
        if refused:
            self.stats.rejected += refused
            self.first_reject = self.first_reject or one_line(text, tenant=tenant)
            log.warning("Loki rejected %d of %d entries (not retried): %s%s", refused, batch.count,
                        one_line(text, 500, tenant), _which(batch) if batch.count == 1 else "")
        return refused

    def _split(self, tenant: str, batch: Batch, splits: _Splits, reason: str) -> int:
        refused = 0
        for half in batch.split():
            if reason and not splits.take(reason):
                raise PushError(f"Loki at {self.safe_url} refused the request (400) for a reason this job does not "
                                f"know: {one_line(reason, tenant=tenant)}; {SPLIT_BOUND} extra requests did not "
                                "single out the entries it refuses; the checkpoint is not saved")
            self.stats.split_requests += 1
            refused += self._deliver(tenant, half, splits)
        return refused

    def _mend(self, tenant: str, batch: Batch, verdict: Verdict, splits: _Splits) -> int:
        """Re-send what Loki named a limit for, cut to fit: its count of entries that then landed."""
        mended = Batch()
        cut = stripped = 0
        for labels, (ts, line, md) in batch.entries():
            if verdict.line_limit and len(line.encode()) > verdict.line_limit:
                line, cut = shorten(line, verdict.line_limit), cut + 1
            elif md and (len(md) > verdict.metadata_count > 0 or
                         0 < verdict.metadata_bytes < sum(len(k.encode()) + len(v.encode()) for k, v in md.items())):
                md, stripped = None, stripped + 1
            else:
                continue
            mended.add(labels, ts, line, md)
        if not mended.count:
            return 0
        log.warning("Loki refused %d entries over its limits; re-sending %d cut to its max entry size and %d "
                    "without their structured metadata", verdict.mendable, cut, stripped)
        refused = self._deliver(tenant, mended, splits)
        if not refused:
            self.stats.loki_truncated += cut
            self.stats.metadata_dropped += stripped
        return mended.count - refused

    def _not_acknowledged(self, status: int, content_type: str | None, text: str) -> str:
        until = blocked_until(text)
        if until is not None:
            return (f"Loki at {self.safe_url} blocks ingestion for this tenant until {until} (answered {status}, "
                    "nothing stored); the checkpoint is not saved, so a run after that sends these events")
        return (f"Loki at {self.safe_url} answered {status} with a {content_type or 'body'} instead of 204 No "
                "Content, so nothing was acknowledged: is --loki-url a login page or a proxy in front of Loki?")

    def _failure(self, status: int, text: str, location: str | None, tenant: str) -> str:
        if 300 <= status < 400:
            where = shown_url(urljoin(self.url, location)) if location else "nowhere (no Location header)"
            return (f"Loki at {self.safe_url} answered {status}, a redirect to {where}; a push is never sent on "
                    "(the credentials and tenant are for the Loki you gave): set --loki-url to the address that "
                    "answers the push itself")
        if status == 413:
            return f"Loki at {self.safe_url} refused a single entry as too large (413); lower --max-line-bytes"
        if status in (401, 403):
            return (f"Loki at {self.safe_url} refused the push with {status}: {one_line(text, 200, tenant)}; "
                    "check --tenant (and --tenant-map/--tenant-label), --loki-username/--loki-password or "
                    "--loki-bearer-token-file")
        if status == 404:
            return (f"Loki at {self.safe_url} answered 404: there is no push API at this URL; set --loki-url to "
                    f"Loki's base URL (e.g. http://loki-gateway.monitoring) or its full push URL ending in {PUSH_PATH}")
        return f"Loki at {self.safe_url} answered {status}: {one_line(text, 200, tenant)}"


class _Splits:
    """The extra requests one batch's splitting may still make, and the unknown reason that started it."""

    def __init__(self, bound: int) -> None:
        self.left, self.used, self.reason = bound, 0, ""

    def take(self, reason: str) -> bool:
        self.reason = self.reason or reason
        if not self.left:
            return False
        self.left -= 1
        self.used += 1
        return True


def _which(batch: Batch) -> str:
    """A single refused entry by what finds it in Loki's terms: its stream and timestamp."""
    ((labels, (ts, _, _)),) = batch.entries()
    return f" (the entry at {ts} ns in {{{', '.join(f'{k}={v!r}' for k, v in labels)}}})"
