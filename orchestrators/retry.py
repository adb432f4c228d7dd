"""Retries on durable timers: exponential backoff with a cap and deterministic jitter.

The Python Durable SDK 1.x only offers constant-delay retries and cannot tell a bad input from a
flaky dependency, so the orchestrators schedule their own backoff timers. Everything here is a pure
function of the instance id, a key and the attempt number, so replays compute the same schedule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypedDict

from activities.names import NON_RETRYABLE_MARKER, non_retryable_message

__all__ = ["non_retryable_message"]


_MARKED = re.compile(r"\[" + NON_RETRYABLE_MARKER + r":(?P<type>[A-Za-z0-9_.-]+)\]\s*(?P<message>[^\n]*)")
_ACTIVITY_PREFIX = re.compile(r"^\s*(?:Activity|Orchestrator) function '[^']*' failed:\s*")
_EXCEPTION_TYPE = re.compile(r"^[A-Za-z_][\w.]*:\s*")

JITTER_MIN = 0.5
"""Each delay is scaled by a factor in [JITTER_MIN, 1.0] so that chunks failing together retry apart."""


class RetryPolicy(TypedDict):
    """How a step is retried: delay = min(max_interval, first_interval × coefficient^(attempt-1)) × jitter."""

    first_interval_seconds: float
    backoff_coefficient: float
    max_interval_seconds: float
    max_attempts: int


DEFAULT_RETRY_POLICY: RetryPolicy = {
    "first_interval_seconds": 1.0,
    "backoff_coefficient": 2.0,
    "max_interval_seconds": 60.0,
    "max_attempts": 5,
}


def jitter_factor(instance_id: str, key: str, attempt: int) -> float:
    """A factor in [JITTER_MIN, 1.0] derived from (instance id, key, attempt): the same on every replay."""
    digest = hashlib.sha256(f"{instance_id}|{key}|{attempt}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return JITTER_MIN + (1.0 - JITTER_MIN) * fraction


def backoff_seconds(policy: RetryPolicy, instance_id: str, key: str, attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
    base = policy["first_interval_seconds"] * policy["backoff_coefficient"] ** (attempt - 1)
    return min(policy["max_interval_seconds"], base) * jitter_factor(instance_id, key, attempt)


@dataclass(frozen=True)
class StepFailure:
    """What a failed activity or sub-orchestration said, classified."""

    error_type: str
    message: str
    retryable: bool


def classify_failure(error: BaseException | str) -> StepFailure:
    """Read the exception the SDK raises for a failed task ("Activity function 'x' failed: Type: msg ...")."""
    text = str(error)
    marked = _MARKED.search(text)
    if marked:
        return StepFailure(marked["type"], _one_line(marked["message"]) or marked["type"], retryable=False)
    first_line = text.strip().splitlines()[0] if text.strip() else "the step failed"
    message = _EXCEPTION_TYPE.sub("", _ACTIVITY_PREFIX.sub("", first_line), count=1)
    return StepFailure("step_failed", _one_line(message) or "the step failed", retryable=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def policy_from(data: Any) -> RetryPolicy:
    """A RetryPolicy from an activity's JSON output, with defaults for missing fields."""
    source = data if isinstance(data, dict) else {}
    defaults = DEFAULT_RETRY_POLICY
    return {
        "first_interval_seconds": float(source.get("first_interval_seconds", defaults["first_interval_seconds"])),
        "backoff_coefficient": float(source.get("backoff_coefficient", defaults["backoff_coefficient"])),
        "max_interval_seconds": float(source.get("max_interval_seconds", defaults["max_interval_seconds"])),
        "max_attempts": int(source.get("max_attempts", defaults["max_attempts"])),
    }
