"""HTTP streams in the language worker: the extension's web server and the invocation it serves.

With `azurefunctions-extensions-http-fastapi` imported by the app and PYTHON_ENABLE_INIT_INDEXING on, the
Python worker (Azure/azure-functions-python-worker, `azure_functions_worker/http_v2.py` and
`dispatcher.py`) starts the extension's `WebServer` (uvicorn) on a loopback port at worker init and
announces it to the host as the `HttpUri` capability. The host then proxies every HTTP request to that
server with an `x-ms-invocation-id` header and sends the invocation (route parameters only) over gRPC; the
worker pairs the two by invocation id (`HttpCoordinator`), copies the host's route values into the
request (`RequestSynchronizer.sync_route_params`), calls the function with the FastAPI `Request`, and the
server's catch-all route answers whatever the function returned (or raises what it raised).

This module does the same in a devhost worker process, with the extension's own `WebApp` and `WebServer`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import socket
import typing
from typing import Any

INVOCATION_ID_HEADER = "x-ms-invocation-id"
"""`ScriptConstants.HttpProxyCorrelationHeader`: how the proxied request names its invocation."""
INIT_INDEXING = "PYTHON_ENABLE_INIT_INDEXING"


class StreamsConfigError(Exception):
    """The app is set up for HTTP streams in a way the worker cannot serve."""


def _truthy(value: str | None) -> bool:
    # `is_envvar_true` in the worker: "true" or "1", case-insensitively.
    return (value or "").strip().lower() in ("true", "1")


def _ext_base() -> Any:
    # The base extension is untyped; it is where the worker reads every HTTP streams registration.
    return importlib.import_module("azurefunctions.extensions.base")


def extension_imported() -> bool:
    """Whether the app imported a web extension (`HttpV2FeatureChecker.http_v2_enabled`)."""
    try:
        ext_base = _ext_base()
    except ImportError:
        return False
    return bool(ext_base.HttpV2FeatureChecker.http_v2_enabled())


def enabled() -> bool:
    """HTTP streams are on: the web extension is imported and PYTHON_ENABLE_INIT_INDEXING is true.

    Raises StreamsConfigError when the extension is imported without init indexing: the worker would then
    check and invoke every HTTP function as a stream (`HttpV2Registry.http_v2_enabled` only asks that the
    setting is not false) without starting the web server or announcing `HttpUri` (both happen only in
    `_handle__worker_init_request` under `is_envvar_true(PYTHON_ENABLE_INIT_INDEXING)`), so each HTTP
    invocation would wait for a request the host never sends. devhost refuses to start instead.
    """
    if not extension_imported():
        return False
    if not _truthy(os.environ.get(INIT_INDEXING)):
        raise StreamsConfigError(
            "the app imports an HTTP streams extension (azurefunctions-extensions-http-fastapi) but "
            f"{INIT_INDEXING} is not 1: the worker would start no web server and every HTTP invocation would "
            f"hang; set {INIT_INDEXING}=1 in the app settings"
        )
    return True


def check_http_function(name: str, function: Any, trigger_param: str, has_return: bool) -> None:
    """The worker's type checks of an HTTP function when streams are on (`bindings/meta.py`).

    `_check_http_input_type_annotation` accepts only the extension's request type
    (`RequestTrackerMeta.check_type`) and `_check_http_output_type_annotation` only its response types
    (`ResponseTrackerMeta.check_type`); anything else is a FunctionLoadError, so the app does not start.
    """
    ext_base = _ext_base()
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # the worker's typing.get_type_hints fails the same way
        raise StreamsConfigError(f"function '{name}': cannot resolve its annotations: {exc}") from exc
    request_hint = hints.get(trigger_param)
    if request_hint is not None and not ext_base.RequestTrackerMeta.check_type(request_hint):
        raise StreamsConfigError(
            f"function '{name}': type of {trigger_param} binding \"httpTrigger\" does not match its Python "
            f'annotation "{getattr(request_hint, "__name__", request_hint)}": with HTTP streams an HTTP '
            "function takes the extension's Request"
        )
    response_hint = hints.get("return")
    if has_return and response_hint is not None:
        if not inspect.isclass(response_hint) or not ext_base.ResponseTrackerMeta.check_type(response_hint):
            raise StreamsConfigError(
                f"function '{name}': Python return annotation \"{getattr(response_hint, '__name__', response_hint)}"
                '" does not match binding type "http": with HTTP streams it must be one of the extension\'s '
                "response types"
            )


class HttpCoordinator:
    """Pairs the proxied request with its invocation, and the function's answer with the waiting request.

    As the worker's `HttpCoordinator`: whichever side arrives first waits for the other, keyed by the
    invocation id; both sides run on the worker's event loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._requests: dict[str, asyncio.Future[Any]] = {}
        self._responses: dict[str, asyncio.Future[Any]] = {}

    def _future(self, table: dict[str, asyncio.Future[Any]], invocation_id: str) -> asyncio.Future[Any]:
        future = table.get(invocation_id)
        if future is None:
            future = table[invocation_id] = self.loop.create_future()
        return future

    def set_request(self, invocation_id: str, request: Any) -> None:
        """The web server received the request of `invocation_id`."""
        future = self._future(self._requests, invocation_id)
        if not future.done():
            future.set_result(request)

    async def request(self, invocation_id: str) -> Any:
        """Wait for the request of `invocation_id` (the invocation side)."""
        try:
            return await self._future(self._requests, invocation_id)
        finally:
            self._requests.pop(invocation_id, None)

    def set_response(self, invocation_id: str, response: Any) -> None:
        """The function returned `response` (or raised it, an exception)."""
        future = self._future(self._responses, invocation_id)
        if not future.done():
            future.set_result(response)

    async def response(self, invocation_id: str) -> Any:
        """Wait for the function's answer (the web server side)."""
        try:
            return await self._future(self._responses, invocation_id)
        finally:
            self._responses.pop(invocation_id, None)


