"""The e2e driver for a real cluster (E2E_KUBECONFIG; kind in .github/workflows/e2e.yml): the chart
installed with the Helm library (helm-python-sdk, the library `helm` itself is built on) or the
kustomize install applied with kubectl, into a fresh namespace; real pods that fail to pull and
crash, a Deployment scaled; runs as `kubectl create job --from=cronjob/loki-event-sync`.

Environment: E2E_KUBECONFIG, E2E_LOKI_URL (where this process queries Loki), E2E_LOKI_PUSH_URL
(where the job pushes, as seen from the cluster; default E2E_LOKI_URL), E2E_IMAGE (repository:tag
of the image to run, default the chart's; a kind-loaded tag other than latest needs no pull)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.drivers import RELEASE, Run, backfill_manifest, fresh_name, objects, pairs
from tools import render

HANG_GUARD_S = 300  # a Job (pod start, image present, one run) that has not finished by then is hung


class ClusterDriver:
    # Two Jobs created back to back may still run one after the other on a real cluster (a run takes
    # about a second); the scenario then only asserts that neither shipped anything twice.
    overlap_guaranteed = False
    patience_s = 60.0  # Loki may take a moment to make a push queryable

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.kubeconfig = os.environ["E2E_KUBECONFIG"]
        self.loki_url = os.environ["E2E_LOKI_URL"]
        self.push_url = os.environ.get("E2E_LOKI_PUSH_URL") or self.loki_url
        image = os.environ.get("E2E_IMAGE", "")
        self.image = dict(zip(("repository", "tag"), image.rsplit(":", 1), strict=True)) if image else {}
        self.image_ref = image
        self.namespace = self.cluster = fresh_name()
        self.method = ""
        self.installed: list[dict[str, Any]] = []
        self.values: dict[str, Any] = {}
        self.runs = 0

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run([render.kubectl(), "--kubeconfig", self.kubeconfig, "-n", self.namespace, *args],
                              input=stdin, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
        assert proc.returncode == 0 or not check, f"kubectl {' '.join(args)}: {proc.stderr.strip()}"
        return proc.stdout

    def apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def close(self) -> None:
        self.kubectl("delete", "namespace", self.namespace, "--ignore-not-found", "--wait=false", check=False)

    # --- install ---------------------------------------------------------------------------------

    def install(self, method: str) -> None:
        self.method = method
        self.values = {"settings": {"cluster": self.cluster}, **({"image": self.image} if self.image else {})}
        self.kubectl("create", "namespace", self.namespace)
        self.kubectl("create", "secret", "generic", "loki-event-sync-secret",
                     f"--from-literal=LOKI_EVENT_SYNC_LOKI_URL={self.push_url}")
        self.installed = objects(method, self.namespace, self.values, self.tmp)
        if method == "chart":
            import helm_python

            with helm_python.Config(kubeconfig_path=self.kubeconfig, namespace=self.namespace) as cfg:
                cfg.install(str(render.ROOT / "charts" / "loki-event-sync"), RELEASE, self.values,
                            namespace=self.namespace, timeout=HANG_GUARD_S)
            return
        self.kubectl("create", "configmap", "loki-event-sync-config",
                     f"--from-literal=LOKI_EVENT_SYNC_CLUSTER={self.cluster}")
        self.apply(*self.installed)

    def uninstall(self) -> dict[str, bool]:
        if self.method == "chart":
            import helm_python

            with helm_python.Config(kubeconfig_path=self.kubeconfig, namespace=self.namespace) as cfg:
                cfg.uninstall(RELEASE, wait="watcher", timeout=HANG_GUARD_S)
        else:
            self.kubectl("delete", "-f", "-", "--wait=true", stdin=yaml.safe_dump_all(self.installed))
        kept = {kind: bool(self.kubectl("get", kind.lower(), name, "--ignore-not-found", "-o", "name").strip())
                for kind, name in (("Lease", "loki-event-sync"), ("ConfigMap", "loki-event-sync-checkpoint"))}
        return kept

    # --- events ----------------------------------------------------------------------------------

    def _pod(self, name: str, image: str, command: list[str] | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name.removeprefix("e2e-"), "image": image,
                             "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                                 "capabilities": {"drop": ["ALL"]}}}
        if command:
            c["command"] = command
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"containers": [c], "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}

    def make_events(self) -> None:
        image = self.image_ref or render.IMAGE + ":latest"
        self.apply(self._pod("e2e-pull", "registry.invalid/loki-event-sync-e2e/nope:1"),
                   self._pod("e2e-crash", image, ["python", "-c", "raise SystemExit(3)"]))
        self.kubectl("create", "deployment", "e2e-web", f"--image={image}", "--replicas=0", "--",
                     "python", "-c", "import time; time.sleep(3600)")
        self.kubectl("scale", "deployment", "e2e-web", "--replicas=2")
        self._until(lambda: any(r == "BackOff" for r in self._reasons()), "the pods to back off")

    def _events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", "events", "-o", "json"))["items"])

    def _reasons(self) -> list[str]:
        return [e.get("reason", "") for e in self._events()]

    def bump_counts(self) -> None:
        """Wait for the back-offs to repeat (kubelet raises the count of the same Event) and scale again."""
        before = self.visible()
        self.kubectl("scale", "deployment", "e2e-web", "--replicas=1")
        self._until(lambda: {u for u, _ in self.visible() - before} & {u for u, _ in before}, "a count to grow")

    def visible(self) -> set[tuple[str, int]]:
        return pairs(self._events())

    @staticmethod
    def _until(condition: Any, what: str) -> None:
        give_up = time.monotonic() + HANG_GUARD_S
        while not condition():
            assert time.monotonic() < give_up, f"gave up waiting for {what}"
            time.sleep(2)

    # --- runs ------------------------------------------------------------------------------------

    def _create_job(self) -> str:
        self.runs += 1
        name = f"e2e-run-{self.runs}"
        self.kubectl("create", "job", f"--from=cronjob/{RELEASE}", name)
        return name

    def _wait(self, name: str) -> Run:
        def finished() -> list[str]:
            job = json.loads(self.kubectl("get", "job", name, "-o", "json"))
            return [c["type"] for c in job["status"].get("conditions") or []
                    if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
        self._until(finished, f"job {name}")
        log = self.kubectl("logs", f"job/{name}", "--all-containers", check=False)
        return Run(finished() == ["Complete"], log)

    def run(self) -> Run:
        return self._wait(self._create_job())

    def backfill(self, since: dt.datetime) -> Run:
        job = backfill_manifest(self.method, self.installed, self.values, self.namespace, since)
        self.apply(job)
        return self._wait(job["metadata"]["name"])

    def run_two_at_once(self) -> tuple[Run, Run]:
        first, second = self._create_job(), self._create_job()
        return self._wait(first), self._wait(second)

    def run_deleting_a_pod_midway(self) -> Run:
        name = self._create_job()
        self.kubectl("delete", "pod", "e2e-crash", "--wait=false")
        return self._wait(name)
