"""The checkpoint, its byte encoding, and the small interface every store implements.

Stores move opaque bytes with a concurrency precondition; only this module knows the format, so
the three stores stay interchangeable and never import each other.
"""
from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Protocol

MAGIC = b"LESC"
VERSION = 1
_HEADER = struct.Struct(">4sBI")  # magic, version, header length
_SWAP = sys.byteorder == "little"  # the columns are stored big-endian


class StoreError(Exception):
    """A store could not be read or written; the run fails (exit 1)."""


class StoreConflict(StoreError):
    """Someone else wrote the checkpoint since we read it; we must not overwrite it."""


class CheckpointCorrupt(StoreError):
    """The stored bytes are not a checkpoint this version understands."""


@dataclass
class Checkpoint:
    """What the job remembers between runs.

    ``ledger`` maps an event uid to (highest count shipped, event time in whole seconds).
    Seconds are enough: the time is only used to prune, with a margin of minutes.
    """

    watermark_ns: int = 0
    prune_horizon_ns: int = 0
    ledger: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_success_ns: int | None = None
    last_run: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    """Where the checkpoint bytes live. ``version`` is an opaque precondition token."""

    name: str  # for messages: scheme and location, never credentials
    max_bytes: int | None  # hard size limit of the backing object, if any

    def load(self) -> tuple[bytes | None, Any]:
        """Return (bytes or None when absent, version token for save)."""
        ...

    def save(self, data: bytes, version: Any) -> Any:
        """Write iff the stored object is still at ``version``; return the new token.

        Raises StoreConflict when the precondition fails.
        """
        ...


def encode(cp: Checkpoint) -> bytes:
    """Serialize compactly: 50k+ ledger entries must fit the 1 MiB ConfigMap limit.

    UUIDs are stored as 16 raw bytes, sorted and split into byte planes so zlib can squeeze
    the predictable high bytes; counts and time offsets from the watermark are u32 columns,
    which compress to about a byte each because most counts are 1 and offsets are small.
    """
    w_s = cp.watermark_ns // 1_000_000_000
    uids = sorted(cp.ledger)  # lower-case hex sorts like the bytes it spells
    # Every uid 36 long, or pieces of other lengths could join into valid-looking UUIDs.
    raw = _uuids_bytes("".join(uids), len(uids)) if set(map(len, uids)) <= {36} else None
    if raw is not None:  # the usual case: every uid is a canonical UUID
        binary, other = uids, []
    else:
        binary = [u for u in uids if _uuids_bytes(u, 1) is not None]
        other = [(u, *cp.ledger[u]) for u in uids if _uuids_bytes(u, 1) is None]
        raw = _uuids_bytes("".join(binary), len(binary)) or b""
    planes = b"".join(raw[i::16] for i in range(16))
    # Counts are int32 in the API and no entry is newer than the watermark, so both fit a u32.
    values = list(map(cp.ledger.__getitem__, binary))
    counts = array("I", map(itemgetter(0), values))
    offsets = array("I", map(w_s.__sub__, map(itemgetter(1), values)))
    header = {
        "watermark_ns": cp.watermark_ns,
        "prune_horizon_ns": cp.prune_horizon_ns,
        "last_success_ns": cp.last_success_ns,
        "last_run": cp.last_run,
        "entries": len(binary),
        "other": [[u, c, t] for u, c, t in other],
    }
    if _SWAP:
        counts.byteswap()
        offsets.byteswap()
    # Level 1: most planes are random bytes that no level shrinks; 6 would triple the time for ~1%.
    body = zlib.compress(planes + counts.tobytes() + offsets.tobytes(), 1)
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return _HEADER.pack(MAGIC, VERSION, len(head)) + head + body


def decode(data: bytes, where: str) -> Checkpoint:
    """Parse bytes from a store; any inconsistency is CheckpointCorrupt naming ``where``."""
    fix = "inspect it, restore a good copy, or start over with --reset-checkpoint"
    if len(data) < _HEADER.size:
        raise CheckpointCorrupt(f"checkpoint at {where} is truncated ({len(data)} bytes); {fix}")
    magic, version, hlen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointCorrupt(f"checkpoint at {where} is not a loki-event-sync checkpoint; {fix}")
    if version != VERSION:
        raise CheckpointCorrupt(
            f"checkpoint at {where} has format version {version}, this build reads {VERSION}; "
            f"run a matching release or {fix}"
        )
    try:
        header = json.loads(data[_HEADER.size : _HEADER.size + hlen])
        body = zlib.decompress(data[_HEADER.size + hlen :])
        n = int(header["entries"])
        w_s = int(header["watermark_ns"]) // 1_000_000_000
        if len(body) != n * 24:
            raise ValueError(f"ledger holds {len(body)} bytes, expected {n * 24}")
        raw = bytearray(n * 16)
        for i in range(16):
            raw[i::16] = body[i * n : (i + 1) * n]
        counts = array("I")
        counts.frombytes(body[16 * n : 20 * n])
        offsets = array("I")
        offsets.frombytes(body[20 * n :])
        if _SWAP:
            counts.byteswap()
            offsets.byteswap()
        ledger: dict[str, tuple[int, int]] = {}
        h = raw.hex()
        for i in range(n):
            x = h[i * 32 : i * 32 + 32]
            uid = f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
            ledger[uid] = (counts[i], w_s - offsets[i])
        for uid, count, t_s in header["other"]:
            ledger[str(uid)] = (int(count), int(t_s))
        cp = Checkpoint(
            watermark_ns=int(header["watermark_ns"]),
            prune_horizon_ns=int(header["prune_horizon_ns"]),
            ledger=ledger,
            last_success_ns=None if header["last_success_ns"] is None else int(header["last_success_ns"]),
            last_run=dict(header["last_run"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, zlib.error) as exc:
        raise CheckpointCorrupt(f"checkpoint at {where} is corrupt ({exc}); {fix}") from None
    if any(c < 1 for c, _ in ledger.values()):
        raise CheckpointCorrupt(f"checkpoint at {where} is corrupt (a ledger count below 1); {fix}")
    return cp



def _uuids_bytes(joined: str, n: int) -> bytes | None:
    """16 bytes each for n concatenated canonical lower-case UUIDs; None if any would not round-trip."""
    if len(joined) != 36 * n or joined.count("-") != 4 * n:
        return None
    if any(joined[pos::36].strip("-") for pos in (8, 13, 18, 23)):
        return None
    digits = joined.replace("-", "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    return raw if len(raw) == 16 * n and raw.hex() == digits else None
