"""What LongrunClient and AsyncLongrunClient share, without I/O: the settings, which request a call makes,
when a failed attempt is tried again, and how answers are read.

sync.py and aio.py only move bytes (httpx.Client or httpx.AsyncClient, time.sleep or asyncio.sleep); every
decision is made here, once, so the two clients cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar

import httpx

from longrun_client import wire
from longrun_client.errors import ConnectionFailed, parse_retry_after
from longrun_client.models import Health, JobStatus
from longrun_client.retry import RETRY_STATUSES, RetryPolicy
from longrun_client.uploads import DEFAULT_BLOCK_BYTES, DEFAULT_CONCURRENCY, UploadProgress

DEFAULT_URL = "http://127.0.0.1:7071"
PAGE_SIZE = 50
USER_AGENT = "longrun-client/0.1"

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class ClientSettings(Generic[HttpT]):
    """The arguments both clients take, and the httpx client each opens from them (`_open`)."""

    _http: HttpT

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        events: bool = True,
        max_inline_bytes: int = wire.DEFAULT_MAX_INLINE_BYTES,
        upload_block_bytes: int = DEFAULT_BLOCK_BYTES,
        upload_concurrency: int = DEFAULT_CONCURRENCY,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if key:
            all_headers["x-functions-key"] = key
        # The trailing slash makes relative paths ("api/jobs") land under a gateway's path prefix.
        self._http = self._open(base_url=base_url.rstrip("/") + "/", timeout=timeout, headers=all_headers)
        self.retry = retry or RetryPolicy()
        self.events = events
        self.max_inline_bytes = max_inline_bytes
        self.upload_block_bytes = upload_block_bytes
        self.upload_concurrency = upload_concurrency

    def _open(self, *, base_url: str, timeout: float, headers: dict[str, str]) -> HttpT:
        """The connection pool (httpx.Client or httpx.AsyncClient)."""
        raise NotImplementedError


class Attempts:
    """One call's attempts: whether a failed one is tried again, and after how long.

    Only idempotent calls are (GET, DELETE, and POSTs that carry an Idempotency-Key or create nothing lasting).
    """

    def __init__(self, policy: RetryPolicy, idempotent: bool) -> None:
        self._policy = policy
        self._idempotent = idempotent
        self._attempt = 0

    def after_error(self, request: httpx.Request, error: httpx.TransportError) -> float:
        """Seconds to wait before trying again after a connection error; ConnectionFailed when out of tries."""
        if not (self._idempotent and self._policy.should_retry(self._attempt)):
            raise ConnectionFailed(f"{request.method} {request.url}: {type(error).__name__}: {error}") from error
        return self._next(None)

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again (429/502/503/504, Retry-After honoured), or None: this is the answer."""
        if not (
            self._idempotent and response.status_code in RETRY_STATUSES and self._policy.should_retry(self._attempt)
        ):
            return None
        return self._next(parse_retry_after(response.headers.get("retry-after")))

    def _next(self, retry_after: float | None) -> float:
        delay = self._policy.delay(self._attempt, retry_after)
        self._attempt += 1
        return delay


@dataclass(frozen=True)
class Submission:
    """A submit, planned before any I/O: the file to read or to upload first (if any), then the POST to make."""

    kind: str
    input: Any
    options: Mapping[str, Any] | None
    deadline_seconds: int | None
    callback: Mapping[str, Any] | None
    headers: dict[str, str]
    read: Path | None = None
    """A file whose bytes go into the POST (inline JSON input, or a raw CSV/NDJSON body)."""
    upload: Path | None = None
    """A file to upload through /api/uploads first; the POST then names its input_ref."""
    media_type: str = wire.JSON

    def request(self, content: bytes | None = None) -> dict[str, Any]:
        """The POST /api/jobs keyword arguments; `content` is the bytes of `read`, when there is a file to read."""
        if content is None:
            return self._envelope(input=self.input)
        if self.media_type == wire.JSON:
            return self._envelope(input=json.loads(content))
        # A raw body (CSV, NDJSON) with the kind and options in the query; it cannot carry a callback.
        return {
            "headers": {**self.headers, "Content-Type": self.media_type},
            "params": wire.raw_params(self.kind, self.options, self.deadline_seconds),
            "content": content,
        }

    def by_reference(self, input_ref: str) -> dict[str, Any]:
        """The POST /api/jobs keyword arguments once the file is uploaded."""
        return self._envelope(input_ref=input_ref)

    def _envelope(self, *, input: Any = None, input_ref: str | None = None) -> dict[str, Any]:  # noqa: A002
        body = wire.envelope(
            self.kind, input=input, input_ref=input_ref, options=self.options,
            deadline_seconds=self.deadline_seconds, callback=self.callback,
        )  # fmt: skip
        return {"headers": self.headers, "json": body}


