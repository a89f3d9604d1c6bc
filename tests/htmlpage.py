"""A web server that answers every request with an HTML page, over real HTTP on 127.0.0.1.

It is what a job meets when its kubeconfig points at an ingress, a login proxy or a load balancer's
error page instead of the API server: a status (502, 404, even 200) and a whole HTML document.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title>"
        b"<style>body{font-family:sans-serif}</style></head>\n<body><center><h1>502 Bad Gateway</h1></center>"
        b"<hr><center>nginx</center>\n" + b"<!-- padding to look like a real error page -->\n" * 40
        + b"</body></html>\n")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a page it did not want is not news


class HtmlPage:
    def __init__(self, status: int = 502, body: bytes = PAGE) -> None:
        self.status = status
        self.body = body
        self.requests: list[tuple[str, str]] = []
        page = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                page.requests.append((self.command, self.path))
                self.send_response(page.status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                self.wfile.write(page.body)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> HtmlPage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: str) -> str:
        import json

        with open(path, "w", encoding="utf-8") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "web",
                       "clusters": [{"name": "web", "cluster": {"server": self.url}}],
                       "users": [{"name": "web", "user": {"token": "web-token-123"}}],
                       "contexts": [{"name": "web", "context": {"cluster": "web", "user": "web"}}]}, f)
        return path
