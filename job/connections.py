"""The run's connections, built on first use, so a --from-file dry run needs no cluster at all."""
from __future__ import annotations

from typing import Any

from job import kube
from job.cmd import DEFAULT_CHECKPOINT_CONFIGMAP, DEFAULT_FILE_STATE, Config
from job.logs import Redactor
from state import Store, open_store


class Connections:
    def __init__(self, cfg: Config, redactor: Redactor | None = None) -> None:
        self.cfg = cfg
        self.redactor = redactor
        self._api: Any = None
        self._namespace = cfg.namespace

    def api(self) -> Any:
        if self._api is None:
            self._api = kube.api_client(self.cfg.kubeconfig, self.cfg.context)
            if self.redactor is not None:
                for secret in kube.credentials(self._api):
                    self.redactor.add(secret)
        return self._api

    def namespace(self) -> str:
        if not self._namespace:
            self._namespace = kube.own_namespace(self.cfg.kubeconfig, self.cfg.context)
        return self._namespace

    def state_url(self) -> str:
        if self.cfg.state:
            return self.cfg.state
        if kube.in_cluster():
            return f"configmap://{self.namespace()}/{DEFAULT_CHECKPOINT_CONFIGMAP}"
        return DEFAULT_FILE_STATE

    def store(self) -> Store:
        return open_store(self.state_url(), kube=self.api, s3_endpoint_url=self.cfg.s3_endpoint_url or None)
