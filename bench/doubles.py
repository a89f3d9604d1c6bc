"""The test servers' own speed: how fast the Kubernetes API test server lists and the Loki double ingests.

    python -m bench.doubles [--events 20000] [--limit 500] [--batches 5] [--batch-entries 8000] [--json FILE]

These were assertions in the test suite (tests/test_kubeapi.py, tests/test_lokidouble.py) until a
slower machine failed them: a test asserts behaviour, a speed belongs here. The tests still call
list_all() and ingest() below at the same sizes and check that every event and entry arrived, so
this code cannot rot; only this script reads the clock.

Its figures go with the others in docs/performance.md. For the whole job, run `python -m bench`.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.pages import list_pages

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_EVENT = ROOT / "tests" / "data" / "example-event.json"
JSON_GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
NS = 1_000_000_000


def example_events(n: int) -> Iterator[dict[str, Any]]:
    """n copies of the example Event, each with its own name, in seven namespaces."""
    template = json.loads(EXAMPLE_EVENT.read_text(encoding="utf-8"))
    for i in range(n):
        yield {**template, "metadata": {"namespace": f"ns{i % 7}", "name": f"e.{i:06d}"}}


def list_all(url: str, token: str, limit: int) -> list[str]:
    """Every event name a paginated cluster-wide list returns, over one keep-alive connection."""
    import urllib3

    pages = list_pages(url, limit, pool=urllib3.PoolManager(maxsize=1), headers={"Authorization": f"Bearer {token}"})
    return [item["metadata"]["name"] for _, _, doc in pages for item in doc["items"]]


def batches(count: int, entries: int, start_ns: int) -> list[bytes]:
    """`count` gzipped push bodies of `entries` lines each (8000 lines are about 0.85 MB of JSON)."""
    out = []
    stamp = start_ns
    for b in range(count):
        values = []
        for i in range(entries):
            values.append([str(stamp), f"Normal Scheduled Pod/default/web-{b}-{i} assigned to node-{i % 7}",
                           {"uid": f"{b}-{i}"}])
            stamp += 1000
        doc = {"streams": [{"stream": {"namespace": "default", "type": "Normal"}, "values": values}]}
        out.append(gzip.compress(json.dumps(doc).encode()))
    return out


def ingest(url: str, bodies: list[bytes]) -> list[int]:
    """POST each body to /loki/api/v1/push in turn; the status codes."""
    import requests

    with requests.Session() as http:
        return [http.post(f"{url}/loki/api/v1/push", data=b, headers=JSON_GZIP, timeout=60).status_code
                for b in bodies]


def measure(events: int, limit: int, batch_count: int, batch_entries: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))  # run as a script: the doubles live in tests/
    from tests.kubeapi import KubeAPI
    from tests.lokidouble import LokiDouble

    out: dict[str, float] = {}
    with KubeAPI(token="bench") as api:
        api.put_events(example_events(events))
        t = time.perf_counter()
        names = list_all(api.url, "bench", limit)
        out["kubeapi_list_events_per_s"] = len(names) / (time.perf_counter() - t)
    with LokiDouble() as loki:
        bodies = batches(batch_count, batch_entries, time.time_ns() - 50 * 60 * NS)
        t = time.perf_counter()
        codes = ingest(loki.url, bodies)
        out["loki_ingest_entries_per_s"] = loki.accepted_entries / (time.perf_counter() - t)
        assert codes == [204] * batch_count, codes
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.doubles", description="Speeds of the test servers.")
    p.add_argument("--events", type=int, default=20_000, help="events to list (default 20000)")
    p.add_argument("--limit", type=int, default=500, help="page size of the list (default 500)")
    p.add_argument("--batches", type=int, default=5, help="push bodies for Loki (default 5)")
    p.add_argument("--batch-entries", type=int, default=8000, help="lines per push body (default 8000, ~0.85 MB)")
    p.add_argument("--json", default="", help="also write the figures to this file")
    args = p.parse_args(argv)
    figures = measure(args.events, args.limit, args.batches, args.batch_entries)
    for name, value in figures.items():
        print(f"{name}: {value:,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
