"""The request and response shapes both clients share: submit bodies, file handling, URLs, answers."""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from longrun_client.errors import PROBLEM_CONTENT_TYPE, ProblemError, parse_retry_after

JSON = "application/json"
CSV = "text/csv"
NDJSON = "application/x-ndjson"
EXTENSION_TYPES = {".csv": CSV, ".json": JSON, ".ndjson": NDJSON, ".jsonl": NDJSON}
KIND_FOR_TYPE = {CSV: "csv-report", NDJSON: "vector-normalize", JSON: "vector-normalize"}
"""The kind a file's type suggests when the caller names none (the CLI's default)."""

DEFAULT_MAX_INLINE_BYTES = 4 * 1024 * 1024
"""Files above this go through /api/uploads (parallel blocks straight to Blob storage) instead of the POST."""
MAX_JSON_ENVELOPE_BYTES = 1024 * 1024 - 16 * 1024
"""The API's JSON limit is 1 MB; leave room for the envelope around an inline JSON input."""


def new_idempotency_key() -> str:
    """A fresh key, so that a retried submit names the job the first attempt may have created."""
    return f"longrun-client-{uuid.uuid4().hex}"


def content_type_of(path: Path, given: str | None = None) -> str:
    """The media type to send a file as: the caller's, else from its extension."""
    if given:
        return given
    guessed = EXTENSION_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if guessed not in (CSV, JSON, NDJSON):
        raise ValueError(f"cannot tell the content type of {path.name}: pass content_type (text/csv, ...)")
    return guessed


def kind_for(content_type: str) -> str:
    """The kind that reads this content type by default."""
    return KIND_FOR_TYPE[content_type]


def envelope(
    kind: str,
    *,
    input: Any = None,  # noqa: A002 - the API's member name
    input_ref: str | None = None,
    options: Mapping[str, Any] | None = None,
    deadline_seconds: int | None = None,
    callback: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON envelope of POST /api/jobs (members left out when not given)."""
    body: dict[str, Any] = {"kind": kind}
    if input is not None:
        body["input"] = input
    if input_ref is not None:
        body["input_ref"] = input_ref
    if options:
        body["options"] = dict(options)
    if deadline_seconds is not None:
        body["deadline_seconds"] = deadline_seconds
    if callback is not None:
        body["callback"] = dict(callback)
    return body


def query_value(value: Any) -> str:
    """A kind option as a raw submit's query parameter: lists comma-separated, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(query_value(item) for item in value)
    return str(value)


def raw_params(kind: str, options: Mapping[str, Any] | None, deadline_seconds: int | None) -> dict[str, str]:
    """The query of a raw-body submit: kind, deadline and the kind's options."""
    params = {"kind": kind}
    if deadline_seconds is not None:
        params["deadline_seconds"] = str(deadline_seconds)
    for name, value in (options or {}).items():
        params[name] = query_value(value)
    return params


@dataclass(frozen=True)
class Accepted:
    """A 202/200 job answer: the resource, where to poll it and when."""

    body: dict[str, Any]
    location: str
    retry_after: float | None


def is_problem(response: httpx.Response) -> bool:
    """Whether the response is a refusal (a problem body or any 4xx/5xx)."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.status_code >= 400 or content_type == PROBLEM_CONTENT_TYPE


def checked(response: httpx.Response) -> httpx.Response:
    """The response, or its ProblemError."""
    if is_problem(response):
        raise ProblemError.from_response(response)
    return response


def json_body(response: httpx.Response) -> Any:
    """The JSON of a successful answer."""
    return json.loads(checked(response).content)


def job_answer(response: httpx.Response) -> Accepted:
    """A job answer: Location followed as given (absolute, or relative to the request), else links.self."""
    body = json_body(response)
    location = response.headers.get("location")
    if location:
        location = urljoin(str(response.request.url), location)
    else:
        location = (body.get("links") or {}).get("self") or job_path(body["id"])
    return Accepted(body, location, parse_retry_after(response.headers.get("retry-after")))


def job_path(job_id: str) -> str:
    """The job's path relative to the base URL (which may carry a gateway's path prefix)."""
    return f"api/jobs/{job_id}"


def is_json(response: httpx.Response) -> bool:
    """Whether the answer's media type is JSON."""
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower() == JSON
