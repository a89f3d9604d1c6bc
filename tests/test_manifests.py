"""The install manifests: valid for Kubernetes 1.31, restricted-profile pods, least-privilege RBAC,
sane CronJob timing, a derived backfill Job, and a non-root pinned image."""
from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml
from croniter import croniter

from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_LEASE_NAME
from job.main import main
from job.clock import Clock
from job.deps import Deps

ROOT = Path(__file__).resolve().parent.parent
CRONJOB = ROOT / "cronjob.yaml"
K8S_VERSION = "1.31"
NOW = dt.datetime(2026, 11, 25, 10, 0, 30, tzinfo=dt.timezone.utc)

# Every Kubernetes client method the code may call, and the RBAC permission it needs.
API_CALLS: dict[str, tuple[str, str, str]] = {
    "list_event_for_all_namespaces": ("", "events", "list"),
    "read_namespaced_lease": ("coordination.k8s.io", "leases", "get"),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update"),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", "create"),
    "read_namespaced_config_map": ("", "configmaps", "get"),
    "replace_namespaced_config_map": ("", "configmaps", "update"),
    "create_namespaced_config_map": ("", "configmaps", "create"),
}
# The restricted Pod Security profile's volume types (hostPath is the one that matters).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def install() -> list[dict[str, Any]]:
    return docs(CRONJOB)


def manifest_files() -> list[Path]:
    return [CRONJOB, *sorted((ROOT / "deploy").glob("*.yaml"))]


def by_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in items if d["kind"] == kind]


def cronjob() -> dict[str, Any]:
    (cj,) = by_kind(install(), "CronJob")
    return cj


def generated_backfill(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(ROOT)  # the default --manifest-file is cronjob.yaml in the working directory
    out, err = io.StringIO(), io.StringIO()
    code = main(["manifest", "backfill", *args], env={}, deps=Deps(clock=Clock(now=lambda: NOW), stdout=out, stderr=err))
    return code, out.getvalue(), err.getvalue()


def pod_specs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "CronJob", cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (static,) = docs(ROOT / "deploy" / "backfill-job.yaml")
    yield "deploy/backfill-job.yaml", static["spec"]["template"]["spec"]
    code, out, _ = generated_backfill(monkeypatch, "--since", "2h")
    assert code == 0
    yield "manifest backfill", yaml.safe_load(out)["spec"]["template"]["spec"]


# --- (1) schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_core_document_validates_strictly_against_kubernetes_1_31(path: Path) -> None:
    checked = 0
    for doc in docs(path):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: kubernetes_validate only knows the built-in kinds
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked or path.name == "alerts.yaml"


def test_install_holds_the_whole_setup_in_one_namespace() -> None:
    items = install()
    kinds = sorted(d["kind"] for d in items)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding", "Lease", "ConfigMap", "ConfigMap", "CronJob"])
    assert "Secret" not in kinds  # credentials never live in the repository
    namespaced = [d for d in items if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"loki-event-sync"}


# --- (2) Pod Security: restricted -------------------------------------------------------------------


def test_every_pod_meets_the_restricted_pod_security_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, pod in pod_specs(monkeypatch):
        psc = pod.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("runAsUser", 0) != 0 and psc.get("runAsGroup", 0) != 0, where
        assert (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host), f"{where}: {host}"
        for volume in pod.get("volumes") or []:
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") is not True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", psc["runAsUser"]) != 0, where
            assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], where
            assert not (sc.get("capabilities") or {}).get("add"), where
            assert not any(p.get("hostPort") for p in c.get("ports") or []), where
            # A read-only root still needs somewhere to write temporary files.
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts") or []), where


