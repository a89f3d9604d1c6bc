"""What a run touches outside itself: time, randomness, the standard streams, its identity."""
from __future__ import annotations

import random
import socket
import sys
from dataclasses import dataclass, field
from typing import IO

from job.clock import Clock
from job.logs import Redactor


@dataclass
class Deps:
    """Built once by main() (or by a test) and passed down; nothing below reads globals instead."""

    clock: Clock = field(default_factory=Clock)
    # Retry jitter and the Lease holder's suffix; a test seeds it to make both repeatable.
    random: random.Random = field(default_factory=random.Random)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[bytes] | None = None  # None: the process's stdin, looked up only for --from-file -
    identity: str = ""  # the Lease holder; "" = <hostname>-<8 random hex digits>, made on first use
    redactor: Redactor | None = None  # set by main(); learns credentials found while running

    def holder(self) -> str:
        if not self.identity:
            self.identity = f"{socket.gethostname()}-{self.random.getrandbits(32):08x}"
        return self.identity
