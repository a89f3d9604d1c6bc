"""What Loki holds, read through its query API (GET /loki/api/v1/query_range), as a user would."""
from __future__ import annotations

import collections
import json
import time
import urllib.parse
import urllib.request

# Loki's default max_entries_limit_per_query; an e2e namespace holds far fewer lines.
LIMIT = 5000


def occurrences(loki_url: str, selector: str, start_ns: int) -> collections.Counter[tuple[str, int]]:
    """How often each (uid, count) appears in the streams SELECTOR matches, from START_NS to now."""
    query = urllib.parse.urlencode({"query": selector, "start": str(start_ns), "end": str(time.time_ns() + 600 * 10**9),
                                    "limit": str(LIMIT), "direction": "forward"})
    with urllib.request.urlopen(f"{loki_url.rstrip('/')}/loki/api/v1/query_range?{query}", timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    lines = 0
    for stream in body["data"]["result"]:
        for _ts, line in stream["values"]:
            fields = json.loads(line)
            lines += 1
            if "uid" in fields:  # gap markers carry none
                seen[(fields["uid"], int(fields["count"]))] += 1
    assert lines < LIMIT, "the query hit its limit: narrow it"
    return seen
