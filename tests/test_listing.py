"""How a run lists events: per namespace under namespaced RBAC, from the watch cache, and the
lean kubernetes client it does it with, all against the API test server over real HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import NAMESPACE, Harness, legacy_event

ROOT = Path(__file__).resolve().parent.parent
SA = f"system:serviceaccount:{NAMESPACE}:loki-event-sync"


def _seed(h: Harness, namespaces: tuple[str, ...] = ("team-a", "team-b", "team-c"), per: int = 30) -> None:
    for ns in namespaces:
        for i in range(per):
            h.kube.put_event(legacy_event(f"pod-{i}.{i:x}", ns=ns, count=1 + i % 3))


def _visible(h: Harness, namespaces: tuple[str, ...]) -> set[tuple[str, int]]:
    return {(e["metadata"]["uid"], e.get("count") or 1) for e in h.kube.events()
            if e["metadata"]["namespace"] in namespaces}


def _assert_exactly_once(h: Harness, namespaces: tuple[str, ...]) -> None:
    shipped = h.shipped()
    assert not [p for p, c in Counter(shipped).items() if c > 1], "duplicated in Loki"
    assert set(shipped) == _visible(h, namespaces)


def _manifests(path: str, namespace: str) -> list[dict[str, Any]]:
    """The RBAC objects of a shipped manifest, with kustomize's namespace fill-in done by hand."""
    objects = [o for o in yaml.safe_load_all((ROOT / path).read_text()) if o]
    for o in objects:
        if o["kind"] in ("Role", "RoleBinding"):
            o["metadata"]["namespace"] = namespace
        for sub in o.get("subjects") or []:
            sub["namespace"] = NAMESPACE  # the ServiceAccount's, wherever the Roles are
    return objects


def _as_service_account(h: Harness, *objects: dict[str, Any]) -> None:
    """Enforce RBAC with exactly these objects, and run the job as its ServiceAccount."""
    h.kube.apply_rbac(*objects)
    h.kube.add_token("sa-token", SA)
    h.kube.enforce_rbac()
    h.kubeconfig = h.kube.write_kubeconfig(str(h.tmp / "kubeconfig-sa"), namespace=NAMESPACE, token="sa-token")


def _namespaced_rbac(h: Harness, namespaces: tuple[str, ...]) -> None:
    """What the namespaced-rbac component installs: the job's own Role (Lease, checkpoint) and, in
    each chosen namespace, a Role to list events; no ClusterRole."""
    objects = _manifests("deploy/base/rbac-state.yaml", NAMESPACE)
    for ns in namespaces:
        objects += _manifests("deploy/components/namespaced-rbac/events-reader.yaml", ns)
    _as_service_account(h, *objects)


# ------------------------------------------------------------------------------ namespace-scoped


def test_namespaced_roles_alone_ship_the_chosen_namespaces_exactly_once(h: Harness) -> None:
    _seed(h)
    _namespaced_rbac(h, ("team-a", "team-b"))
    assert h.run("run", "--event-namespaces", "team-a,team-b") == 0, h.stderr
    _assert_exactly_once(h, ("team-a", "team-b"))
    lists = [p for m, p in h.kube.requests if "/events" in p]
    assert lists and all(p.startswith(("/api/v1/namespaces/team-a/events", "/api/v1/namespaces/team-b/events"))
                         for p in lists)
    # Pages of 50 over 30 events a namespace: one list each; a second run ships nothing again.
    h.kube.put_event(legacy_event("late.1", ns="team-b"))
    h.kube.put_event(legacy_event("late.1", ns="team-c"))
    assert h.run("run", "--event-namespaces", "team-a,team-b") == 0, h.stderr
    _assert_exactly_once(h, ("team-a", "team-b"))
    assert h.summary()["new"] == 1


def test_the_base_cluster_role_lets_the_cluster_wide_list_ship_everything(h: Harness) -> None:
    _seed(h)
    _as_service_account(h, *_manifests("deploy/base/rbac-state.yaml", NAMESPACE),
                        *_manifests("deploy/base/rbac-events.yaml", NAMESPACE))
    assert h.run("run") == 0, h.stderr
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_event_namespaces_page_each_namespace_and_come_from_the_environment(h: Harness) -> None:
    _seed(h, ("team-a", "team-b"), per=120)
    env = {"LOKI_EVENT_SYNC_EVENT_NAMESPACES": "team-b,team-a"}
    assert h.run("run", env=env) == 0, h.stderr
    _assert_exactly_once(h, ("team-a", "team-b"))
    assert h.summary()["pages"] == 6  # 120 events at --page-size 50: three pages in each namespace
    assert not [p for _, p in h.kube.requests if p.startswith("/api/v1/events")]


