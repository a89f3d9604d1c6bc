"""The Kubernetes side: one client factory, the job's namespace, and paged event lists.

The official client, without its import bill. ``import kubernetes`` (36.x) executes
``kubernetes/__init__.py``, which imports every API group and, through ``kubernetes.client``'s
``__init__``, all 769 generated model modules: about 0.27 CPU-s and 45 MB before the first
request, most of a run with nothing new. The job only needs ``ApiClient``, ``Configuration``,
``rest``, ``exceptions``, ``CoreV1Api``, ``CoordinationV1Api`` and the config loaders, and it
never builds a model (every call passes ``_preload_content=False`` and reads the raw bytes).
So the first use of a name below registers the client's packages in ``sys.modules`` as *lazy
packages* (real ``__path__``, ``__init__`` not run yet) and imports only those submodules:
the same code, the same classes, over the same HTTP, for about a third of the CPU and memory
(figures in docs/performance.md). A name the job does not map (``kubernetes.client.V1Pod``,
``kubernetes.watch`` ...) runs the package's real ``__init__`` on first use, so nothing anyone
imports ever breaks; it just costs what it always did. ``importlib.util.LazyLoader`` cannot do
this: the import system touches a package's ``__path__`` and sets attributes on it while
importing a submodule, and either loads the whole package.

Other modules import the client's names from here (``from job.kube import ApiClient,
CoreV1Api, CoordinationV1Api, ApiException``), never from ``kubernetes.client``, whose
``__init__`` would load every model.

In a cluster the client's own ``load_incluster_config`` is used (the documented contract: the
service account token and CA under /var/run/secrets/kubernetes.io/serviceaccount and
KUBERNETES_SERVICE_HOST/PORT; it re-reads the rotated token itself); with a kubeconfig the
client's full ``kube_config`` (contexts, exec plugins, OIDC, token files).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import queue
import re
import sys
import threading
import types
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from urllib3.exceptions import HTTPError

from job import __version__
from job.cmd import UsageError
from job.events import Page

if TYPE_CHECKING:  # the real modules, for type checkers; at run time the lean loader below
    from kubernetes import client, config
    from kubernetes.client import ApiClient, Configuration, CoordinationV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

# The client's names are served by __getattr__ below (imported for type checkers only).
__all__ = ["ApiClient", "ApiException", "Configuration", "CoordinationV1Api", "CoreV1Api", "KubeError",
           "KubeForbidden", "Listing", "api_client", "credentials", "explain", "in_cluster", "lean_kubernetes",
           "list_event_pages", "own_namespace"]
log = logging.getLogger(__name__)
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
USER_AGENT = f"loki-event-sync/{__version__}"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

# Where each name the job uses lives, so using it imports one module, not the package's __init__.
_CLIENT_NAMES = {
    "ApiClient": "kubernetes.client.api_client",
    "Configuration": "kubernetes.client.configuration",
    "CoreV1Api": "kubernetes.client.api.core_v1_api",
    "CoordinationV1Api": "kubernetes.client.api.coordination_v1_api",
    "ApiException": "kubernetes.client.exceptions",
    "VersionApi": "kubernetes.client.api.version_api",
}
# The first release whose watch cache pages lists (ListFromCacheSnapshot, beta and on by default).
CACHE_PAGING_MINOR = 34
_CONFIG_NAMES = {
    "load_incluster_config": "kubernetes.config.incluster_config",
    "ConfigException": "kubernetes.config.config_exception",
    "new_client_from_config": "kubernetes.config.kube_config",
    "list_kube_config_contexts": "kubernetes.config.kube_config",
    "load_kube_config": "kubernetes.config.kube_config",
    "KUBE_CONFIG_DEFAULT_LOCATION": "kubernetes.config.kube_config",
}
_LAZY_PACKAGES = ("kubernetes", "kubernetes.client", "kubernetes.client.api", "kubernetes.client.models",
                  "kubernetes.config")
_NAMES = {**{f"kubernetes.client.{k}": v for k, v in _CLIENT_NAMES.items()},
          **{f"kubernetes.config.{k}": v for k, v in _CONFIG_NAMES.items()}}


# Serialises turning a lazy package into the real one: the lister thread and the run's thread may
# both reach an unmapped name, and a second thread must wait for the first's __init__, not read a
# half-run package. Re-entrant: a package's __init__ imports its lazy subpackages.
_SWAP = threading.RLock()
_REALISING: set[str] = set()  # packages whose __init__ runs now (under _SWAP, so in this thread)
_MISSING = object()


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs only when a name is asked for that no submodule holds."""

    def __getattr__(self, name: str) -> Any:
        # Tools probe modules for dunders (__wrapped__, __file__ ...): only the package's own
        # metadata is worth running its __init__ for.
        if name.startswith("__") and name not in ("__version__", "__project__", "__all__"):
            raise AttributeError(name)
        where = _NAMES.get(f"{self.__name__}.{name}")
        if where is not None:
            found = _from_module(where, name)
            if found is not _MISSING:
                return found
        elif importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")
        # Anything else (or a client whose layout moved): become the real package, as a plain import makes it.
        _make_real(self)
        if type(self) is _LazyPackage:  # this thread is running its __init__, which has not set the name yet
            raise AttributeError(name)
        return getattr(self, name)


