"""A large raw body without an idempotency key goes to its blob while it arrives (jobs.streamed_input).

What a client and an operator can see: blocks are staged before the body has ended, nothing is a blob or a
job until the submit has accepted the job, the stored input is the body byte for byte, and a body cut off
mid-way leaves no job, no blob and no orchestration behind.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from jobs.streamed_input import BLOCK_BYTES
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name
from tests.api.probes import count_job_rows, eventually, footprint
from tests.conftest import DEFAULT_TEST_ENV


@pytest.fixture(scope="module")
def devhost(azurite: Azurite) -> Iterator[DevHost]:
    """The test settings but for chunks of a few MiB: these inputs are megabytes, not the usual few rows."""
    host = DevHost(azurite.connection_string, env={**DEFAULT_TEST_ENV, "CHUNK_TARGET_BYTES": str(BLOCK_BYTES)})
    host.start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


PARAMS = {"kind": "csv-report", "group_by": "region", "metrics": "amount"}
ROW = b"eu,1\nus,2\n"


def csv_body(blocks: float) -> bytes:
    """A CSV of about `blocks` input blocks: eu and us rows taking turns."""
    rows = int(blocks * BLOCK_BYTES) // len(ROW)
    return b"region,amount\n" + ROW * rows


def staged_only(conn: str) -> set[str]:
    """Names in the payloads container that hold uncommitted blocks and no blob yet."""
    with BlobServiceClient.from_connection_string(conn) as service:
        container = service.get_container_client(PAYLOADS_CONTAINER)
        try:
            every = {b.name for b in container.list_blobs(include=["uncommittedblobs"])}
            committed = {b.name for b in container.list_blobs()}
        except ResourceNotFoundError:
            return set()  # no container yet: the app creates it with its first storage clients
    return every - committed


def test_blocks_are_staged_while_the_body_arrives_and_the_input_is_the_body(devhost, azurite):
    body = csv_body(2.5)  # two full blocks and a half one
    before_rows = count_job_rows(azurite.connection_string)
    before_staged = staged_only(azurite.connection_string)
    seen_mid_body: list[set[str]] = []
    rows_mid_body: list[int] = []
    go_on = threading.Event()

    def send() -> Iterator[bytes]:
        yield body[: 2 * BLOCK_BYTES + 1]
        # The worker has two blocks to stage now, and the rest of the body has not been sent.
        seen_mid_body.append(eventually(lambda: staged_only(azurite.connection_string) - before_staged, 30))
        rows_mid_body.append(count_job_rows(azurite.connection_string))
        go_on.set()
        yield body[2 * BLOCK_BYTES + 1 :]

    response = devhost.client.post(
        "/api/jobs",
        content=send(),
        headers={"Content-Type": "text/csv", "Content-Length": str(len(body))},
        params=PARAMS,
    )
    assert go_on.is_set()
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    # Mid-body the input was blocks under the job's name, not a blob, and there was no job yet.
    assert seen_mid_body == [{job_input_blob_name(job_id)}]
    assert rows_mid_body == [before_rows]

    final = devhost.wait_for_job(response.headers["location"], timeout=120)
    assert final.json()["status"] == "COMPLETED", final.text
    report = devhost.client.get(final.json()["links"]["result"]).json()
    rows = (len(body) - len(b"region,amount\n")) // len(ROW)
    assert report["rows"] == 2 * rows
    assert report["groups"]["eu"]["metrics"]["amount"]["sum"] == rows
    assert report["groups"]["us"]["metrics"]["amount"]["sum"] == 2 * rows
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
        stored = blob.download_blob().readall()
        assert blob.get_blob_properties().content_settings.content_type == "text/csv"
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()


def test_a_body_cut_off_mid_way_leaves_no_job_and_no_blob(devhost, azurite):
    body = csv_body(3)
    before = footprint(devhost, azurite.connection_string)
    before_staged = staged_only(azurite.connection_string)

    def send() -> Iterator[bytes]:
        yield body[: 2 * BLOCK_BYTES + 1]
        eventually(lambda: staged_only(azurite.connection_string) - before_staged, 30)
        raise ConnectionAbortedError("the client goes away mid-body")

    with pytest.raises((ConnectionAbortedError, httpx.HTTPError)):
        httpx.post(
            f"{devhost.base_url}/api/jobs",
            content=send(),
            headers={"Content-Type": "text/csv", "Content-Length": str(len(body))},
            params=PARAMS,
            timeout=30,
        )
    # The host still serves, and what the cut request did stays blocks that are no blob: nothing to clean up.
    assert devhost.client.get("/api/health").status_code == 200
    assert footprint(devhost, azurite.connection_string) == before


def test_a_large_keyed_body_is_read_whole_and_names_one_job(devhost, azurite):
    body = csv_body(1.5)
    key = f"big-csv-{uuid.uuid4()}"
    headers = {"Content-Type": "text/csv", "Idempotency-Key": key}
    first = devhost.client.post("/api/jobs", content=body, headers=headers, params=PARAMS)
    assert first.status_code == 202, first.text
    final = devhost.wait_for_job(first.headers["location"], timeout=120)
    assert final.json()["status"] == "COMPLETED", final.text
    before = footprint(devhost, azurite.connection_string)  # the job's own blobs and instance included
    again = devhost.client.post("/api/jobs", content=body, headers=headers, params=PARAMS)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "COMPLETED"
    changed = devhost.client.post("/api/jobs", content=body + ROW, headers=headers, params=PARAMS)
    assert changed.status_code == 409, changed.text
    assert footprint(devhost, azurite.connection_string) == before


def test_past_max_pending_jobs_a_large_body_is_429_before_any_block_is_staged(devhost_factory, azurite):
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1", "MAX_PENDING_JOBS": "1"})
    slow = {"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 30}}
    running = host.client.post("/api/jobs", json=slow)
    assert running.status_code == 202, running.text
    eventually(lambda: host.client.get(running.headers["location"]).json()["status"] == "RUNNING", 30)
    waiting = host.client.post("/api/jobs", json=slow)
    assert waiting.status_code == 202, waiting.text
    rows = count_job_rows(azurite.connection_string)
    staged = staged_only(azurite.connection_string)

    refused = host.client.post("/api/jobs", content=csv_body(1.5), headers={"Content-Type": "text/csv"}, params=PARAMS)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:longrun:problem:too-many-pending-jobs"
    assert staged_only(azurite.connection_string) == staged
    assert count_job_rows(azurite.connection_string) == rows
    for job in (running, waiting):
        assert host.client.delete(job.headers["location"]).status_code in (202, 200)
