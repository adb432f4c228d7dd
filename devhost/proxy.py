"""The host's side of HTTP streams: proxy a request to a worker's web server and stream the answer back.

As `DefaultHttpProxyService` (Azure/azure-functions-host, src/WebJobs.Script.Grpc/Server): YARP's
`IHttpForwarder` sends the request (method, path and query, headers, the body as it arrives) to the
worker's `HttpUri` with `x-ms-invocation-id`, through `RetryProxyHandler` (a refused connection is retried
up to 10 times, 50 ms doubling to 250 ms), with no redirects and no cookies; the response's status,
headers and body are copied to the client as they come, with no buffering. YARP's default transforms drop
the client's Host (the worker sees its own) and set X-Forwarded-For/-Proto/-Host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from devhost.streams import INVOCATION_ID_HEADER

log = logging.getLogger("devhost.http")

MAX_RETRIES = 10
INITIAL_DELAY = 0.05
MAXIMUM_DELAY = 0.25
DISCONNECT_POLL_SECONDS = 0.1

# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, never forwarded; Host is the destination's,
# Content-Length and Transfer-Encoding are set again by each side for its own connection.
_REQUEST_SKIP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    INVOCATION_ID_HEADER,
}
_RESPONSE_SKIP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "date",
    "server",
}


class BodyTooLarge(Exception):
    """The request body went over the host's limit while it was being forwarded."""


class ProxyFailed(Exception):
    """The worker's web server could not be reached or broke off (YARP's ForwarderError)."""


SMALL_BODY = 64 * 1024
"""A request body up to this size (by its Content-Length) is read before it is forwarded, so it is sent
whole, in one write, and its connection can be used again (see `StreamProxy`)."""
KEEP_ALIVE_SECONDS = 2.0
"""How long an idle pooled connection is kept: well below uvicorn's 5 s (`timeout_keep_alive`), so the
proxy never sends on a connection the worker is closing."""


class StreamProxy:
    """The client sessions to the workers' web servers, shared by every proxied request.

    YARP pools its connections to the worker (SocketsHttpHandler). aiohttp pools one only when it can be
    used again safely: a response that ends before its request body was sent (a 413 from the app, which
    uvicorn answers without reading) would put a connection back in the pool with half a request on it,
    and the next request would be read as the rest of that body. So requests without a body or with a
    small one, which is sent whole before any answer can come, go over pooled connections; a larger or
    chunked body is streamed as it arrives over a connection of its own.
    """

    def __init__(self, body_limit: int) -> None:
        self.body_limit = body_limit
        self._pooled: aiohttp.ClientSession | None = None
        self._streaming: aiohttp.ClientSession | None = None

    @staticmethod
    def _new_session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )

    def session(self, streaming: bool = False) -> aiohttp.ClientSession:
        """The pooled session, or with `streaming` the one whose connections serve one request each."""
        # No cap on the number of connections (SocketsHttpHandler's MaxConnectionsPerServer is unlimited):
        # every open event stream holds one. Both are created on first use, on the running loop.
        if streaming:
            if self._streaming is None:
                self._streaming = self._new_session(aiohttp.TCPConnector(force_close=True, limit=0))
            return self._streaming
        if self._pooled is None:
            self._pooled = self._new_session(aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEP_ALIVE_SECONDS))
        return self._pooled

    async def close(self) -> None:
        """Close the sessions."""
        for session in (self._pooled, self._streaming):
            if session is not None:
                await session.close()
        self._pooled = self._streaming = None

    def _headers(self, request: web.Request, invocation_id: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            if key in _REQUEST_SKIP:
                continue
            # A repeated header travels as one, its values joined as HTTP allows.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        peer = request.remote or "127.0.0.1"
        headers["X-Forwarded-For"] = peer
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Host"] = request.host
        headers[INVOCATION_ID_HEADER] = invocation_id
        # Never "Connection: close", which aiohttp would add on a connection of its own (a streamed body, see
        # `StreamProxy`): SocketsHttpHandler does not send it, and a worker told to close shuts its socket on
        # an unread body once it has answered early (a 413), so the reset would eat the answer (a 502 here).
        headers["Connection"] = "keep-alive"
        return headers

    async def _body(self, request: web.Request, overflow: asyncio.Event) -> AsyncIterator[bytes]:
        # Kestrel's MaxRequestBodySize counts the bytes as they are read, chunked bodies too.
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.body_limit:
                overflow.set()
                raise BodyTooLarge(f"the request body is over {self.body_limit} bytes")
            yield chunk

    async def send(
        self, request: web.Request, http_uri: str, invocation_id: str, overflow: asyncio.Event
    ) -> aiohttp.ClientResponse:
        """Forward `request` to the worker's server; return its response once the headers have arrived."""
        headers = self._headers(request, invocation_id)
        has_body = request.body_exists
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        whole: bytes | None = None
        if has_body and request.content_length is not None and request.content_length <= SMALL_BODY:
            whole = await request.read()  # within the body limit: the Content-Length was checked before
        streaming = has_body and whole is None
        url = http_uri.rstrip("/") + request.rel_url.raw_path_qs
        delay = INITIAL_DELAY
        fresh = streaming  # a streamed body's connection is its own: never one the worker closed meanwhile
        for attempt in range(1, MAX_RETRIES + 1):
            try:
                return await self.session(streaming or fresh).request(
                    request.method,
                    url,
                    headers=headers,
                    data=self._body(request, overflow) if streaming else whole,
                    allow_redirects=False,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                )
            except aiohttp.ClientConnectorError as exc:
                # RetryProxyHandler: only a connection that could not be made is retried (the web server
                # is still starting); the body has not been read yet then.
                if attempt == MAX_RETRIES:
                    raise ProxyFailed(f"the worker's web server did not accept the connection: {exc}") from exc
                log.warning(
                    "Failed to proxy request to the worker. Retrying in %dms. Attempt %d of %d.",
                    delay * 1000,
                    attempt,
                    MAX_RETRIES,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAXIMUM_DELAY)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A pooled connection the worker closed meanwhile (uvicorn closes one after an app error),
                # seen before any of the response: SocketsHttpHandler sends the request again, once, on a
                # new connection (HttpConnection's `_canRetry`, dotnet/runtime). The small body is in hand.
                if fresh:
                    raise ProxyFailed(f"proxying to the worker failed: {type(exc).__name__}: {exc}") from exc
                fresh = True
            except aiohttp.ClientError as exc:
                if overflow.is_set():
                    raise BodyTooLarge(f"the request body is over {self.body_limit} bytes") from exc
                raise ProxyFailed(f"proxying to the worker failed: {type(exc).__name__}: {exc}") from exc
        raise ProxyFailed("unreachable")  # pragma: no cover - the loop returns or raises


def response_headers(upstream: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    """The worker's response headers the host copies to its client."""
    return [(name, value) for name, value in upstream.headers.items() if name.lower() not in _RESPONSE_SKIP]


async def client_gone(request: web.Request) -> None:
    """Return once the client's connection is closed (ASP.NET Core's `RequestAborted`)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)


async def pump(upstream: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
    """Copy the body as it arrives: every chunk the worker sends is written to the client at once."""
    async for chunk in upstream.content.iter_any():
        await response.write(chunk)
    await response.write_eof()


def abort(request: web.Request) -> None:
    """Cut the client's connection (no clean end of the body: the client sees the response as incomplete)."""
    transport: Any = request.transport
    if transport is not None:
        transport.abort()
