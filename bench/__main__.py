"""Benchmark: real `python -m job run` child processes against servers on loopback, as ratios.

    python -m bench [--sizes 1000,10000,100000,200000] [--json FILE] [--loki-url URL] [--repeat 3]

Absolute times differ threefold between machines and with whoever else uses the cores, so every
target is a ratio of two figures measured in this one run (docs/performance.md):

* the floor: list + ``json.loads`` of every page (urllib3, a child process, its start-up not
  counted) against ``bench.pages.PageServer``, which serves the pages serialised up front;
* the job's whole run (start-up included) against the same PageServer, pushing to a Loki that
  discards (``DiscardSink``) and to the Loki double, with the servers' CPU share;
* cost per run against ``python -c "import kubernetes"``, and what each way of importing the
  client costs (CPU-s, RSS);
* memory: peak RSS minus the RSS once the job's modules are imported (bench/peak.py);
* steady state: a run with nothing new against the first run;
* the API server's side per run: requests, bytes, and lists served by etcd, for
  ``--list-from etcd`` and ``cache`` (watch cache paging by snapshots, 1.34+, and not paging, older).

Then the naive path (the client's models, one push per event, on a sample) and a 50k-entry
ledger's load and save in each store.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events import make_event  # noqa: E402
from bench.pages import DiscardSink, PageServer, fetch_pages  # noqa: E402
from tests.kubeapi import KubeAPI  # noqa: E402
from tests.lokidouble import LokiDouble  # noqa: E402

NAMESPACE = "loki-event-sync"
PAGE = 500
NAIVE_SAMPLE = 3000  # the naive path is slow; it runs on a sample and its rate is compared
NEW = 1000  # events added for the "1k new" run

# The targets of issue 13, each (key, what, limit, "<=" or ">=").
TARGETS = [
    ("nothing_new_10k_vs_import", "a run with nothing new at 10k events, CPU ÷ `import kubernetes`", 0.5, "<="),
    ("new_1k_vs_import", "a run with 1k new events (first run at 1k), CPU ÷ `import kubernetes`", 0.7, "<="),
    ("new_1k_on_10k_vs_import", "a run with 1k new on top of 10k listed, CPU ÷ `import kubernetes`", 0.7, "<="),
    ("floor_100k", "whole run vs list+json.loads floor at 100k (discarding Loki)", 1.3, ">="),
    ("floor_200k", "whole run vs list+json.loads floor at 200k (discarding Loki)", 1.3, ">="),
    ("memory_100k_mb", "peak RSS - RSS after imports at 100k, MB", 25, "<="),
    ("memory_growth_mb", "growth of that from 100k to 200k, MB", 15, "<="),
    ("steady_100k", "run with nothing new at 100k, CPU ÷ first run's CPU", 0.5, "<="),
]

IMPORT_OPTIONS = [
    ("python -c pass", "pass"),
    ("import kubernetes (the whole client)", "import kubernetes"),
    ("lean client, in-cluster config",
     ("from job import kube; kube.lean_kubernetes(); "
      "import kubernetes.client.api_client, kubernetes.client.api.core_v1_api, "
      "kubernetes.client.api.coordination_v1_api, kubernetes.config.incluster_config")),
    ("lean client, kubeconfig (kube_config: contexts, exec, OIDC)",
     ("from job import kube; kube.lean_kubernetes(); "
      "import kubernetes.client.api_client, kubernetes.client.api.core_v1_api, "
      "kubernetes.client.api.coordination_v1_api, kubernetes.config.kube_config")),
    ("the job's imports, lean client", "from job import kube; kube.lean_kubernetes(); import job.sync, job.main"),
    ("the job's imports, lean client, its modules compiled (.pyc)",
     "from job import kube; kube.lean_kubernetes(); import job.sync, job.main"),
    ("the job's imports, whole client", "import kubernetes, job.sync, job.main"),
    ("urllib3 alone (no official client; reference only)", "import urllib3"),
]


def _child_cpu(args: list[str], path: Path = ROOT) -> tuple[float, int, bytes]:
    """(CPU-s, max RSS kB, stdout) of one child process, importing the job from `path`."""
    proc = subprocess.Popen(args, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(path)))
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args} failed")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out


_HWM = "\nprint(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1])"


def import_costs(repeat: int) -> list[dict[str, Any]]:
    """CPU-s and RSS of each way to import the client: the median of `repeat` fresh interpreters."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # With PYTHONDONTWRITEBYTECODE=1 (set here, and in the image) nothing caches the job's own
        # modules' bytecode, so every run compiles them from source; a copy compiled up front shows
        # what `python -m compileall` at image build time would save.
        for package in ("job", "state"):
            shutil.copytree(ROOT / package, Path(tmp) / package)
        subprocess.run([sys.executable, "-m", "compileall", "-q", tmp], check=True)
        for what, code in IMPORT_OPTIONS:
            rows.append(_import_cost(what, code, Path(tmp) if "compiled" in what else ROOT, repeat))
    return rows


