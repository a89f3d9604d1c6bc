"""Fitting into real clusters: others' metadata survives every run, and off-cluster defaults are safe.

Through main() against the Kubernetes API test server over HTTP: the Lease and the checkpoint
ConfigMap carry what kubectl apply, Argo CD and Helm put there; runs from a workstation land on the
install's objects and nowhere else; `status` tells a typo from a first run.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CM, LEASE, NAMESPACE, STATE, Harness, legacy_event, recent_dump

ROOT = Path(__file__).resolve().parent.parent

LABELS = {"app.kubernetes.io/name": "loki-event-sync", "app.kubernetes.io/managed-by": "Helm",
          "app.kubernetes.io/instance": "les"}


def managed_annotations(kind: str, name: str) -> dict[str, str]:
    return {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
            {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE}}),
        "argocd.argoproj.io/tracking-id": f"les:/{kind}:{NAMESPACE}/{name}",
        "meta.helm.sh/release-name": "les",
        "meta.helm.sh/release-namespace": NAMESPACE,
    }


def managed_install(h: Harness) -> None:
    """The install's two objects as a GitOps tool or Helm leaves them."""
    h.kube.put_object("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {},
                                 "metadata": {"name": LEASE, "namespace": NAMESPACE, "labels": LABELS,
                                              "annotations": managed_annotations("Lease", LEASE)}})
    h.kube.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "data": {"README": "do not edit"},
                                     "binaryData": {"extra.bin": base64.b64encode(b"\x00other").decode()},
                                     "metadata": {"name": CM, "namespace": NAMESPACE, "labels": LABELS,
                                                  "annotations": managed_annotations("ConfigMap", CM)}})


def meta(h: Harness, kind: str, name: str, ns: str = NAMESPACE) -> dict[str, Any]:
    obj = h.kube.get_object(kind, ns, name) or {}
    return {k: obj.get("metadata", {}).get(k) for k in ("labels", "annotations")}


def test_ten_runs_keep_every_label_annotation_and_other_key_of_the_lease_and_configmap(h: Harness) -> None:
    managed_install(h)
    lease_meta, cm_meta = meta(h, "leases", LEASE), meta(h, "configmaps", CM)
    for run in range(10):
        for i in range(5):
            h.kube.put_event(legacy_event(f"pod-{run}-{i}.x", ns=f"ns-{i % 2}"))
        assert h.run() == 0, h.stderr
        assert h.summary()["lines"] == 5
    assert meta(h, "leases", LEASE) == lease_meta
    assert meta(h, "configmaps", CM) == cm_meta
    cm = h.kube.get_object("configmaps", NAMESPACE, CM) or {}
    assert cm["data"] == {"README": "do not edit"}
    assert base64.b64decode(cm["binaryData"]["extra.bin"]) == b"\x00other"
    assert h.checkpoint_bytes()
    assert len(h.loki.entries()) == 50
    # Every write was a merge patch of the job's own fields: no PUT, no create.
    writes = {m for m, p in h.kube.requests if m != "GET" and "/events" not in p}
    assert writes == {"PATCH"}


def test_other_keys_that_leave_the_checkpoint_no_room_fail_the_run_in_one_line_and_save_nothing(
        h: Harness) -> None:
    h.seed(3)
    assert h.run() == 0
    before = h.checkpoint_bytes()
    cm = h.kube.existing("configmaps", NAMESPACE, CM)
    cm["data"] = {"notes": "x" * (1024 * 1024 - 200)}  # someone's file, all but 200 bytes of the 1 MiB
    h.kube.put_object("configmaps", cm)
    h.seed(2, prefix="more")
    assert h.run() == 1
    msg = h.one_error()
    assert "even with an empty ledger" in msg and "move the other keys out of it" in msg
    assert h.checkpoint_bytes() == before and h.summary()["outcome"] == "failed"
    cm = h.kube.existing("configmaps", NAMESPACE, CM)
    del cm["data"]
    h.kube.put_object("configmaps", cm)
    assert h.run() == 0  # the keys moved out: the next run catches up, and Loki drops what it re-sends
    h.assert_each_once()


def test_a_checkpoint_key_holding_empty_bytes_is_corrupt_and_left_untouched(h: Harness) -> None:
    h.kube.put_event(legacy_event("pod-1.x"))
    h.kube.put_object("configmaps", {"metadata": {"name": CM, "namespace": NAMESPACE, "labels": LABELS},
                                     "data": {"README": "keep"}, "binaryData": {"checkpoint": ""}})
    before = h.kube.get_object("configmaps", NAMESPACE, CM)
    assert h.run() == 1
    (msg,) = h.errors()
    assert "truncated (0 bytes)" in msg and "--reset-checkpoint" in msg
    assert h.kube.get_object("configmaps", NAMESPACE, CM) == before
    assert h.loki.pushes == 0


