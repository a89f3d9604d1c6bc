"""The checkpoint, its byte encoding, and the small interface every store implements.

Stores move opaque bytes with a concurrency precondition; only this module knows the format, so
the three stores stay interchangeable and never import each other.
"""
from __future__ import annotations

import json
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

MAGIC = b"LESC"
VERSION = 2  # 2: ledger times are the job's own clock; 1 (read, never written): event times
_HEADER = struct.Struct(">4sBI")  # magic, version, header length
_SWAP = sys.byteorder == "little"  # the columns are stored big-endian
NS = 1_000_000_000
INT32_MAX = 2**31 - 1  # the API's counts are int32
_YEAR_S = 365 * 86_400
# Sanity bounds for every decoded time, around the job's clock: a checkpoint is written by this job
# at most a few years ago, and never far ahead of its clock (a clock corrected backwards by NTP is
# allowed a year). A horizon in 2100 or a watermark of 1e30 is damage, never data.
PAST_S, FUTURE_S = 10 * _YEAR_S, _YEAR_S
# The short history of runs (job/history.py says what each number is): at most this many records of
# at most this many non-negative integers, a few hundred bytes in all. A history that breaks these
# bounds is dropped on decode, never a reason to refuse the checkpoint: it is a report, not state.
HISTORY_RUNS, HISTORY_FIELDS = 8, 12


class StoreError(Exception):
    """A store could not be read or written; the run fails (exit 1)."""


class StoreConflict(StoreError):
    """Someone else wrote the checkpoint since we read it; we must not overwrite it."""


class CheckpointCorrupt(StoreError):
    """The stored bytes are not a checkpoint this version understands."""