def test_cluster_wide_list_without_the_cluster_role_exits_2_with_one_line_saying_what_to_do(h: Harness) -> None:
    _seed(h)
    _namespaced_rbac(h, ("team-a",))
    before = h.checkpoint_bytes()
    assert h.run("run") == 2
    (error,) = h.errors()
    assert (f'events is forbidden: User "{SA}" cannot list resource "events" in API group "" at the cluster scope'
            in error)
    assert "--event-namespaces" in error and "ClusterRole" in error
    assert "Traceback" not in h.stderr and "sa-token" not in h.stderr
    assert h.loki.entries() == [] and h.checkpoint_bytes() == before


def test_a_namespace_without_a_role_exits_2_naming_it(h: Harness) -> None:
    _seed(h)
    _namespaced_rbac(h, ("team-a",))
    before = h.checkpoint_bytes()
    assert h.run("run", "--event-namespaces", "team-a,team-c") == 2
    (error,) = h.errors()
    assert 'in the namespace "team-c"' in error and "--event-namespaces" in error
    assert h.checkpoint_bytes() == before


def test_a_bad_namespace_name_is_a_usage_error(h: Harness) -> None:
    assert h.run("run", "--event-namespaces", "team-a,Team_B") == 2
    assert "'Team_B' is not a namespace name" in h.stderr and "Traceback" not in h.stderr


# ------------------------------------------------------------------------------ continue tokens


def test_a_repeated_continue_token_fails_the_run_instead_of_listing_forever(h: Harness) -> None:
    _seed(h, per=60)
    h.kube.repeat_continue(10_000)
    before = h.checkpoint_bytes()
    assert h.run("run") == 1
    (error,) = h.errors()
    assert "same continue token twice" in error
    assert len([p for _, p in h.kube.requests if "/events" in p]) == 2  # the first page, then the echoed token
    assert h.checkpoint_bytes() == before


# ------------------------------------------------------------------------------ the watch cache


def _lists(h: Harness) -> list[str]:
    return [p for _, p in h.kube.requests if "/events" in p]


def test_cache_mode_lists_not_older_than_the_previous_run_and_ships_exactly_once(h: Harness) -> None:
    _seed(h)
    before = int(h.kube.resource_version)
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    first = h.summary()
    assert "resourceVersion=0" in _lists(h)[0]  # nothing recorded yet: "any" version
    assert before <= int(first["resource_version"]) < int(h.kube.resource_version)  # then the checkpoint write
    assert first["list_complete"] is False  # nothing to prove it is not older than a previous list
    h.kube.put_event(legacy_event("late.1", ns="team-a"))
    h.kube.requests.clear()
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    assert f"resourceVersion={first['resource_version']}" in _lists(h)[0]
    assert "resourceVersionMatch=NotOlderThan" in _lists(h)[0]
    second = h.summary()
    assert second["list_complete"] is True and second["new"] == 1
    assert int(second["resource_version"]) >= int(first["resource_version"])
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_etcd_mode_lists_are_complete_and_ask_for_the_most_recent_data(h: Harness) -> None:
    _seed(h)
    assert h.run("run") == 0, h.stderr
    assert all("resourceVersion" not in p for p in _lists(h))
    assert h.summary()["list_complete"] is True and h.summary()["resource_version"]


def test_a_watch_cache_behind_the_previous_run_falls_back_to_etcd(h: Harness) -> None:
    _seed(h)
    h.kube.lag_watch_cache()
    h.kube.put_event(legacy_event("late.1", ns="team-a"))
    assert h.run("run") == 0, h.stderr  # etcd: sees the late event, records a newer resourceVersion
    h.kube.put_event(legacy_event("later.1", ns="team-a"))
    h.kube.served_from.clear()
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    assert h.kube.served_from[0] == "etcd"  # the 504 is not a list served; the retry went to etcd
    assert any("watch cache is behind" in r["msg"] for r in h.logs())
    assert h.summary()["new"] == 1 and h.summary()["list_complete"] is True
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_an_unpaginated_watch_cache_answers_in_one_page_and_nothing_is_lost(h: Harness) -> None:
    _seed(h, per=100)
    h.kube.watch_cache = "unpaginated"
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    assert len(_lists(h)) == 1 and h.summary()["pages"] == 1
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_a_list_older_than_the_previous_runs_is_shipped_but_never_called_complete(h: Harness) -> None:
    """A server that ignores resourceVersionMatch (or a cache that answers "any") can serve an older
    snapshot: what it lists still ships, but the run must not tell the ledger the list is complete."""
    _seed(h)
    h.kube.lag_watch_cache()
    h.kube.put_event(legacy_event("late.1", ns="team-a"))
    assert h.run("run") == 0, h.stderr
    previous = h.summary()["resource_version"]
    # Emulate a server that drops resourceVersionMatch: NotOlderThan becomes "any", the lagging cache.
    original = h.kube._list

    def ignore_match(res: Any, namespace: Any, query: dict[str, str]) -> bytes:
        if query.pop("resourceVersionMatch", None):
            query["resourceVersion"] = "0"
        return original(res, namespace, query)

    h.kube._list = ignore_match  # type: ignore[method-assign]
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    s = h.summary()
    assert int(s["resource_version"]) < int(previous) and s["list_complete"] is False
    assert any("older than the previous run's" in r["msg"] for r in h.logs())
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


