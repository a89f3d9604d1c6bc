"""Micro-benchmark of the ledger's hot paths (not a test; figures for docs/ledger.md and issue 13).

python tools/ledger_bench.py [N]: N real-shaped events (managedFields included), 500 per page.
Prints the decode, steady-state select, checkpoint encode/decode times and the ledger's memory.
"""
from __future__ import annotations

import gc
import json
import random
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from job.dedupe import NS, Ledger
from job.events import decode_page, undecoded_page
from job.filters import Filters
from job.selection import select
from job.summary import Summary
from state.base import decode, encode

T0 = 1_795_600_000


def event(i: int, rnd: random.Random) -> dict:
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 - rnd.randint(0, 3000)))
    return {
        "metadata": {"name": f"pod-{i}.{i:x}", "namespace": f"ns-{i % 40}",
                     "uid": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                     "resourceVersion": str(10_000 + i), "creationTimestamp": t,
                     "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": t,
                                        "fieldsType": "FieldsV1", "fieldsV1": {"f:count": {}, "f:firstTimestamp": {},
                                        "f:involvedObject": {}, "f:lastTimestamp": {}, "f:message": {}, "f:reason": {},
                                        "f:reportingComponent": {}, "f:reportingInstance": {},
                                        "f:source": {"f:component": {}, "f:host": {}}, "f:type": {}}}]},
        "involvedObject": {"kind": "Pod", "namespace": f"ns-{i % 40}", "name": f"pod-{i}", "uid": str(uuid.uuid4()),
                           "apiVersion": "v1", "resourceVersion": "123", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container app in pod " + "x" * 80,
        "source": {"component": "kubelet", "host": f"node-{i % 20}"}, "firstTimestamp": t, "lastTimestamp": t,
        "count": rnd.choice([1, 1, 1, 2, 7]), "type": "Warning", "eventTime": None, "reportingComponent": "kubelet",
        "reportingInstance": f"node-{i % 20}",
    }


def best(f: Callable[[], object], repeat: int = 3) -> float:
    out = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def main(n: int) -> None:
    rnd = random.Random(1)
    items = [event(i, rnd) for i in range(n)]
    pages = [json.dumps({"kind": "EventList", "metadata": {"resourceVersion": "9"}, "items": items[i:i + 500]}).encode()
             for i in range(0, n, 500)]
    print(f"N={n} pages={len(pages)} bytes={sum(map(len, pages)):,}")
    print(f"decode_page, all pages: {best(lambda: [decode_page(p) for p in pages]):.3f} s")
    decoded = [decode_page(p) for p in pages]
    from state.base import Checkpoint
    cp = Checkpoint()
    first = Ledger(cp, ttl_s=3600, now_ns=T0 * NS)
    for p in decoded:
        for _ in select(p, first, Filters(), Summary()):
            pass
    first.finish(complete=True)

    def steady() -> None:
        ledger = Ledger(cp, ttl_s=3600, now_ns=(T0 + 600) * NS)
        s = Summary()
        for p in decoded:
            for _ in select(p, ledger, Filters(), s):
                pass
        ledger.finish(complete=True)
        assert s.duplicates == n

    print(f"select + finish, nothing new: {best(steady):.3f} s")

    def steady_from_bytes(decode) -> float:  # type: ignore[no-untyped-def]
        def run() -> None:
            ledger = Ledger(cp, ttl_s=3600, now_ns=(T0 + 600) * NS)
            s = Summary()
            for data in pages:
                for _ in select(decode(data), ledger, Filters(), s):
                    pass
            ledger.finish(complete=True)
            assert s.duplicates == n
        return best(run)

    print(f"a run's decode + select, nothing new: decode_page {steady_from_bytes(decode_page):.3f} s, "
          f"adaptive {steady_from_bytes(undecoded_page):.3f} s")
    for share in (0.01, 0.05, 0.2, 1.0):  # some events bumped since: they ship, the rest are duplicates
        bumped = [dict(e, count=e["count"] + 1) if rnd.random() < share else e for e in items]
        pages[:] = [json.dumps({"kind": "EventList", "items": bumped[i:i + 500]}).encode() for i in range(0, n, 500)]

        def ships(decode) -> float:  # type: ignore[no-untyped-def]
            def run() -> None:
                ledger = Ledger(Checkpoint(ledger=dict(cp.ledger)), ttl_s=3600, now_ns=(T0 + 600) * NS)
                for data in pages:
                    for _ in select(decode(data), ledger, Filters(), Summary()):
                        pass
            return best(run)

        print(f"  {share:.0%} of the events new: decode_page {ships(decode_page):.3f} s,"
              f" adaptive {ships(undecoded_page):.3f} s")
    data = encode(cp)
    print(f"checkpoint: {len(cp.ledger):,} entries, {len(data):,} bytes; encode {best(lambda: encode(cp)):.3f} s, "
          f"decode {best(lambda: decode(data, 'x', now_ns=T0 * NS)):.3f} s")
    tracemalloc.start()
    encode(cp)
    print(f"encode peak allocation: {tracemalloc.get_traced_memory()[1] / 1e6:.1f} MB")
    tracemalloc.stop()
    decoded.clear()
    pages.clear()
    items.clear()
    gc.collect()
    tracemalloc.start()
    loaded = decode(data, "x", now_ns=T0 * NS)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"decoded ledger held: {cur / 1e6:.1f} MB ({cur / len(loaded.ledger):.0f} B/entry),"
          f" decode peak {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
