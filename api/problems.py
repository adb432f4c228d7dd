"""RFC 9457 problem details: the one shape every refusal of the HTTP API takes.

A `Problem` is raised by a route (HTTP-only checks: methods, media types, sizes) or made from a
domain error of the jobs layer (`problem_from`), and turned into an `application/problem+json`
response at the edge. Its `errors` list names each invalid field, so a client can fix its request
without reading prose.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from jobs.errors import (
    Conflict,
    FieldError,
    IdempotencyConflict,
    IdempotencyKeyMalformed,
    InvalidRequest,
    JobsError,
    MalformedRequest,
    NotFound,
    NotReady,
    QueueFull,
    TooLarge,
    Unavailable,
    field_error,
)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:longrun:problem:"
"""Problem types are URNs: stable identifiers that do not pretend to be pages on a domain we do not own."""

_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_SLUGS = {
    400: "malformed-request",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    411: "length-required",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-pending-jobs",
    500: "internal-error",
    503: "unavailable",
}


class Problem(Exception):
    """A refused request: becomes an RFC 9457 problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUGS.get(status, "error")
        self.errors = list(errors)
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        """The problem type URN."""
        return PROBLEM_TYPE_BASE + self.slug

    @property
    def title(self) -> str:
        """The HTTP status's title."""
        return _TITLES.get(self.status, "Error")

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document."""
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        return doc

    def to_json(self, instance: str | None = None) -> str:
        """The problem document as JSON text."""
        return json.dumps(self.body(instance))


def validation_problem(detail: str, errors: Iterable[FieldError]) -> Problem:
    """A 422 problem."""
    return Problem(422, detail, errors=errors)


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


def problem_from(error: JobsError, key_field: str = IDEMPOTENCY_KEY_HEADER) -> Problem:
    """The problem for a domain error; `key_field` names where the idempotency key came from (the
    `Idempotency-Key` header of a single submit, a batch item's `items[n].idempotency_key`)."""
    if isinstance(error, IdempotencyKeyMalformed):
        return Problem(
            400, error.detail, errors=[field_error(key_field, "1 to 200 printable ASCII characters (0x20-0x7E)")]
        )
    if isinstance(error, IdempotencyConflict):
        message = "already names a job created by a different request"
        return Problem(409, error.detail, slug="idempotency-key-reused", errors=[field_error(key_field, message)])
    if isinstance(error, MalformedRequest):
        return Problem(400, error.detail, errors=error.errors)
    if isinstance(error, InvalidRequest):
        return Problem(422, error.detail, errors=error.errors)
    if isinstance(error, TooLarge):
        return Problem(413, error.detail, errors=error.errors)
    if isinstance(error, NotFound):
        return Problem(404, error.detail)
    if isinstance(error, NotReady):
        return Problem(409, error.detail, slug="result-not-ready")
    if isinstance(error, Conflict):
        return Problem(409, error.detail, slug=error.slug if error.slug != "conflict" else None)
    if isinstance(error, QueueFull):
        return Problem(429, error.detail, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, Unavailable):
        return Problem(503, error.detail, headers={"Retry-After": str(error.retry_after)})
    return Problem(400, error.detail, errors=error.errors)