# ------------------------------------------------------------------------------ the lean client

_PROBE = """
import atexit, json, runpy, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(m for m in sys.modules if m.startswith("kubernetes")))))
sys.argv = ["job", *sys.argv[2:]]
runpy.run_module("job", run_name="__main__", alter_sys=True)
"""


def test_a_real_run_uses_the_official_client_without_loading_its_generated_models(h: Harness) -> None:
    _seed(h)
    out = h.tmp / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *h.args("run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))
    modules = json.loads(out.read_text())
    assert "kubernetes.client.api.core_v1_api" in modules and "kubernetes.config.kube_config" in modules
    assert not [m for m in modules if m.startswith("kubernetes.client.models.")]
    assert "kubernetes.client.api.apps_v1_api" not in modules and "kubernetes.watch" not in modules


_IN_CLUSTER = """
import json, os, sys
from job import kube
kube.lean_kubernetes()
from kubernetes.config.incluster_config import InClusterConfigLoader
token, ca, port = sys.argv[1:4]
cfg = kube.Configuration()
InClusterConfigLoader(token_filename=token, cert_filename=ca,
                      environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
                      ).load_and_set(cfg)
assert cfg.host == "https://127.0.0.1:" + port and cfg.ssl_ca_cert == ca
refresh = cfg.refresh_api_key_hook  # re-reads the token file and re-sets host, CA and token before requests

def plain_http(c):  # the test server speaks plain HTTP; the rest is the in-cluster contract
    refresh(c)
    c.host = "http://127.0.0.1:" + port

cfg.refresh_api_key_hook = plain_http
resp = kube.CoreV1Api(kube.ApiClient(cfg)).list_namespaced_event("team-a", _preload_content=False)
print(len(json.loads(resp.data)["items"]), any(m.startswith("kubernetes.client.models.") for m in sys.modules))
"""


def test_in_cluster_config_under_the_lean_client_authenticates_with_the_token_file(h: Harness, tmp_path: Path) -> None:
    _seed(h, ("team-a",), per=4)
    h.kube.token = "rotated-sa-token"
    (tmp_path / "token").write_text("rotated-sa-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    port = h.kube.url.rsplit(":", 1)[1]
    proc = subprocess.run([sys.executable, "-c", _IN_CLUSTER, str(tmp_path / "token"), str(tmp_path / "ca.crt"), port],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["4", "False"]


_EVERYTHING_ELSE = """
from job import kube
kube.lean_kubernetes()
from kubernetes.client import ApiClient, CoreV1Api, CoordinationV1Api
from kubernetes.client.exceptions import ApiException
import kubernetes
assert kube.ApiClient is ApiClient and kube.ApiException is ApiException and kube.CoreV1Api is CoreV1Api
assert kubernetes.client.V1ObjectMeta(name="x").name == "x"  # a model: the package's real __init__ runs
from kubernetes import watch
assert watch.Watch and kubernetes.client.models.V1Lease and kubernetes.__version__
# A call without _preload_content=False builds models by name (the --tenant-label namespace list).
page = ApiClient()._ApiClient__deserialize({"metadata": {}, "items": [{"metadata": {"name": "a"}}]}, "V1NamespaceList")
assert page.items[0].metadata.name == "a"
print("ok")
"""


def test_names_the_lean_client_does_not_map_still_import_as_before(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _EVERYTHING_ELSE], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_cache_mode_on_a_server_before_1_34_lists_from_etcd_instead_of_one_huge_page(h: Harness) -> None:
    _seed(h, per=100)
    h.kube.minor_version = "31+"  # as EKS writes it
    h.kube.watch_cache = "unpaginated"
    assert h.run("run", "--list-from", "cache") == 0, h.stderr
    assert h.summary()["pages"] == 6 and all("resourceVersion" not in p for p in _lists(h))
    assert any("needs Kubernetes 1.34" in r["msg"] for r in h.logs())
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_lists_whose_metadata_comes_after_the_items_are_still_read_to_the_end(h: Harness) -> None:
    """The lister reads the continue token from the head of a page, where kube-apiserver puts it;
    a page laid out otherwise must cost time, never the pages after it."""
    _seed(h, per=60)
    h.kube.list_metadata_last = True
    assert h.run("run") == 0, h.stderr
    assert h.summary()["pages"] == 4 and h.summary()["resource_version"]
    _assert_exactly_once(h, ("team-a", "team-b", "team-c"))


def test_the_summary_counts_the_list_requests_and_bytes_the_api_server_served(h: Harness) -> None:
    _seed(h, per=60)  # 180 events at --page-size 50: four pages
    before = h.kube.bytes_sent
    assert h.run("run") == 0, h.stderr
    s = h.summary()
    assert s["list_requests"] == 4 == len(_lists(h))
    assert 0 < s["list_bytes"] < h.kube.bytes_sent - before  # the Lease and checkpoint answers are not lists
