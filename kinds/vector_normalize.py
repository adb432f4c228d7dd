"""`vector-normalize`: L2-normalize vectors given as one JSON document or as NDJSON (one array per line).

From the reference design's `process_vector_data`. A JSON document `{"vector_data": [...], "metadata": {...}}`
is one chunk (it has to be parsed whole); NDJSON is split into byte ranges on line boundaries.
"""

from __future__ import annotations

import codecs
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator, model_validator

from kinds.base import ByteSource, ChunkStopped, ExactPlan, NonRetryableError, chunk_size_bytes, require_source

NAME = "vector-normalize"
JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

WORK_BYTES_PER_SECOND = 10_000_000
"""NDJSON one worker thread normalizes per second (measured: 4 MB of 16-component vectors in 0.4 s)."""

VECTORS_PER_STOP_CHECK = 2048
_MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
"""A JSON document is parsed whole; larger inputs must come as NDJSON."""

MAX_METADATA_DEPTH = 64
"""Levels of arrays and objects `metadata` may nest (the metadata object is the first). The metadata travels
through the result document, whose readers and writers recurse; a fixed limit refuses deep input the same way
on every host, where Python's recursion limit would fail it at a depth that depends on the caller's stack."""

_TOO_DEEP = "the input is nested too deeply to parse"


