"""A batch: the entries of one push request, grouped by stream, with their size and count."""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from job import logproto
from job.lines import Labels

_enc = msgspec.json.Encoder()
# Per-entry JSON overhead besides the line: timestamp string, brackets, quotes.
_ENTRY_OVERHEAD = 30

Entry = tuple[int, str, "dict[str, str] | None"]


@dataclass
class Batch:
    streams: dict[Labels, list[Entry]] = field(default_factory=dict)
    size: int = 0
    count: int = 0

    def add(self, labels: Labels, ts: int, line: str, md: dict[str, str] | None) -> None:
        self.streams.setdefault(labels, []).append((ts, line, md))
        self.size += len(line) + _ENTRY_OVERHEAD
        self.count += 1

    def sorted_streams(self) -> list[tuple[Labels, list[Entry]]]:
        # Oldest first within each stream: Loki rejects entries too far behind the newest.
        for entries in self.streams.values():
            entries.sort(key=lambda e: (e[0], e[1]))
        return list(self.streams.items())

    def stream_objects(self) -> list[dict[str, object]]:
        return [{"stream": dict(labels), "values": [[str(ts), line, md] if md else [str(ts), line]
                                                    for ts, line, md in entries]}
                for labels, entries in self.sorted_streams()]

    def payload(self, push_format: str = "json") -> bytes:
        """The uncompressed request body in ``push_format`` (json or protobuf)."""
        if push_format == "protobuf":
            return logproto.push_request(self.sorted_streams())
        return _enc.encode({"streams": self.stream_objects()})

    def entries(self) -> list[tuple[Labels, Entry]]:
        return [(lb, e) for lb, es in self.sorted_streams() for e in es]

    def split(self) -> tuple[Batch, Batch]:
        flat = self.entries()
        halves = (Batch(), Batch())
        for i, (lb, (ts, line, md)) in enumerate(flat):
            halves[0 if i < len(flat) // 2 else 1].add(lb, ts, line, md)
        return halves
