"""The install manifests, as kustomize renders them: schema-valid for the oldest and newest supported
Kubernetes, restricted-profile pods, least-privilege RBAC, sane CronJob timing and limits, settings
only from the user's optional ConfigMap/Secret, overlays that re-namespace or re-image the install
without breaking it, the components, the generated cronjob.yaml, and the derived backfill Job."""
from __future__ import annotations

import datetime as dt
import io
import itertools
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from croniter import croniter

from job.clock import Clock
from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_LEASE_NAME, get_parser
from job.deps import Deps
from job.main import main
from tests.manifests import (
    APP_LABELS,
    BASE,
    COMPONENTS,
    CRONJOB,
    INSTALL,
    NAMESPACE,
    ROOT,
    all_components,
    assert_bound_to_the_service_account,
    by_kind,
    component_dirs,
    container,
    cronjob,
    docs,
    granted,
    install,
    one,
    overlay,
    pod_of,
    render_overlay,
    rendered,
    used_permissions,
    validate_all,
)
from tools import figures, render

NOW = dt.datetime(2026, 11, 25, 10, 0, 30, tzinfo=dt.timezone.utc)
# The measured peak RSS of one run at the documented size (python -m bench --sizes 100000).

# Calls made only when a setting asks for them, each granted by its own component, not the install.
OPT_IN = {("", "namespaces", "list"): "tenant-label"}
# The restricted Pod Security profile's volume types (hostPath is the one that matters).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


# --- rendering ---------------------------------------------------------------------------------------






