def test_namespace_enforces_the_restricted_profile() -> None:
    (ns,) = by_kind(install(), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- (3) RBAC: nothing beyond what the code calls ---------------------------------------------------


def used_permissions() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every Kubernetes API method named in job/ and state/."""
    from kubernetes import client

    api_methods = {name for cls_name in dir(client) if cls_name.endswith("Api")
                   for name in dir(getattr(client, cls_name)) if not name.startswith("_")}
    api_methods -= set(dir(client.ApiClient))
    source = "\n".join(p.read_text(encoding="utf-8") for d in ("job", "state") for p in sorted((ROOT / d).glob("*.py")))
    named = set(re.findall(r"\b[a-z_]+\b", source)) & api_methods
    named = {n.removesuffix("_with_http_info") for n in named}
    unknown = named - set(API_CALLS)
    assert not unknown, f"add the RBAC these calls need to API_CALLS and cronjob.yaml: {sorted(unknown)}"
    return {API_CALLS[n] for n in named}


def granted_permissions() -> tuple[set[tuple[str, str, str]], list[dict[str, Any]]]:
    granted: set[tuple[str, str, str]] = set()
    rules: list[dict[str, Any]] = []
    for role in by_kind(install(), "ClusterRole") + by_kind(install(), "Role"):
        for rule in role["rules"]:
            rules.append({**rule, "_kind": role["kind"]})
            granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return granted, rules


def test_rbac_grants_nothing_the_code_does_not_call() -> None:
    used = used_permissions()
    granted, _ = granted_permissions()
    assert granted <= used, f"granted but never used: {sorted(granted - used)}"
    assert not any("*" in perm for perm in granted)


def test_rbac_grants_every_call_except_create_which_the_manifest_makes_unnecessary() -> None:
    used = used_permissions()
    granted, _ = granted_permissions()
    missing = {p for p in used - granted if p[2] != "create"}
    assert not missing, f"the code calls these but RBAC refuses them: {sorted(missing)}"
    assert not any(verb == "create" for _, _, verb in granted)
    # Without `create`, the Lease and the checkpoint ConfigMap must exist before the first run.
    names = {(d["kind"], d["metadata"]["name"]) for d in install()}
    assert ("Lease", DEFAULT_LEASE_NAME) in names
    assert ("ConfigMap", DEFAULT_CHECKPOINT_CONFIGMAP) in names


def test_namespaced_grants_are_limited_to_the_objects_the_job_owns() -> None:
    _, rules = granted_permissions()
    own = {"leases": [DEFAULT_LEASE_NAME], "configmaps": [DEFAULT_CHECKPOINT_CONFIGMAP]}
    for rule in rules:
        if rule["_kind"] == "Role":
            for resource in rule["resources"]:
                assert rule.get("resourceNames") == own[resource], rule
        else:  # the only cluster-wide grant is listing events, which cannot be narrowed by name
            assert rule["resources"] == ["events"] and rule["verbs"] == ["list"]
    env = {e["name"]: e.get("value") for e in cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["STATE"] == f"configmap://loki-event-sync/{DEFAULT_CHECKPOINT_CONFIGMAP}"


def test_bindings_give_the_roles_to_the_cronjobs_service_account() -> None:
    items = install()
    sa = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert [d["metadata"]["name"] for d in by_kind(items, "ServiceAccount")] == [sa]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        (binding,) = by_kind(items, kind)
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == by_kind(items, role_kind)[0]["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "loki-event-sync"}]


# --- (4) CronJob timing and limits ------------------------------------------------------------------


def shortest_interval_s(schedule: str) -> float:
    it = croniter(schedule, NOW)
    times = [it.get_next(dt.datetime) for _ in range(7 * 24 * 6 + 1)]
    return min((b - a).total_seconds() for a, b in zip(times, times[1:]))


def test_cronjob_cannot_overlap_or_pile_up_runs() -> None:
    spec = cronjob()["spec"]
    interval = shortest_interval_s(spec["schedule"])
    job = spec["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["timeZone"] == "Etc/UTC"
    assert 0 < spec["startingDeadlineSeconds"] < interval
    # A hung run is killed before the next one is due, so Forbid never skips two runs in a row.
    assert 0 < job["activeDeadlineSeconds"] < interval
    assert job["backoffLimit"] == 2
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_cronjob_cleans_up_after_itself() -> None:
    spec = cronjob()["spec"]
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    assert spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] == 86400


def test_cronjob_container_has_requests_limits_and_its_settings() -> None:
    (c,) = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert c["args"] == ["run"]
    assert {"configMapRef": {"name": "loki-event-sync-settings"}} in c["envFrom"]
    assert {"secretRef": {"name": "loki-event-sync-loki", "optional": True}} in c["envFrom"]
    (ns_env,) = [e for e in c["env"] if e["name"] == "NAMESPACE"]
    assert ns_env["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    (settings,) = [d for d in install() if d["metadata"]["name"] == "loki-event-sync-settings"]
    assert {"LOKI_URL", "CLUSTER", "LOG_FORMAT", "EVENT_TTL", "LABEL_STYLE", "LINE_FORMAT",
            "LEASE_DURATION"} <= set(settings["data"])


def test_settings_are_values_the_job_accepts() -> None:
    from job.cmd import parse

    (settings,) = [d for d in install() if d["metadata"]["name"] == "loki-event-sync-settings"]
    env = {**settings["data"], "NAMESPACE": "loki-event-sync",
           "STATE": f"configmap://loki-event-sync/{DEFAULT_CHECKPOINT_CONFIGMAP}"}
    cfg = parse(["run"], env=env)
    assert cfg.event_ttl == 3600 and cfg.lease_duration == 60 and cfg.label_style == "default"


def test_cronjob_name_fits_the_controllers_52_character_limit() -> None:
    assert len(cronjob()["metadata"]["name"]) <= 52


# --- (5) the generated backfill Job -----------------------------------------------------------------


def test_manifest_backfill_prints_a_valid_job_with_an_absolute_window(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = generated_backfill(monkeypatch, "--since", "2h")
    assert code == 0, err
    job = yaml.safe_load(out)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["metadata"]["name"] == "loki-event-sync-backfill-202611251000"
    assert job["metadata"]["namespace"] == "loki-event-sync"
    labels = {"app.kubernetes.io/name": "loki-event-sync", "loki-event-sync/backfill": "true"}
    assert labels.items() <= job["metadata"]["labels"].items()
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["backfill", "--since", "2026-11-25T08:00:30Z"]
    # Everything but the args comes from the CronJob, so the two cannot drift apart.
    template = cronjob()["spec"]["jobTemplate"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == template["activeDeadlineSeconds"]
    (cj_container,) = template["template"]["spec"]["containers"]
    assert {k: v for k, v in c.items() if k != "args"} == {k: v for k, v in cj_container.items() if k != "args"}


def test_manifest_backfill_resolves_until_too(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = generated_backfill(monkeypatch, "--since", "2026-11-25T06:00:00Z", "--until", "30m")
    assert code == 0
    (c,) = yaml.safe_load(out)["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["backfill", "--since", "2026-11-25T06:00:00Z", "--until", "2026-11-25T09:30:30Z"]


@pytest.mark.parametrize("args, message", [
    (["--manifest-file", "no-such.yaml"], "cannot read --manifest-file no-such.yaml"),
    (["--manifest-file", "deploy/alerts.yaml"], "holds no CronJob"),
    (["--until", "3h"], "is not later than --since"),
])
def test_manifest_backfill_fails_with_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                          message: str) -> None:
    code, out, err = generated_backfill(monkeypatch, "--since", "2h", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


# --- (6) the image ----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_non_root_and_runs_the_job() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in instructions if ln.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: build tools and pip caches stay out of the final image"
    for image in froms:
        name, _, tag = image.partition(":")
        assert "@sha256:" in image or (tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag)), image
    (user,) = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    pod = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert (int(uid), int(gid)) == (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"])
    assert 'ENTRYPOINT ["python", "-m", "job"]' in instructions
    assert 'CMD ["run"]' in instructions
    assert any(ln.startswith("COPY job/") for ln in instructions)
    assert any(ln.startswith("COPY state/") for ln in instructions)
    assert any("PYTHONDONTWRITEBYTECODE=1" in ln for ln in lines)


def test_dockerignore_keeps_the_virtualenv_and_git_out_of_the_build_context() -> None:
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")]
    # An allow-list: everything is ignored except what the image needs.
    assert rules[0] == "*"
    assert {"!requirements.txt", "!job/", "!state/"} <= set(rules)


# --- alerts -----------------------------------------------------------------------------------------


def test_alerts_use_only_metrics_the_job_pushes() -> None:
    (rule,) = docs(ROOT / "deploy" / "alerts.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts["LokiEventSyncStale"]["expr"] == \
        "time() - loki_event_sync_last_success_timestamp_seconds > 3 * 600"
    assert alerts["LokiEventSyncStale"]["for"] == "5m"
    assert alerts["LokiEventSyncGap"]["expr"] == "loki_event_sync_gap_seconds > 0"
    assert alerts["LokiEventSyncRejects"]["expr"] == "loki_event_sync_loki_rejected_entries > 0"
    # The staleness threshold is three schedule intervals.
    assert 3 * shortest_interval_s(cronjob()["spec"]["schedule"]) == 1800
    pushed = set(re.findall(r'"(loki_event_sync_\w+)"', (ROOT / "job" / "metrics.py").read_text(encoding="utf-8")))
    for alert in alerts.values():
        assert set(re.findall(r"loki_event_sync_\w+", alert["expr"])) <= pushed, alert["alert"]
