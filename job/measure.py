"""`plan --from-cluster`'s inputs: the checkpoint's recent runs and one list of the Events held now.

Reads only: the checkpoint (as `status` does) and one paged list (as a run does), no Lease, no write.
"""
from __future__ import annotations

import operator
from collections import Counter
from typing import Any

from job import history
from job.cmd import Config
from job.connections import Connections
from job.deps import Deps
from job.events import scan_page, to_ns
from job.filters import OwnEvents
from job.kube import Listing, list_event_pages
from state import Checkpoint, decode

TOP = 5  # busiest namespaces and reasons shown
_OCCURRENCES, _REASON = operator.attrgetter("occurrences"), operator.attrgetter("reason")
_NAMESPACE = operator.attrgetter("metadata.namespace")


def _namespaces(heads: list[Any]) -> list[str | None]:
    try:
        return list(map(_NAMESPACE, heads))
    except AttributeError:  # an item without metadata: the slow way for this page
        return [e.meta.namespace for e in heads]


def measure(cfg: Config, deps: Deps) -> dict[str, Any]:
    """Every measured figure; StoreError or KubeError when the store or the API cannot be read."""
    conn = Connections(cfg, deps.redactor)
    store = conn.store()
    data, _ = store.load()
    cp = decode(data, store.name, now_ns=to_ns(deps.clock.now())) if data else Checkpoint()
    listing = Listing()
    mine = OwnEvents(conn.namespace(), cfg.cronjob_name, cfg.pod_name, keep="none")
    held = occurrences = own = 0
    namespaces: Counter[str | None] = Counter()
    reasons: Counter[str | None] = Counter()
    # The heads carry every figure but the involved object's name: only the job's namespace is decoded in
    # full. Counted by C-level maps: this must cost less than a run with nothing new.
    for page in list_event_pages(conn.api(), page_size=cfg.page_size, field_selector="", timeout=cfg.api_timeout,
                                 decode=scan_page, list_from=cfg.list_from, listing=listing):
        heads: list[Any] = page.heads if page.heads is not None else [e for e, _ in page.events]
        held += len(heads)
        occurrences += sum(map(_OCCURRENCES, heads))
        in_ns = _namespaces(heads)
        namespaces.update(in_ns)
        reasons.update(map(_REASON, heads))
        if mine.namespace in in_ns:
            here = {i for i, n in enumerate(in_ns) if n == mine.namespace}
            full = page.some(here).events if page.heads is not None else page.events
            own += sum(not mine.ships(e) for e, _ in full if e.meta.namespace == mine.namespace)
    return {
        "store": store.name,
        "history": history.figures(cp.history),
        "events_held": held,
        "own_events_held": own,
        "bytes_per_event": listing.bytes / held if held else None,
        # An Event's count above 1 is a repeat: the ledger ships it once per new count, not once.
        "repeat_share": (occurrences - held) / occurrences if occurrences else 0.0,
        "busiest_namespaces": [(k or "", v) for k, v in namespaces.most_common(TOP)],
        "busiest_reasons": [(k or "", v) for k, v in reasons.most_common(TOP)],
        "ledger_entries": len(cp.ledger),
        "checkpoint_bytes": len(data or b""),
    }
