"""The ways a run ends badly, and the exit code each maps to."""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class RunFailed(Exception):
    """The run did not complete; the checkpoint was not advanced past what Loki acknowledged."""
