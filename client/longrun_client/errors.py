"""What the client raises: RFC 9457 problems from the API, connection failures, and wait timeouts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from longrun_client.models import JobSnapshot

PROBLEM_CONTENT_TYPE = "application/problem+json"


class LongrunError(Exception):
    """Base class of everything the client raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem's `errors`: which field, and what is wrong with it."""

    field: str
    message: str


class ProblemError(LongrunError):
    """An `application/problem+json` answer (or another 4xx/5xx), with its RFC 9457 members."""

    def __init__(
        self,
        *,
        type: str,  # noqa: A002 - the RFC 9457 member's name
        status: int,
        title: str,
        detail: str | None = None,
        errors: list[FieldError] | None = None,
        instance: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.type = type
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.instance = instance
        self.retry_after = retry_after
        self.body = dict(body or {})
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail:
            text += f": {self.detail}"
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemError:
        """The problem a response carries; a non-problem error body becomes an `about:blank` problem."""
        body: dict[str, Any] = {}
        try:
            parsed = json.loads(response.content) if response.content else {}
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            body = parsed
        errors = [
            FieldError(str(item.get("field", "")), str(item.get("message", "")))
            for item in body.get("errors") or []
            if isinstance(item, dict)
        ]
        detail = body.get("detail")
        if detail is None and not body and response.content:
            detail = response.text[:300]  # a host's plain-text error: short, never a whole page
        return cls(
            type=str(body.get("type") or "about:blank"),
            status=int(body.get("status") or response.status_code),
            title=str(body.get("title") or response.reason_phrase or "error"),
            detail=None if detail is None else str(detail),
            errors=errors,
            instance=body.get("instance"),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            body=body,
        )


class ConnectionFailed(LongrunError):
    """The API could not be reached (after the retries the call allowed)."""


class WaitTimeout(LongrunError, TimeoutError):
    """`wait()` gave up before the job finished; the job keeps running."""

    def __init__(self, job: JobSnapshot, timeout: float) -> None:
        self.snapshot = job
        self.timeout = timeout
        super().__init__(f"job {job.id} still {job.status.value} after {timeout:g} s")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
