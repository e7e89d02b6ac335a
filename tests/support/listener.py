"""A tiny HTTP server on loopback that serves fixed responses and records every request it gets.

Used as a JWKS endpoint and as the target of ``jku`` / ``x5u`` headers that must never be fetched. It runs
in a thread of the test process, so both the test and a server subprocess can reach it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


class Listener:
    """``with Listener() as listener:`` serves ``listener.routes[path]`` (404 otherwise) on ``listener.url``."""

    def __init__(self) -> None:
        self.routes: dict[str, Response] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                with listener._lock:
                    listener.requests.append(Recorded(self.command, self.path, dict(self.headers.items())))
                    response = listener.routes.get(self.path.split("?")[0], Response(404, b"not found"))
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = _serve
            do_POST = _serve
            do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="listener", daemon=True)

    def serve_json(self, path: str, document: Any) -> None:
        body = json.dumps(document).encode()
        self.routes[path] = Response(200, body, {"Content-Type": "application/json"})

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path.split("?")[0] == path)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
