"""`plan --from-cluster`'s inputs: the checkpoint's recent runs and one list of the Events held now.

Reads only: the checkpoint (as `status` does) and one paged list (as a run does), no Lease, no write.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from job import history
from job.cmd import Config
from job.connections import Connections
from job.deps import Deps
from job.events import decode_page, to_ns
from job.filters import OwnEvents
from job.kube import Listing, list_event_pages
from state import Checkpoint, decode

TOP = 5  # busiest namespaces and reasons shown


def measure(cfg: Config, deps: Deps) -> dict[str, Any]:
    """Every measured figure; StoreError or KubeError when the store or the API cannot be read."""
    conn = Connections(cfg, deps.redactor)
    store = conn.store()
    data, _ = store.load()
    cp = decode(data, store.name, now_ns=to_ns(deps.clock.now())) if data else Checkpoint()
    listing = Listing()
    mine = OwnEvents(conn.namespace(), cfg.cronjob_name, cfg.pod_name, keep="none")
    held = occurrences = own = 0
    namespaces: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for page in list_event_pages(conn.api(), page_size=cfg.page_size, field_selector="", timeout=cfg.api_timeout,
                                 decode=decode_page, list_from=cfg.list_from, listing=listing):
        for e, _ in page.events:
            held += 1
            occurrences += e.occurrences
            namespaces[e.meta.namespace or ""] += 1
            reasons[e.reason or ""] += 1
            own += not mine.ships(e)
    return {
        "store": store.name,
        "history": history.figures(cp.history),
        "events_held": held,
        "own_events_held": own,
        "bytes_per_event": listing.bytes / held if held else None,
        # An Event's count above 1 is a repeat: the ledger ships it once per new count, not once.
        "repeat_share": (occurrences - held) / occurrences if occurrences else 0.0,
        "busiest_namespaces": namespaces.most_common(TOP),
        "busiest_reasons": reasons.most_common(TOP),
        "ledger_entries": len(cp.ledger),
        "checkpoint_bytes": len(data or b""),
    }
