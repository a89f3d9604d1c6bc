"""Where a run's CPU goes: one `python -m job run` under cProfile, against the benchmark's servers.

    python -m bench.profile [--n 100000] [--second] [--top 25]

Seeds N events, serves them pre-serialised (bench.pages.PageServer) with a discarding Loki, runs
the job once (or twice with --second, profiling the run with nothing new), and prints the
functions with the most own time.
"""
from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.__main__ import NAMESPACE, PAGE, write_kubeconfig  # noqa: E402
from bench.events import make_event  # noqa: E402
from bench.pages import DiscardSink, PageServer, fetch_pages  # noqa: E402
from tests.kubeapi import KubeAPI  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="events (default: %(default)s)")
    p.add_argument("--second", action="store_true", help="profile the second run (nothing new)")
    p.add_argument("--top", type=int, default=25, help="functions to print (default: %(default)s)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, KubeAPI() as kube, DiscardSink() as sink:
        kube.put_object("leases", {"metadata": {"name": "loki-event-sync", "namespace": NAMESPACE}, "spec": {}})
        now = time.time()
        kube.put_events(make_event(i, now) for i in range(args.n))
        with PageServer(fetch_pages(kube.url, PAGE), kube.url) as pages:
            kc = write_kubeconfig(os.path.join(tmp, "kc"), pages.url)
            prof = os.path.join(tmp, "prof")
            job = ["run", "--kubeconfig", kc, "--loki-url", sink.url, "--state", f"file://{tmp}/cp",
                   "--page-size", str(PAGE), "--namespace", NAMESPACE]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            if args.second:
                subprocess.run([sys.executable, "-m", "job", *job], cwd=ROOT, env=env, check=True,
                               stderr=subprocess.DEVNULL)
            subprocess.run([sys.executable, "-m", "cProfile", "-o", prof, "-m", "job", *job], cwd=ROOT, env=env,
                           check=True, stderr=subprocess.DEVNULL)
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(args.top)
            print(f"profiled (the run's main thread; the lister thread's fetching is not in it): "
                  f"{stats.total_tt:.3f} s")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
