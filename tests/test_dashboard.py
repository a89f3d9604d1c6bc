"""The Grafana dashboard (deploy/components/dashboard) only queries labels and fields the job writes,
and every panel finds what it is for in what the job actually shipped, under each label style."""
from __future__ import annotations

import datetime as dt
import inspect
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from job import gap, lines, lokiclient, metrics
from tests import logql
from tests.conftest import Harness, legacy_event, now
from tests.shipped import EVENTS, SETTINGS, Shipped, shipped

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "deploy" / "components" / "dashboard"
STYLE_LABELS = {
    "default": {"cluster", "job", "namespace", "type", "kind", "level", "service_name", "backfill"},
    "seed": {"_host", "_namespace", "_type", "_kind", "level", "service_name", "backfill"},
    "alloy": {"cluster", "job", "instance", "namespace", "level", "service_name", "backfill"},
}
JOB_LOG_LABELS = {"namespace", "container"}  # what a log agent puts on the job's own pod logs
LOKI_BUILTINS = {"__error__", "__error_details__"}  # set by Loki's parsers, not by the job

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_LINE_FORMAT = re.compile(r'line_format\s*("(?:[^"\\]|\\.)*"|`[^`]*`)')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def dict_keys_in(func: Any) -> set[str]:
    return set(re.findall(r'^\s*"(\w+)":', inspect.getsource(func), re.M))


# Read from the code, so the test follows the line formats if they change.
GAP_FIELDS = dict_keys_in(gap.marker)
FIELDS = {"default": set(lines.FIELDS), "seed": set(lines.FIELDS), "alloy": set(lines.ALLOY_FIELDS)}


def dashboard() -> dict[str, Any]:
    return json.loads((COMPONENT / "loki-event-sync.json").read_text(encoding="utf-8"))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels") or [])


def rows() -> dict[str, list[dict[str, Any]]]:
    """Label style (or "job") -> the panels of its row."""
    out: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for p in dashboard()["panels"]:
        if p["type"] == "row":
            current = next((s for s in (*STYLE_LABELS, "by workload", "runs") if p["title"].lower().startswith(s)),
                           "job")
            out[current] = list(p.get("panels") or [])
        else:
            out[current].append(p)
    return out


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def all_values() -> dict[str, str]:
    """Each variable as "All" (or its default) expands it."""
    out = {}
    for name, v in variables().items():
        if v["type"] in ("query", "custom"):
            out[name] = v.get("allValue") or ".*"
        elif v["type"] == "textbox":
            out[name] = v["query"]
    out.update(__interval="1m", __range="6h")
    return out


def exprs(style: str) -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in rows()[style] for t in p.get("targets") or []]
    for v in variables().values():
        mine = v["name"].startswith(f"{style}_") or (style == "default" and "_" not in v["name"])
        if v["type"] == "query" and mine:
            found.append((f"variable {v['name']}", v["query"]))
    return found


def label_names(expr: str) -> set[str]:
    """Label names in stream selectors, in by/without clauses and as label_values' argument."""
    p = logql.parse(expr) if "{" in expr else None
    names = {n for n, _, _ in p.selector} if p else set()
    bare = _STRING.sub('""', expr)
    names |= {n.strip() for g in _GROUPING.findall(bare) for n in g.split(",") if n.strip()}
    m = re.match(r"\s*label_values\((?:\{[^}]*\}\s*,)?\s*(\w+)\s*\)", bare)
    if m:
        names.add(m.group(1))
    return names


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda s: f"{s[0]}-{s[1]}{'-sm' if s[2] else ''}")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Shipped]:
    style, line_format, sm = request.param
    return style, shipped(style, line_format, sm, tmp_path_factory.mktemp(f"ship-{style}"))


def test_the_dashboard_has_a_row_for_each_label_style_and_one_for_the_job() -> None:
    assert set(rows()) == {"job", "by workload", "runs", *STYLE_LABELS}
    assert "label style" in dashboard()["description"]


def test_every_label_a_query_names_is_one_its_style_emits() -> None:
    for style, labels in STYLE_LABELS.items():
        for where, q in exprs(style):
            p = logql.parse(q, all_values()) if "{" in q else None
            parsed = FIELDS[style] | GAP_FIELDS if p and p.parser_kinds() else set()
            extracted = set(re.findall(r"\(\?P<(\w+)>", q))
            unknown = label_names(q) - labels - parsed - extracted
            assert not unknown, f"{style}: {where}: {q} uses labels the job never sets: {unknown}"


