"""Every job kind end to end through HTTP (POST /api/jobs → poll Location → result), plus the fault
paths: a transient failure retried to success, a permanent failure dead-lettered, a cancel, a
deadline, and a SIGKILL of the whole host during a csv-report that still yields the exact result."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import APP_TEST_ENV, DevHost
from kinds.base import BytesSource
from kinds.simulate import expected_checksum
from shared.contracts import JOB_ORCHESTRATOR
from tests.conftest import DEFAULT_TEST_ENV
from tests.kinds.reference import single_pass_report
from tests.orchestrators.helpers import WEBHOOKS, wait_finished

pytestmark = pytest.mark.slow


def submit_csv(client: httpx.Client, data: bytes, **params: Any) -> httpx.Response:
    query = {"kind": "csv-report", **params}
    response = client.post("/api/jobs", content=data, params=query, headers={"Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    return response


def submit_json(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    return response


def finished(host: DevHost, response: httpx.Response, timeout: float = 90.0) -> dict[str, Any]:
    final = host.wait_for_job(response.headers["location"], timeout=timeout)
    assert final.status_code == 200, final.text
    job: dict[str, Any] = final.json()
    return job


def wait_running(host: DevHost, location: str, predicate: Any = None, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = host.client.get(location).json()
        if job["status"] == "RUNNING" and (predicate is None or predicate(job)):
            return job
        time.sleep(0.02)
    raise TimeoutError(f"job at {location} never reached the expected RUNNING state")


def tricky_csv(rows: int, seed: int = 7) -> bytes:
    """A CSV with quotes, commas and newlines inside fields, CRLF, a BOM, blank lines and junk numbers."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["region", "amount", "note", "qty"])
    for n in range(rows):
        region = rng.choice(["north", "south", 'east "x"', "we,st", "multi\nline"])
        amount = rng.choice([f"{rng.uniform(-1e3, 1e3):.4f}", " 12 ", "1e3", ".5", "n/a", "", "-0.25e-2"])
        note = rng.choice(["plain", "with, comma", 'a "quote"', "line\r\nbreak"])
        writer.writerow([region, amount, note, str(n % 13)])
        if n % 97 == 0:
            out.write("\r\n")  # an empty line is not a row
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def assert_same_report(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual["rows"] == expected["rows"]
    assert actual["group_by"] == expected["group_by"]
    assert set(actual["groups"]) == set(expected["groups"])
    for key, group in expected["groups"].items():
        got = actual["groups"][key]
        assert got["count"] == group["count"]
        for metric, stats in group["metrics"].items():
            for field, value in stats.items():
                other = got["metrics"][metric][field]
                if isinstance(value, float):
                    assert math.isclose(other, value, rel_tol=1e-9, abs_tol=1e-12), (key, metric, field)
                else:
                    assert other == value, (key, metric, field)


CSV_OPTIONS = {"group_by": "region", "metrics": "amount,qty"}


def test_csv_report_end_to_end_equals_a_single_pass(devhost: DevHost) -> None:
    data = tricky_csv(2500)  # ~100 KB: dozens of 4 KB chunks (CHUNK_TARGET_BYTES in the test settings)
    job = finished(devhost, submit_csv(devhost.client, data, **CSV_OPTIONS))
    assert job["status"] == "COMPLETED", job
    assert job["progress"]["total"] > 10
    result = devhost.client.get(job["links"]["result"])
    assert result.status_code == 200
    expected = single_pass_report(BytesSource(data), {"group_by": "region", "metrics": ["amount", "qty"]})
    assert_same_report(result.json(), expected)
    as_csv = devhost.client.get(job["links"]["result"], params={"format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert len(list(csv.reader(io.StringIO(as_csv.text)))) > len(expected["groups"])


def test_vector_normalize_end_to_end(devhost: DevHost) -> None:
    body = {
        "kind": "vector-normalize",
        "input": {"vector_data": [[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], "metadata": {"source": "test"}},
    }
    job = finished(devhost, submit_json(devhost.client, body))
    assert job["status"] == "COMPLETED", job
    result = devhost.client.get(job["links"]["result"]).json()
    assert result["vectors"] == [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]
    assert (result["processed_vectors"], result["dimensions"], result["zero_vectors"]) == (3, 2, 1)
    assert result["status"] == "indexed"


def test_simulate_retries_transient_failures_to_success(devhost: DevHost) -> None:
    body = {"kind": "simulate", "options": {"chunks": 4, "transient_failures": 2}}
    job = finished(devhost, submit_json(devhost.client, body))
    assert job["status"] == "COMPLETED", job
    assert job["result"] == {"chunks": 4, "checksum": expected_checksum(4)}


def test_a_permanent_failure_is_dead_lettered_with_its_input_kept(devhost: DevHost) -> None:
    # A chunk that keeps failing (simulate's permanent_failure is now non-retryable: one attempt, see kinds).
    body = {"kind": "simulate", "options": {"chunks": 2, "transient_failures": 100}}
    job = finished(devhost, submit_json(devhost.client, body))
    assert job["status"] == "FAILED"
    assert job["error"]["type"] == "retries_exhausted"
    assert job["error"]["attempts"] == int(DEFAULT_TEST_ENV["RETRY_MAX_ATTEMPTS"])
    assert "Traceback" not in job["error"]["message"]
    letters = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
    letter = next(item for item in letters if item.get("job_id") == job["id"])
    assert letter["error_type"] == "retries_exhausted"
    assert letter["kind"] == "simulate" and letter["options"]["transient_failures"] == 100


def test_a_non_retryable_csv_error_fails_at_once_and_is_dead_lettered(devhost: DevHost) -> None:
    data = b"region,amount\nnorth,1\n"
    job = finished(devhost, submit_csv(devhost.client, data, group_by="region", metrics="price"))
    assert job["status"] == "FAILED"
    assert (job["error"]["type"], job["error"]["attempts"]) == ("unknown_column", 1)
    letters = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
    letter = next(item for item in letters if item.get("job_id") == job["id"])
    assert letter["input_ref"]  # kept for a replay


def test_cancel_ends_the_job_cancelled_within_seconds(devhost: DevHost) -> None:
    body = {"kind": "simulate", "options": {"chunks": 6, "chunk_seconds": 30}}
    response = submit_json(devhost.client, body)
    location = response.headers["location"]
    wait_running(devhost, location, lambda job: job["progress"]["total"] == 6)
    asked = time.monotonic()
    assert devhost.client.delete(location).status_code == 202
    job = finished(devhost, response, timeout=20)
    assert job["status"] == "CANCELLED"
    assert time.monotonic() - asked < 10


def test_the_deadline_fails_the_job_with_deadline_exceeded(devhost: DevHost) -> None:
    body = {"kind": "simulate", "options": {"chunks": 4, "chunk_seconds": 30}, "deadline_seconds": 2}
    started = time.monotonic()
    job = finished(devhost, submit_json(devhost.client, body), timeout=30)
    assert job["status"] == "FAILED"
    assert job["error"]["type"] == "deadline_exceeded"
    assert time.monotonic() - started < 15
    letters = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
    assert any(item.get("job_id") == job["id"] and item["error_type"] == "deadline_exceeded" for item in letters)


def test_a_sigkill_during_a_csv_report_still_yields_the_exact_result(azurite: Azurite) -> None:
    env = {**DEFAULT_TEST_ENV, "CHUNK_TARGET_BYTES": "16384", "MAX_PARALLEL_CHUNKS": "2"}
    data = tricky_csv(20000, seed=11)  # ~800 KB: ~50 chunks, two at a time
    first = DevHost(azurite.connection_string, env=env).start()
    second: DevHost | None = None
    try:
        response = submit_csv(first.client, data, **CSV_OPTIONS)
        path = httpx.URL(response.headers["location"]).path
        wait_running(first, path, lambda job: 0 < job["progress"]["completed"] < job["progress"]["total"] // 2)
        first.kill()  # host and workers, mid-job, as a crash would
        second = DevHost(azurite.connection_string, env=env, task_hub=first.task_hub).start()
        final = second.wait_for_job(path, timeout=120)
        assert final.status_code == 200, final.text
        job = final.json()
        assert job["status"] == "COMPLETED", job
        result = second.client.get(httpx.URL(job["links"]["result"]).path).json()
    finally:
        first.stop(timeout=5)
        if second is not None:
            second.stop(timeout=20)
    expected = single_pass_report(BytesSource(data), {"group_by": "region", "metrics": ["amount", "qty"]})
    assert_same_report(result, expected)


def test_with_the_shipped_host_json_a_job_cut_by_a_crash_finishes_within_a_minute(azurite: Azurite) -> None:
    """A SIGKILL of the host and its workers mid-activity, with the visibilities host.json ships (no test-only
    overrides): the new host sees the dead host's messages again once their visibility ends, so the job
    finishes about a minute after the crash. With Azure's default of 5 minutes it stayed RUNNING for 5 (the
    side-by-side crash test counted such jobs as never completed). DurableTask.AzureStorage keeps a running
    activity's work item hidden by renewing it 30 s before it expires (`TaskActivityDispatcher.RenewUntil`),
    so the shorter visibility does not let a live activity run twice."""
    first = DevHost(azurite.connection_string, env=dict(APP_TEST_ENV)).start()
    second: DevHost | None = None
    try:
        response = submit_json(first.client, {"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 4}})
        path = httpx.URL(response.headers["location"]).path
        wait_running(first, path, timeout=30)
        deadline = time.monotonic() + 30
        while "Executing 'Functions.process_chunk'" not in first.logs():  # both chunks are mid-run
            assert time.monotonic() < deadline, "no chunk started"
            time.sleep(0.05)
        time.sleep(0.5)
        first.kill()
        crashed = time.monotonic()
        second = DevHost(azurite.connection_string, env=dict(APP_TEST_ENV), task_hub=first.task_hub).start()
        final = second.wait_for_job(path, timeout=110)
        assert final.json()["status"] == "COMPLETED", final.text
        # 60 s of visibility, then 4 s of chunk and the job's last step; 5 min before host.json set it.
        assert time.monotonic() - crashed < 100
    finally:
        first.stop(timeout=5)
        if second is not None:
            second.stop(timeout=20)


def test_job_summaries_stay_small(devhost: DevHost) -> None:
    job = finished(devhost, submit_json(devhost.client, {"kind": "simulate", "options": {"chunks": 2}}))
    assert len(json.dumps(job["result"])) < 2048


def _scheduled(host: DevHost, job_id: str) -> list[str]:
    """The activities the job's orchestration scheduled, from its history (the job id is the instance id)."""
    history = TableServiceClient.from_connection_string(host.connection_string).get_table_client(
        f"{host.task_hub}History"
    )
    rows = history.query_entities("PartitionKey eq @id and EventType eq 'TaskScheduled'", parameters={"id": job_id})
    return sorted(str(row["Name"]) for row in rows)


def test_a_small_job_of_several_chunks_is_one_step_and_a_larger_one_is_staged(
    devhost_factory: Callable[..., DevHost],
) -> None:
    """WHOLE_RUN_MAX_SECONDS as shipped (0.5 s): 3 chunks x 0.05 s run whole in one activity; 3 x 0.3 s spread."""
    host = devhost_factory(env={"WHOLE_RUN_MAX_SECONDS": "0.5"})
    small = finished(
        host, submit_json(host.client, {"kind": "simulate", "options": {"chunks": 3, "chunk_seconds": 0.05}})
    )
    larger = finished(
        host, submit_json(host.client, {"kind": "simulate", "options": {"chunks": 3, "chunk_seconds": 0.3}})
    )
    for job in (small, larger):
        assert job["status"] == "COMPLETED", job
        assert job["result"] == {"chunks": 3, "checksum": expected_checksum(3)}
        assert job["progress"] == {"completed": 3, "total": 3, "percent": 100.0}
    assert _scheduled(host, small["id"]) == ["prepare_or_run_job"]
    assert _scheduled(host, larger["id"]) == ["complete_job", "prepare_or_run_job", *["process_chunk"] * 3]


def _start_again(host: DevHost, job_id: str) -> None:
    """Start the job's orchestration once more with its own input, as a start request that reached the host
    only after the job ended would (Azure restarts a finished instance: NonRunningStates may be overridden)."""
    # The job's row may say it ended a step before its orchestration does (the activity writes the outcome,
    # then the last episode checkpoints), so wait for the instance too.
    first = wait_finished(host, job_id, timeout=30)
    again = host.client.post(f"{WEBHOOKS}/orchestrators/{JOB_ORCHESTRATOR}/{job_id}", json=first["input"])
    assert again.status_code == 202, again.text
    wait_finished(host, job_id, timeout=30)


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"chunks": 3, "chunk_seconds": 0.01}, "COMPLETED"),  # run whole
        ({"chunks": 3, "chunk_seconds": 0.3}, "COMPLETED"),  # staged
        ({"chunks": 2, "transient_failures": 100}, "FAILED"),  # dead-lettered
        ({"chunks": 6, "chunk_seconds": 30}, "CANCELLED"),  # cancelled while running
    ],
    ids=["whole", "staged", "failed", "cancelled"],
)
def test_a_start_after_the_job_ended_changes_nothing(
    devhost_factory: Callable[..., DevHost], options: dict[str, Any], status: str
) -> None:
    """A second execution of a finished job keeps its outcome, its result and its dead letters as they were.

    Before: the staged job's second execution found its plan gone and wound the job down as CANCELLED,
    deleting its result."""
    host = devhost_factory(env={"WHOLE_RUN_MAX_SECONDS": "0.5"})
    submitted = submit_json(host.client, {"kind": "simulate", "options": options})
    if status == "CANCELLED":
        wait_running(host, submitted.headers["location"], lambda job: job["progress"]["total"] == 6)
        assert host.client.delete(submitted.headers["location"]).status_code == 202
    job = finished(host, submitted)
    assert job["status"] == status, job
    result = host.client.get(job["links"]["result"])
    letters = host.client.get("/api/dead-letters").json()["items"]
    _start_again(host, job["id"])
    again = host.client.get(f"/api/jobs/{job['id']}").json()
    assert {k: again.get(k) for k in ("status", "result", "error", "progress")} == {
        k: job.get(k) for k in ("status", "result", "error", "progress")
    }
    after = host.client.get(job["links"]["result"])
    assert (after.status_code, after.content) == (result.status_code, result.content)
    assert host.client.get("/api/dead-letters").json()["items"] == letters
