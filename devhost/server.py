"""The HTTP front of the host: app routes under the route prefix, the Durable management API, admin."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.config import HostConfig
from devhost.durable.management import RPC_PREFIX, WEBHOOK_PREFIX, ManagementApi
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker

log = logging.getLogger("devhost.http")
MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request body limit


def _json_error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json", headers=headers)


class HttpFront:
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

    def build(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("GET", "/admin/host/status", self.host_status)
        app.router.add_route("*", WEBHOOK_PREFIX + "{tail:.*}", self.management.handle)
        app.router.add_route("*", RPC_PREFIX + "/{tail:.*}", self.management.handle)
        app.router.add_route("*", "/{tail:.*}", self.app_route)
        return app

    async def host_status(self, request: web.Request) -> web.Response:
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
        if not self.accepting:
            return _json_error(503, "Service Unavailable", "The host is shutting down.", {"Retry-After": "5"})
        prefix = f"/{self.config.route_prefix}/" if self.config.route_prefix else "/"
        path = request.path
        if path == "/" and self.config.route_prefix:
            return web.Response(text="Your Functions app (devhost) is up and running.")
        if not path.startswith(prefix):
            return _json_error(404, "Not Found", f"No function route matches {path}.")
        sub = path[len(prefix) :]
        matches: list[tuple[FunctionSpec, dict[str, str]]] = []
        for spec in self.routes:
            assert spec.route is not None
            params = spec.route.match(sub)
            if params is not None:
                matches.append((spec, params))
        if not matches:
            return _json_error(404, "Not Found", f"No function route matches {path}.")
        method = request.method.upper()
        chosen = next(
            ((s, p) for s, p in matches if method in s.methods or (method == "HEAD" and "GET" in s.methods)), None
        )
        if chosen is None:
            allowed = sorted({m for s, _ in matches for m in s.methods})
            return _json_error(
                405, "Method Not Allowed", f"{method} is not allowed on {path}.", {"Allow": ", ".join(allowed)}
            )
        spec, params = chosen
        if not self._authorized(spec, request):
            return _json_error(401, "Unauthorized", "A valid function key is required (x-functions-key or ?code=).")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, "Payload Too Large", f"Request bodies are limited to {MAX_REQUEST_BYTES} bytes.")
        http_request = func.HttpRequest(
            method=method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=params,
            body=body,
        )
        kwargs: dict[str, Any] = {spec.trigger_param: http_request}
        if spec.client_param:
            origin = f"{request.scheme}://{request.host}"
            kwargs[spec.client_param] = self.management.client_binding(origin, origin)
        try:
            result = await self.invoker.invoke(spec, kwargs, detail=f"{method} {path}")
        except Exception:
            log.exception("function '%s' raised", spec.name)
            return web.Response(status=500)
        return self._response(result)

    @staticmethod
    def _response(result: Any) -> web.Response:
        if result is None:
            return web.Response(status=204)
        if isinstance(result, func.HttpResponse):
            headers = dict(result.headers.items())
            if "content-type" not in {k.lower() for k in headers} and result.mimetype:
                charset = (
                    f"; charset={result.charset}" if result.charset and result.mimetype.startswith("text/") else ""
                )
                headers["Content-Type"] = f"{result.mimetype}{charset}"
            return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        if isinstance(result, str | bytes):
            return web.Response(status=200, body=result if isinstance(result, bytes) else result.encode())
        return web.json_response(result)
