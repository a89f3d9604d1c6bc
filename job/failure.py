"""Every way a command can end, the exit code each maps to, and the outcome a run reports.

The one table of them (CAUSES): main() maps whatever ended a command to a row here, the summary and
the metrics carry its outcome, and the shipped podFailurePolicy fails the Job at once on exactly the
codes no retry can fix (tests/test_failure.py holds every rendered install to this table).

    0  ok or skipped: nothing to do again
    1  the run failed, and a retry may help (the checkpoint was not advanced past what Loki took)
    2  usage or configuration: a retry cannot help until someone changes a setting or the install
"""
from __future__ import annotations

from dataclasses import dataclass

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
OUTCOMES = ("ok", "skipped", "failed", "terminated", "deadline")


@dataclass(frozen=True)
class Cause:
    code: int
    means: str
    outcome: str = "failed"


CAUSES: dict[str, Cause] = {
    "ok": Cause(EXIT_OK, "the run shipped what was new and saved the checkpoint", "ok"),
    "skipped": Cause(EXIT_OK, "another run holds the Lease: this one had nothing to do", "skipped"),
    "usage": Cause(EXIT_USAGE, "a bad flag or environment value, or a Kubernetes token with a line break"),
    "kubeconfig": Cause(EXIT_USAGE, "no usable kubeconfig, or an unknown --context"),
    "lease-missing": Cause(EXIT_USAGE, "the Lease, or the job's namespace, does not exist (the install creates it)"),
    "from-file": Cause(EXIT_USAGE, "--from-file is missing, unreadable, not JSON or not Events"),
    "forbidden": Cause(EXIT_USAGE, "RBAC refuses a request: a permission to grant"),
    "kube-api": Cause(EXIT_FAILED, "the Kubernetes API failed or could not be reached"),
    "loki": Cause(EXIT_FAILED, "Loki refused the push, or could not be reached within --retry-budget"),
    "store": Cause(EXIT_FAILED, "the checkpoint store failed, or another writer changed the checkpoint"),
    "lease-held": Cause(EXIT_FAILED, "a backfill found the Lease held by another run"),
    "lease-lost": Cause(EXIT_FAILED, "the Lease was lost during the run; the checkpoint was not saved"),
    "deadline": Cause(EXIT_FAILED, "the run reached its own --deadline and stopped before saving", "deadline"),
    "terminated": Cause(EXIT_FAILED, "SIGTERM (activeDeadlineSeconds, eviction) or Ctrl-C", "terminated"),
    "unexpected": Cause(EXIT_FAILED, "an error the job does not know: a bug, please report it"),
}


def retry_cannot_help() -> list[int]:
    """The exit codes a Job should fail on at once (its podFailurePolicy FailJob rule)."""
    return sorted({c.code for c in CAUSES.values() if c.code == EXIT_USAGE})


class RunFailed(Exception):
    """The run did not complete; ``cause`` names its row in CAUSES."""

    def __init__(self, message: str, cause: str = "unexpected") -> None:
        if cause not in CAUSES:
            raise ValueError(f"no such cause: {cause}")
        super().__init__(message)
        self.cause = cause


class RunSkipped(RunFailed):
    """Another run holds the Lease: the run ends at once, with exit 0 and outcome ``skipped``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "skipped")


def cause_of(exc: BaseException) -> str:
    """The row of CAUSES that ``exc`` ended the command with."""
    from job.cmd import UsageError
    from job.kube import KubeError
    from job.loki import PushError
    from state import StoreError

    if isinstance(exc, KeyboardInterrupt):  # job/__main__.py turns SIGTERM into this
        return "terminated"
    cause = getattr(exc, "cause", None)
    if isinstance(cause, str) and cause in CAUSES:
        return cause
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (UsageError, "usage"), (PushError, "loki"), (KubeError, "kube-api"), (StoreError, "store"))
    return next((name for kind, name in kinds if isinstance(exc, kind)), "unexpected")
