"""Long-poll through a real devhost: GET /api/jobs/{id}?wait=N with If-None-Match (issue #11).

The ETag is the version of the job's observable state (jobs/events.py), weak (RFC 9110 8.8.1: updated_at
may move while status and progress do not); If-None-Match is compared weakly, as RFC 9110 13.1.2 asks.
The answer is always the usual 202/200 with the current ETag, never 304: the client wants the state.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from devhost.testing.harness import DevHost
from tests.api.probes import eventually
from tests.api.test_contract import assert_problem, simulate, submit


def etag_version(response: httpx.Response) -> int:
    tag = response.headers["etag"]
    assert tag.startswith('W/"') and tag.endswith('"'), tag
    return int(tag[3:-1])


def running_job(host: DevHost, chunks: int, chunk_seconds: float) -> tuple[str, httpx.Response]:
    """A job that is RUNNING with its first chunks in flight; its location and the poll that saw it so."""
    location = submit(host.client, simulate(chunks=chunks, chunk_seconds=chunk_seconds)).headers["location"]

    def processing() -> httpx.Response | None:
        polled = host.client.get(location)
        return polled if polled.json()["status"] == "RUNNING" and polled.json()["progress"]["total"] else None

    return location, eventually(processing, timeout=30)


def timed_get(host: DevHost, location: str, wait: int, etag: str | None) -> tuple[float, httpx.Response]:
    headers = {"If-None-Match": etag} if etag else {}
    started = time.monotonic()
    response = host.client.get(location, params={"wait": str(wait)}, headers=headers, timeout=wait + 30)
    return time.monotonic() - started, response


def test_every_poll_carries_the_etag_of_the_state_it_shows(devhost: DevHost) -> None:
    location = submit(devhost.client, simulate(chunks=2)).headers["location"]
    first = devhost.client.get(location)
    done = devhost.wait_for_job(location)
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert etag_version(done) > etag_version(first)
    assert devhost.client.get(location).headers["etag"] == done.headers["etag"]  # the same state, the same tag


def test_long_poll_answers_as_soon_as_the_state_changes(devhost: DevHost) -> None:
    location, seen = running_job(devhost, chunks=3, chunk_seconds=3)
    elapsed, answer = timed_get(devhost, location, 50, seen.headers["etag"])
    assert answer.status_code in (200, 202), answer.text
    assert etag_version(answer) > etag_version(seen)
    assert answer.json()["progress"] != seen.json()["progress"] or answer.json()["status"] != seen.json()["status"]
    assert elapsed < 12, elapsed  # a chunk takes 3 s; the answer follows it within a poll interval or two


def test_long_poll_without_a_change_answers_after_wait_seconds_with_the_same_etag(devhost: DevHost) -> None:
    location, seen = running_job(devhost, chunks=2, chunk_seconds=30)  # two: a one-chunk plan runs whole in one step
    elapsed, answer = timed_get(devhost, location, 3, seen.headers["etag"])
    assert answer.status_code == 202 and answer.headers["location"] == location
    assert answer.headers["etag"] == seen.headers["etag"]
    assert 3 <= elapsed < 8, elapsed
    devhost.client.delete(location)


def test_a_stale_or_missing_if_none_match_answers_at_once(devhost: DevHost) -> None:
    location, seen = running_job(devhost, chunks=2, chunk_seconds=30)  # two: a one-chunk plan runs whole in one step
    for etag in (None, 'W/"0"', '"999999"', "*"):
        elapsed, answer = timed_get(devhost, location, 30, etag)
        assert answer.status_code == 202 and answer.headers["etag"] == seen.headers["etag"], etag
        assert elapsed < 3, (etag, elapsed)
    devhost.client.delete(location)


def test_a_finished_job_answers_at_once_even_with_its_own_etag(devhost: DevHost) -> None:
    location = submit(devhost.client, simulate(chunks=1)).headers["location"]
    done = devhost.wait_for_job(location)
    elapsed, answer = timed_get(devhost, location, 30, done.headers["etag"])
    assert answer.status_code == 200 and answer.headers["etag"] == done.headers["etag"]
    assert elapsed < 3


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "1.5", "²"])
def test_a_wait_outside_0_to_60_is_a_400_problem(devhost: DevHost, wait: str) -> None:
    location = submit(devhost.client, simulate(chunks=1)).headers["location"]
    body: dict[str, Any] = assert_problem(devhost.client.get(location, params={"wait": wait}), 400)
    assert [error["field"] for error in body["errors"]] == ["wait"]


def test_an_unknown_job_is_a_404_problem_also_with_wait(devhost: DevHost) -> None:
    started = time.monotonic()
    response = devhost.client.get(f"/api/jobs/{'0' * 32}", params={"wait": "30"}, headers={"If-None-Match": 'W/"0"'})
    assert_problem(response, 404)
    assert time.monotonic() - started < 3
