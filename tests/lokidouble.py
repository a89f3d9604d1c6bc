"""A fast, faithful, in-process test double of Grafana Loki's HTTP push and query_range API.

Standard library only, and cramjam for snappy. It follows docs/loki-facts.md, which was read from
Loki's source, and where that page is silent it follows Loki's source (pkg/loghttp/push,
pkg/distributor, pkg/ingester/stream.go):

* Deflate is *raw* RFC 1951 (Loki wraps the body in Go's ``compress/flate``), so a zlib-wrapped body
  (``zlib.compress``) is a 400, exactly as against a real Loki.
* ``Content-Encoding: snappy`` on JSON passes the body through untouched, as Loki does, so a snappy
  compressed JSON body fails to parse (400).
* Any Content-Type other than ``application/json`` is read as Loki reads it: a logproto.PushRequest in
  protobuf, compressed with snappy's *block* format (a framed-snappy or uncompressed body is a 400; the
  declared decoded length is checked against the body limit before decoding). Stream labels come as
  the ``{name="value", ...}`` text Loki parses. Decoding snappy needs cramjam.
* A 400 has Loki 3's two shapes: the distributor's validation errors (too old, too new, line too long,
  structured metadata disallowed or too large, label limits) as Go's ``util.GroupedErrors``
  (``N errors like: MSG; ...``, a lone message bare), or, when the ingester refused entries (too far
  behind, ``reject_matching``), its per-stream summary ``entry with timestamp T ignored, reason: '...',``
  lines and ``user 'T', total ignored: N out of M for stream: {...}``, which replaces the former (Loki's
  instance.Push returns the last stream's error). The valid entries of the request are stored.
* ``loki_version`` ("2.9", "3.0", "3.1" for 3.1.0-3.5.5, "3.6" for 3.5.6 and later; the default is the
  newest) picks whose words it answers with (``LOKI_TEXTS``, docs/loki-facts.md): grafana/loki #19206
  lowercased "Max entry size", "Error parsing labels", the rate and stream limits and dropped the
  structured-metadata messages' trailing periods; 2.9 has no structured-metadata limits. ``answer_next``
  sends that version's 429s (tenant rate, stream rate, stream limit) and 3.2+'s 260 for blocked
  ingestion; ``reject_matching(..., reason=)`` refuses entries with a text no client knows.
* ``allow_structured_metadata=False`` is ``limits_config.allow_structured_metadata: false``: every entry
  carrying metadata is refused. ``fail_next`` can also answer 2xx with a body or 3xx with a Location,
  ``tls=(cert, key)`` serves HTTPS, ``refuse_tenant`` makes the gateway refuse one tenant.
* Structural problems fail the whole request with nothing stored: bad JSON, a timestamp that is not a
  string of integer ns, an invalid label name, a non-string label value, structured metadata that is
  not an object of strings. Label *limits* (more than 15 names, name > 1024 or value > 2048 bytes) are
  checked per stream by Loki's distributor, so only that stream's entries are rejected (partial 400).
* The ingester drops an entry silently when it equals the stream's last accepted entry by timestamp,
  line and structured metadata (pkg/ingester/stream.go, labelsEqual), and checks ``too far behind``
  *before* its duplicate check: re-sending an entry older than newest-1h is a 400, not a silent duplicate.
* Structured metadata names are normalised the way the distributor does (``k8s.pod.name`` becomes
  ``k8s_pod_name``); more than 128 pairs or more than 64 KiB per entry is rejected.
* query_range answers Loki 3's default encoding: structured metadata is merged into the stream labels
  of the result. Send ``X-Loki-Response-Encoding-Flags: categorize-labels`` to get it as a third value
  element instead.
* Without ``tenant_required`` every request lands in Loki's single tenant ``fake`` (X-Scope-OrgID is
  ignored for storage but still recorded in ``tenants_seen``).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import socket
import threading
import time
import zlib
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from operator import itemgetter
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Entry", "LokiDouble"]

NS = 1_000_000_000
# Loki's defaults (pkg/validation/limits.go, pkg/ingester config).
REJECT_OLD_SAMPLES_MAX_AGE_NS = 7 * 24 * 3600 * NS
CREATION_GRACE_PERIOD_NS = 10 * 60 * NS
# Half of the ingester's max_chunk_age (2h) is the out-of-order window.
TOO_FAR_BEHIND_NS = 3600 * NS
MAX_LABEL_NAMES_PER_SERIES = 15
MAX_LABEL_NAME_LENGTH = 1024
MAX_LABEL_VALUE_LENGTH = 2048
MAX_STRUCTURED_METADATA_SIZE = 64 * 1024
MAX_STRUCTURED_METADATA_COUNT = 128
MAX_RETURNED_ERRORS = 10
DEFAULT_QUERY_LIMIT = 100
MAX_ENTRIES_LIMIT_PER_QUERY = 5000
DEFAULT_QUERY_SINCE_NS = 3600 * NS
FAKE_TENANT = "fake"
SERVICE_NAME = "service_name"
UNKNOWN_SERVICE = "unknown_service"
# Loki's default -validation.discover-service-name list, in its order.
DISCOVER_SERVICE_NAME: tuple[str, ...] = (
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
)
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json; charset=UTF-8"

# What each Loki line says, word for word (docs/loki-facts.md; pkg/validation/validate.go,
# pkg/chunkenc/interface.go, pkg/util/http.go at v2.9.17, v3.0.0, v3.1.0-v3.5.5, v3.5.6/v3.6.0+).
_SAME_ERR = ", reduce log volume or contact your Loki administrator to see if the limit can be increased"
_STREAMS = ("reduce the number of active streams (reduce labels or reduce label values), or contact your "
            "Loki administrator to see if the limit can be increased, user: '{tenant}'")
_TEXTS_29: dict[str, str] = {
    "line_too_long": "Max entry size '{limit}' bytes exceeded for stream '{stream}' while adding an entry with "
                     "length '{size}' bytes",
    "sm_disallowed": "stream '{stream}' includes structured metadata, but this feature is disallowed. Please see "
                     "`limits_config.structured_metadata` or contact your Loki administrator to enable it.",
    "sm_too_large": "", "sm_too_many": "",  # 2.9 has no structured-metadata limits
    "too_far_behind": "entry too far behind, oldest acceptable timestamp is: {cutoff}",
    "rate_limited": "Ingestion rate limit exceeded for user {tenant} (limit: {limit} bytes/sec) while attempting "
                    "to ingest '{lines}' lines totaling '{bytes}' bytes" + _SAME_ERR,
    "stream_limit": "Maximum active stream limit exceeded, " + _STREAMS,
    "invalid_labels": "Error parsing labels '{stream}' with error: {error}",
    "body_too_large": "http: request body too large",
}
_TEXTS_30 = dict(
    _TEXTS_29,
    sm_too_large="stream '{stream}' has structured metadata too large: '{size}' bytes, limit: '{limit}' bytes. "
                 "Please see `limits_config.structured_metadata_max_size` or contact your Loki administrator to "
                 "increase it.",
    sm_too_many="stream '{stream}' has too many structured metadata labels: '{size}', limit: '{limit}'. Please see "
                "`limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to "
                "increase it.",
)
_TEXTS_31 = dict(
    _TEXTS_30,
    sm_disallowed="stream '{stream}' includes structured metadata, but this feature is disallowed. Please see "
                  "`limits_config.allow_structured_metadata` or contact your Loki administrator to enable it.",
    sm_too_large=_TEXTS_30["sm_too_large"].replace("structured_metadata_max_size", "max_structured_metadata_size"),
    too_far_behind="entry too far behind, entry timestamp is: {ts}, oldest acceptable timestamp is: {cutoff}",
    stream_limit="Maximum active stream limit exceeded when trying to create stream {stream}, " + _STREAMS,
    blocked="ingestion blocked for user {tenant} until '{until}' with status code '{status}'",
)
# grafana/loki #19206 (Sept 2025, in 3.5.6 and 3.6.0): lowercased, trailing periods dropped.
_TEXTS_36 = dict(
    _TEXTS_31,
    line_too_long=_TEXTS_31["line_too_long"].replace("Max entry", "max entry"),
    sm_disallowed=_TEXTS_31["sm_disallowed"].rstrip("."),
    sm_too_large=_TEXTS_31["sm_too_large"].rstrip("."),
    sm_too_many=_TEXTS_31["sm_too_many"].rstrip("."),
    rate_limited=_TEXTS_31["rate_limited"].replace("Ingestion", "ingestion"),
    stream_limit=_TEXTS_31["stream_limit"].replace("Maximum", "maximum"),
    invalid_labels=_TEXTS_31["invalid_labels"].replace("Error", "error"),
    body_too_large="request body too large: {size} bytes, limit: {limit} bytes",
)
LOKI_TEXTS: dict[str, dict[str, str]] = {"2.9": _TEXTS_29, "3.0": _TEXTS_30, "3.1": _TEXTS_31, "3.6": _TEXTS_36}
LOKI_VERSIONS = tuple(LOKI_TEXTS)  # oldest first; "3.1" is 3.1.0-3.5.5, "3.6" is 3.5.6 and later
PER_STREAM_RATE_LIMITED = (  # the same in every line
    "Per stream rate limit exceeded (limit: {limit}/sec) while attempting to ingest for stream '{stream}' "
    "totaling {bytes}, consider splitting a stream via additional labels or contact your Loki administrator to "
    "see if the limit can be increased")

Labels = tuple[tuple[str, str], ...]
Metadata = tuple[tuple[str, str], ...]
_Stored = tuple[int, str, Metadata]


@dataclass(frozen=True)
class Entry:
    labels: dict[str, str]  # after Loki's processing (empty values dropped; service_name added)
    ts: int  # unix ns
    line: str
    metadata: dict[str, str]  # structured metadata, {} if none


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _InvalidLabels(Exception):
    """A label name Loki cannot parse: the whole request fails (the version's message is added later)."""

    def __init__(self, stream: str, error: str) -> None:
        super().__init__(error)
        self.stream, self.error = stream, error


@dataclass
class _Action:
    kind: str  # "fail" | "delay" | "drop"
    status: int = 0
    body: str = ""
    retry_after: str | None = None
    delay: float = 0.0
    content_type: str = _TEXT
    location: str | None = None


class _Stream:
    # Per-stream state mirrors the ingester's: the newest timestamp (for too_far_behind) and the last
    # accepted line (its cheap duplicate check), plus a set for Loki's head-block/query dedup.
    __slots__ = ("entries", "highest", "is_sorted", "key", "last_line", "last_ts", "seen", "tenant")

    def __init__(self, tenant: str, key: Labels) -> None:
        self.tenant = tenant
        self.key = key
        self.entries: list[_Stored] = []
        self.seen: set[_Stored] = set()
        self.highest: int | None = None
        self.last_ts: int | None = None
        self.last_line: tuple[str, Metadata] | None = None  # with its structured metadata
        self.is_sorted = True

    def sorted_entries(self) -> list[_Stored]:
        # Appends are O(1); out-of-order pushes are rare, so sort only when somebody reads.
        if not self.is_sorted:
            self.entries.sort(key=itemgetter(0))
            self.is_sorted = True
        return self.entries


# ---------------------------------------------------------------------------------------------
# Formatting helpers that reproduce Go's output, so error bodies read like Loki's.

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _go_time_string(ns: int) -> str:
    """Go's time.Time.String() for a UTC time: what Loki puts in 'entry with timestamp X'."""
    secs, frac = divmod(ns, NS)
    text = (_EPOCH + timedelta(seconds=secs)).strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


def _rfc3339(ns: int) -> str:
    return (_EPOCH + timedelta(seconds=ns // NS)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels_string(key: Labels) -> str:
    """Prometheus labels.Labels.String(): `{a="b", c="d"}`."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in key) + "}"


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _normalize_metadata_name(name: str) -> str:
    """Prometheus otlptranslator.NormalizeLabel, which Loki's distributor applies to metadata names."""
    if not name:
        return name
    if _LABEL_NAME_RE.fullmatch(name) and (name[0] != "_" or name[:2] == "__"):
        return name  # the common case: already a valid name, nothing to rewrite
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if name[0].isdigit():
        return "key_" + name
    if name[0] == "_" and name[:2] != "__":
        return "key" + name
    return name


def _grouped_errors(messages: list[str]) -> str:
    """Loki's util.GroupedErrors.Error(): 'N errors like: MSG' per distinct message, joined by '; '.

    A single message that occurred once is returned bare.
    """
    counts: dict[str, int] = {}
    for message in messages:
        counts[message] = counts.get(message, 0) + 1
    if len(counts) == 1 and len(messages) == 1:
        return messages[0]
    return "; ".join(f"{n} errors like: {message}" for message, n in counts.items())


# ---------------------------------------------------------------------------------------------
# Request decoding.


def _inflate(data: bytes, encoding: str, limit: int, too_large: str) -> bytes:
    """Decompress like Go's gzip (multi-member) / flate (raw) readers, refusing to exceed `limit`."""
    if encoding in ("", "snappy"):
        if len(data) > limit:
            raise _HTTPError(413, too_large.format(size=len(data), limit=limit))
        return data
    out = bytearray()
    rest = data
    first = True
    while first or rest:
        first = False
        # wbits 31 = gzip container; -15 = raw deflate, which is what Go's flate.NewReader reads.
        inflater = zlib.decompressobj(31 if encoding == "gzip" else -15)
        try:
            # max_length keeps a decompression bomb from allocating more than the limit.
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise _HTTPError(400, f"{encoding}: invalid data: {exc}") from None
        if len(out) > limit:
            raise _HTTPError(413, too_large.format(size=len(out), limit=limit))
        if not inflater.eof:
            raise _HTTPError(400, "unexpected EOF")
        if encoding != "gzip":
            break  # flate stops at the final block and ignores what follows
        rest = inflater.unused_data
    return bytes(out)


def _parse_metadata(raw: Any, names: dict[str, str]) -> Metadata:
    """Structured metadata as a sorted tuple; `names` caches normalised names across a request."""
    if type(raw) is not dict:
        raise _HTTPError(400, "Value looks like object, but can't find closing '}' symbol")
    if not raw:
        return ()
    items: list[tuple[str, str]] = []
    renamed = False
    for name, value in raw.items():
        if type(value) is not str:
            raise _HTTPError(400, "Value is not a string")
        normal = names.get(name)
        if normal is None:
            normal = names[name] = _normalize_metadata_name(name)
        if normal != name:
            renamed = True
        items.append((normal, value))
    if renamed:  # two names may now collide; the later one wins, as in a Go map
        return tuple(sorted(dict(items).items()))
    items.sort()
    return tuple(items)


def _parse_push(doc: Any) -> list[tuple[dict[str, str], list[_Stored]]]:
    """Parse a push body into (labels, entries) per stream; any structural error fails it all."""
    if type(doc) is not dict:
        raise _HTTPError(400, "loghttp.PushRequest: ReadObject: expect { or n")
    streams = doc.get("streams")
    if streams is None:
        return []
    if type(streams) is not list:
        raise _HTTPError(400, "loghttp.PushRequest.Streams: ReadArray: expect [ or n")
    parsed: list[tuple[dict[str, str], list[_Stored]]] = []
    names: dict[str, str] = {}
    for stream in streams:
        if type(stream) is not dict:
            raise _HTTPError(400, "loghttp.PushRequest.Streams: ReadObject: expect { or n")
        raw_labels = stream.get("stream")
        if raw_labels is None:
            raw_labels = {}
        if type(raw_labels) is not dict:
            raise _HTTPError(400, "loghttp.Stream.stream: expect object")
        labels: dict[str, str] = {}
        for name, value in raw_labels.items():
            if type(value) is not str:
                raise _HTTPError(400, f"loghttp.LabelSet: label {name!r} value is not a string")
            if not _LABEL_NAME_RE.fullmatch(name):
                raise _InvalidLabels(_labels_string(tuple(sorted((str(k), str(v)) for k, v in raw_labels.items()))),
                                     f"1:2: parse error: unexpected character in label name {name!r}")
            if value:  # Loki's ParseLabels drops empty values: they equal an absent label
                labels[name] = value
        if SERVICE_NAME not in labels:
            labels[SERVICE_NAME] = next(
                (labels[n] for n in DISCOVER_SERVICE_NAME if n in labels), UNKNOWN_SERVICE
            )
        values = stream.get("values")
        if values is None:
            values = []
        if type(values) is not list:
            raise _HTTPError(400, "loghttp.Stream.values: expect array")
        entries: list[_Stored] = []
        append = entries.append
        for value in values:
            if type(value) is not list:
                raise _HTTPError(400, "loghttp.Entry: expect array")
            size = len(value)
            if size == 2:
                ts_text, line = value
                meta: Metadata = ()
            elif size == 3:
                ts_text, line, raw_meta = value
                meta = _parse_metadata(raw_meta, names)
            else:
                raise _HTTPError(400, f"loghttp.Entry: expected 2 or 3 elements, got {size}")
            if type(ts_text) is not str:
                raise _HTTPError(400, "loghttp.Entry: timestamp must be a string of unix nanoseconds")
            if type(line) is not str:
                raise _HTTPError(400, "loghttp.Entry: line must be a string")
            # isdigit() alone admits non-ASCII digits; Go's ParseInt does not.
            if (ts_text.isascii() and ts_text.isdigit()) or (
                len(ts_text) > 1
                and ts_text[0] in "+-"
                and ts_text[1:].isascii()
                and ts_text[1:].isdigit()
            ):
                ts = int(ts_text)
            else:
                raise _HTTPError(400, f'strconv.ParseInt: parsing "{ts_text}": invalid syntax')
            if ts > _INT64_MAX or ts < _INT64_MIN:
                raise _HTTPError(400, f'strconv.ParseInt: parsing "{ts_text}": value out of range')
            append((ts, line, meta))
        parsed.append((labels, entries))
    return parsed


def _unsnappy(data: bytes, limit: int) -> bytes:
    """Snappy *block* format (golang/snappy Decode, as Loki's util.ParseProtoReader uses it), bounded
    by the decoded length the block declares up front, before anything is allocated."""
    import cramjam

    try:
        size, _ = _read_varint(data, 0)
    except IndexError:
        raise _HTTPError(400, "snappy: corrupt input") from None
    if size > limit:
        raise _HTTPError(413, f"received message larger than max ({size} vs {limit})")
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception:  # cramjam raises its own DecompressionError
        raise _HTTPError(400, "snappy: corrupt input") from None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _HTTPError(400, "proto: integer overflow")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one protobuf message: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    try:
        while pos < len(data):
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _read_varint(data, pos)
                out.append((number, value))
            elif wire == 2:
                length, pos = _read_varint(data, pos)
                if pos + length > len(data):
                    raise _HTTPError(400, "proto: unexpected EOF")
                out.append((number, data[pos:pos + length]))
                pos += length
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                raise _HTTPError(400, f"proto: illegal wireType {wire}")
    except IndexError:
        raise _HTTPError(400, "proto: unexpected EOF") from None
    return out


def _parse_labels_text(text: str) -> dict[str, str]:
    """Loki's syntax.ParseLabels for a stream's labels string: {name="value", ...}."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        raise _InvalidLabels(text, f"1:1: parse error: unexpected input {text[:40]!r}")
    labels: dict[str, str] = {}
    pos, inner = 0, stripped[1:-1]
    while inner[pos:].strip():
        m = _MATCHER_RE.match(inner, pos)
        if m is None or m.group(2) != "=":
            raise _InvalidLabels(text, f"1:{pos + 2}: parse error: unexpected character")
        name, _, token = m.groups()
        value = _go_unquote(token)
        if value:  # empty values are dropped, as in the JSON path
            labels[name] = value
        pos = m.end()
        if pos < len(inner) and inner[pos] == ",":
            pos += 1
    return labels


def _parse_protobuf_push(data: bytes) -> list[tuple[dict[str, str], list[_Stored]]]:
    """logproto.PushRequest -> (labels, entries) per stream, like _parse_push for JSON."""
    parsed: list[tuple[dict[str, str], list[_Stored]]] = []
    names: dict[str, str] = {}
    for number, stream in _fields(data):
        if number != 1 or not isinstance(stream, bytes):
            continue
        labels_text = ""
        entries: list[_Stored] = []
        for field, value in _fields(stream):
            if field == 1 and isinstance(value, bytes):
                labels_text = value.decode("utf-8", "replace")
            elif field == 2 and isinstance(value, bytes):
                seconds = nanos = 0
                line = ""
                meta: dict[str, str] = {}
                for f, v in _fields(value):
                    if f == 1 and isinstance(v, bytes):
                        for tf, tv in _fields(v):
                            if tf == 1 and isinstance(tv, int):
                                seconds = tv - (1 << 64) if tv >= 1 << 63 else tv
                            elif tf == 2 and isinstance(tv, int):
                                nanos = tv
                    elif f == 2 and isinstance(v, bytes):
                        line = v.decode("utf-8", "replace")
                    elif f == 3 and isinstance(v, bytes):
                        pair = dict(_fields(v))
                        name, val = pair.get(1, b""), pair.get(2, b"")
                        if isinstance(name, bytes) and isinstance(val, bytes):
                            meta[name.decode("utf-8", "replace")] = val.decode("utf-8", "replace")
                entries.append((seconds * NS + nanos, line, _parse_metadata(meta, names)))
        labels = _parse_labels_text(labels_text)
        if SERVICE_NAME not in labels:
            labels[SERVICE_NAME] = next((labels[n] for n in DISCOVER_SERVICE_NAME if n in labels), UNKNOWN_SERVICE)
        parsed.append((labels, entries))
    return parsed


def _label_limit_error(key: Labels, text: str) -> str | None:
    """The distributor's ValidateLabels; service_name does not count towards the 15 names."""
    count = len(key) - (1 if any(k == SERVICE_NAME for k, _ in key) else 0)
    if count > MAX_LABEL_NAMES_PER_SERIES:
        return f"entry for stream '{text}' has {count} label names; limit {MAX_LABEL_NAMES_PER_SERIES}"
    for name, value in key:
        if _utf8_len(name) > MAX_LABEL_NAME_LENGTH:
            return f"stream '{text}' has label name too long: '{name}'"
        if _utf8_len(value) > MAX_LABEL_VALUE_LENGTH:
            return f"stream '{text}' has label value too long: '{value}'"
    return None


# ---------------------------------------------------------------------------------------------
# LogQL stream selectors (no pipeline).

_MATCHER_RE = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*""",
    re.S,
)
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'",
}


def _go_unquote(token: str) -> str:
    if token[0] == "`":
        return token[1:-1]

    def unescape(match: re.Match[str]) -> str:
        esc = match.group(1)
        if esc in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[esc]
        if esc[0] in "xuU":
            return chr(int(esc[1:], 16))
        if esc[0] in "01234567" and len(esc) == 3:
            return chr(int(esc, 8))
        raise _HTTPError(400, f"parse error : invalid escape sequence \\{esc}")

    return _ESCAPE_RE.sub(unescape, token[1:-1])


@dataclass(frozen=True)
class _Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None  # Prometheus anchors regex matchers
        return hit if self.op == "=~" else not hit


def _parse_selector(query: str) -> list[_Matcher]:
    text = query.strip()
    if not text.startswith("{"):
        raise _HTTPError(400, "parse error : queries must start with a stream selector {...}")
    pos = 1
    matchers: list[_Matcher] = []
    while True:
        rest = text[pos:].lstrip()
        if rest.startswith("}"):
            break  # anything after the selector (a pipeline) is ignored on purpose
        match = _MATCHER_RE.match(text, pos)
        if match is None:
            raise _HTTPError(400, f"parse error at col {pos + 1}: syntax error in stream selector")
        name, op, token = match.groups()
        value = _go_unquote(token)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value, re.S)
            except re.error as exc:
                raise _HTTPError(400, f"parse error : error parsing regexp: {exc}") from None
        matchers.append(_Matcher(name, op, value, regex))
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "}":
            break
        raise _HTTPError(400, f"parse error at col {pos + 1}: syntax error: unexpected character")
    if not matchers:
        raise _HTTPError(400, "parse error : syntax error: unexpected }, expecting IDENTIFIER")
    if all(m.matches("") for m in matchers):
        raise _HTTPError(
            400,
            "parse error : queries require at least one regexp or equality matcher that does not "
            'have an empty-compatible value. For instance, app=~".*" does not meet this requirement, '
            'but app=~".+" will',
        )
    return matchers


_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)


def _parse_query_time(value: str | None, default: int) -> int:
    """Loki's parseTimestamp: float seconds, int seconds (<= 10 digits) or ns, or RFC3339Nano."""
    if value is None or value == "":
        return default
    if "." in value:
        try:
            seconds = Decimal(value)
            # Loki rounds the fraction to milliseconds.
            whole = int(seconds)
            frac = round((seconds - whole) * 1000) / Decimal(1000)
            return whole * NS + int(frac * NS)
        except (InvalidOperation, ValueError):
            pass
    if re.fullmatch(r"[+-]?\d+", value):
        number = int(value)
        return number * NS if len(value) <= 10 else number
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise _HTTPError(400, f'invalid timestamp: cannot parse "{value}" to a valid timestamp')
    year, month, day, hour, minute, second, frac_text, zone = match.groups()
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    seconds_since = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds_since * NS + (int((frac_text or "0").ljust(9, "0")) if frac_text else 0)


# ---------------------------------------------------------------------------------------------
# HTTP plumbing.


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, double: LokiDouble) -> None:
        self.double = double
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are the point of several tests: stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "loki-double"
    sys_version = ""
    # Headers and body go out in one write, and Nagle would still add 40 ms per keep-alive answer.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- I/O -----------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _HTTPError(400, "malformed chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _HTTPError(400, "invalid Content-Length") from None
        if length < 0:
            raise _HTTPError(400, "invalid Content-Length")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _HTTPError(400, "unexpected EOF")
        return body

    def _send(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str = _TEXT,
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [f"HTTP/1.1 {status} {phrase}", f"Date: {self.date_time_string()}"]
        if status == 204 or 100 <= status < 200 or status == 304:
            body = b""  # RFC 9110: no body and no Content-Length, as Go's net/http answers
        else:
            head.append(f"Content-Type: {content_type}")
            head.append(f"Content-Length: {len(body)}")
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}")
        if self.close_connection:
            head.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _error(self, exc: _HTTPError) -> None:
        extra = {}
        if exc.status == 401 and exc.message == "Unauthorized":
            extra["WWW-Authenticate"] = 'Basic realm="loki"'
        self._send(exc.status, exc.message + "\n", headers=extra)

    # -- routing -------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except _HTTPError as exc:
            self.close_connection = True  # framing is lost: the rest of the stream is garbage
            self._error(exc)
            return
        path = urlsplit(self.path).path
        double = self.server.double
        try:
            if path == "/loki/api/v1/push":
                if method != "POST":
                    raise _HTTPError(405, "method not allowed")
                self._push(double, body)
            elif path == "/loki/api/v1/query_range":
                if method != "GET":
                    raise _HTTPError(405, "method not allowed")
                status, payload = double._query_range(self.path, self.headers)
                self._send(status, payload, _JSON)
            elif path == "/ready":
                self._send(200, "ready")
            else:
                raise _HTTPError(404, "404 page not found")
        except _HTTPError as exc:
            self._error(exc)
        except Exception as exc:  # a bug in the double must not look like a hung Loki
            self._send(500, f"loki double internal error: {exc!r}\n")

    def _push(self, double: LokiDouble, body: bytes) -> None:
        action = double._begin_push(len(body), self.headers.get("X-Scope-OrgID"))
        if action is not None and action.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if action is not None and action.kind == "fail":
            if action.delay:
                time.sleep(action.delay)
            extra = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
            if action.location is not None:
                extra["Location"] = action.location
            self._send(action.status, action.body, action.content_type, headers=extra)
            return
        try:
            status, text = double._push(self.headers, body)
        except _HTTPError as exc:
            status, text = exc.status, exc.message + "\n"
        if action is not None and action.kind == "delay":
            # Stored already, answered late: like a Loki that wrote the data but whose reply the
            # client never saw.
            time.sleep(action.delay)
        if status == 401 and text == "Unauthorized\n":
            self._send(status, text, headers={"WWW-Authenticate": 'Basic realm="loki"'})
        else:
            self._send(status, text)

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


# ---------------------------------------------------------------------------------------------


class LokiDouble:
    """A Loki on 127.0.0.1 that stores what it accepts and lets tests inject failures."""

    def __init__(
        self,
        *,
        tenant_required: bool = False,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        now_ns: Callable[[], int] | None = None,
        max_line_bytes: int = 256 * 1024,
        max_body_bytes: int = 6 * 1024 * 1024,
        allow_structured_metadata: bool = True,
        tls: tuple[str, str] | None = None,
        loki_version: str = LOKI_VERSIONS[-1],
        record_received: bool = False,
    ) -> None:
        if loki_version not in LOKI_TEXTS:
            raise ValueError(f"loki_version {loki_version!r}: one of {', '.join(LOKI_VERSIONS)}")
        self.loki_version = loki_version  # whose messages it answers with, word for word
        self.texts = LOKI_TEXTS[loki_version]
        self.tenant_required = tenant_required
        # limits_config.allow_structured_metadata (true by default since Loki 3.0).
        self.allow_structured_metadata = allow_structured_metadata
        self.tls = tls  # (certificate file, key file): serve HTTPS
        self.basic_auth = basic_auth
        self.bearer_token = bearer_token
        self.now_ns: Callable[[], int] = now_ns or time.time_ns
        self.max_line_bytes = max_line_bytes
        self.max_body_bytes = max_body_bytes
        self.max_metadata_bytes = MAX_STRUCTURED_METADATA_SIZE
        self.max_metadata_count = MAX_STRUCTURED_METADATA_COUNT
        self.url: str = ""
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._streams: dict[tuple[str, Labels], _Stream] = {}
        self._actions: list[_Action] = []
        self._reject_substrings: list[str] = []
        self._refuse_reasons: list[tuple[str, str]] = []
        self._refused_tenants: dict[str, int] = {}
        self.media_types: list[str] = []  # Content-Type of each push that got past auth
        self.pushes = 0
        self.accepted_entries = 0
        self.rejected_entries = 0
        self.duplicate_entries = 0
        self.bytes_received = 0
        self.tenants_seen: set[str] = set()
        # With record_received, every entry that reached ingestion, stored or refused, labels as sent:
        # what a client pushed, for a test that holds it against what Loki kept.
        self.record_received = record_received
        self.received: list[Entry] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LokiDouble:
        if self._server is not None:
            return self
        server = _Server(self)
        port = server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        if self.tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{port}"
        self._server = server
        # stop() waits out one poll interval; test suites start and stop a double per test.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="loki-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        # Idle keep-alive connections would otherwise pin their handler threads and leave clients
        # with a pooled socket to a dead server.
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LokiDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        body: str = "injected",
        delay: float = 0.0,
        content_type: str = _TEXT,
        location: str | None = None,
    ) -> None:
        """The next `times` pushes answer `status` (after `delay` s) and store nothing.

        Not only failures: `fail_next(200, body="<html>...")` is a login page answering for Loki, and
        `location=` makes a 3xx a redirect.
        """
        with self._lock:
            self._actions.extend(
                _Action("fail", status=status, body=body, retry_after=retry_after, delay=delay,
                        content_type=content_type, location=location)
                for _ in range(times)
            )

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next `times` pushes are processed (and stored) normally, then answered `seconds` late."""
        with self._lock:
            self._actions.extend(_Action("delay", delay=seconds) for _ in range(times))

    def drop_connection_next(self, times: int = 1) -> None:
        """The next `times` pushes are read, not stored, and the socket is closed with no answer."""
        with self._lock:
            self._actions.extend(_Action("drop") for _ in range(times))

    def reject_matching(self, substring: str, reason: str | None = None) -> None:
        """Entries whose line contains `substring` are rejected as invalid (partial 400).

        Without `reason` the ingester refuses them (its per-stream summary); with one the distributor
        does, saying `reason` (``{stream}`` is replaced by the stream): a message no client knows yet.
        """
        with self._lock:
            if reason is None:
                self._reject_substrings.append(substring)
            else:
                self._refuse_reasons.append((substring, reason))

    def answer_next(self, kind: str, times: int = 1, *, retry_after: str | None = None) -> None:
        """The next `times` pushes get this version's answer for `kind`, storing nothing: ``rate_limited``,
        ``per_stream_rate_limited`` or ``stream_limit`` (429), ``blocked`` (260, Loki 3.1+'s
        block_ingestion_status_code default)."""
        text = PER_STREAM_RATE_LIMITED if kind == "per_stream_rate_limited" else self.texts[kind]
        status = 260 if kind == "blocked" else 429
        body = text.format(tenant=FAKE_TENANT, limit=4194304, lines=1000, bytes=9437184, stream='{job="x"}',
                           until="2030-01-01T00:00:00Z", status=status) + "\n"
        self.fail_next(status, times, retry_after=retry_after, body=body)

    def clear_injected(self) -> None:
        """Forget the injected answers no push has used yet (fail_next, delay_next, ...)."""
        with self._lock:
            self._actions.clear()

    def reset(self) -> None:
        with self._lock:
            self._streams.clear()
            self._actions.clear()
            self.received = []
            self._reject_substrings.clear()
            self._refuse_reasons.clear()
            self._refused_tenants.clear()
            self.media_types = []
            self.pushes = 0
            self.accepted_entries = 0
            self.rejected_entries = 0
            self.duplicate_entries = 0
            self.bytes_received = 0
            self.tenants_seen = set()

    # -- inspection ----------------------------------------------------------------------------

    def _sorted_streams(self) -> list[_Stream]:
        return sorted(self._streams.values(), key=lambda s: (s.key, s.tenant))

    def entries(self, tenant: str | None = None) -> list[Entry]:
        """Everything stored (in one tenant's store, if given), ordered by stream labels, then timestamp
        (ties in arrival order)."""
        with self._lock:
            return [
                Entry(dict(stream.key), ts, line, dict(meta))
                for stream in self._sorted_streams()
                if tenant is None or stream.tenant == tenant
                for ts, line, meta in stream.sorted_entries()
            ]

    def lines_by_stream(self) -> dict[tuple[tuple[str, str], ...], list[tuple[int, str]]]:
        with self._lock:
            result: dict[Labels, list[tuple[int, str]]] = {}
            for stream in self._sorted_streams():
                result.setdefault(stream.key, []).extend((ts, line) for ts, line, _ in stream.sorted_entries())
            if len(result) != len(self._streams):  # same labels under several tenants: re-sort merged
                for lines in result.values():
                    lines.sort(key=itemgetter(0))
            return result

    # -- request handling (called from handler threads) ---------------------------------------

    def _begin_push(self, body_len: int, tenant: str | None) -> _Action | None:
        with self._lock:
            self.pushes += 1
            self.bytes_received += body_len
            if tenant:
                self.tenants_seen.add(tenant)
            return self._actions.pop(0) if self._actions else None

    def _check_auth(self, header: str | None) -> None:
        """Emulates the auth gateway in front of Loki (Loki itself does no auth)."""
        if self.basic_auth is None and self.bearer_token is None:
            return
        if header:
            scheme, _, credentials = header.strip().partition(" ")
            credentials = credentials.strip()
            if self.basic_auth is not None and scheme.lower() == "basic":
                expected = base64.b64encode(
                    f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()
                ).decode("ascii")
                if hmac.compare_digest(credentials.encode(), expected.encode()):
                    return
            if (self.bearer_token is not None and scheme.lower() == "bearer"
                    and hmac.compare_digest(credentials.encode(), self.bearer_token.encode())):
                return
        raise _HTTPError(401, "Unauthorized")

    def refuse_tenant(self, tenant: str, status: int = 403) -> None:
        """Pushes for `tenant` get `status` from the gateway (a token not allowed to write there)."""
        with self._lock:
            self._refused_tenants[tenant] = status

    def _tenant(self, header: str | None) -> str:
        if not self.tenant_required:
            return FAKE_TENANT  # auth_enabled: false puts everything in tenant "fake"
        if not header:
            raise _HTTPError(401, "no org id")
        with self._lock:
            refused = self._refused_tenants.get(header)
        if refused:
            raise _HTTPError(refused, f"tenant {header!r} is not allowed for this credential")
        return header

    def _push(self, headers: Any, body: bytes) -> tuple[int, str]:
        self._check_auth(headers.get("Authorization"))
        tenant = self._tenant(headers.get("X-Scope-OrgID"))
        encoding = headers.get("Content-Encoding", "")
        if encoding not in ("", "gzip", "deflate", "snappy"):
            raise _HTTPError(400, f'Content-Encoding "{encoding}" not supported')
        content_type = headers.get("Content-Type")
        if not content_type or not content_type.split(";", 1)[0].strip():
            raise _HTTPError(400, "mime: no media type")
        media_type = content_type.split(";", 1)[0].strip().lower()
        with self._lock:
            self.media_types.append(media_type)
        data = _inflate(body, encoding, self.max_body_bytes, self.texts["body_too_large"])
        try:
            if media_type == "application/json":
                try:
                    doc = json.loads(data)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise _HTTPError(400, f"loghttp.PushRequest: ReadObject: {exc}") from None
                parsed = _parse_push(doc)
            else:
                # Loki's default branch: any other Content-Type is a snappy-block-compressed
                # logproto.PushRequest (what Promtail and Alloy send as application/x-protobuf).
                parsed = _parse_protobuf_push(_unsnappy(data, self.max_body_bytes))
        except _InvalidLabels as exc:
            raise _HTTPError(400, self.texts["invalid_labels"].format(stream=exc.stream, error=exc.error)) from None
        if not parsed:
            raise _HTTPError(422, "error at least one valid stream is required for ingestion")
        return self._ingest(tenant, parsed, self.now_ns())

    def _ingest(self, tenant: str, parsed: list[tuple[dict[str, str], list[_Stored]]], now: int) -> tuple[int, str]:
        # Two stages, as in Loki 3. The distributor validates every entry first and collects what it
        # refuses in a util.GroupedErrors (messages in order of first occurrence here; Go's map order is
        # random). The ingester then appends the valid entries stream by stream; a stream with refused
        # entries answers with its own summary, and instance.Push returns the last such error, which
        # replaces the distributor's. Either way the valid entries of the request are stored.
        validation: list[str] = []
        ingester_error: str | None = None
        rejected = 0

        def invalid(message: str) -> None:
            nonlocal rejected
            rejected += 1
            validation.append(message)

        oldest = now - REJECT_OLD_SAMPLES_MAX_AGE_NS
        newest = now + CREATION_GRACE_PERIOD_NS
        max_line = self.max_line_bytes
        quick_line = max_line // 4  # a str this short cannot exceed max_line UTF-8 bytes
        allow_metadata = self.allow_structured_metadata
        texts = self.texts
        accepted = duplicates = 0
        with self._lock:
            if self.record_received:
                self.received += [Entry(dict(labels), ts, line, dict(md or {}))
                                  for labels, entries in parsed for ts, line, md in entries]
            patterns = tuple(self._reject_substrings)
            refusals = tuple(self._refuse_reasons)
            streams = self._streams
            for labels, entries in parsed:
                if not entries:
                    continue
                key: Labels = tuple(sorted(labels.items()))
                text = _labels_string(key)
                label_error = _label_limit_error(key, text)
                if label_error is not None:
                    # parseStreamLabels fails once for the stream, and drops all of its entries.
                    validation.append(label_error)
                    rejected += len(entries)
                    continue
                # Distributor: ValidateEntry, in Loki's order.
                valid: list[_Stored] = []
                for item in entries:
                    ts, line, meta = item
                    if ts < oldest:
                        invalid(f"entry for stream '{text}' has timestamp too old: {_rfc3339(ts)}, "
                                f"oldest acceptable timestamp is: {_rfc3339(oldest)}")
                        continue
                    if ts > newest:
                        invalid(f"entry for stream '{text}' has timestamp too new: {_rfc3339(ts)}")
                        continue
                    refusal = next((r for p, r in refusals if p in line), None) if refusals else None
                    if refusal is not None:
                        invalid(refusal.replace("{stream}", text))
                        continue
                    if len(line) > quick_line:
                        size = _utf8_len(line)
                        if size > max_line:
                            invalid(texts["line_too_long"].format(limit=max_line, stream=text, size=size))
                            continue
                    if meta:
                        if not allow_metadata:
                            invalid(texts["sm_disallowed"].format(stream=text))
                            continue
                        meta_size = sum(_utf8_len(k) + _utf8_len(v) for k, v in meta)
                        if meta_size > self.max_metadata_bytes and texts["sm_too_large"]:
                            invalid(texts["sm_too_large"].format(stream=text, size=meta_size,
                                                                 limit=self.max_metadata_bytes))
                            continue
                        if len(meta) > self.max_metadata_count and texts["sm_too_many"]:
                            invalid(texts["sm_too_many"].format(stream=text, size=len(meta),
                                                                limit=self.max_metadata_count))
                            continue
                    valid.append(item)
                if not valid:
                    continue
                # Ingester: last-line dedup, then the out-of-order window, then the head block's dedup.
                stream = streams.get((tenant, key))
                if stream is None:
                    stream = _Stream(tenant, key)
                stored = stream.entries
                seen = stream.seen
                highest = stream.highest
                cutoff = -(2**70) if highest is None else highest - TOO_FAR_BEHIND_NS
                last_ts, last_line = stream.last_ts, stream.last_line
                prev = stored[-1][0] if stored else None
                is_sorted = stream.is_sorted
                failed: list[tuple[int, str]] = []
                for item in valid:
                    ts, line, meta = item
                    if patterns and any(p in line for p in patterns):
                        failed.append((ts, "line rejected by the test double (reject_matching)"))
                        continue
                    if ts == last_ts and (line, meta) == last_line:
                        duplicates += 1
                        continue
                    if ts < cutoff:
                        failed.append((ts, texts["too_far_behind"].format(ts=_rfc3339(ts), cutoff=_rfc3339(cutoff))))
                        continue
                    last_ts, last_line = ts, (line, meta)
                    if highest is None or ts > highest:
                        highest = ts
                        cutoff = ts - TOO_FAR_BEHIND_NS
                    if item in seen:
                        duplicates += 1
                        continue
                    seen.add(item)
                    stored.append(item)
                    if prev is not None and ts < prev:
                        is_sorted = False
                    prev = ts
                    accepted += 1
                stream.highest = highest
                stream.last_ts, stream.last_line = last_ts, last_line
                stream.is_sorted = is_sorted
                if stored:
                    streams[(tenant, key)] = stream
                if failed:
                    rejected += len(failed)
                    lines = [f"entry with timestamp {_go_time_string(ts)} ignored, reason: '{reason}',\n"
                             for ts, reason in failed[:MAX_RETURNED_ERRORS]]
                    ingester_error = "".join(lines) + (
                        f"user '{tenant}', total ignored: {len(failed)} out of {len(valid)} for stream: {text}")
            self.accepted_entries += accepted
            self.rejected_entries += rejected
            self.duplicate_entries += duplicates
        if ingester_error is not None:
            return 400, ingester_error + "\n"
        if validation:
            return 400, _grouped_errors(validation) + "\n"
        return 204, ""

    def _query_range(self, raw_path: str, headers: Any) -> tuple[int, bytes]:
        self._check_auth(headers.get("Authorization"))
        tenant = self._tenant(headers.get("X-Scope-OrgID"))
        params = parse_qs(urlsplit(raw_path).query, keep_blank_values=True)

        def param(name: str) -> str | None:
            values = params.get(name)
            return values[0] if values else None

        query = param("query")
        if not query:
            raise _HTTPError(400, "parse error : syntax error: unexpected $end")
        matchers = _parse_selector(query)
        now = self.now_ns()
        end = _parse_query_time(param("end"), now)
        start = _parse_query_time(param("start"), end - DEFAULT_QUERY_SINCE_NS)
        if end < start:
            raise _HTTPError(400, "end timestamp must not be before or equal to start time")
        limit_text = param("limit")
        if limit_text is None or limit_text == "":
            limit = DEFAULT_QUERY_LIMIT
        else:
            try:
                limit = int(limit_text)
            except ValueError:
                raise _HTTPError(400, f'strconv.ParseInt: parsing "{limit_text}": invalid syntax') from None
        if limit <= 0:
            raise _HTTPError(400, "limit must be a positive value")
        if limit > MAX_ENTRIES_LIMIT_PER_QUERY:
            raise _HTTPError(
                400,
                f"max entries limit per query exceeded, limit > max_entries_limit_per_query "
                f"({limit} > {MAX_ENTRIES_LIMIT_PER_QUERY})",
            )
        direction = (param("direction") or "backward").upper()
        if direction not in ("FORWARD", "BACKWARD"):
            raise _HTTPError(400, f"invalid direction '{param('direction')}'")
        forward = direction == "FORWARD"
        categorize = "categorize-labels" in headers.get("X-Loki-Response-Encoding-Flags", "")

        picked: list[tuple[int, Labels, int, str, Metadata]] = []
        with self._lock:
            for stream in self._streams.values():
                if stream.tenant != tenant:
                    continue
                labels = dict(stream.key)
                if not all(m.matches(labels.get(m.name, "")) for m in matchers):
                    continue
                entries = stream.sorted_entries()
                lo = bisect_left(entries, start, key=itemgetter(0))
                hi = bisect_left(entries, end, key=itemgetter(0))  # end is exclusive
                # Only the `limit` entries nearest the starting edge of each stream can make the cut.
                window = range(lo, min(hi, lo + limit)) if forward else range(hi - 1, max(lo, hi - limit) - 1, -1)
                for i in window:
                    ts, line, meta = entries[i]
                    picked.append((ts, stream.key, i, line, meta))
        if forward:
            picked.sort(key=itemgetter(0, 1, 2))
        else:
            picked.sort(key=lambda p: (-p[0], p[1], -p[2]))
        picked = picked[:limit]

        grouped: dict[Labels, list[list[Any]]] = {}
        for ts, key, _, line, meta in picked:
            if categorize:
                value: list[Any] = [str(ts), line]
                if meta:
                    value.append({"structuredMetadata": dict(meta)})
                grouped.setdefault(key, []).append(value)
            else:
                # Loki 3 returns structured metadata as extra labels; a clash with a stream label
                # gets the "_extracted" suffix.
                if meta:
                    names = {k for k, _ in key}
                    merged = dict(key)
                    for name, val in meta:
                        merged[name + "_extracted" if name in names else name] = val
                    result_key: Labels = tuple(sorted(merged.items()))
                else:
                    result_key = key
                grouped.setdefault(result_key, []).append([str(ts), line])
        data: dict[str, Any] = {
            "resultType": "streams",
            "result": [
                {"stream": dict(key), "values": values}
                for key, values in sorted(grouped.items(), key=lambda kv: _labels_string(kv[0]))
            ],
        }
        if categorize:
            data["encodingFlags"] = ["categorize-labels"]
        payload = json.dumps({"status": "success", "data": data}, separators=(",", ":"))
        return 200, payload.encode("ascii")
