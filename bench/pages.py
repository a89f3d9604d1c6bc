"""The benchmark's floor servers: pages serialised once, up front, and a Loki that discards.

The API test server (tests/kubeapi.py) builds every page on request: MVCC lookups, selectors and
a join of the stored items, in Python, under one GIL with whatever else the benchmark runs. A
reference measured against it measures that server. ``PageServer`` instead answers each event
list request with bytes it prepared before the clock started (the very pages the API test server
returned, continue tokens included, looked up by the request's ``continue``), so what is left is
the client's cost: HTTP and parsing. Every other request (the Lease) is relayed to the API test
server it was built from, over one keep-alive connection.

``DiscardSink`` reads each push body and answers 204, as Loki does, storing nothing: the job's
cost with a Loki that costs nothing.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import urllib3


def list_pages(base_url: str, limit: int, query: str = "", *, pool: urllib3.PoolManager | None = None,
               headers: dict[str, str] | None = None) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Each page of a cluster-wide event list as (the continue token that asked for it, its bytes, the
    page parsed): the benchmark's one way of paging through the API, following continue tokens."""
    pool = pool or urllib3.PoolManager()
    token = ""
    while True:
        fields: dict[str, Any] = {"limit": limit, **({"continue": token} if token else {})}
        data = pool.request("GET", f"{base_url}/api/v1/events{query}", fields=fields, headers=headers).data
        doc = json.loads(data)
        yield token, data, doc
        token = doc["metadata"].get("continue") or ""
        if not token:
            return


def fetch_pages(base_url: str, limit: int, query: str = "") -> dict[str, bytes]:
    """Every page of a cluster-wide event list, keyed by the continue token that asks for it."""
    return {token: data for token, data, _ in list_pages(base_url, limit, query)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _Base:
    """A threaded HTTP/1.1 server on 127.0.0.1 with a port chosen by the kernel."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.first_request: float | None = None  # perf_counter() of the first request since reset
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def parse_request(self) -> bool:
        owner = self.server.owner  # type: ignore[attr-defined]
        if owner.first_request is None:
            owner.first_request = time.perf_counter()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""


class _PageHandler(_Quiet):
    def do_GET(self) -> None:
        owner: PageServer = self.server.owner  # type: ignore[attr-defined]
        owner.requests += 1
        parts = urlsplit(self.path)
        if parts.path == "/api/v1/events":
            token = (parse_qs(parts.query).get("continue") or [""])[0]
            page = owner.pages.get(token)
            if page is None:
                self.reply(410, b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}')
                return
            self.reply(200, page)
            return
        self.relay()

    def do_PUT(self) -> None:  # the Lease and the ConfigMap: reads, merge PATCHes, any other write
        self.server.owner.requests += 1  # type: ignore[attr-defined]
        self.relay()

    do_PATCH = do_POST = do_DELETE = do_PUT

    def relay(self) -> None:
        owner: PageServer = self.server.owner  # type: ignore[attr-defined]
        code, body = owner.relay(self.command, self.path, self.body(), dict(self.headers))
        self.reply(code, body)


class PageServer(_Base):
    """Serves ``pages`` (from fetch_pages) for /api/v1/events; relays anything else to ``upstream``."""

    handler = _PageHandler

    def __init__(self, pages: dict[str, bytes], upstream: str) -> None:
        super().__init__()
        self.pages = pages
        self._upstream = urlsplit(upstream)
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None

    def relay(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        with self._lock:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._upstream.hostname or "", self._upstream.port)
            self._conn.request(method, path, body=body or None, headers=keep)
            resp = self._conn.getresponse()
            return resp.status, resp.read()


class _SinkHandler(_Quiet):
    def do_POST(self) -> None:
        owner: DiscardSink = self.server.owner  # type: ignore[attr-defined]
        data = self.body()
        owner.requests += 1
        owner.bytes_received += len(data)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


class DiscardSink(_Base):
    """A Loki push endpoint that accepts everything and keeps nothing."""

    handler = _SinkHandler

    def __init__(self) -> None:
        super().__init__()
        self.bytes_received = 0
