"""A real webhook receiver on loopback (http.server in a thread) that verifies every request with standardwebhooks.

Its answers are scripted: a list of statuses taken one per request (the last one repeats), changeable
while it runs. It keeps every request (headers, body, whether the signature verified) for the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TEST_SECRET = "whsec_" + "bG9uZ3J1bi10ZXN0LXdlYmhvb2stc2VjcmV0LTMyYnl0ZXM="  # base64 of a test-only string


@dataclass
class Delivery:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int
    at: float
    path: str = ""

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """The receiver; `statuses` are answered in order, the last one for every request after."""

    secret: str = TEST_SECRET
    statuses: list[int] = field(default_factory=lambda: [200])
    retry_after: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on (127.0.0.1)."""
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        """Its URL."""
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, statuses: list[int]) -> None:
        """Answer these statuses from now on."""
        with self.lock:
            self.statuses = list(statuses)

    def count(self) -> int:
        """Requests so far."""
        with self.lock:
            return len(self.deliveries)

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 60.0) -> list[Delivery]:
        """Wait until predicate(deliveries) holds; returns a copy of the deliveries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                snapshot = list(self.deliveries)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        raise TimeoutError(f"receiver: condition not met after {timeout} s; got {len(snapshot)} requests")

    def start(self) -> Receiver:
        """Listen on a free loopback port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                with receiver.lock:
                    index = len(receiver.deliveries)
                    status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                    receiver.deliveries.append(Delivery(headers, body, verified, status, time.monotonic(), self.path))
                self.send_response(status)
                if receiver.retry_after is not None and status in (429, 503):
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
