"""Every way a command ends, through main(): its exit code, and exactly one line saying what is wrong.

One row per cause of job/failure.py CAUSES (some causes more than once), each set up for real against
the Kubernetes API test server, the Loki double and files on disk. At --log-level ERROR what a
person or a log alert sees of a failed command is exactly one line on stderr: for a bad setting the
"error:" line, for a run its closing summary line, which says what went wrong and carries the outcome.
Then the Jobs' podFailurePolicy in every rendered install is held to the same table.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from job.failure import CAUSES, EXIT_USAGE, retry_cannot_help
from tests.conftest import LEASE, NAMESPACE, Harness, legacy_event
from tests.kubeapi import KubeAPI

ROOT = Path(__file__).resolve().parent.parent
Setup = Callable[[Harness, Path], list[str]]


def _closed_port() -> int:
    with socket.socket() as s:  # a port that was just free: nothing listens there any more
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(h: Harness, *extra: str) -> list[str]:
    return h.args("run", *extra)


def _after(prepare: Callable[[Harness], None]) -> Setup:
    """A run of the harness's arguments, once ``prepare`` has broken something."""
    def setup(h: Harness, _: Path) -> list[str]:
        prepare(h)
        return _run(h)
    return setup


def _file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _unreachable_api(h: Harness, tmp: Path) -> list[str]:
    with KubeAPI() as gone:
        kubeconfig = gone.write_kubeconfig(str(tmp / "gone"), namespace=NAMESPACE)
    return [*_run(h)[:1], "--kubeconfig", kubeconfig, *_run(h)[3:]]


def _held(h: Harness, _: Path) -> list[str]:
    from tests.conftest import now

    h.put_lease("busy-run", now(), 3600)
    return h.args("backfill", "--since", "1h")


def _stolen(h: Harness, _: Path) -> list[str]:
    from tests.conftest import now

    def steal(method: str, path: str) -> None:
        if path.startswith("/api/v1/events"):
            h.put_lease("thief", now())

    h.kube.on_request = steal
    return _run(h)


def _slow_list(h: Harness, _: Path) -> list[str]:
    def slow(method: str, path: str) -> None:  # each page "takes" a minute on the run's clock
        if path.startswith("/api/v1/events"):
            h.clock.skipped += 60

    h.kube.on_request = slow
    return _run(h, "--deadline", "90s")


# The promise, written out here rather than read from the table it checks: 2 when only a person can
# fix it (a setting, the install, a permission, the input file), 1 when the next try may succeed.
EXPECTED_CODE = {"usage": 2, "kubeconfig": 2, "lease-missing": 2, "from-file": 2, "forbidden": 2,
                 "kube-api": 1, "loki": 1, "store": 1, "lease-held": 1, "lease-lost": 1, "deadline": 1}
PODS = json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod",
                                                                  "metadata": {"name": "p"}}]})
# (why, setup, the environment, the cause it must end with)
CASES: list[tuple[str, Setup, dict[str, str], str]] = [
    ("a bad flag value", lambda h, t: _run(h, "--page-size", "0"), {}, "usage"),
    ("a bad environment value", lambda h, t: _run(h), {"LOKI_EVENT_SYNC_LABEL_STYLE": "fancy"}, "usage"),
    ("no Loki URL and no --dry-run", lambda h, t: ["run", "--kubeconfig", h.kubeconfig], {}, "usage"),
    ("no kubeconfig", lambda h, t: ["run", "--dry-run", "--kubeconfig", str(t / "no-such-kubeconfig")], {},
     "kubeconfig"),
    ("an unknown --context", lambda h, t: _run(h, "--context", "no-such-context"), {}, "kubeconfig"),
    ("a missing Lease", _after(lambda h: h.kube.delete_object("leases", NAMESPACE, LEASE)), {},
     "lease-missing"),
    ("a missing namespace", lambda h, t: h.args("run", "--namespace", "nope",
                                                state="configmap://nope/loki-event-sync-checkpoint"), {},
     "lease-missing"),
    ("a missing --from-file", lambda h, t: ["run", "--dry-run", "--from-file", str(t / "none.json")], {},
     "from-file"),
    ("a --from-file that is not JSON", lambda h, t: ["run", "--dry-run", "--from-file", _file(t, "x", "{not")], {},
     "from-file"),
    ("a --from-file of Pods", lambda h, t: ["run", "--dry-run", "--from-file", _file(t, "pods", PODS)], {},
     "from-file"),
    ("RBAC refuses the list", _after(lambda h: h.kube.forbid("list", "events")), {}, "forbidden"),
    ("the API server fails the list", _after(
        lambda h: h.kube.fail("GET", "/api/v1/events", 500, times=20)), {}, "kube-api"),
    ("the API server is unreachable", _unreachable_api, {}, "kube-api"),
    ("Loki is unreachable", lambda h, t: _run(h, "--loki-url", f"http://127.0.0.1:{_closed_port()}"), {}, "loki"),
    ("Loki refuses the whole push", _after(lambda h: h.loki.fail_next(400, times=1000, body="bad")),
     {}, "loki"),
    ("the checkpoint ConfigMap is missing", _after(
        lambda h: h.kube.delete_object("configmaps", NAMESPACE, "loki-event-sync-checkpoint")), {}, "store"),
    ("a backfill finds the Lease held", _held, {}, "lease-held"),
    ("the Lease is taken during the run", _stolen, {}, "lease-lost"),
    ("the run reaches its --deadline", _slow_list, {}, "deadline"),
]


