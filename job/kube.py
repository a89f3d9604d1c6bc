"""The Kubernetes side: one client factory, the job's namespace, and paged event lists."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Callable, Iterator

import msgspec
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from job.events import Page

log = logging.getLogger(__name__)
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeError(Exception):
    """The API refused or failed a call; the message says what to fix."""


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(f"{SA_DIR}/token")


def api_client(kubeconfig: str, context: str) -> client.ApiClient:
    """In-cluster config first (it re-reads the rotated token itself), then the kubeconfig."""
    if in_cluster() and not kubeconfig:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(cfg)
    try:
        # persist_config=False: never write refreshed credentials back into the user's kubeconfig.
        api = config.new_client_from_config(
            config_file=kubeconfig or None, context=context or None, persist_config=False
        )
    except (config.ConfigException, OSError) as exc:
        raise KubeError(f"no usable Kubernetes config: {exc}; pass --kubeconfig/--context, or run in a cluster") from None
    # A tokenFile written by `echo` ends in a newline; kubectl strips it, while http.client refuses
    # the header and prints the token in its error. The client re-sets the key before every request.
    cfg = api.configuration
    refresh = cfg.refresh_api_key_hook

    def strip_tokens(c: client.Configuration) -> None:
        if refresh is not None:
            refresh(c)
        for key, value in list((c.api_key or {}).items()):
            c.api_key[key] = value.strip()

    cfg.refresh_api_key_hook = strip_tokens
    strip_tokens(cfg)
    return api


def credentials(api: client.ApiClient) -> list[str]:
    """The bearer token and client key the client will send, for the log redactor."""
    cfg = api.configuration
    found = [cfg.password or ""]
    for value in (cfg.api_key or {}).values():
        found += [value, value.removeprefix("Bearer ").strip()]
    return [t for t in found if t]


def own_namespace(kubeconfig: str, context: str) -> str:
    """The service account's namespace in a cluster, else the kubeconfig context's, else default."""
    if in_cluster() and not kubeconfig:
        with open(f"{SA_DIR}/namespace", encoding="utf-8") as f:
            return f.read().strip()
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig or None)
    except (config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return (chosen or {}).get("context", {}).get("namespace") or "default"


def explain(exc: ApiException, what: str) -> str:
    """One line from an API error: the server's message, plus the fix for the usual causes."""
    try:
        message = json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = exc.reason or "no message"
    hint = ""
    if exc.status == 403:
        hint = "; the service account lacks this permission: apply the RBAC in cronjob.yaml"
    elif exc.status == 401:
        hint = "; the credentials were refused: check the kubeconfig or the service account token"
    return f"{what} failed: HTTP {exc.status}: {message}{hint}"


def list_event_pages(api: client.ApiClient, *, page_size: int, field_selector: str, timeout: float,
                     decode: Callable[[bytes], Page]) -> Iterator[Page]:
    """Yield each decoded page of core/v1 events across all namespaces, in order.

    A background thread fetches the next page while this one is processed (the socket wait
    releases the GIL); at most two pages wait, so memory stays a few pages plus the ledger.
    """
    pages: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for data in _raw_pages(api, page_size, field_selector, timeout):
                if not _hand_over(pages, data, stop):
                    return
            _hand_over(pages, None, stop)
        except BaseException as exc:  # raised again in the run's thread
            _hand_over(pages, exc, stop)

    threading.Thread(target=fetch, name="event-lister", daemon=True).start()
    try:
        while True:
            item = pages.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield decode(item)
    finally:
        stop.set()


def _hand_over(pages: "queue.Queue[bytes | BaseException | None]", item: bytes | BaseException | None,
               stop: threading.Event) -> bool:
    """Queue an item for the consumer; False once it has stopped reading (never block forever)."""
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.2)
            return True
        except queue.Full:
            pass
    return False


def _raw_pages(api: client.ApiClient, page_size: int, field_selector: str, timeout: float) -> Iterator[bytes]:
    """The bytes of each page. On 410 Expired the list starts over: the ledger makes re-reading
    harmless, while the inconsistent-resume token the server offers could skip items."""
    core = client.CoreV1Api(api)
    token = ""
    restarts = 0
    while True:
        try:
            resp = core.list_event_for_all_namespaces(
                limit=page_size, _continue=token or None, field_selector=field_selector or None,
                _preload_content=False, _request_timeout=timeout,
            )
        except ApiException as exc:
            if exc.status == 410 and restarts < 5:
                restarts += 1
                log.warning("the event list expired mid-way (410); listing again from the start")
                token = ""
                continue
            raise KubeError(explain(exc, "listing events")) from None
        except HTTPError as exc:
            raise KubeError(f"cannot reach the Kubernetes API at {api.configuration.host}: {type(exc).__name__}") from None
        data = resp.data
        resp.release_conn()  # unread, a raw response keeps its connection (and buffers) out of the pool
        yield data
        meta = _envelope.decode(data).metadata
        token = (meta.continue_ if meta else None) or ""
        if not token:
            return


class _Continue(msgspec.Struct):
    continue_: str | None = msgspec.field(default=None, name="continue")


class _Envelope(msgspec.Struct):
    metadata: _Continue | None = None


_envelope = msgspec.json.Decoder(_Envelope)  # skips the items: only the continue token is needed here
