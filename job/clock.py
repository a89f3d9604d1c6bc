"""Time as the job sees it: wall time, elapsed time, waiting and the CPU it used, in one object a test
can replace."""
from __future__ import annotations

import datetime as dt
import resource
import threading
import time
from dataclasses import dataclass
from typing import Callable


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _wait(seconds: float, stop: threading.Event) -> None:
    stop.wait(seconds)


def _cpu_s() -> float:
    """The CPU this process has used, user and system: the run's own, interpreter start-up included."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


@dataclass(frozen=True)
class Clock:
    """Everything that decides anything by time asks this, never the time module.

    The three go together so a fake can make a wait advance both readings, and a retry that
    waits out a Retry-After is checked against the time it waited, not the time the test took.
    ``wait(seconds, stop)`` returns early once ``stop`` is set, so a SIGTERM (which sets it) never
    waits out a retry.
    """

    now: Callable[[], dt.datetime] = _utc_now
    monotonic: Callable[[], float] = time.monotonic
    wait: Callable[[float, threading.Event], None] = _wait
    # Recorded in the checkpoint's run history, so a fake keeps its size the same from run to run.
    cpu: Callable[[], float] = _cpu_s
