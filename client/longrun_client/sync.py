"""LongrunClient: the job API from blocking Python code (httpx).

Only the I/O lives here; what to send, when to retry and how to read answers is in _core.py and handle.py,
shared with the asyncio client (aio.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import httpx
import httpx_sse

from longrun_client import _core, wire
from longrun_client._core import DEFAULT_URL, PAGE_SIZE
from longrun_client.errors import ProblemError
from longrun_client.handle import EventResume, JobFields, ProgressCallback, WaitClock
from longrun_client.models import DeadLetter, Health, JobSnapshot, JobStatus, UploadTicket
from longrun_client.uploads import UploadProgress, upload_file

__all__ = ["DEFAULT_URL", "PAGE_SIZE", "Job", "LongrunClient"]


class Job(JobFields):
    """A submitted job: its last known state, and the calls that refresh, wait for, read and cancel it."""

    _client: LongrunClient

    def refresh(self) -> Job:
        """Read the job again (GET its Location)."""
        self._answered(wire.job_answer(self._client._send("GET", self._location, idempotent=True)))
        return self

    def wait(self, timeout: float | None = None, on_progress: ProgressCallback | None = None) -> Job:
        """Block until the job ends (over SSE where the server streams, else polling as Retry-After says).

        Raises WaitTimeout after `timeout` seconds; the job keeps running. `on_progress` gets each new state.
        """
        clock = WaitClock(timeout, on_progress, self._snapshot)
        if not self.finished and self._client.events and self._wait_events(clock):
            return self
        while not self.finished:
            time.sleep(clock.poll_delay(self._snapshot, self._retry_after))
            self._poll(clock)
        return self

    def _poll(self, clock: WaitClock) -> None:
        before = self._snapshot
        self.refresh()
        clock.changed(before, self._snapshot)

    def _wait_events(self, clock: WaitClock) -> bool:
        """Follow the job's event stream to its terminal event; False to fall back to polling."""
        stream = EventResume()
        while True:
            try:
                with httpx_sse.connect_sse(self._client._http, **self._stream_request(clock, stream)) as source:
                    if not self._stream_opened(source.response):
                        return False
                    if any(self._on_event(clock, stream, event) for event in source.iter_sse()):
                        return True
            except httpx.TimeoutException:
                clock.raise_if_expired(self._snapshot)
            except (httpx.TransportError, httpx_sse.SSEError):
                return False
            self._poll(clock)  # the stream ended without a terminal event: has the job?
            if self.finished or not stream.worth_resuming():
                return self.finished

    def result(self, format: str | None = None) -> Any:  # noqa: A002 - the API's parameter name
        """The full result document (parsed JSON), or the rendered bytes for `format` (e.g. "csv")."""
        return _core.result_value(self._client._send("GET", self._result_url(format), idempotent=True))

    def result_to(self, path: str | os.PathLike[str], format: str | None = None) -> Path:  # noqa: A002
        """Stream the result into a file; returns its path."""
        target = Path(path)
        response = self._client._send("GET", self._result_url(format), idempotent=True, stream=True)
        try:
            if wire.is_problem(response):
                response.read()
                raise ProblemError.from_response(response)
            partial = _core.partial_path(target)
            with open(partial, "wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
            partial.replace(target)
        finally:
            response.close()
        return target

    def cancel(self) -> Job:
        """Ask the job to stop (it ends CANCELLED); a finished job stays as it was."""
        answer = wire.job_answer(self._client._send("DELETE", self._location, idempotent=True))
        self._snapshot = JobSnapshot.from_json(answer.body)
        return self


class LongrunClient(_core.ClientSettings[httpx.Client]):
    """The longrun job API.

    `base_url` is where `/api/...` is served, with a gateway's path prefix if any
    (e.g. https://api.example.com/longrun); `key` is sent as `x-functions-key`.
    """

    def _open(self, *, base_url: str, timeout: float, headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> LongrunClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, method: str, url: str, *, idempotent: bool, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """One call, tried again on connection errors and 429/502/503/504 when `idempotent`."""
        attempts = _core.Attempts(self.retry, idempotent)
        while True:
            request = self._http.build_request(method, url, **kwargs)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                time.sleep(attempts.after_error(request, exc))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return response
            response.close()
            time.sleep(delay)

    def submit(self, kind: str, input: Any = None, **given: Unpack[_core.SubmitOptions]) -> Job:  # noqa: A002
        """Submit a job: inline JSON `input`, or a `file` (posted when small, else uploaded to Blob storage).

        The keyword arguments: `_core.SubmitOptions`. Retried on connection errors and 503 under an idempotency
        key (a fresh one unless given), so a retry names the same job.
        """
        plan = _core.plan_submit(kind, input, given, self.max_inline_bytes)
        if plan.upload is not None:
            ticket = self.upload(plan.upload, plan.media_type, progress=given.get("upload_progress"))
            return self._submit(plan.by_reference(ticket.input_ref))
        return self._submit(plan.request(None if plan.read is None else plan.read.read_bytes()))

    def _submit(self, request: dict[str, Any]) -> Job:
        return Job(self, wire.job_answer(self._send("POST", "api/jobs", idempotent=True, **request)))

    def upload(
        self, file: str | os.PathLike[str], content_type: str, progress: UploadProgress | None = None
    ) -> UploadTicket:
        """Upload a file through /api/uploads (parallel block upload); returns the ticket whose input_ref to submit."""
        response = self._send("POST", "api/uploads", idempotent=True, **_core.upload_request(content_type))
        ticket = UploadTicket.from_json(wire.json_body(response))
        upload_file(
            ticket, Path(file), content_type,
            block_bytes=self.upload_block_bytes, concurrency=self.upload_concurrency, progress=progress,
        )  # fmt: skip
        return ticket

    def job(self, job_id: str) -> Job:
        """The job with this id."""
        return Job(self, wire.job_answer(self._send("GET", wire.job_path(job_id), idempotent=True)))

    def jobs(
        self, *, status: str | JobStatus | None = None, kind: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[Job]:
        """Every job, newest first, following continuation pages as the iteration goes."""
        for item in self._pages("api/jobs", _core.jobs_query(status, kind, page_size)):
            yield Job(self, _core.listed_job(item))

    def dead_letters(self, *, page_size: int = PAGE_SIZE) -> Iterator[DeadLetter]:
        """Every dead letter, newest first."""
        for item in self._pages("api/dead-letters", {"limit": str(page_size)}):
            yield DeadLetter.from_json(item)

    def _pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        pages = _core.Pages(params)
        while not pages.done:
            yield from pages.items(self._send("GET", path, idempotent=True, params=pages.query))

    def replay(self, dead_letter_id: str, *, idempotency_key: str | None = None) -> Job:
        """Submit a failed job's kind, options and input again as a new job."""
        path, request = _core.replay_request(dead_letter_id, idempotency_key)
        return Job(self, wire.job_answer(self._send("POST", path, idempotent=True, **request)))

    def health(self) -> Health:
        """Storage reachability, queue depths and job counts; a 503 answer is returned, not raised."""
        # Not retried on 503: the caller asks exactly whether the service is up now.
        return _core.health_of(self._send("GET", "api/health", idempotent=False))
