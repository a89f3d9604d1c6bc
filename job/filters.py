"""Client-side filters: full-match regexes on four event fields, the job's own Events, and
--field-selector for dumps.

An empty regex is no filter (job/cmd.py turns '' into None): '' would otherwise full-match only
empty values and silently drop every event.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

from job.events import Event

# What a name the API server generates ends in: apimachinery's utilrand.String alphabet, five of them
# (names.SimpleNameGenerator), after the base cut to 58 characters when longer.
_SUFFIX = frozenset("bcdfghjklmnpqrstvwxz2456789")
_SUFFIX_LEN, _MAX_BASE = 5, 58
OWN_EVENTS = ("warnings", "all", "none")


@dataclass(frozen=True)
class OwnEvents:
    """The Events about the job itself: its CronJob, the Jobs that CronJob made and their Pods.

    Matched by kind, API group and name in the job's namespace only, as the controllers name them: a
    CronJob-made Job is ``<cronjob>-<minutes since the epoch>``, its Pods ``<job>-<5 characters>``;
    a manual Job (``kubectl create job --from=cronjob/...``, any name) is known by the running Pod's
    own name (HOSTNAME). No namespace, label or reason is enough on its own, so a user's workload
    elsewhere, or a differently named one here, is never matched. ``keep`` says which of them ship:
    warnings (the default: Warnings only), all, or none.
    """

    namespace: str
    cronjob: str
    pod: str = ""  # the running Pod's name; "" off-cluster
    keep: str = "warnings"

    @functools.cached_property
    def _job_re(self) -> re.Pattern[str]:
        # 8 to 10 digits: minutes since 1970 from 1990 to 21,000 AD; a Job named cronjob-1 is not its run.
        return re.compile(rf"{re.escape(self.cronjob)}-\d{{8,10}}")

    def ships(self, e: Event) -> bool:
        """False for an own Event that ``keep`` leaves out; True for everything else."""
        if self.keep == "all" or e.meta.namespace != self.namespace:  # the usual case, decided at once
            return True
        obj = e.obj
        name = getattr(obj, "name", None)  # a list's head has no name: decided on the full decode
        if not name or obj.namespace != self.namespace or not self.is_own(obj.kind, obj.apiVersion, name):
            return True
        return self.keep == "warnings" and e.type == "Warning"

    def is_own(self, kind: str | None, api_version: str | None, name: str) -> bool:
        if kind == "CronJob" and api_version == "batch/v1":
            return name == self.cronjob
        if kind == "Job" and api_version == "batch/v1":
            return self._job(name)
        return kind == "Pod" and api_version == "v1" and self._pod(name)

    def _job(self, name: str) -> bool:
        return bool(self._job_re.fullmatch(name)) or name == self._pods_job()

    def _pods_job(self) -> str:
        """The Job the running Pod belongs to, from the Pod's generated name ("" if it cannot tell)."""
        base = self.pod[:-_SUFFIX_LEN]
        if self.pod[-_SUFFIX_LEN:] and set(self.pod[-_SUFFIX_LEN:]) <= _SUFFIX and base.endswith("-"):
            return base[:-1] if len(base) < _MAX_BASE else ""
        return ""

    def _pod(self, name: str) -> bool:
        if name == self.pod:
            return True
        base, suffix = name[:-_SUFFIX_LEN], name[-_SUFFIX_LEN:]
        if len(suffix) < _SUFFIX_LEN or not set(suffix) <= _SUFFIX:
            return False
        if len(base) == _MAX_BASE:  # a long Job name, cut before the suffix: its run's digits may be cut too
            return bool(re.fullmatch(rf"{re.escape(self.cronjob)}-\d*-?", base))
        return base.endswith("-") and self._job(base[:-1])


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
    own: OwnEvents | None = None  # set by the run, which knows its namespace

    @functools.cached_property
    def _regexes(self) -> bool:
        return any(getattr(self, f"{way}_{what}") is not None for way in ("include", "exclude")
                   for what in ("namespaces", "reasons", "types", "kinds"))

    def active(self) -> bool:
        return self != Filters()

    def matches(self, e: Event) -> bool:
        own = self.own
        if own is not None and not own.ships(e):
            return False
        if not self._regexes:
            return True
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
