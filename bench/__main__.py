"""Benchmark: a real `python -m job run` against the repo's test servers on loopback.

    python -m bench [--sizes 1000,10000,50000,100000] [--json FILE] [--loki-url URL]

For each N it reports the job's wall time, events/s, CPU seconds, peak RSS, requests and bytes,
the steady-state cost of a second run with nothing new, and, for the same pages, the
parse-everything reference (json.loads over HTTP) and the naive path (client models, one push per
event). Then the load/save cost of a 50k-entry ledger in each store.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events import make_event  # noqa: E402
from tests.kubeapi import KubeAPI  # noqa: E402
from tests.lokidouble import LokiDouble  # noqa: E402

NAMESPACE = "loki-event-sync"
PAGE = 500
NAIVE_SAMPLE = 3000  # the naive path is slow; it runs on a sample and its rate is compared


def run_job(kube: KubeAPI, loki_url: str, kubeconfig: str, state: str, extra: list[str] | None = None) -> dict[str, Any]:
    first_request: list[float] = []
    kube.on_request = lambda method, path: first_request.append(time.perf_counter()) if not first_request else None
    api_before = len(kube.requests)
    hwm = os.path.join(os.path.dirname(state.removeprefix("file://")), "hwm")
    cmd = [sys.executable, "-m", "bench.peak", "run", "--kubeconfig", kubeconfig, "--loki-url", loki_url,
           "--state", state, "--page-size", str(PAGE), "--namespace", NAMESPACE, *(extra or [])]
    t0 = time.perf_counter()
    servers_cpu0 = time.process_time()  # only the test servers' threads run in this process meanwhile
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), BENCH_HWM_FILE=hwm))
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    servers_cpu = time.process_time() - servers_cpu0
    kube.on_request = None
    if proc.returncode != 0:
        raise SystemExit(f"job failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    summary = next(json.loads(line)["summary"] for line in reversed(err.decode().splitlines()) if '"summary"' in line)
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(int(Path(hwm).read_text()) / 1024, 1),
        "startup_s": round(first_request[0] - t0, 3) if first_request else None,
        "servers_cpu_s": round(servers_cpu, 3),
        "api_requests": len(kube.requests) - api_before,
        "summary": summary,
    }


_REFERENCE = """
import json, sys, time, requests
url, page = sys.argv[1], int(sys.argv[2])
session = requests.Session()
t0 = time.perf_counter()
token, n = "", 0
while True:
    params = {"limit": page, **({"continue": token} if token else {})}
    doc = json.loads(session.get(url + "/api/v1/events", params=params).content)
    n += len(doc["items"])
    token = doc["metadata"].get("continue", "")
    if not token:
        break
print(n / (time.perf_counter() - t0))
"""


def parse_everything(kube: KubeAPI) -> float:
    """The reference: fetch the same pages over HTTP and json.loads each one whole.

    It runs in a child process like the job, so neither competes with the servers for this
    process's GIL.
    """
    out = subprocess.run([sys.executable, "-c", _REFERENCE, kube.url, str(PAGE)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


def naive(kube: KubeAPI, loki_url: str, kubeconfig: str) -> float:
    """What the seed daemon does: the client's model objects, then one push per event."""
    import requests
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig, persist_config=False))
    session = requests.Session()
    t0 = time.perf_counter()
    done, token = 0, None
    while done < NAIVE_SAMPLE:
        lst = api.list_event_for_all_namespaces(limit=PAGE, _continue=token)
        for e in lst.items:
            t = e.last_timestamp or e.event_time or e.metadata.creation_timestamp
            line = json.dumps({"reason": e.reason, "message": e.message, "kind": e.involved_object.kind,
                               "name": e.involved_object.name, "count": e.count})
            body = {"streams": [{"stream": {"_namespace": e.metadata.namespace or "", "_type": e.type or ""},
                                 "values": [[str(int(t.timestamp() * 1e9)), line]]}]}
            session.post(f"{loki_url}/loki/api/v1/push", json=body)
            done += 1
        token = lst.metadata._continue
        if not token:
            break
    return done / (time.perf_counter() - t0)


