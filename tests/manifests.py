"""The shipped manifests as the tests read them: kustomize renders (through tools/render.py, as CI and
the release do), lookups by kind, schema validation for the oldest and newest supported Kubernetes,
the RBAC the code needs against what the manifests grant, and kubectl apply's three-way merge."""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tools import render

ROOT = Path(__file__).resolve().parent.parent


CRONJOB = ROOT / "cronjob.yaml"


BASE = ROOT / "deploy" / "base"


INSTALL = ROOT / "deploy" / "install"


COMPONENTS = ROOT / "deploy" / "components"


# podFailurePolicy is GA (and CronJob timeZone stable) from 1.31; kubernetes-validate ships up to 1.37.
K8S_VERSIONS = ("1.31", "1.37")


NAMESPACE = "loki-event-sync"


APP_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
              "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}

# Every Kubernetes client method the code may call, and the RBAC permission it needs.
API_CALLS: dict[str, tuple[str, str, str]] = {
    "list_event_for_all_namespaces": ("", "events", "list"),
    "list_namespaced_event": ("", "events", "list"),
    "read_namespaced_lease": ("coordination.k8s.io", "leases", "get"),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update"),
    "patch_namespaced_lease": ("coordination.k8s.io", "leases", "patch"),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", "create"),
    "read_namespaced_config_map": ("", "configmaps", "get"),
    "replace_namespaced_config_map": ("", "configmaps", "update"),
    "patch_namespaced_config_map": ("", "configmaps", "patch"),
    "create_namespaced_config_map": ("", "configmaps", "create"),
    "list_namespace": ("", "namespaces", "list"),
}


# /version (--list-from cache asks which server it talks to) is a non-resource URL every
# authenticated user may GET through the default system:discovery ClusterRole: nothing to grant.
NEEDS_NO_GRANT = {"get_code"}


def parse(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def docs(path: Path) -> list[dict[str, Any]]:
    return parse(path.read_text(encoding="utf-8"))


@functools.cache
def _rendered(directory: Path) -> str:
    return render.kustomize(directory)


def rendered(directory: Path) -> list[dict[str, Any]]:
    return parse(_rendered(directory))


def overlay(tmp_path: Path, body: str, *, name: str = "overlay", **dirs: Path) -> Path:
    """A kustomization in tmp_path/NAME; {key} in BODY becomes the relative path to dirs[key]
    (kustomize refuses absolute paths to other kustomizations)."""
    where = tmp_path / name
    where.mkdir(parents=True, exist_ok=True)
    rel = {k: os.path.relpath(v, where) for k, v in dirs.items()}
    (where / "kustomization.yaml").write_text(body.format(**rel), encoding="utf-8")
    return where


def render_overlay(tmp_path: Path, body: str, **dirs: Path) -> list[dict[str, Any]]:
    return parse(render.kustomize(overlay(tmp_path, body, **dirs)))  # type: ignore[arg-type]  # no dir is `name`


def by_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in items if d["kind"] == kind]


def one(items: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = by_kind(items, kind)
    return obj


def install() -> list[dict[str, Any]]:
    return docs(CRONJOB)


def cronjob(items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return one(install() if items is None else items, "CronJob")


def pod_of(cj: dict[str, Any]) -> dict[str, Any]:
    return cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(cj: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod_of(cj)["containers"]
    return c


def component_dirs() -> list[Path]:
    """Every component under deploy/components (nested ones too, e.g. networkpolicy/pushgateway)."""
    return sorted(p.parent for p in COMPONENTS.rglob("kustomization.yaml"))


def all_components(tmp_path: Path) -> list[dict[str, Any]]:
    """deploy/install (which has the namespace component) plus every other component."""
    dirs = {f"c{i}": d for i, d in enumerate(component_dirs()) if d.name != "namespace"}
    listed = "".join(f'  - "{{{key}}}"\n' for key in dirs)
    return render_overlay(tmp_path, 'resources: ["{install}"]\ncomponents:\n' + listed, install=INSTALL, **dirs)


def validate_all(items: list[dict[str, Any]]) -> int:
    checked = 0
    for doc in items:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: kubernetes_validate only knows the built-in kinds
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    return checked


def used_permissions() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every Kubernetes API method named in job/ and state/."""
    from kubernetes import client

    api_methods = {name for cls_name in dir(client) if cls_name.endswith("Api")
                   for name in dir(getattr(client, cls_name)) if not name.startswith("_")}
    api_methods -= set(dir(client.ApiClient))
    source = "\n".join(p.read_text(encoding="utf-8") for d in ("job", "state") for p in sorted((ROOT / d).glob("*.py")))
    named = set(re.findall(r"\b[a-z_]+\b", source)) & api_methods
    named = {n.removesuffix("_with_http_info") for n in named} - NEEDS_NO_GRANT
    unknown = named - set(API_CALLS)
    assert not unknown, f"add the RBAC these calls need to API_CALLS and deploy/base: {sorted(unknown)}"
    return {API_CALLS[n] for n in named}


def granted(items: list[dict[str, Any]]) -> tuple[set[tuple[str, str, str]], list[dict[str, Any]]]:
    perms: set[tuple[str, str, str]] = set()
    rules: list[dict[str, Any]] = []
    for role in by_kind(items, "ClusterRole") + by_kind(items, "Role"):
        for rule in role["rules"]:
            rules.append({**rule, "_kind": role["kind"], "_namespace": role["metadata"].get("namespace")})
            perms |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return perms, rules


def assert_bound_to_the_service_account(items: list[dict[str, Any]], namespace: str) -> None:
    sa = pod_of(cronjob(items))["serviceAccountName"]
    (account,) = [d for d in by_kind(items, "ServiceAccount") if d["metadata"]["name"] == sa]
    assert account["metadata"]["namespace"] == namespace
    bindings = by_kind(items, "ClusterRoleBinding") + by_kind(items, "RoleBinding")
    assert bindings
    roles = {(d["kind"], d["metadata"]["name"]) for d in by_kind(items, "ClusterRole") + by_kind(items, "Role")}
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles, binding["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]


def three_way_patch(original: Any, modified: dict[str, Any], current: Any) -> dict[str, Any]:
    """kubectl apply's client-side merge patch for objects without lists (ConfigMap, Lease): set what
    the new manifest says where the live object differs, and delete only what the previous manifest
    (last-applied) set and the new one no longer does. Fields nobody applied are left alone."""
    original = original if isinstance(original, dict) else {}
    current = current if isinstance(current, dict) else {}
    patch: dict[str, Any] = {}
    for key, want in modified.items():
        have = current.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            sub = three_way_patch(original.get(key), want, have)
            if sub:
                patch[key] = sub
        elif have != want:
            patch[key] = want
    for key in original:
        if key not in modified:
            patch[key] = None
    return patch
