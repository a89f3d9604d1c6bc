"""Loki's answers read by meaning, for every supported Loki line (2.9, 3.0, 3.1-3.5.5, 3.5.6 and 3.6+).

The texts come from tests/lokidouble.py's LOKI_TEXTS, copied word for word from grafana/loki's
pkg/validation/validate.go, pkg/chunkenc/interface.go, pkg/ingester/stream.go and pkg/util at v2.9.17,
v3.0.0, v3.1.0-v3.5.5 and v3.5.6/v3.6.0 (docs/loki-facts.md lists them with the version each applies to).
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from job.lokianswers import read_400, shorten
from job.lokiclient import SPLIT_BOUND
from tests.conftest import Harness, legacy_event, now
from tests.kubeapi import KubeAPI
from tests.lokidouble import LOKI_TEXTS, LOKI_VERSIONS, NS, LokiDouble

OLDEST, NEWEST = LOKI_VERSIONS[0], LOKI_VERSIONS[-1]
STREAM = '{job="loki-event-sync", namespace="default"}'
ARGS = {"stream": STREAM, "limit": 65536, "size": 102400, "tenant": "t1", "ts": "2026-01-01T00:00:00Z",
        "cutoff": "2026-01-01T00:00:00Z", "error": "1:2: parse error: unexpected character", "until": "x",
        "status": 260, "lines": 1, "bytes": 2}
TOO_OLD = (f"entry for stream '{STREAM}' has timestamp too old: 2026-01-01T00:00:00Z, "
           "oldest acceptable timestamp is: 2026-01-08T00:00:00Z")
TOO_NEW = f"entry for stream '{STREAM}' has timestamp too new: 2027-01-01T00:00:00Z"


def _ingester(reason: str, n: int = 1) -> str:
    return (f"entry with timestamp 2026-01-01 00:00:00 +0000 UTC ignored, reason: '{reason}',\n"
            f"user 'fake', total ignored: {n} out of 5 for stream: {STREAM}")


def _known_400s() -> list[tuple[str, str, str]]:
    """(version, text, verdict) for every 400 text each Loki line sends to a push."""
    cases = []
    for version, texts in LOKI_TEXTS.items():
        t = {k: v.format(**ARGS) for k, v in texts.items() if v}
        cases += [(version, TOO_OLD, "entry"), (version, TOO_NEW, "entry"), (version, f"3 errors like: {TOO_OLD}",
                                                                              "entry"),
                  (version, _ingester(t["too_far_behind"]), "entry"), (version, _ingester("entry out of order"),
                                                                       "entry"),
                  (version, t["line_too_long"], "mend"), (version, t["sm_disallowed"], "request"),
                  (version, t["invalid_labels"], "request"),
                  (version, f"entry for stream '{STREAM}' has 16 label names; limit 15", "request"),
                  (version, f"stream '{STREAM}' has label name too long: 'x'", "request"),
                  (version, f"stream '{STREAM}' has label value too long: 'x'", "request"),
                  (version, f"stream '{STREAM}' has duplicate label name: 'x'", "request"),
                  (version, "error at least one label pair is required per stream", "request"),
                  (version, "loghttp.PushRequest.Streams: ReadArray: expect [ or n", "request")]
        cases += [(version, t[k], "mend") for k in ("sm_too_large", "sm_too_many") if k in t]
        if "sm_too_large" in t:
            cases.append((version, f"2 errors like: {t['line_too_long']}; 1 errors like: {t['sm_too_large']}", "mend"))
        cases.append((version, f"1 errors like: {TOO_NEW}; 2 errors like: {t['line_too_long']}", "mend"))
    cases.append(("3.5", "missing required labels [team] for user fake for stream {job=\"x\"}", "request"))
    cases.append(("main", "missing required labels '[team]' for user 'fake' for stream '{job=\"x\"}' "
                          "(policy: 'default')", "request"))
    return cases


def _verdict_kind(text: str) -> str:
    v = read_400(text, 5)
    if v.request_reason:
        return "request"
    if v.unknown:
        return "unknown"
    return "mend" if v.mendable else "entry"


def test_every_known_400_text_of_every_supported_loki_line_gets_its_verdict() -> None:
    cases = _known_400s()
    assert len(cases) >= 15 and {v for v, _, _ in cases} >= set(LOKI_VERSIONS)
    wrong = [(version, text[:70], want, _verdict_kind(text)) for version, text, want in cases
             if _verdict_kind(text) != want]
    assert wrong == []


@pytest.mark.parametrize("version", LOKI_VERSIONS)
def test_loki_names_its_limits_and_they_are_read_in_every_spelling(version: str) -> None:
    t = LOKI_TEXTS[version]
    assert read_400(t["line_too_long"].format(**ARGS), 3).line_limit == 65536
    if t["sm_too_large"]:
        assert read_400(t["sm_too_large"].format(**ARGS), 3).metadata_bytes == 65536
        assert read_400(t["sm_too_many"].format(**ARGS), 3).metadata_count == 65536


def test_an_unknown_reason_is_not_guessed_and_grouped_counts_are_exact() -> None:
    assert read_400("the gateway says no", 4).unknown == "the gateway says no"
    assert read_400(f"1 errors like: {TOO_NEW}; 1 errors like: entry refused for a brand new reason", 4).unknown
    assert read_400(f"2 errors like: {TOO_OLD}; 1 errors like: {TOO_NEW}", 9).rejected == 3
    assert read_400(_ingester("whatever the ingester says", 4), 9).rejected == 4


def test_a_line_shortened_to_lokis_limit_keeps_its_shape_and_says_what_was_cut() -> None:
    line = json.dumps({"reason": "Big", "message": "é" * 5000, "count": 1}, separators=(",", ":"))
    cut = shorten(line, 1000)
    assert len(cut.encode()) <= 1000 and json.loads(cut)["count"] == 1
    assert json.loads(cut)["message"].endswith("bytes]") and "…[truncated " in cut
    plain = shorten("x" * 3000, 1000)
    assert len(plain.encode()) <= 1000 and plain.endswith("…[truncated 2040 bytes]")
    assert shorten(line, 10**6) == line


# --- against the double, oldest and newest line ----------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_a_line_over_lokis_own_limit_lands_truncated_and_the_checkpoint_is_saved(
        kube: KubeAPI, tmp_path: Path, version: str) -> None:
    """issue 17: one 100 KB message among 12 ordinary events, Loki's max_line_size 64 KB."""
    with LokiDouble(max_line_bytes=64 * 1024, loki_version=version) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(12)
        h.kube.put_event(legacy_event("long.1", message="m" * 100_000))
        assert h.run() == 0, h.stderr
        s = h.summary()
        assert (s["lines"], s["rejected"], s["loki_truncated"]) == (13, 0, 1)
        lines = [json.loads(e.line) for e in loki.entries()]
        assert len(lines) == 13 and loki.duplicate_entries == 0  # the 12 landed once
        (long,) = [x for x in lines if x["name"] == "long"]
        assert long["message"].endswith("bytes]") and "…[truncated " in long["message"]
        assert h.checkpoint_bytes() is not None
        assert h.run() == 0 and h.summary()["lines"] == 0 and len(loki.entries()) == 13


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_an_unknown_400_on_a_partial_rejection_is_split_down_to_the_refused_entry(
        kube: KubeAPI, tmp_path: Path, version: str) -> None:
    with LokiDouble(loki_version=version) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(12, ns="default")
        h.kube.put_event(legacy_event("odd.1", message="poison"))
        loki.reject_matching("poison", reason="stream '{stream}' refused by a policy no client knows yet")
        assert h.run() == 0, h.stderr
        s = h.summary()
        assert (s["lines"], s["rejected"]) == (13, 1)
        assert 0 < s["split_requests"] <= SPLIT_BOUND and s["pushes"] == 1 + s["split_requests"]
        names = sorted(json.loads(e.line)["name"] for e in loki.entries())
        assert names == sorted(f"pod-{i}" for i in range(12))  # each good entry once, Loki dropped the re-sends
        assert any("rejected 1 of 1" in r["msg"] and "no client knows" in r["msg"] for r in h.logs())
        assert h.checkpoint_bytes() is not None