def _from_module(module: str, name: str) -> Any:
    """``module.name``, or _MISSING when a client release moved or renamed it (the plain import then serves it)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        log.debug("kubernetes client: %s.%s not where expected; importing it the plain way", module, name)
        return _MISSING


def _make_real(module: types.ModuleType) -> None:
    """Run a lazy package's ``__init__`` once, whichever thread asks first."""
    with _SWAP:
        if type(module) is not _LazyPackage or module.__name__ in _REALISING:
            return
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        _REALISING.add(module.__name__)
        try:
            spec.loader.exec_module(module)
        finally:
            _REALISING.discard(module.__name__)
        module.__class__ = types.ModuleType  # type: ignore[assignment]


def lean_kubernetes() -> None:
    """Register the client's packages as lazy ones, unless something already imported them.

    All or nothing: if any of them cannot be found where this release keeps it, nothing is
    registered and the client imports the plain way (every model, but working).
    """
    with _SWAP:
        added: list[str] = []
        for name in _LAZY_PACKAGES:
            if name in sys.modules:
                continue
            spec = importlib.util.find_spec(name)  # its parent is registered (lazy) by now: nothing runs
            if spec is None:
                log.debug("kubernetes client: no %s; importing the client the plain way", name)
                for gone in reversed(added):
                    del sys.modules[gone]
                return
            module = importlib.util.module_from_spec(spec)
            module.__class__ = _LazyPackage
            sys.modules[name] = module
            added.append(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)


class _Lean:
    """``client`` / ``config`` below: each name imports its own module on first use."""

    def __init__(self, names: dict[str, str], package: str) -> None:
        self._names = names
        self._package = package

    def __getattr__(self, name: str) -> Any:
        lean_kubernetes()
        value = _from_module(self._names.get(name, self._package), name)
        if value is _MISSING:
            value = getattr(importlib.import_module(self._package), name)
        setattr(self, name, value)  # later uses are a plain attribute read
        return value


if not TYPE_CHECKING:
    client = _Lean(_CLIENT_NAMES, "kubernetes.client")
    config = _Lean(_CONFIG_NAMES, "kubernetes.config")


def __getattr__(name: str) -> Any:
    """``from job.kube import ApiClient, CoreV1Api, CoordinationV1Api, ApiException, Configuration``."""
    if name in _CLIENT_NAMES:
        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class KubeError(Exception):
    """The API refused or failed a call; the message says what to fix."""


class KubeConfigError(KubeError):
    """No usable kubeconfig or context: a setting to fix (job/failure.py)."""

    cause = "kubeconfig"


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(f"{SA_DIR}/token")


