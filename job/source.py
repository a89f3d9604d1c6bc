"""Where a run's events come from: the API server's paged list, or a saved dump (--from-file)."""
from __future__ import annotations

import sys
from typing import Iterator

from job import kube
from job.cmd import Config
from job.connections import Connections
from job.deps import Deps
from job.events import Page, decode_page
from job.failure import RunFailed


def pages(cfg: Config, conn: Connections, deps: Deps, listing: kube.Listing | None = None) -> Iterator[Page]:
    """The run's pages; ``listing`` is filled in with what the API list was (kube.Listing)."""
    if cfg.from_file:
        yield _from_file(cfg, deps)
        return
    yield from kube.list_event_pages(
        conn.api(), page_size=cfg.page_size, field_selector=cfg.field_selector, timeout=cfg.api_timeout,
        decode=decode_page, namespaces=cfg.event_namespaces, list_from=cfg.list_from, listing=listing,
    )


def _from_file(cfg: Config, deps: Deps) -> Page:
    try:
        if cfg.from_file == "-":
            data = (deps.stdin or sys.stdin.buffer).read()
        else:
            with open(cfg.from_file, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise RunFailed(f"cannot read --from-file {cfg.from_file}: {exc.strerror}") from None
    try:
        return decode_page(data)
    except ValueError as exc:
        raise RunFailed(
            f"--from-file {cfg.from_file} is not an EventList or List in JSON ({exc}); "
            "make it with `kubectl get events -A -o json`"
        ) from None
