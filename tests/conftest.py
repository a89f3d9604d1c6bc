"""Shared fixtures: the Kubernetes API test server, the Loki double, and a harness that runs the job."""
from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import re
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from job.deps import Deps
from job.main import main
from state.base import MAGIC
from tests.kubeapi import KubeAPI
from tests.lokidouble import LokiDouble

NAMESPACE = "loki-event-sync"
LEASE = "loki-event-sync"
CM = "loki-event-sync-checkpoint"
STATE = f"configmap://{NAMESPACE}/{CM}"
CM_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CM}"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis judges data generation by the wall clock (HealthCheck.too_slow): on a loaded
    machine that is a failure about speed, not behaviour. Every property and fuzz suite inherits
    this default unless its own settings() say otherwise; deadlines are off there already."""
    from hypothesis import HealthCheck, settings

    settings.register_profile("loki-event-sync", suppress_health_check=[HealthCheck.too_slow], deadline=None)
    settings.load_profile("loki-event-sync")


def rfc(t: dt.datetime, micro: bool = False) -> str:
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


_RFC3339 = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z"')
EXAMPLE_DUMP = Path(__file__).resolve().parent.parent / "examples/events.json"


def recent_dump(tmp: Path, src: Path = EXAMPLE_DUMP, newest_age: dt.timedelta = dt.timedelta(minutes=5)) -> Path:
    """A copy of a real saved dump with every time moved by one offset, so that its newest time is
    `newest_age` before now: the events keep their shape and their times relative to each other,
    while Loki's reject_old_samples_max_age (7 days of the clock) never sees them age. The dump in
    examples/ stays the real one the README's demo reads."""
    text = src.read_text()
    times = [dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc) for m in _RFC3339.finditer(text)]
    shift = now() - newest_age - max(times)

    def moved(m: re.Match[str]) -> str:
        t = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc) + shift
        return f'"{t.strftime("%Y-%m-%dT%H:%M:%S")}{m.group(2) or ""}Z"'

    out = tmp / f"recent-{src.name}"
    out.write_text(_RFC3339.sub(moved, text))
    return out


def legacy_event(name: str, *, count: int = 1, ns: str = "default", kind: str = "Pod", type_: str = "Normal",
                 reason: str = "Started", message: str = "started container", last: dt.datetime | None = None,
                 uid: str | None = None) -> dict[str, Any]:
    """An old-recorder event: count, first/lastTimestamp to the second, no eventTime."""
    last = last or now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": uid or str(uuid.uuid4()),
                     "creationTimestamp": rfc(last)},
        "involvedObject": {"kind": kind, "namespace": ns, "name": name.split(".")[0], "apiVersion": "v1"},
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": rfc(last),
        "lastTimestamp": rfc(last),
        "count": count,
        "type": type_,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    }


def series_event(name: str, *, count: int | None = None, ns: str = "default", last: dt.datetime | None = None,
                 uid: str | None = None) -> dict[str, Any]:
    """A new-recorder event: eventTime in microseconds, series once it repeats, no count."""
    t = (last or now()).replace(microsecond=123456)
    e: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": uid or str(uuid.uuid4()), "creationTimestamp": rfc(t)},
        "involvedObject": {"kind": "Deployment", "namespace": ns, "name": name.split(".")[0], "apiVersion": "apps/v1"},
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set",
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": rfc(t, micro=True),
        "type": "Normal",
        "action": "ScaleUp",
        "reportingComponent": "deployment-controller",
        "reportingInstance": "deployment-controller-x",
    }
    if count is not None:
        e["series"] = {"count": count, "lastObservedTime": rfc(t, micro=True)}
    return e


def wait_for(condition: Callable[[], object], what: str, hang_guard_s: float = 60.0) -> None:
    """Poll until `condition()` holds, for a condition in another process or a server thread.

    Only where no injected clock can reach (a child process, a test server's own thread). The
    limit is a hang guard, not the assertion: a healthy run meets the condition in milliseconds,
    and a machine ten times slower still does long before the guard.
    """
    give_up = time.monotonic() + hang_guard_s
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting for {what} after {hang_guard_s:g}s"
        time.sleep(0.02)


FAKE_CPU_S = 0.25  # what FastClock says a run used: the checkpoint's history stays the same size


