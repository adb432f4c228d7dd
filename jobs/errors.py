"""Domain errors: why a request about a job cannot be done, without HTTP in it.

The API maps each to an RFC 9457 problem (api/problems.py); the queue intake to a failed message
and, in the end, a dead letter whose reason is the error's text. Field errors name the request's
fields in the request's own terms (`options.group_by`, `input_ref`); where a field lives outside the
body (the idempotency key is a header for HTTP and a message field for the queue), the error says
which *thing* was wrong and each door names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypedDict

from pydantic import ValidationError


class FieldError(TypedDict):
    """One invalid field: where it is and what is wrong with it."""

    field: str  # dotted path into the request, or a header/query parameter name
    message: str


def field_error(field: str, message: str) -> FieldError:
    """A FieldError."""
    return {"field": field, "message": message}


_UNION_TAG = re.compile(r"^[\w-]+\[.*\]$")
"""How pydantic names the member of a union a value failed against (`list[float]`, `function-after[...]`):
part of its error's location, but no field of the request, so a client is not shown it."""


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    parts = [prefix] if prefix else []
    parts += [str(part) for part in loc if not (isinstance(part, str) and _UNION_TAG.match(part))]
    return ".".join(parts) or "body"


def errors_from_validation(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """One FieldError per pydantic error, without echoing the submitted values."""
    return [field_error(_loc(err["loc"], prefix), err["msg"]) for err in exc.errors(include_input=False)]


class JobsError(Exception):
    """A request the jobs layer refuses; `detail` is one line for humans."""

    def __init__(self, detail: str, errors: Iterable[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


class MalformedRequest(JobsError):
    """The request cannot even be read: not JSON, not UTF-8, nested too deeply, a malformed key."""


class InvalidRequest(JobsError):
    """The request is readable but not valid: unknown kind, bad options, bad input, no such upload."""


class IdempotencyKeyMalformed(MalformedRequest):
    """The idempotency key is not 1-200 printable ASCII characters (each door names its key field)."""

    def __init__(self) -> None:
        super().__init__("the idempotency key must be 1 to 200 printable ASCII characters")


class IdempotencyConflict(JobsError):
    """The idempotency key already names a job created by a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__("this idempotency key was used for a different request")
        self.job_id = job_id


class TooLarge(JobsError):
    """The input is larger than the service accepts."""


class NotFound(JobsError):
    """No such job, upload or dead letter."""


class NotReady(JobsError):
    """The job exists but what was asked for does not exist yet (its result before it completed)."""

    def __init__(self, detail: str, *, finished: bool, created_at: str) -> None:
        super().__init__(detail)
        self.finished = finished  # a finished job's result never comes: polling will not help
        self.created_at = created_at  # when the job was submitted (how often to poll depends on its age)


class Conflict(JobsError):
    """The request conflicts with the state of what it names (e.g. replaying what cannot be replayed)."""

    def __init__(self, detail: str, slug: str = "conflict") -> None:
        super().__init__(detail)
        self.slug = slug


class Unavailable(JobsError):
    """Storage or Durable did not answer: nothing was changed, retry after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class QueueFull(JobsError):
    """More than MAX_PENDING_JOBS wait for admission: the submission is refused and nothing of it is kept."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many jobs are waiting for admission; retry later")
        self.retry_after = retry_after
