"""The HTTP front of the host: app routes under the route prefix, the Durable management API, admin."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from devhost import proxy
from devhost.config import HostConfig
from devhost.durable.management import RPC_PREFIX, WEBHOOK_PREFIX, ManagementApi
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker

log = logging.getLogger("devhost.http")
# What App Service's front end answers when the app has not responded within 230 s (observed as 500,
# MicrosoftDocs/azure-docs#94418; the Functions HTTP trigger docs, "Limits", say 502: we answer 500).
REQUEST_TIMED_OUT = "500 - The request timed out.\r\nThe web server failed to respond within the specified time."


def _json_error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json", headers=headers)


def routing_path(raw_path: str) -> str:
    """The path routes are matched on: Kestrel decodes every escape in the request path except `%2F`, which
    stays encoded (dotnet/aspnetcore#30655: "Kestrel is supposed to decode all valid escape sequences except
    %2F"), so `/api/jobs%2Fbatch` is no route and `/api/jobs/a%2Fb` is one segment, `a%2Fb`."""
    path = raw_path.split("?", 1)[0]
    return "%2F".join(unquote(part) for part in re.split("%2[fF]", path))


class HttpFront:
    """The host's HTTP side: app routes, the Durable webhooks and the admin status endpoint."""

    def __init__(
        self,
        config: HostConfig,
        specs: list[FunctionSpec],
        invoker: FunctionInvoker,
        management: ManagementApi,
        enforce_auth: bool,
        streams: bool = False,
    ) -> None:
        self.config = config
        self.invoker = invoker
        self.management = management
        self.enforce_auth = enforce_auth
        # HTTP streams: requests are proxied to the workers' web servers instead of sent over the pipe.
        self.streams = streams
        self.proxy = proxy.StreamProxy(config.request_body_limit)
        # No precedence between templates: the host maps the functions' routes in the order of its function list,
        # sorted by name ignoring case (azure-functions-host FunctionMetadataManager.cs: `OrderBy(f => f.Name,
        # StringComparer.OrdinalIgnoreCase)`; WebScriptHostHttpRoutesManager maps `host.Functions` in turn), and
        # the first route that matches wins. So `jobs/batch` beats `jobs/{job_id}` only while its function's
        # name sorts first, here as there.
        self.routes = sorted(
            (s for s in specs if s.trigger_type == "httpTrigger" and s.route is not None), key=lambda s: s.name.upper()
        )
        self.accepting = True
        self._late: set[asyncio.Future[Any]] = set()  # invocations still running after their request timed out

    def build(self) -> web.Application:
        """The aiohttp application with every route the host serves."""
        app = web.Application(client_max_size=self.config.request_body_limit)
        app.router.add_route("GET", "/admin/host/status", self.host_status)
        app.router.add_route("*", WEBHOOK_PREFIX + "{tail:.*}", self.management.handle)
        app.router.add_route("*", RPC_PREFIX + "/{tail:.*}", self.management.handle)
        # Any character, newlines included: ASP.NET Core routes on the decoded path, so `%0A` in a segment still
        # reaches its function (aiohttp's `.*` would stop at it and answer its own text/plain 404).
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.app_route)
        return app

    async def host_status(self, request: web.Request) -> web.Response:
        """`GET /admin/host/status`: Starting until a worker has imported the app, then Running; Stopping during a
        graceful shutdown.

        As the host's `ScriptHostState` (Azure/azure-functions-host, src/WebJobs.Script/ScriptHostState.cs):
        Initialized means "all functions have been indexed", and with worker indexing (the v2 programming model)
        the functions are the ones a language worker reports after importing the app, so a host whose workers
        are still importing is Starting. A probe that waits for Running must not send work to a host that would
        only queue it.
        """
        if not self.accepting:
            state = "Stopping"
        else:
            state = "Running" if self.invoker.pool.any_ready() else "Starting"
        return web.json_response({"id": "devhost", "state": state, "version": "devhost", "processUptime": 0})

    def _authorized(self, spec: FunctionSpec, request: web.Request) -> bool:
        if not self.enforce_auth or spec.auth_level == "anonymous":
            return True
        # The header wins when present, even empty (AuthenticationLevelHandler.GetAuthorizationKeyInfoAsync).
        key = request.headers.get("x-functions-key", request.query.get("code", ""))
        # A key passes a level only if its own level is that one, or Admin (the master key): azure-functions-host
        # SecretManager.GetAuthorizationLevelAsync (a system key is AuthorizationLevel.System) and AuthUtility.
        # PrincipalHasAuthLevelClaim. So the system key in the Durable management URLs opens no function- or
        # admin-level route; devhost has no master key, so no key opens an admin-level one.
        keys = {
            "function": list(self.config.function_keys.values()),
            "system": [self.config.system_key],
        }.get(spec.auth_level, [])
        return any(k and hmac.compare_digest(key.encode(), k.encode()) for k in keys)

    async def app_route(self, request: web.Request) -> web.StreamResponse:
        """Route a request to its HTTP function and run it in a worker, as the Functions host does."""
        if not self.accepting:
            return _json_error(503, "Service Unavailable", "The host is shutting down.", {"Retry-After": "5"})
        prefix = f"/{self.config.route_prefix}/" if self.config.route_prefix else "/"
        path = routing_path(request.raw_path)
        if path == "/" and self.config.route_prefix:
            return web.Response(text="Your Functions app (devhost) is up and running.")
        method = request.method.upper()
        chosen = self._route(path[len(prefix) :], method) if path.startswith(prefix) else None
        if chosen is None:
            # The host maps each route with an HttpMethodRouteConstraint (WebScriptHostHttpRoutesManager.
            # InitializeHttpFunctionRoutes): a method the function does not declare matches no route at
            # all, so it is 404 like an unknown path, HEAD and OPTIONS included; there is no 405.
            return _json_error(404, "Not Found", f"No function route matches {method} {path}.")
        spec, params = chosen
        if not self._authorized(spec, request):
            return _json_error(401, "Unauthorized", "A valid function key is required (x-functions-key or ?code=).")
        if request.content_length is not None and request.content_length > self.config.request_body_limit:
            return self._too_large()
        if self.streams:
            return await self._stream(request, spec, params, f"{method} {path}")
        try:
            body = await _body(request)
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        payload: dict[str, Any] = {
            "method": method,
            "url": str(request.url),
            "headers": _joined(request.headers.items(), lower=True),
            "params": _joined(request.query.items(), lower=False),
            "route_params": params,
            "body": body,
        }
        if spec.client_param:
            origin = f"{request.scheme}://{request.host}"
            payload["client"] = self.management.client_binding(origin, origin)
        invocation = asyncio.ensure_future(self.invoker.invoke(spec, "http", payload, detail=f"{method} {path}"))
        done, _ = await asyncio.wait({invocation}, timeout=self.config.http_response_limit)
        if not done:
            # The front end gives up after 230 s (Azure Load Balancer idle timeout) while the function
            # keeps running to its functionTimeout; its answer is lost.
            self._late.add(invocation)
            invocation.add_done_callback(self._late_done)
            log.warning(
                "'%s' did not answer %s %s within %.0f s: the front end answers 500, the function runs on.",
                spec.name,
                method,
                path,
                self.config.http_response_limit,
            )
            return web.Response(status=500, text=REQUEST_TIMED_OUT, content_type="text/html")
        try:
            result = invocation.result()
        except Exception:
            log.exception("function '%s' raised", spec.name)
            return web.Response(status=500)
        return self._response(result)

    def _too_large(self) -> web.Response:
        limit = self.config.request_body_limit
        return _json_error(413, "Payload Too Large", f"Request bodies are limited to {limit} bytes.")

    async def _stream(
        self, request: web.Request, spec: FunctionSpec, params: dict[str, str], detail: str
    ) -> web.StreamResponse:
        """Serve an HTTP function over HTTP streams, as the host does for a worker with `HttpUri`.

        `GrpcWorkerChannel.SendInvocationRequest` starts forwarding the request to the worker's web server
        (`DefaultHttpProxyService.StartForwarding`) and then sends the invocation, which carries only the
        route values (`ToRpcHttp` with `HttpUri` and `RequiresRouteParameters`). The client gets the
        worker's response as it is written, cut at the front end's 230 s like any response (devhost is
        strict here: a stream is cut even while it is sending); the client leaving ends the proxied
        request, so the worker's response stream is cancelled.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.http_response_limit
        worker = await self.invoker.pool.ready_worker()
        if worker.http_uri is None:
            log.error("'%s': the worker announced no web server (HttpUri) for HTTP streams", spec.name)
            return web.Response(status=500)
        invocation_id = str(uuid.uuid4())
        overflow = asyncio.Event()
        forwarded: asyncio.Future[None] = loop.create_future()
        forwarded.add_done_callback(_retrieve)
        sending = asyncio.ensure_future(self.proxy.send(request, worker.http_uri, invocation_id, overflow))
        payload: dict[str, Any] = {"invocation_id": invocation_id, "route_params": params}
        if spec.client_param:
            origin = f"{request.scheme}://{request.host}"
            payload["client"] = self.management.client_binding(origin, origin)
        invocation = asyncio.ensure_future(
            self.invoker.invoke(
                spec, "http", payload, detail=detail, worker=worker, invocation_id=invocation_id, forwarded=forwarded
            )
        )
        # The invocation ends after the response (or with the function, if that is later); the invoker logs it.
        self._late.add(invocation)
        invocation.add_done_callback(self._late.discard)
        invocation.add_done_callback(_retrieve)
        try:
            upstream = await asyncio.wait_for(asyncio.shield(sending), max(0.0, deadline - loop.time()))
        except TimeoutError:
            sending.cancel()
            sending.add_done_callback(_retrieve)
            _fail(forwarded, "the front end timed out")
            log.warning(
                "'%s' did not answer %s within %.0f s: the front end answers 500, the function runs on.",
                spec.name,
                detail,
                self.config.http_response_limit,
            )
            return web.Response(status=500, text=REQUEST_TIMED_OUT, content_type="text/html")
        except proxy.BodyTooLarge:
            _fail(forwarded, "the request body was over the limit")
            return self._too_large()
        except proxy.ProxyFailed as exc:
            _fail(forwarded, str(exc))
            log.warning("'%s': %s", spec.name, exc)
            return _json_error(502, "Bad Gateway", "The function's web server did not answer.")
        try:
            return await self._relay(request, upstream, deadline, forwarded, spec.name)
        finally:
            upstream.close()
            if not forwarded.done():
                _fail(forwarded, "the response was not relayed")

    async def _relay(
        self,
        request: web.Request,
        upstream: Any,
        deadline: float,
        forwarded: asyncio.Future[None],
        name: str,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for header, value in proxy.response_headers(upstream):
            response.headers.add(header, value)
        try:
            await response.prepare(request)
        except (ConnectionError, RuntimeError):
            _fail(forwarded, "the client left before the response started")
            return response
        pumping = asyncio.ensure_future(proxy.pump(upstream, response))
        watching = asyncio.ensure_future(proxy.client_gone(request))
        try:
            done, _ = await asyncio.wait(
                {pumping, watching}, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watching.cancel()
        if pumping in done and pumping.exception() is None:
            forwarded.set_result(None)
            return response
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
        if pumping in done:
            reason = f"the response stream broke off: {type(pumping.exception()).__name__}"
        elif watching in done:
            reason = "the client disconnected"
        else:
            reason = f"the response was cut at the front end's {self.config.http_response_limit:.0f} s limit"
            log.warning("'%s': %s.", name, reason)
        proxy.abort(request)
        _fail(forwarded, reason)
        return response

    def _route(self, sub: str, method: str) -> tuple[FunctionSpec, dict[str, str]] | None:
        for spec in self.routes:
            assert spec.route is not None
            if spec.methods and method not in spec.methods:
                continue
            params = spec.route.match(sub)
            if params is not None:
                return spec, params
        return None

    def _late_done(self, invocation: asyncio.Future[Any]) -> None:
        self._late.discard(invocation)
        if not invocation.cancelled() and invocation.exception() is not None:
            log.warning("a late HTTP invocation failed after its request timed out: %s", invocation.exception())

    @staticmethod
    def _response(result: Any) -> web.Response:
        if result is None:
            return web.Response(status=204)
        response = web.Response(status=int(result["status"]), body=result["body"])
        for name, value in result["headers"]:
            if name.lower() == "content-length":
                continue
            response.headers.add(name, value)
        return response


def _retrieve(future: asyncio.Future[Any]) -> None:
    # The outcome is read by whoever awaits it, if anyone still does; never "exception never retrieved".
    if not future.cancelled():
        future.exception()


def _fail(forwarded: asyncio.Future[None], reason: str) -> None:
    """End the invocation's forwarding as failed (EnsureSuccessfulForwardingAsync throws)."""
    if not forwarded.done():
        forwarded.set_exception(proxy.ProxyFailed(f"Failed to proxy request: {reason}"))


async def _body(request: web.Request) -> bytes:
    """The body as the host hands it to the worker: read only when Content-Length says there is one.

    `GrpcMessageConversionExtensions.ToRpcHttp` populates the body only `if (request.Body != null &&
    request.ContentLength > 0)`: a chunked request (no Content-Length) reaches a Python function with an
    empty body.
    """
    if not request.content_length:
        return b""
    return await request.read()


def _joined(pairs: Any, *, lower: bool) -> dict[str, str]:
    """Query parameters or headers as the host sends them to a Python worker.

    ASP.NET Core's collections hold every value of a repeated name and `StringValues.ToString()` joins
    them with ","; `ToRpcHttp` then drops a query parameter whose value is empty (the Python worker does not
    ask for nullable dictionaries) and lower-cases header names. Names compare case-insensitively.
    """
    values: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        names.setdefault(key, key if lower else name)
        values.setdefault(key, []).append(value)
    joined = {names[k]: ",".join(v) for k, v in values.items()}
    return joined if lower else {k: v for k, v in joined.items() if v}
