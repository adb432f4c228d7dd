"""A large raw body goes to its blob while it arrives (jobs.streamed_input), with or without an idempotency key.

What a client and an operator can see: blocks are staged before the body has ended, nothing is a blob or a
job until the submit has accepted the job, the stored input is the body byte for byte, and a body cut off
mid-way leaves no job, no blob and no orchestration behind. Keyed requests that race under one job name
store exactly the winner's body, and the worker never holds a whole body.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from jobs.requests import job_id_for
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


@pytest.mark.parametrize("keyed", [False, True])
def test_a_body_cut_off_mid_way_leaves_no_job_and_no_blob(devhost, azurite, keyed):
    """With a key, the client's retry then stores its own body: the cut request's blocks are never part of it."""
    body = csv_body(3)
    before = footprint(devhost, azurite.connection_string)
    before_staged = staged_only(azurite.connection_string)
    headers = {"Content-Type": "text/csv", "Content-Length": str(len(body))}
    if keyed:
        headers["Idempotency-Key"] = f"cut-{uuid.uuid4()}"
    cut_body = body.replace(b"eu,1\n", b"eu,9\n")  # what the cut request sent differs from the retry's

    def send() -> Iterator[bytes]:
        yield cut_body[: 2 * BLOCK_BYTES + 1]
        eventually(lambda: staged_only(azurite.connection_string) - before_staged, 30)
        raise ConnectionAbortedError("the client goes away mid-body")

    with pytest.raises((ConnectionAbortedError, httpx.HTTPError)):
        httpx.post(f"{devhost.base_url}/api/jobs", content=send(), headers=headers, params=PARAMS, timeout=30)
    # The host still serves, and what the cut request did stays blocks that are no blob: nothing to clean up.
    assert devhost.client.get("/api/health").status_code == 200
    assert footprint(devhost, azurite.connection_string) == before
    if keyed:
        retry = devhost.client.post("/api/jobs", content=body, headers=headers, params=PARAMS)
        assert retry.status_code == 202, retry.text
        assert devhost.wait_for_job(retry.headers["location"], timeout=120).json()["status"] == "COMPLETED"
        assert stored_input(azurite.connection_string, retry.json()["id"])[0] == body
        assert uncommitted_blocks(azurite.connection_string, retry.json()["id"]) == 0


def uncommitted_blocks(conn: str, job_id: str) -> int:
    """Blocks staged under the job's input name and not part of its blob."""
    with BlobServiceClient.from_connection_string(conn) as service:
        blob = service.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
        try:
            _, uncommitted = blob.get_block_list("uncommitted")
        except ResourceNotFoundError:
            return 0
    return len(uncommitted)


def stored_input(conn: str, job_id: str) -> tuple[bytes, dict[str, str]]:
    with BlobServiceClient.from_connection_string(conn) as service:
        blob = service.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
        return blob.download_blob().readall(), blob.get_blob_properties().metadata


def test_a_large_keyed_body_is_staged_as_it_arrives_and_names_one_job(devhost, azurite):
    body = csv_body(2.5)
    key = f"big-csv-{uuid.uuid4()}"
    headers = {"Content-Type": "text/csv", "Idempotency-Key": key, "Content-Length": str(len(body))}
    before_rows = count_job_rows(azurite.connection_string)
    before_staged = staged_only(azurite.connection_string)
    seen_mid_body: list[set[str]] = []
    rows_mid_body: list[int] = []

    def send() -> Iterator[bytes]:
        yield body[: 2 * BLOCK_BYTES + 1]
        seen_mid_body.append(eventually(lambda: staged_only(azurite.connection_string) - before_staged, 30))
        rows_mid_body.append(count_job_rows(azurite.connection_string))
        yield body[2 * BLOCK_BYTES + 1 :]

    first = devhost.client.post("/api/jobs", content=send(), headers=headers, params=PARAMS)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    assert seen_mid_body == [{job_input_blob_name(job_id)}]  # blocks under the key's job name, no blob yet
    assert rows_mid_body == [before_rows]  # and no job: the row needs the whole body's fingerprint
    final = devhost.wait_for_job(first.headers["location"], timeout=120)
    assert final.json()["status"] == "COMPLETED", final.text
    stored, metadata = stored_input(azurite.connection_string, job_id)
    assert stored == body
    assert metadata["sha256"] == hashlib.sha256(body).hexdigest()

    # Retries of the started job only read the body: the same request names the job, another one conflicts,
    # and neither stores anything, not even uncommitted blocks.
    before = footprint(devhost, azurite.connection_string)  # the job's own blobs and instance included
    again = devhost.client.post("/api/jobs", content=body, headers=headers, params=PARAMS)
    assert again.status_code == 202 and again.json()["id"] == job_id
    assert again.json()["status"] == "COMPLETED"
    changed_body = body[: -len(ROW)] + b"eu,7\nus,2\n"
    changed = devhost.client.post("/api/jobs", content=changed_body, headers=headers, params=PARAMS)
    assert changed.status_code == 409, changed.text
    assert footprint(devhost, azurite.connection_string) == before
    assert uncommitted_blocks(azurite.connection_string, job_id) == 0
    assert stored_input(azurite.connection_string, job_id)[0] == body