def generated_backfill(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(ROOT)  # the default --manifest-file is cronjob.yaml in the working directory
    out, err = io.StringIO(), io.StringIO()
    code = main(["manifest", "backfill", *args], env={}, deps=Deps(clock=Clock(now=lambda: NOW), stdout=out,
                                                                       stderr=err))
    return code, out.getvalue(), err.getvalue()


def pod_specs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "CronJob", pod_of(cronjob())
    (static,) = docs(ROOT / "deploy" / "backfill-job.yaml")
    yield "deploy/backfill-job.yaml", static["spec"]["template"]["spec"]
    code, out, _ = generated_backfill(monkeypatch, "--since", "2h")
    assert code == 0
    yield "manifest backfill", yaml.safe_load(out)["spec"]["template"]["spec"]


# --- (1) what kustomize renders is valid Kubernetes ----------------------------------------------------




@pytest.mark.parametrize("directory", [BASE, INSTALL], ids=lambda p: str(p.relative_to(ROOT)))
def test_each_kustomization_renders_objects_valid_for_the_oldest_and_newest_supported_kubernetes(
        directory: Path) -> None:
    assert validate_all(rendered(directory)) >= 7


def test_every_component_on_top_of_the_install_renders_valid_objects(tmp_path: Path) -> None:
    assert {"namespace", "networkpolicy", "networkpolicy/pushgateway", "namespaced-rbac"} <= \
        {str(d.relative_to(COMPONENTS)) for d in component_dirs()}
    items = all_components(tmp_path)
    assert validate_all(items) == len([d for d in items if not d["apiVersion"].startswith("monitoring.coreos.com/")])
    # Each component puts its objects in the job's namespace (or, for RBAC, the watched ones).
    for doc in items:
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding") \
                and doc["metadata"]["name"] not in ("loki-event-sync-events", "loki-event-sync-enrich"):
            assert doc["metadata"].get("namespace") == NAMESPACE, (doc["kind"], doc["metadata"]["name"])
    assert {"NetworkPolicy", "Role", "RoleBinding"} <= {d["kind"] for d in items}


@pytest.mark.parametrize("path", [CRONJOB, *sorted((ROOT / "deploy").glob("*.yaml"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_plain_manifest_file_validates_for_the_oldest_and_newest_supported_kubernetes(path: Path) -> None:
    assert validate_all(docs(path)) or path.name == "alerts.yaml"


def test_cronjob_yaml_is_exactly_what_deploy_install_renders() -> None:
    # If this fails: python tools/render.py
    assert CRONJOB.read_text(encoding="utf-8") == render.cronjob_yaml()
    assert render.main(["--check"]) == 0


def test_install_is_the_whole_setup_in_one_namespace_and_holds_no_settings() -> None:
    items = install()
    kinds = sorted(d["kind"] for d in items)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding", "Lease", "ConfigMap", "CronJob"])
    # Credentials and settings never live in the install: an upgrade would reset them.
    assert [d["metadata"]["name"] for d in by_kind(items, "ConfigMap")] == [DEFAULT_CHECKPOINT_CONFIGMAP]
    namespaced = [d for d in items if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {NAMESPACE}
    assert one(items, "Namespace")["metadata"]["name"] == NAMESPACE


def test_every_object_and_pod_template_carries_the_full_app_kubernetes_io_label_set() -> None:
    for doc in install():
        labels = doc["metadata"].get("labels") or {}
        assert APP_LABELS <= set(labels), (doc["kind"], sorted(APP_LABELS - set(labels)))
    cj = cronjob()
    assert APP_LABELS <= set(cj["spec"]["jobTemplate"]["metadata"]["labels"])
    assert APP_LABELS <= set(cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])


# --- (2) Pod Security: restricted, and OpenShift's arbitrary UID ---------------------------------------


def test_every_pod_meets_the_restricted_pod_security_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, pod in pod_specs(monkeypatch):
        psc = pod.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, where
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
            assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], where
            assert not (sc.get("capabilities") or {}).get("add"), where
            assert not any(p.get("hostPort") for p in c.get("ports") or []), where
            # A read-only root still needs somewhere to write temporary files.
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts") or []), where


def test_no_pod_pins_a_uid_or_gid_so_openshift_restricted_v2_can_assign_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for where, pod in pod_specs(monkeypatch):
        contexts = [pod.get("securityContext") or {}] + [c.get("securityContext") or {} for c in pod["containers"]]
        for sc in contexts:
            assert "runAsUser" not in sc and "runAsGroup" not in sc, where
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}, where


def test_namespace_component_enforces_the_restricted_profile() -> None:
    labels = one(install(), "Namespace")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


# --- (3) RBAC: nothing beyond what the code calls ------------------------------------------------------






def test_rbac_grants_nothing_the_code_does_not_call() -> None:
    perms, _ = granted(install())
    extra = perms - (used_permissions() - set(OPT_IN))
    assert not extra, f"granted but never used: {sorted(extra)}"
    assert not any("*" in perm for perm in perms)


def test_rbac_grants_every_call_except_create_which_the_install_makes_unnecessary() -> None:
    perms, _ = granted(install())
    missing = {p for p in used_permissions() - set(OPT_IN) - perms if p[2] != "create"}
    assert not missing, f"the code calls these but RBAC refuses them: {sorted(missing)}"
    assert not any(verb == "create" for _, _, verb in perms)
    # Without `create`, the Lease and the checkpoint ConfigMap must exist before the first run.
    names = {(d["kind"], d["metadata"]["name"]) for d in install()}
    assert ("Lease", DEFAULT_LEASE_NAME) in names
    assert ("ConfigMap", DEFAULT_CHECKPOINT_CONFIGMAP) in names


@pytest.mark.parametrize("perm, component", sorted(OPT_IN.items()))
def test_each_opt_in_call_is_granted_by_its_component_bound_to_the_job(
        tmp_path: Path, perm: tuple[str, str, str], component: str) -> None:
    items = render_overlay(tmp_path, 'resources: ["{install}"]\ncomponents: ["{c}"]\n',
                           install=ROOT / "deploy" / "install", c=COMPONENTS / component)
    perms, _ = granted(items)
    assert perm in perms and perm in used_permissions()
    assert_bound_to_the_service_account(items, "loki-event-sync")


def test_namespaced_grants_are_limited_to_the_objects_the_job_owns() -> None:
    _, rules = granted(install())
    own = {"leases": [DEFAULT_LEASE_NAME], "configmaps": [DEFAULT_CHECKPOINT_CONFIGMAP]}
    for rule in rules:
        if rule["_kind"] == "Role":
            for resource in rule["resources"]:
                assert rule.get("resourceNames") == own[resource], rule
            assert set(rule["verbs"]) == {"get", "patch"}
        else:  # the only cluster-wide grant is listing events, which cannot be narrowed by name
            assert rule["resources"] == ["events"] and rule["verbs"] == ["list"]




def test_bindings_give_the_roles_to_the_cronjobs_service_account() -> None:
    assert_bound_to_the_service_account(install(), NAMESPACE)


# --- (4) CronJob timing, failure handling and limits ---------------------------------------------------


def shortest_interval_s(schedule: str) -> float:
    it = croniter(schedule, NOW)
    times = [it.get_next(dt.datetime) for _ in range(7 * 24 * 6 + 1)]
    return min((b - a).total_seconds() for a, b in itertools.pairwise(times))


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


def test_a_configuration_error_exit_2_fails_the_job_at_once_instead_of_retrying(
        monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [("CronJob", cronjob()["spec"]["jobTemplate"]["spec"]),
            ("deploy/backfill-job.yaml", docs(ROOT / "deploy" / "backfill-job.yaml")[0]["spec"])]
    code, out, err = generated_backfill(monkeypatch, "--since", "2h")
    assert code == 0, err
    jobs.append(("manifest backfill", yaml.safe_load(out)["spec"]))
    for where, job in jobs:
        rules = job["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "FailJob", "onExitCodes": {
            "containerName": "loki-event-sync", "operator": "In", "values": [2]}}, where
        # podFailurePolicy is only allowed with restartPolicy Never.
        assert job["template"]["spec"]["restartPolicy"] == "Never", where
        assert job["template"]["spec"]["containers"][0]["name"] == "loki-event-sync", where


def test_cronjob_cleans_up_after_itself() -> None:
    spec = cronjob()["spec"]
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    assert spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] == 86400


def quantity_bytes(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", q)
    assert m, q
    return float(m.group(1)) * units.get(m.group(2) or "", 1)


def test_memory_request_covers_the_measured_peak_and_the_limit_leaves_headroom() -> None:
    res = container(cronjob())["resources"]
    request, limit = quantity_bytes(res["requests"]["memory"]), quantity_bytes(res["limits"]["memory"])
    peak_mb = figures.peak_rss_mb(100_000)  # the recorded benchmark's (docs/benchmark.json)
    assert request >= peak_mb * 1e6
    assert limit >= 1.5 * request
    assert res["requests"]["cpu"] and res["limits"]["cpu"]
    # The figure they came from is written down next to them, and for users.
    assert f"peak RSS is {peak_mb:.0f} MB" in (BASE / "cronjob.yaml").read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert f"{peak_mb:.0f} MB" in guide and res["requests"]["memory"] in guide and res["limits"]["memory"] in guide


# --- (5) settings: only the user's optional ConfigMap and Secret, LOKI_EVENT_SYNC_* names --------------


def flag_env_names() -> set[str]:
    """LOKI_EVENT_SYNC_<FLAG> for every flag of every command (the plan's naming rule)."""
    names: set[str] = set()
    parser = get_parser({})
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:  # argparse keeps no public list of options
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            for opt in action.option_strings:
                if opt.startswith("--") and opt not in ("--help", "--version"):
                    names.add("LOKI_EVENT_SYNC_" + opt[2:].upper().replace("-", "_"))
    return names


def test_settings_come_only_from_the_users_optional_configmap_and_secret() -> None:
    c = container(cronjob())
    assert c["args"] == ["run"]
    assert c["envFrom"] == [{"configMapRef": {"name": "loki-event-sync-config", "optional": True}},
                            {"secretRef": {"name": "loki-event-sync-secret", "optional": True}}]
    # The job's namespace from the Downward API; nothing else, and no hard-coded state location.
    assert c["env"] == [{"name": "LOKI_EVENT_SYNC_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    assert "configmap://" not in yaml.safe_dump(install())


def test_every_env_var_in_the_manifests_is_a_flag_of_the_job_with_the_prefix(tmp_path: Path) -> None:
    known = flag_env_names()
    names: set[str] = set()
    for items in (install(), all_components(tmp_path), docs(ROOT / "deploy" / "backfill-job.yaml")):
        for doc in items:
            if doc["kind"] in ("CronJob", "Job"):
                spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
                names |= {e["name"] for e in spec["template"]["spec"]["containers"][0].get("env") or []}
    assert names - known == set()
    assert {"LOKI_EVENT_SYNC_NAMESPACE", "LOKI_EVENT_SYNC_EVENT_NAMESPACES"} <= names


# --- (6) overlays: another namespace, another image -----------------------------------------------------


def test_a_namespace_override_moves_everything_and_the_state_rbac_and_subjects_follow(tmp_path: Path) -> None:
    items = render_overlay(tmp_path, 'namespace: monitoring\nresources: ["{base}"]\n', base=BASE)
    assert validate_all(items) == len(items)
    for doc in items:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "monitoring", doc["kind"]
    assert_bound_to_the_service_account(items, "monitoring")
    # The Lease and the checkpoint keep the names the job defaults to and the Role names; the state
    # location is derived by the job from its own namespace (Downward API), never written down.
    names = {(d["kind"], d["metadata"]["name"]) for d in items}
    assert {("Lease", DEFAULT_LEASE_NAME), ("ConfigMap", DEFAULT_CHECKPOINT_CONFIGMAP)} <= names
    _, rules = granted(items)
    assert {n for r in rules if r["_kind"] == "Role" for n in r["resourceNames"]} == \
        {DEFAULT_LEASE_NAME, DEFAULT_CHECKPOINT_CONFIGMAP}
    assert all(r["_namespace"] == "monitoring" for r in rules if r["_kind"] == "Role")
    c = container(cronjob(items))
    assert c["env"] == [{"name": "LOKI_EVENT_SYNC_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    assert "configmap://" not in yaml.safe_dump(items)


def test_a_namespace_override_emits_no_namespace_so_an_existing_one_keeps_its_labels(tmp_path: Path) -> None:
    items = render_overlay(tmp_path, 'namespace: monitoring\nresources: ["{base}"]\n', base=BASE)
    assert not by_kind(items, "Namespace")
    assert not by_kind(rendered(BASE), "Namespace")


def test_an_image_override_changes_only_the_image(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    items = render_overlay(tmp_path, f"""\
resources: ["{{install}}"]
images:
  - name: {render.IMAGE}
    newName: registry.example.com/mirror/loki-event-sync
    newTag: v0.2.0
    digest: {digest}
""", install=INSTALL)
    assert container(cronjob(items))["image"] == f"registry.example.com/mirror/loki-event-sync:v0.2.0@{digest}"
    before = yaml.safe_dump(install())
    after = yaml.safe_dump(items).replace(f"registry.example.com/mirror/loki-event-sync:v0.2.0@{digest}",
                                          container(cronjob())["image"])
    assert after == before


# --- (7) components -------------------------------------------------------------------------------------


def test_namespaced_rbac_replaces_the_cluster_wide_grant_with_a_role_per_watched_namespace(tmp_path: Path) -> None:
    items = all_components(tmp_path)
    cluster_wide = by_kind(items, "ClusterRole") + by_kind(items, "ClusterRoleBinding")
    # The only cluster-wide grants left are the opt-in tenant-label one, which lists namespaces, not events,
    # and enrich-rbac's (get on the workload kinds; its namespaced variant is the one to use with this).
    assert {d["metadata"]["name"] for d in cluster_wide} == {"loki-event-sync-namespaces", "loki-event-sync-enrich"}
    readers = [r for r in by_kind(items, "Role") if r["metadata"]["name"] == "loki-event-sync-events"]
    watched = {r["metadata"]["namespace"] for r in readers}
    assert watched == {"default"}
    for r in readers:
        assert r["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]
    assert_bound_to_the_service_account(items, NAMESPACE)
    env = {e["name"]: e.get("value") for e in container(cronjob(items))["env"]}
    assert set(env["LOKI_EVENT_SYNC_EVENT_NAMESPACES"].split(",")) == watched
    perms, _ = granted(items)
    assert ("", "events", "list") in perms and len([p for p in perms if p[1] == "events"]) == 1


def test_namespaced_rbac_with_another_namespace_binds_the_moved_service_account(tmp_path: Path) -> None:
    # The documented shape: the namespace override in an inner overlay, the component in an outer one.
    inner = overlay(tmp_path, 'namespace: monitoring\nresources: ["{base}"]\n', name="inner", base=BASE)
    items = render_overlay(tmp_path, 'resources: ["{inner}"]\ncomponents: ["{c}/namespaced-rbac"]\n',
                           inner=inner, c=COMPONENTS)
    assert_bound_to_the_service_account(items, "monitoring")
    assert {r["metadata"]["namespace"] for r in by_kind(items, "Role")} == {"monitoring", "default"}


def test_network_policy_denies_ingress_and_allows_only_the_documented_egress_ports(tmp_path: Path) -> None:
    items = all_components(tmp_path)
    policies = {p["metadata"]["name"]: p for p in by_kind(items, "NetworkPolicy")}
    assert set(policies) == {"loki-event-sync", "loki-event-sync-pushgateway"}
    pod_labels = cronjob(items)["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    ports: set[tuple[str, int]] = set()
    for p in policies.values():
        assert p["metadata"]["namespace"] == NAMESPACE
        assert p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert not p["spec"].get("ingress")
        for rule in p["spec"]["egress"]:
            assert "to" not in rule  # destinations: see the comment in networkpolicy.yaml
            ports |= {(x["protocol"], x["port"]) for x in rule["ports"]}
    assert "Ingress" in policies["loki-event-sync"]["spec"]["policyTypes"]
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 80), ("TCP", 3100),
                     ("TCP", 9091)}
    documented = (COMPONENTS / "networkpolicy" / "networkpolicy.yaml").read_text(encoding="utf-8")
    for port in ("53/UDP", "53/TCP", "443", "6443", "3100", "9091", "S3"):
        assert port in documented


def test_network_policy_follows_a_namespace_override(tmp_path: Path) -> None:
    items = render_overlay(tmp_path, 'namespace: monitoring\nresources: ["{base}"]\n'
                                     'components: ["{c}/networkpolicy"]\n', base=BASE, c=COMPONENTS)
    assert one(items, "NetworkPolicy")["metadata"]["namespace"] == "monitoring"


# --- (8) the backfill Jobs ------------------------------------------------------------------------------


def test_static_backfill_job_is_the_cronjobs_pod_but_for_the_args() -> None:
    (static,) = docs(ROOT / "deploy" / "backfill-job.yaml")
    template = cronjob()["spec"]["jobTemplate"]
    pod, cj_pod = static["spec"]["template"]["spec"], template["spec"]["template"]["spec"]
    (c,), (cj_c,) = pod["containers"], cj_pod["containers"]
    assert c["args"][0] == "backfill"
    assert {**c, "args": None} == {**cj_c, "args": None}
    assert {**pod, "containers": None} == {**cj_pod, "containers": None}
    assert {k: v for k, v in static["spec"].items() if k != "template"} == \
        {k: v for k, v in template["spec"].items() if k != "template"}
    labels = static["metadata"]["labels"]
    assert APP_LABELS <= set(labels) and labels["loki-event-sync/backfill"] == "true"


def test_manifest_backfill_prints_a_valid_job_with_an_absolute_window(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = generated_backfill(monkeypatch, "--since", "2h")
    assert code == 0, err
    job = yaml.safe_load(out)
    validate_all([job])
    assert job["metadata"]["name"] == "loki-event-sync-backfill-202611251000"
    assert job["metadata"]["namespace"] == NAMESPACE
    labels = {"app.kubernetes.io/name": "loki-event-sync", "loki-event-sync/backfill": "true"}
    assert labels.items() <= job["metadata"]["labels"].items()
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["backfill", "--since", "2026-11-25T08:00:30Z"]
    # Everything but the args comes from the CronJob, so the two cannot drift apart.
    template = cronjob()["spec"]["jobTemplate"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == template["activeDeadlineSeconds"]
    assert job["spec"]["podFailurePolicy"] == template["podFailurePolicy"]
    (cj_container,) = template["template"]["spec"]["containers"]
    assert {k: v for k, v in c.items() if k != "args"} == {k: v for k, v in cj_container.items() if k != "args"}


def test_manifest_backfill_works_from_a_rendered_overlay_in_another_namespace(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = overlay(tmp_path, 'namespace: monitoring\nresources: ["{base}"]\n', base=BASE)
    rendered_file = tmp_path / "rendered.yaml"
    rendered_file.write_text(render.kustomize(where), encoding="utf-8")
    code, out, err = generated_backfill(monkeypatch, "--since", "2h", "--manifest-file", str(rendered_file))
    assert code == 0, err
    assert yaml.safe_load(out)["metadata"]["namespace"] == "monitoring"


def test_manifest_backfill_resolves_until_too(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = generated_backfill(monkeypatch, "--since", "2026-11-25T06:00:00Z", "--until", "30m")
    assert code == 0
    (c,) = yaml.safe_load(out)["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["backfill", "--since", "2026-11-25T06:00:00Z", "--until", "2026-11-25T09:30:30Z"]


@pytest.mark.parametrize("args, message", [
    (["--manifest-file", "no-such.yaml"], "cannot read --manifest-file no-such.yaml"),
    (["--manifest-file", "deploy/base/kustomization.yaml"], "holds no CronJob"),
    (["--until", "3h"], "is not later than --since"),
])
def test_manifest_backfill_fails_with_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                          message: str) -> None:
    code, out, err = generated_backfill(monkeypatch, "--since", "2h", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


# --- (9) alerts -----------------------------------------------------------------------------------------


def test_alerts_use_only_metrics_the_job_pushes() -> None:
    rules = [d for d in docs(ROOT / "deploy" / "alerts.yaml") if d.get("kind") == "PrometheusRule"]
    assert rules
    from job.metrics import NAMES as pushed

    for rule in rules:
        for group in rule["spec"]["groups"]:
            for alert in group["rules"]:
                used = set(re.findall(r"loki_event_sync_\w+", alert["expr"]))
                # kube-state-metrics variants name kube_* series; ours must all be pushed.
                assert used <= pushed, alert.get("alert")


def test_watching_one_more_namespace_as_docs_install_md_shows_binds_the_job_there_too(tmp_path: Path) -> None:
    reader = (COMPONENTS / "namespaced-rbac" / "events-reader.yaml").read_text(encoding="utf-8")
    where = tmp_path / "overlay"
    where.mkdir()
    (where / "events-reader-shop.yaml").write_text(reader.replace("namespace: default", "namespace: shop"),
                                                   encoding="utf-8")
    items = render_overlay(tmp_path, """\
resources: ["{install}", events-reader-shop.yaml]
components: ["{c}/namespaced-rbac"]
patches:
  - target: {{kind: CronJob, name: loki-event-sync}}
    patch: |-
      - op: replace
        path: /spec/jobTemplate/spec/template/spec/containers/0/env/1/value
        value: default,shop
""", install=INSTALL, c=COMPONENTS)
    readers = {r["metadata"]["namespace"] for r in by_kind(items, "Role")
               if r["metadata"]["name"] == "loki-event-sync-events"}
    assert readers == {"default", "shop"}
    assert_bound_to_the_service_account(items, NAMESPACE)
    env = {e["name"]: e.get("value") for e in container(cronjob(items))["env"]}
    assert env["LOKI_EVENT_SYNC_EVENT_NAMESPACES"] == "default,shop"
    assert validate_all(items) == len(items)


def test_enrich_rbac_grants_get_on_exactly_the_owner_walks_kinds_cluster_wide_or_per_namespace(tmp_path: Path) -> None:
    from job.enrich import BUILTIN

    walk = {(group, resource, "get") for (group, _), resource in BUILTIN.items()}
    for component, kind in (("enrich-rbac", "ClusterRole"), ("enrich-rbac/namespaced", "Role")):
        items = render_overlay(tmp_path, 'resources: ["{base}"]\ncomponents: ["{c}/' + component + '"]\n',
                               base=BASE, c=COMPONENTS)
        assert validate_all(items) == len(items)
        (role,) = [r for r in by_kind(items, kind) if r["metadata"]["name"] == "loki-event-sync-enrich"]
        assert {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
                for v in rule["verbs"]} == walk
        assert_bound_to_the_service_account(items, NAMESPACE)