@dataclass
class Checkpoint:
    """What the job remembers between runs (job/dedupe.py explains how each field is used).

    ``ledger`` maps an event uid to (highest count shipped, the second by the job's own clock at
    which that count was recorded). No time an event reports about itself is stored here.
    """

    watermark_ns: int = 0  # the newest Loki timestamp shipped; for status and the summary only
    # Set only by size-forced pruning: an unknown uid the API server created before this may have
    # been shipped and forgotten while still alive, so it is skipped (compared with creationTimestamp).
    prune_horizon_ns: int = 0
    ledger: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_success_ns: int | None = None
    last_run: dict[str, Any] = field(default_factory=dict)
    listed_ns: int = 0  # job clock at the start of the last complete API list this ledger reflects
    # The newest list resourceVersion the ledger reflects: the next watch-cache list's floor, and a
    # later list that is older never forgets anything.
    list_rv: str = ""
    scope: str = ""  # what that list could contain (field selector, namespaces): absence means deletion
    scope_since_ns: int = 0  # when the scope last changed; entries recorded before it are out of scope
    history: list[list[int]] = field(default_factory=list)  # the last runs, oldest first (job/history.py)


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
    the predictable high bytes; counts and time offsets from the newest recorded second are u32
    columns, which compress to about a byte each because most counts are 1 and offsets are small.
    The columns are built straight from the sorted keys by C-level maps (no per-entry bytecode, no
    list of the values), the uids are converted a chunk at a time, and the sorted keys are dropped
    before compressing, so the run's peak (which is here, at the end of a first run) stays low.
    """
    ledger = cp.ledger
    uids = sorted(ledger)  # lower-case hex sorts like the bytes it spells
    raw = _uuids_raw(uids)
    if raw is not None:  # the usual case: every uid is a canonical UUID
        binary, other = uids, []
    else:
        binary = [u for u in uids if _uuids_bytes(u, 1) is not None]
        other = [(u, *ledger[u]) for u in uids if _uuids_bytes(u, 1) is None]
        raw = _uuids_raw(binary) or bytearray()
    del uids
    base_s = max(map(_SECOND, ledger.values()), default=cp.listed_ns // NS)
    # C-level maps, no per-entry bytecode, and no list of the values beside the arrays.
    counts = array("I", map(_FIRST, map(ledger.__getitem__, binary)))
    offsets = array("I", map(operator.sub, repeat(base_s), map(_SECOND, map(ledger.__getitem__, binary))))
    entries = len(binary)
    del binary  # the sorted keys are not needed while compressing
    header = {
        "watermark_ns": cp.watermark_ns,
        "prune_horizon_ns": cp.prune_horizon_ns,
        "last_success_ns": cp.last_success_ns,
        "last_run": cp.last_run,
        "listed_ns": cp.listed_ns,
        "list_rv": cp.list_rv,
        "scope": cp.scope,
        "scope_since_ns": cp.scope_since_ns,
        "base_s": base_s,
        "entries": entries,
        "other": [[u, c, t] for u, c, t in other],
        "history": valid_history(cp.history),
    }
    if _SWAP:
        counts.byteswap()
        offsets.byteswap()
    # Level 1: most planes are random bytes that no level shrinks; 6 would triple the time for ~1%.
    z = zlib.compressobj(1)
    body = [z.compress(raw[i::16]) for i in range(16)]
    body += [z.compress(counts), z.compress(offsets), z.flush()]
    del raw, counts, offsets  # before the join, which is the second copy of the compressed body
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return b"".join([_HEADER.pack(MAGIC, VERSION, len(head)), head, *body])


def decode(data: bytes, where: str, *, now_ns: int | None = None) -> Checkpoint:
    """Parse bytes from a store; any inconsistency is CheckpointCorrupt naming ``where``.

    Nothing is allocated in proportion to what the header claims before it is checked against the
    bytes actually there: the ledger's size follows from its entry count, and the count is bounded
    by the compressed size (random 16-byte uids cannot take less than a few bytes each), so a small
    checkpoint that would inflate to gigabytes is refused after reading at most that bound. With
    ``now_ns`` (the job's clock), every time must lie within years of it, and counts within int32.
    """
    fix = "inspect it, restore a good copy, or start over with --reset-checkpoint"
    if len(data) < _HEADER.size:
        raise CheckpointCorrupt(f"checkpoint at {where} is truncated ({len(data)} bytes); {fix}")
    magic, version, hlen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointCorrupt(f"checkpoint at {where} is not a loki-event-sync checkpoint; {fix}")
    if version not in (1, VERSION):
        raise CheckpointCorrupt(
            f"checkpoint at {where} has format version {version}, this build reads 1 and {VERSION}; "
            f"run a matching release or {fix}"
        )
    try:
        cp = _decode(data, hlen, version, now_ns)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, zlib.error) as exc:
        raise CheckpointCorrupt(f"checkpoint at {where} is corrupt ({exc}); {fix}") from None
    return cp


def _int(v: Any, what: str) -> int:
    if type(v) is not int:  # bool, float, str, None: never written by encode()
        raise ValueError(f"{what} is not an integer")
    return v


def _decode(data: bytes, hlen: int, version: int, now_ns: int | None) -> Checkpoint:
    if _HEADER.size + hlen > len(data):
        raise ValueError(f"the header claims {hlen} bytes, only {len(data) - _HEADER.size} are there")
    header = json.loads(data[_HEADER.size : _HEADER.size + hlen])
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    watermark_ns = _int(header["watermark_ns"], "watermark_ns")
    base_s = _int(header["base_s"], "base_s") if version >= 2 else watermark_ns // NS
    raw, counts, offsets = _columns(data[_HEADER.size + hlen :], _int(header["entries"], "entries"))
    n = len(counts)
    checked = _others(header["other"])
    cp = _fields(header, version, watermark_ns)
    newest_s = base_s - (min(offsets) if n else 0)
    oldest_s = base_s - (max(offsets) if n else 0)
    if checked:
        newest_s = max(newest_s, max(t for _, _, t in checked))
        oldest_s = min(oldest_s, min(t for _, _, t in checked))
    if (n or checked) and not (0 <= oldest_s and newest_s - oldest_s < 2**32):
        raise ValueError("ledger times that no checkpoint can hold")  # encode() could not write them back
    if now_ns is not None:
        _check_times(cp, now_ns, oldest_s if n or checked else None, newest_s if n or checked else None)
    for value in (cp.watermark_ns, cp.prune_horizon_ns, cp.listed_ns, cp.scope_since_ns, cp.last_success_ns or 0):
        if not 0 <= value < 2**63:
            raise ValueError("a time outside the int64 nanoseconds a checkpoint holds")
    ledger = dict(zip(_canonical_uids(raw, n), _entries(counts, offsets, base_s), strict=True))
    del raw
    for uid, count, t_s in checked:
        ledger[uid] = (count, t_s)
    if version == 1:
        _upgrade_v1(cp, ledger, now_ns)
    cp.ledger = ledger
    return cp


def _columns(compressed: bytes, n: int) -> tuple[bytearray, array, array]:
    """The uid bytes, counts and offsets of n entries, inflating no more than n entries need."""
    if not 0 <= n <= 1000 + len(compressed) // 2:
        raise ValueError(f"{n} entries cannot fit {len(compressed)} compressed bytes")
    z = zlib.decompressobj()
    body = z.decompress(compressed, n * 24 + 1)  # bounded: never more than the entries need, plus one
    if len(body) != n * 24 or not z.eof or z.unused_data:
        raise ValueError(f"the ledger does not hold the {n * 24} bytes its {n} entries need")
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
    if n and not (1 <= min(counts) and max(counts) <= INT32_MAX):
        raise ValueError("a ledger count outside 1..2147483647")
    return raw, counts, offsets


def _others(others: Any) -> list[tuple[str, int, int]]:
    """The ledger entries whose uids are not canonical UUIDs, checked one by one."""
    if not isinstance(others, list):
        raise ValueError("other is not a list")
    checked: list[tuple[str, int, int]] = []
    for item in others:
        uid, count, t_s = item
        if not isinstance(uid, str) or not uid:
            raise ValueError("a ledger uid is not a non-empty string")
        if not 1 <= _int(count, "a ledger count") <= INT32_MAX:
            raise ValueError("a ledger count outside 1..2147483647")
        checked.append((uid, count, _int(t_s, "a ledger time")))
    return checked


def _fields(header: dict[str, Any], version: int, watermark_ns: int) -> Checkpoint:
    """The checkpoint's scalar fields and its run history (everything but the ledger)."""
    last_success = header["last_success_ns"]
    last_run = header["last_run"]
    if not isinstance(last_run, dict):
        raise ValueError("last_run is not an object")
    cp = Checkpoint(
        watermark_ns=watermark_ns,
        prune_horizon_ns=_int(header["prune_horizon_ns"], "prune_horizon_ns"),
        last_success_ns=None if last_success is None else _int(last_success, "last_success_ns"),
        last_run=last_run,
        history=valid_history(header.get("history")),
    )
    if version >= 2:
        cp.listed_ns = _int(header["listed_ns"], "listed_ns")
        cp.scope_since_ns = _int(header["scope_since_ns"], "scope_since_ns")
        cp.list_rv, cp.scope = header["list_rv"], header["scope"]
        if not isinstance(cp.list_rv, str) or not isinstance(cp.scope, str):
            raise ValueError("list_rv or scope is not a string")
    return cp


def valid_history(history: Any) -> list[list[int]]:
    """The last HISTORY_RUNS well-formed records of ``history``; anything else is left out, never an error."""
    if not isinstance(history, list):
        return []
    return [list(r) for r in history[-HISTORY_RUNS:]
            if isinstance(r, list) and 0 < len(r) <= HISTORY_FIELDS
            and all(type(v) is int and 0 <= v < 2**63 for v in r)]


def _check_times(cp: Checkpoint, now_ns: int, oldest_s: int | None, newest_s: int | None) -> None:
    lo, hi = now_ns - PAST_S * NS, now_ns + FUTURE_S * NS
    named = [("watermark", cp.watermark_ns), ("prune horizon", cp.prune_horizon_ns),
             ("last success", cp.last_success_ns or 0), ("list time", cp.listed_ns),
             ("scope change", cp.scope_since_ns)]
    if oldest_s is not None and newest_s is not None:
        named += [("oldest ledger time", oldest_s * NS), ("newest ledger time", newest_s * NS)]
    for what, value in named:
        if value and not lo <= value <= hi:
            raise ValueError(f"its {what} ({value}) is not within {PAST_S // _YEAR_S} years of now")


def _upgrade_v1(cp: Checkpoint, ledger: dict[str, tuple[int, int]], now_ns: int | None) -> None:
    """Read a 0.1 checkpoint: its ledger times were event times, its horizon an event-time cut-off.

    Kept as they are, those times only order size-forced pruning (no later than the job's clock).
    The old horizon is dropped: it followed the largest event time ever seen, so one Event dated
    ahead could make it swallow new events, which is the bug 0.2 fixes; what 0.1 pruned was an hour
    and a half behind the newest event time, so almost surely deleted already. listed_ns stays 0: the
    first run after the upgrade forgets by absence and stamps Loki timestamps as a first run does.
    """
    if now_ns is not None:
        now_s = now_ns // NS
        for uid, (count, t_s) in ledger.items():
            if t_s > now_s:
                ledger[uid] = (count, now_s)
        cp.watermark_ns = min(cp.watermark_ns, now_ns)
    cp.prune_horizon_ns = 0


def _canonical_uids(raw: bytes | bytearray, n: int) -> list[str]:
    """The n 16-byte uids of ``raw`` as canonical lower-case UUID strings, without per-entry Python.

    Hex digits are copied by strided slice assignment into 37-byte records (8-4-4-4-12 and a line
    feed), and one ``split`` makes the strings: 37 C-level copies instead of 100k f-strings.
    """
    if not n:
        return []
    digits = raw.hex().encode("ascii")
    out = bytearray(b"-" * (37 * n))
    out[36::37] = b"\n" * n
    src = 0
    for dst, width in _UUID_GROUPS:
        for k in range(width):
            out[dst + k :: 37] = digits[src + k :: 32]
        src += width
    del digits
    del out[-1]  # the last record's line feed: split would yield an empty last string
    text = out.decode("ascii")
    del out
    return text.split("\n")


def _entries(counts: array, offsets: array, base_s: int) -> Iterator[tuple[int, int]]:
    """The ledger values, (count, base_s - offset), one tuple object per distinct pair.

    Most entries share a pair (count 1, recorded in one run's second), so sharing the tuples saves
    about 84 bytes an entry (a tuple and its int) and builds them at C speed: only the distinct
    pairs are made in Python.
    """
    shared = {p: (p[0], base_s - p[1]) for p in set(zip(counts, offsets, strict=True))}
    return map(shared.__getitem__, zip(counts, offsets, strict=True))  # zip reuses its one key tuple


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_UUID_GROUPS = ((0, 8), (9, 4), (14, 4), (19, 4), (24, 12))  # where each hex group starts in a record


_CHUNK = 4096  # uids converted at a time: the joined text of all 100k would be 3.6 MB at the run's peak


def _uuids_raw(uids: list[str]) -> bytearray | None:
    """16 bytes each for canonical UUIDs ``uids``, converted a chunk at a time; None if any is not one."""
    raw = bytearray(16 * len(uids))  # sized once: growing by += would copy it and overshoot
    for i in range(0, len(uids), _CHUNK):
        chunk = uids[i : i + _CHUNK]
        # Every uid 36 long, or pieces of other lengths could join into valid-looking UUIDs.
        part = _uuids_bytes("".join(chunk), len(chunk)) if set(map(len, chunk)) <= {36} else None
        if part is None:
            return None
        raw[16 * i : 16 * i + len(part)] = part
    return raw


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
