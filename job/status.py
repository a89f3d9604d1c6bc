"""`status`: what the checkpoint says, without listing anything or taking the Lease."""
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
        return {"store": store.name, "exists": False}
    cp = decode(data, store.name)
    now_ns = to_ns(deps.clock.now())
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
