"""HTTP plumbing shared by the routes: method dispatch, JSON and problem responses, bounded bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from aiohttp import ClientError
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from api.problems import PROBLEM_CONTENT_TYPE, Problem, problem_from
from jobs.errors import JobsError, Unavailable, field_error
from jobs.json_body import parse_json
from shared.telemetry import log_event

ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Every route accepts these, so a wrong method gets our 405 problem rather than the host's 404."""

Handler = Callable[[], Awaitable[func.HttpResponse]]
OUTAGE_RETRY_AFTER_SECONDS = 5


OUTAGES: tuple[type[BaseException], ...] = (
    ServiceRequestError,
    ServiceResponseError,
    TimeoutError,
    ConnectionError,
    ClientError,  # the Durable client's HTTP session (aiohttp)
)
"""Storage (or the Durable extension) not answering: the request may succeed later, so 503 + Retry-After."""


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    """A JSON response."""
    return func.HttpResponse(
        json.dumps(body), status_code=status, headers=dict(headers or {}), mimetype="application/json"
    )


def problem_response(problem: Problem, req: func.HttpRequest) -> func.HttpResponse:
    """The problem as an application/problem+json response."""
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE, **problem.headers}
    return func.HttpResponse(
        problem.to_json(instance=urlsplit(req.url).path), status_code=problem.status, headers=headers
    )


async def dispatch(req: func.HttpRequest, handlers: Mapping[str, Handler]) -> func.HttpResponse:
    """Run the handler for the request's method; every refusal becomes a problem response."""
    method = (req.method or "").upper()
    handler = handlers.get(method)
    try:
        if handler is None:
            allowed = ", ".join(handlers)
            raise Problem(405, f"use one of: {allowed}", headers={"Allow": allowed})
        return await handler()
    except Problem as problem:
        return problem_response(problem, req)
    except JobsError as error:
        return problem_response(problem_from(error), req)
    except OUTAGES as exc:
        log_event("api.unavailable", level=logging.WARNING, route=urlsplit(req.url).path, error=type(exc).__name__)
        outage = Unavailable("storage is not answering; retry the request", retry_after=OUTAGE_RETRY_AFTER_SECONDS)
        return problem_response(problem_from(outage), req)
    except Exception as exc:  # a fault of ours: say so without details, log the type only
        logging.getLogger("longrun").exception("unhandled error in %s %s", method, urlsplit(req.url).path)
        log_event("api.error", level=logging.ERROR, route=urlsplit(req.url).path, error=type(exc).__name__)
        return problem_response(Problem(500, "an internal error occurred; it has been logged"), req)


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters int() cannot read, such as superscripts."""
    return text.isascii() and text.isdigit()


def media_type(req: func.HttpRequest) -> str | None:
    """The request's media type, lower case, without parameters."""
    value = req.headers.get("content-type")
    return value.split(";")[0].strip().lower() if value else None


def body_within(req: func.HttpRequest, limit: int) -> bytes:
    """The body, refused with 413 before it is read if its declared length is too large."""
    declared = req.headers.get("content-length")
    if declared is not None:
        if not is_decimal(declared.strip()):
            raise Problem(400, "invalid Content-Length", errors=[field_error("Content-Length", "must be digits")])
        if int(declared) > limit:
            raise Problem(413, f"the body must be at most {limit} bytes")
    body = req.get_body() or b""
    if len(body) > limit:
        raise Problem(413, f"the body must be at most {limit} bytes")
    return body


def read_json(req: func.HttpRequest, limit: int, *, optional: bool = False) -> Any:
    """A JSON request body: 415 unless application/json, 413 over `limit`, 400 if malformed."""
    body = body_within(req, limit)
    if optional and not body.strip():
        return None
    if media_type(req) != "application/json":
        raise Problem(
            415,
            "send the request as application/json",
            errors=[field_error("Content-Type", "must be application/json")],
        )
    return parse_json(body)