def api_client(kubeconfig: str, context: str) -> client.ApiClient:
    """In-cluster config first (it re-reads the rotated token itself), then the kubeconfig."""
    if in_cluster() and not kubeconfig:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        api = client.ApiClient(cfg)
        api.user_agent = USER_AGENT  # audit logs and API priority and fairness can tell this job apart
        return api
    try:
        # persist_config=False: never write refreshed credentials back into the user's kubeconfig.
        api = config.new_client_from_config(
            config_file=kubeconfig or None, context=context or None, persist_config=False
        )
    except (config.ConfigException, OSError) as exc:
        raise KubeConfigError(f"no usable Kubernetes config: {exc};"
                              " pass --kubeconfig/--context, or run in a cluster") from None
    api.user_agent = USER_AGENT
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
    hint = ""
    if exc.status == 403:
        hint = "; the service account lacks this permission: apply the RBAC in cronjob.yaml"
    elif exc.status == 401:
        hint = "; the credentials were refused: check the kubeconfig or the service account token"
    return f"{what} failed: HTTP {exc.status}: {api_message(exc)}{hint}"


def api_message(exc: ApiException) -> str:
    """The API server's own message of an error answer; for a proxy's page, its reason and what it is."""
    try:
        obj = json.loads(exc.body)
    except (TypeError, ValueError):
        return (f"{exc.reason or 'no reason given'} ({describe_body(exc.body)}, not an answer of the "
                "Kubernetes API: a proxy or load balancer in the way?)")
    found = obj.get("message") if isinstance(obj, dict) else None
    return found if isinstance(found, str) and found else str(exc.reason or "no message")


@dataclass
class Listing:
    """What one run's list was, for the run and the next run's (filled in while listing).

    ``resource_version`` is the newest collection resourceVersion the run's lists were served at
    (one list cluster-wide, or one per --event-namespaces entry). The run records it in its
    summary and as the checkpoint's ``list_rv``; the next run passes that back as
    ``not_older_than``. ``complete`` is True only when every list was read to its end *and*
    each is known to be at least as new as the previous run's: only then may the ledger treat a
    uid missing from the list as deleted by the API server. A list the watch cache served from
    an older snapshot than the previous run saw would otherwise make the ledger forget events
    that still exist, and ship them again. resourceVersions are opaque to clients by contract;
    for the comparison they are read as the etcd revisions they are, and one that is not a
    number makes the list not complete.
    """

    not_older_than: str = ""  # the checkpoint's list_rv ("" = none recorded)
    resource_version: str = ""
    complete: bool = False
    requests: int = 0
    bytes: int = 0
    restarts: int = 0
    served_from: list[str] = field(default_factory=list)  # "etcd" or "cache", per list


class KubeForbidden(KubeError):
    """RBAC refused the list: a permissions setting to fix, so exit 2 like any configuration error."""

    cause = "forbidden"


def list_event_pages(api: client.ApiClient, *, page_size: int, field_selector: str, timeout: float,
                     decode: Callable[[bytes], Page], namespaces: Sequence[str] = (), list_from: str = "etcd",
                     listing: Listing | None = None) -> Iterator[Page]:
    """Yield each decoded page of core/v1 events, cluster-wide or from each of ``namespaces``, in order.

    A list is defined by its scope (``namespaces``) and ``field_selector`` as well: a uid that a
    different selector or namespace set leaves out was not deleted, so whoever compares lists
    across runs must compare like with like.

    A background thread fetches the next page while this one is processed (the socket wait
    releases the GIL); at most two pages wait, so memory stays a few pages plus the ledger.
    ``listing`` (if given) is filled in as the lists go; read it once the iterator is exhausted.
    """
    pages: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()
    info = listing if listing is not None else Listing()

    def fetch() -> None:
        try:
            for data in _all_pages(api, page_size, field_selector, timeout, namespaces, list_from, info):
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


