"""The counts a run reports: its closing log line, the checkpoint's last_run, and the metrics.

One Summary per run, filled in as the run goes and finished by main() in a ``finally``, so every
ending (ok, skipped, failed, terminated, deadline: job/failure.py) reports what really happened. A
new count is one field here; the log line, last_run and the metrics push pick it up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# What a skipped run reports: it did no sync, so its zeros are not figures (no ledger_entries=0).
SKIP_FIELDS = ("outcome", "cause", "exit_code", "duration_s")
# How the run ended, and what is known only after the save: never part of the checkpoint's last_run.
# resource_version: the checkpoint's list_rv is the one home of the next run's list floor.
NOT_IN_LAST_RUN = ("outcome", "cause", "exit_code", "watermark", "checkpoint_bytes", "checkpoint_limit_bytes",
                   "resource_version")


@dataclass
class Summary:
    listed: int = 0
    new: int = 0
    duplicates: int = 0
    filtered: int = 0
    out_of_window: int = 0
    before_horizon: int = 0
    clock_skew: int = 0  # shipped with a Loki timestamp other than their own implausible time
    malformed: int = 0
    lines: int = 0
    bytes: int = 0
    bytes_sent: int = 0
    rejected: int = 0
    truncated: int = 0
    loki_truncated: int = 0  # cut again to a max entry size of Loki's below --max-line-bytes, and re-sent
    metadata_dropped: int = 0  # re-sent without the structured metadata Loki refused as over its limits
    split_requests: int = 0  # extra requests splitting batches Loki refused (413, a 400 reason not known)
    pages: int = 0
    pushes: int = 0
    retries: int = 0
    pruned: int = 0
    ledger: int = 0  # entries in the checkpoint: as loaded, then as saved
    checkpoint_bytes: int = 0  # the saved checkpoint's size, and its store's limit (0: none)
    checkpoint_limit_bytes: int = 0
    gap_seconds: int = 0
    duration_s: float = 0.0
    cpu_s: float = 0.0  # the process's CPU time (resource.getrusage), start-up included
    # Occurrence time to the end of the push, over the occurrences shipped: the freshness Loki saw.
    delay_p50_s: float = 0.0
    delay_p95_s: float = 0.0
    watermark: str = ""
    # The newest resourceVersion the run's event lists were served at, and whether the list is known
    # complete and no older than the previous run's (job/kube.py Listing); the checkpoint keeps it as list_rv.
    resource_version: str = ""
    list_complete: bool = False
    list_requests: int = 0  # event list requests and their response bytes, the cost to the API server
    list_bytes: int = 0
    # --enrich (job/enrich.py): occurrences shipped with workload fields; those left without them, or
    # whose owner walk stopped short, by why; and the lookups' requests and response bytes.
    enriched: int = 0
    enrich_missing: int = 0
    enrich_forbidden: int = 0
    enrich_over_budget: int = 0
    enrich_errors: int = 0
    enrich_requests: int = 0
    enrich_bytes: int = 0
    outcome: str = ""  # job/failure.py OUTCOMES; set by main() when the run ends
    cause: str = ""  # the row of job/failure.py CAUSES
    exit_code: int = 0

    def figures(self) -> dict[str, Any]:
        """What this run reports: every field, or for a skip only how it ended and how long it took."""
        out = asdict(self)
        return {k: out[k] for k in SKIP_FIELDS} if self.outcome == "skipped" else out

    def last_run(self) -> dict[str, Any]:
        """The checkpoint's record of a successful run."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_IN_LAST_RUN}
