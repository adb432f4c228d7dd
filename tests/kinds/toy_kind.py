"""A toy job kind, `line-count`, written as a new kind would be: one module with a `KIND`.

Tests register it with `kinds.registered(KIND)` (or let discovery find a copy of this file) to show that a
kind needs nothing outside its own module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kinds.base import ByteSource, ChunkStopped, ExactPlan, require_source

NAME = "line-count"
TEXT = "text/plain; charset=utf-8"


class LineCountOptions(BaseModel):
    """Options of `line-count`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    skip_blank: bool = Field(default=False, description="Do not count lines that hold only spaces.")


class LineCount(ExactPlan):
    """Counts the lines of a plain-text input, one chunk per byte range."""

    name = NAME
    description = "Counts the lines of a text input (a toy kind for tests)."
    requires_input = True
    input_content_types: tuple[str, ...] = ("text/plain",)
    options_model = LineCountOptions
    input_model = None
    render_formats: Mapping[str, str] = {"text": TEXT}
    streams_chunks = False

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated options."""
        return LineCountOptions.model_validate(dict(raw)).model_dump()

    def validate_inline_input(self, data: Any) -> None:
        """Text comes as a raw body or an upload."""
        raise ValueError("line-count takes its input as text/plain")

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """One chunk: the whole input."""
        return [{"index": 0, "start": 0, "end": require_source(source).size}]

    def process_chunk(
        self,
        source: ByteSource | None,
        chunk: dict[str, Any],
        options: dict[str, Any],
        attempt: int,
        should_stop: Callable[[], bool],
    ) -> dict[str, Any]:
        """The number of lines of the chunk."""
        if should_stop():
            raise ChunkStopped("stopped")
        source = require_source(source)
        lines = source.read(chunk["start"], chunk["end"] - chunk["start"]).splitlines()
        if options.get("skip_blank"):
            lines = [line for line in lines if line.strip()]
        return {"index": chunk["index"], "lines": len(lines)}

    def work_seconds(self, input_size: int, chunks: Sequence[dict[str, Any]], options: dict[str, Any]) -> float | None:
        """No estimate: a job of several chunks runs staged."""
        return None

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """The total."""
        return {"lines": sum(int(partial["lines"]) for partial in partials)}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """The whole result."""
        return dict(result)

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """`text`: the count on one line."""
        if fmt != "text":
            return None
        return f"{result['lines']}\n".encode(), TEXT


KIND = LineCount()
