"""Strict, bounded JSON parsing for request bodies and queue messages."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from jobs.errors import MalformedRequest, field_error

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
MAX_JSON_DEPTH = 32
"""Deeper documents are refused: no job request needs them, and they cost recursion."""


def _first_fault(data: Any, limit: int) -> str | None:
    """What the parsed document holds that a request may not, in one walk: nesting deeper than `limit`
    ("depth"), or a number no double holds ("range": 1e999 is valid JSON grammar, read as infinity, which no
    JSON encoder writes back, so the request's canonical form would fail on it later)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return "depth"
            for child in value.values() if isinstance(value, dict) else value:
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif child.__class__ is float and not math.isfinite(child):
                    return "range"
        elif value.__class__ is float and not math.isfinite(value):
            return "range"
    return None


def parse_json(body: bytes, what: str = "body") -> Any:
    """Strict JSON from UTF-8 bytes: MalformedRequest for anything malformed, invalid UTF-8, NaN or deep nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            "the body is not valid UTF-8", errors=[field_error(what, f"invalid UTF-8 at byte {exc.start}")]
        ) from None
    if not text.strip():
        raise MalformedRequest("the body is empty", errors=[field_error(what, "a JSON object is required")])

    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_members)
    except RecursionError:
        raise MalformedRequest(
            "the JSON is nested too deeply", errors=[field_error(what, "nested too deeply")]
        ) from None
    except ValueError as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise MalformedRequest("the body is not valid JSON", errors=[field_error(what, message)]) from None
    fault = _first_fault(data, MAX_JSON_DEPTH)
    if fault == "depth":
        raise MalformedRequest(
            f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep",
            errors=[field_error(what, f"at most {MAX_JSON_DEPTH} levels of nesting")],
        )
    if fault == "range":
        raise MalformedRequest(
            "the body is not valid JSON", errors=[field_error(what, "a number is out of the range of a double")]
        )
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise MalformedRequest(
            "the JSON holds a lone UTF-16 surrogate",
            errors=[field_error(what, "lone surrogate escape (\\uD800-\\uDFFF)")],
        )
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 leaves duplicate names to the parser; a proxy or client that keeps the first of two "kind"s
    # would disagree with this one, which keeps the last, about what was asked. Refused, never guessed.
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("an object has the same member name twice")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
