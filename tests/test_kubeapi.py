"""Tests for tests/kubeapi.py, driven through the official kubernetes client over real HTTP.

The point is to prove the fake behaves like kube-apiserver as seen by the client the job uses
(see docs/kubernetes.md), so the job's own tests can trust it.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from bench import doubles as bench_doubles

try:
    from tests.kubeapi import MAX_CONFIGMAP_BYTES, KubeAPI, _decode_continue
except ImportError:  # rootdir not on sys.path (plain `pytest` with the default import mode)
    from kubeapi import MAX_CONFIGMAP_BYTES, KubeAPI, _decode_continue  # type: ignore[no-redef,import-not-found]

TOKEN = "s3cret-token"
NS = "loki-event-sync"
DATA = Path(__file__).resolve().parent / "data"  # example Events copied into the repo


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    with KubeAPI(token=TOKEN) as server:
        yield server
    assert not server.errors, server.errors


def _client(api: KubeAPI, tmp_path: Path, **kwargs: Any) -> k8s.ApiClient:
    path = api.write_kubeconfig(tmp_path / f"kubeconfig-{time.monotonic_ns()}", **kwargs)
    return k8s_config.new_client_from_config(config_file=path, persist_config=False)


@pytest.fixture
def core(api: KubeAPI, tmp_path: Path) -> Iterator[k8s.CoreV1Api]:
    c = _client(api, tmp_path)
    yield k8s.CoreV1Api(c)
    c.close()


@pytest.fixture
def coord(api: KubeAPI, tmp_path: Path) -> Iterator[k8s.CoordinationV1Api]:
    c = _client(api, tmp_path)
    yield k8s.CoordinationV1Api(c)
    c.close()


def _event(ns: str, name: str, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "metadata": {"namespace": ns, "name": name},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name.split(".")[0], "apiVersion": "v1"},
        "reason": "Started",
        "message": f"message of {name}",
        "source": {"component": "kubelet", "host": "node1"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
        "type": "Normal",
    }
    ev.update(fields)
    return ev


def _populate(api: KubeAPI, n: int, namespaces: tuple[str, ...] = ("alpha", "beta", "gamma")) -> list[str]:
    keys = []
    for i in range(n):
        ns = namespaces[i % len(namespaces)]
        name = f"pod-{i:04d}.{i:016x}"
        api.put_event(_event(ns, name))
        keys.append(f"{ns}/{name}")
    return sorted(keys)


def _raw_list(core: k8s.CoreV1Api, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
    if namespace is None:
        resp = core.list_event_for_all_namespaces(_preload_content=False, **kwargs)
    else:
        resp = core.list_namespaced_event(namespace, _preload_content=False, **kwargs)
    return json.loads(resp.data)


def _list_all(core: k8s.CoreV1Api, namespace: str | None = None, **kwargs: Any) -> list[list[dict[str, Any]]]:
    """Pages of a full paginated list (each page a list of items)."""
    pages: list[list[dict[str, Any]]] = []
    token = None
    while True:
        extra: dict[str, str] = {"_continue": token} if token else {}
        page = _raw_list(core, namespace, **kwargs, **extra)
        pages.append(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            return pages


def _key(item: dict[str, Any]) -> str:
    return f"{item['metadata']['namespace']}/{item['metadata']['name']}"


def _status(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# ------------------------------------------------------------------------------------ listing


def test_pagination_returns_every_event_once_in_key_order(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    keys = _populate(api, 103)
    first = _raw_list(core, limit=7)
    assert first["kind"] == "EventList" and first["apiVersion"] == "v1"
    assert len(first["items"]) == 7
    assert first["metadata"]["remainingItemCount"] == 103 - 7
    assert "kind" not in first["items"][0] and "apiVersion" not in first["items"][0]

    pages = _list_all(core, limit=7)
    seen = [_key(it) for page in pages for it in page]
    assert seen == keys  # every event exactly once, in namespace/name order
    assert [len(p) for p in pages] == [7] * 14 + [5]


def test_pages_share_the_snapshot_resource_version(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 20)
    first = _raw_list(core, limit=5)
    rv = first["metadata"]["resourceVersion"]
    api.put_event(_event("zzz", "late.1"))  # written after the list started
    api.delete_event("gamma", "pod-0017.0000000000000011")
    token = first["metadata"]["continue"]
    names: list[str] = [_key(i) for i in first["items"]]
    while token:
        page = _raw_list(core, limit=5, _continue=token)
        assert page["metadata"]["resourceVersion"] == rv
        names += [_key(i) for i in page["items"]]
        token = page["metadata"].get("continue")
    # A consistent snapshot: the deletion and the creation are not seen by this list...
    assert "zzz/late.1" not in names and "gamma/pod-0017.0000000000000011" in names
    assert len(names) == 20
    # ...but the next list sees both.
    fresh = [_key(i) for p in _list_all(core, limit=5) for i in p]
    assert "zzz/late.1" in fresh and "gamma/pod-0017.0000000000000011" not in fresh
    assert int(_raw_list(core)["metadata"]["resourceVersion"]) > int(rv)


def test_namespaced_list_and_model_deserialization(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 30)
    beta = [_key(i) for p in _list_all(core, "beta", limit=4) for i in p]
    assert len(beta) == 10 and all(k.startswith("beta/") for k in beta)
    # The model path (no _preload_content) deserialises our bytes into V1EventList.
    model = core.list_namespaced_event("alpha", limit=3)
    assert isinstance(model, k8s.CoreV1EventList) and len(model.items) == 3
    assert model.metadata._continue and model.items[0].source.component == "kubelet"


def test_real_example_events_round_trip(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    items = json.loads((DATA / "real-events-core-v1.json").read_text())["items"]
    items.append(json.loads((DATA / "example-event.json").read_text()))
    for item in items:
        api.put_event(item)
    listed = [i for p in _list_all(core, limit=10) for i in p]
    assert len(listed) == len(items)
    by_name = {i["metadata"]["name"]: i for i in listed}
    dashboard = by_name["kubernetes-dashboard-556b9ff8f8-gf6lg.163758b70d2070c1"]
    assert dashboard["count"] == 61 and "kind" not in dashboard  # list items lose kind/apiVersion
    assert any("_source" in i for i in listed)  # unknown fields pass through untouched
    model = core.list_event_for_all_namespaces()
    assert len(model.items) == len(items)


def test_put_event_metadata_and_replace_semantics(api: KubeAPI) -> None:
    a = api.put_event(_event("ns", "a.1"))
    md = a["metadata"]
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and int(md["resourceVersion"]) > 0
    b = api.put_event(_event("ns", "a.1", count=2))
    assert b["metadata"]["uid"] == md["uid"]  # an update (recorder PATCH) keeps the uid
    assert int(b["metadata"]["resourceVersion"]) > int(md["resourceVersion"])
    api.delete_event("ns", "a.1")
    assert api.events() == []
    c = api.put_event(_event("ns", "a.1", count=3))
    assert c["metadata"]["uid"] != md["uid"]  # re-created after expiry: new uid, count > 1
    api.put_event(_event("aa", "z.1"))
    assert [e["metadata"]["namespace"] for e in api.events()] == ["aa", "ns"]
    api.delete_event("nope", "missing")  # deleting a missing event is a no-op


def test_expired_continue_gives_410_with_resume_token(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    keys = _populate(api, 30)
    api.expire_continue_after(2)
    p1 = _raw_list(core, limit=5)
    p2 = _raw_list(core, limit=5, _continue=p1["metadata"]["continue"])
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=5, _continue=p2["metadata"]["continue"])
    assert info.value.status == 410
    status = _status(info.value)
    assert status["reason"] == "Expired" and status["kind"] == "Status"
    assert "too old to display a consistent list result" in status["message"]
    resume = status["metadata"]["continue"]
    assert _decode_continue(resume, "")[1] == -1  # the inconsistent-resume marker
    # Resuming with it finishes the list without gaps; the fault was one-shot.
    rest: list[dict[str, Any]] = []
    token = resume
    while token:
        page = _raw_list(core, limit=5, _continue=token)
        rest += page["items"]
        token = page["metadata"].get("continue")
    assert [_key(i) for i in p1["items"] + p2["items"] + rest] == keys
    assert len([i for p in _list_all(core, limit=5) for i in p]) == 30


def test_compaction_expires_old_tokens(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 10)
    p1 = _raw_list(core, limit=3)
    api.put_event(_event("x", "y.1"))
    api.compact()
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=3, _continue=p1["metadata"]["continue"])
    assert info.value.status == 410 and _status(info.value)["metadata"]["continue"]
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=3, resource_version=p1["metadata"]["resourceVersion"], resource_version_match="Exact")
    assert info.value.status == 410
    assert _status(info.value)["message"] == "The resourceVersion for the provided list is too old."


def test_bad_continue_requests_are_400(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 10)
    token = _raw_list(core, limit=3)["metadata"]["continue"]
    for bad in ("not base64!", base64.urlsafe_b64encode(b'{"v":"x","rv":1,"start":"a"}').decode().rstrip("="), "e30"):
        with pytest.raises(ApiException) as info:
            _raw_list(core, limit=3, _continue=bad)
        assert info.value.status == 400
        assert _status(info.value)["message"].startswith("invalid continue token: continue key is not valid")
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=3, _continue=token, resource_version="5")
    assert info.value.status == 400
    assert _status(info.value)["message"] == "specifying resource version is not allowed when using continue"
    assert _raw_list(core, limit=3, _continue=token, resource_version="0")["items"]


def test_empty_pages_still_carry_continue(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    keys = _populate(api, 9)
    api.empty_pages(2)
    pages = _list_all(core, limit=4)
    assert [len(p) for p in pages] == [0, 0, 4, 4, 1]
    assert [_key(i) for p in pages for i in p] == keys


# ------------------------------------------------------------------------------------ selectors


def _selector_fixture(api: KubeAPI) -> None:
    api.put_event(_event("a", "w1.1", type="Warning", reason="BackOff"))
    api.put_event(_event("a", "w2.1", type="Warning", involvedObject={"kind": "Node", "name": "n1"}))
    api.put_event(_event("b", "n1.1", involvedObject={"kind": "Deployment", "name": "d"}, reason="a,b=c\\d"))
    api.put_event(_event("b", "n2.1", source={}, reportingComponent="default-scheduler"))
    api.put_event({"metadata": {"namespace": "c", "name": "bare.1"}})  # no type, no source: compare as ""


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_field_selectors(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _selector_fixture(api)

    def sel(s: str) -> list[str]:
        return _names(_raw_list(core, field_selector=s)["items"])

    assert sel("type=Warning") == ["w1.1", "w2.1"]
    assert sel("type==Warning,involvedObject.kind!=Pod") == ["w2.1"]
    assert sel("involvedObject.kind!=Pod") == ["w2.1", "n1.1", "bare.1"]
    assert sel(r"reason=a\,b\=c\\d") == ["n1.1"]
    assert sel("source=default-scheduler") == ["n2.1"]  # falls back to reportingComponent
    assert sel("source=kubelet,metadata.namespace=a") == ["w1.1", "w2.1"]
    assert sel("type=") == ["bare.1"]
    assert sel("metadata.name=n2.1") == ["n2.1"]
    assert _names(_raw_list(core, "a", field_selector="reason=BackOff")["items"]) == ["w1.1"]
    # Paging with a selector: remainingItemCount is absent, every match still arrives once.
    page = _raw_list(core, field_selector="type=Normal", limit=1)
    assert page["metadata"]["continue"] and "remainingItemCount" not in page["metadata"]
    pages = _list_all(core, field_selector="type=Normal", limit=1)
    assert [n for p in pages for n in _names(p)] == ["n1.1", "n2.1"]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("message=x", "field label not supported: message"),
        ("lastTimestamp!=x", "field label not supported: lastTimestamp"),
        ("involvedObject.kind", "invalid selector: 'involvedObject.kind'; can't understand 'involvedObject.kind'"),
        (r"reason=a\x", "invalid field selector: invalid escape sequence: \\x"),
    ],
)
def test_bad_field_selector_is_400(api: KubeAPI, core: k8s.CoreV1Api, selector: str, message: str) -> None:
    with pytest.raises(ApiException) as info:
        core.list_event_for_all_namespaces(field_selector=selector, _preload_content=False)
    assert info.value.status == 400
    status = _status(info.value)
    assert status["message"] == message and status["reason"] == "BadRequest" and status["code"] == 400


def test_label_selector(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    api.put_event({"metadata": {"namespace": "a", "name": "x.1", "labels": {"app": "web", "tier": "fe"}}})
    api.put_event({"metadata": {"namespace": "a", "name": "y.1", "labels": {"app": "db"}}})
    api.put_event({"metadata": {"namespace": "a", "name": "z.1"}})
    assert _names(_raw_list(core, label_selector="app=web")["items"]) == ["x.1"]
    assert _names(_raw_list(core, label_selector="app!=web")["items"]) == ["y.1", "z.1"]
    assert _names(_raw_list(core, label_selector="app in (web,db),!tier")["items"]) == ["y.1"]
    assert _names(_raw_list(core, label_selector="tier")["items"]) == ["x.1"]


# ------------------------------------------------------------------------------------ configmaps


def test_configmap_lifecycle_and_conflicts(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    created = core.create_namespaced_config_map(NS, {"metadata": {"name": "state"}, "data": {"k": "v1"}},
                                                field_manager="job")
    rv1 = created.metadata.resource_version
    assert created.metadata.uid and created.data == {"k": "v1"}
    assert api.existing("configmaps", NS, "state")["data"] == {"k": "v1"}

    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "state"}})
    assert info.value.status == 409 and _status(info.value)["reason"] == "AlreadyExists"
    assert _status(info.value)["message"] == 'configmaps "state" already exists'

    updated = core.replace_namespaced_config_map(
        "state", NS, {"metadata": {"name": "state", "resourceVersion": rv1}, "data": {"k": "v2"}})
    assert int(updated.metadata.resource_version) > int(rv1) and updated.metadata.uid == created.metadata.uid

    with pytest.raises(ApiException) as info:  # stale resourceVersion
        core.replace_namespaced_config_map(
            "state", NS, {"metadata": {"name": "state", "resourceVersion": rv1}, "data": {"k": "lost"}})
    assert info.value.status == 409 and _status(info.value)["reason"] == "Conflict"
    assert "the object has been modified" in _status(info.value)["message"]

    # No resourceVersion: last write wins, which is why the job must always send one.
    core.replace_namespaced_config_map("state", NS, {"metadata": {"name": "state"}, "data": {"k": "blind"}})
    assert core.read_namespaced_config_map("state", NS).data == {"k": "blind"}

    with pytest.raises(ApiException) as info:
        core.replace_namespaced_config_map("missing", NS, {"metadata": {"name": "missing"}})
    assert info.value.status == 404 and _status(info.value)["message"] == 'configmaps "missing" not found'
    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("missing", NS)
    assert info.value.status == 404 and _status(info.value)["reason"] == "NotFound"

    # Merge patch with a stale resourceVersion is an optimistic-lock failure too.
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("state", NS, {"metadata": {"resourceVersion": rv1}, "data": {"x": "y"}})
    assert info.value.status == 409
    patched = core.patch_namespaced_config_map("state", NS, {"data": {"x": "y"}})
    assert patched.data == {"k": "blind", "x": "y"}
    core.delete_namespaced_config_map("state", NS)
    assert api.get_object("configmaps", NS, "state") is None


def test_configmap_size_limit(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    half = MAX_CONFIGMAP_BYTES // 2
    # Exactly at the limit, counting binaryData decoded (its base64 is ~1.33x larger).
    ok = {"metadata": {"name": "big"}, "data": {"a": "x" * half},
          "binaryData": {"b": base64.b64encode(b"\0" * (MAX_CONFIGMAP_BYTES - half)).decode()}}
    core.create_namespaced_config_map(NS, ok)
    # UTF-8 bytes count, not characters: 2 bytes per "é".
    too_big = {"metadata": {"name": "huge"}, "data": {"a": "x" * half, "b": "é" * (half // 2 + 1)}}
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(NS, too_big)
    assert info.value.status == 422
    status = _status(info.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == 'ConfigMap "huge" is invalid: []: Too long: may not be more than 1048576 bytes'
    cur = core.read_namespaced_config_map("big", NS)
    cur.data["a"] += "x"
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_config_map("big", NS, cur)
    assert info.value.status == 422
    # The client JSON-escapes non-ASCII (6 bytes per char): such a body can pass 3 MiB first.
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "x"}, "data": {"a": "é" * (half + 1)}})
    assert info.value.status == 413 and _status(info.value)["reason"] == "RequestEntityTooLarge"
    assert core.read_namespaced_config_map("big", NS).metadata.name == "big"  # server still fine


# ------------------------------------------------------------------------------------ leases


def _lease(name: str, **spec: Any) -> dict[str, Any]:
    base = {"holderIdentity": "pod-a", "leaseDurationSeconds": 300,
            "acquireTime": "2026-11-25T05:00:00.000000Z", "renewTime": "2026-11-25T05:00:00.000000Z",
            "leaseTransitions": 0}
    base.update(spec)
    return {"metadata": {"name": name}, "spec": base}


def test_lease_compare_and_swap(api: KubeAPI, coord: k8s.CoordinationV1Api) -> None:
    created = coord.create_namespaced_lease(NS, _lease("lock"))
    assert created.spec.holder_identity == "pod-a" and created.spec.renew_time.microsecond == 0
    with pytest.raises(ApiException) as info:
        coord.create_namespaced_lease(NS, _lease("lock"))
    assert info.value.status == 409 and _status(info.value)["reason"] == "AlreadyExists"
    assert _status(info.value)["message"] == 'leases.coordination.k8s.io "lock" already exists'

    with pytest.raises(ApiException) as info:  # leases refuse unconditional updates
        coord.replace_namespaced_lease("lock", NS, _lease("lock", holderIdentity="pod-b"))
    assert info.value.status == 422
    assert ("metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            in _status(info.value)["message"])

    rv = created.metadata.resource_version
    take = _lease("lock", holderIdentity="pod-b", leaseTransitions=1)
    take["metadata"]["resourceVersion"] = rv
    taken = coord.replace_namespaced_lease("lock", NS, take)
    assert taken.spec.holder_identity == "pod-b"
    with pytest.raises(ApiException) as info:  # the loser of the race
        coord.replace_namespaced_lease("lock", NS, take)
    assert info.value.status == 409 and _status(info.value)["reason"] == "Conflict"

    with pytest.raises(ApiException) as info:
        coord.replace_namespaced_lease(
            "nope", NS, {**_lease("nope"), "metadata": {"name": "nope", "resourceVersion": "1"}})
    assert info.value.status == 404
    assert _status(info.value)["message"] == 'leases.coordination.k8s.io "nope" not found'


def test_lease_validation_and_microtime(api: KubeAPI, coord: k8s.CoordinationV1Api) -> None:
    with pytest.raises(ApiException) as info:
        coord.create_namespaced_lease(NS, _lease("zero", leaseDurationSeconds=0))
    assert info.value.status == 422
    assert _status(info.value)["message"] == (
        'Lease.coordination.k8s.io "zero" is invalid: '
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    )
    # A MicroTime without six digits cannot be decoded: kube-apiserver answers 400 BadRequest.
    for bad in ("2026-11-25T05:00:00Z", "2026-11-25T05:00:00.123Z", "2026-11-25T05:00:00.000000"):
        with pytest.raises(ApiException) as info:
            coord.create_namespaced_lease(NS, _lease("t", renewTime=bad))
        assert info.value.status == 400, bad
        assert "cannot be handled as a Lease" in _status(info.value)["message"]
    # The classic bug: isoformat() drops the fraction when microsecond == 0.
    whole = dt.datetime(2026, 11, 25, 5, 0, 0, tzinfo=dt.timezone.utc)
    with pytest.raises(ApiException) as info:
        coord.create_namespaced_lease(
            NS, k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="t"), spec=k8s.V1LeaseSpec(renew_time=whole)))
    assert info.value.status == 400
    # With microseconds and an offset it decodes, and is stored as UTC "...Z" with six digits.
    frac = dt.datetime(2026, 11, 25, 6, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    coord.create_namespaced_lease(
        NS, k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="t"), spec=k8s.V1LeaseSpec(renew_time=frac)))
    assert api.existing("leases", NS, "t")["spec"]["renewTime"] == "2026-11-25T05:00:00.123456Z"
    # Read-modify-write through the model re-sends whole-second times via isoformat(): rejected.
    coord.create_namespaced_lease(NS, _lease("whole"))
    model = coord.read_namespaced_lease("whole", NS)
    with pytest.raises(ApiException) as info:
        coord.replace_namespaced_lease("whole", NS, model)
    assert info.value.status == 400 and "cannot be handled as a Lease" in _status(info.value)["message"]


def test_on_request_hook_can_steal_a_lease_mid_run(api: KubeAPI, coord: k8s.CoordinationV1Api) -> None:
    spec = _lease("lock", renewTime="2026-11-25T05:00:00.250000Z", acquireTime="2026-11-25T05:00:00.250000Z")["spec"]
    api.put_object("leases", {"metadata": {"namespace": NS, "name": "lock"}, "spec": spec})
    mine = coord.read_namespaced_lease("lock", NS)

    def steal(method: str, path: str) -> None:
        if method == "PUT" and path.endswith("/leases/lock"):
            api.on_request = None
            lease = api.get_object("leases", NS, "lock")
            assert lease is not None
            lease["spec"]["holderIdentity"] = "thief"
            api.put_object("leases", lease)

    api.on_request = steal
    mine.spec.holder_identity = "me"
    with pytest.raises(ApiException) as info:
        coord.replace_namespaced_lease("lock", NS, mine)
    assert info.value.status == 409
    assert api.existing("leases", NS, "lock")["spec"]["holderIdentity"] == "thief"
    assert ("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/lock") in api.requests


# ------------------------------------------------------------------------------------ auth and faults


def test_bearer_token_and_rotation(api: KubeAPI, tmp_path: Path) -> None:
    api.put_event(_event("a", "b.1"))
    wrong = k8s.CoreV1Api(_client(api, tmp_path, token="wrong"))
    with pytest.raises(ApiException) as info:
        wrong.list_event_for_all_namespaces()
    assert info.value.status == 401 and _status(info.value)["reason"] == "Unauthorized"

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    via_file = k8s.CoreV1Api(_client(api, tmp_path, token_file=token_file))
    assert len(via_file.list_event_for_all_namespaces().items) == 1

    api.token = "rotated"
    with pytest.raises(ApiException) as info:
        via_file.list_event_for_all_namespaces()
    assert info.value.status == 401
    token_file.write_text("rotated")
    assert len(k8s.CoreV1Api(_client(api, tmp_path, token_file=token_file)).list_event_for_all_namespaces().items) == 1

    api.token = None  # no token configured: anonymous access allowed
    assert wrong.list_event_for_all_namespaces().items


def test_forbid_uses_rbac_message(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    api.user = "system:serviceaccount:ns:sa"
    api.forbid("list", "events")
    with pytest.raises(ApiException) as info:
        core.list_event_for_all_namespaces()
    assert info.value.status == 403
    status = _status(info.value)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'events is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "events" '
        'in API group "" at the cluster scope'
    )
    api.forbid("get", "leases")
    with pytest.raises(ApiException) as info:
        k8s.CoordinationV1Api(core.api_client).read_namespaced_lease("lock", NS)
    assert _status(info.value)["message"] == (
        'leases.coordination.k8s.io "lock" is forbidden: User "system:serviceaccount:ns:sa" cannot get '
        f'resource "leases" in API group "coordination.k8s.io" in the namespace "{NS}"'
    )
    api.permit("list", "events")
    assert core.list_event_for_all_namespaces().items == []


def test_fail_injects_status_errors(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    api.fail("GET", r"^/api/v1/events", 500, times=2, message="etcd is sad")
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            core.list_event_for_all_namespaces()
        assert info.value.status == 500
        assert _status(info.value)["reason"] == "InternalError" and _status(info.value)["message"] == "etcd is sad"
    assert core.list_event_for_all_namespaces().items == []
    _populate(api, 4)
    token = _raw_list(core, limit=2)["metadata"]["continue"]
    # A 429 with Retry-After (as APF sends) is retried inside urllib3, invisibly to the caller.
    api.fail("*", r"continue=", 429)
    assert len(_raw_list(core, limit=2, _continue=token)["items"]) == 2
    assert sum("continue=" in p for _, p in api.requests) == 2
    api.retry_after = None
    api.fail("*", r"continue=", 429)
    api.fail("POST", r"/configmaps", 403)
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=2, _continue=token)
    assert info.value.status == 429 and _status(info.value)["reason"] == "TooManyRequests"
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "x"}})
    assert info.value.status == 403 and _status(info.value)["reason"] == "Forbidden"
    assert len(_raw_list(core, limit=2, _continue=token)["items"]) == 2


def test_requests_are_recorded(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    core.list_event_for_all_namespaces(limit=5, field_selector="type=Warning")
    method, path = api.requests[-1]
    assert method == "GET" and path.startswith("/api/v1/events?") and "limit=5" in path and "fieldSelector=" in path


# ------------------------------------------------------------------------------------ HTTP level


def test_http_keep_alive_content_length_and_unknown_paths(api: KubeAPI) -> None:
    api.put_event(_event("a", "b.1"))
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    socks = set()
    for path in ("/api/v1/events", "/api/v1/namespaces/a/events/b.1", "/api/v1/services", "/nonsense"):
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        socks.add(id(conn.sock))
        assert int(resp.headers["Content-Length"]) == len(body)
        assert resp.headers["Content-Type"] == "application/json"
        doc = json.loads(body)
        if path.endswith("b.1"):
            assert resp.status == 200 and doc["kind"] == "Event" and doc["apiVersion"] == "v1"
        elif path == "/api/v1/events":
            assert resp.status == 200 and len(doc["items"]) == 1
        else:
            assert resp.status == 404 and doc["kind"] == "Status" and doc["reason"] == "NotFound"
    assert len(socks) == 1  # one connection served every request
    conn.close()


def test_concurrent_clients(api: KubeAPI, tmp_path: Path) -> None:
    keys = _populate(api, 60)
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def worker() -> None:
        c = _client(api, tmp_path)
        try:
            results.append([_key(i) for p in _list_all(k8s.CoreV1Api(c), limit=7) for i in p])
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [keys] * 6


def test_a_20000_event_list_in_pages_of_500_returns_every_event_once(api: KubeAPI) -> None:
    """The benchmark's listing at its size (its speed is measured by `python -m bench.doubles`, not here)."""
    n = 20_000
    assert api.put_events(bench_doubles.example_events(n)) == n
    names = bench_doubles.list_all(api.url, TOKEN, limit=500)
    assert len(names) == n and len(set(names)) == n


