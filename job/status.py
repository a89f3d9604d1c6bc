"""`status`: what the checkpoint says, without listing anything or taking the Lease.

Two answers that must never look alike: a store whose container is missing (the ConfigMap, its
namespace, the S3 bucket, the file's directory) raises StoreError, so `status` fails with exit 1 and
one line: a typo in --state or --namespace is not a first run. A present store with no checkpoint in
it yet (the ConfigMap without the key, no S3 object, no file) is ``exists: False`` with exit 0: the
install is right and the first run has not finished.
"""
from __future__ import annotations

from typing import Any

from job import history
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
        "recent_runs": history.figures(cp.history),
        "bytes": len(data),
    }


def render(info: dict[str, Any]) -> str:
    """`status` for a terminal: one aligned line per fact, the JSON output's figures in words."""
    if not info["exists"]:
        return _lines([("checkpoint", f"{info['store']}: none yet"), ("note", info["note"])])
    ago = info["last_success_seconds_ago"]
    run, recent = info["last_run"], info["recent_runs"]
    rows = [
        ("checkpoint", f"{info['store']} ({info['bytes']} bytes)"),
        ("last success", f"{info['last_success']}" + ("" if ago is None else f", {ago} s ago")
                         + (" (STALE: older than the event TTL: events may have expired unseen)"
                            if info["stale"] else "")),
        ("watermark", info["watermark"]),
        ("ledger", f"{info['ledger_entries']} entries"
                   + (f", prune horizon {info['prune_horizon']}" if info["prune_horizon"] != _EPOCH else "")),
        ("last run", " ".join(f"{k}={v}" for k, v in run.items()) or "none recorded"),
    ]
    if recent:
        rate = recent["new_per_hour"]
        rows += [("recent runs", f"{recent['runs']} over {recent['span_h']:.1f} h: median {recent['run_s']:g} s, "
                                 f"{recent['cpu_s_per_run']:g} CPU-s, {recent['listed_per_run']:g} listed"
                                 + ("" if rate is None else f", {rate:.0f} new occurrences/h")),
                 ("delay to Loki", f"median {recent['delay_p50_s']:g} s, p95 {recent['delay_p95_s']:g} s "
                                   "(occurrence to push, over the recent runs)")]
    return _lines(rows)


_EPOCH = rfc3339(0)


def _lines(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k:<{width}}  {v}\n" for k, v in rows)
