"""The Kubernetes side: one client factory, the job's namespace, and paged event lists."""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from typing import Any, Callable, Iterator

import msgspec
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from job.cmd import UsageError
from job.events import Page

log = logging.getLogger(__name__)
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


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
    return api


def guard_tokens(cfg: client.Configuration, learn: Callable[[str], None]) -> None:
    """Clean and check every bearer token before the client sends it, and hand each to ``learn``.

    The client calls ``refresh_api_key_hook`` before every request; the in-cluster loader's hook re-reads
    the rotated service account token there (every minute), and both loaders re-install their own hook
    on each call, so ours wraps whatever hook is current each time. As kubectl does, surrounding
    whitespace is stripped (a tokenFile written by `echo` ends in a newline). A newline or CR inside a
    token would make http.client refuse the header with the token in its message: that is a
    configuration error here, exit 2, and the message never holds the token. ``learn`` (the log
    redactor) sees every token the client will send, the rotated ones too.
    """
    inner = cfg.refresh_api_key_hook

    def hook(c: client.Configuration) -> None:
        nonlocal inner
        if inner is not None:
            try:
                inner(c)
            except (config.ConfigException, OSError) as exc:  # e.g. a rotated token file caught empty
                raise KubeError(f"cannot refresh the Kubernetes token: {exc}") from None
            if c.refresh_api_key_hook is not hook:  # the loader re-installed itself: keep ours in front
                inner = c.refresh_api_key_hook
                c.refresh_api_key_hook = hook
        for key, value in list((c.api_key or {}).items()):
            if not isinstance(value, str):
                continue
            clean = value.strip()
            scheme, _, token = clean.partition(" ")
            if scheme.lower() == "bearer":
                # The loaders prefix the raw token: "Bearer " + "  tok\n" must become "Bearer tok".
                token = token.strip()
                clean = f"{scheme} {token}"
            if "\n" in clean or "\r" in clean:
                raise UsageError(
                    "the Kubernetes token (kubeconfig token or tokenFile, or the service account token file) "
                    "holds a line break inside it; write it on one line"
                )
            c.api_key[key] = clean
            learn(clean)
            if scheme.lower() == "bearer":
                learn(token)

    cfg.refresh_api_key_hook = hook
    hook(cfg)


def credentials(api: client.ApiClient) -> list[str]:
    """The bearer token, basic-auth password and client key the client will send, for the log redactor."""
    cfg = api.configuration
    found = [cfg.password or ""]
    for value in (cfg.api_key or {}).values():
        scheme, _, token = value.partition(" ")
        found += [value, token.strip() if scheme.lower() in ("bearer", "basic") else ""]
    return [t for t in found if t]


def own_namespace(kubeconfig: str, default: str) -> str:
    """The service account's namespace in a cluster, else ``default`` (the install's).

    Off-cluster the kubeconfig context's namespace is deliberately not used: it is usually `default`
    or a team's namespace, and the job's Lease and checkpoint live in the install's namespace.
    """
    if in_cluster() and not kubeconfig:
        try:
            with open(f"{SA_DIR}/namespace", encoding="utf-8") as f:
                return f.read().strip() or default
        except OSError:
            return default
    return default


def is_status(body: object) -> bool:
    """True when an error answer is the apiserver's own Status object, not a proxy's page."""
    try:
        obj = json.loads(body)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return isinstance(obj, dict) and obj.get("kind") == "Status"


def read_object(body: bytes, what: str) -> dict[str, Any]:
    """Parse a 2xx answer that must be a Kubernetes object; anything else is one clear line."""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            return obj
    except ValueError:
        pass
    raise KubeError(f"{what}: the answer is not a Kubernetes object ({describe_body(body)}); "
                    "is the kubeconfig's server a proxy or a web page instead of the API server?")


def describe_body(body: object) -> str:
    """A few words about an answer that is not JSON, never the answer itself (it can be a whole page)."""
    raw = body if isinstance(body, bytes) else str(body or "").encode()
    if not raw.strip():
        return "an empty body"
    if raw.lstrip()[:1] == b"<":
        m = _TITLE.search(raw[:65536])
        title = " ".join(m.group(1).decode("utf-8", "replace").split())[:80] if m else ""
        return f"an HTML page titled {title!r}" if title else "an HTML page"
    return f"{len(raw)} bytes that are not JSON"


def explain(exc: ApiException, what: str) -> str:
    """One line from an API error: the server's message, plus the fix for the usual causes.

    A proxy or load balancer in front of the API server answers with its own page (HTML, often a
    whole document): only the status, its reason and the page's title are shown.
    """
    try:
        obj = json.loads(exc.body)
    except (TypeError, ValueError):
        message = (f"{exc.reason or 'no reason given'} ({describe_body(exc.body)}, not an answer of the "
                   "Kubernetes API: a proxy or load balancer in the way?)")
    else:
        found = obj.get("message") if isinstance(obj, dict) else None
        message = found if isinstance(found, str) and found else exc.reason or "no message"
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
