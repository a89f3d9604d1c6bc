"""The Grafana dashboard only queries labels and JSON fields that the job actually writes to Loki."""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from job import gap, lines

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LABELS = {"cluster", "job", "namespace", "type", "kind", "backfill"}
SEED_LABELS = {"_host", "_namespace", "_type", "_kind"}
LOKI_BUILTINS = {"__error__", "__error_details__"}  # set by Loki's parsers, not by the job

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_LINE_FORMAT = re.compile(r'line_format\s*("(?:[^"\\]|\\.)*"|`[^`]*`)')
_SELECTOR = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LABEL_FILTER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|==|=|>=|<=|>|<)")
_PARSER = re.compile(r"\|\s*(?:json|logfmt|regexp|pattern)\b")  # stages that turn line fields into labels
_NAMED_GROUP = re.compile(r"\(\?P?<(\w+)>")


def dict_keys_in(func: Any) -> set[str]:
    return set(re.findall(r'^\s*"(\w+)":', inspect.getsource(func), re.M))


# Read from the code, so the test follows the line format if it changes.
EVENT_FIELDS = set(lines.FIELDS)
GAP_FIELDS = dict_keys_in(gap.marker)


def dashboard() -> dict[str, Any]:
    (cm,) = [d for d in yaml.safe_load_all((ROOT / "deploy" / "grafana-dashboard.yaml").read_text()) if d]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    return json.loads(text)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels") or [])


def queries() -> list[tuple[str, str]]:
    """(where, LogQL) for every panel target and every label_values variable."""
    d = dashboard()
    found = [(p["title"], t["expr"]) for p in panels(d["panels"]) for t in p.get("targets") or []]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
            found.append((f"variable {v['name']}", q))
    return found


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def selectors(expr: str) -> list[list[tuple[str, str, str]]]:
    expr = _LINE_FORMAT.sub('line_format ""', expr)  # its {{.x}} are templates, not selectors
    return [[(m[0], m[1], json.loads(m[2])) for m in _MATCHER.findall(body)] for body in _SELECTOR.findall(expr)]


def label_names(expr: str) -> set[str]:
    """Label names in stream selectors, in by/without clauses and as label_values' argument."""
    names = {name for sel in selectors(expr) for name, _, _ in sel}
    bare = _STRING.sub('""', expr)
    names |= {n.strip() for group in _GROUPING.findall(bare) for n in group.split(",") if n.strip()}
    m = re.match(r"\s*label_values\((?:\{[^}]*\}\s*,)?\s*(\w+)\s*\)", bare)
    if m:
        names.add(m.group(1))
    return names


def parsed_fields(expr: str) -> set[str]:
    """Names the query takes from the parsed line: what a regexp extracts, label filters after the
    parser (`| json`, `| regexp`), and the by() clauses of such a query."""
    bare = _STRING.sub('""', expr)
    parser = _PARSER.search(bare)
    if not parser:
        return set()
    stages = re.split(r"\|(?![=~])", bare[parser.end():])
    used = {m.group(1) for stage in stages if (m := _LABEL_FILTER.match(stage))}
    used |= set(_NAMED_GROUP.findall(expr))
    return used | {n.strip() for g in _GROUPING.findall(bare) for n in g.split(",") if n.strip()}


def template_fields(expr: str) -> set[str]:
    return {f for s in _LINE_FORMAT.findall(expr) for f in re.findall(r"\{\{[^}]*?\.(\w+)", s)}


def test_the_dashboard_has_queries_for_both_label_styles() -> None:
    styles = [label_names(q) & (DEFAULT_LABELS | SEED_LABELS) for _, q in queries()]
    assert any(s and s <= DEFAULT_LABELS for s in styles)
    assert any(s and s <= SEED_LABELS for s in styles)
    assert "label style" in dashboard()["description"]


def test_every_label_a_query_names_is_one_the_job_emits() -> None:
    for where, q in queries():
        parsed = EVENT_FIELDS | GAP_FIELDS if _PARSER.search(_STRING.sub('""', q)) else set()
        unknown = label_names(q) - DEFAULT_LABELS - SEED_LABELS - parsed
        assert not unknown, f"{where}: {q} uses labels the job never sets: {unknown}"


def test_no_query_mixes_the_two_label_styles() -> None:
    # A stream has one style's labels only, so a selector mixing both would never match anything.
    for where, q in queries():
        names = {n for sel in selectors(q) for n, _, _ in sel}
        assert not (names & DEFAULT_LABELS and names & SEED_LABELS), f"{where}: {q}"


def test_every_parsed_field_is_one_the_json_line_has() -> None:
    assert {"reason", "name", "message", "uid", "count"} <= EVENT_FIELDS  # the source was read
    assert {"gapStart", "gapEnd", "gapSeconds"} <= GAP_FIELDS
    for where, q in queries():
        unknown = parsed_fields(q) - EVENT_FIELDS - GAP_FIELDS - DEFAULT_LABELS - SEED_LABELS - LOKI_BUILTINS
        assert not unknown, f"{where}: {q} filters or groups on fields the line never has: {unknown}"


def test_every_line_format_field_is_one_the_json_line_has() -> None:
    used = set()
    for where, q in queries():
        fields = template_fields(q)
        assert not fields - EVENT_FIELDS - GAP_FIELDS, f"{where}: {fields - EVENT_FIELDS - GAP_FIELDS}"
        used |= fields
    assert {"namespace", "name", "reason", "message"} <= used


def test_every_stream_selector_has_a_matcher_loki_accepts_as_non_empty() -> None:
    # Loki refuses a selector whose matchers all match the empty string, e.g. {namespace=~".*"}.
    all_values = {name: v.get("allValue") or ".*" for name, v in variables().items()}
    for where, q in queries():
        for sel in selectors(q):
            def non_empty(op: str, value: str) -> bool:
                value = re.sub(r"\$\{?(\w+)\}?", lambda m: all_values.get(m.group(1), ""), value)
                return (op == "=" and value != "") or (op == "=~" and re.fullmatch(value, "") is None)

            assert any(non_empty(op, value) for _, op, value in sel), f"{where}: {sel}"


def test_template_variables_cover_cluster_namespace_type_and_kind() -> None:
    vs = variables()
    assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "loki"
    for name in ("cluster", "namespace", "type", "kind"):
        assert vs[name]["type"] == "query" and vs[name]["query"].startswith("label_values(")
        assert vs[name]["datasource"]["uid"] == "${datasource}"
    for p in panels(dashboard()["panels"]):
        for t in p.get("targets") or []:
            assert t["datasource"] == {"type": "loki", "uid": "${datasource}"}, p["title"]
