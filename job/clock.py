"""Time as the job sees it: wall time, elapsed time and sleeping, in one object a test can replace."""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Clock:
    """Everything that decides anything by time asks this, never the time module.

    The three go together so a fake can make a sleep advance both readings, and a retry that
    waits out a Retry-After is checked against the time it slept, not the time the test took.
    """

    now: Callable[[], dt.datetime] = _utc_now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
