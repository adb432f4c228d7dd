"""Request models: a job submission as the two doors read it, and as the jobs layer takes it."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from jobs.callbacks import CallbackBody
from jobs.errors import IdempotencyKeyMalformed, InvalidRequest, errors_from_validation, field_error
from jobs.streamed_input import StagedInput

JSON_CONTENT_TYPE = "application/json"
IDENTITY_CODING = "identity"
"""The one content coding (RFC 9110 8.4) an input may have: none. Bodies and uploads are stored and read as
they are, so compressed bytes would be taken for the data."""
MAX_DEADLINE_SECONDS = 30 * 24 * 3600
MAX_KEY_LENGTH = 200
JOB_ID = re.compile(r"[0-9a-f]{32}")
_KEY = re.compile(r"[\x20-\x7e]{1,200}")


class SubmitBody(BaseModel):
    """The JSON request of POST /api/jobs (and of a jobs-inbox message, plus its idempotency_key)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: StrictStr = Field(min_length=1, max_length=64)
    input: Any = None
    input_ref: StrictStr | None = Field(default=None, max_length=300)
    options: dict[str, Any] = Field(default_factory=dict)
    deadline_seconds: StrictInt | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    priority: Literal["high", "normal", "low"] = "normal"
    callback: CallbackBody | None = None  # webhooks: checked in jobs.callbacks


class InboxMessage(SubmitBody):
    """A jobs-inbox message: the submission plus its own idempotency key."""

    idempotency_key: StrictStr | None = None


@dataclass
class JobRequest:
    """A validated submission, ready for the arbiter."""

    kind: str
    options: dict[str, Any]
    deadline_seconds: int | None
    input_bytes: bytes | None  # inline JSON (canonical) or a raw body, stored under the job's own name
    input_ref: str | None  # an existing blob (an upload, or a replayed job's input)
    input_content_type: str | None
    idempotency_key: str | None
    source: str
    priority: str = "normal"  # the admission lane: high, normal or low
    client: str = "anonymous"  # who submitted it (per-client admission caps)
    traceparent: str | None = None  # the caller's W3C trace context; not part of the request's identity
    callback: dict[str, Any] | None = None  # a checked Callback (jobs.callbacks), stored with the job
    # A large raw body, instead of input_bytes: `body` until the submit reads it, staging it under the
    # job's name as it arrives (jobs.submit.stream_input, inside the submit's span); `staged` once it has.
    body: AsyncIterator[bytes] | None = None
    staged: StagedInput | None = None

    def input_sha256(self) -> str | None:
        """The posted input's SHA-256, however it came in; None for an input by reference."""
        if self.staged is not None:
            return self.staged.sha256
        return hashlib.sha256(self.input_bytes).hexdigest() if self.input_bytes is not None else None

    def posted(self) -> bool:
        """Whether the input came with the request (a body to store under the job's name)."""
        return self.input_bytes is not None or self.staged is not None or self.body is not None

    def fingerprint(self) -> str:
        """What makes two requests the same request, whichever door they came through."""
        doc = {
            "kind": self.kind,
            "options": self.options,
            "deadline_seconds": self.deadline_seconds,
            "input_sha256": self.input_sha256(),
            "input_ref": self.input_ref,
            "input_content_type": self.input_content_type,
        }
        if self.priority != "normal":
            doc["priority"] = self.priority  # absent for normal, so fingerprints recorded before lanes still match
        if self.callback is not None:  # only then: fingerprints of requests without one stay as they were
            doc["callback"] = self.callback
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_coded(content_encoding: str | None) -> bool:
    """Whether a Content-Encoding (a request's header or a stored blob's property) names a coding other than
    identity, i.e. the bytes are not the data as they stand."""
    codings = (content_encoding or "").split(",")
    return any(coding.strip().lower() not in ("", IDENTITY_CODING) for coding in codings)


def check_idempotency_key(key: str | None) -> str | None:
    """None when absent; the key when it is 1-200 printable ASCII characters; else IdempotencyKeyMalformed."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyMalformed()
    return key


def key_hash(key: str) -> str:
    """The stored form of an idempotency key (never the key itself)."""
    return hashlib.sha256(b"longrun/idempotency-key/v1\0" + key.encode("ascii")).hexdigest()


def job_id_for(key: str | None) -> str:
    """Derived from the hashed key, so both doors name the same job; never the raw key."""
    return key_hash(key)[:32] if key is not None else uuid.uuid4().hex


def parse_body_model(data: Any, model: type[SubmitBody] = SubmitBody) -> SubmitBody:
    """The submission in a parsed JSON document; InvalidRequest naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request must be a JSON object", [field_error("body", "must be an object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("the request is not a valid job submission", errors_from_validation(exc)) from None
