"""The HTTP front of the host: app routes under the route prefix, the Durable management API, admin."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from aiohttp import web

from devhost.config import HostConfig
from devhost.durable.management import RPC_PREFIX, WEBHOOK_PREFIX, ManagementApi
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker

log = logging.getLogger("devhost.http")
MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request body limit
# What App Service's front end answers when the app has not responded within 230 s (observed as 500,
# MicrosoftDocs/azure-docs#94418; the Functions HTTP trigger docs, "Limits", say 502: we answer 500).
REQUEST_TIMED_OUT = "500 - The request timed out.\r\nThe web server failed to respond within the specified time."


def _json_error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json", headers=headers)


class HttpFront:
    """The host's HTTP side: app routes, the Durable webhooks and the admin status endpoint."""

    def __init__(
        self,
        config: HostConfig,
        specs: list[FunctionSpec],
        invoker: FunctionInvoker,
        management: ManagementApi,
        enforce_auth: bool,
    ) -> None:
        self.config = config
        self.invoker = invoker
        self.management = management
        self.enforce_auth = enforce_auth
        self.routes = sorted(
            (s for s in specs if s.trigger_type == "httpTrigger" and s.route is not None),
            key=lambda s: -(s.route.literal_weight if s.route else 0),
        )
        self.accepting = True
        self._late: set[asyncio.Future[Any]] = set()  # invocations still running after their request timed out

    def build(self) -> web.Application:
        """The aiohttp application with every route the host serves."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("GET", "/admin/host/status", self.host_status)
        app.router.add_route("*", WEBHOOK_PREFIX + "{tail:.*}", self.management.handle)
        app.router.add_route("*", RPC_PREFIX + "/{tail:.*}", self.management.handle)
        app.router.add_route("*", "/{tail:.*}", self.app_route)
        return app

    async def host_status(self, request: web.Request) -> web.Response:
        """`GET /admin/host/status`: Running, or Stopping during a graceful shutdown."""
        state = "Running" if self.accepting else "Stopping"
        return web.json_response({"id": "devhost", "state": state, "version": "devhost", "processUptime": 0})

    def _authorized(self, spec: FunctionSpec, request: web.Request) -> bool:
        if not self.enforce_auth or spec.auth_level == "anonymous":
            return True
        key = request.headers.get("x-functions-key") or request.query.get("code") or ""
        keys = (
            [self.config.system_key]
            if spec.auth_level in ("admin", "system")
            else [
                *self.config.function_keys.values(),
                self.config.system_key,
            ]
        )
        return any(k and hmac.compare_digest(key, k) for k in keys)

    async def app_route(self, request: web.Request) -> web.StreamResponse:
        """Route a request to its HTTP function and run it in a worker, as the Functions host does."""
        if not self.accepting:
            return _json_error(503, "Service Unavailable", "The host is shutting down.", {"Retry-After": "5"})
        prefix = f"/{self.config.route_prefix}/" if self.config.route_prefix else "/"
        path = request.path
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
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return _json_error(413, "Payload Too Large", f"Request bodies are limited to {MAX_REQUEST_BYTES} bytes.")
        try:
            body = await _body(request)
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, "Payload Too Large", f"Request bodies are limited to {MAX_REQUEST_BYTES} bytes.")
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
