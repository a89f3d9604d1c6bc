"""--enrich against the API test server: the owner walk, what is left out and why, cost, determinism."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.conftest import NAMESPACE, Harness, legacy_event
from tests.kubeapi import KubeAPI
from tests.workloads import about, chain, enrich_run, put, ref

WORKLOAD_KEYS = {"workload_kind", "workload_name", "workload_namespace", "workload_stop"}


def enriched(h: Harness) -> dict[str, dict[str, str]]:
    """The object_name -> structured metadata of every entry; fails on an occurrence shipped twice."""
    out: dict[str, dict[str, str]] = {}
    pairs = [(json.loads(e.line)["uid"], json.loads(e.line)["count"]) for e in h.loki.entries()]
    assert len(pairs) == len(set(pairs)), "an occurrence shipped twice"
    for e in h.loki.entries():
        out[json.loads(e.line)["name"]] = dict(e.metadata)
    return out


def partial_gets(kube: KubeAPI, plural: str) -> list[str]:
    return [p for m, p in kube.requests if m == "GET" and f"/{plural}/" in p]


def test_a_pod_of_a_deployment_is_named_by_its_deployment_with_labels_in_metadata_and_line(h: Harness) -> None:
    _, _, pod = chain(h.kube, labels={"app.kubernetes.io/name": "web", "team": "payments", "other": "x"})
    second = put(h.kube, "pods", "web-7d9f8-zzz99", owner=pod["metadata"]["ownerReferences"][0])
    about(h.kube, pod)
    about(h.kube, pod, reason="Unhealthy")
    about(h.kube, second)
    assert enrich_run(h, "--enrich", "owner,labels", "--enrich-labels", "app.kubernetes.io/name,team") == 0
    md = enriched(h)[pod["metadata"]["name"]]
    assert {k: v for k, v in md.items() if k.startswith(("workload_", "label_"))} == {
        "workload_kind": "Deployment", "workload_name": "web", "label_app_kubernetes_io_name": "web",
        "label_team": "payments"}
    assert enriched(h)["web-7d9f8-zzz99"]["workload_name"] == "web"
    line = json.loads(next(e.line for e in h.loki.entries() if pod["metadata"]["name"] in e.line))
    assert line["workload_kind"] == "Deployment" and line["label_team"] == "payments"
    assert all("workload_name" not in e.labels for e in h.loki.entries())  # no new stream label by default
    # One lookup per object: two pods, one ReplicaSet and one Deployment shared, metadata only.
    assert len(partial_gets(h.kube, "pods")) == 2
    assert len(partial_gets(h.kube, "replicasets")) == len(partial_gets(h.kube, "deployments")) == 1
    s = h.summary()
    assert (s["enriched"], s["enrich_requests"], s["enrich_missing"], s["enrich_forbidden"]) == (3, 4, 0, 0)
    assert 0 < s["enrich_bytes"] < 4 * 1000  # metadata only: the 2 KB specs never came


def test_the_same_fields_appear_in_logfmt_lines(h: Harness) -> None:
    _, _, pod = chain(h.kube)
    about(h.kube, pod)
    assert enrich_run(h, "--enrich", "owner", "--line-format", "logfmt") == 0
    (entry,) = h.loki.entries()
    assert entry.line.endswith(" workload_kind=Deployment workload_name=web")


def test_a_job_pod_is_named_by_its_cronjob_and_a_bare_pod_by_itself(h: Harness) -> None:
    cron = put(h.kube, "cronjobs", "backup")
    job = put(h.kube, "jobs", "backup-29100", owner=ref(cron))
    job_pod = put(h.kube, "pods", "backup-29100-x1", owner=ref(job))
    bare = put(h.kube, "pods", "debug")
    sts = put(h.kube, "statefulsets", "db")
    db0 = put(h.kube, "pods", "db-0", owner=ref(sts))
    for obj in (job_pod, bare, db0):
        about(h.kube, obj)
    assert enrich_run(h, "--enrich", "owner") == 0
    got = enriched(h)
    assert (got["backup-29100-x1"]["workload_kind"], got["backup-29100-x1"]["workload_name"]) == ("CronJob", "backup")
    assert (got["debug"]["workload_kind"], got["debug"]["workload_name"]) == ("Pod", "debug")
    assert (got["db-0"]["workload_kind"], got["db-0"]["workload_name"]) == ("StatefulSet", "db")
    assert not any("workload_stop" in md for md in got.values())


def test_a_node_event_gets_no_fields_and_costs_no_request(h: Harness) -> None:
    e = legacy_event("node-1.abc", kind="Node", reason="NodeNotReady")
    e["involvedObject"].update(name="node-1", namespace="", uid=str(uuid.uuid4()))
    h.kube.put_event(e)
    assert enrich_run(h, "--enrich", "owner") == 0
    assert not WORKLOAD_KEYS & set(enriched(h)["node-1"])
    assert h.summary()["enrich_requests"] == 0


def test_a_pod_recreated_under_the_same_name_is_not_the_events_pod(h: Harness) -> None:
    _, rs, pod = chain(h.kube)
    about(h.kube, pod)
    h.kube.delete_object("pods", "default", pod["metadata"]["name"])
    put(h.kube, "pods", pod["metadata"]["name"], owner=ref(rs))  # same name, new uid
    assert enrich_run(h, "--enrich", "owner") == 0
    assert not WORKLOAD_KEYS & set(enriched(h)[pod["metadata"]["name"]])
    assert h.summary()["enrich_missing"] == 1 and h.summary()["enriched"] == 0


def test_a_missing_or_forbidden_owner_stops_the_walk_there_and_says_so(h: Harness) -> None:
    _, _, pod = chain(h.kube)
    gone_rs = put(h.kube, "replicasets", "api-5c4b3")
    orphan = put(h.kube, "pods", "api-5c4b3-q", owner=ref(gone_rs))
    h.kube.delete_object("replicasets", "default", "api-5c4b3")
    about(h.kube, pod)
    about(h.kube, orphan)
    h.kube.forbid("get", "deployments")
    assert enrich_run(h, "--enrich", "owner") == 0
    got = enriched(h)
    assert {k: got[pod["metadata"]["name"]][k] for k in WORKLOAD_KEYS & set(got[pod["metadata"]["name"]])} == {
        "workload_kind": "Deployment", "workload_name": "web", "workload_stop": "forbidden"}
    assert (got["api-5c4b3-q"]["workload_kind"], got["api-5c4b3-q"]["workload_stop"]) == ("ReplicaSet", "missing")
    s = h.summary()
    assert (s["enriched"], s["enrich_forbidden"], s["enrich_missing"]) == (2, 1, 1)
    warnings = [r["msg"] for r in h.logs() if r.get("level") == "warning" and "enrich" in r["msg"]]
    assert len(warnings) == 1 and "deployments.apps in namespace default" in warnings[0]


def test_without_the_rbac_component_one_warning_names_the_permission_and_everything_ships(h: Harness) -> None:
    for i in range(3):
        _, _, pod = chain(h.kube, name=f"w{i}")
        about(h.kube, pod)
    h.kube.forbid("get", "pods")
    assert enrich_run(h, "--enrich", "owner") == 0
    assert len(h.shipped()) == 3
    assert not any(WORKLOAD_KEYS & set(md) for md in enriched(h).values())
    s = h.summary()
    assert (s["enrich_forbidden"], s["enrich_requests"]) == (3, 1)  # one 403 answers for the whole namespace
    warnings = [r["msg"] for r in h.logs() if r.get("level") == "warning"]
    assert len(warnings) == 1 and "may not get pods in namespace default" in warnings[0]
    assert "deploy/components/enrich-rbac" in warnings[0]


def test_an_owner_kind_that_is_not_served_stops_the_walk_and_a_served_custom_kind_is_walked(h: Harness) -> None:
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "shop", "uid": "u-1"}}
    rs = put(h.kube, "replicasets", "shop-6f5d", owner=ref(rollout))
    pod = put(h.kube, "pods", "shop-6f5d-a", owner=ref(rs))
    h.kube.serve_resource("widgets", "Widget", "example.com", "v1")
    widget = put(h.kube, "widgets", "gadget")
    wpod = put(h.kube, "pods", "gadget-a", owner=ref(widget))
    about(h.kube, pod)
    about(h.kube, wpod)
    assert enrich_run(h, "--enrich", "owner") == 0
    got = enriched(h)
    assert (got["shop-6f5d-a"]["workload_kind"], got["shop-6f5d-a"]["workload_name"],
            got["shop-6f5d-a"]["workload_stop"]) == ("Rollout", "shop", "not_served")
    assert (got["gadget-a"]["workload_kind"], got["gadget-a"]["workload_name"]) == ("Widget", "gadget")
    assert "workload_stop" not in got["gadget-a"]
    assert ("GET", "/apis/argoproj.io/v1alpha1") in h.kube.requests  # discovery: 404, group not served


def test_a_budget_smaller_than_the_work_enriches_what_it_can_and_counts_the_rest(h: Harness) -> None:
    pods = []
    for i in range(4):
        rs = put(h.kube, "replicasets", f"b{i}-1")
        pods.append(put(h.kube, "pods", f"b{i}-1-x", owner=ref(rs)))
        about(h.kube, pods[-1])
    assert enrich_run(h, "--enrich", "owner", "--enrich-max-requests", "3") == 0
    assert len(h.shipped()) == 4
    s = h.summary()
    assert (s["enrich_requests"], s["enriched"], s["enrich_over_budget"]) == (3, 2, 3)
    got = enriched(h)  # events are listed in key order, so the budget runs out at the same place every time
    assert (got["b0-1-x"]["workload_name"], "workload_stop" in got["b0-1-x"]) == ("b0-1", False)
    assert (got["b1-1-x"]["workload_name"], got["b1-1-x"]["workload_stop"]) == ("b1-1", "over_budget")
    assert not WORKLOAD_KEYS & (set(got["b2-1-x"]) | set(got["b3-1-x"]))


def test_a_slow_api_server_leaves_the_fields_out_and_still_ships_every_occurrence(h: Harness) -> None:
    _, _, pod = chain(h.kube)
    about(h.kube, pod)
    about(h.kube, put(h.kube, "pods", "other"))

    def slow(method: str, path: str) -> None:
        if "/pods/" in path:
            time.sleep(1.0)

    h.kube.on_request = slow
    assert enrich_run(h, "--enrich", "owner", "--api-timeout", "2s") == 0
    assert len(h.shipped()) == 2
    assert not any(WORKLOAD_KEYS & set(md) for md in enriched(h).values())
    s = h.summary()
    assert s["enrich_errors"] == 2 and s["enrich_requests"] == 1  # stopped after the first timeout
    assert any("lookups stopped" in r["msg"] for r in h.logs())


def test_a_resend_after_a_failed_save_gives_identical_entries_that_loki_drops(h: Harness) -> None:
    _, _, pod = chain(h.kube, labels={"team": "payments"})
    about(h.kube, pod)
    about(h.kube, pod, reason="Unhealthy", count=3)
    args = ("--enrich", "owner,labels", "--enrich-labels", "team", "--structured-metadata")
    h.kube.fail("PATCH", r"/configmaps/loki-event-sync-checkpoint", 500)
    assert enrich_run(h, *args) == 1  # pushed, then the checkpoint save failed
    first = sorted((e.ts, e.line, tuple(e.metadata.items())) for e in h.loki.entries())
    assert enrich_run(h, *args) == 0  # ships the same occurrences again
    assert sorted((e.ts, e.line, tuple(e.metadata.items())) for e in h.loki.entries()) == first
    assert h.loki.duplicate_entries == 2


def test_an_object_changed_between_the_two_runs_is_the_one_case_loki_keeps_both(h: Harness) -> None:
    _, _, pod = chain(h.kube, labels={"team": "payments"})
    about(h.kube, pod)
    h.kube.fail("PATCH", r"/configmaps/loki-event-sync-checkpoint", 500)
    assert enrich_run(h, "--enrich", "labels", "--enrich-labels", "team") == 1
    pod["metadata"]["labels"] = {"team": "checkout"}
    h.kube.put_object("pods", pod)
    assert enrich_run(h, "--enrich", "labels", "--enrich-labels", "team") == 0
    assert sorted(e.metadata["label_team"] for e in h.loki.entries()) == ["checkout", "payments"]
    assert len({(e.ts, e.line.split(',"label_team"')[0]) for e in h.loki.entries()}) == 1


def test_loki_keeps_an_entry_whose_metadata_alone_changed_as_its_ingester_does(h: Harness) -> None:
    # The seed line format carries no enrich keys, so only the structured metadata tells the two apart.
    _, _, pod = chain(h.kube, labels={"team": "payments"})
    about(h.kube, pod)
    args = ("--enrich", "labels", "--enrich-labels", "team", "--line-format", "seed")
    h.kube.fail("PATCH", r"/configmaps/loki-event-sync-checkpoint", 500)
    assert enrich_run(h, *args) == 1
    pod["metadata"]["labels"] = {"team": "checkout"}
    h.kube.put_object("pods", pod)
    assert enrich_run(h, *args) == 0
    assert len({(e.ts, e.line) for e in h.loki.entries()}) == 1
    assert sorted(e.metadata["label_team"] for e in h.loki.entries()) == ["checkout", "payments"]


def test_index_labels_only_when_named_and_annotations_only_one_by_one(h: Harness) -> None:
    _, _, pod = chain(h.kube)
    pod["metadata"]["annotations"] = {"owner-team": "payments",
                                      "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    h.kube.put_object("pods", pod)
    about(h.kube, pod)
    assert enrich_run(h, "--enrich", "owner", "--enrich-index-labels", "workload_name",
                 "--enrich-annotations", "owner-team") == 0
    (entry,) = h.loki.entries()
    assert entry.labels["workload_name"] == "web"
    assert entry.metadata["annotation_owner_team"] == "payments"
    assert not any("last_applied" in k for k in entry.metadata)


@pytest.mark.parametrize(("args", "says"), [
    (("--enrich", "owners"), "not owner or labels"),
    (("--enrich", "owner", "--enrich-index-labels", "a,b,c,d"), "at most 3"),
    (("--enrich", "owner", "--enrich-index-labels", "label_team"), "not one of the fields"),
    (("--enrich", "labels"), "go together"),
    (("--enrich-max-requests", "50"), "need --enrich"),
])
def test_bad_enrich_settings_are_a_usage_error(h: Harness, args: tuple[str, ...], says: str) -> None:
    assert h.run("run", *args) == 2
    assert says in h.stderr and "Traceback" not in h.stderr


@pytest.mark.parametrize("components", [("enrich-rbac",), ("namespaced-rbac", "enrich-rbac/namespaced")])
def test_with_the_enrich_rbac_component_every_lookup_is_permitted(h: Harness, components: tuple[str, ...]) -> None:
    from tests.manifests import BASE, COMPONENTS, render_overlay

    listed = ", ".join(f'"{{c}}/{c}"' for c in components)
    items = render_overlay(h.tmp, 'resources: ["{base}"]\ncomponents: [' + listed + ']\n', base=BASE, c=COMPONENTS)
    h.kube.apply_rbac(*[d for d in items if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")])
    h.kube.add_token("sa-token", f"system:serviceaccount:{NAMESPACE}:loki-event-sync")
    h.kube.enforce_rbac()
    h.kubeconfig = h.kube.write_kubeconfig(str(h.tmp / "kubeconfig-sa"), namespace=NAMESPACE, token="sa-token")
    cron = put(h.kube, "cronjobs", "backup")
    job = put(h.kube, "jobs", "backup-1", owner=ref(cron))
    about(h.kube, put(h.kube, "pods", "backup-1-x", owner=ref(job)))
    _, _, pod = chain(h.kube)
    about(h.kube, pod)
    assert enrich_run(h, "--enrich", "owner", "--event-namespaces", "default") == 0, h.stderr
    s = h.summary()
    assert (s["enriched"], s["enrich_forbidden"], s["enrich_requests"]) == (2, 0, 6)
    assert {md["workload_kind"] for md in enriched(h).values()} == {"CronJob", "Deployment"}


def test_the_readmes_query_finds_every_event_of_a_deployment_across_a_rollout(h: Harness) -> None:
    from pathlib import Path

    from tests import logql

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (query,) = [q for q in re.findall(r"```logql\n(.*?)\n```", readme, re.S) if "workload_name" in q]
    deploy = put(h.kube, "deployments", "web", ns="shop")
    for rollout in ("7d9f8", "5c4b3"):
        rs = put(h.kube, "replicasets", f"web-{rollout}", owner=ref(deploy), ns="shop")
        about(h.kube, put(h.kube, "pods", f"web-{rollout}-a", owner=ref(rs), ns="shop"))
    about(h.kube, put(h.kube, "pods", "web-other", ns="shop"))  # a bare pod whose name merely looks alike
    assert enrich_run(h, "--enrich", "owner") == 0
    p = logql.parse(query)
    # Loki 3 hands structured metadata to the pipeline as labels; no parser is needed for them.
    found = {json.loads(e.line)["name"] for e in h.loki.entries()
             if logql.evaluate(p, {**e.labels, **e.metadata}, e.line)[0]}
    assert found == {"web-7d9f8-a", "web-5c4b3-a"}


@pytest.mark.parametrize("line_format", ["json", "logfmt"])
def test_a_truncated_line_keeps_the_enrich_keys_within_the_line_limit(line_format: str) -> None:
    from job.events import decode_page
    from job.lines import Formatter

    e = legacy_event("big.1", message="x" * 5000)
    ((event, _),) = decode_page(json.dumps({"items": [e]}).encode()).events
    fmt = Formatter(label_style="default", line_format=line_format, cluster="", max_line_bytes=1024,
                    structured_metadata=False)
    line = fmt.line(event, 1, (("workload_kind", "Deployment"), ("workload_name", "web")))
    assert len(line.encode()) <= 1024 and fmt.truncated == 1
    if line_format == "json":
        parsed = json.loads(line)
        assert (parsed["workload_kind"], parsed["workload_name"]) == ("Deployment", "web")
        assert "truncated" in parsed["message"]
    else:
        assert line.endswith(" workload_kind=Deployment workload_name=web")
