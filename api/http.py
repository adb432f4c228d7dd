"""HTTP plumbing shared by the routes: method dispatch, JSON and problem responses, bounded bodies.

Every HTTP function runs on the HTTP streams feature (`azurefunctions-extensions-http-fastapi`): the host
proxies the request to the worker's web server, and a function takes the FastAPI `Request` and answers a
FastAPI `Response`. The helpers here keep what the host used to do for us in the classic model (query
values joined and emptied ones dropped, route parameters) so every route's contract stays as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import ClientError
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azurefunctions.extensions.http.fastapi import Request, Response, WebApp
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.convertors import PathConvertor, register_url_convertor

from api.problems import PROBLEM_CONTENT_TYPE, Problem, problem_from
from jobs.errors import JobsError, Unavailable, field_error
from jobs.json_body import parse_json
from jobs.requests import IDENTITY_CODING, content_coded
from shared.telemetry import log_event


class EveryPath(PathConvertor):
    """Starlette's `path` convertor, newlines included.

    The worker's web server has one route, the extension's `/{path:path}` (azurefunctions-extensions-http-
    fastapi `WebApp.route`), and Starlette's `path` is `.*`, which stops at a newline. A request whose path
    holds `%0A` (the host routes it: ASP.NET Core matches segments on the decoded path) would then get
    FastAPI's own `{"detail": "Not Found"}`, never reach its function, and leave its invocation waiting for a
    request that never comes. The worker builds that route after it imported the app (azure_functions_worker/
    dispatcher.py, `_handle__worker_init_request`: `load_function_metadata`, then `initialize_http_server`),
    so registering this here makes it match every path, and the route's function answers with a problem.
    """

    regex = r"[\s\S]*"


register_url_convertor("path", EveryPath())


WEB_SERVER_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's own request telemetry, off in the worker's web server.

FastAPI reports every request it serves (a server span, duration metrics) once a tracer or meter provider is
set, and shared.observability always sets one. That span records the query string, where a client's function
key travels as `code` (docs/api.md), redacting only storage signatures: with Application Insights it would
export the key. It would also report each request a second time: the host already records every request, and
the distro's FastAPI instrumentation is off for that reason (shared.observability). The job's own spans
(`job submit`, `job status read`, ...) carry what a trace needs.
"""


def _web_app_without_own_telemetry(self: Any) -> None:
    # The worker builds the extension's `WebApp()` after it imported the app (see EveryPath) and that web app
    # is a bare `FastAPI()`; this is the same app with its own telemetry off. Patched on the class rather than
    # subclassed: the extension's metaclass allows web app classes from its own module only.
    app = FastAPI(telemetry=WEB_SERVER_TELEMETRY)
    _uninstrument(app)
    self.web_app = app


def _uninstrument(app: FastAPI) -> None:
    """Undo OpenTelemetry's FastAPI instrumentation on the worker's web app, where the distro applied it.

    In Azure the worker configures the Azure Monitor distro before it imports the app, with every
    instrumentation on (azure-functions-python-worker 4.34, dispatcher.py `_handle__worker_init_request` and
    `initialize_azure_monitor`, on PYTHON_ENABLE_OPENTELEMETRY, which infra sets; later workers on
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY): `fastapi.FastAPI` is then the instrumented class, and each
    request's server span carries `http.url`, query string and function key included. The same two reasons as
    WEB_SERVER_TELEMETRY apply.
    """
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:  # the distro is not installed: nothing instruments the app
        return
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        FastAPIInstrumentor.uninstrument_app(app)


WebApp.__init__ = _web_app_without_own_telemetry  # type: ignore[method-assign]


ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Every route accepts these, so a wrong method gets our 405 problem rather than the host's 404."""

Handler = Callable[[], Awaitable[Response]]
OUTAGE_RETRY_AFTER_SECONDS = 5
JSON_MEDIA_TYPE = "application/json"


OUTAGES: tuple[type[BaseException], ...] = (
    ServiceRequestError,
    ServiceResponseError,
    TimeoutError,
    ConnectionError,
    ClientError,  # the Durable client's HTTP session (aiohttp)
)
"""Storage (or the Durable extension) not answering: the request may succeed later, so 503 + Retry-After."""