def test_an_unknown_400_every_single_entry_gets_fails_the_run_unsaved(h: Harness) -> None:
    h.seed(5)
    h.loki.reject_matching("", reason="stream '{stream}' refused by a policy no client knows yet")
    assert h.run() == 1
    msg = h.one_error()
    assert "refused the whole request (400)" in msg and "every single entry" in msg
    assert h.summary()["split_requests"] <= SPLIT_BOUND and h.checkpoint_bytes() is None


def test_grouped_entry_rejections_are_counted_exactly_and_the_run_goes_on(kube: KubeAPI, tmp_path: Path) -> None:
    # Loki's clock 20 minutes behind: the 2 events of now are over its 10 minute grace ("too new").
    with LokiDouble(now_ns=lambda: time.time_ns() - 20 * 60 * NS) as loki:
        h = Harness(kube, loki, tmp_path)
        h.seed(10, ns="default", last=now() - dt.timedelta(minutes=30))
        h.seed(2, prefix="now", ns="default")
        assert h.run() == 0, h.stderr
        s = h.summary()
        assert (s["lines"], s["rejected"], s["split_requests"]) == (12, 2, 0)
        warning = next(r["msg"] for r in h.logs() if r["level"] == "warning" and "rejected" in r["msg"])
        assert warning.startswith("Loki rejected 2 of 12 entries (not retried): 2 errors like: entry for stream")
        assert len(loki.entries()) == 10 and h.checkpoint_bytes() is not None


