"""LongrunClient and AsyncLongrunClient against a real devhost: problems, retries through a flaky gateway,
function keys and path prefixes, uploads above the inline limit, and the async client end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.testing.harness import DevHost
from longrun_client import AsyncLongrunClient, JobStatus, LongrunClient, ProblemError, RetryPolicy, WaitTimeout
from storage.names import PAYLOADS_CONTAINER
from tests.api.probes import FUNCTION_KEY
from tests.client.conftest import LONGRUN, cli_env
from tests.conftest import DEFAULT_TEST_ENV

pytestmark = pytest.mark.slow

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_seconds=0.05)


def test_problem_error_carries_the_problem_members(devhost: DevHost):
    with LongrunClient(devhost.base_url) as client:
        with pytest.raises(ProblemError) as refused:
            client.submit("simulate", options={"chunks": 0, "colour": "red"})
        problem = refused.value
        assert problem.status == 422
        assert problem.type == "urn:longrun:problem:validation-error"
        assert problem.title == "Unprocessable Content"
        assert problem.detail == "invalid options for this kind"
        assert {e.field for e in problem.errors} == {"options.chunks", "options.colour"}
        assert problem.instance == "/api/jobs"

        with pytest.raises(ProblemError) as missing:
            client.job("0" * 32)
        assert missing.value.status == 404 and missing.value.detail == "no such job"

        job = client.submit("simulate", options={"chunks": 30, "chunk_seconds": 1})
        with pytest.raises(ProblemError) as early:
            job.result()
        assert early.value.status == 409 and early.value.retry_after is not None
        with pytest.raises(WaitTimeout):
            job.wait(timeout=1)
        assert job.cancel().wait(timeout=60).status is JobStatus.CANCELLED


def test_idempotent_calls_retry_on_503_honouring_retry_after(devhost: DevHost, gateway_factory):
    gateway = gateway_factory(devhost.base_url)
    with LongrunClient(gateway.url, retry=FAST_RETRY) as client:
        gateway.fail_next("503", "503")
        started = time.monotonic()
        job = client.submit("simulate", options={"chunks": 2})
        assert time.monotonic() - started >= 2.0  # Retry-After: 1, twice (the backoff alone is 0.05 s)
        posts = gateway.requests("POST", "/api/jobs")
        assert [p.answered for p in posts] == ["503", "503", "forwarded"]
        keys = {p.headers["idempotency-key"] for p in posts}
        assert len(keys) == 1  # a generated key, the same on every attempt

        gateway.fail_next("drop")
        assert client.job(job.id).id == job.id  # a connection closed unanswered: the GET is retried
        assert [g.answered for g in gateway.requests("GET", f"/api/jobs/{job.id}")][:2] == ["drop", "forwarded"]
        assert job.wait(timeout=60).status is JobStatus.COMPLETED

    with LongrunClient(gateway.url, retry=RetryPolicy(max_attempts=1)) as once:
        gateway.fail_next("503")
        with pytest.raises(ProblemError) as unavailable:
            once.submit("simulate")
        assert unavailable.value.status == 503 and unavailable.value.retry_after == 1.0


def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_job(devhost: DevHost, gateway_factory):
    gateway = gateway_factory(devhost.base_url)
    with LongrunClient(gateway.url, retry=FAST_RETRY) as client:
        gateway.fail_next("lose")  # the job is created, the 202 never reaches the client
        job = client.submit("simulate", options={"chunks": 1}, idempotency_key="order-4711-lost")
        posts = gateway.requests("POST", "/api/jobs")
        assert [p.answered for p in posts] == ["lose", "forwarded"]
        same = [j for j in client.jobs(kind="simulate", page_size=100) if j.id == job.id]
        assert len(same) == 1
        assert job.wait(timeout=60).status is JobStatus.COMPLETED


def test_health_is_not_retried_on_503(devhost: DevHost, gateway_factory):
    gateway = gateway_factory(devhost.base_url)
    with LongrunClient(gateway.url, retry=FAST_RETRY) as client:
        assert client.health().ok
        gateway.fail_next("503")
        with pytest.raises(ProblemError) as down:
            client.health()
        assert down.value.status == 503
        assert len(gateway.requests("GET", "/api/health")) == 2


def test_async_client_end_to_end(devhost: DevHost, tmp_path):
    async def scenario() -> None:
        async with AsyncLongrunClient(devhost.base_url, retry=FAST_RETRY) as client:
            seen: list[int] = []
            job = await client.submit("vector-normalize", {"vector_data": [[3, 4], [0, 0]]})
            await job.wait(timeout=120, on_progress=lambda s: seen.append(s.progress.completed))
            assert job.status is JobStatus.COMPLETED and job.summary == {
                "processed_vectors": 2, "dimensions": 2, "zero_vectors": 1, "status": "indexed",
            }  # fmt: skip
            assert seen[-1] == 1
            assert (await job.result())["vectors"] == [[0.6, 0.8], [0.0, 0.0]]
            path = await job.result_to(tmp_path / "v.ndjson", format="ndjson")
            assert path.read_text().splitlines() == ["[0.6, 0.8]", "[0.0, 0.0]"]

            listed = [j.id async for j in client.jobs(kind="vector-normalize", page_size=1)]
            assert job.id in listed

            long = await client.submit("simulate", options={"chunks": 30, "chunk_seconds": 1})
            await long.cancel()
            assert (await long.wait(timeout=60)).status is JobStatus.CANCELLED

            failed = await (await client.submit("simulate", options={"permanent_failure": True})).wait(timeout=60)
            assert failed.status is JobStatus.FAILED and failed.error is not None
            letters = [d async for d in client.dead_letters(page_size=100) if d.job_id == failed.id]
            assert len(letters) == 1 and letters[0].replayable
            replayed = await client.replay(letters[0].id)
            assert replayed.id != failed.id and replayed.kind == "simulate"
            assert (await client.health()).ok

            with pytest.raises(ProblemError) as refused:
                await client.submit("no-such-kind")
            assert refused.value.status == 422

    asyncio.run(scenario())


def test_the_async_client_retries_and_polls_as_the_blocking_one_does(devhost: DevHost, gateway_factory):
    """The shared decisions (_core.Attempts, handle.WaitClock) driven by the asyncio I/O: a 503 and a dropped
    connection retried under one idempotency key, a wait by polling alone, health not retried."""
    gateway = gateway_factory(devhost.base_url)
    gateway.relative_locations = True  # so that the polls, too, go through the gateway

    async def scenario() -> None:
        async with AsyncLongrunClient(gateway.url, retry=FAST_RETRY, events=False) as client:
            gateway.fail_next("503", "drop")
            job = await client.submit("simulate", options={"chunks": 2})
            posts = gateway.requests("POST", "/api/jobs")
            assert [p.answered for p in posts] == ["503", "drop", "forwarded"]
            assert len({p.headers["idempotency-key"] for p in posts}) == 1
            assert (await job.wait(timeout=60)).status is JobStatus.COMPLETED
            assert not gateway.requests("GET", "/events")  # events=False: polled
            assert len(gateway.requests("GET", f"/api/jobs/{job.id}")) >= 1
            gateway.fail_next("503")
            with pytest.raises(ProblemError) as down:
                await client.health()
            assert down.value.status == 503 and len(gateway.requests("GET", "/api/health")) == 1

    asyncio.run(scenario())


def test_function_key_path_prefix_and_relative_locations(devhost_factory, gateway_factory):
    gateway = gateway_factory(prefix="/longrun")
    gateway.relative_locations = True
    host = devhost_factory(env={"PUBLIC_BASE_URL": gateway.url}, args=["--enforce-auth"])
    gateway.upstream = host.base_url

    with LongrunClient(gateway.url) as anonymous:
        with pytest.raises(ProblemError) as unauthorized:
            anonymous.submit("simulate")
        assert unauthorized.value.status == 401
        assert anonymous.health().ok  # the one anonymous route

    with LongrunClient(gateway.url, key=FUNCTION_KEY) as client:
        job = client.submit("vector-normalize", {"vector_data": [3, 4]})
        assert job.location == f"{gateway.url}/api/jobs/{job.id}"  # a relative Location, resolved
        assert job.wait(timeout=120).status is JobStatus.COMPLETED
        assert job.result()["vectors"] == [[0.6, 0.8]]
        assert job.snapshot.links["self"].startswith(gateway.url + "/api/jobs/")
    forwarded = [s for s in gateway.seen if s.answered == "forwarded" and not s.path.endswith("/health")]
    assert all(s.path.startswith("/longrun/api/") for s in gateway.seen)
    assert all(s.headers.get("x-functions-key") == FUNCTION_KEY for s in forwarded[-3:])


@pytest.fixture(scope="module")
def small_body_host(azurite):
    """A host that refuses raw bodies over 64 KiB: bigger inputs must go through /api/uploads."""
    host = DevHost(azurite.connection_string, env={**DEFAULT_TEST_ENV, "MAX_RAW_BODY_BYTES": "65536"}).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


def _sales_csv(path: Path, rows: int) -> int:
    lines = ["region,amount"] + [f"{('north', 'south', 'east')[i % 3]},{i % 100}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path.stat().st_size


def test_a_file_above_the_inline_limit_goes_through_uploads_in_parallel_blocks(small_body_host, azurite, tmp_path):
    data = tmp_path / "sales.csv"
    size = _sales_csv(data, 40_000)
    assert size > 4 * 65536
    with LongrunClient(small_body_host.base_url) as posting:
        with pytest.raises(ProblemError) as too_big:  # posted raw, the host refuses it
            posting.submit("csv-report", file=data, options={"group_by": "region"})
        assert too_big.value.status == 413

    progress: list[tuple[int, int]] = []
    with LongrunClient(
        small_body_host.base_url, max_inline_bytes=65536, upload_block_bytes=65536, upload_concurrency=4
    ) as client:
        job = client.submit(
            "csv-report", file=data, options={"group_by": "region", "metrics": ["amount"]},
            upload_progress=lambda done, total: progress.append((done, total)),
        )  # fmt: skip
        assert job.wait(timeout=180).status is JobStatus.COMPLETED, job.error
        assert job.summary is not None and job.summary["rows"] == 40_000
        groups = job.result()["groups"]
        assert groups["north"]["count"] == 13_334
    assert progress[-1] == (size, size) and len(progress) >= 4
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blobs = service.get_container_client(PAYLOADS_CONTAINER).list_blobs(name_starts_with="uploads/")
        uploads = [b for b in blobs if b.size == size]
        assert len(uploads) == 1
        committed, _ = service.get_blob_client(PAYLOADS_CONTAINER, uploads[0].name).get_block_list("committed")
        assert len(committed) == -(-size // 65536)  # staged as 64 KiB blocks, then committed once


def test_cli_uploads_a_file_above_its_inline_limit(small_body_host, tmp_path):
    data = tmp_path / "big.csv"
    _sales_csv(data, 30_000)
    done = subprocess.run(
        [str(LONGRUN), "--json", "submit", str(data), "--option", "group_by=region", "--wait", "--timeout", "180"],
        capture_output=True, text=True, timeout=240, check=False,
        env=cli_env(small_body_host.base_url, LONGRUN_INLINE_LIMIT="65536"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["rows"] == 30_000
