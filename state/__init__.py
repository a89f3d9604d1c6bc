"""Checkpoint stores, chosen by URL. Each store module is imported only when its scheme is used."""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from state.base import Checkpoint, CheckpointCorrupt, Store, StoreConflict, StoreError, decode, encode

__all__ = [
    "Checkpoint", "CheckpointCorrupt", "Store", "StoreConflict", "StoreError", "decode", "encode", "open_store",
]

SCHEMES = ("configmap://NAMESPACE/NAME", "s3://BUCKET/KEY", "file://PATH")


def open_store(url: str, *, kube: Callable[[], Any], s3_endpoint_url: str | None = None) -> Store:
    """Build the store for ``url``; ``kube`` returns an ApiClient and is called only for ConfigMaps."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        from state.file import FileStore

        # Everything after file:// is the path, literally: a URL parser would cut it at ? and #.
        return FileStore(url.split("://", 1)[1])
    if parts.scheme == "configmap":
        from state.configmap import ConfigMapStore

        return ConfigMapStore(kube(), parts.netloc, parts.path.strip("/"))
    if parts.scheme == "s3":
        from state.s3 import S3Store

        return S3Store(parts.netloc, parts.path.lstrip("/"), s3_endpoint_url)
    raise ValueError(f"unsupported --state {url!r}; use one of {', '.join(SCHEMES)}")
