"""AsyncLongrunClient: the job API from asyncio code (httpx.AsyncClient); mirrors LongrunClient.

Only the I/O lives here; what to send, when to retry and how to read answers is in _core.py and handle.py,
shared with the blocking client (sync.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import httpx
import httpx_sse

from longrun_client import _core, wire
from longrun_client._core import PAGE_SIZE
from longrun_client.errors import ProblemError
from longrun_client.handle import EventResume, JobFields, ProgressCallback, WaitClock
from longrun_client.models import DeadLetter, Health, JobSnapshot, JobStatus, UploadTicket
from longrun_client.uploads import UploadProgress, upload_file


class AsyncJob(JobFields):
    """A submitted job, for asyncio code: refresh, wait, read and cancel it."""

    _client: AsyncLongrunClient

    async def refresh(self) -> AsyncJob:
        """Read the job again (GET its Location)."""
        self._answered(wire.job_answer(await self._client._send("GET", self._location, idempotent=True)))
        return self

    async def wait(self, timeout: float | None = None, on_progress: ProgressCallback | None = None) -> AsyncJob:
        """Until the job ends (SSE where the server streams, else polling as Retry-After says); WaitTimeout after
        `timeout` seconds, the job running on."""
        clock = WaitClock(timeout, on_progress, self._snapshot)
        if not self.finished and self._client.events and await self._wait_events(clock):
            return self
        while not self.finished:
            await asyncio.sleep(clock.poll_delay(self._snapshot, self._retry_after))
            await self._poll(clock)
        return self

    async def _poll(self, clock: WaitClock) -> None:
        before = self._snapshot
        await self.refresh()
        clock.changed(before, self._snapshot)

    async def _wait_events(self, clock: WaitClock) -> bool:
        """Follow the event stream to its terminal event; False to fall back to polling."""
        stream = EventResume()
        while True:
            try:
                async with httpx_sse.aconnect_sse(self._client._http, **self._stream_request(clock, stream)) as source:
                    if not self._stream_opened(source.response):
                        return False
                    async for event in source.aiter_sse():
                        if self._on_event(clock, stream, event):
                            return True
            except httpx.TimeoutException:
                clock.raise_if_expired(self._snapshot)
            except (httpx.TransportError, httpx_sse.SSEError):
                return False
            await self._poll(clock)
            if self.finished or not stream.worth_resuming():
                return self.finished

    async def result(self, format: str | None = None) -> Any:  # noqa: A002 - the API's parameter name
        """The full result document (parsed JSON), or the rendered bytes for `format`."""
        return _core.result_value(await self._client._send("GET", self._result_url(format), idempotent=True))

    async def result_to(self, path: str | os.PathLike[str], format: str | None = None) -> Path:  # noqa: A002
        """Stream the result into a file; returns its path."""
        target = Path(path)
        response = await self._client._send("GET", self._result_url(format), idempotent=True, stream=True)
        try:
            if wire.is_problem(response):
                await response.aread()
                raise ProblemError.from_response(response)
            partial = _core.partial_path(target)
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


class AsyncLongrunClient(_core.ClientSettings[httpx.AsyncClient]):
    """The longrun job API for asyncio; the same arguments as LongrunClient."""

    def _open(self, *, base_url: str, timeout: float, headers: dict[str, str]) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers)

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
        attempts = _core.Attempts(self.retry, idempotent)
        while True:
            request = self._http.build_request(method, url, **kwargs)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.after_error(request, exc))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return response
            await response.aclose()
            await asyncio.sleep(delay)

    async def submit(self, kind: str, input: Any = None, **given: Unpack[_core.SubmitOptions]) -> AsyncJob:  # noqa: A002
        """Submit a job: inline JSON `input`, or a `file` (posted when small, else uploaded); see LongrunClient."""
        plan = _core.plan_submit(kind, input, given, self.max_inline_bytes)
        if plan.upload is not None:
            ticket = await self.upload(plan.upload, plan.media_type, progress=given.get("upload_progress"))
            return await self._submit(plan.by_reference(ticket.input_ref))
        content = None if plan.read is None else await asyncio.to_thread(plan.read.read_bytes)
        return await self._submit(plan.request(content))

    async def _submit(self, request: dict[str, Any]) -> AsyncJob:
        return AsyncJob(self, wire.job_answer(await self._send("POST", "api/jobs", idempotent=True, **request)))

    async def upload(
        self, file: str | os.PathLike[str], content_type: str, progress: UploadProgress | None = None
    ) -> UploadTicket:
        """Upload a file through /api/uploads (parallel blocks, in a worker thread); returns the ticket."""
        response = await self._send("POST", "api/uploads", idempotent=True, **_core.upload_request(content_type))
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
        async for item in self._pages("api/jobs", _core.jobs_query(status, kind, page_size)):
            yield AsyncJob(self, _core.listed_job(item))

    async def dead_letters(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[DeadLetter]:
        """Every dead letter, newest first."""
        async for item in self._pages("api/dead-letters", {"limit": str(page_size)}):
            yield DeadLetter.from_json(item)

    async def _pages(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        pages = _core.Pages(params)
        while not pages.done:
            for item in pages.items(await self._send("GET", path, idempotent=True, params=pages.query)):
                yield item

    async def replay(self, dead_letter_id: str, *, idempotency_key: str | None = None) -> AsyncJob:
        """Submit a failed job's kind, options and input again as a new job."""
        path, request = _core.replay_request(dead_letter_id, idempotency_key)
        return AsyncJob(self, wire.job_answer(await self._send("POST", path, idempotent=True, **request)))

    async def health(self) -> Health:
        """Storage reachability, queue depths and job counts; a 503 answer is returned, not raised."""
        return _core.health_of(await self._send("GET", "api/health", idempotent=False))
