"""The Lease and the API client's edges: missing objects, HTML instead of the API, tokens, SIGTERM.

Everything runs the job through main() (or a real `python -m job` where a signal is the point)
against the Kubernetes API test server over HTTP.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from job import __version__
from job.cmd import UsageError
from job.kube import api_client, guard_tokens
from job.lease import Lease, decide, keep_trying
from job.logs import Redactor
from state.configmap import ConfigMapStore
from tests.conftest import LEASE, LEASE_PATH, NAMESPACE, Harness, legacy_event, put_install, wait_for
from tests.htmlpage import HtmlPage
from tests.kubeapi import KubeAPI
from tests.lokidouble import LokiDouble

ROOT = Path(__file__).resolve().parent.parent


# --- the job never creates what the install should have -------------------------------------------


def test_missing_lease_fails_with_how_to_create_it_and_nothing_is_created(h: Harness) -> None:
    h.seed(3)
    h.kube.delete_object("leases", NAMESPACE, LEASE)
    assert h.run() == 2  # the install creates it: a retry cannot help
    msg = h.one_error()
    assert f"Lease {NAMESPACE}/{LEASE} does not exist" in msg and "kubectl apply -f cronjob.yaml" in msg
    assert h.kube.get_object("leases", NAMESPACE, LEASE) is None
    assert not [r for r in h.kube.requests if r[0] != "GET"]
    assert h.loki.pushes == 0


def test_missing_namespace_is_one_line_that_names_it_with_exit_2(h: Harness) -> None:
    h.seed(3)
    assert h.run("run", "--namespace", "nope", state="configmap://nope/loki-event-sync-checkpoint") == 2
    msg = h.one_error()
    assert "Lease nope/loki-event-sync does not exist (or namespace nope does not: check --namespace)" in msg
    assert not [r for r in h.kube.requests if r[0] != "GET"]


# --- a proxy's HTML page instead of the API server ------------------------------------------------


@pytest.mark.parametrize("status", [502, 404, 200])
def test_html_from_the_api_server_is_one_line_with_the_status_and_no_page(
        status: int, loki: LokiDouble, tmp_path: Path) -> None:
    with HtmlPage(status) as page, KubeAPI() as unused:
        h = Harness(unused, loki, tmp_path)
        h.kubeconfig = page.write_kubeconfig(str(tmp_path / "kc-web"))
        assert h.run() == 1
        msg = h.one_error()
        assert "<" not in h.stderr and "nginx" not in h.stderr
        assert f"Lease {NAMESPACE}/{LEASE}" in msg and "HTML page titled '502 Bad Gateway'" in msg
        if status != 200:
            assert f"HTTP {status}" in msg and "proxy" in msg
        assert "does not exist" not in msg  # a proxy's 404 says nothing about the Lease
        assert [m for m, _ in page.requests] == ["GET"]  # nothing written on the strength of a web page


def test_status_through_an_html_page_fails_in_one_line(loki: LokiDouble, tmp_path: Path) -> None:
    with HtmlPage(502) as page, KubeAPI() as unused:
        h = Harness(unused, loki, tmp_path)
        h.kubeconfig = page.write_kubeconfig(str(tmp_path / "kc-web"))
        assert h.run(raw=["status", "--kubeconfig", h.kubeconfig]) == 1
        msg = h.one_error()
        assert msg.startswith("status failed: cannot read checkpoint") and "HTTP 502: Bad Gateway" in msg
        assert "<" not in h.stderr


# --- the Kubernetes token -----------------------------------------------------------------------

SECRET = "kube-SECRET-eyJhbGciOiJSUzI1NiJ9"


@pytest.mark.parametrize("where", ["token", "tokenFile"])
@pytest.mark.parametrize("brk", ["\n", "\r", "\r\n"])
def test_token_with_a_line_break_inside_is_exit_2_and_never_printed(
        where: str, brk: str, loki: LokiDouble, tmp_path: Path) -> None:
    token = f"{SECRET}{brk}second-half-XYZ"
    with KubeAPI(token=token) as kube:
        h = Harness(kube, loki, tmp_path)
        if where == "token":
            kube.write_kubeconfig(h.kubeconfig, token=token)
        else:
            (tmp_path / "token").write_text(token, newline="")
            kube.write_kubeconfig(h.kubeconfig, token_file=tmp_path / "token")
        assert h.run() == 2
        msg = h.one_error()
        assert "line break" in msg
        out = h.stdout + h.stderr
        assert SECRET not in out and "second-half-XYZ" not in out
        assert kube.requests == []  # refused before anything was sent


def test_token_file_with_surrounding_whitespace_works_on_every_request_as_with_kubectl(
        loki: LokiDouble, tmp_path: Path) -> None:
    with KubeAPI(token=SECRET) as kube:
        put_install(kube)
        h = Harness(kube, loki, tmp_path)
        (tmp_path / "token").write_text(f"  {SECRET}\n")  # kube-apiserver would refuse "Bearer   tok"
        kube.write_kubeconfig(h.kubeconfig, token_file=tmp_path / "token")
        h.seed(120)  # three pages: many requests, each must carry the stripped token
        assert h.run() == 0, h.stderr
        assert h.summary()["lines"] == 120
        assert len(kube.requests) > 5
        assert SECRET not in h.stdout + h.stderr


def test_every_rotated_in_cluster_token_is_stripped_and_learnt_by_the_redactor(tmp_path: Path) -> None:
    """The real in-cluster loader re-reads the token file; each token it hands the client is redacted."""
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader

    tokens = [f"rotated-{i}-token-abcdef" for i in range(3)]
    with KubeAPI(token=tokens[0]) as kube:
        kube.put_object("configmaps", {"metadata": {"name": "cp", "namespace": "ns"}})
        token_file = tmp_path / "token"
        (tmp_path / "ca.crt").write_text("unused: the test server speaks plain HTTP")
        token_file.write_text(tokens[0])
        host, port = kube.url.removeprefix("http://").split(":")
        loader = InClusterConfigLoader(str(token_file), str(tmp_path / "ca.crt"),
                                       environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})
        loader._token_refresh_period = dt.timedelta(0)  # re-read on every request, not once a minute
        cfg = client.Configuration()
        loader.load_and_set(cfg)
        loader.host = cfg.host = kube.url  # the loader builds https:// and re-sets it on every refresh
        redactor = Redactor([])
        guard_tokens(cfg, redactor.add)
        store = ConfigMapStore(client.ApiClient(cfg), "ns", "cp")
        for token in tokens:
            token_file.write_text(token + "\n")  # a trailing newline, as `echo` leaves it
            kube.token = token
            assert store.load()[0] is None  # accepted: the stripped, current token was sent
        assert redactor(" ".join(tokens)) == "*** *** ***"
        token_file.write_text("broken\nby-a-line-break-token")
        with pytest.raises(UsageError, match="line break") as err:  # exit 2 through main()
            store.load()
        assert "by-a-line-break" not in str(err.value)


# --- SIGTERM while the Lease is being taken ---------------------------------------------------------


class TermDuringAcquire:
    """From inside the API server: SIGTERM the child while its taking PATCH is in flight, and apply
    that PATCH late, as kube-apiserver may with a request whose client went away.

    ``order`` decides what reaches the store first: the interrupted taking write
    ("write-lands-first": the child's next write waits until it landed), or everything the child
    does after the signal ("look-comes-first": the taking write is held back until the child has
    exited). Conditions, not pauses, so the order holds on a machine of any speed.
    """

    def __init__(self, kube: KubeAPI, order: str) -> None:
        self.kube = kube
        self.order = order
        self.proc: subprocess.Popen[str] | None = None
        self.patches = 0

    def __call__(self, method: str, path: str) -> None:
        proc = self.proc
        if proc is None or method != "PATCH" or not path.startswith(LEASE_PATH):
            return
        self.patches += 1
        if self.patches == 1:
            os.kill(proc.pid, signal.SIGTERM)
            if self.order == "look-comes-first":
                wait_for(lambda: proc.poll() is not None, "the child to exit while its taking write is held")
        elif self.patches == 2 and self.order == "write-lands-first":
            wait_for(lambda: bool(holder_of(self.kube)), "the interrupted taking write to land")


def holder_of(kube: KubeAPI) -> str:
    return str(((kube.get_object("leases", NAMESPACE, LEASE) or {}).get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ["write-lands-first", "look-comes-first"])
def test_sigterm_while_the_lease_write_is_in_flight_never_leaves_it_held(order: str, h: Harness) -> None:
    h.seed(5)
    term = TermDuringAcquire(h.kube, order)
    h.kube.on_request = term
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = h.kube.connections()
    proc = subprocess.Popen([sys.executable, "-m", "job", *h.args("run")], cwd=h.tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    term.proc = proc
    _, err = proc.communicate(timeout=30)
    # A held-back taking write has reached the store once the server closed the child's connections.
    wait_for(lambda: not h.kube.connections() - before, "the child's last requests to be served")
    h.kube.on_request = None
    assert term.patches >= 2, err
    assert proc.returncode == 1, err
    assert "interrupted" in err and "Traceback" not in err
    spec = (h.kube.get_object("leases", NAMESPACE, LEASE) or {}).get("spec") or {}
    assert spec.get("holderIdentity", "") == ""  # free for the next run either way
    # Which write won: the taking one (then released), or the release's fence (the taking one got 409).
    assert spec.get("leaseTransitions", 0) == (1 if order == "write-lands-first" else 0)
    assert h.loki.pushes == 0


# --- someone else edits the Lease's metadata during a run -------------------------------------------


def test_a_gitops_label_added_mid_run_does_not_cost_the_lease(h: Harness) -> None:
    h.seed(60)
    done: list[bool] = []

    def relabel(method: str, path: str) -> None:
        if path.startswith("/api/v1/events") and not done:
            done.append(True)
            lease: dict[str, Any] = h.kube.get_object("leases", NAMESPACE, LEASE) or {}
            lease["metadata"].setdefault("labels", {})["argocd.argoproj.io/instance"] = "les"
            h.kube.put_object("leases", lease)  # a new resourceVersion, same holder

    h.kube.on_request = relabel
    assert h.run() == 0, h.stderr
    h.kube.on_request = None
    assert not [r for r in h.logs() if r["level"] in ("warning", "error")], h.stderr
    lease = h.kube.get_object("leases", NAMESPACE, LEASE) or {}
    assert lease["spec"]["holderIdentity"] == ""  # released at the relabelled version
    assert lease["metadata"]["labels"] == {"argocd.argoproj.io/instance": "les"}
    assert json.loads(h.stderr.splitlines()[-1])["summary"]["lines"] == 60


def test_a_label_added_between_reading_and_taking_the_lease_does_not_skip_the_run(h: Harness) -> None:
    h.seed(4)
    done: list[bool] = []

    def relabel(method: str, path: str) -> None:
        if path.startswith(LEASE_PATH) and method != "GET" and not done:
            done.append(True)
            lease: dict[str, Any] = h.kube.get_object("leases", NAMESPACE, LEASE) or {}
            lease["metadata"].setdefault("labels", {})["app.kubernetes.io/part-of"] = "observability"
            h.kube.put_object("leases", lease)  # the taking write's resourceVersion is now stale

    h.kube.on_request = relabel
    assert h.run() == 0, h.stderr
    h.kube.on_request = None
    assert done and "skipped" not in h.stderr
    assert h.summary()["lines"] == 4
    lease = h.kube.get_object("leases", NAMESPACE, LEASE) or {}
    assert lease["metadata"]["labels"] == {"app.kubernetes.io/part-of": "observability"}
    assert lease["spec"]["leaseTransitions"] == 1 and lease["spec"]["holderIdentity"] == ""


# --- the decision, as a table (client-go's leaderelection TestTryAcquireOrRenew) ---------------------------

T0 = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.timezone.utc)


def _spec(holder: str = "", renewed: dt.datetime | None = T0, duration: int = 60,
          transitions: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": duration,
                            "leaseTransitions": transitions}
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return spec


S = dt.timedelta(seconds=1)
# (what, spec, we hold it, now, action, transitions written when taking)
DECISIONS = [
    ("a Lease never held is taken", {}, False, T0, "take", 1),
    ("a released Lease is taken, counting the transition", _spec("", transitions=3), False, T0, "take", 4),
    ("another's, renewed just now, is skipped", _spec("other"), False, T0 + S, "skip", 0),
    ("another's, 1 us before its expiry (60 s + 5 s skew), is skipped", _spec("other"), False,
     T0 + 65 * S - dt.timedelta(microseconds=1), "skip", 0),
    ("another's, at its expiry, is taken over", _spec("other", transitions=7), False, T0 + 65 * S, "take", 8),
    ("a short Lease's skew allowance is its duration (2 s + 2 s)", _spec("other", duration=2), False, T0 + 4 * S,
     "take", 1),
    ("another's, never renewed, is taken", _spec("other", renewed=None), False, T0, "take", 1),
    ("ours from an earlier try is taken again without a transition", _spec("me", transitions=2), False, T0, "take", 2),
    ("ours while we hold it is renewed", _spec("me"), True, T0 + 30 * S, "renew", 0),
    ("ours, even past its expiry by our clock, is renewed while nobody took it", _spec("me"), True, T0 + 600 * S,
     "renew", 0),
    ("another's while we thought we held it is lost", _spec("other"), True, T0, "lost", 0),
    ("released by someone else while we held it is lost", _spec(""), True, T0, "lost", 0),
]


@pytest.mark.parametrize("what, spec, held, at, action, transitions", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_lease_decision(what: str, spec: dict[str, Any], held: bool, at: dt.datetime, action: str,
                        transitions: int) -> None:
    verdict = decide(spec, "me", at, held=held)
    assert verdict.action == action
    if action == "take":
        assert verdict.transitions == transitions
    if action in ("skip", "lost"):
        assert "other" in verdict.why or "nobody" in verdict.why


@pytest.mark.parametrize("after_s, retry", [(0, True), (39.999, True), (40, False), (60, False)])
def test_a_failed_renewal_is_retried_until_two_thirds_of_the_duration(after_s: float, retry: bool) -> None:
    assert keep_trying(T0, T0 + dt.timedelta(seconds=after_s), 60) is retry


# --- renewal against the API test server, on the injected clock ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def _taken(h: Harness) -> tuple[Lease, Clock]:
    clock = Clock()
    lease = Lease(api_client(h.kubeconfig, ""), NAMESPACE, LEASE, "me", 60, clock)
    assert lease.acquire() is None
    return lease, clock


def test_a_transient_renewal_error_inside_the_margin_keeps_the_lease(h: Harness) -> None:
    lease, clock = _taken(h)
    h.kube.fail("PATCH", "/leases/", 503, times=1)
    clock.now = T0 + dt.timedelta(seconds=39.999)
    assert lease.renew() == "retry" and not lease.lost
    clock.now = T0 + dt.timedelta(seconds=42)  # past T0's margin, but the retry succeeds
    assert lease.renew() == "renewed" and lease.still_held()
    h.kube.fail("PATCH", "/leases/", 503, times=1)
    clock.now = T0 + dt.timedelta(seconds=42 + 39)  # the margin counts from the last good renewal
    assert lease.renew() == "retry"
    assert h.kube.existing("leases", NAMESPACE, LEASE)["spec"]["holderIdentity"] == "me"


def test_a_renewal_failing_until_the_margin_ends_loses_the_lease(h: Harness) -> None:
    lease, clock = _taken(h)
    h.kube.fail("PATCH", "/leases/", 503, times=2)
    clock.now = T0 + dt.timedelta(seconds=20)
    assert lease.renew() == "retry"
    clock.now = T0 + dt.timedelta(seconds=40)
    assert lease.renew() == "lost" and lease.lost and not lease.still_held()


def test_a_renewal_that_finds_another_holder_is_lost_at_once_inside_the_margin(h: Harness) -> None:
    lease, clock = _taken(h)
    current = h.kube.existing("leases", NAMESPACE, LEASE)
    current["spec"]["holderIdentity"] = "thief"
    h.kube.put_object("leases", current)
    clock.now = T0 + dt.timedelta(seconds=1)
    assert lease.renew() == "lost"


def test_requests_to_the_api_server_name_the_job_as_their_user_agent(h: Harness) -> None:
    h.kube.put_event(legacy_event("pod-1.1"))
    assert h.run() == 0
    assert h.kube.user_agents and h.kube.user_agents == {f"loki-event-sync/{__version__}"}
