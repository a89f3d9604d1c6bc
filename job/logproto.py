"""Loki's native push body: logproto.PushRequest as protobuf, hand-encoded.

The schema (pkg/push/push.proto in Loki) is four small messages, so encoding it here is a few dozen
lines and spares the job the protobuf runtime and generated code:

    message PushRequest      { repeated StreamAdapter streams = 1; }
    message StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; }   // hash = 3: server-side
    message EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                               repeated LabelPairAdapter structuredMetadata = 3; }
    message LabelPairAdapter { string name = 1; string value = 2; }
    message Timestamp        { int64 seconds = 1; int32 nanos = 2; }

``labels`` is the Prometheus text form, ``{name="value", ...}``, which Loki parses with its LogQL
label parser (Go string escapes; JSON's escapes are a subset of them). The body goes out compressed
with snappy's *block* format (not the framed one), Content-Type ``application/x-protobuf`` and no
Content-Encoding, which is what Promtail and Alloy send.
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

# Wire-format tags: (field number << 3) | wire type; 2 = length-delimited, 0 = varint.
_F1_LEN, _F2_LEN, _F3_LEN = b"\x0a", b"\x12", b"\x1a"
_F1_VARINT, _F2_VARINT = 0x08, 0x10
_SMALL = [bytes([i]) for i in range(128)]  # one-byte varints, the common case for lengths < 128


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def labels_text(labels: Iterable[tuple[str, str]]) -> str:
    """{a="b", c="d"}, sorted by name as Prometheus prints them."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels)) + "}"


def _timestamp(ns: int) -> bytes:
    seconds, nanos = divmod(ns, 1_000_000_000)
    out = bytearray()
    if seconds:  # proto3 leaves zero values out
        out.append(_F1_VARINT)
        out += varint(seconds) if seconds > 0 else varint(seconds + (1 << 64))
    if nanos:
        out.append(_F2_VARINT)
        out += varint(nanos)
    return bytes(out)


def entry(ts: int, line: str, metadata: dict[str, str] | None) -> bytes:
    """One EntryAdapter (kept for clarity and tests; push_request inlines the same steps)."""
    parts = [_len(_F1_LEN, _timestamp(ts)), _len(_F2_LEN, line.encode())]
    if metadata:
        for name, value in metadata.items():
            pair = _len(_F1_LEN, name.encode()) + _len(_F2_LEN, value.encode())
            parts.append(_len(_F3_LEN, pair))
    return b"".join(parts)


def _metadata(metadata: dict[str, str]) -> bytes:
    out = []
    for name, value in metadata.items():
        nb, vb = name.encode(), value.encode()
        pair = b"\x0a" + varint(len(nb)) + nb + b"\x12" + varint(len(vb)) + vb
        out.append(b"\x1a" + varint(len(pair)) + pair)
    return b"".join(out)


def _vlen(n: int) -> bytes:
    return _SMALL[n] if n < 128 else bytes(((n & 0x7F) | 0x80, n >> 7)) if n < 16384 else varint(n)


def push_request(
        streams: Sequence[tuple[Iterable[tuple[str, str]], Sequence[tuple[int, str, dict[str, str] | None]]]]) -> bytes:
    """The PushRequest bytes for (labels, [(ts_ns, line, metadata or None), ...]) per stream.

    The hot loop of a protobuf push: one pass per entry collecting pieces, each stream joined once
    (concatenating per entry would copy every line three times).
    """
    out = []
    seconds_field: dict[int, bytes] = {}  # events share seconds: encode each one once
    for labels, entries in streams:
        lb = labels_text(labels).encode()
        parts = [b"\x0a", varint(len(lb)), lb]
        extend = parts.extend
        size = 1 + len(parts[1]) + len(lb)
        for ts, line, md in entries:
            secs, nanos = divmod(ts, 1_000_000_000)
            t = seconds_field.get(secs)
            if t is None:
                t = seconds_field[secs] = _timestamp(secs * 1_000_000_000)
            if nanos:
                t += b"\x10" + varint(nanos)
            data = line.encode()
            head = _vlen(len(data))
            mdb = _metadata(md) if md else b""
            elen = 2 + len(t) + 1 + len(head) + len(data) + len(mdb)
            ehead = _vlen(elen)
            extend((b"\x12", ehead, b"\x0a", _SMALL[len(t)], t, b"\x12", head, data, mdb))
            size += 1 + len(ehead) + elen
        out.append(b"\x0a" + varint(size))
        out.append(b"".join(parts))
    return b"".join(out)
