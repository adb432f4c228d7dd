"""vector-normalize: L2 normalization of JSON or NDJSON input, NDJSON chunked on line boundaries."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kinds import get_kind
from kinds.base import BytesSource, ChunkStopped, NonRetryableError
from kinds.vector_normalize import KIND


def never() -> bool:
    return False


def run(data: bytes, target: int = 1 << 20, max_chunks: int = 100, block_bytes: int = 1 << 20) -> dict[str, Any]:
    source = BytesSource(data, block_bytes=block_bytes)
    plan = KIND.plan(source, KIND.parse_options({}), target, max_chunks)
    assert 1 <= len(plan) <= max_chunks
    partials = [json.loads(json.dumps(KIND.process_chunk(source, c, {}, 1, never))) for c in plan]
    return KIND.merge(reversed(partials), {})  # merge orders partials by chunk index


def test_normalizes_each_vector_and_counts_zero_vectors() -> None:
    data = {"vector_data": [[3, 4], [0, 0], [-2.0, 0]], "metadata": {"source": "test", "n": 1}}
    KIND.validate_inline_input(data)
    assert run(json.dumps(data).encode()) == {
        "vectors": [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]],
        "processed_vectors": 3,
        "dimensions": 2,
        "zero_vectors": 1,
        "status": "indexed",
        "metadata_processed": {"source": "test", "n": 1},
    }


def test_a_flat_vector_is_one_vector() -> None:
    data = {"vector_data": [1, 2, 2]}
    KIND.validate_inline_input(data)
    result = run(json.dumps(data).encode())
    assert result["vectors"] == [[1 / 3, 2 / 3, 2 / 3]]
    assert (result["processed_vectors"], result["dimensions"], result["metadata_processed"]) == (1, 3, {})


def test_huge_and_tiny_components_do_not_overflow() -> None:
    result = run(b"[1e308, 1e308]\n[1e-320, 0]\n")
    assert result["vectors"][0] == pytest.approx([math.sqrt(0.5)] * 2)
    assert result["vectors"][1] == [1.0, 0.0]


def test_subnormal_vectors_normalize_to_unit_length() -> None:
    """Found by hypothesis: [5e-324, 5e-324] normalized to length 1.41 before scaling subnormals into range."""
    result = run(b"[5e-324, 5e-324]\n[5e-324, 1.5e-323]\n[-1e-310, 3e-310]\n")
    for unit in result["vectors"]:
        assert math.hypot(*unit) == pytest.approx(1.0, rel=1e-12)
    assert result["vectors"][0] == pytest.approx([math.sqrt(0.5)] * 2, rel=1e-15)


BAD_INPUTS = [
    {"vector_data": []},
    {"vector_data": [[]]},
    {"vector_data": [[1, 2], [1]]},
    {"vector_data": [1, [2]]},
    {"vector_data": [float("nan")]},
    {"vector_data": [[1.0, float("inf")]]},
    {"vector_data": [True, 1]},
    {"vector_data": ["1"]},
    {"vector_data": "1,2"},
    {"metadata": {}},
    {"vector_data": [1], "metadata": "x"},
    {"vector_data": [1], "extra": 1},
    [1, 2],
    None,
]


@pytest.mark.parametrize("data", BAD_INPUTS)
def test_invalid_inline_input_is_rejected_at_submit(data: Any) -> None:
    with pytest.raises(ValidationError):
        KIND.validate_inline_input(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"not json",
        b'{"vector_data": []}',
        b'{"vector_data": [[1, 2], [3]]}',
        b'{"vector_data": [NaN]}',
        b'{"vector_data": [1, 2]',
        b"[1, 2]\n[3]\n",
        b"[1, 2]\n[NaN, 1]\n",
        b"[1, 2]\n[1e999, 1]\n",
        b"[1, 2]\n[true, 1]\n",
        b'[1, 2]\n{"a": 1}\n',
        b"[]\n",
        b"[1, 2]\n[1, 2\n",
        b"[1, \xff]\n",
    ],
)
def test_invalid_blob_input_fails_the_plan(data: bytes) -> None:
    with pytest.raises(NonRetryableError) as caught:
        KIND.plan(BytesSource(data), {}, 1024, 10)
    assert caught.value.error_type == "invalid_input"


def test_options_are_rejected() -> None:
    assert KIND.parse_options({}) == {}
    with pytest.raises(ValidationError):
        KIND.parse_options({"norm": "l1"})


def test_should_stop_stops_the_chunk() -> None:
    source = BytesSource(b"[1, 2]\n" * 5000)
    (chunk,) = KIND.plan(source, {}, source.size, 1)
    with pytest.raises(ChunkStopped):
        KIND.process_chunk(source, chunk, {}, 1, lambda: True)


def test_render_and_summary() -> None:
    result = run(b"[3, 4]\n[0, 0]\n")
    assert KIND.summarize(result) == {"processed_vectors": 2, "dimensions": 2, "zero_vectors": 1, "status": "indexed"}
    assert KIND.render(result, "ndjson") == (b"[0.6, 0.8]\n[0.0, 0.0]\n", "application/x-ndjson")
    body, content_type = KIND.render(result, "csv") or (b"", "")
    assert body == b"0.6,0.8\r\n0.0,0.0\r\n" and content_type.startswith("text/csv")
    assert KIND.render(result, "xml") is None


def test_registered() -> None:
    assert get_kind("vector-normalize", simulate_enabled=False) is KIND
    assert set(KIND.input_content_types) == {"application/json", "application/x-ndjson"}


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 5).flatmap(lambda d: st.lists(st.lists(finite, min_size=d, max_size=d), min_size=1, max_size=30)),
    st.integers(1, 200),
    st.integers(1, 20),
    st.integers(1, 50),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_ndjson_chunking_equals_whole_input_processing(
    vectors: list[list[float]], target: int, max_chunks: int, block_bytes: int, newline: str, blank_lines: bool
) -> None:
    lines = [json.dumps(v) + newline + (newline if blank_lines else "") for v in vectors]
    ndjson = "".join(lines).encode()
    chunked = run(ndjson, target=target, max_chunks=max_chunks, block_bytes=block_bytes)
    whole = run(json.dumps({"vector_data": vectors}).encode())
    assert chunked == whole
    assert chunked["processed_vectors"] == len(vectors)
    assert chunked["zero_vectors"] == sum(all(x == 0 for x in v) for v in vectors)
    for unit, was_zero in zip(chunked["vectors"], [all(x == 0 for x in v) for v in vectors], strict=True):
        norm = math.hypot(*unit)
        assert norm == 0.0 if was_zero else norm == pytest.approx(1.0, rel=1e-12)


# --- deterministic input errors are invalid_input, never retried (#16 item 7) ------------------------------

DEEP = 100_000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"[1, 2]\n[" + b"9" * 401 + b", 1]\n", "finite numbers"),  # float() of it overflows
        (b"[1, 2]\n[-" + b"9" * 4000 + b", 1]\n", "finite numbers"),
        (b"[1, 2]\n[" + b"9" * 5000 + b", 1]\n", "not a JSON array"),  # past int's max str digits
        (b"[1, 2]\n" + nested(DEEP) + b"\n", "nested too deeply"),  # RecursionError in the parser
        (b'{"vector_data": [1, 2], "metadata": {"a": ' + nested(DEEP) + b"}}", "nested too deeply"),
        (b'{"vector_data": [1, 2], "metadata": {"a": ' + nested(200) + b"}}", "nested deeper than"),
        (b'{"vector_data": [1, 2], "metadata": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, "nested deeper than"),
        (b'{"vector_data": [' + b"9" * 401 + b", 1]}", "vector_data"),
    ],
    ids=[
        "401-digits",
        "4000-digits",
        "5000-digits",
        "deep-line",
        "deep-metadata",
        "metadata-200",
        "objects-200",
        "document-401",
    ],
)
def test_deterministic_input_errors_are_invalid_input(data: bytes, says: str) -> None:
    """Errors of the input itself raise NonRetryableError from plan and process_chunk: one attempt, no retries."""
    source = BytesSource(data)
    with pytest.raises(NonRetryableError) as caught:
        KIND.plan(source, {}, 1024, 10)
    assert caught.value.error_type == "invalid_input" and says in caught.value.message
    fmt = "json" if data.startswith(b"{") else "ndjson"
    chunk = {"index": 0, "format": fmt, "start": 0, "end": source.size, "vectors": 2}
    with pytest.raises(NonRetryableError) as again:
        KIND.process_chunk(source, chunk, {}, 1, never)
    assert again.value.error_type == "invalid_input"


def test_metadata_up_to_the_depth_limit_is_kept() -> None:
    from kinds.vector_normalize import MAX_METADATA_DEPTH

    metadata: Any = 1
    for _ in range(MAX_METADATA_DEPTH):
        metadata = {"a": metadata}
    document = {"vector_data": [3, 4], "metadata": metadata}
    KIND.validate_inline_input(document)
    assert run(json.dumps(document).encode())["metadata_processed"] == metadata
    with pytest.raises(ValidationError, match="nested deeper than"):
        KIND.validate_inline_input({"vector_data": [3, 4], "metadata": {"b": metadata}})


def test_inline_input_nested_deeper_than_python_recursion_is_a_validation_error() -> None:
    metadata: Any = []
    for _ in range(DEEP):
        metadata = [metadata]
    with pytest.raises(ValidationError, match="nested deeper than"):
        KIND.validate_inline_input({"vector_data": [1], "metadata": {"a": metadata}})
