"""The retention timer in a devhost: finished jobs older than RETENTION_DAYS lose their history (and their
chunk batches'), their blobs and their rows; dead letters older than DEADLETTER_RETENTION_DAYS go too."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from devhost.testing.harness import DevHost
from orchestrators.job import chunk_batch_instance_id
from shared import dead_letters
from shared.contracts import DeadLetterRecord
from shared.job_store import INDEX_PARTITION, JOB_ROW, iso
from shared.settings import Settings
from shared.storage import JOBS_TABLE, PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_prefix
from tests.orchestrators.helpers import WEBHOOKS, list_blobs

pytestmark = pytest.mark.slow


def _backdate(host: DevHost, job_id: str, days: float) -> None:
    """Make a finished job look `days` old, as if it had finished back then."""
    table = TableServiceClient.from_connection_string(host.connection_string).get_table_client(JOBS_TABLE)
    job = table.get_entity(job_id, JOB_ROW)
    finished = iso(datetime.now(UTC) - timedelta(days=days))
    for partition_key, row_key in ((job_id, JOB_ROW), (INDEX_PARTITION, job["index_key"])):
        table.update_entity(
            {"PartitionKey": partition_key, "RowKey": row_key, "finished_at": finished}, mode=UpdateMode.MERGE
        )


def _dead_letter(host: DevHost, record_id: str, age_days: float) -> None:
    created = datetime.now(UTC) - timedelta(days=age_days)
    record: DeadLetterRecord = {
        "id": record_id,
        "source": "poison",
        "job_id": None,
        "kind": None,
        "input_ref": None,
        "input_content_type": None,
        "options": None,
        "error_type": "invalid_message",
        "reason": "test",
        "attempts": 5,
        "raw_message": "{}",
        "created_at": iso(created),
    }
    dead_letters.record_dead_letter(Settings(AzureWebJobsStorage=host.connection_string), record)


def _run_job(host: DevHost, options: dict[str, Any]) -> str:
    response = host.client.post("/api/jobs", json={"kind": "simulate", "options": options})
    assert response.status_code == 202, response.text
    final = host.wait_for_job(response.headers["location"])
    job: dict[str, Any] = final.json()
    assert job["status"] == "COMPLETED", job
    return str(job["id"])


def _gone(host: DevHost, job_id: str) -> bool:
    return (
        host.client.get(f"/api/jobs/{job_id}").status_code == 404
        and host.client.get(f"{WEBHOOKS}/instances/{job_id}").status_code == 404
        and not list_blobs(host, RESULTS_CONTAINER, job_prefix(job_id))
        and not list_blobs(host, PAYLOADS_CONTAINER, job_prefix(job_id))
    )


def test_retention_forgets_old_jobs_and_old_dead_letters_only(devhost_factory: Any) -> None:
    host = devhost_factory(env={"RETENTION_SCHEDULE": "*/1 * * * * *", "CHUNKS_PER_SUB_ORCHESTRATION": "2"})
    old_job = _run_job(host, {"chunks": 5})  # three chunk batch sub-orchestrations
    recent_job = _run_job(host, {"chunks": 1})
    assert host.client.get(f"{WEBHOOKS}/instances/{chunk_batch_instance_id(old_job, 2)}").status_code == 200
    _dead_letter(host, "poison-old", age_days=31)
    _dead_letter(host, "poison-recent", age_days=1)
    _backdate(host, old_job, days=8)
    _backdate(host, recent_job, days=6)

    deadline = time.monotonic() + 20
    while not _gone(host, old_job):
        assert time.monotonic() < deadline, "the old job was not forgotten"
        time.sleep(0.2)
    for batch in range(3):
        status = host.client.get(f"{WEBHOOKS}/instances/{chunk_batch_instance_id(old_job, batch)}").status_code
        assert status == 404
    while host.client.get("/api/dead-letters/poison-old").status_code != 404:
        assert time.monotonic() < deadline, "the old dead letter was not purged"
        time.sleep(0.2)

    assert host.client.get(f"/api/jobs/{recent_job}").status_code == 200
    assert host.client.get(f"{WEBHOOKS}/instances/{recent_job}").status_code == 200
    assert host.client.get("/api/dead-letters/poison-recent").status_code == 200


def test_a_dead_lettered_jobs_input_outlives_the_job_until_its_dead_letter_goes(devhost_factory: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    from shared.job_store import UPLOADS_PARTITION
    from shared.storage import job_input_blob_name

    host = devhost_factory(env={"RETENTION_SCHEDULE": "*/1 * * * * *"})
    # A job that fails for good (unknown column): dead-lettered, its input kept for replay.
    response = host.client.post(
        "/api/jobs",
        params={"kind": "csv-report", "group_by": "nope"},
        content=b"region,amount\nnorth,1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    failed = host.wait_for_job(response.headers["location"]).json()
    assert failed["status"] == "FAILED", failed
    failed_job = str(failed["id"])
    _backdate(host, failed_job, days=8)
    # An older dead letter of another job whose input is still there: both go together.
    blobs = BlobServiceClient.from_connection_string(host.connection_string)
    expired_input = blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name("expired-job"))
    expired_input.upload_blob(b"region\nx\n", overwrite=True)
    _dead_letter(host, "job-expired-job", age_days=31)
    table = TableServiceClient.from_connection_string(host.connection_string).get_table_client("DeadLetters")
    for entity in table.query_entities("RowKey eq 'job-expired-job' or id eq 'job-expired-job'"):
        table.update_entity(
            {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "source": "job",
             "job_id": "expired-job"},
            mode=UpdateMode.MERGE,
        )  # fmt: skip
    # An upload nobody used, older than both retentions.
    upload = host.client.post("/api/uploads", json={"content_type": "text/csv"}).json()
    upload_id = upload["input_ref"].split("/", 1)[1]
    blobs.get_blob_client(PAYLOADS_CONTAINER, upload["input_ref"]).upload_blob(b"a\n1\n", overwrite=True)
    jobs_table = TableServiceClient.from_connection_string(host.connection_string).get_table_client(JOBS_TABLE)
    jobs_table.update_entity(
        {"PartitionKey": UPLOADS_PARTITION, "RowKey": upload_id,
         "created_at": iso(datetime.now(UTC) - timedelta(days=40))},
        mode=UpdateMode.MERGE,
    )  # fmt: skip

    deadline = time.monotonic() + 20
    while host.client.get(f"/api/jobs/{failed_job}").status_code != 404 or list_blobs(
        host, PAYLOADS_CONTAINER, upload["input_ref"]
    ):
        assert time.monotonic() < deadline, "retention did not run"
        time.sleep(0.2)
    assert host.client.get(f"{WEBHOOKS}/instances/{failed_job}").status_code == 404
    assert list_blobs(host, PAYLOADS_CONTAINER, job_prefix(failed_job)) == [job_input_blob_name(failed_job)]
    assert host.client.get(f"/api/dead-letters/job-{failed_job}").status_code == 200
    while list_blobs(host, PAYLOADS_CONTAINER, job_prefix("expired-job")):
        assert time.monotonic() < deadline, "the expired dead letter's input was kept"
        time.sleep(0.2)
    assert host.client.get("/api/dead-letters/job-expired-job").status_code == 404