class SubmitOptions(TypedDict, total=False):
    """The keyword arguments of both clients' `submit(kind, input=None, **options)` (docs/client.md)."""

    options: Mapping[str, Any] | None
    """The kind's options."""
    file: str | os.PathLike[str] | None
    """A file to submit instead of `input`: posted when small, else uploaded to Blob storage."""
    content_type: str | None
    """The file's media type, when its extension does not tell."""
    idempotency_key: str | None
    """Names the job across retries and resubmits (a fresh key is generated when not given)."""
    deadline_seconds: int | None
    callback: Mapping[str, Any] | None
    """Where the server POSTs the job's events (webhooks)."""
    upload_progress: UploadProgress | None
    """Called with (bytes sent, total) while a file uploads."""


def plan_submit(kind: str, input: Any, given: SubmitOptions, max_inline_bytes: int) -> Submission:  # noqa: A002
    """How to submit: inline JSON `input`; a small file in the POST (as JSON, or raw); a larger one uploaded.

    Every submit carries an Idempotency-Key (a fresh one unless given), so a retry names the same job.
    """
    file, callback = given.get("file"), given.get("callback")
    if input is not None and file is not None:
        raise ValueError("give input or file, not both")
    headers = {"Idempotency-Key": given.get("idempotency_key") or wire.new_idempotency_key()}
    plan = Submission(kind, input, given.get("options"), given.get("deadline_seconds"), callback, headers)
    if file is None:
        return plan
    path = Path(file)
    media_type = wire.content_type_of(path, given.get("content_type"))
    size = path.stat().st_size
    if media_type == wire.JSON and size <= min(max_inline_bytes, wire.MAX_JSON_ENVELOPE_BYTES):
        return dataclasses.replace(plan, read=path, media_type=media_type)
    if media_type != wire.JSON and size <= max_inline_bytes and callback is None:
        return dataclasses.replace(plan, read=path, media_type=media_type)
    return dataclasses.replace(plan, upload=path, media_type=media_type)


def upload_request(content_type: str) -> dict[str, Any]:
    """The POST /api/uploads keyword arguments (an unused upload costs nothing: retention removes it)."""
    return {"json": {"content_type": content_type}}


def jobs_query(status: str | JobStatus | None, kind: str | None, page_size: int) -> dict[str, str]:
    """The query of GET /api/jobs."""
    params: dict[str, str] = {"limit": str(page_size)}
    if status:
        params["status"] = str(status.value if isinstance(status, JobStatus) else status)
    if kind:
        params["kind"] = kind
    return params


def listed_job(item: dict[str, Any]) -> wire.Accepted:
    """A job of a listing, as if answered by its own GET (polled at links.self)."""
    return wire.Accepted(item, item.get("links", {}).get("self") or wire.job_path(item["id"]), None)


class Pages:
    """A paged listing (jobs, dead letters): the query of the next page, and whether there is one."""

    def __init__(self, params: dict[str, str]) -> None:
        self._params = params
        self._continuation: str | None = None
        self.done = False

    @property
    def query(self) -> dict[str, str]:
        """The query of the next page."""
        return {**self._params, **({"continuation": self._continuation} if self._continuation else {})}

    def items(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The items of one page's answer; the last page (no continuation) ends the listing."""
        page = wire.json_body(response)
        self._continuation = page.get("continuation")
        self.done = not self._continuation
        return list(page.get("items") or [])


def replay_request(dead_letter_id: str, idempotency_key: str | None) -> tuple[str, dict[str, Any]]:
    """The path and keyword arguments of a dead letter's replay (always under an Idempotency-Key)."""
    headers = {"Idempotency-Key": idempotency_key or wire.new_idempotency_key()}
    return f"api/dead-letters/{dead_letter_id}/replay", {"headers": headers}


def health_of(response: httpx.Response) -> Health:
    """Health from GET /api/health: its JSON 503 (storage away) is an answer, not an error."""
    if response.status_code == 503 and wire.is_json(response):
        return Health.from_json(response.json())
    return Health.from_json(wire.json_body(response))


def result_value(response: httpx.Response) -> Any:
    """A result answer: the parsed JSON document, or the rendered bytes of another format."""
    wire.checked(response)
    return json.loads(response.content) if wire.is_json(response) else response.content


def partial_path(target: Path) -> Path:
    """Where a result streams to before it is renamed to `target`: never half a result under the real name."""
    return target.with_name(target.name + ".part")