@pytest.mark.parametrize("why, setup, env, cause", CASES, ids=[c[0] for c in CASES])
def test_each_failure_exits_with_its_code_and_says_so_in_one_line(
        why: str, setup: Setup, env: dict[str, str], cause: str, h: Harness, tmp_path: Path) -> None:
    for i in range(120):  # three pages, so a run has something to list and push
        h.kube.put_event(legacy_event(f"pod-{i}.{i:x}"))
    argv = [*setup(h, tmp_path), "--log-level", "ERROR"]
    code = h.run(raw=argv, env=env)
    h.kube.on_request = None
    assert code == EXPECTED_CODE[cause] == CAUSES[cause].code, h.stderr
    lines = h.stderr.splitlines()
    assert len(lines) == 1, h.stderr
    assert "Traceback" not in h.stderr and "unexpected" not in lines[0]
    if lines[0].startswith("error: "):  # a setting refused before anything ran
        assert cause == "usage"
        return
    record = json.loads(lines[0])
    assert record["level"] == "error" and record["msg"].startswith(f"{argv[0]} failed: ")
    summary = record["summary"]
    assert (summary["cause"], summary["exit_code"], summary["outcome"]) == (cause, code, CAUSES[cause].outcome)


def test_the_table_covers_every_cause_a_run_can_fail_with() -> None:
    tested = {c[3] for c in CASES}
    # ok and skipped are endings, terminated needs a signal (tests/test_metrics.py and test_lease.py),
    # and an unexpected error is a bug, not something to set up.
    assert set(CAUSES) - tested == {"ok", "skipped", "terminated", "unexpected"}
    assert len(CASES) >= 12


# --- the Jobs' podFailurePolicy ------------------------------------------------------------------------


def _job_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every Job spec an install ships. A new install adds its rendering here."""
    from tools import chart, render

    backfill = {"backfill": {"enabled": True, "since": "2026-11-25T08:00:00Z"}}
    out = []
    for where, text in (("deploy/base/cronjob.yaml", (ROOT / "deploy/base/cronjob.yaml").read_text()),
                        ("cronjob.yaml", (ROOT / "cronjob.yaml").read_text()),
                        ("kustomize deploy/install", render.kustomize(ROOT / "deploy" / "install")),
                        ("deploy/backfill-job.yaml", (ROOT / "deploy/backfill-job.yaml").read_text()),
                        ("helm chart", chart.render(None)),
                        ("helm chart, backfill", chart.render(backfill))):
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "CronJob":
                out.append((where, doc["spec"]["jobTemplate"]["spec"]))
            elif doc and doc.get("kind") == "Job":
                out.append((where, doc["spec"]))
    return out


def test_every_install_fails_the_job_at_once_on_exactly_the_codes_no_retry_can_fix() -> None:
    specs = _job_specs()
    assert {where for where, _ in specs} >= {"cronjob.yaml", "deploy/backfill-job.yaml", "kustomize deploy/install",
                                             "helm chart", "helm chart, backfill"}
    assert retry_cannot_help() == [EXIT_USAGE]
    for where, spec in specs:
        rules = spec["podFailurePolicy"]["rules"]
        fail_job = [r["onExitCodes"] for r in rules if r["action"] == "FailJob"]
        assert len(fail_job) == 1, where
        assert fail_job[0]["operator"] == "In" and fail_job[0]["containerName"] == "loki-event-sync", where
        assert sorted(fail_job[0]["values"]) == retry_cannot_help(), where
        # Exit 1 means a retry may help: it must count against backoffLimit, not fail the Job.
        retried = {c.code for c in CAUSES.values() if c.code not in retry_cannot_help() and c.code}
        assert not retried & set(fail_job[0]["values"]) and spec.get("backoffLimit", 6) > 0, where
