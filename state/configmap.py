"""A checkpoint in a ConfigMap: the in-cluster default, guarded by its resourceVersion."""
from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from state.base import StoreConflict, StoreError

KEY = "checkpoint"
LIMIT = 1_048_576  # data plus decoded binaryData, enforced by the API server


class ConfigMapStore:
    max_bytes: int | None = LIMIT

    def __init__(self, api: ApiClient, namespace: str, name: str, timeout: float = 30.0) -> None:
        self.core = CoreV1Api(api)
        self.namespace = namespace
        self.cm = name
        self.timeout = timeout
        self.name = f"configmap://{namespace}/{name} (key binaryData.{KEY})"

    def load(self) -> tuple[bytes | None, str | None]:
        try:
            resp = self.core.read_namespaced_config_map(
                self.cm, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise StoreError(self._explain("read", exc)) from None
        obj = json.loads(resp.data)
        rv = obj["metadata"]["resourceVersion"]
        blob = (obj.get("binaryData") or {}).get(KEY)
        return (base64.b64decode(blob) if blob else None), rv

    def save(self, data: bytes, version: str | None) -> str:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.cm, "namespace": self.namespace},
            "binaryData": {KEY: base64.b64encode(data).decode()},
        }
        try:
            if version is None:
                resp = self.core.create_namespaced_config_map(
                    self.namespace, body, _preload_content=False, _request_timeout=self.timeout
                )
            else:
                # Always send the resourceVersion we read: without it a PUT is last-write-wins.
                body["metadata"]["resourceVersion"] = version
                resp = self.core.replace_namespaced_config_map(
                    self.cm, self.namespace, body, _preload_content=False, _request_timeout=self.timeout
                )
        except ApiException as exc:
            if exc.status == 409:
                raise StoreConflict(
                    f"checkpoint {self.name} was changed by someone else since it was read; not overwriting it"
                ) from None
            raise StoreError(self._explain("write", exc)) from None
        return str(json.loads(resp.data)["metadata"]["resourceVersion"])

    def _explain(self, verb: str, exc: ApiException) -> str:
        try:
            message = json.loads(exc.body)["message"]
        except (TypeError, ValueError, KeyError):
            message = exc.reason
        hint = ""
        if exc.status == 403:
            hint = f"; grant get and update on configmaps/{self.cm} in {self.namespace} (see cronjob.yaml)"
        return f"cannot {verb} checkpoint {self.name}: HTTP {exc.status}: {message}{hint}"
