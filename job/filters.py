"""Client-side filters on top of --field-selector: full-match regexes on four event fields."""
from __future__ import annotations

import re
from dataclasses import dataclass

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
