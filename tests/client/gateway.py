"""A loopback gateway in front of a devhost: serves the API under a path prefix, and on command answers
503 + Retry-After or drops the connection before forwarding, as an overloaded or flaky gateway would.

Like bench/chaos's fault proxy it sits on loopback between the client and the real host; unlike it, it
speaks HTTP, so that it can fail single requests and record what the client sent.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Fault = Literal["503", "drop", "lose"]
"""503: answer 503 + Retry-After; drop: close the connection unanswered; lose: forward the request, then close
the connection instead of passing the answer on (the request took effect, the client never heard)."""


@dataclass
class Seen:
    """One request the gateway received, and what it did with it."""

    method: str
    path: str
    headers: dict[str, str]
    answered: str  # "503", "drop" or "forwarded"


@dataclass
class Gateway:
    """Forwards http://127.0.0.1:<port><prefix>/api/... to the upstream's /api/..."""

    upstream: str = ""
    prefix: str = ""
    retry_after: str = "1"
    relative_locations: bool = False
    """Pass Location headers on as paths only (RFC 9110 allows relative references)."""
    seen: list[Seen] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL, prefix included."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def fail_next(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order, before forwarding again."""
        with self._lock:
            self._faults.extend(faults)

    def requests(self, method: str, path_part: str) -> list[Seen]:
        """The requests seen with this method whose path contains `path_part`."""
        return [s for s in self.seen if s.method == method and path_part in s.path]

    def start(self) -> Gateway:
        """Listen on a free loopback port, in a daemon thread."""
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with gateway._lock:
                    fault = gateway._faults.pop(0) if gateway._faults else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                gateway.seen.append(Seen(self.command, self.path, headers, fault or "forwarded"))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()  # no status line at all: the client sees the connection end
                    return
                if fault == "503":
                    payload = b'{"type": "about:blank", "title": "Service Unavailable", "status": 503}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/problem+json")
                    self.send_header("Retry-After", gateway.retry_after)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if not self.path.startswith(gateway.prefix + "/"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                forwarded = {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")}
                # The upstream is read per request: a test may start the gateway before the host it fronts.
                response = httpx.request(
                    self.command, gateway.upstream + self.path[len(gateway.prefix) :],
                    headers=forwarded, content=body, timeout=60.0,
                )  # fmt: skip
                if fault == "lose":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(response.status_code)
                for name, value in response.headers.items():
                    if name.lower() in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        continue
                    if name.lower() == "location" and gateway.relative_locations:
                        value = httpx.URL(value).raw_path.decode()
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
