"""HTTP streams as the host and the Python worker serve them (issue #11, "HTTP streams").

Sources: Azure/azure-functions-python-worker `azure_functions_worker/http_v2.py` (`initialize_http_server`:
the extension's WebServer on a loopback port, announced as the `HttpUri` capability; the catch-all route
waits for the invocation's answer by `x-ms-invocation-id`) and `dispatcher.py` (`_handle__invocation_request`:
the FastAPI request replaces the trigger argument, route values synced from the host); Azure/azure-functions-
host `DefaultHttpProxyService.StartForwarding` (YARP forwards the request, streaming both ways, through
`RetryProxyHandler`), `GrpcWorkerChannel.InvokeResponse` (`EnsureSuccessfulForwardingAsync`: the invocation
ends with the proxied response) and `HttpRequestBodySizeMiddleware` (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT sets
Kestrel's MaxRequestBodySize, counted while the body is read, chunked bodies too).
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azurefunctions.extensions.http.fastapi import Request, Response

from devhost import streams
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import wait_status, wait_until

STREAM_APP = Path(__file__).parent / "stream_app"
KEY = "stream-key"


def warm(host: DevHost) -> DevHost:
    """Wait until the worker has imported the app and serves (the host answers before that)."""
    wait_until(lambda: host.client.get("/api/sync").status_code == 200, timeout=60)
    return host


@pytest.fixture
def stream_factory(devhost_factory: Callable[..., DevHost]) -> Callable[..., DevHost]:
    def start(env: dict[str, str] | None = None, args: list[str] | None = None, wait: bool = True) -> DevHost:
        host = devhost_factory(env=env, args=["--app-dir", str(STREAM_APP), *(args or [])], wait=wait)
        return warm(host) if wait else host

    return start


@pytest.fixture(scope="module")
def stream_host(azurite: Azurite) -> Iterator[DevHost]:
    host = DevHost(azurite.connection_string, args=["--app-dir", str(STREAM_APP), "--enforce-auth"]).start()
    try:
        yield warm(host)
    finally:
        host.stop(timeout=20)


def events(host: DevHost, params: dict[str, str], limit: int | None = None) -> list[tuple[float, bytes]]:
    """(arrival time, event) for each SSE event, as the client reads them off the wire."""
    arrivals: list[tuple[float, bytes]] = []
    buffer = b""
    with host.client.stream("GET", "/api/ticks", params=params, headers={"x-functions-key": KEY}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                arrivals.append((time.time(), event))  # wall clock: comparable with the app's `data` stamp
            if limit is not None and len(arrivals) >= limit:
                break
    return arrivals


def test_a_streamed_response_reaches_the_client_event_by_event(stream_host: DevHost) -> None:
    """Nothing buffers the stream: the first event arrives long before the last is written."""
    started = time.time()
    arrivals = events(stream_host, {"count": "5", "interval": "0.4", "code": KEY})
    assert [event.split(b"\n")[0] for _, event in arrivals] == [f"id: {n}".encode() for n in range(1, 6)]
    assert arrivals[0][0] - started < 1.2, "the first event waited for the others"
    # Each event reaches the client before the app writes the event two after it (0.8 s later, by the app's
    # own stamps): gaps between arrivals would also measure the client's pauses on a busy machine.
    sent = [float(event.split(b"data: ")[1]) for _, event in arrivals]
    arrived = [at for at, _ in arrivals]
    assert all(arrived[n] < sent[n + 2] for n in range(3)), list(zip(arrived, sent, strict=True))


def test_the_client_leaving_cancels_the_stream_in_the_worker(stream_host: DevHost) -> None:
    """The client's disconnect ends the proxied request; Starlette then cancels the response's stream."""
    arrivals = events(stream_host, {"count": "1000", "interval": "0.05"}, limit=3)
    assert len(arrivals) == 3
    wait_until(lambda: "ticks: cancelled after" in stream_host.logs(), timeout=10)
    line = next(line for line in stream_host.logs().splitlines() if "ticks: cancelled after" in line)
    assert int(line.split("after ")[1].split()[0]) < 200, line
    # The invocation ends with its response, as a failed forwarding (EnsureSuccessfulForwardingAsync).
    wait_until(lambda: "Executed 'Functions.ticks' (Failed" in stream_host.logs(), timeout=10)


def test_function_keys_are_enforced_before_the_request_is_proxied(stream_host: DevHost) -> None:
    anonymous = stream_host.client.get("/api/ticks", params={"count": "1"})
    assert anonymous.status_code == 401
    wrong = stream_host.client.get("/api/ticks", params={"count": "1"}, headers={"x-functions-key": "nope"})
    assert wrong.status_code == 401
    keyed = stream_host.client.get("/api/ticks", params={"count": "1", "code": KEY})
    assert keyed.status_code == 200 and keyed.text.startswith("id: 1")


def test_route_values_query_and_forwarded_host_reach_the_function(stream_host: DevHost) -> None:
    """The worker copies the host's route values into the request; the rest travels with the proxied request."""
    response = stream_host.client.get("/api/items/42", params={"q": "x y"}, headers={"X-Forwarded-Host": "evil"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["path_params"] == {"id": "42"}
    assert body["query"] == "q=x+y" and body["path"] == "/api/items/42"
    # YARP sets X-Forwarded-Host from the request's Host, replacing what a client sent.
    assert body["forwarded_host"] == f"127.0.0.1:{stream_host.port}"
    assert body["invocation_header"] is True
    # Hop-by-hop: never the client's, and never "close" (SocketsHttpHandler does not send it).
    assert body["connection"] != "close"
    # Route constraints and methods are the host's, as without streams.
    assert stream_host.client.get("/api/items/abc").status_code == 404
    assert stream_host.client.post("/api/items/42").status_code == 404


def test_a_synchronous_function_and_a_raising_one(stream_host: DevHost) -> None:
    """A sync function runs on the thread pool with the same request; a raising one is the server's 500."""
    assert stream_host.client.get("/api/sync", params={"q": "ok"}).text == "sync ok"
    response = stream_host.client.get("/api/boom")
    assert response.status_code == 500
    wait_until(lambda: "Executed 'Functions.boom' (Failed" in stream_host.logs(), timeout=10)


def test_the_durable_client_binding_still_works(stream_host: DevHost) -> None:
    response = stream_host.client.post("/api/start/hello", json="streams")
    assert response.status_code == 202, response.text
    status = wait_status(stream_host, response.json()["id"], code="stream-system-key")
    assert status["runtimeStatus"] == "Completed" and status["output"] == "hello streams"


def test_a_chunked_upload_reaches_the_function_as_it_is_sent(stream_host: DevHost) -> None:
    """Unlike the classic model (body only with Content-Length > 0), the host streams a chunked body."""

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 4096

    response = stream_host.client.post("/api/upload", content=chunks())
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == 8 * 4096


def test_a_content_coded_body_reaches_the_function_as_it_was_sent(stream_host: DevHost) -> None:
    """The host decodes no request body: Azure/azure-functions-host has no request decompression, and
    DefaultHttpProxyService (src/WebJobs.Script.Grpc/Server) forwards the bytes. So the function reads the
    gzip bytes, not what they inflate to, and bytes that are no gzip at all are its to refuse, not the host's
    (devhost's web server used to inflate bodies, and answered 500 to a body that would not inflate)."""
    plain = b"x" * 100_000
    packed = gzip.compress(plain)
    coded = {"Content-Encoding": "gzip"}
    sent = stream_host.client.post("/api/upload", content=packed, headers=coded)
    assert sent.status_code == 200, sent.text
    assert sent.json()["bytes"] == len(packed) < len(plain)
    not_gzip = stream_host.client.post("/api/upload", content=b"not gzip at all", headers=coded)
    assert not_gzip.status_code == 200, not_gzip.text
    assert not_gzip.json()["bytes"] == len(b"not gzip at all")


def test_an_answer_given_before_the_body_is_sent_reaches_the_client(stream_host: DevHost) -> None:
    """A function that answers early (its own 413) while the client still sends: the client gets that answer,
    every time. A worker told "Connection: close" would shut its socket on the unread body and the reset
    would eat the answer (the 502 CI saw); YARP's pooled SocketsHttpHandler never asks it to."""

    def endless() -> Iterator[bytes]:
        for _ in range(4_000):  # 16 MB
            yield b"y" * 4096

    for _ in range(5):
        response = stream_host.client.post("/api/refuse", content=endless())
        assert response.status_code == 413, response.text
        assert response.json() == {"refused": True}


def test_connections_to_the_worker_are_pooled_and_an_early_answer_spoils_none(stream_host: DevHost) -> None:
    """YARP's SocketsHttpHandler keeps its connections to the worker's web server: requests in a row come
    over one connection (the worker sees one peer port). An early answer to a large body must not leave a
    half-sent request on a pooled connection: each upload after one is read whole and alone."""
    ports = {stream_host.client.get("/api/items/7").json()["peer_port"] for _ in range(5)}
    assert len(ports) == 1, ports

    for size in (10, 60_000, 70_000, 2_000_000):  # small (sent whole, pooled) and large (streamed) bodies
        refused = stream_host.client.post("/api/refuse", content=b"r" * size)
        assert refused.status_code == 413, refused.text
        for body in (b"a" * 1000, b"b" * 50_000):
            uploaded = stream_host.client.post("/api/upload", content=body)
            assert uploaded.status_code == 200, uploaded.text
            assert uploaded.json()["bytes"] == len(body)
    assert stream_host.client.get("/api/items/8").json()["path_params"] == {"id": "8"}


def test_the_body_limit_holds_for_declared_and_chunked_bodies(stream_factory: Any) -> None:
    """FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: a declared length over it is 413 before the function runs; a
    chunked body is counted as it is forwarded and cut with 413 when it goes over."""
    host = stream_factory(env={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "10000"})
    declared = host.client.post("/api/upload", content=b"x" * 10001)
    assert declared.status_code == 413
    assert "Executed 'Functions.upload'" not in host.logs()
    within = host.client.post("/api/upload", content=b"x" * 10000)
    assert within.status_code == 200 and within.json()["bytes"] == 10000

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 1000):
            yield b"y" * 1000

    assert host.client.post("/api/upload", content=chunks(9000)).json()["bytes"] == 9000
    over = host.client.post("/api/upload", content=chunks(50_000))
    assert over.status_code == 413
    assert "upload: read 50000 bytes" not in host.logs()


def test_the_front_end_limit_cuts_a_stream_and_a_late_answer(stream_factory: Any) -> None:
    """230 s (1 s here) is the front end's limit for a response: devhost cuts a stream still sending at
    that point (stricter than a gateway that only minds idle time), and answers 500 when no response has
    started, while the function runs on."""
    host = stream_factory(env={"DEVHOST_HTTP_RESPONSE_LIMIT": "1"})
    started = time.monotonic()
    received: list[bytes] = []
    with pytest.raises(httpx.HTTPError):
        with host.client.stream("GET", "/api/ticks", params={"count": "50", "interval": "0.1", "code": KEY}) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received.append(chunk)
    assert time.monotonic() - started < 3
    assert 1 <= sum(chunk.count(b"\n\n") for chunk in received) < 50
    late = host.client.get("/api/slow", params={"seconds": "3"})
    assert late.status_code == 500 and "The request timed out" in late.text
    # The function runs on to its end; its invocation then fails, as the host's does when the forwarding
    # was cancelled under it (EnsureSuccessfulForwardingAsync).
    wait_until(lambda: "Executed 'Functions.slow' (Failed" in host.logs(), timeout=10)
    line = next(line for line in host.logs().splitlines() if "Executed 'Functions.slow'" in line)
    assert int(line.split("Duration=")[1].split("ms")[0]) >= 2900, line


def test_streams_without_init_indexing_refuse_to_start(stream_factory: Any) -> None:
    """The worker starts its web server only with PYTHON_ENABLE_INIT_INDEXING=1 but treats every HTTP
    function as a stream once the extension is imported: devhost refuses the app rather than hang."""
    host = stream_factory(env={"PYTHON_ENABLE_INIT_INDEXING": "0"}, wait=False)
    assert host.process is not None
    assert host.process.wait(60) == 2
    assert "PYTHON_ENABLE_INIT_INDEXING" in host.logs()


def test_with_streams_an_http_function_must_take_and_answer_the_extension_types() -> None:
    """`bindings/meta.py`: with streams on, `_check_http_input_type_annotation` and `_check_http_output_type_
    annotation` accept only the extension's request and response types (a FunctionLoadError otherwise)."""

    def classic(req: func.HttpRequest) -> func.HttpResponse:
        raise NotImplementedError

    def half(req: Request) -> func.HttpResponse:
        raise NotImplementedError

    def fine(req: Request) -> Response:
        raise NotImplementedError

    with pytest.raises(streams.StreamsConfigError, match="annotation"):
        streams.check_http_function("classic", classic, "req", True)
    with pytest.raises(streams.StreamsConfigError, match="return annotation"):
        streams.check_http_function("half", half, "req", True)
    streams.check_http_function("fine", fine, "req", True)
