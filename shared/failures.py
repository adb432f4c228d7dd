"""The non-retryable failure protocol, in one place: how a step says "no retry can fix this" and how it is read.

The orchestrator sees only the text of a failed activity (the SDK turns the exception into
"Activity function 'x' failed: Type: message ..."), so a failure that must not be retried carries a
marker in its text: `[non-retryable:<error_type>] <one-line message>`. Kinds raise NonRetryableError,
activities let it (or their own) propagate, and the orchestrators classify what comes back.
Pure Python: kinds import it without pulling in Azure or Durable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NON_RETRYABLE_MARKER = "non-retryable"
"""The word in `[non-retryable:<error_type>]` that marks a failure no retry can fix."""

MESSAGE_LIMIT = 300
"""Characters of a failure message kept: one line for humans, never a stack trace."""

_MARKED = re.compile(r"\[" + NON_RETRYABLE_MARKER + r":(?P<type>[A-Za-z0-9_.-]+)\][ \t]*(?P<message>[^\n]*)")
_ACTIVITY_PREFIX = re.compile(r"^\s*(?:Activity|Orchestrator) function '[^']*' failed:\s*")
_EXCEPTION_TYPE = re.compile(r"^[A-Za-z_][\w.]*:\s*")


def one_line(text: str) -> str:
    """`text` on one line (whitespace runs collapsed), cut to MESSAGE_LIMIT characters."""
    return " ".join(text.split())[:MESSAGE_LIMIT]


def non_retryable_message(error_type: str, message: str) -> str:
    """The text of an exception the orchestrator must not retry: `[non-retryable:<type>] <message>`."""
    return f"[{NON_RETRYABLE_MARKER}:{error_type}] {one_line(message)}"


class NonRetryableError(Exception):
    """Retrying cannot help (bad input, unknown column, a missing plan, ...): the job fails at once.

    Its text carries the marker because the orchestrator only sees the text of a failed activity;
    `parse_non_retryable` and `classify_failure` read it back.
    """

    def __init__(self, error_type: str, message: str) -> None:
        """A failure of type `error_type` (machine-readable) with a message for humans (kept on one line)."""
        self.error_type = error_type
        self.message = " ".join(message.split())
        super().__init__(non_retryable_message(error_type, self.message))

    def __reduce__(self) -> tuple[type[NonRetryableError], tuple[str, str]]:
        """Rebuild from (type, message): worker processes pickle exceptions, and __init__ takes two arguments."""
        return type(self), (self.error_type, self.message)


def parse_non_retryable(text: str) -> tuple[str, str] | None:
    """(error_type, message) of a non-retryable failure found in an error text, or None if it is retryable."""
    found = _MARKED.search(text)
    if found is None:
        return None
    return found["type"], found["message"].strip()


@dataclass(frozen=True)
class StepFailure:
    """What a failed activity or sub-orchestration said, classified."""

    error_type: str
    message: str
    retryable: bool


def classify_failure(error: BaseException | str) -> StepFailure:
    """Read the exception the SDK raises for a failed task ("Activity function 'x' failed: Type: msg ...")."""
    text = str(error)
    marked = parse_non_retryable(text)
    if marked is not None:
        error_type, message = marked
        return StepFailure(error_type, one_line(message) or error_type, retryable=False)
    first_line = text.strip().splitlines()[0] if text.strip() else "the step failed"
    message = _EXCEPTION_TYPE.sub("", _ACTIVITY_PREFIX.sub("", first_line), count=1)
    return StepFailure("step_failed", one_line(message) or "the step failed", retryable=True)
