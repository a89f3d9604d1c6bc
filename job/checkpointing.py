"""The checkpoint as a run handles it: load it (or refuse a corrupt one), and fit it to its store."""
from __future__ import annotations

import logging
from typing import Any

from job.dedupe import Ledger
from job.events import rfc3339
from job.summary import Summary
from state import Checkpoint, Store, StoreError, decode, encode

log = logging.getLogger(__name__)


def load(store: Store, reset: bool, now_ns: int | None = None) -> tuple[Checkpoint, Any, bool]:
    """(checkpoint, version, existed). A corrupt one stops the run unless --reset-checkpoint.

    ``now_ns`` is the job's clock: a checkpoint whose times are years away from it is corrupt.
    """
    data, version = store.load()
    if data is None:
        return Checkpoint(), version, False
    try:
        return decode(data, store.name, now_ns=now_ns), version, True
    except StoreError:
        if not reset:
            raise
        log.warning("--reset-checkpoint: discarding the unreadable checkpoint at %s", store.name)
        return Checkpoint(), version, False


def advance_list_rv(cp: Checkpoint, rv: str) -> None:
    """Record a list's resourceVersion as the next run's floor, unless an older one than recorded.

    Complete or not, the list's shipments are in the ledger, so a later watch-cache list must be no
    older than it (job/kube.py Listing); a non-numeric one is opaque, as the API allows, and taken.
    """
    try:
        newer = not cp.list_rv or int(rv) >= int(cp.list_rv)
    except ValueError:
        newer = True
    if rv and newer:
        cp.list_rv = rv


def fit(cp: Checkpoint, ledger: Ledger, store: Store, s: Summary) -> bytes:
    """Encode, pruning the oldest entries first if the store has a size limit (never re-shipped)."""
    data = encode(cp)
    limit = store.max_bytes
    while limit is not None and len(data) > limit - 4096:
        keep = max(0, int(len(cp.ledger) * (limit - 4096) / len(data) * 0.97))
        dropped = ledger.prune_to(keep)
        if not dropped:  # the ledger is empty: only the margin may give way, never the store's limit
            if len(data) > limit:
                raise StoreError(
                    f"the checkpoint needs {len(data)} bytes even with an empty ledger, but {store.name} "
                    f"leaves room for {max(0, limit)} (its limit, less what else it holds): move the other "
                    "keys out of it, or use an s3:// store; nothing was saved")
            break
        s.pruned += dropped
        s.ledger = len(cp.ledger)
        log.warning("the checkpoint would exceed %s's %d-byte limit: pruned the %d ledger entries recorded "
                    "longest ago; events the API server created before %s are skipped unless in the ledger; "
                    "use an s3:// store for more room",
                    store.name, limit, dropped, rfc3339(cp.prune_horizon_ns))
        data = encode(cp)
    return data
