"""AsyncLongrunClient: the job API from asyncio code (httpx.AsyncClient); mirrors LongrunClient."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import httpx_sse

from longrun_client import wire
from longrun_client.errors import ConnectionFailed, ProblemError, WaitTimeout, parse_retry_after
from longrun_client.handle import (
    EVENTS_READ_TIMEOUT_SECONDS,
    MAX_EMPTY_STREAMS,
    JobFields,
    ProgressCallback,
    apply_event,
    events_url,
)
from longrun_client.models import DeadLetter, Health, JobSnapshot, JobStatus, UploadTicket
from longrun_client.retry import RETRY_STATUSES, RetryPolicy
from longrun_client.sync import DEFAULT_URL, PAGE_SIZE
from longrun_client.uploads import DEFAULT_BLOCK_BYTES, DEFAULT_CONCURRENCY, UploadProgress, upload_file


class AsyncJob(JobFields):
    """A submitted job, for asyncio code: refresh, wait, read and cancel it."""

    def __init__(self, client: AsyncLongrunClient, answer: wire.Accepted) -> None:
        self._client = client
        self._snapshot = JobSnapshot.from_json(answer.body)
        self._location = answer.location
        self._retry_after = answer.retry_after

    async def refresh(self) -> AsyncJob:
        """Read the job again (GET its Location)."""
        answer = wire.job_answer(await self._client._send("GET", self._location, idempotent=True))
        self._snapshot = JobSnapshot.from_json(answer.body)
        self._retry_after = answer.retry_after
        return self

    async def wait(self, timeout: float | None = None, on_progress: ProgressCallback | None = None) -> AsyncJob:
        """Until the job ends (SSE where the server streams, else polling as Retry-After says); WaitTimeout after
        `timeout` seconds, the job running on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if on_progress is not None:
            on_progress(self._snapshot)
        if not self.finished and self._client.events and await self._wait_events(deadline, timeout, on_progress):
            return self
        while not self.finished:
            delay = self._retry_after if self._retry_after is not None else 1.0
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(self._snapshot, timeout or 0.0)
                delay = min(delay, remaining)
            await asyncio.sleep(delay)
            before = self._snapshot
            await self.refresh()
            if on_progress is not None and self._snapshot != before:
                on_progress(self._snapshot)
        return self

    async def _wait_events(
        self, deadline: float | None, timeout: float | None, on_progress: ProgressCallback | None
    ) -> bool:
        """Follow the event stream to its terminal event; False to fall back to polling."""
        last_event_id: str | None = None
        empty_streams = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(self._snapshot, timeout or 0.0)
            read = EVENTS_READ_TIMEOUT_SECONDS if remaining is None else min(remaining, EVENTS_READ_TIMEOUT_SECONDS)
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            resumed_from = last_event_id
            try:
                async with httpx_sse.aconnect_sse(
                    self._client._http, "GET", events_url(self._location),
                    headers=headers, timeout=httpx.Timeout(10.0, read=read),
                ) as source:  # fmt: skip
                    response = source.response
                    if response.status_code == 404:
                        self._client.events = False
                        return False
                    if response.status_code != 200 or "text/event-stream" not in response.headers.get(
                        "content-type", ""
                    ):
                        return False
                    async for event in source.aiter_sse():
                        if event.id:
                            last_event_id = event.id
                        before = self._snapshot
                        self._snapshot, terminal = apply_event(self._snapshot, event.event, event.data)
                        if on_progress is not None and self._snapshot != before:
                            on_progress(self._snapshot)
                        if terminal:
                            return True
            except httpx.TimeoutException:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(self._snapshot, timeout or 0.0) from None
            except (httpx.TransportError, httpx_sse.SSEError):
                return False
            # The stream ended without a terminal event (servers end streams before the platform's response
            # limit): if the job has ended, say so; if streams keep ending empty, poll; else resume after
            # the last event seen.
            before = self._snapshot
            await self.refresh()
            if on_progress is not None and self._snapshot != before:
                on_progress(self._snapshot)
            if self.finished:
                return True
            empty_streams = 0 if last_event_id != resumed_from else empty_streams + 1
            if empty_streams >= MAX_EMPTY_STREAMS:
                return False

    async def result(self, format: str | None = None) -> Any:  # noqa: A002 - the API's parameter name
        """The full result document (parsed JSON), or the rendered bytes for `format`."""
        response = wire.checked(await self._client._send("GET", self._result_url(format), idempotent=True))
        return json.loads(response.content) if wire.is_json(response) else response.content

    async def result_to(self, path: str | os.PathLike[str], format: str | None = None) -> Path:  # noqa: A002
        """Stream the result into a file; returns its path."""
        target = Path(path)
        response = await self._client._send("GET", self._result_url(format), idempotent=True, stream=True)
        try:
            if wire.is_problem(response):
                await response.aread()
                raise ProblemError.from_response(response)
            partial = target.with_name(target.name + ".part")
            with open(partial, "wb") as out:
                async for block in response.aiter_bytes():
                    out.write(block)
            partial.replace(target)
        finally:
            await response.aclose()
        return target

    async def cancel(self) -> AsyncJob:
        """Ask the job to stop; a finished job stays as it was."""
        answer = wire.job_answer(await self._client._send("DELETE", self._location, idempotent=True))
        self._snapshot = JobSnapshot.from_json(answer.body)
        return self

    def _result_url(self, format: str | None) -> str:  # noqa: A002
        url = self._snapshot.links.get("result") or self._location.rstrip("/") + "/result"
        return f"{url}?{httpx.QueryParams({'format': format})}" if format else url