# ------------------------------------------------------------------------------------ RBAC (opt-in)

SA_USER = "system:serviceaccount:loki-event-sync:reader"


def _role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md, "rules": rules}


def _binding(kind: str, name: str, role_kind: str, role: str, namespace: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "loki-event-sync"}]}


LIST_EVENTS = [{"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]


@pytest.fixture
def reader(api: KubeAPI, tmp_path: Path) -> Iterator[k8s.CoreV1Api]:
    """A client whose token is the `reader` service account's, under enforced RBAC (no grants yet)."""
    api.enforce_rbac()
    api.add_token("reader-token", SA_USER)
    c = _client(api, tmp_path, token="reader-token")
    yield k8s.CoreV1Api(c)
    c.close()


def test_rbac_role_grants_list_only_in_its_namespace(api: KubeAPI, reader: k8s.CoreV1Api) -> None:
    _populate(api, 6)
    api.apply_rbac(_role("Role", "events", LIST_EVENTS, "alpha"),
                   _binding("RoleBinding", "events", "Role", "events", "alpha"))
    assert len(_raw_list(reader, "alpha")["items"]) == 2
    with pytest.raises(ApiException) as info:
        _raw_list(reader, "beta")
    assert info.value.status == 403
    assert _status(info.value)["message"] == (
        f'events is forbidden: User "{SA_USER}" cannot list resource "events" in API group "" in the namespace "beta"')
    with pytest.raises(ApiException) as info:
        _raw_list(reader)
    assert info.value.status == 403 and _status(info.value)["reason"] == "Forbidden"
    assert _status(info.value)["message"] == (
        f'events is forbidden: User "{SA_USER}" cannot list resource "events" in API group "" at the cluster scope')
    assert _status(info.value)["details"] == {"kind": "events"}


def test_rbac_cluster_role_binding_grants_every_scope_and_a_role_binding_to_it_one_namespace(
        api: KubeAPI, reader: k8s.CoreV1Api) -> None:
    _populate(api, 6)
    api.apply_rbac(_role("ClusterRole", "events", LIST_EVENTS),
                   _binding("RoleBinding", "events", "ClusterRole", "events", "gamma"))
    assert len(_raw_list(reader, "gamma")["items"]) == 2
    with pytest.raises(ApiException):
        _raw_list(reader)
    api.apply_rbac(_binding("ClusterRoleBinding", "events", "ClusterRole", "events"))
    assert len(_raw_list(reader)["items"]) == 6
    assert len(_raw_list(reader, "beta")["items"]) == 2


def test_rbac_resource_names_allow_only_requests_for_that_object(api: KubeAPI, tmp_path: Path) -> None:
    api.enforce_rbac()
    api.add_token("reader-token", SA_USER)
    api.put_object("leases", {"metadata": {"name": "mine", "namespace": NS}, "spec": {}})
    api.put_object("leases", {"metadata": {"name": "other", "namespace": NS}, "spec": {}})
    api.apply_rbac(_role("Role", "lease", [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                            "resourceNames": ["mine"], "verbs": ["get", "update"]}], NS),
                   _binding("RoleBinding", "lease", "Role", "lease", NS))
    c = _client(api, tmp_path, token="reader-token")
    coord = k8s.CoordinationV1Api(c)
    assert coord.read_namespaced_lease("mine", NS, _preload_content=False).status == 200
    with pytest.raises(ApiException) as info:
        coord.read_namespaced_lease("other", NS, _preload_content=False)
    assert _status(info.value)["message"] == (
        f'leases.coordination.k8s.io "other" is forbidden: User "{SA_USER}" cannot get resource "leases" '
        f'in API group "coordination.k8s.io" in the namespace "{NS}"')
    with pytest.raises(ApiException) as info:
        coord.list_namespaced_lease(NS, _preload_content=False)
    assert info.value.status == 403
    c.close()


def test_rbac_unknown_token_is_401_and_without_enforcement_any_token_may_do_anything(
        api: KubeAPI, tmp_path: Path) -> None:
    _populate(api, 3)
    api.add_token("reader-token", SA_USER)
    c = _client(api, tmp_path)  # the server's own token, all-powerful while RBAC is off
    assert len(_raw_list(k8s.CoreV1Api(c))["items"]) == 3
    api.enforce_rbac()
    with pytest.raises(ApiException) as info:
        _raw_list(k8s.CoreV1Api(c))
    assert info.value.status == 403  # still authenticated (as `user`), no longer authorised
    bad = _client(api, tmp_path, token="nobody")
    with pytest.raises(ApiException) as info:
        _raw_list(k8s.CoreV1Api(bad))
    assert info.value.status == 401
    c.close()
    bad.close()


# ------------------------------------------------------------------------------------ watch cache


def test_resource_version_0_is_served_from_the_cache_at_its_revision_paged_by_snapshots(
        api: KubeAPI, core: k8s.CoreV1Api) -> None:
    keys = _populate(api, 9)
    api.lag_watch_cache()
    cache_rv = api.resource_version
    api.put_event(_event("alpha", "late.1"))
    pages = _list_all(core, limit=4, resource_version="0")
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [_key(i) for p in pages for i in p] == keys  # the cache's snapshot: not the late event
    assert _raw_list(core, limit=4, resource_version="0")["metadata"]["resourceVersion"] == cache_rv
    assert api.served_from[:3] == ["cache", "cache", "cache"]
    assert len([i for p in _list_all(core, limit=4) for i in p]) == 10  # etcd: most recent
    assert api.served_from[-1] == "cache"  # 1.34 serves continue pages from cache snapshots


def test_unpaginated_watch_cache_ignores_limit(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 9)
    api.watch_cache = "unpaginated"
    page = _raw_list(core, limit=4, resource_version="0")
    assert len(page["items"]) == 9 and "continue" not in page["metadata"]
    page = _raw_list(core, limit=4, resource_version=api.resource_version, resource_version_match="NotOlderThan")
    assert len(page["items"]) == 9 and "continue" not in page["metadata"]
    assert len(_raw_list(core, limit=4)["items"]) == 4  # etcd still pages


def test_not_older_than_a_revision_the_cache_lacks_is_504(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 3)
    api.lag_watch_cache()
    api.put_event(_event("alpha", "late.1"))
    with pytest.raises(ApiException) as info:
        _raw_list(core, limit=4, resource_version=api.resource_version, resource_version_match="NotOlderThan")
    assert info.value.status == 504
    assert _status(info.value)["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    api.catch_up_watch_cache()
    page = _raw_list(core, limit=4, resource_version=api.resource_version, resource_version_match="NotOlderThan")
    assert len(page["items"]) == 4


def test_repeat_continue_hands_back_the_token_it_was_sent(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 9)
    token = _raw_list(core, limit=4)["metadata"]["continue"]
    api.repeat_continue(2)
    for _ in range(2):
        page = _raw_list(core, limit=4, _continue=token)
        assert page["items"] == [] and page["metadata"]["continue"] == token
    assert len(_raw_list(core, limit=4, _continue=token)["items"]) == 4


def test_bytes_sent_counts_every_response_body(api: KubeAPI, core: k8s.CoreV1Api) -> None:
    _populate(api, 5)
    before = api.bytes_sent
    resp = core.list_event_for_all_namespaces(_preload_content=False)
    assert api.bytes_sent - before == len(resp.data)
