"""The (uid, count) ledger: which occurrences have shipped, and when an entry may be forgotten."""
from __future__ import annotations

from dataclasses import dataclass

from state.base import Checkpoint

NS = 1_000_000_000
# An event vanishes 1 h to 1 h 01 min after its last write, but its time `t` can trail that write:
# the new recorder reports series counts up to 30 min late (KUBERNETES.md). So an entry is kept
# until t is older than TTL + 30 min + 2 min of slack for clock skew; any earlier and a live event
# could be bumped after its entry was forgotten, or first seen already behind the horizon.
PRUNE_MARGIN_S = 32 * 60


@dataclass(frozen=True)
class Verdict:
    new: int = 0  # occurrences not shipped before; 0 means skip
    why: str = ""  # for skips: "duplicate", "before-horizon", "before-since"


# Skips are the common case of a steady-state run: share them instead of allocating one per event.
DUPLICATE = Verdict(0, "duplicate")
BEFORE_HORIZON = Verdict(0, "before-horizon")
BEFORE_SINCE = Verdict(0, "before-since")


class Ledger:
    """Decides, event by event, whether an occurrence is new, and records it as shipped.

    The record happens before the push is acknowledged, but it is only saved after every push
    was acknowledged, so a failed run leaves the stored ledger as it was.
    """

    def __init__(self, cp: Checkpoint, *, ttl_s: float, since_ns: int = 0, replay: bool = False) -> None:
        self.cp = cp
        self.ttl_s = ttl_s
        self.since_ns = since_ns
        # A backfill re-ships what the ledger already holds; it still records what it ships.
        self.replay = replay

    def consider(self, uid: str, n: int, t_ns: int) -> Verdict:
        prev = self.cp.ledger.get(uid)
        if t_ns < self.since_ns:
            return BEFORE_SINCE
        if prev is not None:
            if n <= prev[0] and not self.replay:
                return DUPLICATE
            shipped = prev[0]
        else:
            # Absent and older than what was already pruned: it may have shipped, so never re-ship.
            if t_ns < self.cp.prune_horizon_ns and not self.replay:
                return BEFORE_HORIZON
            shipped = 0
        if prev is None or n > prev[0] or t_ns // NS > prev[1]:
            self.cp.ledger[uid] = (max(n, prev[0] if prev else 0), max(t_ns // NS, prev[1] if prev else 0))
        if t_ns > self.cp.watermark_ns:
            self.cp.watermark_ns = t_ns
        return Verdict(n if self.replay else n - shipped, "")

    def prune(self) -> int:
        """Forget entries the API server has certainly deleted: older than W - (TTL + margin)."""
        cutoff_ns = self.cp.watermark_ns - int((self.ttl_s + PRUNE_MARGIN_S) * NS)
        return self._drop_older_than(cutoff_ns)

    def prune_to(self, keep: int) -> int:
        """Size-forced pruning: keep the `keep` newest entries; the horizon moves past the rest."""
        if len(self.cp.ledger) <= keep:
            return 0
        times = sorted(t for _, t in self.cp.ledger.values())
        return self._drop_older_than((times[len(times) - keep - 1] + 1) * NS)

    def _drop_older_than(self, cutoff_ns: int) -> int:
        if cutoff_ns <= 0:
            return 0
        cutoff_s = cutoff_ns // NS
        old = [uid for uid, (_, t) in self.cp.ledger.items() if t < cutoff_s]
        for uid in old:
            del self.cp.ledger[uid]
        self.cp.prune_horizon_ns = max(self.cp.prune_horizon_ns, cutoff_s * NS)
        return len(old)
