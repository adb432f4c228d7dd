"""The job resource and its polling hint, without a host."""

from __future__ import annotations

from datetime import timedelta

from api.resource import job_resource, retry_after_seconds
from shared.clock import utc_now
from shared.contracts import JobError, JobStatus
from shared.status import JobState
from storage import jobs as job_store


def record(age: timedelta) -> job_store.JobRecord:
    return job_store.new_job_record(
        job_id="a" * 32, kind="simulate", created=utc_now() - age, input_ref="jobs/x/input",
        input_content_type="application/json", options={"secret": "never shown"}, deadline_at=None,
        idempotency_key_hash="h" * 64, fingerprint="f", source="http",
    )  # fmt: skip


def test_retry_after_is_short_at_first_and_longer_for_long_jobs():
    hints = [retry_after_seconds(record(timedelta(seconds=s))) for s in (0, 30, 300, 1800, 7200)]
    assert hints == sorted(hints) and hints[0] == 1 and hints[-1] == 30


def test_the_resource_shows_no_input_options_or_key_and_adds_result_or_error():
    base = "https://gw.example.com"
    rec = record(timedelta(0))
    done = job_resource(rec, JobState(JobStatus.COMPLETED, 4, 4, summary={"chunks": 4}), rec["updated_at"], base)
    assert done["result"] == {"chunks": 4} and done["progress"] == {"completed": 4, "total": 4, "percent": 100.0}
    text = repr(done)
    assert "never shown" not in text and "jobs/x/input" not in text and "h" * 64 not in text
    error: JobError = {"type": "retries_exhausted", "message": "chunk 0 failed", "attempts": 3}
    failed = job_resource(rec, JobState(JobStatus.FAILED, 1, 4, error=error), rec["updated_at"], base)
    assert failed["error"] == error and "result" not in failed and failed["progress"]["percent"] == 25.0
    assert failed["links"]["self"] == f"{base}/api/jobs/{'a' * 32}"