def _unused_tcp_port(host: str) -> int:
    # As the worker's `get_unused_tcp_port`: the OS picks a free port, the server binds it right after.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_web_server(loop: asyncio.AbstractEventLoop, coordinator: HttpCoordinator) -> tuple[str, asyncio.Task[Any]]:
    """Start the extension's web server on a loopback port (`initialize_http_server`); return its URI.

    The worker does not wait for the server to listen: the host's `RetryProxyHandler` retries a refused
    connection, and devhost's proxy does the same.
    """
    ext_base = _ext_base()
    import uvicorn.server

    # uvicorn takes over SIGINT/SIGTERM while it serves; a devhost worker is stopped by its host over the
    # pipe (as the real one is over gRPC), and Ctrl+C, which reaches the whole process group, must not
    # shut the worker's web server down under requests the host is still draining.
    uvicorn.server.HANDLED_SIGNALS = ()  # type: ignore[assignment]
    extension = importlib.import_module(str(ext_base.ModuleTrackerMeta.get_module()))
    web_app = extension.WebApp()
    request_type = ext_base.RequestTrackerMeta.get_request_type()

    async def catch_all(request: Any) -> Any:
        invocation_id = request.headers.get(INVOCATION_ID_HEADER)
        if invocation_id is None:
            raise ValueError(f"Header {INVOCATION_ID_HEADER} not found")
        coordinator.set_request(invocation_id, request)
        response = await coordinator.response(invocation_id)
        if isinstance(response, BaseException):
            raise response
        return response

    # FastAPI injects the request by this annotation (the worker writes `request: request_type`).
    catch_all.__annotations__ = {"request": request_type}
    web_app.route(catch_all)
    host = "127.0.0.1"
    port = _unused_tcp_port(host)
    server = extension.WebServer(host, port, web_app)
    task = loop.create_task(server.serve())
    return f"http://{host}:{port}", task


def sync_route_params(request: Any, route_params: dict[str, str]) -> None:
    """Copy the host's route values into the request, with the extension's synchronizer."""
    ext_base = _ext_base()
    ext_base.RequestTrackerMeta.get_synchronizer().sync_route_params(request, route_params)