def test_a_checkpoint_under_data_instead_of_binarydata_is_refused_and_left_untouched(h: Harness) -> None:
    h.kube.put_event(legacy_event("pod-1.x"))
    h.kube.put_object("configmaps", {"metadata": {"name": CM, "namespace": NAMESPACE},
                                     "data": {"checkpoint": "LESC...", "README": "keep"}})
    before = h.kube.get_object("configmaps", NAMESPACE, CM)
    assert h.run() == 1
    (msg,) = h.errors()
    assert "holds data.checkpoint (text), not binaryData.checkpoint" in msg
    assert h.kube.get_object("configmaps", NAMESPACE, CM) == before
    assert h.loki.pushes == 0


def test_missing_checkpoint_configmap_fails_with_how_to_create_it(h: Harness) -> None:
    h.kube.put_event(legacy_event("pod-1.x"))
    h.kube.delete_object("configmaps", NAMESPACE, CM)
    assert h.run() == 1
    (msg,) = h.errors()
    assert f"ConfigMap {NAMESPACE}/{CM} does not exist" in msg
    assert f"kubectl -n {NAMESPACE} create configmap {CM}" in msg
    assert h.kube.get_object("configmaps", NAMESPACE, CM) is None
    assert (h.kube.get_object("leases", NAMESPACE, LEASE) or {})["spec"].get("holderIdentity") == ""


# --- off-cluster defaults ---------------------------------------------------------------------------


def test_kubeconfig_run_without_namespace_or_state_uses_the_install_objects_not_the_context_or_a_file(
        h: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    h.kube.write_kubeconfig(h.kubeconfig, namespace="default")  # a typical workstation context
    for i in range(3):
        h.kube.put_event(legacy_event(f"pod-{i}.x"))
    before = sorted(os.listdir(tmp_path))
    assert h.run(raw=["run", "--kubeconfig", h.kubeconfig, "--loki-url", h.loki.url]) == 0, h.stderr
    assert h.checkpoint_bytes()  # the install's ConfigMap in loki-event-sync
    assert (h.kube.get_object("leases", NAMESPACE, LEASE) or {})["spec"]["leaseTransitions"] == 1
    assert not [p for m, p in h.kube.requests if "/namespaces/default/" in p]
    assert sorted(os.listdir(tmp_path)) == before  # no local checkpoint file


def test_from_file_without_dry_run_or_state_checkpoints_in_the_install_configmap(
        h: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    dump = recent_dump(tmp_path)
    before = sorted(os.listdir(tmp_path))
    args = ["run", "--from-file", str(dump), "--kubeconfig", h.kubeconfig,
            "--loki-url", h.loki.url]
    assert h.run(raw=args) == 0, h.stderr
    assert h.summary()["new"] == 8 and h.checkpoint_bytes()
    assert sorted(os.listdir(tmp_path)) == before


def test_readme_first_command_needs_no_cluster_and_writes_nothing(
        h: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    workdir = tmp_path / "fresh-machine"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    nowhere = str(tmp_path / "no-kubeconfig")  # any use of the API would fail on this
    args = ["run", "--from-file", str(ROOT / "examples/events.json"), "--dry-run", "--log-format", "text"]
    assert h.run(raw=args, env={"KUBECONFIG": nowhere}) == 0, h.stderr
    assert sum(len(json.loads(line)["values"]) for line in h.stdout.splitlines()) == 8
    assert os.listdir(workdir) == []
    assert h.kube.requests == []


# --- status: a typo is not a first run ------------------------------------------------------------


def status(h: Harness, *extra: str) -> int:
    return h.run(raw=["status", "--kubeconfig", h.kubeconfig, "--output", "json", *extra])


def test_status_of_a_configmap_in_a_missing_namespace_is_exit_1_in_one_line(h: Harness) -> None:
    assert status(h, "--state", "configmap://nope/loki-event-sync-checkpoint") == 1
    (msg,) = h.errors()
    assert msg.startswith("status failed:") and "ConfigMap nope/loki-event-sync-checkpoint does not exist" in msg
    assert h.stdout == ""


def test_status_of_a_present_configmap_before_the_first_run_is_exists_false_exit_0(h: Harness) -> None:
    assert status(h) == 0  # no --state: the install's ConfigMap, off-cluster too
    info = json.loads(h.stdout)
    assert info["exists"] is False and info["store"].startswith(STATE)


def test_status_after_a_run_reads_the_install_configmap_by_default(h: Harness) -> None:
    h.kube.put_event(legacy_event("pod-1.x"))
    assert h.run() == 0
    assert status(h) == 0
    info = json.loads(h.stdout)
    assert info["exists"] is True and info["ledger_entries"] == 1


def test_status_of_a_file_in_a_missing_directory_is_exit_1(h: Harness, tmp_path: Path) -> None:
    assert status(h, "--state", f"file://{tmp_path}/typo/cp") == 1
    (msg,) = h.errors()
    assert "does not exist; create it" in msg


@pytest.mark.timeout(20)
def test_status_of_a_fifo_is_exit_1_at_once(h: Harness, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cp")
    assert status(h, "--state", f"file://{tmp_path}/cp") == 1
    (msg,) = h.errors()
    assert "is a FIFO, not a regular file" in msg
