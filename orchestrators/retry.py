"""Retries on durable timers: exponential backoff with a cap and deterministic jitter.

The Python Durable SDK 1.x only offers constant-delay retries and cannot tell a bad input from a
flaky dependency, so the orchestrators schedule their own backoff timers. Everything here is a pure
function of the instance id, a key and the attempt number, so replays compute the same schedule.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.contracts import RetryPolicy

JITTER_MIN = 0.5
"""Each delay is scaled by a factor in [JITTER_MIN, 1.0] so that chunks failing together retry apart."""


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
