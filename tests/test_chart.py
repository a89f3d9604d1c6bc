"""The Helm chart (charts/loki-event-sync), rendered and linted by the Helm library itself
(helm-python-sdk, offline): its defaults are the kustomize install, its toggles are the kustomize
components, its schema refuses bad values with one line, an upgrade never touches the Lease or the
checkpoint, and the files it ships are the repository's own."""
from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from job import __version__
from job.manifest import backfill_job
from tests.manifests import (
    APP_LABELS,
    COMPONENTS,
    INSTALL,
    assert_bound_to_the_service_account,
    by_kind,
    container,
    cronjob,
    granted,
    one,
    parse,
    render_overlay,
    rendered,
    three_way_patch,
    used_permissions,
    validate_all,
)
from tools import chart

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "loki-event-sync"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
NAMESPACE = "loki-event-sync"
# Helm's own metadata, the only difference the chart may have from the kustomize install.
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}
# The kustomize components and the same as the chart spells it (the namespaced-rbac example watches `default`).
KUSTOMIZE_COMPONENTS = ("namespaced-rbac", "tenant-label", "networkpolicy", "networkpolicy/pushgateway", "dashboard",
                        "alerts")
COMPONENTS_ON: dict[str, Any] = {
    "rbac": {"scope": "namespaces", "namespaces": ["default"]}, "tenantLabel": {"enabled": True},
    "networkPolicy": {"enabled": True, "pushgateway": True}, "dashboard": {"enabled": True},
    "lokiRules": {"enabled": True}}
# The repository's files and the chart's copies of them (the chart cannot read outside itself).
SHIPPED = {"loki-event-sync.json": "deploy/components/dashboard/loki-event-sync.json",
           "alerts.yaml": "deploy/alerts.yaml",
           **{f"loki-event-sync-rules{s}.yaml": f"deploy/components/alerts/loki-event-sync-rules{s}.yaml"
              for s in ("", "-seed", "-alloy")}}