class NoOptions(BaseModel):
    """`vector-normalize` takes no options."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


_Vector = Annotated[list[FiniteFloat], Field(json_schema_extra={"minItems": 1})]


class VectorInput(BaseModel):
    """The JSON input: one flat vector or a list of vectors, all of the same length, plus free metadata."""

    model_config = ConfigDict(strict=True, extra="forbid")

    # The minimum sizes are checked by _check_shape (with its own messages); declared too, so the OpenAPI
    # document refuses what the service refuses.
    vector_data: Annotated[list[_Vector] | list[FiniteFloat], Field(json_schema_extra={"minItems": 1})]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _check_depth(cls, value: dict[str, Any]) -> dict[str, Any]:
        if nesting_depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> VectorInput:
        check_vectors(self.vectors())
        return self

    def vectors(self) -> list[list[float]]:
        """The vectors of the input (a single flat vector gives one)."""
        data = self.vector_data
        if data and not isinstance(data[0], list):
            return [data]
        return data  # type: ignore[return-value]


def vector_data_schema() -> dict[str, Any]:
    """The JSON schema of `vector_data`, for documents that take it in a body of their own (the reference's)."""
    schema = VectorInput.model_json_schema()["properties"]["vector_data"]
    return {key: value for key, value in schema.items() if key != "title"}


def nesting_depth(value: Any) -> int:
    """Levels of lists and dicts in a JSON value (a scalar is 0), counted without recursion."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in item if isinstance(child, list | dict))
    return depth


def check_vectors(vectors: list[list[float]]) -> int:
    """The common dimension of the vectors; ValueError if there are none, or they are empty or ragged."""
    if not vectors:
        raise ValueError("vector_data needs at least one vector")
    dimensions = len(vectors[0])
    if dimensions == 0:
        raise ValueError("vectors need at least one component")
    for position, vector in enumerate(vectors):
        if len(vector) != dimensions:
            raise ValueError(f"vector {position} has {len(vector)} components, expected {dimensions}")
    return dimensions


TINY = 2.0**-900
"""Below this largest component, a vector is scaled up before normalizing (see `normalize`)."""
_SCALE_UP = 2.0**1000


def normalize(vector: list[float]) -> tuple[list[float], bool]:
    """The L2-normalized vector, and whether it was a zero vector (which stays zero)."""
    largest = max((abs(x) for x in vector), default=0.0)
    if largest == 0.0:
        return [0.0] * len(vector), True
    if largest < TINY:
        # Subnormal components carry a few bits only: their norm rounds so coarsely that the "unit" vector
        # of [5e-324, 5e-324] would have length 0.7 or 1.4. A power of two scales them exactly into range.
        vector = [x * _SCALE_UP for x in vector]
    norm = math.hypot(*vector)  # no overflow for large components
    return [x / norm for x in vector], False


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _finite(x: Any) -> bool:
    """Whether a parsed JSON value is a number that is a finite double (a huge integer is not)."""
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, int) and not isinstance(x, bool):
        try:
            return math.isfinite(float(x))
        except OverflowError:  # over ~309 digits: no double holds it
            return False
    return False


def _parse_vector_line(line: bytes, where: int) -> list[float]:
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except ValueError as error:  # JSONDecodeError, invalid UTF-8, NaN/Infinity, over int's max str digits
        raise NonRetryableError("invalid_input", f"line at byte {where} is not a JSON array: {error}") from None
    except RecursionError:
        raise NonRetryableError("invalid_input", f"line at byte {where}: {_TOO_DEEP}") from None
    if not isinstance(value, list) or not all(map(_finite, value)):
        raise NonRetryableError("invalid_input", f"line at byte {where} is not an array of finite numbers")
    return [float(x) for x in value]


def _lines(source: ByteSource, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its line end) for the non-blank lines of [start, end)."""
    carry = b""
    carry_at = start
    offset = start
    for block in source.stream(start, end - start):
        data = carry + block if carry else block
        base = carry_at if carry else offset
        position = 0
        while True:
            newline = data.find(b"\n", position)
            if newline < 0:
                break
            line = data[position:newline]
            if line.strip():
                yield base + position, line
            position = newline + 1
        carry, carry_at = data[position:], base + position
        offset += len(block)
    if carry.strip():
        yield carry_at, carry


def _document_start(source: ByteSource) -> bytes:
    head = source.read(0, min(source.size, 4096))
    return head.removeprefix(codecs.BOM_UTF8).lstrip()[:1]


def _read_document(source: ByteSource) -> VectorInput:
    if source.size > _MAX_DOCUMENT_BYTES:
        raise NonRetryableError("invalid_input", "JSON documents over 256 MB are not supported: use NDJSON")
    data = source.read(0, source.size).removeprefix(codecs.BOM_UTF8)
    try:
        return VectorInput.model_validate(json.loads(data, parse_constant=_reject_constant))
    except ValidationError as error:
        raise NonRetryableError("invalid_input", _first_error(error)) from None
    except ValueError as error:
        raise NonRetryableError("invalid_input", f"the input is not valid JSON: {error}") from None
    except RecursionError:
        raise NonRetryableError("invalid_input", _TOO_DEEP) from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


class VectorNormalize(ExactPlan):
    """The `vector-normalize` job kind."""

    name = NAME
    description = "L2-normalizes vectors: one JSON document (vector_data, metadata) or NDJSON, one array a line."
    requires_input = True
    input_content_types: tuple[str, ...] = (JSON, NDJSON)
    options_model = NoOptions
    input_model = VectorInput
    render_formats: Mapping[str, str] = {"ndjson": NDJSON, "csv": CSV_MEDIA_TYPE}
    streams_chunks = False  # a chunk's normalized vectors are its partial, held whole

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """No options: anything given is an error."""
        return NoOptions.model_validate(dict(raw)).model_dump()

    def validate_inline_input(self, data: Any) -> None:
        """Check a JSON `input`; raises pydantic.ValidationError."""
        VectorInput.model_validate(data)

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """A JSON document is one chunk; NDJSON is split on line boundaries. Validates every vector."""
        source = require_source(source)
        if source.size == 0:
            raise NonRetryableError("invalid_input", "the input is empty")
        first = _document_start(source)
        if first == b"{":
            document = _read_document(source)
            return [{"index": 0, "format": "json", "start": 0, "end": source.size, "vectors": len(document.vectors())}]
        if first != b"[":
            raise NonRetryableError("invalid_input", "expected a JSON object or NDJSON arrays of numbers")
        chunk_bytes = chunk_size_bytes(source.size, target_chunk_bytes, max_chunks)
        chunks: list[dict[str, Any]] = []
        dimensions = -1
        start, vectors = 0, 0
        for offset, line in _lines(source, 0, source.size):
            if offset - start >= chunk_bytes and vectors:
                chunks.append({"index": len(chunks), "format": "ndjson", "start": start, "end": offset})
                chunks[-1]["vectors"] = vectors
                start, vectors = offset, 0
            vector = _parse_vector_line(line.removeprefix(codecs.BOM_UTF8) if offset == 0 else line, offset)
            if dimensions < 0:
                dimensions = len(vector)
                if dimensions == 0:
                    raise NonRetryableError("invalid_input", "vectors need at least one component")
            elif len(vector) != dimensions:
                raise NonRetryableError(
                    "invalid_input", f"line at byte {offset} has {len(vector)} components, expected {dimensions}"
                )
            vectors += 1
        if dimensions < 0:
            raise NonRetryableError("invalid_input", "the input has no vectors")
        chunks.append({"index": len(chunks), "format": "ndjson", "start": start, "end": source.size})
        chunks[-1]["vectors"] = vectors
        return chunks

    def process_chunk(
        self,
        source: ByteSource | None,
        chunk: dict[str, Any],
        options: dict[str, Any],
        attempt: int,
        should_stop: Callable[[], bool],
    ) -> dict[str, Any]:
        """The normalized vectors of one chunk, in input order."""
        source = require_source(source)
        if should_stop():
            raise ChunkStopped(f"chunk {chunk.get('index')} stopped before it started")
        metadata: dict[str, Any] = {}
        if chunk.get("format") == "json":
            document = _read_document(source)
            vectors: Iterable[list[float]] = document.vectors()
            metadata = document.metadata
        else:
            start, end = int(chunk["start"]), int(chunk["end"])
            vectors = (
                _parse_vector_line(line.removeprefix(codecs.BOM_UTF8) if offset == 0 else line, offset)
                for offset, line in _lines(source, start, end)
            )
        normalized: list[list[float]] = []
        zero_vectors = 0
        for position, vector in enumerate(vectors, start=1):
            unit, was_zero = normalize(vector)
            normalized.append(unit)
            zero_vectors += was_zero
            if position % VECTORS_PER_STOP_CHECK == 0 and should_stop():
                raise ChunkStopped(f"stopped after {position} vectors")
        return {
            "index": chunk.get("index", 0),
            "vectors": normalized,
            "zero_vectors": zero_vectors,
            "metadata": metadata,
        }

    def work_seconds(self, input_size: int, chunks: Sequence[dict[str, Any]], options: dict[str, Any]) -> float | None:
        """Proportional to the input's size."""
        return input_size / WORK_BYTES_PER_SECOND

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """All normalized vectors in input order, with counts and the metadata."""
        ordered = sorted(partials, key=lambda partial: int(partial.get("index", 0)))
        vectors = [vector for partial in ordered for vector in partial["vectors"]]
        metadata: dict[str, Any] = {}
        for partial in ordered:
            metadata.update(partial.get("metadata") or {})
        return {
            "vectors": vectors,
            "processed_vectors": len(vectors),
            "dimensions": len(vectors[0]) if vectors else 0,
            "zero_vectors": sum(int(partial["zero_vectors"]) for partial in ordered),
            "status": "indexed",
            "metadata_processed": metadata,
        }

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """Counts and status, without the vectors."""
        return {
            "processed_vectors": result.get("processed_vectors", 0),
            "dimensions": result.get("dimensions", 0),
            "zero_vectors": result.get("zero_vectors", 0),
            "status": result.get("status"),
        }

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """Formats: ndjson (one vector per line) or csv (one vector per row); None for other formats.

        The CSV holds numbers only (`repr` of floats), which no spreadsheet reads as a formula: nothing to escape.
        """
        vectors: list[list[float]] = result.get("vectors", [])
        if fmt == "ndjson":
            return b"".join(json.dumps(v).encode() + b"\n" for v in vectors), NDJSON
        if fmt == "csv":
            out = io.StringIO()
            out.writelines(",".join(repr(x) for x in v) + "\r\n" for v in vectors)
            return out.getvalue().encode(), CSV_MEDIA_TYPE
        return None


KIND = VectorNormalize()