def _hand_over(pages: queue.Queue[bytes | BaseException | None], item: bytes | BaseException | None,
               stop: threading.Event) -> bool:
    """Queue an item for the consumer; False once it has stopped reading (never block forever)."""
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.2)
            return True
        except queue.Full:
            pass
    return False


def _all_pages(api: client.ApiClient, page_size: int, field_selector: str, timeout: float,
               namespaces: Sequence[str], list_from: str, info: Listing) -> Iterator[bytes]:
    core = client.CoreV1Api(api)
    if list_from == "cache" and not _cache_pages(api, timeout):
        list_from = "etcd"
    complete = True
    newest = -1
    scopes: list[str | None] = [*namespaces] or [None]  # None: one cluster-wide list
    for ns in scopes:
        call = functools.partial(core.list_namespaced_event, ns) if ns else core.list_event_for_all_namespaces
        rv, fresh = yield from _raw_pages(api, call, ns, page_size, field_selector, timeout, list_from, info)
        complete = complete and fresh
        try:
            newest = max(newest, int(rv))
        except ValueError:
            complete = False
    info.resource_version = str(newest) if newest >= 0 else ""
    info.complete = complete


def _raw_pages(api: client.ApiClient, call: Callable[..., Any], namespace: str | None, page_size: int,
               field_selector: str, timeout: float, list_from: str,
               info: Listing) -> Generator[bytes, None, tuple[str, bool]]:
    """The bytes of each page of one list; returns (its resourceVersion, whether it is known fresh).

    On 410 Expired the list starts over: the ledger makes re-reading harmless, while the
    inconsistent-resume token the server offers could skip items.

    ``list_from="cache"`` asks the API server's watch cache instead of etcd (docs/kubernetes.md,
    docs/performance.md): the first request carries resourceVersion=<the previous run's> with
    resourceVersionMatch=NotOlderThan (or resourceVersion=0, "any", when no previous run
    recorded one), and continue tokens after it. Servers before 1.33 (or with the
    ListFromCacheSnapshot gate off) ignore limit there and answer in one page; 1.34 pages from
    cache snapshots. A server that cannot serve NotOlderThan from its cache in time answers 504
    ResourceVersionTooLarge: this list then falls back to etcd's most recent data.
    """
    where = f'in namespace "{namespace}"' if namespace else "cluster-wide"
    token, rv, source, restarts = "", "", list_from, 0
    seen: set[str] = set()
    while True:
        kw: dict[str, Any] = {"resource_version": info.not_older_than or "0"} if not token and source == "cache" else {}
        if kw and info.not_older_than:
            kw["resource_version_match"] = "NotOlderThan"
        try:
            info.requests += 1
            resp = call(limit=page_size, _continue=token or None, field_selector=field_selector or None,
                        _preload_content=False, _request_timeout=timeout, **kw)
        except client.ApiException as exc:
            if exc.status == 410 and restarts < 5:
                restarts, info.restarts = restarts + 1, info.restarts + 1
                log.warning("the event list %s expired mid-way (410); listing again from the start", where)
                token, rv = "", ""
                seen.clear()
                continue
            if exc.status == 504 and source == "cache" and not token:
                log.warning("the API server's watch cache is behind the previous run's list (%s); "
                            "listing %s from etcd instead", api_message(exc), where)
                source = "etcd"
                continue
            raise _list_failed(exc, namespace) from None
        except HTTPError as exc:
            raise KubeError(f"cannot reach the Kubernetes API at {api.configuration.host}:"
                            f" {type(exc).__name__}") from None
        data = resp.data
        resp.release_conn()  # unread, a raw response keeps its connection (and buffers) out of the pool
        info.bytes += len(data)
        meta = _list_meta(data)
        if not token:  # the first page names the snapshot every later page of this list is read at
            rv = (meta.resourceVersion if meta else None) or ""
        yield data
        if token:
            seen.add(token)
        token = (meta.continue_ if meta else None) or ""
        if token in seen:
            raise KubeError(f"the API server returned the same continue token twice while listing events {where}, "
                            "so the list would never end; this is a server or proxy fault: check what sits "
                            "between the job and kube-apiserver")
        if not token:
            info.served_from.append(source)
            return rv, _fresh(rv, source, where, info)