@pytest.mark.parametrize("version", ["3.0", NEWEST])  # 2.9 has no structured-metadata limits
@pytest.mark.parametrize("limit", ["bytes", "count"])
def test_structured_metadata_over_lokis_limits_is_dropped_and_the_entry_lands(
        kube: KubeAPI, tmp_path: Path, version: str, limit: str) -> None:
    with LokiDouble(loki_version=version) as loki:
        if limit == "bytes":
            loki.max_metadata_bytes = 40
        else:
            loki.max_metadata_count = 2
        h = Harness(kube, loki, tmp_path)
        h.seed(3)
        assert h.run("run", "--structured-metadata") == 0, h.stderr
        s = h.summary()
        assert (s["lines"], s["rejected"], s["metadata_dropped"]) == (3, 0, 3)
        assert [e.metadata for e in loki.entries()] == [{}, {}, {}] and h.checkpoint_bytes() is not None


def test_blocked_ingestion_is_read_in_the_3_2_and_the_main_shape() -> None:
    from job.lokianswers import blocked_until

    assert blocked_until("ingestion blocked for user fake until '2030-01-01T00:00:00Z' with status code '260'") \
        == "2030-01-01T00:00:00Z"
    assert blocked_until("Ingestion blocked for user 'fake' (policy: 'p1') until '2030-01-02T00:00:00Z' "
                         "with status code '260'") == "2030-01-02T00:00:00Z"
    assert blocked_until("<html>login</html>") is None


def test_splitting_stops_at_its_bound_and_fails_the_push_unsaved(loki: LokiDouble) -> None:
    from job.batch import Batch
    from job.lokiclient import LokiClient, PushError

    loki.reject_matching("", reason="stream '{stream}' refused by a policy no client knows yet")
    batch = Batch()
    for i in range(200):  # all refused: singling out each one would take 398 extra requests
        batch.add((("job", "x"),), time.time_ns() - i * NS, f"line {i}", None)
    client = LokiClient(loki.url)
    with pytest.raises(PushError, match=rf"{SPLIT_BOUND} extra requests did not single out"):
        client.send("", batch)
    assert loki.pushes == 1 + SPLIT_BOUND and client.stats.split_requests == SPLIT_BOUND
    client.close()