def test_every_parsed_field_is_one_the_line_has() -> None:
    assert {"reason", "name", "message", "uid", "count", "new", "objectUID"} <= FIELDS["default"]
    assert {"reason", "name", "msg", "count", "new", "type", "kind"} <= FIELDS["alloy"]
    assert {"gapStart", "gapEnd", "gapSeconds"} <= GAP_FIELDS
    for style in STYLE_LABELS:
        for where, q in exprs(style):
            if "{" not in q:
                continue
            p = logql.parse(q, all_values())
            names = {f for f, _, _ in p.label_filters()} | {p.unwrapped() or "reason"}
            extracted = set(re.findall(r"\(\?P<(\w+)>", q))
            unknown = names - FIELDS[style] - GAP_FIELDS - STYLE_LABELS[style] - LOKI_BUILTINS - extracted
            assert not unknown, f"{style}: {where}: {q} filters on fields the line never has: {unknown}"


def test_every_line_format_field_is_one_the_line_has() -> None:
    for style in STYLE_LABELS:
        for where, q in exprs(style):
            fields = {f for s in _LINE_FORMAT.findall(q) for f in re.findall(r"\{\{[^}]*?\.(\w+)", s)}
            assert not fields - FIELDS[style] - GAP_FIELDS - STYLE_LABELS[style], f"{style}: {where}"


def test_every_stream_selector_has_a_matcher_loki_accepts_as_non_empty() -> None:
    # Loki refuses a selector whose matchers all match the empty string, e.g. {namespace=~".*"}.
    values = all_values()
    for style in [*STYLE_LABELS, "job"]:
        for where, q in [(p["title"], t["expr"]) for p in rows()[style] for t in p.get("targets") or []]:
            p = logql.parse(q, values)
            assert any((op == "=" and v) or (op == "=~" and re.fullmatch(v, "") is None) for _, op, v in p.selector), \
                f"{where}: {p.selector}"


def test_every_panel_finds_what_the_job_shipped_under_its_style(data: tuple[str, Shipped]) -> None:
    style, shipped_ = data
    values = all_values()
    for p in rows()[style]:
        for t in p["targets"]:
            q = logql.parse(t["expr"], values)
            hits = []
            for item in shipped_.items:
                ok, out, value = logql.evaluate(q, item.labels, item.line)
                if ok and not out.get("__error__") and (q.unwrapped() is None or value is not None):
                    hits.append((item, out, value))
            assert hits, f"{style}: {p['title']}: {t['expr']} finds nothing"
            if "Sync gaps" in p["title"]:
                assert [i.name for i, _, _ in hits] == [""]  # the marker, and only the marker
            if q.unwrapped() == "new":
                # Occurrences: the corpus' events add up to the sum of their counts (all new), as kubectl says.
                assert sum(v or 0 for _, _, v in hits) == sum(_count(i) for i, _, _ in hits if i.name)


def _count(item: Any) -> int:
    return int(EVENTS[item.name]["count"])


def _kind(item: Any) -> str:
    return str(EVENTS[item.name]["kind"]) if item.name else "LokiEventSync"


def test_occurrence_panels_group_by_fields_every_shipped_event_has(data: tuple[str, Shipped]) -> None:
    style, shipped_ = data
    values = all_values()
    for p in rows()[style]:
        for t in p["targets"]:
            by = re.match(r"\s*(?:topk\(\d+,\s*)?\w+\s+by\s*\(([^)]*)\)", t["expr"])
            if not by:
                continue
            q = logql.parse(t["expr"], values)
            for item in shipped_.items:
                ok, out, value = logql.evaluate(q, item.labels, item.line)
                if ok and not out.get("__error__") and value is not None:
                    for name in (n.strip() for n in by.group(1).split(",")):
                        # Alloy labels the object's namespace, and a Node has none.
                        node = style == "alloy" and name == "namespace" and _kind(item) == "Node"
                        assert out.get(name) or node, f"{style}: {p['title']}: {item.name} has no {name}"


