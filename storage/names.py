"""Storage names: every container, queue, table and blob name the app uses, in one place.

The infrastructure creates exactly these (tests/infra checks `infra/bicep` against them).
"""

from __future__ import annotations

# Containers
PAYLOADS_CONTAINER = "payloads"  # uploads/{upload_id}, jobs/{job_id}/input
RESULTS_CONTAINER = "results"  # jobs/{job_id}/partials/{n}, jobs/{job_id}/result.json, the stop marker

# Queues
INBOX_QUEUE = "jobs-inbox"
INBOX_POISON_QUEUE = "jobs-inbox-poison"
DEADLETTER_QUEUE = "jobs-deadletter"
ADMISSIONS_QUEUE = "jobs-admitted"  # one notice per job admitted while it waited (its id)
WEBHOOK_EVENTS_QUEUE = "webhook-events"  # outbox: a job's events, each starting its delivery orchestration

# Tables
JOBS_TABLE = "Jobs"
DEADLETTERS_TABLE = "DeadLetters"
WEBHOOK_BREAKERS_TABLE = "WebhookBreakers"  # one circuit breaker row per callback host, ETag-guarded

CONTAINERS = (PAYLOADS_CONTAINER, RESULTS_CONTAINER)
QUEUES = (INBOX_QUEUE, INBOX_POISON_QUEUE, DEADLETTER_QUEUE, ADMISSIONS_QUEUE, WEBHOOK_EVENTS_QUEUE)
TABLES = (JOBS_TABLE, DEADLETTERS_TABLE, WEBHOOK_BREAKERS_TABLE)


def upload_blob_name(upload_id: str) -> str:
    """An upload's blob in the payloads container."""
    return f"uploads/{upload_id}"


def job_prefix(job_id: str) -> str:
    """The prefix of every blob a job owns, in both containers."""
    return f"jobs/{job_id}/"


def job_input_blob_name(job_id: str) -> str:
    """A job's input, when it came with the request, in the payloads container."""
    return f"{job_prefix(job_id)}input"


def partial_blob_name(job_id: str, chunk_index: int) -> str:
    """One chunk's partial result in the results container."""
    return f"{job_prefix(job_id)}partials/{chunk_index:06d}"


def result_blob_name(job_id: str) -> str:
    """A job's result document in the results container."""
    return f"{job_prefix(job_id)}result.json"


def stop_marker_blob_name(job_id: str) -> str:
    """The job's stop marker in the results container: its presence stops the chunks (cancel, deadline,
    failure). The blob name stays `cancel` so that markers written before the rename still count."""
    return f"{job_prefix(job_id)}cancel"
