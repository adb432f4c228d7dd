"""What a poll of a young PENDING job costs (issue #15): its row and its place, not Durable.

Most polls are of young jobs (Retry-After is 1 s for a job's first 10 s), and most of those find the job
still waiting for a worker. Such a poll answers from the job row (jobs.query.PENDING_FROM_ROW_FOR); Durable is
asked again for an older PENDING job (that is how a poll finds a job whose start was lost: jobs.recovery),
for one whose cancel was asked, and by a long-poll, whose refreshes read Durable too.

Counted at the wire with the counting proxy of `bench/storage_meter.py`: a Durable status read is the
host's read of the task hub's Instances table (`table/durable/GetEntity`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bench.storage_meter import MeteredStorage, metered_devhost
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from jobs.query import PENDING_FROM_ROW_FOR
from shared.clock import utc_now
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from tests.conftest import DEFAULT_TEST_ENV
from tests.jobs.test_stranded import record_then_die

Counts = Counter[tuple[str, str, str]]


@pytest.fixture(scope="module")
def metered(azurite: Azurite) -> Iterator[tuple[DevHost, MeteredStorage]]:
    """The app on devhost, its storage requests counted on their way to Azurite."""
    with metered_devhost(azurite, env=DEFAULT_TEST_ENV) as metered:
        yield metered


def _tables(counts: Counts, owner: str) -> Counter[str]:
    """The owner's table requests; a worker's first request also creates the app's tables (not counted)."""
    return Counter(
        {
            op: n
            for (service, who, op), n in counts.items()
            if service == "table" and who == owner and op != "CreateTable"
        }
    )


def _poll(host: DevHost, storage: MeteredStorage, path: str, **kwargs: object) -> tuple[int, dict[str, str], Counts]:
    before = storage.meter.snapshot()
    answer = host.client.get(path, **kwargs)  # type: ignore[arg-type]
    return answer.status_code, dict(answer.headers), storage.meter.snapshot() - before


def _flag_stop(conn: str, job_id: str) -> None:
    async def flag() -> None:
        clients = await storage_clients(Settings(AzureWebJobsStorage=conn))
        try:
            await job_store.flag_stop_requested(clients.jobs, job_id)
        finally:
            await close_storage_clients()

    asyncio.run(flag())


def test_a_young_pending_job_is_polled_from_its_row_and_place(
    metered: tuple[DevHost, MeteredStorage], azurite: Azurite
) -> None:
    """A recorded, accepted job without an instance yet (its start still to come): 202 PENDING from two reads
    of the app's tables (the row, the admission place), none of the task hub's; the reference design's route
    likewise."""
    host, storage = metered
    job_id = record_then_die(azurite.connection_string, None, utc_now(), placed_in=host.task_hub)
    # The reference's route shows no queue position, so it reads the row alone.
    for path, reads in ((f"/api/jobs/{job_id}", 2), (f"/api/tasks/{job_id}", 1)):
        status, headers, counts = _poll(host, storage, path)
        assert status in (200, 202) and headers["retry-after"] == "1", (path, status)
        assert _tables(counts, "durable") == Counter(), (path, counts)
        assert _tables(counts, "app") == Counter({"GetEntity": reads}), (path, counts)
    assert host.client.get(f"/api/jobs/{job_id}").json()["status"] == "PENDING"


def test_a_process_reads_an_admitted_jobs_place_once(metered: tuple[DevHost, MeteredStorage], azurite: Azurite) -> None:
    """An admitted queue row stays admitted until the job ends, so a worker process that has seen it admitted
    does not read it again (jobs.admission._AdmittedKeys): repeated polls of a job waiting for a worker read its
    row each time and its place at most once per worker process (the sample settings run two)."""
    host, storage = metered
    job_id = record_then_die(azurite.connection_string, None, utc_now(), placed_in=host.task_hub)
    polls, reads = 8, Counter[str]()
    for _ in range(polls):
        status, _, counts = _poll(host, storage, f"/api/jobs/{job_id}")
        assert status == 202, status
        reads += _tables(counts, "app")
    assert polls + 1 <= reads["GetEntity"] <= polls + 2, reads  # 2 per poll before
    body = host.client.get(f"/api/jobs/{job_id}").json()
    assert body["status"] == "PENDING" and "queue" not in body, body


def test_durable_is_asked_for_an_older_pending_job_a_cancelled_one_and_a_long_poll(
    metered: tuple[DevHost, MeteredStorage], azurite: Azurite
) -> None:
    host, storage = metered
    conn = azurite.connection_string
    # Older than PENDING_FROM_ROW_FOR: the poll must learn whether the job has an instance (recovery). Not
    # placed, so it was never accepted and the poll starts nothing.
    older = record_then_die(conn, None, utc_now() - PENDING_FROM_ROW_FOR - timedelta(seconds=1))
    # A cancel was asked: Durable may have ended the job already.
    flagged = record_then_die(conn, None, utc_now(), placed_in=host.task_hub)
    _flag_stop(conn, flagged)
    for job_id in (older, flagged):
        status, _, counts = _poll(host, storage, f"/api/jobs/{job_id}")
        assert status == 202 and _tables(counts, "durable")["GetEntity"] >= 1, (job_id, counts)
    # A long-poll on the state it saw: compared with Durable's answer, from its first read on.
    young = record_then_die(conn, None, utc_now(), placed_in=host.task_hub)
    etag = host.client.get(f"/api/jobs/{young}").headers["etag"]
    status, _, counts = _poll(host, storage, f"/api/jobs/{young}?wait=1", headers={"If-None-Match": etag})
    assert status == 202 and _tables(counts, "durable")["GetEntity"] >= 1, counts


def test_a_submitted_job_is_polled_to_its_outcome_and_never_goes_back(metered: tuple[DevHost, MeteredStorage]) -> None:
    """Polled as fast as the client can from the 202 on: PENDING, possibly RUNNING (its row or Durable), then
    COMPLETED with its result; a later answer never shows an earlier status."""
    host, _ = metered
    order = {"PENDING": 0, "RUNNING": 1, "COMPLETED": 2}
    submitted = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 0.2}})
    assert submitted.status_code == 202, submitted.text
    seen: list[str] = []
    for _ in range(400):
        body = host.client.get(submitted.headers["location"]).json()
        seen.append(body["status"])
        if body["status"] == "COMPLETED":
            assert body["result"]["chunks"] == 2
            break
    assert seen[-1] == "COMPLETED", seen
    ranks = [order[status] for status in seen]
    assert ranks == sorted(ranks), seen
