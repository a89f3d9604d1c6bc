"""Pages and events so far, for a person watching a terminal (text logs only)."""
from __future__ import annotations

from typing import IO, Callable

from job.summary import Summary


class Progress:
    """Redrawn on one terminal line at most twice a second."""

    def __init__(self, out: IO[str], monotonic: Callable[[], float]) -> None:
        self.out = out
        self.monotonic = monotonic
        self.last = 0.0

    @staticmethod
    def wanted(log_format: str, out: IO[str]) -> bool:
        try:
            return log_format == "text" and out.isatty()
        except (AttributeError, ValueError):
            return False

    def show(self, s: Summary) -> None:
        now = self.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            self.out.write(f"\r  pages {s.pages}  events {s.listed}  new {s.new}  duplicates {s.duplicates} ")
            self.out.flush()

    def done(self) -> None:
        if self.last:
            self.out.write("\n")
