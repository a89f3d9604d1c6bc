"""How tests/e2e drives an install: the same scenario against a real cluster (kubectl and the Helm
library) or, here and in CI, against tests/kubeapi.py and the Loki double with the job as a real
`python -m job` process. A driver installs (the chart, or the kustomize install) into a fresh
namespace, makes events the way kubelet and controllers do, starts runs as Jobs from the CronJob,
and says which (uid, count) pairs the API server shows; tests/e2e/loki.py reads what Loki holds.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from job.manifest import backfill_job
from tools import chart, render

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
RELEASE = "loki-event-sync"
SKIPPED = "run skipped: "  # the summary line of a run that found the Lease held (job/main.py)


@dataclass
class Run:
    succeeded: bool
    log: str

    @property
    def skipped(self) -> bool:
        return SKIPPED in self.log


class Driver(Protocol):
    namespace: str
    cluster: str  # the `cluster` label this pass's runs write, so passes never see each other's lines
    loki_url: str  # where the test reads Loki's query API
    overlap_guaranteed: bool  # run_two_at_once truly overlaps the two runs (else it may serialise them)
    patience_s: float  # how long Loki may take to make an accepted push queryable

    def install(self, method: str) -> None: ...
    def make_events(self) -> None: ...
    def bump_counts(self) -> None: ...
    def visible(self) -> set[tuple[str, int]]: ...
    def run(self) -> Run: ...
    def backfill(self, since: dt.datetime) -> Run: ...
    def run_two_at_once(self) -> tuple[Run, Run]: ...
    def run_deleting_a_pod_midway(self) -> Run: ...
    def uninstall(self) -> dict[str, bool]: ...


def pairs(events: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """(uid, count) as the job counts: series.count, else count, else 1."""
    return {(e["metadata"]["uid"], (e.get("series") or {}).get("count") or e.get("count") or 1) for e in events}


def objects(method: str, namespace: str, values: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """What the install creates in NAMESPACE: the chart with VALUES, or deploy/base moved there."""
    if method == "chart":
        text = chart.render(values, namespace=namespace, name=RELEASE)
    else:
        where = tmp / "overlay"
        where.mkdir(parents=True, exist_ok=True)
        image = values.get("image") or {}
        images = (f"images:\n  - name: {render.IMAGE}\n    newName: {image['repository']}\n"
                  f"    newTag: {image['tag']}\n") if image else ""
        (where / "kustomization.yaml").write_text(
            f"namespace: {namespace}\nresources: [{os.path.relpath(BASE, where)}]\n{images}", encoding="utf-8")
        text = render.kustomize(where)
    return [d for d in yaml.safe_load_all(text) if d]


def backfill_manifest(method: str, installed: list[dict[str, Any]], values: dict[str, Any], namespace: str,
                      since: dt.datetime) -> dict[str, Any]:
    """The documented backfill of each install: the chart's backfill template (helm template
    --show-only), or `python -m job manifest backfill` over the kustomize render."""
    when = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    if method == "chart":
        docs = yaml.safe_load_all(chart.render({**values, "backfill": {"enabled": True, "since": when}},
                                               namespace=namespace, name=RELEASE))
        (job,) = [d for d in docs if d and d["kind"] == "Job"]
        return job
    (cj,) = [d for d in installed if d["kind"] == "CronJob"]
    return backfill_job(cj, when, "", dt.datetime.now(dt.timezone.utc).replace(microsecond=0))


def fresh_name() -> str:
    """A namespace, and the `cluster` label of its runs, that no earlier pass used."""
    return f"e2e-{uuid.uuid4().hex[:8]}"


def job_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m job ARGS` as the container runs it (ENTRYPOINT python -m job), from this checkout."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LOKI_EVENT_SYNC_", "KUBECONFIG"))}
    return subprocess.Popen([sys.executable, "-m", "job", *args], cwd=ROOT, env={**keep, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
