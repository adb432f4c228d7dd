"""GET /api/jobs/{id}/events through a real devhost, read by a client library (httpx-sse), issue #11.

The host runs with short stream timings (poll 0.3 s, heartbeat 1 s, streams of at most 4 s) so that
every rule shows within seconds: the events and their ids, resume with Last-Event-ID across a forced
disconnect, heartbeats on an idle stream, the terminal event and the end, the stream ending at its
maximum duration and the client resuming.

httpx-sse 0.4.3 dispatches a block without data as an event named "message" with empty data (the
`retry:` frame, and a `: ping` heartbeat once an id was seen: its SSEDecoder.decode keeps
_last_event_id); the HTML spec's parser does not. `job_events` drops those, as a client would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from jsonschema import Draft202012Validator

from devhost.testing.harness import DevHost
from tests.api.documented import Contract
from tests.api.probes import eventually
from tests.api.test_contract import assert_problem, simulate, submit

# Two chunks at a time: the multi-chunk jobs here run in waves, so they are still running (and changing)
# while a test listens or hangs up. With all six chunks at once, a quick machine finished the job before the
# first change was read, and the disconnect test had nothing to miss.
STREAM_ENV = {
    "SSE_POLL_SECONDS": "0.3",
    "SSE_HEARTBEAT_SECONDS": "1",
    "SSE_MAX_STREAM_SECONDS": "4",
    "MAX_PARALLEL_CHUNKS": "2",
}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def host(azurite: Any) -> Iterator[DevHost]:
    from tests.conftest import DEFAULT_TEST_ENV

    started = DevHost(azurite.connection_string, env={**DEFAULT_TEST_ENV, **STREAM_ENV}).start()
    try:
        yield started
    finally:
        started.stop(timeout=20)


def events_url(job_id: str) -> str:
    return f"/api/jobs/{job_id}/events"


def job_events(source: Any) -> Iterator[ServerSentEvent]:
    for event in source.iter_sse():
        if event.event == "message" and not event.data:
            continue  # a retry frame or a heartbeat, as httpx-sse reports them
        yield event


def read_stream(host: DevHost, job_id: str, last_id: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """One connection: its response headers, the events it carried, whether it ended on its own."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    with httpx.Client(base_url=host.base_url, timeout=httpx.Timeout(10.0, read=30.0)) as client:
        with connect_sse(client, "GET", events_url(job_id), headers=headers) as source:
            response = source.response
            events: list[ServerSentEvent] = []
            ended = True
            if response.status_code == 200:
                for event in job_events(source):
                    events.append(event)
                    if limit is not None and len(events) >= limit:
                        ended = False  # we hang up: a forced disconnect
                        break
            return {"status": response.status_code, "headers": response.headers, "events": events, "ended": ended}