class AsyncLongrunClient:
    """The longrun job API for asyncio; the same arguments as LongrunClient."""

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
        all_headers = {"User-Agent": "longrun-client/0.1", **(headers or {})}
        if key:
            all_headers["x-functions-key"] = key
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=timeout, headers=all_headers)
        self.retry = retry or RetryPolicy()
        self.events = events
        self.max_inline_bytes = max_inline_bytes
        self.upload_block_bytes = upload_block_bytes
        self.upload_concurrency = upload_concurrency

    async def __aenter__(self) -> AsyncLongrunClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(
        self, method: str, url: str, *, idempotent: bool, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One call, tried again on connection errors and 429/502/503/504 when `idempotent`."""
        attempt = 0
        while True:
            request = self._http.build_request(method, url, **kwargs)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if not (idempotent and self.retry.should_retry(attempt)):
                    raise ConnectionFailed(f"{method} {request.url}: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if idempotent and response.status_code in RETRY_STATUSES and self.retry.should_retry(attempt):
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt, parse_retry_after(response.headers.get("retry-after"))))
                attempt += 1
                continue
            return response

    async def submit(
        self,
        kind: str,
        input: Any = None,  # noqa: A002 - the API's member name
        *,
        options: Mapping[str, Any] | None = None,
        file: str | os.PathLike[str] | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        deadline_seconds: int | None = None,
        callback: Mapping[str, Any] | None = None,
        upload_progress: UploadProgress | None = None,
    ) -> AsyncJob:
        """Submit a job: inline JSON `input`, or a `file` (posted when small, else uploaded); see LongrunClient."""
        if input is not None and file is not None:
            raise ValueError("give input or file, not both")
        headers = {"Idempotency-Key": idempotency_key or wire.new_idempotency_key()}
        if file is None:
            body = wire.envelope(
                kind, input=input, options=options, deadline_seconds=deadline_seconds, callback=callback
            )
            return await self._submit(headers=headers, json=body)
        path = Path(file)
        media_type = wire.content_type_of(path, content_type)
        size = path.stat().st_size
        if media_type == wire.JSON and size <= min(self.max_inline_bytes, wire.MAX_JSON_ENVELOPE_BYTES):
            document = json.loads(await asyncio.to_thread(path.read_bytes))
            body = wire.envelope(
                kind, input=document, options=options, deadline_seconds=deadline_seconds, callback=callback
            )
            return await self._submit(headers=headers, json=body)
        if media_type != wire.JSON and size <= self.max_inline_bytes and callback is None:
            return await self._submit(
                headers={**headers, "Content-Type": media_type},
                params=wire.raw_params(kind, options, deadline_seconds),
                content=await asyncio.to_thread(path.read_bytes),
            )
        ticket = await self.upload(path, media_type, progress=upload_progress)
        body = wire.envelope(
            kind, input_ref=ticket.input_ref, options=options, deadline_seconds=deadline_seconds, callback=callback
        )
        return await self._submit(headers=headers, json=body)

    async def _submit(self, **kwargs: Any) -> AsyncJob:
        return AsyncJob(self, wire.job_answer(await self._send("POST", "api/jobs", idempotent=True, **kwargs)))

    async def upload(
        self, file: str | os.PathLike[str], content_type: str, progress: UploadProgress | None = None
    ) -> UploadTicket:
        """Upload a file through /api/uploads (parallel blocks, in a worker thread); returns the ticket."""
        response = await self._send("POST", "api/uploads", idempotent=True, json={"content_type": content_type})
        ticket = UploadTicket.from_json(wire.json_body(response))
        await asyncio.to_thread(
            upload_file, ticket, Path(file), content_type,
            block_bytes=self.upload_block_bytes, concurrency=self.upload_concurrency, progress=progress,
        )  # fmt: skip
        return ticket

    async def job(self, job_id: str) -> AsyncJob:
        """The job with this id."""
        return AsyncJob(self, wire.job_answer(await self._send("GET", wire.job_path(job_id), idempotent=True)))

    async def jobs(
        self, *, status: str | JobStatus | None = None, kind: str | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[AsyncJob]:
        """Every job, newest first, following continuation pages."""
        params: dict[str, str] = {"limit": str(page_size)}
        if status:
            params["status"] = str(status.value if isinstance(status, JobStatus) else status)
        if kind:
            params["kind"] = kind
        async for item in self._pages("api/jobs", params):
            location = item.get("links", {}).get("self") or wire.job_path(item["id"])
            yield AsyncJob(self, wire.Accepted(item, location, None))

    async def dead_letters(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[DeadLetter]:
        """Every dead letter, newest first."""
        async for item in self._pages("api/dead-letters", {"limit": str(page_size)}):
            yield DeadLetter.from_json(item)

    async def _pages(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        continuation: str | None = None
        while True:
            query = {**params, **({"continuation": continuation} if continuation else {})}
            page = wire.json_body(await self._send("GET", path, idempotent=True, params=query))
            for item in page.get("items") or []:
                yield item
            continuation = page.get("continuation")
            if not continuation:
                return

    async def replay(self, dead_letter_id: str, *, idempotency_key: str | None = None) -> AsyncJob:
        """Submit a failed job's kind, options and input again as a new job."""
        headers = {"Idempotency-Key": idempotency_key or wire.new_idempotency_key()}
        path = f"api/dead-letters/{dead_letter_id}/replay"
        return AsyncJob(self, wire.job_answer(await self._send("POST", path, idempotent=True, headers=headers)))

    async def health(self) -> Health:
        """Storage reachability, queue depths and job counts; a 503 answer is returned, not raised."""
        response = await self._send("GET", "api/health", idempotent=False)
        if response.status_code == 503 and wire.is_json(response):
            return Health.from_json(response.json())
        return Health.from_json(wire.json_body(response))
