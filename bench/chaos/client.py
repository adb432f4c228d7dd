"""The suite's HTTP clients: submit a job with its Idempotency-Key and retry as a careful client would.

A client retries on connection errors, timeouts and any 5xx (503 included), always with the same key and
the same request, honouring `Retry-After` (capped) or backing off exponentially with jitter, until it
gets its 202 or its time budget runs out. A csv-upload job uploads once and reuses its `input_ref` on
every retry, since a new upload would be a different request (409 for the same key).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx

from bench.chaos.checker import Submission
from bench.chaos.workload import JobSpec

RETRYABLE = (httpx.TransportError,)


def _backoff(attempt: int, response: httpx.Response | None, rng: random.Random, cap: float) -> float:
    if response is not None and (retry_after := response.headers.get("retry-after", "")).isdigit():
        return float(min(float(retry_after), cap) + rng.uniform(0, 0.1 * cap))
    return float(min(cap, 0.1 * 2.0**attempt) * rng.uniform(0.5, 1.0))


class JobClient:
    """One client thread's connection pool and retry policy."""

    def __init__(
        self, base_url: str, budget: float = 180.0, seed: int = 0, timeout: float = 30.0, max_backoff: float = 2.0
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout, connect=3.0))
        self.budget = budget
        self.max_backoff = max_backoff
        self.rng = random.Random(seed)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _retrying(
        self, submission: Submission, deadline: float, call: Any, label: str
    ) -> tuple[httpx.Response | None, str]:
        """Call until a non-retryable answer (returned) or the deadline (None, reason)."""
        attempt = 0
        reason = "no attempt"
        while time.monotonic() < deadline:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = call()
            except RETRYABLE as error:
                reason = f"{label}: {type(error).__name__}"
                submission.answers[f"{label} {type(error).__name__}"] += 1
            else:
                submission.answers[f"{label} {response.status_code}"] += 1
                if response.status_code < 500:
                    return response, ""
                reason = f"{label}: {response.status_code}"
            time.sleep(_backoff(attempt, response, self.rng, self.max_backoff))
        return None, f"gave up after {self.budget:.0f} s, last {reason}"

    def _upload(self, spec: JobSpec, submission: Submission, deadline: float) -> str | None:
        """Create an upload and PUT the CSV to its URL; returns the input_ref."""
        response, reason = self._retrying(
            submission, deadline, lambda: self.http.post("/api/uploads", json={"content_type": "text/csv"}), "upload"
        )
        if response is None or response.status_code != 201:
            submission.gave_up = reason or f"upload answered {response.status_code if response else None}"
            return None
        grant = response.json()
        headers = {**grant.get("headers", {}), "Content-Type": "text/csv"}
        put, reason = self._retrying(
            submission,
            deadline,
            lambda: self.http.request(
                grant.get("method", "PUT"), grant["upload_url"], content=spec.body, headers=headers
            ),
            "put",
        )
        if put is None or put.status_code not in (200, 201):
            submission.gave_up = (
                reason or f"PUT answered {put.status_code if put else None}: {put.text[:200] if put else ''}"
            )
            return None
        return str(grant["input_ref"])

    def _request(self, spec: JobSpec, input_ref: str | None) -> tuple[str, dict[str, str], bytes]:
        if spec.variant in ("csv-raw", "csv-raw-large"):
            query = "kind=csv-report&group_by=region&metrics=amount,qty"
            return f"/api/jobs?{query}", {"Content-Type": "text/csv"}, spec.body or b""
        if spec.variant == "csv-upload":
            body = {"kind": "csv-report", "input_ref": input_ref, "options": spec.options}
            return "/api/jobs", {"Content-Type": "application/json"}, json.dumps(body).encode()
        return "/api/jobs", {"Content-Type": "application/json"}, spec.body or b""

    def submit(self, submission: Submission) -> None:
        """Submit until a 202 (recorded in `submission`), a refusal, or the budget runs out."""
        spec = submission.spec
        deadline = time.monotonic() + self.budget
        input_ref = None
        if spec.variant == "csv-upload":
            input_ref = self._upload(spec, submission, deadline)
            if input_ref is None:
                return
        path, headers, body = self._request(spec, input_ref)
        if submission.keyed:
            headers["Idempotency-Key"] = spec.key

        def post() -> httpx.Response:
            submission.attempts += 1
            return self.http.post(path, content=body, headers=headers)

        response, reason = self._retrying(submission, deadline, post, "submit")
        if response is None:
            submission.gave_up = reason
            return
        if response.status_code != 202:
            submission.gave_up = f"submit answered {response.status_code}: {response.text[:200]}"
            return
        submission.accepted_ids.append(str(response.json().get("id")))
        submission.accepted_at = time.monotonic()

    def job(self, job_id: str) -> tuple[int | None, dict[str, Any] | None]:
        """GET the job resource once: (status code, body), (None, None) without an answer."""
        try:
            response = self.http.get(f"/api/jobs/{job_id}")
        except RETRYABLE:
            return None, None
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body if isinstance(body, dict) else None

    def result(self, job_id: str) -> Any:
        """GET the result document (None without a 200)."""
        for _ in range(5):
            try:
                response = self.http.get(f"/api/jobs/{job_id}/result")
            except RETRYABLE:
                time.sleep(0.5)
                continue
            if response.status_code == 200:
                return response.json()
            if response.status_code < 500:
                return {"http_status": response.status_code, "body": response.text[:300]}
            time.sleep(0.5)
        return None
