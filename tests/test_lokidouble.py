"""Proves the Loki double behaves like Loki (per docs/loki-facts.md), through real HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

try:  # the same module object conftest.py uses, so isinstance checks agree
    from tests.conftest import wait_for
    from tests.lokidouble import Entry, LokiDouble
except ImportError:  # run from elsewhere: pytest put tests/ itself on sys.path
    from conftest import wait_for  # type: ignore[no-redef, import-not-found]
    from lokidouble import Entry, LokiDouble  # type: ignore[no-redef, import-not-found]

NS = 1_000_000_000
HOUR = 3600 * NS
# A fixed clock keeps the age checks (7 d, 10 min, 1 h) deterministic.
NOW = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
JSON_GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def loki(clock: Clock) -> Iterator[LokiDouble]:
    with LokiDouble(now_ns=clock) as double:
        yield double


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def body(*streams: tuple[dict[str, str], list[list[Any]]]) -> bytes:
    return json.dumps({"streams": [{"stream": s, "values": v} for s, v in streams]}).encode()


def push(
    http: requests.Session,
    loki: LokiDouble,
    *streams: tuple[dict[str, str], list[list[Any]]],
    headers: dict[str, str] | None = None,
    timeout: float = 5,
) -> requests.Response:
    return http.post(
        loki.url + "/loki/api/v1/push",
        data=gzip.compress(body(*streams)),
        headers=headers if headers is not None else JSON_GZIP,
        timeout=timeout,
    )


def query(http: requests.Session, loki: LokiDouble, selector: str, **params: Any) -> requests.Response:
    params = {"query": selector, "start": NOW - 2 * HOUR, "end": NOW + HOUR, **params}
    return http.get(loki.url + "/loki/api/v1/query_range", params=params, timeout=5)


def ts(offset_s: float = 0) -> str:
    return str(NOW + int(offset_s * NS))


SVC = {"job": "loki-event-sync", "namespace": "default"}
SVC_KEY = (("job", "loki-event-sync"), ("namespace", "default"), ("service_name", "loki-event-sync"))


# --- the happy path -------------------------------------------------------------------------


def test_gzip_push_is_204_and_reads_back_via_query_range(loki: LokiDouble, http: requests.Session) -> None:
    r = push(http, loki, (SVC, [[ts(-2), "first"], [ts(-1), "second", {"uid": "u-1"}]]))
    assert r.status_code == 204 and r.content == b""

    r = query(http, loki, '{job="loki-event-sync"} | json', direction="forward")
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "success" and doc["data"]["resultType"] == "streams"
    # Loki 3 returns structured metadata as extra result labels.
    # Stream order in a result is not part of Loki's contract.
    assert sorted(doc["data"]["result"], key=lambda s: s["values"][0][0]) == [
        {"stream": dict(SVC_KEY), "values": [[ts(-2), "first"]]},
        {"stream": {**dict(SVC_KEY), "uid": "u-1"}, "values": [[ts(-1), "second"]]},
    ]
    assert loki.entries() == [
        Entry(dict(SVC_KEY), NOW - 2 * NS, "first", {}),
        Entry(dict(SVC_KEY), NOW - NS, "second", {"uid": "u-1"}),
    ]
    assert loki.lines_by_stream() == {SVC_KEY: [(NOW - 2 * NS, "first"), (NOW - NS, "second")]}
    assert loki.pushes == 1 and loki.accepted_entries == 2


def test_counters_and_bytes_received_are_the_compressed_size(loki: LokiDouble, http: requests.Session) -> None:
    payload = gzip.compress(body((SVC, [[ts(), "x"]])))
    r = http.post(loki.url + "/loki/api/v1/push", data=payload, headers=JSON_GZIP)
    assert r.status_code == 204
    assert (loki.pushes, loki.accepted_entries, loki.bytes_received) == (1, 1, len(payload))


def test_entries_are_sorted_by_time_on_read_even_when_pushed_out_of_order(
    loki: LokiDouble, http: requests.Session
) -> None:
    assert push(http, loki, (SVC, [[ts(-1), "b"], [ts(-3), "a"], [ts(0), "c"]])).status_code == 204
    assert [e.line for e in loki.entries()] == ["a", "b", "c"]
    r = query(http, loki, '{namespace="default"}')  # default direction is backward
    assert [v[1] for v in r.json()["data"]["result"][0]["values"]] == ["c", "b", "a"]


def test_deflate_is_raw_flate_as_in_go(loki: LokiDouble, http: requests.Session) -> None:
    raw = body((SVC, [[ts(), "deflated"]]))
    compressor = zlib.compressobj(wbits=-15)  # raw RFC 1951, what Go's flate.NewReader reads
    deflated = compressor.compress(raw) + compressor.flush()
    headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}
    assert http.post(loki.url + "/loki/api/v1/push", data=deflated, headers=headers).status_code == 204
    assert [e.line for e in loki.entries()] == ["deflated"]
    # zlib.compress() adds a zlib header, which Loki's flate reader rejects: so does the double.
    r = http.post(loki.url + "/loki/api/v1/push", data=zlib.compress(raw), headers=headers)
    assert r.status_code == 400


def test_uncompressed_json_with_charset_is_accepted(loki: LokiDouble, http: requests.Session) -> None:
    r = http.post(
        loki.url + "/loki/api/v1/push",
        data=body((SVC, [[ts(), "plain"]])),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 204


# --- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "service_name"),
    [
        ({"namespace": "a"}, "unknown_service"),
        ({"namespace": "a", "app": "web", "job": "j"}, "web"),
        ({"container": "c", "job": "j"}, "c"),
        ({"service_name": "mine", "app": "web"}, "mine"),
        ({"service_name": "", "app": ""}, "unknown_service"),  # empty values count as absent
    ],
)
def test_service_name_is_derived_like_loki(
    loki: LokiDouble, http: requests.Session, labels: dict[str, str], service_name: str
) -> None:
    assert push(http, loki, (labels, [[ts(), "x"]])).status_code == 204
    assert loki.entries()[0].labels["service_name"] == service_name


def test_empty_label_values_are_dropped(loki: LokiDouble, http: requests.Session) -> None:
    assert push(http, loki, ({"namespace": "a", "reason": ""}, [[ts(), "x"]])).status_code == 204
    assert loki.entries()[0].labels == {"namespace": "a", "service_name": "unknown_service"}


def test_bad_label_name_fails_the_whole_request(loki: LokiDouble, http: requests.Session) -> None:
    r = push(
        http,
        loki,
        (SVC, [[ts(), "valid stream"]]),
        ({"app.kubernetes.io/name": "x"}, [[ts(), "bad stream"]]),
    )
    assert r.status_code == 400
    assert loki.entries() == [] and loki.accepted_entries == 0


def test_too_many_labels_rejects_only_that_stream(loki: LokiDouble, http: requests.Session) -> None:
    many = {f"l{i}": "v" for i in range(16)}
    r = push(http, loki, (SVC, [[ts(), "kept"]]), (many, [[ts(), "dropped"]]))
    assert r.status_code == 400
    # Loki 3's distributor: one message for the stream (util.GroupedErrors with a single error is bare).
    assert r.text.rstrip().endswith("has 16 label names; limit 15") and "errors like" not in r.text
    assert [e.line for e in loki.entries()] == ["kept"]
    # service_name does not count towards the 15.
    fifteen = {f"l{i}": "v" for i in range(15)}
    assert push(http, loki, (fifteen, [[ts(), "ok"]])).status_code == 204


# --- per-entry validation and partial acceptance --------------------------------------------


def test_partial_400_keeps_valid_entries_and_names_the_reason(
    loki: LokiDouble, http: requests.Session
) -> None:
    r = push(
        http,
        loki,
        (SVC, [[ts(-1), "good"], [ts(-8 * 24 * 3600), "ancient"], [ts(3600), "future"], [ts(0), "good too"]]),
    )
    assert r.status_code == 400
    # Distributor validation errors come as Go's util.GroupedErrors: "N errors like: MSG" joined by "; ".
    too_old, too_new = r.text.rstrip().split("; ")
    assert too_old.startswith("1 errors like: entry for stream '{job=\"loki-event-sync\"")
    assert ("has timestamp too old: 2025-12-24T00:00:00Z, oldest acceptable timestamp is: 2025-12-25T00:00:00Z"
            in too_old)
    assert too_new.startswith("1 errors like: ") and too_new.endswith("has timestamp too new: 2026-01-01T01:00:00Z")
    assert [e.line for e in loki.entries()] == ["good", "good too"]
    assert (loki.accepted_entries, loki.rejected_entries) == (2, 2)


@pytest.mark.parametrize(("version", "says"), [("2.9", "Max entry size"), ("3.6", "max entry size")])
def test_line_too_long_is_rejected_not_truncated_in_the_versions_words(
        clock: Clock, http: requests.Session, version: str, says: str) -> None:
    with LokiDouble(now_ns=clock, max_line_bytes=100, loki_version=version) as loki:
        r = push(http, loki, (SVC, [[ts(), "é" * 51], [ts(), "x" * 100]]))  # 102 UTF-8 bytes, 100 bytes
        assert r.status_code == 400
        assert r.text.startswith(f"{says} '100' bytes exceeded") and "length '102' bytes" in r.text
        assert [e.line for e in loki.entries()] == ["x" * 100]


def test_default_max_line_is_256_kib(loki: LokiDouble, http: requests.Session) -> None:
    r = push(http, loki, (SVC, [[ts(), "x" * (256 * 1024 + 1)], [ts(1), "x" * (256 * 1024)]]))
    assert r.status_code == 400 and r.text.startswith("max entry size '262144' bytes exceeded")
    assert loki.accepted_entries == 1


def test_too_far_behind_across_and_within_requests(loki: LokiDouble, http: requests.Session) -> None:
    assert push(http, loki, (SVC, [[ts(0), "newest"]])).status_code == 204
    # Out of order is fine within the hour; beyond it the entry is rejected.
    r = push(http, loki, (SVC, [[ts(-3599), "late but ok"], [ts(-3601), "too late"]]))
    assert r.status_code == 400
    assert "entry too far behind" in r.text and "total ignored: 1 out of 2" in r.text
    # Within one request the newest entry so far moves the window for the ones after it.
    other = {"namespace": "other"}
    r = push(http, loki, (other, [[ts(-7200), "old first"], [ts(0), "new"], [ts(-7200 + 1), "old after"]]))
    assert r.status_code == 400 and "total ignored: 1 out of 3" in r.text
    assert sorted(e.line for e in loki.entries()) == ["late but ok", "new", "newest", "old first"]


def test_duplicates_are_dropped_silently(loki: LokiDouble, http: requests.Session) -> None:
    values: list[list[Any]] = [[ts(-2), "a", {"uid": "1"}], [ts(-1), "b"]]
    assert push(http, loki, (SVC, values)).status_code == 204
    assert push(http, loki, (SVC, values)).status_code == 204
    assert loki.duplicate_entries == 2 and loki.accepted_entries == 2
    assert [e.line for e in loki.entries()] == ["a", "b"]
    # Same ts and line but other metadata is a different entry (when it is not the last line).
    assert push(http, loki, (SVC, [[ts(-2), "a", {"uid": "2"}]])).status_code == 204
    assert [(e.line, e.metadata) for e in loki.entries()] == [("a", {"uid": "1"}), ("a", {"uid": "2"}), ("b", {})]


def test_resending_an_entry_older_than_the_window_is_rejected_not_deduplicated(
    loki: LokiDouble, http: requests.Session
) -> None:
    # Loki checks the 1 h window before its duplicate check, so a late re-send is a 400.
    assert push(http, loki, (SVC, [[ts(-7200), "old"], [ts(0), "new"]])).status_code == 204
    r = push(http, loki, (SVC, [[ts(-7200), "old"]]))
    assert r.status_code == 400 and "entry too far behind" in r.text


def test_structured_metadata_must_be_strings(loki: LokiDouble, http: requests.Session) -> None:
    r = push(http, loki, (SVC, [[ts(), "x", {"count": 3}]]))
    assert r.status_code == 400 and loki.entries() == []


def test_structured_metadata_names_are_normalised(loki: LokiDouble, http: requests.Session) -> None:
    assert push(http, loki, (SVC, [[ts(), "x", {"k8s.pod.name": "p"}]])).status_code == 204
    assert loki.entries()[0].metadata == {"k8s_pod_name": "p"}


def test_timestamp_must_be_a_string_of_integer_ns(loki: LokiDouble, http: requests.Session) -> None:
    for bad in (NOW, "1.5", "2026-01-01T00:00:00Z", ""):
        r = push(http, loki, (SVC, [[ts(), "fine"], [bad, "bad"]]))
        assert r.status_code == 400, bad
    assert loki.entries() == []


def test_reject_matching_gives_a_partial_400(loki: LokiDouble, http: requests.Session) -> None:
    loki.reject_matching("poison")
    r = push(http, loki, (SVC, [[ts(-1), "ok"], [ts(), "has poison in it"]]))
    # The ingester's shape (pkg/ingester/stream.go): a line per entry, then the stream's summary.
    assert r.status_code == 400
    assert r.text == ("entry with timestamp 2026-01-01 00:00:00 +0000 UTC ignored, reason: 'line rejected by the "
                      "test double (reject_matching)',\nuser 'fake', total ignored: 1 out of 2 for stream: "
                      '{job="loki-event-sync", namespace="default", service_name="loki-event-sync"}\n')
    assert [e.line for e in loki.entries()] == ["ok"]


def test_identical_validation_errors_are_grouped_with_their_count(
    clock: Clock, http: requests.Session
) -> None:
    with LokiDouble(now_ns=clock, max_line_bytes=10) as loki:
        r = push(http, loki, (SVC, [[ts(), "x" * 11], [ts(1), "y" * 11], [ts(2), "short"]]))
    assert r.status_code == 400
    assert r.text.startswith("2 errors like: max entry size '10' bytes exceeded for stream")
    assert "; " not in r.text and [e.line for e in loki.entries()] == ["short"]


def test_structured_metadata_on_a_loki_that_disallows_it_refuses_each_entry_carrying_it(
    clock: Clock, http: requests.Session
) -> None:
    with LokiDouble(now_ns=clock, allow_structured_metadata=False) as loki:
        r = push(http, loki, (SVC, [[ts(), "a", {"uid": "1"}], [ts(1), "b", {"uid": "2"}], [ts(2), "plain"]]))
        assert r.status_code == 400
        assert r.text.startswith("2 errors like: stream '{job=\"loki-event-sync\"")
        assert "includes structured metadata, but this feature is disallowed" in r.text
        assert [e.line for e in loki.entries()] == ["plain"]


# --- request-level errors --------------------------------------------------------------------


def test_missing_content_type_is_400(loki: LokiDouble, http: requests.Session) -> None:
    r = push(http, loki, (SVC, [[ts(), "x"]]), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and loki.entries() == []


def test_unsupported_content_encoding_is_400(loki: LokiDouble, http: requests.Session) -> None:
    r = push(http, loki, (SVC, [[ts(), "x"]]), headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 400


def test_malformed_json_is_400(loki: LokiDouble, http: requests.Session) -> None:
    r = http.post(loki.url + "/loki/api/v1/push", data=b'{"streams": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_empty_stream_list_is_422(loki: LokiDouble, http: requests.Session) -> None:
    r = http.post(loki.url + "/loki/api/v1/push", data=b'{"streams": []}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    # A stream without values is not an error.
    assert push(http, loki, (SVC, [])).status_code == 204


def test_body_over_the_limit_after_decompression_is_413(clock: Clock, http: requests.Session) -> None:
    with LokiDouble(now_ns=clock, max_body_bytes=10_000) as loki:
        r = push(http, loki, (SVC, [[ts(), "z" * 20_000]]))  # compresses to far below 10 kB
        assert r.status_code == 413 and loki.entries() == []


def test_tenant_required_gives_401_without_org_id(clock: Clock, http: requests.Session) -> None:
    with LokiDouble(now_ns=clock, tenant_required=True) as loki:
        r = push(http, loki, (SVC, [[ts(), "x"]]))
        assert r.status_code == 401 and "no org id" in r.text
        r = push(http, loki, (SVC, [[ts(), "x"]]), headers={**JSON_GZIP, "X-Scope-OrgID": "team-a"})
        assert r.status_code == 204
        assert loki.tenants_seen == {"team-a"}
        assert query(http, loki, '{namespace="default"}').status_code == 401
        other = http.get(
            loki.url + "/loki/api/v1/query_range",
            params={"query": '{namespace="default"}', "start": str(NOW - HOUR), "end": str(NOW + 1)},
            headers={"X-Scope-OrgID": "team-b"},
        )
        assert other.json()["data"]["result"] == []  # tenants are isolated


def test_gateway_basic_and_bearer_auth(clock: Clock, http: requests.Session) -> None:
    with LokiDouble(now_ns=clock, basic_auth=("user", "pw"), bearer_token="tok") as loki:
        assert push(http, loki, (SVC, [[ts(), "x"]])).status_code == 401
        wrong = base64.b64encode(b"user:nope").decode()
        wrong_auth = {**JSON_GZIP, "Authorization": f"Basic {wrong}"}
        assert push(http, loki, (SVC, [[ts(), "x"]]), headers=wrong_auth).status_code == 401
        good = base64.b64encode(b"user:pw").decode()
        good_auth = {**JSON_GZIP, "Authorization": f"Basic {good}"}
        assert push(http, loki, (SVC, [[ts(-1), "b"]]), headers=good_auth).status_code == 204
        bearer = {**JSON_GZIP, "Authorization": "Bearer tok"}
        assert push(http, loki, (SVC, [[ts(), "t"]]), headers=bearer).status_code == 204
        assert loki.accepted_entries == 2


# --- injected failures -----------------------------------------------------------------------


def test_fail_next_429_with_retry_after_stores_nothing(loki: LokiDouble, http: requests.Session) -> None:
    loki.fail_next(429, times=2, retry_after="3", body="slow down")
    for _ in range(2):
        r = push(http, loki, (SVC, [[ts(), "x"]]))
        assert r.status_code == 429 and r.headers["Retry-After"] == "3" and r.text == "slow down"
    assert loki.entries() == []
    assert push(http, loki, (SVC, [[ts(), "x"]])).status_code == 204
    assert loki.pushes == 3 and loki.accepted_entries == 1


def test_fail_next_5xx_without_retry_after(loki: LokiDouble, http: requests.Session) -> None:
    loki.fail_next(503)
    r = push(http, loki, (SVC, [[ts(), "x"]]))
    assert r.status_code == 503 and "Retry-After" not in r.headers


def test_delay_next_stores_the_push_even_when_the_client_gives_up(
    loki: LokiDouble, http: requests.Session
) -> None:
    # The answer comes 5 s late, fifty times the client's 0.1 s of patience. The double stores before
    # it waits, but maybe only after the client gave up: wait for the store, not for a time.
    loki.delay_next(5.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        push(http, loki, (SVC, [[ts(), "late"]]), timeout=0.1)
    wait_for(lambda: loki.accepted_entries == 1, "the late push to be stored")
    assert [e.line for e in loki.entries()] == ["late"]
    # The client re-sends the same bytes: Loki deduplicates them.
    assert push(http, loki, (SVC, [[ts(), "late"]])).status_code == 204
    assert loki.accepted_entries == 1 and loki.duplicate_entries == 1


def test_drop_connection_next(loki: LokiDouble, http: requests.Session) -> None:
    loki.drop_connection_next()
    with pytest.raises(requests.exceptions.ConnectionError):
        push(http, loki, (SVC, [[ts(), "x"]]))
    assert loki.entries() == [] and loki.pushes == 1
    assert push(http, loki, (SVC, [[ts(), "x"]])).status_code == 204


def test_reset_forgets_everything(loki: LokiDouble, http: requests.Session) -> None:
    push(http, loki, (SVC, [[ts(), "x"]]))
    loki.fail_next(500)
    loki.reset()
    assert loki.entries() == [] and loki.pushes == 0 and loki.accepted_entries == 0
    assert push(http, loki, (SVC, [[ts(), "x"]])).status_code == 204


# --- reading back ----------------------------------------------------------------------------


def test_query_range_matchers_time_range_limit_and_direction(loki: LokiDouble, http: requests.Session) -> None:
    push(
        http,
        loki,
        ({"namespace": "a", "type": "Normal"}, [[ts(-3), "a1"], [ts(-1), "a2"]]),
        ({"namespace": "b", "type": "Warning"}, [[ts(-2), "b1"], [ts(0), "b2"]]),
    )

    def lines(selector: str, **params: Any) -> list[str]:
        r = query(http, loki, selector, **params)
        assert r.status_code == 200, r.text
        values = [v for s in r.json()["data"]["result"] for v in s["values"]]
        reverse = params.get("direction", "backward") == "backward"
        return [v[1] for v in sorted(values, key=lambda v: int(v[0]), reverse=reverse)]

    assert lines('{namespace="a"}', direction="forward") == ["a1", "a2"]
    assert lines('{namespace!="a", type=~"Warn.*"}', direction="forward") == ["b1", "b2"]
    assert lines('{namespace=~"a|b", type!~"Normal"}') == ["b2", "b1"]
    assert lines('{type=~".+"}', direction="forward", limit=2) == ["a1", "b1"]
    assert lines('{type=~".+"}', limit=3) == ["b2", "a2", "b1"]
    # start inclusive, end exclusive
    assert lines('{type=~".+"}', direction="forward", start=ts(-2), end=ts(0)) == ["b1", "a2"]
    assert query(http, loki, '{type=~".+"}', limit=5001).status_code == 400
    assert query(http, loki, '{type=~".*"}').status_code == 400  # empty-compatible selector
    assert query(http, loki, "not a selector").status_code == 400


def test_query_range_categorize_labels_returns_metadata_per_entry(
    loki: LokiDouble, http: requests.Session
) -> None:
    push(http, loki, (SVC, [[ts(), "x", {"uid": "1"}]]))
    r = http.get(
        loki.url + "/loki/api/v1/query_range",
        params={"query": '{job="loki-event-sync"}', "start": str(NOW - HOUR), "end": str(NOW + 1)},
        headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"},
    )
    assert r.json()["data"]["result"] == [
        {"stream": dict(SVC_KEY), "values": [[ts(), "x", {"structuredMetadata": {"uid": "1"}}]]}
    ]


def test_ready(loki: LokiDouble, http: requests.Session) -> None:
    r = http.get(loki.url + "/ready")
    assert r.status_code == 200 and r.text == "ready"


# --- volume ----------------------------------------------------------------------------------


def test_ingests_1_mib_batches_with_metadata_entry_for_entry(loki: LokiDouble, http: requests.Session) -> None:
    # What the benchmark sends: 5 batches of ~1 MiB. Behaviour only; the double's speed is reported by
    # the benchmark (its CPU share), never asserted here.
    stamp = NOW - 50 * 60 * NS
    for b in range(5):
        values = []
        for i in range(8000):
            line = f"Normal Scheduled Pod/default/web-{b}-{i} assigned to node-{i % 7}"
            values.append([str(stamp), line, {"uid": f"{b}-{i}"}])
            stamp += 1000
        payload = gzip.compress(body(({"namespace": "default", "type": "Normal"}, values)))
        assert http.post(loki.url + "/loki/api/v1/push", data=payload, headers=JSON_GZIP).status_code == 204
    assert loki.accepted_entries == 40_000 and loki.rejected_entries == 0
    entries = loki.entries()
    assert len(entries) == 40_000 and entries[-1].metadata == {"uid": "4-7999"}


# --- protobuf + snappy, Loki's native format --------------------------------------------------


PROTO = {"Content-Type": "application/x-protobuf"}


def _ld(field: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def test_protobuf_with_snappy_block_is_read_like_loki(loki: LokiDouble, http: requests.Session) -> None:
    import cramjam

    # Built field by field from push.proto: PushRequest.streams(1) -> StreamAdapter{labels(1),
    # entries(2)} -> EntryAdapter{timestamp(1){seconds(1), nanos(2)}, line(2), structuredMetadata(3)}.
    seconds, nanos = divmod(NOW, NS)
    stamp = bytes([0x08]) + _varint(seconds) + bytes([0x10]) + _varint(nanos + 5)
    pair = _ld(1, b"k8s.pod.uid") + _ld(2, b"u-1")
    entry = _ld(1, stamp) + _ld(2, "é line".encode()) + _ld(3, pair)
    stream = _ld(1, b'{job="loki-event-sync", namespace="default"}') + _ld(2, entry)
    r = http.post(loki.url + "/loki/api/v1/push", data=bytes(cramjam.snappy.compress_raw(_ld(1, stream))),
                  headers=PROTO, timeout=5)
    assert r.status_code == 204, r.text
    (e,) = loki.entries()
    assert (e.labels, e.ts, e.line, e.metadata) == (dict(SVC_KEY), NOW + 5, "é line", {"k8s_pod_uid": "u-1"})
    assert loki.media_types == ["application/x-protobuf"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def test_protobuf_framed_snappy_or_uncompressed_is_400(loki: LokiDouble, http: requests.Session) -> None:
    import cramjam

    body = _ld(1, _ld(1, b'{a="b"}'))
    for data in (bytes(cramjam.snappy.compress(body)), body):  # the framed format, and no snappy at all
        r = http.post(loki.url + "/loki/api/v1/push", data=data, headers=PROTO, timeout=5)
        assert r.status_code == 400 and loki.entries() == []


def test_protobuf_declaring_more_than_the_body_limit_is_413_before_decoding(
    clock: Clock, http: requests.Session
) -> None:
    with LokiDouble(now_ns=clock, max_body_bytes=1000) as loki:
        r = http.post(loki.url + "/loki/api/v1/push", data=_varint(10**9) + b"\x00", headers=PROTO, timeout=5)
    assert r.status_code == 413 and "larger than max" in r.text