def _import_cost(what: str, code: str, path: Path, repeat: int) -> dict[str, Any]:
    cpu, rss = [], []
    for _ in range(repeat):
        # ru_maxrss is carried over from this (large) process across fork and exec: read VmHWM.
        c, _, out = _child_cpu([sys.executable, "-c", code + _HWM], path)
        cpu.append(c)
        rss.append(int(out))
    return {"option": what, "cpu_s": round(statistics.median(cpu), 3),
            "rss_mb": round(statistics.median(rss) / 1024, 1)}


def write_kubeconfig(path: str, server: str) -> str:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "b",
              "clusters": [{"name": "b", "cluster": {"server": server}}],
              "users": [{"name": "b", "user": {}}],
              "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b", "namespace": NAMESPACE}}]}
    Path(path).write_text(json.dumps(config))
    return path


def run_job(api: Any, loki_url: str, kubeconfig: str, state: str, extra: list[str] | None = None) -> dict[str, Any]:
    """One `python -m job run` child: wall, CPU, memory, start-up, and what the servers spent meanwhile."""
    hwm = os.path.join(os.path.dirname(state.removeprefix("file://")), "hwm")
    cmd = [sys.executable, "-m", "bench.peak", "run", "--kubeconfig", kubeconfig, "--loki-url", loki_url,
           "--state", state, "--page-size", str(PAGE), "--namespace", NAMESPACE, *(extra or [])]
    api.first_request = None
    t0 = time.perf_counter()
    servers_cpu0 = time.process_time()  # only the servers' threads run in this process meanwhile
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), BENCH_HWM_FILE=hwm))
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    servers_cpu = time.process_time() - servers_cpu0
    if code != 0:
        raise SystemExit(f"job failed ({code}):\n{err.decode()[-2000:]}")
    summary = next(json.loads(line)["summary"] for line in reversed(err.decode().splitlines()) if '"summary"' in line)
    mem = json.loads(Path(hwm).read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mb": round(mem["hwm_kb"] / 1024, 1),
        "run_rss_mb": round((mem["hwm_kb"] - mem["imports_kb"]) / 1024, 1),
        "startup_s": round(api.first_request - t0, 3) if api.first_request else None,
        "servers_cpu_s": round(servers_cpu, 3),
        "servers_share": round(servers_cpu / (servers_cpu + cpu), 2) if cpu + servers_cpu else 0.0,
        "summary": summary,
    }


_FLOOR = """
import sys, time
from bench.pages import list_pages
url, page = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
n = sum(len(doc["items"]) for _, _, doc in list_pages(url, page))
print(n / (time.perf_counter() - t0))
"""


def floor(url: str, repeat: int) -> float:
    """The floor: list every page and json.loads it whole, in a child process (its start-up not
    counted), against the pre-serialised pages; the best of `repeat`, the floor being a bound."""
    return max(float(_child_cpu([sys.executable, "-c", _FLOOR, url, str(PAGE)])[2]) for _ in range(repeat))


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
    for k, v in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                 ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bench")
    return url, "bench", server


class _KubeFirstRequest:
    """KubeAPI's on_request hook as a `first_request` attribute, like the bench servers have."""

    def __init__(self, kube: KubeAPI) -> None:
        self.kube = kube
        self.first_request: float | None = None
        kube.on_request = self._hook

    def _hook(self, method: str, path: str) -> None:
        if self.first_request is None:
            self.first_request = time.perf_counter()


