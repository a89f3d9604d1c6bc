"""The run's connections, built on first use, so a --from-file dry run needs no cluster at all.

Defaults, in a cluster and off it alike (a kubeconfig run must land on the same objects as the
CronJob, never on a local file or the kubeconfig context's namespace):

* the job's namespace is --namespace, else the service account's (in a cluster, no --kubeconfig),
  else the install's, ``loki-event-sync``;
* the checkpoint is --state, else ``configmap://<that namespace>/loki-event-sync-checkpoint``. A local
  file store is used only when asked for (``--state file://...``);
* ``--from-file`` with ``--dry-run`` and no --state reads no checkpoint at all: it treats the
  checkpoint as empty and touches nothing, so the README's first command works on a machine with no
  cluster.
"""
from __future__ import annotations

from typing import Any

from job import kube
from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_NAMESPACE, Config
from job.logs import Redactor
from state import Store, StoreError, open_store


class NoStore:
    """The checkpoint of a --from-file --dry-run without --state: always empty, never written."""

    name = "none (--from-file --dry-run without --state: every event counts as new)"
    max_bytes: int | None = None

    def load(self) -> tuple[bytes | None, Any]:
        return None, None

    def save(self, data: bytes, version: Any) -> Any:
        raise StoreError("a dry run never saves a checkpoint")


class Connections:
    def __init__(self, cfg: Config, redactor: Redactor | None = None) -> None:
        self.cfg = cfg
        self.redactor = redactor
        self._api: Any = None
        self._namespace = cfg.namespace

    def api(self) -> Any:
        if self._api is None:
            api = kube.api_client(self.cfg.kubeconfig, self.cfg.context)
            if self.redactor is not None:
                for secret in kube.credentials(api):
                    self.redactor.add(secret)
            # Before the first request: every token the client will send is checked and redacted.
            kube.guard_tokens(api.configuration, self.redactor.add if self.redactor is not None else _ignore)
            self._api = api
        return self._api

    def namespace(self) -> str:
        if not self._namespace:
            self._namespace = kube.own_namespace(self.cfg.kubeconfig, DEFAULT_NAMESPACE)
        return self._namespace

    def needs_store(self) -> bool:
        return bool(self.cfg.state) or not (self.cfg.from_file and self.cfg.dry_run)

    def state_url(self) -> str:
        if self.cfg.state:
            return self.cfg.state
        return f"configmap://{self.namespace()}/{DEFAULT_CHECKPOINT_CONFIGMAP}"

    def store(self) -> Store:
        if not self.needs_store():
            return NoStore()
        return open_store(self.state_url(), kube=self.api, s3_endpoint_url=self.cfg.s3_endpoint_url or None)


def _ignore(_: str) -> None:
    pass
