"""What Loki's answers mean, read by meaning: case-insensitively, by the parts that stayed stable.

Loki rewords its messages (grafana/loki #19206 lowercased them in 3.5.6/3.6 and dropped trailing
periods); docs/loki-facts.md has each supported line's exact strings (2.9, 3.0-3.5.5, 3.5.6 and 3.6+).
Every reason is matched on lowercased text by words all three lines share, so a future change of
case or punctuation does not turn a per-entry rejection into a failed run.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# The ingester's per-stream summary (2.9 and 3.x: "user 'T', total ignored: N out of M for stream: {...}").
_INGESTER_TOTAL = re.compile(r"total ignored: (\d+) out of \d+", re.I)
# util.GroupedErrors: "N errors like: MSG" joined by "; " (a lone message that occurred once has no prefix).
_GROUPED = re.compile(r"(?:^|; )(\d+) errors like: ", re.I)
# Refusals of one entry for what it is (validate.go, chunkenc): the run counts them and goes on.
ENTRY_REASONS = (
    "has timestamp too old",
    "has timestamp too new",
    "entry too far behind",
    "entry out of order",
)
# Refusals the job can mend and re-send (the limit is in the message in every line).
LINE_TOO_LONG = re.compile(r"max entry size '(\d+)' bytes exceeded", re.I)
METADATA_TOO_LARGE = re.compile(r"has structured metadata too large: '\d+' bytes, limit: '(\d+)' bytes", re.I)
METADATA_TOO_MANY = re.compile(r"has too many structured metadata labels: '\d+', limit: '(\d+)'", re.I)
# Refusals of the request for what every entry shares (labels, settings): re-sending cannot help.
SM_DISALLOWED = "includes structured metadata, but this feature is disallowed"
REQUEST_REASONS = (
    SM_DISALLOWED,
    "error parsing labels",
    "at least one label pair is required",
    "label names; limit",
    "has label name too long",
    "has label value too long",
    "has duplicate label name",
    "missing required labels",
    "ingestion blocked for user",
    "loghttp.pushrequest",
)
_TENANT_IN_BODY = re.compile(r"user '[^']*'")
_BLOCKED = re.compile(r"ingestion blocked for user '?[^' ]*'? (?:\(policy: '[^']*'\) )?until '([^']*)'", re.I)


@dataclass(frozen=True)
class Verdict:
    """A 400's meaning: entries Loki refused one by one, the limits it named, or why it refused it all.

    ``unknown`` holds a reason this module does not know: the sender finds out by splitting the batch.
    """

    rejected: int = 0
    request_reason: str = ""
    unknown: str = ""
    line_limit: int = 0  # Loki's max entry size, when it refused lines as too long
    metadata_bytes: int = 0  # Loki's structured-metadata limits, when it refused metadata
    metadata_count: int = 0
    mendable: int = 0  # how many of the refused entries those limits cover


def read_400(text: str, sent: int) -> Verdict:
    """Tell entry rejections (count them, go on) from request rejections (fail the run)."""
    totals = _INGESTER_TOTAL.findall(text)
    if totals:
        return Verdict(min(sum(map(int, totals)), sent))
    body = text.strip()
    if not body:
        return Verdict(request_reason="no reason given")
    groups = list(_GROUPED.finditer(body))
    if groups:
        messages = [(int(m.group(1)), body[m.end():groups[i + 1].start() if i + 1 < len(groups) else None])
                    for i, m in enumerate(groups)]
    else:
        messages = [(1, body)]
    rejected = mendable = line_limit = md_bytes = md_count = 0
    for n, message in messages:
        low = message.lower()
        if any(r in low for r in REQUEST_REASONS):
            return Verdict(request_reason=message)
        long, big, many = LINE_TOO_LONG.search(message), METADATA_TOO_LARGE.search(message), \
            METADATA_TOO_MANY.search(message)
        if long or big or many:
            line_limit = int(long.group(1)) if long else line_limit
            md_bytes = int(big.group(1)) if big else md_bytes
            md_count = int(many.group(1)) if many else md_count
            mendable += n
        elif not any(r in low for r in ENTRY_REASONS):
            return Verdict(unknown=message)
        rejected += n
    return Verdict(min(rejected, sent), line_limit=line_limit, metadata_bytes=md_bytes, metadata_count=md_count,
                   mendable=min(mendable, sent))


def blocked_until(text: str) -> str | None:
    """When Loki blocks a tenant's ingestion (3.4+), the time it says; its status code is configurable
    and 260 by default, a 2xx that stored nothing."""
    m = _BLOCKED.search(text)
    return m.group(1) if m else None


def one_line(text: str, limit: int = 300, tenant: str = "") -> str:
    """Loki's reason as one printable line, with the tenant it names taken out.

    Loki names the tenant as user '...'; a gateway may echo it anywhere, so the request's own tenant
    goes too, however short (the Redactor only hides secrets of 3 characters or more everywhere).
    """
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or "no reason given"
    if first.lstrip().startswith("<"):  # a gateway's HTML page: its title says what happened
        title = re.search(r"<title>\s*([^<]+?)\s*</title>", text, re.I | re.S)
        first = f"an HTML page ({title.group(1)})" if title else "an HTML page"
    first = _TENANT_IN_BODY.sub("user '***'", first)
    if tenant:
        first = re.sub(rf"(?<![A-Za-z0-9]){re.escape(tenant)}(?![A-Za-z0-9])", "***", first)
    return first if len(first) <= limit else first[:limit] + "..."


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After in seconds (a number or an HTTP date); Loki sends none, gateways may."""
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


def shorten(line: str, limit: int) -> str:
    """``line`` cut to at most ``limit`` UTF-8 bytes, its end replaced by the job's truncation marker.

    A JSON line keeps its shape: the longest string value is cut, so the line still parses.
    """
    raw = line.encode()
    if len(raw) <= limit:
        return line
    if line.startswith("{"):
        fitted = _shorten_json(line, limit)
        if fitted is not None:
            return fitted
    keep = max(limit - 40, 0)
    return raw[:keep].decode(errors="ignore") + f"…[truncated {len(raw) - keep} bytes]"


def _shorten_json(line: str, limit: int) -> str | None:
    import json

    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    strings = [k for k, v in doc.items() if isinstance(v, str)]
    if not strings:
        return None
    key = max(strings, key=lambda k: len(doc[k]))
    value = doc[key].encode()
    excess = len(line.encode()) - limit
    for _ in range(4):  # escaping changes the size a little; converge in a step or two
        keep = max(len(value) - excess - 64, 0)
        doc[key] = value[:keep].decode(errors="ignore") + f"…[truncated {len(value) - keep} bytes]"
        out = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        if len(out.encode()) <= limit:
            return out
        excess += len(out.encode()) - limit
    return None