def test_the_rejects_panels_read_the_jobs_own_log_lines(data: tuple[str, Shipped]) -> None:
    _, shipped_ = data
    assert "Loki rejected %d of %d entries" in inspect.getsource(lokiclient)  # the line the panels look for
    values = all_values()
    job_panels = rows()["job"]
    assert job_panels
    for p in job_panels:
        for t in p["targets"]:
            q = logql.parse(t["expr"], values)
            assert {n for n, _, _ in q.selector} <= JOB_LOG_LABELS
            hits = [v or 0.0 for i in shipped_.job_log
                    for ok, out, v in [logql.evaluate(q, i.labels, i.line)] if ok and not out.get("__error__")]
            assert hits, f"{p['title']} finds no reject in the job's log"
            if q.unwrapped():
                assert sum(hits) == 1  # the corpus has exactly one rejected entry


def test_the_job_container_the_rejects_panels_read_is_the_cronjobs() -> None:
    cronjob = next(d for d in yaml.safe_load_all((ROOT / "cronjob.yaml").read_text()) if d and d["kind"] == "CronJob")
    containers = {c["name"] for c in cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]}
    for p in rows()["job"]:
        for t in p["targets"]:
            (container,) = [v for n, _, v in logql.parse(t["expr"], all_values()).selector if n == "container"]
            assert container in containers
    assert variables()["job_namespace"]["query"] == "loki-event-sync"


def test_occurrences_peaks_and_lines_each_have_a_panel() -> None:
    for style in STYLE_LABELS:
        targets = [t["expr"] for p in rows()[style] for t in p.get("targets") or []]
        assert any("sum_over_time" in q and "unwrap new" in q for q in targets), style
        assert any("max_over_time" in q and "unwrap count" in q for q in targets), style
        assert any("count_over_time" in q for q in targets), style


def test_the_dashboard_imports_by_hand_and_through_the_sidecar() -> None:
    d = dashboard()
    inputs = {i["name"]: (i["type"], i["pluginId"]) for i in d["__inputs"]}
    assert inputs == {"DS_LOKI": ("datasource", "loki"), "DS_PROMETHEUS": ("datasource", "prometheus")}
    req = {r["id"]: r for r in d["__requires"]}
    assert req["grafana"]["version"].startswith("10.") and "10.x to 12.x" in d["description"]
    assert d["uid"] == "loki-event-sync" and d["schemaVersion"] <= 39
    vs = variables()
    assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "loki"
    assert vs["datasource"]["current"]["value"] == "${DS_LOKI}"  # import maps the input here
    assert vs["prometheus"]["query"] == "prometheus" and vs["prometheus"]["current"]["value"] == "${DS_PROMETHEUS}"
    for p in panels(d["panels"]):
        for t in p.get("targets") or []:
            assert t["datasource"] in ({"type": "loki", "uid": "${datasource}"},
                                       {"type": "prometheus", "uid": "${prometheus}"}), p["title"]
            assert t["datasource"] == p["datasource"], p["title"]
    for name, v in vs.items():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}", name
    assert len({p["id"] for p in panels(d["panels"])}) == len(list(panels(d["panels"])))


def test_the_dashboard_component_makes_a_configmap_for_the_grafana_sidecar() -> None:
    k = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert k["kind"] == "Component" and k["generatorOptions"]["disableNameSuffixHash"] is True
    (gen,) = k["configMapGenerator"]
    assert gen["files"] == ["loki-event-sync.json"] and gen["options"]["labels"] == {"grafana_dashboard": "1"}
    # kubectl apply keeps a copy in an annotation limited to 256 KiB.
    assert (COMPONENT / "loki-event-sync.json").stat().st_size < 200_000
    assert not (ROOT / "deploy" / "grafana-dashboard.yaml").exists()


def test_the_documented_query_returns_kubectls_count_for_an_event_that_repeated(h: Harness) -> None:
    docs = (ROOT / "docs" / "grafana.md").read_text(encoding="utf-8")
    (query,) = re.findall(r'^max_over_time\(\{job="loki-event-sync"\}.*$', docs, re.M)
    e = h.kube.put_event(legacy_event("web.1", count=3, type_="Warning", reason="BackOff", last=now()))
    assert h.run() == 0
    uid = e["metadata"]["uid"]
    h.kube.put_event(legacy_event("web.1", count=70, type_="Warning", reason="BackOff",
                                  last=now() + dt.timedelta(seconds=30), uid=uid))
    assert h.run() == 0
    items = [(x.labels, x.line) for x in h.loki.entries()]
    values = []
    for doc_query in (query, query.replace("unwrap count", "unwrap new")):
        p = logql.parse(re.sub(r'uid="[^"]*"', f'uid="{uid}"', doc_query))
        values.append([v or 0.0 for labels, line in items for ok, out, v in [logql.evaluate(p, labels, line)]
                       if ok and not out.get("__error__")])
    counts, news = values
    assert len(counts) == 2  # two lines: one per run in which the count rose
    assert max(counts) == 70 == sum(news)  # kubectl's COUNT, whichever way