def _fresh(rv: str, source: str, where: str, info: Listing) -> bool:
    """Whether a list is known to be at least as new as the previous run's (etcd's always is)."""
    if source != "cache":
        return True
    fresh = _not_older(rv, info.not_older_than)
    if not fresh and info.not_older_than:
        log.warning("the watch cache served the events %s at resourceVersion %s, older than the previous "
                    "run's %s; this run ships what it lists, but does not treat the list as complete",
                    where, rv or "(none)", info.not_older_than or "(none recorded)")
    return fresh


def _list_failed(exc: ApiException, namespace: str | None) -> KubeError:
    if exc.status == 403:
        return KubeForbidden(_forbidden(exc, namespace))
    return KubeError(explain(exc, f'listing events in namespace "{namespace}"' if namespace else "listing events"))


def _cache_pages(api: client.ApiClient, timeout: float) -> bool:
    """Whether the server is 1.34+, whose watch cache pages lists. Before that it ignores limit
    and answers with every event in one response: at 100k events a 120 MB body, and some 350 MB of
    memory to decode it, which would get the pod OOM-killed run after run. Not worth the saving."""
    try:
        resp = client.VersionApi(api).get_code(_preload_content=False, _request_timeout=timeout)
        info = json.loads(resp.data)
        major, minor = int(info["major"]), int("".join(c for c in str(info["minor"]) if c.isdigit()) or 0)
    except (client.ApiException, HTTPError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot tell the API server's version (%s); listing from etcd, not the watch cache",
                    type(exc).__name__)
        return False
    if (major, minor) >= (1, CACHE_PAGING_MINOR):
        return True
    log.warning("--list-from cache needs Kubernetes 1.%d or later (the watch cache of %d.%d ignores limit "
                "and would send every event in one response); listing from etcd", CACHE_PAGING_MINOR, major, minor)
    return False


def _not_older(rv: str, previous: str) -> bool:
    try:
        return bool(previous) and int(rv) >= int(previous)
    except ValueError:
        return False


def _forbidden(exc: Any, namespace: str | None) -> str:
    if namespace:
        fix = (f'grant list on events in namespace "{namespace}" (a Role and RoleBinding, see the README\'s '
               "security section) or leave it out of --event-namespaces")
    else:
        fix = ("apply the ClusterRole that grants list on events (deploy/base), or list chosen namespaces "
               "with --event-namespaces a,b,c and a Role in each")
    return f"listing events failed: HTTP 403: {api_message(exc)}; {fix}"


class _ListMeta(msgspec.Struct):
    continue_: str | None = msgspec.field(default=None, name="continue")
    resourceVersion: str | None = None


class _Envelope(msgspec.Struct):
    metadata: _ListMeta | None = None


_envelope = msgspec.json.Decoder(_Envelope)  # skips the items: only the list's metadata is needed here


def _list_meta(data: bytes) -> _ListMeta | None:
    """The list's metadata, read from the head of the page when it can be.

    Even skipping them, a JSON decoder must scan all ~600 KB of a page's items: 0.6 ms a page, about
    0.12 CPU-s per run at 100k events, in the lister thread that competes for the GIL with the run.
    kube-apiserver writes an EventList as Go marshals the struct, kind, apiVersion, metadata, then
    items, so the metadata is in the first hundred bytes. Anything else (a proxy that reorders
    keys, a token holding the text) makes the short read fail or find no metadata, and the whole
    page is decoded as before: a wrong guess costs time, never a page.
    """
    cut = data.find(b',"items":')
    if cut > 0:
        try:
            meta = _envelope.decode(data[:cut] + b"}").metadata
        except msgspec.DecodeError:
            meta = None
        if meta is not None:
            return meta
    return _envelope.decode(data).metadata
