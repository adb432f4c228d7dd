"""RFC 9457 problem details: the one shape every client-facing error takes.

A `Problem` is raised anywhere a request is refused (API routes, submission, queue intake) and
turned into an `application/problem+json` response at the edge. Its `errors` list names each
invalid field, so a client can fix its request without reading prose.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:longrun:problem:"
"""Problem types are URNs: stable identifiers that do not pretend to be pages on a domain we do not own."""

_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_SLUGS = {
    400: "malformed-request",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    500: "internal-error",
    503: "unavailable",
}


class FieldError(TypedDict):
    field: str  # dotted path into the request, or a header/query parameter name
    message: str


class Problem(Exception):
    """A refused request: becomes an RFC 9457 problem response (or a failed queue message)."""

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
        return PROBLEM_TYPE_BASE + self.slug

    @property
    def title(self) -> str:
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
        return json.dumps(self.body(instance))


def field_error(field: str, message: str) -> FieldError:
    return {"field": field, "message": message}


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc]
    return ".".join(parts) or "body"


def errors_from_validation(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """One FieldError per pydantic error, without echoing the submitted values."""
    return [field_error(_loc(err["loc"], prefix), err["msg"]) for err in exc.errors(include_input=False)]


def validation_problem(detail: str, errors: Iterable[FieldError]) -> Problem:
    return Problem(422, detail, errors=errors)