ENDS_STREAM: tuple[type[BaseException], ...] = (JobsError, *OUTAGES, HttpResponseError)
"""What ends a response stream mid-way (the job purged, storage away or answering an error): the status line
is sent already, so the stream ends after what it sent and the client reads or resumes again."""


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says storage cannot serve the request now: it did not answer (OUTAGES), or it answered
    with a server error once the client's retries ran out (503 ServerBusy when an account is throttled,
    500 OperationTimedOut or InternalError). Either may succeed later: 503 + Retry-After, not our 500."""
    if isinstance(exc, OUTAGES):
        return True
    return isinstance(exc, HttpResponseError) and (exc.status_code or 0) >= 500


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status_code=status, headers=dict(headers or {}), media_type=JSON_MEDIA_TYPE)


def problem_response(problem: Problem, req: Request) -> Response:
    """The problem as an application/problem+json response."""
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE, **problem.headers}
    return Response(problem.to_json(instance=req.url.path), status_code=problem.status, headers=headers)


async def dispatch(req: Request, handlers: Mapping[str, Handler]) -> Response:
    """Run the handler for the request's method; every refusal becomes a problem response."""
    method = (req.method or "").upper()
    handler = handlers.get(method)
    route = req.url.path
    try:
        if handler is None:
            allowed = ", ".join(handlers)
            raise Problem(405, f"use one of: {allowed}", headers={"Allow": allowed})
        return await handler()
    except Problem as problem:
        return problem_response(problem, req)
    except JobsError as error:
        return problem_response(problem_from(error), req)
    except Exception as exc:
        if is_outage(exc):
            log_event("api.unavailable", level=logging.WARNING, route=route, error=type(exc).__name__)
            outage = Unavailable("storage is not answering; retry the request", retry_after=OUTAGE_RETRY_AFTER_SECONDS)
            return problem_response(problem_from(outage), req)
        # A fault of ours: say so without details, log the type only.
        logging.getLogger("longrun").exception("unhandled error in %s %s", method, route)
        log_event("api.error", level=logging.ERROR, route=route, error=type(exc).__name__)
        return problem_response(Problem(500, "an internal error occurred; it has been logged"), req)


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters int() cannot read, such as superscripts."""
    return text.isascii() and text.isdigit()


def header(req: Request, name: str) -> str | None:
    """A request header; a repeated one joined with "," as ASP.NET Core's `StringValues.ToString()` does."""
    values = req.headers.getlist(name)
    return ",".join(values) if values else None


def query_params(req: Request) -> dict[str, str]:
    """The query string as the classic host handed it to a Python function, so the routes' contract holds.

    `GrpcMessageConversionExtensions.ToRpcHttp` (Azure/azure-functions-host) joined a repeated name's values
    with "," (names compare case-insensitively, the first spelling is kept) and dropped a name whose value is
    empty. With streams the worker sees the raw query string; this keeps `?limit=` meaning "no limit given".
    """
    values: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in req.query_params.multi_items():
        key = name.lower()
        names.setdefault(key, name)
        values.setdefault(key, []).append(value)
    joined = {names[key]: ",".join(parts) for key, parts in values.items()}
    return {name: value for name, value in joined.items() if value}


def route_param(req: Request, name: str) -> str | None:
    """A route parameter, as the host matched it (the worker copies the host's route values into the request)."""
    value = req.path_params.get(name)
    return str(value) if value is not None else None


def media_type(req: Request) -> str | None:
    """The request's media type, lower case, without parameters."""
    value = header(req, "content-type")
    return value.split(";")[0].strip().lower() if value else None


DRAIN_BYTES = 8 * 1024 * 1024
"""An over-limit body up to this size is read to its end (and dropped) before the 413: answering while the
client is still sending closes the connection under it, and the client (or the host's proxy) then reports a
reset instead of our problem. Anything larger is cut at once: reading it would cost more than a reset."""


async def refuse_content_coding(req: Request) -> None:
    """415 with `Accept-Encoding: identity` (RFC 9110 15.5.16) for a body sent with a content coding, before
    anything is stored; the body is read to its end first, as for a 413 (DRAIN_BYTES)."""
    if not content_coded(header(req, "content-encoding")):
        return
    declared = (header(req, "content-length") or "").strip()
    if not (is_decimal(declared) and int(declared) > DRAIN_BYTES):
        size = 0
        async for part in req.stream():
            size += len(part)
            if size > DRAIN_BYTES:
                break
    raise Problem(
        415,
        "send the body without a content coding: Content-Encoding is not accepted",
        errors=[field_error("Content-Encoding", f"must be absent or {IDENTITY_CODING}")],
        headers={"Accept-Encoding": IDENTITY_CODING},
    )


async def body_within(req: Request, limit: int) -> bytes:
    """The body, read as it arrives and refused with 413 once it is over `limit`; never held whole when over.

    A declared Content-Length over DRAIN_BYTES is refused before a byte is read; a smaller over-limit body,
    declared or counted while it streams (chunked), is read to its end or DRAIN_BYTES without being kept.
    """
    await refuse_content_coding(req)
    declared = header(req, "content-length")
    declared_size: int | None = None
    if declared is not None:
        if not is_decimal(declared.strip()):
            raise Problem(400, "invalid Content-Length", errors=[field_error("Content-Length", "must be digits")])
        declared_size = int(declared)
        if declared_size > limit and declared_size > DRAIN_BYTES:
            raise Problem(413, f"the body must be at most {limit} bytes")
    over = declared_size is not None and declared_size > limit
    parts: list[bytes] = []
    size = 0
    async for part in req.stream():
        size += len(part)
        if over or size > limit:
            over = True
            parts.clear()
            if size > DRAIN_BYTES:
                break
            continue
        parts.append(part)
    if over:
        raise Problem(413, f"the body must be at most {limit} bytes")
    return b"".join(parts)


async def read_json(req: Request, limit: int, *, optional: bool = False) -> Any:
    """A JSON request body: 415 unless application/json, 413 over `limit`, 400 if malformed."""
    body = await body_within(req, limit)
    if optional and not body.strip():
        return None
    if media_type(req) != JSON_MEDIA_TYPE:
        raise Problem(
            415,
            "send the request as application/json",
            errors=[field_error("Content-Type", "must be application/json")],
        )
    return parse_json(body)