def api_cost(kube: KubeAPI, sink: DiscardSink, kc: str, state: str, mode: str, watch_cache: str) -> dict[str, Any]:
    """A run with nothing new in one --list-from mode: what it cost the API server."""
    kube.watch_cache = watch_cache
    requests0, bytes0, served0 = len(kube.requests), kube.bytes_sent, len(kube.served_from)
    r = run_job(_KubeFirstRequest(kube), sink.url, kc, state, ["--list-from", mode])
    kube.on_request = None
    served = kube.served_from[served0:]
    return {"mode": mode if mode == "etcd" else f"cache ({watch_cache})",
            "api_requests": len(kube.requests) - requests0,
            "list_requests": len(served), "etcd_lists": served.count("etcd"),
            "api_mb": round((kube.bytes_sent - bytes0) / 1e6, 1), "cpu_s": r["cpu_s"],
            "peak_rss_mb": r["peak_rss_mb"], "complete": r["summary"].get("list_complete")}


def bench_size(n: int, tmp: str, loki_url: str | None, repeat: int, api_modes: bool) -> dict[str, Any]:
    with KubeAPI() as kube, LokiDouble() as loki, DiscardSink() as sink:
        kube.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": "loki-event-sync", "namespace": NAMESPACE}, "spec": {}})
        now = time.time()
        kube.put_events(make_event(i, now) for i in range(n))
        kc = kube.write_kubeconfig(os.path.join(tmp, f"kc-{n}"), namespace=NAMESPACE)
        cp_sink, cp_loki = f"file://{tmp}/cp-{n}-sink", f"file://{tmp}/cp-{n}-loki"
        with PageServer(fetch_pages(kube.url, PAGE), kube.url) as pages:
            kc_pages = write_kubeconfig(os.path.join(tmp, f"kc-pages-{n}"), pages.url)
            floor_rate = floor(pages.url, repeat)
            pages.requests = 0
            pushes_before = sink.requests
            first = run_job(pages, sink.url, kc_pages, cp_sink)
            requests_first = pages.requests
            loki_requests_first = sink.requests - pushes_before  # the later runs push to the same sink
            with_loki = run_job(pages, loki_url or loki.url, kc_pages, cp_loki)
            second = run_job(pages, sink.url, kc_pages, cp_sink)
        kube.put_events(make_event(n + i, now) for i in range(NEW))
        plus = run_job(_KubeFirstRequest(kube), sink.url, kc, cp_sink)
        kube.on_request = None
        modes = []
        if api_modes:
            modes = [api_cost(kube, sink, kc, cp_sink, "etcd", "snapshot"),
                     api_cost(kube, sink, kc, cp_sink, "cache", "snapshot"),
                     api_cost(kube, sink, kc, cp_sink, "cache", "unpaginated")]
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
            "run_rss_mb": first["run_rss_mb"],
            "startup_s": first["startup_s"],
            "api_requests": requests_first,
            "loki_requests": loki_requests_first,
            "bytes_raw": s["bytes"],
            "bytes_sent": s["bytes_sent"],
            "checkpoint_bytes": os.path.getsize(cp_sink.removeprefix("file://")),
            "lines": s["lines"],
            "floor_per_s": round(floor_rate),
            "vs_floor": round(rate / floor_rate, 2),
            "loki_wall_s": with_loki["wall_s"],
            "loki_vs_floor": round(n / with_loki["wall_s"] / floor_rate, 2),
            "loki_servers_share": with_loki["servers_share"],
            "naive_per_s": round(naive_rate),
            "vs_naive": round(rate / naive_rate, 1),
            "second_run_wall_s": second["wall_s"],
            "second_run_cpu_s": second["cpu_s"],
            "second_run_lines": second["summary"]["lines"],
            "steady_ratio": round(second["cpu_s"] / first["cpu_s"], 2),
            "plus_1k_cpu_s": plus["cpu_s"],
            "plus_1k_lines": plus["summary"]["lines"],
            "api_modes": modes,
        }


COLUMNS = [("n", "N"), ("wall_s", "wall s"), ("events_per_s", "ev/s"), ("cpu_s", "CPU s"),
           ("servers_cpu_s", "servers CPU s"), ("peak_rss_mb", "RSS MB"), ("run_rss_mb", "run RSS MB"),
           ("startup_s", "start s"), ("api_requests", "API req"), ("loki_requests", "Loki req"),
           ("bytes_sent", "gz B"), ("checkpoint_bytes", "ckpt B"), ("floor_per_s", "floor ev/s"),
           ("vs_floor", "x floor"), ("loki_vs_floor", "x floor (double)"), ("loki_servers_share", "double's CPU share"),
           ("vs_naive", "x naive"), ("second_run_cpu_s", "nothing new CPU s"), ("steady_ratio", "÷ first"),
           ("plus_1k_cpu_s", "+1k new CPU s")]


