"""Where a run's events come from: the API server's paged list, or a saved dump (--from-file).

A dump gets what the API server would have done to it: --field-selector is evaluated here on the
fields the API server supports for Events (job/filters.py FieldSelector), so `type=Warning` means
the same with and without --from-file. A dump that is not core/v1 Events is a usage error (exit 2).
"""
from __future__ import annotations

import sys
from typing import Iterator

from job import kube
from job.cmd import Config, UsageError
from job.connections import Connections
from job.deps import Deps
from job.events import NotEvents, Page, decode_dump, undecoded_page
from job.failure import RunFailed
from job.filters import FieldSelector


def pages(cfg: Config, conn: Connections, deps: Deps, listing: kube.Listing | None = None) -> Iterator[Page]:
    """The run's pages; ``listing`` is filled in with what the API list was (kube.Listing)."""
    if cfg.from_file:
        yield _from_file(cfg, deps)
        return
    yield from kube.list_event_pages(
        conn.api(), page_size=cfg.page_size, field_selector=cfg.field_selector, timeout=cfg.api_timeout,
        decode=undecoded_page, namespaces=cfg.event_namespaces, list_from=cfg.list_from, listing=listing,
    )


def _from_file(cfg: Config, deps: Deps) -> Page:
    try:
        selector = FieldSelector.parse(cfg.field_selector) if cfg.field_selector else None
    except ValueError as exc:
        raise UsageError(f"--field-selector {cfg.field_selector!r}: {exc}") from None
    try:
        if cfg.from_file == "-":
            data = (deps.stdin or sys.stdin.buffer).read()
        else:
            with open(cfg.from_file, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise RunFailed(f"cannot read --from-file {cfg.from_file}: {exc.strerror}", "from-file") from None
    how = "make it with `kubectl get events -A -o json`"
    try:
        page = decode_dump(data)
    except NotEvents as exc:
        raise RunFailed(f"--from-file {cfg.from_file} is not a dump of Events: {exc}; {how}", "from-file") from None
    except ValueError as exc:
        raise RunFailed(f"--from-file {cfg.from_file} is not an EventList or List in JSON ({exc}); {how}",
                        "from-file") from None
    if selector is not None:
        page.events = [(e, t) for e, t in page.events if selector.matches(e)]
    return page