def ledger_figures(tmp: str, entries: int) -> list[dict[str, Any]]:
    import random
    import uuid

    from kubernetes import config

    from state import Checkpoint, decode, encode, open_store

    w = int(time.time())
    rnd = random.Random(1)
    cp = Checkpoint(watermark_ns=w * 10**9, ledger={str(uuid.UUID(int=rnd.getrandbits(128), version=4)):
                                                    (rnd.choice([1, 1, 2, 9]), w - rnd.randint(0, 4200))
                                                    for _ in range(entries)})
    out = []
    with KubeAPI() as kube:
        kc = kube.write_kubeconfig(os.path.join(tmp, "kc-ledger"), namespace=NAMESPACE)
        api = config.new_client_from_config(config_file=kc, persist_config=False)
        # The install creates the checkpoint ConfigMap; the store only ever patches its key.
        kube.put_object("configmaps", {"metadata": {"name": "bench-cp", "namespace": NAMESPACE}})
        stores = {"file": f"file://{tmp}/ledger-cp", "configmap": f"configmap://{NAMESPACE}/bench-cp"}
        moto = _moto()
        if moto:
            stores["s3"] = f"s3://{moto[1]}/cp"
        for name, url in stores.items():
            store = open_store(url, kube=lambda: api, s3_endpoint_url=moto[0] if moto else None)
            t0 = time.perf_counter()
            data = encode(cp)
            store.save(data, None)
            t1 = time.perf_counter()
            raw, _ = store.load()
            decode(raw or b"", url)
            t2 = time.perf_counter()
            out.append({"store": name, "entries": entries, "bytes": len(data), "save_s": round(t1 - t0, 3),
                        "load_s": round(t2 - t1, 3)})
        if moto:
            moto[2].stop()
    return out


def _moto() -> tuple[str, str, Any] | None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    for k, v in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server._server.server_port}"  # type: ignore[attr-defined]
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bench")
    return url, "bench", server


def bench_size(n: int, tmp: str, loki_url: str | None) -> dict[str, Any]:
    with KubeAPI() as kube, LokiDouble() as loki:
        kube.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": "loki-event-sync", "namespace": NAMESPACE}, "spec": {}})
        now = time.time()
        for i in range(n):
            kube.put_event(make_event(i, now))
        kc = kube.write_kubeconfig(os.path.join(tmp, f"kc-{n}"), namespace=NAMESPACE)
        target = loki_url or loki.url
        state_path = os.path.join(tmp, f"cp-{n}")
        first = run_job(kube, target, kc, f"file://{state_path}")
        pushes, received = loki.pushes, loki.bytes_received
        second = run_job(kube, target, kc, f"file://{state_path}")
        ref = parse_everything(kube)
        naive_rate = naive(kube, loki.url, kc)
        s = first["summary"]
        rate = n / first["wall_s"]
        return {
            "n": n,
            "wall_s": first["wall_s"],
            "events_per_s": round(rate),
            "cpu_s": first["cpu_s"],
            "servers_cpu_s": first["servers_cpu_s"],
            "peak_rss_mb": first["peak_rss_mb"],
            "startup_s": first["startup_s"],
            "api_requests": first["api_requests"],
            "loki_requests": pushes if not loki_url else s["pushes"],
            "bytes_raw": s["bytes"],
            "bytes_sent": s["bytes_sent"] if loki_url else received,
            "checkpoint_bytes": os.path.getsize(state_path),
            "lines": s["lines"],
            "parse_everything_per_s": round(ref),
            "vs_parse_everything": round(rate / ref, 2),
            "naive_per_s": round(naive_rate),
            "vs_naive": round(rate / naive_rate, 1),
            "second_run_wall_s": second["wall_s"],
            "second_run_cpu_s": second["cpu_s"],
            "second_run_lines": second["summary"]["lines"],
        }


COLUMNS = [("n", "N"), ("wall_s", "wall s"), ("events_per_s", "ev/s"), ("cpu_s", "CPU s"),
           ("servers_cpu_s", "servers CPU s"), ("peak_rss_mb", "RSS MB"), ("startup_s", "start s"), ("api_requests", "API req"),
           ("loki_requests", "Loki req"), ("bytes_raw", "raw B"), ("bytes_sent", "gz B"),
           ("checkpoint_bytes", "ckpt B"), ("parse_everything_per_s", "json.loads ev/s"),
           ("vs_parse_everything", "x ref"), ("naive_per_s", "naive ev/s"), ("vs_naive", "x naive"),
           ("second_run_wall_s", "2nd wall s"), ("second_run_cpu_s", "2nd CPU s")]


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000,100000", help="event counts (default: %(default)s)")
    p.add_argument("--json", default="", help="also write the results as JSON to this file")
    p.add_argument("--loki-url", default="", help="push to this real Loki instead of the double")
    p.add_argument("--ledger-entries", type=int, default=50_000, help="ledger size for the store figures "
                   "(default: %(default)s; 0 skips them)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in sizes:
            rows.append(bench_size(n, tmp, args.loki_url or None))
            print(f"N={n}: {rows[-1]['events_per_s']} events/s", file=sys.stderr)
        ledger = ledger_figures(tmp, args.ledger_entries) if args.ledger_entries else []
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(table(rows, COLUMNS))
    if ledger:
        print()
        print(table(ledger, [("store", "store"), ("entries", "entries"), ("bytes", "bytes"), ("save_s", "save s"),
                             ("load_s", "load s")]))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "ledger": ledger}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
