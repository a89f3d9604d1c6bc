"""Just enough LogQL to run the dashboard's and the alert rules' queries over what the job pushed.

Parses a query's log pipeline (stream selector, line filters, json/logfmt/regexp parsers, label
filters, unwrap) the way Loki reads it, and evaluates it on one entry: its stream labels, its
structured metadata and its line. Metric functions around the pipeline are not evaluated; a
query's range and a trailing comparison (`> 0`) are returned for the caller to check. Anything
this parser does not know fails loudly, so a query it cannot read is a test failure, not a pass.
"""
from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field

_STR = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_TOKEN = re.compile(
    rf"\s*(?:(?P<linefilter>\|=|!=|\|~|!~)\s*(?P<lfvalue>{_STR})"
    rf"|\|\s*(?P<parser>json|logfmt)\b(?P<params>(?:\s+(?!\|)[^|\[)]*)?)"
    rf"|\|\s*(?P<regexp>regexp|pattern)\s+(?P<rxvalue>{_STR})"
    rf"|\|\s*unwrap\s+(?P<unwrap>\w+)"
    rf"|\|\s*line_format\s+(?P<lineformat>{_STR})"
    rf"|\|\s*(?P<label>[A-Za-z_]\w*)\s*(?P<op>=~|!~|!=|==|>=|<=|=|>|<)\s*(?P<value>{_STR}|-?[0-9.]+))"
)
_SELECTOR = re.compile(r"\{([^{}]*)\}")
_MATCHER = re.compile(rf'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*({_STR})\s*,?')
_RANGE = re.compile(r"^\s*\[([^\]]+)\]")
_COMPARISON = re.compile(r"\)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+)\s*$")


def unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return json.loads(text)


@dataclass
class Pipeline:
    selector: list[tuple[str, str, str]]
    stages: list[tuple[str, ...]] = field(default_factory=list)
    range: str = ""
    comparison: tuple[str, float] | None = None

    def parser_kinds(self) -> list[str]:
        return [s[1] for s in self.stages if s[0] == "parser"]

    def label_filters(self) -> list[tuple[str, str, str]]:
        return [(s[1], s[2], s[3]) for s in self.stages if s[0] == "filter"]

    def unwrapped(self) -> str | None:
        return next((s[1] for s in self.stages if s[0] == "unwrap"), None)


def parse(query: str, variables: dict[str, str] | None = None) -> Pipeline:
    """The (first) log pipeline of a query; $variables are replaced by the given values first."""
    text = query
    for name, value in sorted((variables or {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    m = _SELECTOR.search(_blank_line_formats(text))
    if not m:
        raise ValueError(f"no stream selector in {query!r}")
    body = text[m.start() + 1 : m.end() - 1]
    selector = []
    pos = 0
    while pos < len(body.strip()):
        mm = _MATCHER.match(body, pos)
        if not mm:
            raise ValueError(f"cannot read the selector {{{body}}}")
        selector.append((mm.group(1), mm.group(2), unquote(mm.group(3))))
        pos = mm.end()
    p = Pipeline(selector)
    rest = text[m.end():]
    while True:
        t = _TOKEN.match(rest)
        if not t:
            break
        g = t.groupdict()
        if g["linefilter"]:
            p.stages.append(("line", g["linefilter"], unquote(g["lfvalue"])))
        elif g["parser"]:
            if (g["params"] or "").strip():
                raise ValueError(f"parser parameters are not supported here: {g['params']!r}")
            p.stages.append(("parser", g["parser"]))
        elif g["regexp"]:
            p.stages.append(("parser", g["regexp"], unquote(g["rxvalue"])))
        elif g["unwrap"]:
            p.stages.append(("unwrap", g["unwrap"]))
        elif g["lineformat"]:
            p.stages.append(("line_format", unquote(g["lineformat"])))
        else:
            value = g["value"]
            p.stages.append(("filter", g["label"], g["op"], unquote(value) if value[0] in "\"`" else value))
        rest = rest[t.end():]
    r = _RANGE.match(rest)
    if r:
        p.range = r.group(1)
        rest = rest[r.end():]
    if rest.strip() and not rest.strip().startswith((")", ",")):  # the end of an argument
        raise ValueError(f"cannot read {rest.strip()!r} in {query!r}")
    c = _COMPARISON.search(text)
    if c:
        p.comparison = (c.group(1), float(c.group(2)))
    return p


def _blank_line_formats(text: str) -> str:
    # line_format templates hold {{.x}}, which are not selectors; keep offsets by blanking in place.
    return re.sub(rf"line_format\s+({_STR})", lambda m: " " * len(m.group(0)), text)


def _logfmt(line: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    pair = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
    while pos < len(line) and line[pos:].strip():
        m = pair.match(line, pos)
        if not m:
            return None
        value = m.group(2)
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:  # Go-only escapes (\x01, \a): decode them the way Go would
                value = codecs.decode(value[1:-1], "unicode_escape")
        out[m.group(1)] = value
        pos = m.end()
    return out


def _matches(value: str, op: str, want: str) -> bool:
    if op in ("=", "=="):
        return value == want
    if op == "!=":
        return value != want
    if op == "=~":
        return re.fullmatch(want, value) is not None
    if op == "!~":
        return re.fullmatch(want, value) is None
    raise ValueError(op)


def evaluate(p: Pipeline, labels: dict[str, str], line: str) -> tuple[bool, dict[str, str], float | None]:
    """Whether the entry passes the pipeline, its labels afterwards, and the unwrapped value."""
    if not all(_matches(labels.get(n, ""), op, v) for n, op, v in p.selector):
        return False, labels, None
    cur = dict(labels)
    value: float | None = None
    for stage in p.stages:
        kind = stage[0]
        if kind == "line":
            op, want = stage[1], stage[2]
            found = (want in line) if op in ("|=", "!=") else (re.search(want, line) is not None)
            if found != (op in ("|=", "|~")):
                return False, cur, None
        elif kind == "parser":
            if stage[1] == "json":
                try:
                    doc = json.loads(line)
                    parsed = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()
                              if not isinstance(v, (dict, list))} if isinstance(doc, dict) else None
                except ValueError:
                    parsed = None
                if parsed is None:
                    cur["__error__"] = "JSONParserErr"
                    continue
            elif stage[1] == "logfmt":
                parsed = _logfmt(line)
                if parsed is None:
                    cur["__error__"] = "LogfmtParserErr"
                    continue
            elif stage[1] == "regexp":
                m = re.search(stage[2], line)
                parsed = {k: v for k, v in (m.groupdict() if m else {}).items() if v is not None}
            else:
                raise ValueError(f"unsupported parser {stage[1]}")
            for k, v in parsed.items():
                cur[k + "_extracted" if k in labels else k] = v
        elif kind == "filter":
            name, op, want = stage[1], stage[2], stage[3]
            have = cur.get(name, "")
            if op in (">", ">=", "<", "<=") or (op in ("==", "!=") and re.fullmatch(r"-?[0-9.]+", want)):
                try:
                    x = float(have)
                except ValueError:
                    cur["__error__"] = "LabelFilterErr"
                    continue
                ok = {">": x > float(want), ">=": x >= float(want), "<": x < float(want),
                      "<=": x <= float(want), "==": x == float(want), "!=": x != float(want)}[op]
            else:
                ok = _matches(have, op, want)
            if not ok:
                return False, cur, None
        elif kind == "unwrap":
            try:
                value = float(cur.get(stage[1], ""))
            except ValueError:
                cur["__error__"] = "SampleExtractionErr"
        elif kind == "line_format":
            pass
    return True, cur, value