def follow(host: DevHost, job_id: str, last_id: str | None = None, timeout: float = 60) -> list[list[ServerSentEvent]]:
    """Reconnect with Last-Event-ID until the terminal event; the events of each connection."""
    connections: list[list[ServerSentEvent]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream = read_stream(host, job_id, last_id)
        assert stream["status"] == 200, stream
        connections.append(stream["events"])
        if stream["events"]:
            last_id = stream["events"][-1].id
            if stream["events"][-1].event in TERMINAL:
                return connections
    raise AssertionError(f"no terminal event within {timeout} s")


def ids(events: list[ServerSentEvent]) -> list[int]:
    return [int(event.id) for event in events]


def test_a_stream_reports_status_and_progress_then_the_job_and_ends(host: DevHost) -> None:
    location = submit(host.client, simulate(chunks=4, chunk_seconds=0.6)).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    first = read_stream(host, job_id, limit=1)
    assert first["headers"]["content-type"].startswith("text/event-stream")
    assert first["headers"]["cache-control"] == "no-cache" and first["headers"]["x-accel-buffering"] == "no"
    assert first["events"][0].event == "status"
    connections = follow(host, job_id)
    events = [event for connection in connections for event in connection]
    assert ids(events) == sorted(set(ids(events))), "ids only grow, and no event comes twice"
    names = [event.event for event in events]
    assert names[0] == "status" and names[-1] == "completed" and set(names[1:-1]) <= {"status", "progress"}
    states = [json.loads(event.data) for event in events[:-1]]
    assert all(set(state) == {"id", "status", "phase", "progress", "updated_at"} for state in states)
    assert [s["progress"]["completed"] for s in states] == sorted(s["progress"]["completed"] for s in states)
    assert "processing" in {s["phase"] for s in states}
    # The terminal event carries the job as GET gives it, and is the job's last event.
    done = host.client.get(location)
    assert json.loads(events[-1].data) == done.json() and done.headers["etag"] == f'W/"{events[-1].id}"'
    again = read_stream(host, job_id, last_id=events[-1].id)
    assert again["status"] == 204, "after the terminal event there is nothing to resume"


def documented_event(host: DevHost, path: str) -> tuple[Draft202012Validator, Draft202012Validator]:
    """Validators for one event of the stream at `path` (its fields, and its data's JSON), as /api/openapi.json
    describes them: refs resolve against the document's components."""
    contract = Contract(host.client.get("/api/openapi.json").json())
    event = contract.doc["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
    data = event["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    return contract.schema(event), contract.schema(data["contentSchema"])


def test_every_event_is_the_event_the_openapi_document_describes(host: DevHost) -> None:
    fields, data = documented_event(host, "/api/jobs/{job_id}/events")
    location = submit(host.client, simulate(chunks=3, chunk_seconds=0.3)).headers["location"]
    events = [event for connection in follow(host, location.rsplit("/", 1)[1]) for event in connection]
    assert len(events) >= 2
    for event in events:
        read = {"event": event.event, "data": event.data, "id": event.id}
        assert not list(fields.iter_errors(read)), read
        assert not list(data.iter_errors(json.loads(event.data))), event.data
    # The schema says something: an event the stream never sends is not what it describes.
    assert list(fields.iter_errors({"event": "message", "data": "{}", "id": "1"}))
    assert list(data.iter_errors({"id": "x"}))


def test_resume_after_a_forced_disconnect_repeats_nothing_and_loses_nothing(host: DevHost) -> None:
    location = submit(host.client, simulate(chunks=6, chunk_seconds=0.8)).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    before = read_stream(host, job_id, limit=2)  # status, then the first change; then we hang up
    assert not before["ended"]
    seen = before["events"]

    def changed_since() -> int:  # the job moves on while nobody listens
        version = int(host.client.get(location).headers["etag"][3:-1])
        return version if version > int(seen[-1].id) else 0

    missed_version = eventually(changed_since, timeout=30)
    after = follow(host, job_id, last_id=seen[-1].id)
    resumed = [event for connection in after for event in connection]
    assert int(resumed[0].id) > int(seen[-1].id)  # nothing repeated
    assert int(resumed[0].id) >= missed_version  # the change made while away is reported at once
    assert resumed[0].event in ("progress", "completed")  # the client saw the job running already
    everything = seen + resumed
    assert ids(everything) == sorted(set(ids(everything)))
    final = json.loads(resumed[-1].data)
    assert resumed[-1].event == "completed" and final["progress"]["completed"] == final["progress"]["total"] == 6


def test_an_idle_stream_sends_heartbeats_and_ends_at_its_maximum_duration(host: DevHost) -> None:
    location = submit(host.client, simulate(chunks=1, chunk_seconds=30)).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    try:
        # Running whole (one chunk), preparing: nothing changes for 30 s.
        eventually(lambda: host.client.get(location).json()["status"] == "RUNNING")
        started = time.monotonic()
        with host.client.stream("GET", events_url(job_id), timeout=httpx.Timeout(10.0, read=15.0)) as response:
            body = b"".join(response.iter_raw())
        elapsed = time.monotonic() - started
        assert 3.5 <= elapsed < 7, elapsed  # SSE_MAX_STREAM_SECONDS=4: it ended on its own
        text = body.decode()
        assert text.startswith("retry: 300\n\n")
        assert text.count(": ping\n\n") >= 2  # one after every quiet second (heartbeat 1 s)
        assert text.count("\nevent: ") + text.startswith("event: ") == 1  # only the opening status
        last_id = text.split("id: ")[1].split("\n")[0]
        # The client resumes where it was: a quiet job sends nothing again, only heartbeats.
        resumed = read_stream(host, job_id, last_id=last_id)
        assert resumed["status"] == 200 and resumed["ended"] and resumed["events"] == []
    finally:
        host.client.delete(location)


def test_a_cancelled_job_ends_its_stream_with_the_cancelled_event(host: DevHost) -> None:
    location = submit(host.client, simulate(chunks=1, chunk_seconds=30)).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    opening = read_stream(host, job_id, limit=1)["events"][0]
    host.client.delete(location)
    events = [event for connection in follow(host, job_id, last_id=opening.id) for event in connection]
    assert events[-1].event == "cancelled" and json.loads(events[-1].data)["status"] == "CANCELLED"


def test_unknown_jobs_and_bad_requests_are_problems(host: DevHost) -> None:
    assert_problem(host.client.get(events_url("0" * 32)), 404)
    assert_problem(host.client.get(events_url("not-a-job")), 404)
    job_id = submit(host.client, simulate(chunks=1)).json()["id"]
    body = assert_problem(host.client.get(events_url(job_id), headers={"Last-Event-ID": "abc"}), 400)
    assert [error["field"] for error in body["errors"]] == ["Last-Event-ID"]
    assert_problem(host.client.post(events_url(job_id)), 405)