def targets(rows: list[dict[str, Any]], imports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_n = {r["n"]: r for r in rows}
    kubernetes_cpu = next(r["cpu_s"] for r in imports if r["option"].startswith("import kubernetes"))
    got: dict[str, float] = {}
    if 10_000 in by_n:
        got["nothing_new_10k_vs_import"] = by_n[10_000]["second_run_cpu_s"] / kubernetes_cpu
        got["new_1k_on_10k_vs_import"] = by_n[10_000]["plus_1k_cpu_s"] / kubernetes_cpu
    if 1000 in by_n:
        got["new_1k_vs_import"] = by_n[1000]["cpu_s"] / kubernetes_cpu
    for n, key in ((100_000, "floor_100k"), (200_000, "floor_200k")):
        if n in by_n:
            got[key] = by_n[n]["vs_floor"]
    if 100_000 in by_n:
        got["memory_100k_mb"] = by_n[100_000]["run_rss_mb"]
        got["steady_100k"] = by_n[100_000]["steady_ratio"]
        if 200_000 in by_n:
            got["memory_growth_mb"] = by_n[200_000]["run_rss_mb"] - by_n[100_000]["run_rss_mb"]
    out = []
    for key, what, limit, op in TARGETS:
        if key in got:
            value = got[key]
            met = value <= limit if op == "<=" else value >= limit
            out.append({"target": what, "limit": f"{op} {limit}", "measured": round(value, 2),
                        "met": "met" if met else "missed"})
    return out


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000,200000", help="event counts (default: %(default)s)")
    p.add_argument("--json", default="", help="also write the results as JSON to this file")
    p.add_argument("--loki-url", default="", help="push the 'Loki double' runs to this real Loki instead")
    p.add_argument("--repeat", type=int, default=3,
                   help="repeats of the floor and of each import (default: %(default)s)")
    p.add_argument("--no-api-modes", action="store_true", help="skip the --list-from runs")
    p.add_argument("--ledger-entries", type=int, default=50_000, help="ledger size for the store figures "
                   "(default: %(default)s; 0 skips them)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    imports = import_costs(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in sizes:
            rows.append(bench_size(n, tmp, args.loki_url or None, args.repeat, not args.no_api_modes))
            print(f"N={n}: {rows[-1]['events_per_s']} events/s, {rows[-1]['vs_floor']}x the floor", file=sys.stderr)
        ledger = ledger_figures(tmp, args.ledger_entries) if args.ledger_entries else []
        from bench import enrich  # what --enrich adds at 10k listed, 1.7k new (bench/enrich.py)

        enriching = enrich.measure(tmp)["runs"] if 10_000 in sizes else []
        from bench import plan_cost  # plan --from-cluster against a run with nothing new (bench/plan_cost.py)

        plan = plan_cost.measure(10_000 if 10_000 in sizes else max(sizes), tmp, args.repeat)
    imports_after = import_costs(args.repeat)  # again at the end: the spread says how noisy the machine was
    for before, after in zip(imports, imports_after, strict=True):
        before["cpu_s_end"] = after["cpu_s"]
    goals = targets(rows, imports)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(table(rows, COLUMNS))
    print()
    modes = [{"n": r["n"], **m} for r in rows for m in r["api_modes"]]
    if modes:
        print(table(modes, [("n", "N"), ("mode", "--list-from"), ("api_requests", "API requests"),
                            ("list_requests", "list requests"), ("etcd_lists", "served by etcd"),
                            ("api_mb", "API MB"), ("cpu_s", "job CPU s"), ("peak_rss_mb", "job RSS MB"),
                            ("complete", "list complete")]))
        print()
    print(table(imports, [("option", "import"), ("cpu_s", "CPU s"), ("cpu_s_end", "CPU s (at the end)"),
                          ("rss_mb", "RSS MB")]))
    print()
    print(table(goals, [("target", "target"), ("limit", "limit"), ("measured", "measured"), ("met", "")]))
    if ledger:
        print()
        print(table(ledger, [("store", "store"), ("entries", "entries"), ("bytes", "bytes"), ("save_s", "save s"),
                             ("load_s", "load s")]))
    if enriching:
        print()
        print(table(enriching, enrich.COLUMNS))
    print()
    print(table([plan], plan_cost.COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "imports": imports, "targets": goals,
                                               "ledger": ledger, "enrich": enriching, "plan": plan}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
