"""`simulate`: no input, configurable duration and failures; for demos and fault-injection tests.

Only registered when ENABLE_SIMULATE_KIND is true (never in Azure).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kinds.base import ByteSource, ChunkStopped, ExactPlan, NonRetryableError

NAME = "simulate"
TEST_ONLY = True
"""Registered only where ENABLE_SIMULATE_KIND is true."""

PERMANENT_FAILURE_TYPE = "simulated_failure"
"""The error type of the job `permanent_failure` fails."""

_SLEEP_STEP_SECONDS = 0.05
"""How often a sleeping chunk checks `should_stop()`."""


class SimulatedFailure(RuntimeError):
    """A retryable failure injected by the options."""


class SimulateOptions(BaseModel):
    """Options of `simulate`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    chunks: int = Field(default=4, ge=1, le=1000, description="Number of chunks.")
    chunk_seconds: float = Field(default=0.0, ge=0, le=60, description="Time each chunk takes.")
    transient_failures: int = Field(
        default=0, ge=0, le=100, description="Failed attempts of every chunk before it succeeds."
    )
    permanent_failure: bool = Field(
        default=False, description="Chunk 0 fails with a non-retryable error: the job fails after one attempt."
    )


def chunk_checksum(index: int) -> int:
    """The value chunk `index` contributes to the checksum."""
    return int.from_bytes(hashlib.sha256(f"simulate:{index}".encode()).digest()[:4], "big")


def expected_checksum(chunks: int) -> int:
    """The checksum of a job with `chunks` chunks, each counted once."""
    return sum(chunk_checksum(i) for i in range(chunks)) % (1 << 32)


class Simulate(ExactPlan):
    """The `simulate` job kind."""

    name = NAME
    description = "Demos and fault tests: no input, configurable chunk count, duration and failures."
    requires_input = False
    input_content_types: tuple[str, ...] = ()
    options_model = SimulateOptions
    input_model = None
    render_formats: Mapping[str, str] = {}
    streams_chunks = False

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated options with defaults filled in."""
        return SimulateOptions.model_validate(dict(raw)).model_dump()

    def validate_inline_input(self, data: Any) -> None:
        """`simulate` takes no input."""
        if data is not None:
            raise ValueError("simulate takes no input")

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """`chunks` chunks (the option decides, not the input size)."""
        parsed = SimulateOptions.model_validate(options)
        return [{"index": index} for index in range(parsed.chunks)]

    def process_chunk(
        self,
        source: ByteSource | None,
        chunk: dict[str, Any],
        options: dict[str, Any],
        attempt: int,
        should_stop: Callable[[], bool],
    ) -> dict[str, Any]:
        """Fail as configured, else sleep `chunk_seconds` (checking `should_stop`) and return the chunk's value."""
        parsed = SimulateOptions.model_validate(options)
        index = int(chunk["index"])
        if parsed.permanent_failure and index == 0:
            # Permanent means what a bad input means: no retry can help, so the job fails at once.
            raise NonRetryableError(
                PERMANENT_FAILURE_TYPE, f"simulated permanent failure of chunk 0 (attempt {attempt})"
            )
        if attempt <= parsed.transient_failures:
            raise SimulatedFailure(f"simulated transient failure of chunk {index} (attempt {attempt})")
        deadline = time.monotonic() + parsed.chunk_seconds
        while True:
            if should_stop():
                raise ChunkStopped(f"chunk {index} stopped")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(_SLEEP_STEP_SECONDS, remaining))
        return {"index": index, "value": chunk_checksum(index), "attempt": attempt}

    def work_seconds(self, input_size: int, chunks: Sequence[dict[str, Any]], options: dict[str, Any]) -> float | None:
        """Each chunk sleeps `chunk_seconds`."""
        return len(chunks) * SimulateOptions.model_validate(options).chunk_seconds

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """Chunk count and checksum: a chunk counted twice or missed changes the checksum."""
        values = [int(partial["value"]) for partial in partials]
        return {"chunks": len(values), "checksum": sum(values) % (1 << 32)}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """The whole (tiny) result."""
        return {"chunks": result.get("chunks"), "checksum": result.get("checksum")}

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """No other formats."""
        return None


KIND = Simulate()
