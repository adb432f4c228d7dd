"""simulate: failures by attempt, stopping through should_stop, a checksum that catches double counting."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from kinds import get_kind
from kinds.base import ChunkStopped, NonRetryableError, parse_non_retryable
from kinds.simulate import KIND, PERMANENT_FAILURE_TYPE, SimulatedFailure, expected_checksum


def never() -> bool:
    return False


def test_defaults_and_plan() -> None:
    options = KIND.parse_options({})
    assert options == {"chunks": 4, "chunk_seconds": 0.0, "transient_failures": 0, "permanent_failure": False}
    assert KIND.plan(None, options, 1024, 10) == [{"index": i} for i in range(4)]


@pytest.mark.parametrize(
    "raw",
    [{"chunks": 0}, {"chunks": 1001}, {"chunk_seconds": -1}, {"chunk_seconds": 61}, {"chunks": "4"}, {"x": 1}],
)
def test_invalid_options_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        KIND.parse_options(raw)


def test_transient_failures_fail_the_first_attempts_then_succeed() -> None:
    options = KIND.parse_options({"chunks": 2, "transient_failures": 2})
    for chunk in KIND.plan(None, options, 1024, 10):
        for attempt in (1, 2):
            with pytest.raises(SimulatedFailure):
                KIND.process_chunk(None, chunk, options, attempt, never)
        assert KIND.process_chunk(None, chunk, options, 3, never)["index"] == chunk["index"]


def test_permanent_failure_is_non_retryable() -> None:
    """A permanent failure is one no retry can help: chunk 0 raises the non-retryable error on its first try."""
    options = KIND.parse_options({"chunks": 2, "permanent_failure": True})
    chunk0, chunk1 = KIND.plan(None, options, 1024, 10)
    with pytest.raises(NonRetryableError) as caught:
        KIND.process_chunk(None, chunk0, options, 1, never)
    assert caught.value.error_type == PERMANENT_FAILURE_TYPE == "simulated_failure"
    assert parse_non_retryable(f"Activity function 'process_chunk' failed: {caught.value}") == (
        "simulated_failure",
        "simulated permanent failure of chunk 0 (attempt 1)",
    )
    KIND.process_chunk(None, chunk1, options, 1, never)


def test_should_stop_stops_a_sleeping_chunk_quickly() -> None:
    options = KIND.parse_options({"chunks": 1, "chunk_seconds": 30})
    started = time.monotonic()
    with pytest.raises(ChunkStopped):
        KIND.process_chunk(None, {"index": 0}, options, 1, lambda: time.monotonic() - started > 0.2)
    assert time.monotonic() - started < 1.0


def test_chunk_seconds_is_slept() -> None:
    options = KIND.parse_options({"chunks": 1, "chunk_seconds": 0.2})
    started = time.monotonic()
    KIND.process_chunk(None, {"index": 0}, options, 1, never)
    assert 0.2 <= time.monotonic() - started < 1.0


def test_merge_checksum_detects_a_chunk_counted_twice() -> None:
    options = KIND.parse_options({"chunks": 5})
    partials = [KIND.process_chunk(None, c, options, 1, never) for c in KIND.plan(None, options, 1024, 10)]
    result = KIND.merge(partials, options)
    assert result == {"chunks": 5, "checksum": expected_checksum(5)}
    assert KIND.merge([*partials, partials[0]], options)["checksum"] != expected_checksum(5)
    assert KIND.summarize(result) == result
    assert KIND.render(result, "csv") is None


def test_only_registered_when_enabled() -> None:
    assert get_kind("simulate", simulate_enabled=False) is None
    assert get_kind("simulate", simulate_enabled=True) is KIND
    assert not KIND.requires_input
    with pytest.raises(ValueError):
        KIND.validate_inline_input({"x": 1})
    KIND.validate_inline_input(None)