class FastClock:
    """The job's Clock for tests: sleeps are recorded and skipped, and elapsed time is only what was slept.

    monotonic() starts at the real reading and then advances by exactly the seconds the job slept,
    never by the seconds the machine took. So a retry budget runs out after the same retries on a
    fast machine and on a loaded one three times slower, and a test reads back what the job chose to
    wait (``sleeps``) instead of timing it. (A real socket timeout still takes real time; it does not
    count against the budget here, which only makes the budget more generous, never flaky.)
    """

    def __init__(self, now: Any = None) -> None:
        self.sleeps: list[float] = []
        self.skipped = 0.0
        self._now = now
        self._start = time.monotonic()  # never 0.0, which Progress reads as "not drawn yet"
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return self._now() if self._now is not None else dt.datetime.now(dt.timezone.utc)

    def monotonic(self) -> float:
        return self._start + self.skipped

    def cpu(self) -> float:
        return FAKE_CPU_S

    def wait(self, seconds: float, stop: threading.Event) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.skipped += seconds
        stop.wait(min(seconds, 0.01))  # still yield, so other threads run as they would while we wait


def patch_header(data: bytes, **fields: Any) -> bytes:
    """The same checkpoint with some header fields replaced, as damage or a bad writer would leave it."""
    _, version, hlen = struct.unpack_from(">4sBI", data)
    header = {**json.loads(data[9 : 9 + hlen]), **fields}
    head = json.dumps(header).encode()
    return struct.pack(">4sBI", MAGIC, version, len(head)) + head + data[9 + hlen :]


def lease_object(holder: str, renewed: dt.datetime, duration_s: int = 60, **spec: Any) -> dict[str, Any]:
    """The job's Lease as another holder (or "" once released) left it at ``renewed``."""
    at = rfc(renewed, micro=True)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NAMESPACE},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_s, "renewTime": at,
                     "acquireTime": at, **spec}}


def put_install(api: KubeAPI) -> None:
    """What the manifests create up front, so the job never needs the create verb: an empty Lease and
    an empty checkpoint ConfigMap."""
    api.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                              "metadata": {"name": LEASE, "namespace": NAMESPACE}, "spec": {}})
    api.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": CM, "namespace": NAMESPACE}})


