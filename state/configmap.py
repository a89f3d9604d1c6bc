"""A checkpoint in a ConfigMap: the in-cluster default, guarded by its resourceVersion.

Facts this store relies on (kube-apiserver behaviour):

* The ConfigMap is created by the install (`kubectl apply -f cronjob.yaml`), never by the job: RBAC's
  ``create`` verb cannot be limited by ``resourceNames``, and a job that creates what it does not
  find turns a typo in ``--state`` into a silent first run. A missing ConfigMap is an error naming
  the command that creates it.
* Only a missing ``binaryData.checkpoint`` key in a present ConfigMap is "no checkpoint yet". Anything
  under the key, empty bytes included, goes to the decoder, which refuses what it cannot read; a
  ``data.checkpoint`` (text) key is refused too. Nothing is ever treated as absent and overwritten.
* Writes are a JSON merge patch (RFC 7386, ``application/merge-patch+json``) of the one key the job
  owns, so every other data key, label and annotation (kubectl's last-applied-configuration, Argo CD's
  tracking id, Helm's ownership) survives. The patch carries ``metadata.resourceVersion``: the
  apiserver applies the patch to the stored object and then stores it as an update of that version,
  so a stale one gets 409 Conflict exactly as a PUT would (kubernetes/kubernetes#63104; controller-
  runtime's MergeFromWithOptimisticLock). RBAC needs ``get`` and ``patch`` on this resourceName.
* The 1 MiB limit is on the sum of every ``data`` value (UTF-8 bytes) and ``binaryData`` value
  (decoded bytes), so the room for the checkpoint is what the other keys leave.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from urllib3.exceptions import HTTPError

from job.kube import ApiClient, ApiException, CoreV1Api, KubeError, api_message, is_status, read_object
from state.base import CheckpointCorrupt, StoreConflict, StoreError

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
        self.max_bytes = LIMIT

    def load(self) -> tuple[bytes | None, str | None]:
        """(bytes, resourceVersion); bytes is None only when the key is missing from a present ConfigMap."""
        obj = self._read()
        rv = str(obj["metadata"]["resourceVersion"])
        data = obj.get("data") or {}
        binary = obj.get("binaryData") or {}
        # Other keys share the ConfigMap's 1 MiB; fit() must prune to what they leave.
        others = sum(len(v.encode()) for v in data.values())
        others += sum(len(_b64(v, self.name)) for k, v in binary.items() if k != KEY)
        self.max_bytes = LIMIT - others
        if KEY in data:
            raise CheckpointCorrupt(
                f"checkpoint {self.name}: the ConfigMap holds data.{KEY} (text), not binaryData.{KEY}; "
                "it was not written by loki-event-sync: move it away, or restore the checkpoint under binaryData"
            )
        if KEY not in binary:
            return None, rv
        return _b64(binary[KEY], self.name), rv

    def save(self, data: bytes, version: str | None) -> str:
        """Merge-patch binaryData.checkpoint iff the ConfigMap is still at ``version``.

        ``version`` None means "the key must still be missing": the ConfigMap is read first and its
        resourceVersion becomes the precondition, so this is as safe as a save after load().
        """
        if version is None:
            current, version = self.load()
            if current is not None:
                raise StoreConflict(f"checkpoint {self.name} was written by someone else; not overwriting it")
        patch = {"metadata": {"resourceVersion": version}, "binaryData": {KEY: base64.b64encode(data).decode()}}
        try:
            resp = self.core.patch_namespaced_config_map(
                self.cm, self.namespace, patch, _preload_content=False, _request_timeout=self.timeout,
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 409:
                raise StoreConflict(
                    f"checkpoint {self.name} was changed by someone else since it was read; not overwriting it"
                ) from None
            if exc.status == 404 and is_status(exc.body):
                raise StoreError(self._missing()) from None
            raise StoreError(self._explain("write", exc)) from None
        except HTTPError as exc:
            raise StoreError(f"cannot write checkpoint {self.name}: cannot reach the Kubernetes API: "
                             f"{type(exc).__name__}") from None
        return str(self._json(resp.data, "write")["metadata"]["resourceVersion"])

    def _read(self) -> dict[str, Any]:
        try:
            resp = self.core.read_namespaced_config_map(
                self.cm, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as exc:
            # A 404 from something that is not the API server (an ingress, a proxy) is no answer at all.
            if exc.status == 404 and is_status(exc.body):
                raise StoreError(self._missing()) from None
            raise StoreError(self._explain("read", exc)) from None
        except HTTPError as exc:
            raise StoreError(f"cannot read checkpoint {self.name}: cannot reach the Kubernetes API: "
                             f"{type(exc).__name__}") from None
        return self._json(resp.data, "read")

    def _json(self, body: bytes, verb: str) -> dict[str, Any]:
        try:
            return read_object(body, f"cannot {verb} checkpoint {self.name}")
        except KubeError as exc:
            raise StoreError(str(exc)) from None

    def _missing(self) -> str:
        return (f"checkpoint {self.name}: ConfigMap {self.namespace}/{self.cm} does not exist (or namespace "
                f"{self.namespace} does not); the job never creates it: `kubectl apply -f cronjob.yaml`, or "
                f"`kubectl -n {self.namespace} create configmap {self.cm}`; or fix --state")

    def _explain(self, verb: str, exc: ApiException) -> str:
        hint = ""
        if exc.status == 403:
            hint = f"; grant get and patch on configmaps/{self.cm} in {self.namespace} (see cronjob.yaml)"
        return f"cannot {verb} checkpoint {self.name}: HTTP {exc.status}: {api_message(exc)}{hint}"


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointCorrupt(f"checkpoint {where} is not valid base64; restore a good copy, or start over "
                                "with --reset-checkpoint") from None
