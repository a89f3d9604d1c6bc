"""The e2e driver for this machine: tests/kubeapi.py as the API server (RBAC enforced with the
install's own Roles and bindings), the Loki double, and each Job's container run as a real
`python -m job` process with the container's args and environment, as the kubelet would start it.

Events are made as kubelet and the controllers record them (tests/conftest.py's shapes); "mid-run"
is the moment the job's first events list reaches the server (kubeapi's on_request hook), so the
interleavings the suite needs happen on every run, never by timing."""
from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from tests.conftest import legacy_event, series_event, wait_for
from tests.e2e.drivers import Run, backfill_manifest, fresh_name, job_process, objects, pairs
from tests.kubeapi import KubeAPI
from tests.lokidouble import LokiDouble

TOKEN = "e2e-service-account-token"
RBAC = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
# A Job whose process has not exited by then is hung; the healthy run takes well under a second.
HANG_GUARD_S = 120


class LocalDriver:
    overlap_guaranteed = True
    patience_s = 0.0  # the double answers with what it accepted, at once

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.namespace = self.cluster = fresh_name()
        self.kube = KubeAPI().start()
        self.loki = LokiDouble().start()
        self.loki_url = self.loki.url
        self.kube.enforce_rbac()
        self.kube.add_token(TOKEN, f"system:serviceaccount:{self.namespace}:loki-event-sync")
        self.kubeconfig = self.kube.write_kubeconfig(tmp / "kubeconfig", namespace="default", token=TOKEN)
        # The user's Secret (README): only the Loki URL.
        self.secret = {"LOKI_EVENT_SYNC_LOKI_URL": self.loki.url}
        self.installed: list[dict[str, Any]] = []
        self.method = ""

    def close(self) -> None:
        self.kube.on_request = None
        self.kube.stop()
        self.loki.stop()

    # --- install ---------------------------------------------------------------------------------

    def install(self, method: str) -> None:
        self.method = method
        values = {"settings": {"cluster": self.cluster}}
        self.installed = objects(method, self.namespace, values, self.tmp)
        for doc in self.installed:
            if doc["kind"] in RBAC:
                self.kube.apply_rbac(doc)
            elif doc["kind"] in ("Lease", "ConfigMap"):
                self.kube.put_object(doc["kind"].lower() + "s", doc)
        if method == "kustomize":  # the user's optional ConfigMap, created by hand as the README says
            self.kube.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "loki-event-sync-config", "namespace": self.namespace},
                "data": {"LOKI_EVENT_SYNC_CLUSTER": self.cluster}})
        self.values = values

    def uninstall(self) -> dict[str, bool]:
        """Which state objects an uninstall leaves: `keep` for the chart, nothing for kustomize."""
        kept = {}
        for doc in self.installed:
            if doc["kind"] in ("Lease", "ConfigMap") and doc["metadata"]["name"] != "loki-event-sync-config":
                keep = (doc["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
                if not keep:
                    self.kube.delete_object(doc["kind"].lower() + "s", self.namespace, doc["metadata"]["name"])
                kept[doc["kind"]] = self.kube.get_object(doc["kind"].lower() + "s", self.namespace,
                                                         doc["metadata"]["name"]) is not None
        return kept

    # --- events ----------------------------------------------------------------------------------

    def _event(self, name: str, **kw: Any) -> None:
        self.kube.put_event(legacy_event(name, ns=self.namespace, **kw))

    def make_events(self) -> None:
        pull, crash = "e2e-pull", "e2e-crash"
        for pod, reason, type_, msg in [
            (pull, "Scheduled", "Normal", f"Successfully assigned {self.namespace}/{pull} to node-1"),
            (pull, "Pulling", "Normal", 'Pulling image "registry.invalid/nope:1"'),
            (pull, "Failed", "Warning", "Error: ErrImagePull"),
            (pull, "BackOff", "Warning", 'Back-off pulling image "registry.invalid/nope:1"'),
            (crash, "Started", "Normal", "Started container crash"),
            (crash, "BackOff", "Warning", "Back-off restarting failed container crash"),
        ]:
            self._event(f"{pod}.{reason.lower()}", reason=reason, type_=type_, message=msg)
        self.kube.put_event(series_event("e2e-web.scaled", ns=self.namespace))

    def bump_counts(self) -> None:
        """The back-offs repeat, and the Deployment scales again: same uids, higher counts."""
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        for e in self.kube.events():
            if e["metadata"]["namespace"] != self.namespace:
                continue
            if e.get("reason") == "BackOff":
                self.kube.put_event({**e, "count": e["count"] + 3, "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
            elif e.get("reason") == "ScalingReplicaSet":
                series = (e.get("series") or {}).get("count", 1)
                bumped = series_event("e2e-web.scaled", ns=self.namespace, count=series + 1, uid=e["metadata"]["uid"])
                self.kube.put_event(bumped)

    def visible(self) -> set[tuple[str, int]]:
        return pairs([e for e in self.kube.events() if e["metadata"]["namespace"] == self.namespace])

    # --- runs ------------------------------------------------------------------------------------

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet builds it: envFrom in order, then env."""
        env: dict[str, str] = {"KUBECONFIG": self.kubeconfig}
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                cm = self.kube.get_object("configmaps", self.namespace, source["configMapRef"]["name"])
                env.update((cm or {}).get("data") or {})
            elif source["secretRef"]["name"] == "loki-event-sync-secret":
                env.update(self.secret)
        for var in c.get("env") or []:
            ref = (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            env[var["name"]] = self.namespace if ref == "metadata.namespace" else var["value"]
        return env

    def _start(self, job_spec: dict[str, Any]) -> Any:
        (c,) = job_spec["template"]["spec"]["containers"]
        return job_process(c["args"], self._env(c))

    def _cronjob_job(self) -> dict[str, Any]:
        """`kubectl create job --from=cronjob/loki-event-sync`: the jobTemplate's spec, verbatim."""
        (cj,) = [d for d in self.installed if d["kind"] == "CronJob"]
        return cj["spec"]["jobTemplate"]["spec"]

    @staticmethod
    def _wait(proc: Any) -> Run:
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
        return Run(proc.returncode == 0, out)

    def run(self) -> Run:
        return self._wait(self._start(self._cronjob_job()))

    def backfill(self, since: dt.datetime) -> Run:
        job = backfill_manifest(self.method, self.installed, self.values, self.namespace, since)
        return self._wait(self._start(job["spec"]))

    def _at_first_list(self, action: Any) -> threading.Event:
        """Call ACTION when a job's first events list arrives, before the server answers it."""
        done = threading.Event()

        def hook(method: str, path: str) -> None:
            if method == "GET" and "/events" in path and not done.is_set():
                self.kube.on_request = None
                action()
                done.set()
        self.kube.on_request = hook
        return done

    def run_two_at_once(self) -> tuple[Run, Run]:
        """The first run holds the Lease and is inside its list while the second one starts."""
        release, second = threading.Event(), []
        entered = self._at_first_list(lambda: release.wait(HANG_GUARD_S))
        first = self._start(self._cronjob_job())
        try:
            wait_for(lambda: self.kube.on_request is None, "the first run to reach its list", HANG_GUARD_S)
            second.append(self._wait(self._start(self._cronjob_job())))
        finally:
            release.set()
        assert entered.wait(HANG_GUARD_S)
        return self._wait(first), second[0]

    def run_deleting_a_pod_midway(self) -> Run:
        """The crashing pod is deleted while the run lists: kubelet records Killing, and the pull
        pod backs off once more."""
        def delete_pod() -> None:
            self._event("e2e-crash.killing", reason="Killing", message="Stopping container crash")
            for e in self.kube.events():
                if e["metadata"]["name"] == "e2e-pull.backoff" and e["metadata"]["namespace"] == self.namespace:
                    self.kube.put_event({**e, "count": e["count"] + 1})
        self._at_first_list(delete_pod)
        return self.run()
