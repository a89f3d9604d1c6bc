"""The dry-run sink: takes batches as Loki would, and prints the streams it would push, one per line."""
from __future__ import annotations

from typing import IO

import msgspec

from job.batch import Batch
from job.transport import PushStats

_enc = msgspec.json.Encoder()


class DryRunSink:
    """The same interface as job.lokiclient.LokiClient, so a dry run goes through the same pipeline."""

    safe_url = "the dry run's output"

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.stats = PushStats()

    def send(self, tenant: str, batch: Batch) -> None:
        encoded = [_enc.encode(stream) for stream in batch.stream_objects()]
        self.out.write("".join(e.decode() + "\n" for e in encoded))
        self.stats.batches += 1
        self.stats.lines += batch.count
        self.stats.bytes_raw += sum(map(len, encoded))

    def finish(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
