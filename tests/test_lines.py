"""Labels, lines and structured metadata in every label style and line format (job/lines.py)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from job.events import Event, decode_page
from job.lines import ALLOY_FIELDS, FIELDS, LABEL_STYLES, LINE_FORMATS, Formatter, go_quote

OBJ_UID = "7c1e2f3a-0000-4000-8000-00000000abcd"
EVENT_UID = "e0e0e0e0-1111-4222-8333-444455556666"


def event(**over: Any) -> Event:
    item: dict[str, Any] = {
        "metadata": {"name": "web-1.17f", "namespace": "shop", "uid": EVENT_UID, "resourceVersion": "9001"},
        "involvedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "namespace": "shop",
                           "name": "web", "uid": OBJ_UID, "resourceVersion": "42"},
        "reason": "Sync", "message": 'Scheduled for "sync"', "type": "Normal", "count": 3,
        "source": {"component": "nginx-ingress-controller"},
        "reportingComponent": "nginx-ingress-controller", "reportingInstance": "ingress-nginx-7d9",
        "firstTimestamp": "2026-11-25T10:00:00Z", "lastTimestamp": "2026-11-25T10:05:00Z",
    }
    item.update(over)
    ((e, _),) = decode_page(json.dumps({"items": [item]}).encode()).events
    return e


def fmt(style: str = "default", line: str = "json", sm: bool = False, cluster: str = "prod") -> Formatter:
    return Formatter(label_style=style, line_format=line, cluster=cluster, max_line_bytes=261120,
                     structured_metadata=sm)


@pytest.mark.parametrize("line_format", LINE_FORMATS)
def test_every_line_format_names_the_involved_objects_api_version_and_uid(line_format: str) -> None:
    line = fmt(line=line_format).line(event(), 3)
    assert "networking.k8s.io/v1" in line and OBJ_UID in line


def test_the_json_line_keeps_the_old_key_order_and_adds_the_object_fields_last() -> None:
    parsed = json.loads(fmt().line(event(), 3))
    assert list(parsed)[-2:] == ["apiVersion", "objectUID"]
    assert (parsed["apiVersion"], parsed["objectUID"], parsed["uid"]) == ("networking.k8s.io/v1", OBJ_UID, EVENT_UID)
    assert list(FIELDS)[:18] == ["type", "reason", "kind", "namespace", "name", "fieldPath", "message", "component",
                                 "host", "reportingInstance", "action", "firstTimestamp", "lastTimestamp",
                                 "eventTime", "count", "new", "event", "uid"]


def test_structured_metadata_carries_the_object_uid_and_api_version() -> None:
    md = fmt(sm=True).metadata(event())
    assert md == {"name": "web", "uid": EVENT_UID, "reason": "Sync", "object_uid": OBJ_UID,
                  "api_version": "networking.k8s.io/v1"}
    assert fmt(sm=False).metadata(event()) is None


def test_the_alloy_line_has_alloys_keys_in_alloys_order_then_ours_before_msg() -> None:
    line = fmt("alloy", "alloy").line(event(), 2)
    assert line == (
        "name=web kind=Ingress objectAPIversion=networking.k8s.io/v1 objectRV=42 "
        "reportinginstance=ingress-nginx-7d9 reportingcontroller=nginx-ingress-controller "
        "sourcecomponent=nginx-ingress-controller reason=Sync type=Normal count=3 "
        f'new=2 uid={EVENT_UID} objectUID={OBJ_UID} msg="Scheduled for \\"sync\\""'
    )
    keys = [kv.split("=", 1)[0] for kv in line.split(" ") if "=" in kv]
    assert keys == [k for k in ALLOY_FIELDS if k in keys]


def test_the_alloy_line_quotes_msg_as_go_does_and_always() -> None:
    assert go_quote("plain") == '"plain"'
    assert go_quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert go_quote("tab\there\nnul\x00 bell\x07 zwsp\u200b é") == '"tab\\there\\nnul\\x00 bell\\a zwsp\\u200b é"'
    assert go_quote("del\x7f private\U000f0000 \U0001f600") == "\"del\\x7f private\\U000f0000 \U0001f600\""
    assert fmt("alloy", "alloy").line(event(message=""), 1).endswith(' msg=""')


def test_the_alloy_line_writes_a_series_events_occurrences_as_count() -> None:
    e = event(count=None, series={"count": 7, "lastObservedTime": "2026-11-25T10:06:00.000000Z"},
              eventTime="2026-11-25T10:00:00.000000Z")
    assert " count=7 new=7 " in fmt("alloy", "alloy").line(e, 7)


def test_the_alloy_style_labels_the_involved_objects_namespace_as_alloy_does() -> None:
    labels = dict(fmt("alloy", "alloy").labels(event()))
    assert labels == {"cluster": "prod", "job": "loki.source.kubernetes_events", "instance": "loki-event-sync",
                      "namespace": "shop", "level": "info", "service_name": "loki.source.kubernetes_events"}
    # A Node is cluster-scoped: Alloy's namespace label is then empty, and Loki drops it.
    node = event(involvedObject={"kind": "Node", "name": "node-1", "uid": OBJ_UID},
                 metadata={"name": "node-1.1", "namespace": "default", "uid": EVENT_UID})
    assert "namespace" not in dict(fmt("alloy", "alloy", cluster="").labels(node))


def test_level_follows_the_type_in_every_style() -> None:
    for style in LABEL_STYLES:
        for type_, level in (("Normal", "info"), ("Warning", "warning"), ("Bogus", "unknown")):
            labels = dict(fmt(style).labels(event(type=type_)))
            assert labels["level"] == level, (style, type_)


def test_under_alloy_with_structured_metadata_level_moves_out_of_the_stream() -> None:
    f = fmt("alloy", "alloy", sm=True)
    assert "level" not in dict(f.labels(event(type="Warning")))
    assert f.metadata(event(type="Warning"))["level"] == "warning"  # type: ignore[index]


@pytest.mark.parametrize("style, service", [("default", "loki-event-sync"), ("seed", "loki-event-sync"),
                                            ("alloy", "loki.source.kubernetes_events")])
def test_every_style_names_its_service_so_loki_never_says_unknown_service(style: str, service: str) -> None:
    assert dict(fmt(style).labels(event()))["service_name"] == service


def test_level_and_service_name_add_no_streams_where_type_is_a_label() -> None:
    events = [event(type=t, involvedObject={"kind": k, "name": "x", "namespace": ns})
              for t in ("Normal", "Warning") for k in ("Pod", "Node") for ns in ("a", "b")]
    for style in ("default", "seed"):
        f = fmt(style)
        with_all = {f.labels(e) for e in events}
        without = {tuple(kv for kv in labels if kv[0] not in ("level", "service_name")) for labels in with_all}
        assert len(with_all) == len(without)


def test_the_seed_line_puts_the_new_keys_last_so_the_collectors_order_holds() -> None:
    line = fmt("seed", "seed").line(event(), 3)
    assert line.startswith("Type:Normal, Reason:Sync, Kind:Ingress, Namespace:shop, Name:web, ")
    assert line.endswith(f"Count:3, New:3, APIVersion:networking.k8s.io/v1, ObjectUID:{OBJ_UID}")


def test_an_alloy_line_over_the_limit_is_cut_in_its_message() -> None:
    f = Formatter(label_style="alloy", line_format="alloy", cluster="", max_line_bytes=400, structured_metadata=False)
    line = f.line(event(message="x" * 2000), 1)
    assert len(line.encode()) <= 400 and "…[truncated " in line and line.startswith("name=web kind=Ingress")
