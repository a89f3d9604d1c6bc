"""JSON+gzip(1) against protobuf+snappy for Loki pushes: the sender's CPU per event and the bytes on the wire.

    python -m bench.push_format [N] [--batch-bytes 1048576]

Builds N real-shaped events (bench.events), formats them as the job does (default labels, JSON
lines), and encodes them in batches the way the Pusher does, in one process, one format after the
other. CPU is process time (time.process_time) over the encoding and compression only, best of
three rounds; no network, so only the sender's cost is measured.
"""
from __future__ import annotations

import argparse
import json
import time

from bench.events import make_event
from job.batch import Batch
from job.events import decode_page
from job.lines import Formatter
from job.transport import compress as _compress


def _batches(n: int, batch_bytes: int, structured_metadata: bool) -> list[Batch]:
    now = time.time()
    page = decode_page(json.dumps({"items": [make_event(i, now) for i in range(n)]}).encode())
    fmt = Formatter(label_style="default", line_format="json", cluster="bench", max_line_bytes=261120,
                    structured_metadata=structured_metadata)
    batches, batch = [], Batch()
    for e, t_ns in page.events:
        batch.add(fmt.labels(e, ""), t_ns, fmt.line(e, 1), fmt.metadata(e) if structured_metadata else None)
        if batch.size >= batch_bytes:
            batches.append(batch)
            batch = Batch()
    if batch.count:
        batches.append(batch)
    return batches


def measure(n: int, batch_bytes: int, structured_metadata: bool) -> dict[str, dict[str, float]]:
    batches = _batches(n, batch_bytes, structured_metadata)
    out: dict[str, dict[str, float]] = {}
    for push_format in ("json", "protobuf"):
        best = float("inf")
        raw = wire = 0
        for _ in range(3):
            raw = wire = 0
            start = time.process_time()
            for b in batches:
                body = b.payload(push_format)
                sent = _compress(body, push_format)
                raw += len(body)
                wire += len(sent)
            best = min(best, time.process_time() - start)
        out[push_format] = {"cpu_us_per_event": round(best / n * 1e6, 2), "raw_bytes_per_event": round(raw / n, 1),
                            "wire_bytes_per_event": round(wire / n, 1), "requests": len(batches)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", nargs="?", type=int, default=50_000)
    p.add_argument("--batch-bytes", type=int, default=1024 * 1024)
    args = p.parse_args()
    for sm in (False, True):
        res = measure(args.n, args.batch_bytes, sm)
        print(f"N={args.n} structured_metadata={sm}")
        for name, r in res.items():
            print(f"  {name:9} CPU {r['cpu_us_per_event']:6.2f} us/event  raw {r['raw_bytes_per_event']:7.1f} B/event  "
                  f"wire {r['wire_bytes_per_event']:6.1f} B/event  requests {int(r['requests'])}")


if __name__ == "__main__":
    main()
