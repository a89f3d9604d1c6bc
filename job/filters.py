"""Client-side filters: full-match regexes on four event fields, and --field-selector for dumps.

An empty regex is no filter (job/cmd.py turns '' into None): '' would otherwise full-match only
empty values and silently drop every event.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from job.events import Event


@dataclass(frozen=True)
class Filters:
    """Each is a full-match regex or None (no filter)."""

    include_namespaces: re.Pattern[str] | None = None
    exclude_namespaces: re.Pattern[str] | None = None
    include_reasons: re.Pattern[str] | None = None
    exclude_reasons: re.Pattern[str] | None = None
    include_types: re.Pattern[str] | None = None
    exclude_types: re.Pattern[str] | None = None
    include_kinds: re.Pattern[str] | None = None
    exclude_kinds: re.Pattern[str] | None = None

    def active(self) -> bool:
        return self != Filters()

    def matches(self, e: Event) -> bool:
        for value, inc, exc in (
            (e.meta.namespace, self.include_namespaces, self.exclude_namespaces),
            (e.reason, self.include_reasons, self.exclude_reasons),
            (e.type, self.include_types, self.exclude_types),
            (e.obj.kind, self.include_kinds, self.exclude_kinds),
        ):
            if inc is not None and not inc.fullmatch(value or ""):
                return False
            if exc is not None and exc.fullmatch(value or ""):
                return False
        return True


# The fields the API server can select core/v1 Events on, and how it reads each from an Event
# (pkg/registry/core/event/strategy.go): "source" is source.component, else reportingComponent.
_EVENT_FIELDS: dict[str, Callable[[Event], str | None]] = {
    "involvedObject.kind": lambda e: e.obj.kind,
    "involvedObject.namespace": lambda e: e.obj.namespace,
    "involvedObject.name": lambda e: e.obj.name,
    "involvedObject.uid": lambda e: e.obj.uid,
    "involvedObject.apiVersion": lambda e: e.obj.apiVersion,
    "involvedObject.resourceVersion": lambda e: e.obj.resourceVersion,
    "involvedObject.fieldPath": lambda e: e.obj.fieldPath,
    "reason": lambda e: e.reason,
    "reportingComponent": lambda e: e.reportingComponent,
    "source": lambda e: e.src.component or e.reportingComponent,
    "type": lambda e: e.type,
    "metadata.namespace": lambda e: e.meta.namespace,
    "metadata.name": lambda e: e.meta.name,
}
SELECTABLE_FIELDS = tuple(_EVENT_FIELDS)


@dataclass(frozen=True)
class FieldSelector:
    """--field-selector evaluated here, as the API server would, for Events read from a dump.

    Terms are ANDed; `=` and `==` mean equal, `!=` not equal; a backslash escapes `,`, `=` and `\\`.
    A missing field reads as the empty string, as in the API server.
    """

    terms: tuple[tuple[str, bool, str], ...]  # (field, wanted equal, value)

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """apimachinery's fields.ParseSelector: no trimming, the first operator splits a term.

        Raises ValueError naming an unsupported field, as the API server's 400 does.
        """
        terms = []
        for part in _split(text, ","):
            if not part:
                continue
            m = re.search(r"!=|==|=", part)
            if not m:
                raise ValueError(f"{part!r} is not a field selector term; use field=value or field!=value")
            name, value = part[: m.start()], part[m.end() :]
            if name not in _EVENT_FIELDS:
                raise ValueError(f"field label not supported: {name}; events support {', '.join(SELECTABLE_FIELDS)}")
            if any(c in re.sub(r"\\[,=\\]", "", value) for c in "\\,="):  # what the API's UnescapeValue refuses
                raise ValueError(f"{part!r}: escape ',', '=' and '\\' in a value with a backslash")
            terms.append((name, m.group() != "!=", re.sub(r"\\(.)", r"\1", value)))
        return cls(tuple(terms))

    def matches(self, e: Event) -> bool:
        return all(((_EVENT_FIELDS[name](e) or "") == value) == equal for name, equal, value in self.terms)


def _split(text: str, sep: str) -> list[str]:
    """Split on unescaped ``sep``, keeping escapes for the value to undo."""
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out
