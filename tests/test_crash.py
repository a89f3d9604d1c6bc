"""Crash consistency: SIGKILL `python -m job run` at random and chosen moments, then let a run finish.

After every iteration Loki must hold every (uid, count) pair a finished run saw exactly once, and
nothing that the API never showed. SOAK_ITERATIONS raises the count (CI runs 30).
"""
from __future__ import annotations

import datetime as dt
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from job.lease import SKEW_S
from tests.conftest import LEASE_PATH, NAMESPACE, Harness, legacy_event, now, rfc, series_event, wait_for

ROOT = Path(__file__).resolve().parent.parent
ITERATIONS = int(os.environ.get("SOAK_ITERATIONS", "30"))
POINTS = ["random", "first-list", "after-push-before-save", "mid-save", "before-release"]
WRITES = ("PUT", "PATCH")  # a store or the Lease may replace or patch; a kill point must see either


class Killer:
    """Kills the child from inside the API server at a chosen request, before the server answers it."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.pid = 0
        self.lease_gets = 0
        self.fired = False

    def __call__(self, method: str, path: str) -> None:
        if self.fired or not self.pid:
            return
        hit = False
        if self.point == "first-list" and path.startswith("/api/v1/events"):
            hit = True
        elif path.startswith(LEASE_PATH) and method == "GET":
            self.lease_gets += 1
            # The second GET is the still-held check: after every push, before the save.
            hit = self.point == "after-push-before-save" and self.lease_gets == 2
        elif self.point == "mid-save" and method in WRITES and "/configmaps/" in path:
            hit = True  # the server still applies this write: the save lands, the process never knows
        elif self.point == "before-release" and method in WRITES and path.startswith(LEASE_PATH):
            hit = self.lease_gets >= 2
        if hit:
            self.fired = True
            os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.05)


def mutate(h: Harness, rnd: random.Random, step: int, ever: set[tuple[str, int]]) -> None:
    events = h.kube.events()
    for _ in range(rnd.randint(5, 40)):
        if rnd.random() < 0.7:
            h.kube.put_event(legacy_event(f"pod-{step}-{rnd.randrange(10**6)}.x", ns=f"ns-{rnd.randrange(4)}"))
        else:
            h.kube.put_event(series_event(f"dep-{step}-{rnd.randrange(10**6)}.y", count=rnd.choice([None, 2, 3])))
    for e in rnd.sample(events, min(len(events), rnd.randint(0, 15))):
        t = rfc(now() + dt.timedelta(seconds=rnd.randint(0, 2)))
        if e.get("series"):
            e["series"] = {"count": e["series"]["count"] + rnd.randint(1, 3), "lastObservedTime": t[:-1] + ".500000Z"}
        else:
            e["count"] = (e.get("count") or 1) + rnd.randint(1, 3)
            e["lastTimestamp"] = t
        h.kube.put_event(e)
    for e in rnd.sample(events, min(len(events), rnd.randint(0, 3))):
        h.kube.delete_event(e["metadata"]["namespace"], e["metadata"]["name"])
    ever |= h.visible()


def all_closed(h: Harness, before: set[socket.socket]) -> Callable[[], bool]:
    """Whether the API server closed every connection opened since `before` (all answered)."""
    return lambda: not h.kube.connections() - before


def shifted(by: dt.timedelta) -> Callable[[], dt.datetime]:
    return lambda: dt.datetime.now(dt.timezone.utc) + by


def finish(h: Harness) -> None:
    """A run that completes: on a clock just past the killed run's Lease expiry, it must take it over.

    The expiry is the Lease's renewTime + leaseDurationSeconds + skew allowance (job/lease.py), read
    from the Lease itself; the run's injected clock is moved just past it instead of the test
    waiting for it, so a slow machine changes nothing.
    """
    spec = h.kube.existing("leases", NAMESPACE, "loki-event-sync")["spec"]
    shift = dt.timedelta(0)
    if spec.get("holderIdentity") and spec.get("renewTime"):
        renewed = dt.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
        duration = int(spec.get("leaseDurationSeconds") or 0)
        expires = renewed + dt.timedelta(seconds=duration + min(SKEW_S, duration) + 1)
        shift = max(shift, expires - dt.datetime.now(dt.timezone.utc))
    assert h.run("run", "--lease-duration", "1s", clock=shifted(shift)) == 0, h.stderr
    assert "run skipped" not in h.stderr, h.stderr


@pytest.mark.timeout(max(300, ITERATIONS * 10))
def test_sigkill_at_any_moment_never_loses_or_duplicates(h: Harness) -> None:
    rnd = random.Random(int(os.environ.get("SOAK_SEED", "20261125")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ever: set[tuple[str, int]] = set()
    required: set[tuple[str, int]] = set()
    kills: Counter[str] = Counter()
    for step in range(ITERATIONS):
        mutate(h, rnd, step, ever)
        point = POINTS[step % len(POINTS)]
        killer = Killer(point)
        h.kube.on_request = killer
        before = h.kube.connections()
        proc = subprocess.Popen([sys.executable, "-m", "job", *h.args("run", "--lease-duration", "1s")],
                                cwd=h.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killer.pid = proc.pid
        if point == "random":
            time.sleep(rnd.uniform(0.0, 0.9))
            proc.kill()
            killer.fired = True
        proc.wait(timeout=60)
        # The server still serves what the dead run had sent (a save, a renewal, its release): wait
        # until it has closed every connection the run opened. A real successor starts only after
        # the Lease expired, long after; a successor on a moved clock must not race those writes.
        wait_for(all_closed(h, before), "the killed run's last requests to be served")
        h.kube.on_request = None
        kills[point if killer.fired and proc.returncode == -signal.SIGKILL else "finished-first"] += 1
        mutate(h, rnd, step, ever)
        required |= h.visible()
        finish(h)
        shipped = Counter(h.shipped())
        dupes = [p for p, c in shipped.items() if c > 1]
        assert not dupes, f"iteration {step} ({point}): duplicated {dupes[:3]}"
        assert required <= set(shipped), f"iteration {step} ({point}): lost {sorted(required - set(shipped))[:3]}"
        assert set(shipped) <= ever, f"iteration {step}: shipped pairs the API never showed"
    print(f"\ncrash iterations: {ITERATIONS}, kills by point: {dict(kills)}, pairs in Loki: {len(h.shipped())}")
    assert sum(v for k, v in kills.items() if k != "finished-first") >= ITERATIONS // 2
    # Every chosen moment was reached at least once: a request the Killer no longer recognises
    # would otherwise turn that kill point into a plain finished run without anyone noticing.
    missed = [p for p in POINTS[:ITERATIONS] if p != "random" and not kills[p]]
    assert not missed, f"kill points never reached: {missed}"
