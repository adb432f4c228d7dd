"""When a call is tried again: connection errors and 429/502/503/504, with backoff that honours Retry-After.

Only idempotent calls retry: GET and DELETE, and POSTs that carry an Idempotency-Key (submit and replay
always send one, generated when the caller gave none), so a retried submit names the same job.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a call gets and how long to wait between them."""

    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    """A server's Retry-After is honoured up to this long; beyond it the call gives up instead of hanging."""

    def should_retry(self, attempt: int) -> bool:
        """Whether attempt number `attempt` (0-based, just failed) may be followed by another."""
        return attempt + 1 < self.max_attempts

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt `attempt`: the server's Retry-After, else jittered backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_seconds)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0**attempt)
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not cryptography


NO_RETRY = RetryPolicy(max_attempts=1)