def test_keyed_bodies_racing_under_one_name_store_exactly_the_winners(devhost, azurite):
    """Three requests with one key stage blocks under the same name at once, two with the same body and one
    with another of the same length: one job, and its input is byte for byte the body of the requests that
    named it (blocks of one request never stand in for another's)."""
    key = f"race-{uuid.uuid4()}"
    same = csv_body(2.5)
    other = same.replace(b"eu,1\n", b"eu,3\n")
    assert len(other) == len(same) and other != same
    bodies = [same, same, other]
    arrived = [threading.Event() for _ in bodies]
    go_on = threading.Event()
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def send(index: int) -> Iterator[bytes]:
        body = bodies[index]
        yield body[: 2 * BLOCK_BYTES + 1]
        arrived[index].set()
        assert go_on.wait(60)
        yield body[2 * BLOCK_BYTES + 1 :]

    def post(index: int) -> None:
        headers = {"Content-Type": "text/csv", "Idempotency-Key": key, "Content-Length": str(len(same))}
        with httpx.Client(base_url=devhost.base_url, timeout=120) as client:
            answers[index] = client.post("/api/jobs", content=send(index), headers=headers, params=PARAMS)

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for event in arrived:
        assert event.wait(60)
    job_id = job_id_for(key)
    eventually(lambda: uncommitted_blocks(azurite.connection_string, job_id) >= 6, 30)  # two of each request
    go_on.set()
    for thread in threads:
        thread.join(120)
    answered = [answer for answer in answers if answer is not None]
    assert len(answered) == len(bodies)
    codes = sorted(answer.status_code for answer in answered)
    assert codes in ([202, 202, 409], [202, 409, 409]), [answer.text for answer in answered]
    winners = [bodies[n] for n, answer in enumerate(answered) if answer.status_code == 202]
    assert len(set(winners)) == 1
    assert {answer.json()["id"] for answer in answered if answer.status_code == 202} == {job_id}
    winner = winners[0]
    final = devhost.wait_for_job(f"/api/jobs/{job_id}", timeout=120)
    assert final.json()["status"] == "COMPLETED", final.text
    stored, metadata = stored_input(azurite.connection_string, job_id)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(winner).hexdigest() == metadata["sha256"]
    report = devhost.client.get(final.json()["links"]["result"]).json()
    eu = 3 if winner is other else 1
    rows = (len(winner) - len(b"region,amount\n")) // len(ROW)
    assert report["groups"]["eu"]["metrics"]["amount"]["sum"] == eu * rows


def _peak_rss_kib(pid: int) -> int:
    """The high-water mark of a process's resident memory (VmHWM, which psutil does not report), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1])


def test_a_keyed_body_is_never_held_whole(devhost_factory, azurite):
    """96 MiB posted with a key raise the worker processes' peak memory by far less than the body: it goes
    to storage block by block (a body read whole, as before, raised it by all of it). The job waits behind
    another for its slot, so no chunk of it runs while the peak is read; a retry then finds it PENDING with
    its input stored."""
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1"})
    slow = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 60}})
    assert slow.status_code == 202, slow.text
    assert host.process is not None
    workers = [child.pid for child in psutil.Process(host.process.pid).children(recursive=True)]
    assert workers
    before = sum(_peak_rss_kib(pid) for pid in workers)
    body = b"region,amount\n" + ROW * (96 * 1024 * 1024 // len(ROW))
    headers = {"Content-Type": "text/csv", "Idempotency-Key": f"big-{uuid.uuid4()}"}
    answer = host.client.post("/api/jobs", content=body, headers=headers, params=PARAMS, timeout=120)
    assert answer.status_code == 202, answer.text
    grown_mib = (sum(_peak_rss_kib(pid) for pid in workers) - before) / 1024
    assert grown_mib < 48, f"the workers' peak memory grew by {grown_mib:.0f} MiB for a 96 MiB body"
    job_id = answer.json()["id"]
    assert host.client.get(answer.headers["location"]).json()["status"] == "PENDING"
    stored, _ = stored_input(azurite.connection_string, job_id)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()
    # A retry while the job waits: its input is stored, so the body is only read (no uncommitted blocks).
    again = host.client.post("/api/jobs", content=body, headers=headers, params=PARAMS, timeout=120)
    assert again.status_code == 202 and again.json()["id"] == job_id, again.text
    assert uncommitted_blocks(azurite.connection_string, job_id) == 0
    for job in (answer, slow):
        assert host.client.delete(job.headers["location"]).status_code in (200, 202)


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
