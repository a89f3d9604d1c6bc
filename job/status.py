"""`status`: what the checkpoint says, without listing anything or taking the Lease.

Two answers that must never look alike: a store whose container is missing (the ConfigMap, its
namespace, the S3 bucket, the file's directory) raises StoreError, so `status` fails with exit 1 and
one line: a typo in --state or --namespace is not a first run. A present store with no checkpoint in
it yet (the ConfigMap without the key, no S3 object, no file) is ``exists: False`` with exit 0: the
install is right and the first run has not finished.
"""
from __future__ import annotations

from typing import Any

from job.cmd import Config
from job.connections import Connections
from job.dedupe import NS
from job.deps import Deps
from job.events import rfc3339, to_ns
from state import decode


def status(cfg: Config, deps: Deps) -> dict[str, Any]:
    store = Connections(cfg, deps.redactor).store()
    data, _ = store.load()
    if data is None:
        return {"store": store.name, "exists": False,
                "note": "the store is there, but no run has saved a checkpoint in it yet"}
    now_ns = to_ns(deps.clock.now())
    cp = decode(data, store.name, now_ns=now_ns)  # the same sanity bounds as a run: years from now is damage
    ago = (now_ns - cp.last_success_ns) // NS if cp.last_success_ns else None
    return {
        "store": store.name,
        "exists": True,
        "watermark": rfc3339(cp.watermark_ns),
        "ledger_entries": len(cp.ledger),
        "prune_horizon": rfc3339(cp.prune_horizon_ns),
        "last_success": rfc3339(cp.last_success_ns or 0),
        "last_success_seconds_ago": ago,
        "stale": ago is not None and ago > cfg.event_ttl,
        "last_run": cp.last_run,
        "bytes": len(data),
    }
