"""Tenant routing: which Loki tenant (X-Scope-OrgID) an event's namespace goes to.

In order, the first that names a tenant wins:

1. ``--tenant-label LABEL`` (opt-in): the value of that label on the event's namespace. The job lists
   the namespaces carrying the label once per run (``GET /api/v1/namespaces?labelSelector=LABEL``),
   which needs ``list`` on ``namespaces`` (a ClusterRole: namespaces are cluster-scoped). Any label
   value Kubernetes allows ([A-Za-z0-9._-], at most 63, alphanumeric at both ends) is a valid tenant ID.
2. ``--tenant-map 'REGEX=TENANT,...'``: the first regex that fully matches the namespace.
3. ``--tenant``: the default tenant ("" sends no X-Scope-OrgID, for a single-tenant Loki).

Events without a namespace go to the default tenant. Tenants are never printed.
"""
from __future__ import annotations

import re
from typing import Any

from job.cmd import Config
from job.logs import Redactor


class Router:
    def __init__(self, default: str, table: tuple[tuple[re.Pattern[str], str], ...],
                 by_label: dict[str, str] | None = None) -> None:
        self.default = default
        self.table = table
        self.by_label = by_label or {}
        self._cache: dict[str | None, str] = {}

    def __call__(self, namespace: str | None) -> str:
        tenant = self._cache.get(namespace)
        if tenant is None:
            tenant = self._cache[namespace] = self._route(namespace)
        return tenant

    def _route(self, namespace: str | None) -> str:
        if not namespace:
            return self.default
        labelled = self.by_label.get(namespace)
        if labelled:
            return labelled
        for pattern, tenant in self.table:
            if pattern.fullmatch(namespace):
                return tenant
        return self.default


def router_for(cfg: Config, api: Any, redactor: Redactor | None = None) -> Router | None:
    """The run's Router, or None when every event goes to the one --tenant (the cheap common case).

    ``api`` is a callable returning the kubernetes ApiClient, called only for --tenant-label; the
    tenants the labels name become secrets of ``redactor``, like those of --tenant and --tenant-map.
    """
    if not cfg.tenant_map and not cfg.tenant_label:
        return None
    by_label = namespace_labels(api(), cfg.tenant_label, cfg.api_timeout) if cfg.tenant_label else {}
    if redactor is not None:
        for tenant in set(by_label.values()):
            redactor.add(tenant)
    return Router(cfg.tenant, cfg.tenant_map, by_label)


def namespace_labels(api: Any, label: str, timeout: float) -> dict[str, str]:
    """{namespace: value of ``label``} for the namespaces that carry it, in pages of 500."""
    from job.kube import ApiException, CoreV1Api, KubeError, explain, read_object

    core = CoreV1Api(api)
    found: dict[str, str] = {}
    token = None
    while True:
        try:
            # Raw bytes, not the client's models: deserialising would import all ~770 of them.
            resp = core.list_namespace(label_selector=label, limit=500, _continue=token, _request_timeout=timeout,
                                       _preload_content=False)
        except ApiException as exc:
            raise KubeError(explain(exc, f"listing namespaces for --tenant-label {label}")) from None
        page = read_object(resp.data, f"the namespace list for --tenant-label {label}")
        for ns in page.get("items") or []:
            meta = ns.get("metadata") or {}
            value = (meta.get("labels") or {}).get(label)
            if meta.get("name") and isinstance(value, str) and value:
                found[meta["name"]] = value
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return found
