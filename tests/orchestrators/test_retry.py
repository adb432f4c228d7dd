"""The backoff schedule and failure classification the orchestrators rely on (pure functions)."""

from __future__ import annotations

import pytest

from orchestrators.retry import (
    DEFAULT_RETRY_POLICY,
    JITTER_MIN,
    backoff_seconds,
    jitter_factor,
    policy_from,
)
from shared.contracts import RetryPolicy
from shared.failures import classify_failure, non_retryable_message


def test_default_schedule_doubles_from_one_second_and_caps_at_sixty() -> None:
    delays = [backoff_seconds(DEFAULT_RETRY_POLICY, "job-1", "chunk-0", attempt) for attempt in range(1, 10)]
    bases = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    for delay, base in zip(delays, bases, strict=True):
        assert base * JITTER_MIN <= delay <= base


def test_jitter_is_a_pure_function_of_instance_key_and_attempt() -> None:
    assert jitter_factor("job-1", "chunk-3", 2) == jitter_factor("job-1", "chunk-3", 2)
    factors = {jitter_factor("job-1", f"chunk-{n}", 1) for n in range(50)}
    assert len(factors) == 50  # chunks failing together retry at different moments
    assert all(JITTER_MIN <= factor <= 1.0 for factor in factors)
    assert jitter_factor("job-1", "chunk-3", 2) != jitter_factor("job-2", "chunk-3", 2)


def test_test_settings_shrink_the_schedule() -> None:
    policy: RetryPolicy = {
        "first_interval_seconds": 0.2,
        "backoff_coefficient": 2.0,
        "max_interval_seconds": 1.0,
        "max_attempts": 3,
    }
    assert [round(min(1.0, 0.2 * 2 ** (a - 1)), 6) for a in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.0]
    for attempt, base in ((1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0)):
        assert base * JITTER_MIN <= backoff_seconds(policy, "j", "k", attempt) <= base


def test_a_marked_activity_failure_is_not_retryable_and_keeps_its_type() -> None:
    message = non_retryable_message("unknown_column", "column 'price' is not in the header")
    sdk_text = f'Activity function \'plan_job\' failed:  PermanentStepError: {message} \n {{"$type": "..."}}'
    failure = classify_failure(Exception(sdk_text))
    assert failure.retryable is False
    assert failure.error_type == "unknown_column"
    assert failure.message == "column 'price' is not in the header"


def test_an_ordinary_failure_is_retryable_with_a_one_line_message_without_stack() -> None:
    text = "Activity function 'process_chunk' failed: ConnectionError: storage hiccup \n Traceback (most recent..."
    failure = classify_failure(Exception(text))
    assert failure.retryable is True
    assert failure.message == "storage hiccup"


@pytest.mark.parametrize("data", [None, {}, {"max_attempts": 3}])
def test_policy_from_fills_defaults(data: object) -> None:
    policy = policy_from(data)
    assert policy["first_interval_seconds"] == DEFAULT_RETRY_POLICY["first_interval_seconds"]
    assert policy["max_attempts"] == (3 if data else DEFAULT_RETRY_POLICY["max_attempts"])