class Harness:
    """Runs `python -m job` in-process through main(argv), against the test servers over HTTP.

    The whole API, in the order a test uses it:

    - arrange: ``seed(n)`` puts n fresh events; ``put_checkpoint(data)`` and ``put_lease(holder, at)``
      replace the install's ConfigMap and Lease; ``kube`` and ``loki`` are the servers themselves.
    - act: ``run(command, *flags)`` returns the exit code; ``args()`` is the argv it would use.
    - read: ``logs()``, ``summary()``, ``errors()``, ``checkpoint_bytes()``, ``shipped()``, ``visible()``;
      ``clock.sleeps`` holds what the run chose to wait.
    - assert: ``one_error()`` (exactly one error line and no traceback, returned), ``no_errors()``,
      ``assert_each_once()`` (every visible (uid, count) is in Loki exactly once).
    """

    def __init__(self, kube: KubeAPI, loki: LokiDouble, tmp: Path) -> None:
        self.kube = kube
        self.loki = loki
        self.tmp = tmp
        self.kubeconfig = kube.write_kubeconfig(str(tmp / "kubeconfig"), namespace=NAMESPACE)
        self.stdout = ""
        self.stderr = ""
        self.runs = 0

    # --- arrange

    def seed(self, n: int, prefix: str = "pod", ns: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """n old-recorder events named <prefix>-<i>, spread over ns-0..ns-2 unless ``ns`` is given. A
        new prefix per batch adds events instead of replacing the last batch's."""
        return [self.kube.put_event(legacy_event(f"{prefix}-{i}.{i:x}", ns=ns or f"ns-{i % 3}", **fields))
                for i in range(n)]

    def put_checkpoint(self, data: bytes) -> str:
        """Replace the checkpoint ConfigMap with one holding ``data``; returns the base64 stored."""
        blob = base64.b64encode(data).decode()
        self.kube.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": CM, "namespace": NAMESPACE},
                                            "binaryData": {"checkpoint": blob}})
        return blob

    def put_lease(self, holder: str, renewed: dt.datetime, duration_s: int = 60, **spec: Any) -> None:
        self.kube.put_object("leases", lease_object(holder, renewed, duration_s, **spec))

    # --- act

    def args(self, command: str = "run", *extra: str, state: str = STATE) -> list[str]:
        return [command, "--kubeconfig", self.kubeconfig, "--loki-url", self.loki.url, "--state", state,
                "--lease-duration", "15s", "--retry-budget", "3s", "--push-timeout", "2s", "--page-size", "50",
                *extra]

    def run(self, command: str = "run", *extra: str, state: str = STATE, env: dict[str, str] | None = None,
            clock: Any = None, raw: list[str] | None = None) -> int:
        out, err = io.StringIO(), io.StringIO()
        self.clock = FastClock(clock)
        # Seeded by the run's number: jitter repeats from one suite run to the next, while two runs of
        # one test still get different Lease holder names, as two pods would.
        self.runs += 1
        deps = Deps(stdout=out, stderr=err, clock=self.clock, random=random.Random(self.runs))  # type: ignore[arg-type]
        code = main(raw if raw is not None else self.args(command, *extra, state=state), env=env or {}, deps=deps)
        self.stdout, self.stderr = out.getvalue(), err.getvalue()
        return code

    # --- read

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def summary(self) -> dict[str, Any]:
        for rec in reversed(self.logs()):
            if "summary" in rec:
                return rec["summary"]
        raise AssertionError(f"no summary line in:\n{self.stderr}")

    def errors(self) -> list[str]:
        return [r["msg"] for r in self.logs() if r.get("level") == "error"]

    def checkpoint_bytes(self, ns: str = NAMESPACE) -> bytes | None:
        """The checkpoint the ConfigMap holds, or None before the first save."""
        cm = self.kube.get_object("configmaps", ns, CM) or {}
        blob = (cm.get("binaryData") or {}).get("checkpoint")
        return base64.b64decode(blob) if blob else None

    def shipped(self) -> list[tuple[str, int]]:
        """Every (uid, count) pair Loki holds, with repeats, from the JSON lines."""
        out = []
        for e in self.loki.entries():
            f = json.loads(e.line)
            if "uid" in f:
                out.append((f["uid"], f["count"]))
        return sorted(out)

    def visible(self) -> set[tuple[str, int]]:
        pairs = set()
        for e in self.kube.events():
            n = (e.get("series") or {}).get("count") or e.get("count") or 1
            pairs.add((e["metadata"]["uid"], n))
        return pairs

    # --- assert

    def one_error(self) -> str:
        """The single error line of a failed run: one the job knows how to explain (never "an unexpected
        ..."), no traceback anywhere, and (in the default JSON log format) every line of stderr a JSON
        record."""
        errs = self.errors()
        assert len(errs) == 1, f"expected exactly one error line, got {len(errs)}:\n{self.stderr}"
        assert "an unexpected " not in errs[0], errs[0]
        assert "Traceback" not in self.stderr and "Traceback" not in self.stdout
        assert all(line.startswith("{") for line in self.stderr.splitlines() if line.strip()), self.stderr
        return errs[0]

    def no_errors(self) -> None:
        assert self.errors() == [], self.stderr
        assert "Traceback" not in self.stderr

    def assert_each_once(self, *, rejected_uids: frozenset[str] = frozenset()) -> None:
        """Every visible (uid, count) is in Loki exactly once, except those of ``rejected_uids``,
        entries Loki refused as invalid."""
        shipped = self.shipped()
        dupes = [p for p, c in Counter(shipped).items() if c > 1]
        assert not dupes, f"duplicated in Loki: {dupes[:5]}"
        lost = {p for p in self.visible() if p[0] not in rejected_uids} - set(shipped)
        assert not lost, f"lost: {sorted(lost)[:5]}"


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        put_install(api)
        yield api


@pytest.fixture
def loki() -> Iterator[LokiDouble]:
    with LokiDouble() as double:
        yield double


@pytest.fixture
def h(kube: KubeAPI, loki: LokiDouble, tmp_path: Path) -> Harness:
    return Harness(kube, loki, tmp_path)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """S3 through real boto3 and HTTP: moto in server mode on loopback."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    server.stop()