def test_the_workload_row_counts_occurrences_by_workload_across_a_rollout(h: Harness) -> None:
    from tests.workloads import about, enrich_run, put, ref

    deploy = put(h.kube, "deployments", "web")
    for rollout in ("7d9f8", "5c4b3"):  # two ReplicaSets of one Deployment: a rollout
        rs = put(h.kube, "replicasets", f"web-{rollout}", owner=ref(deploy))
        about(h.kube, put(h.kube, "pods", f"web-{rollout}-a", owner=ref(rs)), count=2)
    about(h.kube, put(h.kube, "pods", "debug"), reason="Pulled")
    assert enrich_run(h, "--enrich", "owner") == 0
    values = all_values()
    panels_ = rows()["by workload"]
    assert {p["title"] for p in panels_} == {"Occurrences by workload", "Top reasons per workload"}
    for p in panels_:
        (t,) = p["targets"]
        q = logql.parse(t["expr"], values)
        assert any(op == "=" and v for _, op, v in q.selector)  # a matcher Loki accepts as non-empty
        sums: dict[str, float] = {}
        for e in h.loki.entries():
            ok, out, value = logql.evaluate(q, e.labels, e.line)
            if ok and not out.get("__error__") and value is not None:
                sums[out["workload_name"]] = sums.get(out["workload_name"], 0.0) + value
        assert sums == {"web": 4.0, "debug": 1.0}, p["title"]  # both pods' occurrences under one Deployment


# --- the runs row: the job's Pushgateway metrics and its own summary lines ---------------------------------

PUSHED = metrics.NAMES
PUSH_LABELS = {"job", "cluster", "outcome"}  # the grouping key, kept by honor_labels, and the outcome


def _promql(p: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in p["targets"] if t["datasource"]["type"] == "prometheus"]


def test_the_runs_row_shows_runs_time_shipped_fill_delay_rejects_and_skips() -> None:
    runs = rows()["runs"]
    exprs_ = " ".join(t["expr"] for p in runs for t in p["targets"])
    for metric in ("run_duration_seconds", "events_shipped", "checkpoint_bytes", "checkpoint_limit_bytes",
                   "last_success_timestamp_seconds", "loki_rejected_entries", "ledger_entries"):
        assert f"loki_event_sync_{metric}" in exprs_, metric
    assert "outcome" in exprs_ and [p for p in runs if p["datasource"]["type"] == "loki"]


def test_the_runs_row_queries_only_metrics_and_labels_the_job_pushes() -> None:
    for p in rows()["runs"]:
        for q in _promql(p):
            names = set(re.findall(r"\bloki_event_sync_\w+", q))
            assert names and names <= PUSHED, f"{p['title']}: {names - PUSHED}"
            used = {n.strip() for g in _GROUPING.findall(q) for n in g.split(",")}
            used |= set(re.findall(r"\{(\w+)=", q))
            used |= set(re.findall(r"\{\{(\w+)\}\}", p["targets"][0]["legendFormat"]))
            assert used <= PUSH_LABELS, f"{p['title']}: {used - PUSH_LABELS}"


def test_last_success_is_never_a_skipped_run() -> None:
    (stale,) = [p for p in rows()["runs"] if "last successful" in p["title"]]
    assert "loki_event_sync_last_success_timestamp_seconds" in _promql(stale)[0]
    assert "last_success_timestamp_seconds" in inspect.getsource(metrics)
    assert re.search(r"synced = outcome == .ok.", inspect.getsource(metrics))  # only an ok run pushes it


def test_the_runs_panel_counts_each_run_by_outcome_from_its_summary_line(data: tuple[str, Shipped]) -> None:
    _, shipped_ = data
    values = all_values()
    (panel,) = [p for p in rows()["runs"] if p["datasource"]["type"] == "loki"]
    (target,) = panel["targets"]
    q = logql.parse(target["expr"], values)
    assert {n for n, _, _ in q.selector} <= JOB_LOG_LABELS
    hits = [out for i in shipped_.job_log for ok, out, _ in [logql.evaluate(q, i.labels, i.line)]
            if ok and not out.get("__error__")]
    assert [h["outcome"] for h in hits] == ["ok"]  # the corpus' one run, once