def render(values: dict[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
    return parse(chart.render(values, **options))


def all_on() -> dict[str, Any]:
    return chart.load_values([str(ALL_ON)])


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def without(doc: dict[str, Any], labels: Any, annotations: set[str]) -> dict[str, Any]:
    """DOC less the given labels (a set, or a predicate on the key) and annotations, everywhere."""
    doc = copy.deepcopy(doc)
    drop = labels if callable(labels) else labels.__contains__

    def strip(meta: dict[str, Any]) -> None:
        for field, unwanted in (("labels", drop), ("annotations", annotations.__contains__)):
            kept = {k: v for k, v in (meta.get(field) or {}).items() if not unwanted(k)}
            meta.pop(field, None)
            if kept:
                meta[field] = kept

    strip(doc["metadata"])
    if doc["kind"] == "CronJob":
        strip(doc["spec"]["jobTemplate"]["metadata"])
        strip(doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"])
    return doc


def by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {key(d): d for d in items}
    assert len(out) == len(items), "two objects with one kind, namespace and name"
    return out


def values_error(values: dict[str, Any]) -> list[str]:
    """The lines of Helm's refusal that say what is wrong (its header lines name only the chart)."""
    with pytest.raises(chart.ChartError) as refused:
        chart.render(values)
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("values don't meet the specifications of the schema"), lines
    return [ln.strip() for ln in lines[1:] if ln.strip() != "loki-event-sync:"]


# --- the defaults are the kustomize install ----------------------------------------------------------


def test_chart_defaults_render_exactly_the_kustomize_install_but_for_helms_own_metadata() -> None:
    helm, kustomize = by_key(render()), by_key(rendered(INSTALL))
    # Helm owns the release namespace (helm install --create-namespace); the chart never renders it.
    assert kustomize.pop(("Namespace", "", NAMESPACE))
    assert set(helm) == set(kustomize)
    for k, doc in helm.items():
        assert without(doc, HELM_LABELS, HELM_ANNOTATIONS) == without(kustomize[k], HELM_LABELS, set()), k
    assert all(doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm" for doc in helm.values())


def with_components(tmp_path: Path, *names: str) -> list[dict[str, Any]]:
    """deploy/install plus the named components, less its Namespace, as kustomize renders them."""
    dirs = {f"c{i}": COMPONENTS / name for i, name in enumerate(names)}
    listed = "".join(f'  - "{{{k}}}"\n' for k in dirs)
    items = render_overlay(tmp_path, 'resources: ["{install}"]\ncomponents:\n' + listed, install=INSTALL, **dirs)
    return [d for d in items if d["kind"] != "Namespace"]


def app_label(k: str) -> bool:  # kustomize labels only the base's objects, the chart all of them
    return k.startswith(("app.kubernetes.io/", "helm.sh/"))


def test_chart_with_every_component_on_renders_what_the_kustomize_components_do(tmp_path: Path) -> None:
    assert {str(d.parent.relative_to(COMPONENTS)) for d in COMPONENTS.rglob("kustomization.yaml")} >= \
        {*KUSTOMIZE_COMPONENTS, "namespace"}
    helm = by_key(render(COMPONENTS_ON))
    kustomize = by_key(with_components(tmp_path, *KUSTOMIZE_COMPONENTS))
    assert set(helm) == set(kustomize)
    for k, doc in helm.items():
        assert APP_LABELS <= set(doc["metadata"]["labels"]), k
        assert without(doc, app_label, HELM_ANNOTATIONS) == without(kustomize[k], app_label, set()), k


@pytest.mark.parametrize("scope", ["cluster", "namespaces"])
def test_enrich_rbac_grants_the_rules_of_the_enrich_rbac_component(tmp_path: Path, scope: str) -> None:
    names = ("enrich-rbac",) if scope == "cluster" else ("namespaced-rbac", "enrich-rbac/namespaced")
    values = {"enrich": {"rbac": True}, **({"rbac": COMPONENTS_ON["rbac"]} if scope == "namespaces" else {})}
    kind = "ClusterRole" if scope == "cluster" else "Role"
    (want,) = [d for d in by_kind(with_components(tmp_path, *names), kind) if d["metadata"]["name"].endswith("-enrich")]
    (got,) = [d for d in by_kind(render(values), kind) if d["metadata"]["name"].endswith("-enrich")]
    assert without(got, app_label, set()) == without(want, app_label, set())


def test_prometheus_rule_holds_the_groups_of_deploy_alerts_yaml_that_were_asked_for() -> None:
    (alerts,) = parse((ROOT / "deploy" / "alerts.yaml").read_text(encoding="utf-8"))
    groups = {g["name"]: g for g in alerts["spec"]["groups"]}
    for ksm, push, want in [(True, False, ["loki-event-sync-kube-state-metrics"]),
                            (True, True, ["loki-event-sync", "loki-event-sync-kube-state-metrics"])]:
        rule = one(render({"prometheusRule": {"enabled": True, "kubeStateMetrics": ksm, "pushgateway": push}}),
                   "PrometheusRule")
        assert rule["spec"]["groups"] == [groups[name] for name in want]
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert rule["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("style", ["default", "seed", "alloy"])
def test_loki_rules_are_the_repositorys_file_for_the_chosen_label_style(style: str) -> None:
    cm = next(d for d in render({"lokiRules": {"enabled": True, "labelStyle": style}})
              if d["metadata"]["name"] == "loki-event-sync-rules")
    name = "loki-event-sync-rules.yaml" if style == "default" else f"loki-event-sync-rules-{style}.yaml"
    assert cm["data"] == {name: (ROOT / SHIPPED[name]).read_text(encoding="utf-8")}
    assert cm["metadata"]["labels"]["loki_rule"] == "1"


@pytest.mark.parametrize("copy_name", sorted(SHIPPED))
def test_each_file_the_chart_ships_is_byte_for_byte_the_repositorys_own(copy_name: str) -> None:
    # If this fails: cp the file from deploy/ into charts/loki-event-sync/files/.
    assert (CHART / "files" / copy_name).read_bytes() == (ROOT / SHIPPED[copy_name]).read_bytes()


# --- values, schema, lint, validity ------------------------------------------------------------------


@pytest.mark.parametrize("values, where, what", [
    ({"schedule": 5}, "'/schedule'", "got number, want string"),
    ({"suspend": "yes"}, "'/suspend'", "got string, want boolean"),
    ({"imgae": {"tag": "v1"}}, "at ''", "additional properties 'imgae' not allowed"),
    ({"image": {"tga": "v1"}}, "'/image'", "additional properties 'tga' not allowed"),
    ({"rbac": {"scope": "namespaces"}}, "'/rbac/namespaces'", "minItems: got 0, want 1"),
    ({"rbac": {"scope": "namespace", "namespaces": ["a"]}}, "'/rbac/scope'", "'cluster'"),
    ({"settings": {"LOKI_EVENT_SYNC_CLUSTER": "x"}}, "'/settings'", "'LOKI_EVENT_SYNC_CLUSTER' not allowed"),
    ({"backfill": {"enabled": True}}, "'/backfill/since'", "minLength: got 0, want 1"),
])
def test_schema_refuses_a_wrong_type_an_unknown_key_or_namespaces_without_any_in_one_line(
        values: dict[str, Any], where: str, what: str) -> None:
    lines = values_error(values)
    assert len([ln for ln in lines if ln.startswith("- at ")]) == 1, lines
    assert where in lines[0] and what in " ".join(lines), lines


def test_the_chart_tool_prints_a_refusal_as_one_line_and_exits_2(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text("rbac: {scope: namespaces}\n", encoding="utf-8")
    assert chart.main(["render", "-f", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: at '/rbac/namespaces': minItems: got 0, want 1\n"


def test_the_packaged_chart_renders_what_the_directory_does_and_leaves_ci_values_out(tmp_path: Path) -> None:
    archive = Path(chart.package(__version__, tmp_path))
    assert archive.name == f"loki-event-sync-{__version__}.tgz"
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if "/ci/" in n]
    assert {f"loki-event-sync/files/{f}" for f in SHIPPED} <= set(names)
    assert chart.render(all_on(), chart=archive) == chart.render(all_on())


def test_settings_and_an_existing_configmap_together_are_refused_in_one_line() -> None:
    with pytest.raises(chart.ChartError) as refused:
        chart.render({"settings": {"cluster": "a"}, "existingConfigMap": "mine"})
    assert "settings and existingConfigMap are both set" in str(refused.value)
    assert str(refused.value).count("\n") == 0


@pytest.mark.parametrize("values_file", [None, ALL_ON], ids=["defaults", "all-on"])
def test_helm_lint_strict_is_clean(values_file: Path | None) -> None:
    assert chart.lint(chart.load_values([str(values_file)] if values_file else [])) == []


@pytest.mark.parametrize("values", [{}, COMPONENTS_ON, "all-on", {"enrich": {"rbac": True}}],
                         ids=["defaults", "components", "all-on", "enrich-cluster"])
def test_every_rendered_object_is_valid_for_the_oldest_and_newest_supported_kubernetes(values: Any) -> None:
    items = render(all_on() if values == "all-on" else values)
    assert validate_all(items) == len([d for d in items if d["kind"] != "PrometheusRule"])


def test_chart_version_is_the_packages_and_artifact_hub_names_the_default_image() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert meta["apiVersion"] == "v2" and meta["version"] == meta["appVersion"] == __version__
    images = yaml.safe_load(meta["annotations"]["artifacthub.io/images"])
    assert [i["image"] for i in images] == [container(cronjob(render()))["image"]]
    assert meta["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    for k in ("artifacthub.io/links", "artifacthub.io/changes"):
        assert yaml.safe_load(meta["annotations"][k])


# --- what the values change --------------------------------------------------------------------------


def test_every_option_reaches_the_cronjob() -> None:
    values = all_on()
    items = render(values)
    cj = cronjob(items)
    spec, pod = cj["spec"], cj["spec"]["jobTemplate"]["spec"]["template"]
    c = container(cj)
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == ("*/15 * * * *", "Europe/Berlin", True)
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 840
    img = values["image"]
    assert c["image"] == f"{img['repository']}:{img['tag']}@{img['digest']}"
    assert c["imagePullPolicy"] == "Always" and pod["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}]
    assert c["resources"] == values["resources"]
    for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod["spec"][field] == values[field], field
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert values["podLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "events"
    sa = one(items, "ServiceAccount")
    assert sa["metadata"]["name"] == "events"
    assert sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    assert_bound_to_the_service_account(items, NAMESPACE)
    assert c["envFrom"] == [{"configMapRef": {"name": "loki-event-sync-config", "optional": True}},
                            {"secretRef": {"name": "loki-credentials", "optional": True}}]
    env = [e["name"] for e in c["env"]]
    assert env == ["LOKI_EVENT_SYNC_NAMESPACE", "LOKI_EVENT_SYNC_EVENT_NAMESPACES", "LOKI_EVENT_SYNC_LOKI_PASSWORD"]
    assert c["env"][1]["value"] == "default,shop"


def test_settings_become_the_config_configmap_with_prefixed_names_and_never_a_secret() -> None:
    items = render({"settings": {"cluster": "prod", "event-ttl": "1h", "structured-metadata": True, "page-size": 500}})
    (cm,) = [d for d in by_kind(items, "ConfigMap") if d["metadata"]["name"] == "loki-event-sync-config"]
    assert cm["data"] == {"LOKI_EVENT_SYNC_CLUSTER": "prod", "LOKI_EVENT_SYNC_EVENT_TTL": "1h",
                          "LOKI_EVENT_SYNC_STRUCTURED_METADATA": "true", "LOKI_EVENT_SYNC_PAGE_SIZE": "500"}
    assert not by_kind(items, "Secret") and not by_kind(render(all_on()), "Secret")
    mine = container(cronjob(render({"existingConfigMap": "mine"})))["envFrom"][0]
    assert mine == {"configMapRef": {"name": "mine"}}  # named by you, so it must exist


def test_namespaced_scope_lists_only_the_chosen_namespaces_with_a_role_in_each() -> None:
    items = render({"rbac": {"scope": "namespaces", "namespaces": ["default", "shop"]}})
    assert not by_kind(items, "ClusterRole") and not by_kind(items, "ClusterRoleBinding")
    readers = [r for r in by_kind(items, "Role") if r["metadata"]["name"] == "loki-event-sync-events"]
    assert {r["metadata"]["namespace"] for r in readers} == {"default", "shop"}
    assert_bound_to_the_service_account(items, NAMESPACE)
    env = {e["name"]: e.get("value") for e in container(cronjob(items))["env"]}
    assert env["LOKI_EVENT_SYNC_EVENT_NAMESPACES"] == "default,shop"
    rbac_kinds = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert not [d for d in render({"rbac": {"create": False}}) if d["kind"] in rbac_kinds]


ENRICH = {("", "pods", "get"), ("apps", "replicasets", "get"), ("apps", "deployments", "get"),
          ("apps", "statefulsets", "get"), ("apps", "daemonsets", "get"), ("batch", "jobs", "get"),
          ("batch", "cronjobs", "get")}


@pytest.mark.parametrize("rbac", [{}, {"scope": "namespaces", "namespaces": ["default", "shop"]}],
                         ids=["cluster", "namespaces"])
def test_enrich_rbac_grants_get_on_the_objects_and_owners_and_nothing_more(rbac: dict[str, Any]) -> None:
    base = render({"rbac": rbac} if rbac else {})
    items = render({"rbac": rbac, "enrich": {"rbac": True}} if rbac else {"enrich": {"rbac": True}})
    assert granted(items)[0] - granted(base)[0] == ENRICH
    roles = [d for d in by_kind(items, "ClusterRole") + by_kind(items, "Role")
             if d["metadata"]["name"] == "loki-event-sync-enrich"]
    assert {d["metadata"].get("namespace") for d in roles} == ({None} if not rbac else {"default", "shop"})
    assert_bound_to_the_service_account(items, NAMESPACE)


def test_default_rbac_grants_exactly_what_the_code_calls_without_create() -> None:
    perms, _ = granted(render())
    calls = used_permissions()
    assert perms == {p for p in calls if p[2] != "create" and p[1] != "namespaces"}
    assert ("", "namespaces", "list") in granted(render({"tenantLabel": {"enabled": True}}))[0]


# --- upgrades keep the Lease holder and the checkpoint -----------------------------------------------


def state_objects(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in items if key(d) in {("Lease", NAMESPACE, "loki-event-sync"),
                                                      ("ConfigMap", NAMESPACE, "loki-event-sync-checkpoint")}}


def test_an_upgrade_with_changed_values_renders_the_lease_and_the_checkpoint_unchanged() -> None:
    installed = state_objects(render(is_install=True, revision=1))
    upgraded = state_objects(render({**all_on(), "backfill": {"enabled": False}}, is_upgrade=True, revision=2))
    assert set(installed) == {"Lease", "ConfigMap"}
    assert upgraded == installed
    for doc in installed.values():
        assert doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}  # helm uninstall keeps it
    assert installed["Lease"]["spec"] == {}
    assert "data" not in installed["ConfigMap"] and "binaryData" not in installed["ConfigMap"]
    # Helm's three-way merge of the two renders over what the job wrote: nothing of the job's is touched.
    live = {**copy.deepcopy(installed["ConfigMap"]), "binaryData": {"checkpoint": "written-by-the-job"}}
    assert three_way_patch(installed["ConfigMap"], upgraded["ConfigMap"], live) == {}
    lease = {**copy.deepcopy(installed["Lease"]), "spec": {"holderIdentity": "pod-1", "leaseDurationSeconds": 60}}
    assert three_way_patch(installed["Lease"], upgraded["Lease"], lease) == {}


# --- the backfill Job --------------------------------------------------------------------------------


def backfill(since: str, until: str = "") -> dict[str, Any]:
    return one(render({"backfill": {"enabled": True, "since": since, "until": until}}), "Job")


def test_backfill_template_is_the_cronjobs_job_but_for_the_window_as_job_manifest_derives_it() -> None:
    job = backfill("2026-11-25T08:00:00Z", "2026-11-25T10:00:00Z")
    now = dt.datetime(2026, 11, 25, 11, tzinfo=dt.timezone.utc)
    derived = backfill_job(cronjob(render()), "2026-11-25T08:00:00Z", "2026-11-25T10:00:00Z", now)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == \
        ["backfill", "--since", "2026-11-25T08:00:00Z", "--until", "2026-11-25T10:00:00Z"]
    assert without(job, HELM_LABELS, set())["spec"] == without(derived, HELM_LABELS, set())["spec"]
    assert job["metadata"]["labels"]["loki-event-sync/backfill"] == "true"
    assert job["metadata"]["namespace"] == NAMESPACE
    validate_all([job])


def test_backfill_job_name_is_the_same_for_one_window_and_another_for_another() -> None:
    a = backfill("2026-11-25T08:00:00Z")["metadata"]["name"]
    assert a == backfill("2026-11-25T08:00:00Z")["metadata"]["name"]
    assert a != backfill("2026-11-25T09:00:00Z")["metadata"]["name"]
    assert len(a) <= 63 and a.startswith("loki-event-sync-backfill-")
    assert not by_kind(render(), "Job")  # never part of an install


def test_documented_uninstall_and_adoption_steps_name_the_real_objects() -> None:
    guide = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    assert "kubectl -n loki-event-sync delete configmap/loki-event-sync-checkpoint lease/loki-event-sync" in guide
    for needle in ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace", "app.kubernetes.io/managed-by=Helm"):
        assert needle in guide, needle
    assert json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))["additionalProperties"] is False
