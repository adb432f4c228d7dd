"""The dashboard and Swagger UI through API Management: a loopback proxy stands in for the gateway.

The proxy does what infra/bicep/modules/api-management.bicep deploys: under /longrun it serves the static
paths (/api/ui, /api/ui/..., /api/docs) without a subscription (the subscription-free page APIs) and asks
every other path for the subscription key in `Ocp-Apim-Subscription-Key` (or the `subscription-key` query
parameter, API Management's default names), answering 401 otherwise as the gateway does; it forwards to the
app with the function key of its own (the backend's credentials). The subscription key is not a function
key, so the app itself would refuse it: a page that sent it as `x-functions-key` would never get past the
gateway. The devhost runs with --enforce-auth and API_KEY_HEADER as main.bicep sets it behind API Management.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.api.probes import FUNCTION_KEY
from tests.web.pages import assert_not_blank, enter_key, try_it_out, ui, wait_for_status

pytestmark = pytest.mark.slow

SUBSCRIPTION_KEY = "apim-subscription-key-not-a-function-key"
API_PATH = "/longrun"
STATIC = re.compile(r"^/api/(ui|ui/.*|docs)$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class Seen:
    """One request the gateway received: its path (below API_PATH), how it carried a key, what it answered."""

    path: str
    subscription_header: str | None
    subscription_query: str | None
    function_key_header: str | None
    status: int = 0


@dataclass
class Gateway:
    """The stand-in gateway on loopback, forwarding to a devhost."""

    backend_port: int
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{API_PATH}"


def make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 and no Content-Length on the way back: the body ends when the connection closes, so an
        # event stream reaches the browser as the app writes it (buffer-response="false" in the policy).
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            query = parse_qsl(split.query, keep_blank_values=True)
            entry = Seen(
                path=split.path.removeprefix(API_PATH),
                subscription_header=self.headers.get("Ocp-Apim-Subscription-Key"),
                subscription_query=dict(query).get("subscription-key"),
                function_key_header=self.headers.get("x-functions-key"),
            )
            gateway.seen.append(entry)
            if not split.path.startswith(API_PATH + "/"):
                entry.status = 404
                return self._answer(404, {"statusCode": 404, "message": "Resource not found"})
            if not STATIC.match(entry.path) or self.command != "GET":
                key = entry.subscription_header or entry.subscription_query
                if key != SUBSCRIPTION_KEY:
                    # API Management's own answer to a missing or wrong key.
                    entry.status = 401
                    return self._answer(
                        401, {"statusCode": 401, "message": "Access denied due to missing subscription key."}
                    )
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            # The backend's credentials: the gateway's function key, whatever the caller sent.
            headers = {k: v for k, v in headers.items() if k.lower() != "x-functions-key"}
            headers["x-functions-key"] = FUNCTION_KEY
            headers["X-Client-Id"] = "apim-subscription"
            forwarded = urlunsplit(("", "", entry.path, urlencode(query), ""))
            connection = http.client.HTTPConnection("127.0.0.1", gateway.backend_port, timeout=60)
            try:
                connection.request(self.command, forwarded, body=body, headers=headers)
                response = connection.getresponse()
                entry.status = response.status
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.end_headers()
                while chunk := response.read1(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away (an event stream closed by the page)
            finally:
                connection.close()

        do_GET = _handle
        do_POST = _handle
        do_DELETE = _handle
        do_PUT = _handle

    return Handler


@pytest.fixture
def behind_gateway(devhost_factory) -> Iterator[tuple[Gateway, object]]:
    gateway = Gateway(backend_port=0)
    gateway.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(gateway))
    gateway.server.daemon_threads = True
    thread = threading.Thread(target=gateway.server.serve_forever, daemon=True)
    thread.start()
    host = devhost_factory(
        env={"API_KEY_HEADER": "Ocp-Apim-Subscription-Key", "PUBLIC_BASE_URL": gateway.base_url},
        args=["--enforce-auth"],
    )
    gateway.backend_port = host.port
    try:
        yield gateway, host
    finally:
        gateway.server.shutdown()
        gateway.server.server_close()


def test_through_the_gateway_the_pages_load_without_a_key_and_send_the_typed_key_as_a_subscription_key(
    behind_gateway, open_page, browser
):
    gateway, host = behind_gateway
    submitted = host.client.post(
        "/api/jobs",
        json={"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 0.5}},
        headers={"x-functions-key": FUNCTION_KEY},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    # The first API call goes without a key: the gateway's 401 is the one console error expected.
    watched = open_page(ui(gateway, "#/jobs"), allow=["status of 401"])
    page = watched.page
    assert page.locator('meta[name="longrun-key-header"]').get_attribute("content") == "Ocp-Apim-Subscription-Key"
    assert enter_key(page, SUBSCRIPTION_KEY) == "Ocp-Apim-Subscription-Key"
    # The page and its scripts came through the subscription-free paths, with no key at all.
    static = [s for s in gateway.seen if STATIC.match(s.path)]
    assert any(s.path == "/api/ui" for s in static) and any(s.path == "/api/ui/app.js" for s in static)
    assert all(s.status == 200 and s.subscription_header is None for s in static), static
    # ...and the page's links resolve under the gateway's API path (PUBLIC_BASE_URL).
    assert page.evaluate("document.baseURI").startswith(gateway.base_url + "/api/ui")

    page.locator(f'tr[data-job="{job_id}"]').wait_for()
    data = [s for s in gateway.seen if not STATIC.match(s.path)]
    keyed = [s for s in data if s.subscription_header or s.subscription_query]
    assert keyed and all(s.subscription_header == SUBSCRIPTION_KEY for s in keyed if s.subscription_query is None)
    # The key the user typed never goes out as a function key.
    assert all(s.function_key_header is None for s in gateway.seen), gateway.seen

    # The job page follows the job live: EventSource carries the key as ?subscription-key=.
    page.goto(ui(gateway, f"#/jobs/{job_id}"))
    wait_for_status(page, "COMPLETED")
    streams = [s for s in gateway.seen if s.path == f"/api/jobs/{job_id}/events"]
    if streams:  # the job may finish before the page opens its stream; then polling alone showed it
        assert all(s.subscription_query == SUBSCRIPTION_KEY and s.status == 200 for s in streams), streams
    assert_not_blank(browser, page, "through-gateway-job")

    # Swagger UI in the same tab: the document and "Try it out" go with the subscription key too.
    before = len(gateway.seen)
    page.goto(f"{gateway.base_url}/api/docs")
    assert try_it_out(page, "listJobs") == "200"
    later = gateway.seen[before:]
    assert any(s.path == "/api/docs" and s.status == 200 and s.subscription_header is None for s in later)
    listed = [s for s in later if s.path == "/api/jobs"]
    assert listed and all(s.subscription_header == SUBSCRIPTION_KEY and s.status == 200 for s in listed), listed
    assert all("401" in e for e in watched.errors), watched.errors


def test_without_the_setting_the_pages_still_send_a_function_key(devhost):
    # Local devhost behaviour is unchanged: the page names x-functions-key.
    page = devhost.client.get("/api/ui")
    assert '<meta name="longrun-key-header" content="x-functions-key">' in page.text
    docs = devhost.client.get("/api/docs")
    assert '<meta name="longrun-key-header" content="x-functions-key">' in docs.text
