"""The decisions both clients share (client/longrun_client/_core.py, handle.py), without a server: how a submit
travels, which failures are tried again and after how long, how pages follow each other, and a wait's clock.
The same decisions against a real devhost: test_client.py (both clients) and test_cli.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import httpx
import pytest

from longrun_client import ConnectionFailed, JobStatus, ProblemError, RetryPolicy, WaitTimeout
from longrun_client._core import (
    Attempts,
    Pages,
    SubmitOptions,
    health_of,
    jobs_query,
    listed_job,
    plan_submit,
    replay_request,
)
from longrun_client.handle import MAX_EMPTY_STREAMS, EventResume, WaitClock
from longrun_client.models import JobSnapshot
from tests.client.test_events_and_retries import RUNNING

URL = "http://gw/longrun/api/jobs"


def plan(file: Path | None = None, **given):
    input_document = given.pop("input", None)
    options = cast(SubmitOptions, {"options": {"group_by": "region"}, "file": file, **given})
    return plan_submit("csv-report", input_document, options, max_inline_bytes=100)


def test_inline_input_is_one_json_envelope_under_a_fresh_idempotency_key():
    first, second = plan(input={"vector_data": [1]}), plan(input={"vector_data": [1]})
    assert first.read is None and first.upload is None
    request = first.request()
    assert request["json"] == {"kind": "csv-report", "input": {"vector_data": [1]}, "options": {"group_by": "region"}}
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]  # fresh per submit...
    assert plan(input=1, idempotency_key="k").request()["headers"] == {"Idempotency-Key": "k"}  # ...unless given
    with pytest.raises(ValueError, match="not both"):
        plan(Path("missing.csv"), input={"a": 1})


def test_small_files_go_in_the_post_and_larger_ones_through_an_upload(tmp_path: Path):
    small_csv = tmp_path / "small.csv"
    small_csv.write_text("region,amount\nnorth,1\n")
    raw = plan(small_csv, deadline_seconds=60)
    assert raw.read == small_csv and raw.upload is None and raw.media_type == "text/csv"
    request = raw.request(small_csv.read_bytes())
    assert request["content"] == small_csv.read_bytes() and request["headers"]["Content-Type"] == "text/csv"
    assert request["params"] == {"kind": "csv-report", "deadline_seconds": "60", "group_by": "region"}

    # A raw body cannot carry a callback: the file is uploaded and the envelope carries both.
    hooked = plan(small_csv, callback={"url": "https://example.org/hook"})
    assert hooked.upload == small_csv and hooked.read is None
    assert hooked.by_reference("uploads/" + "0" * 32)["json"]["callback"] == {"url": "https://example.org/hook"}

    small_json = tmp_path / "small.json"
    small_json.write_text(json.dumps({"vector_data": [[3, 4]]}))
    inline = plan(small_json)
    assert inline.read == small_json
    assert inline.request(small_json.read_bytes())["json"]["input"] == {"vector_data": [[3, 4]]}

    big_csv = tmp_path / "big.csv"
    big_csv.write_text("region,amount\n" + "north,1\n" * 20)
    assert big_csv.stat().st_size > 100
    uploaded = plan(big_csv)
    assert uploaded.upload == big_csv and uploaded.read is None
    envelope = uploaded.by_reference("uploads/" + "1" * 32)["json"]
    assert envelope == {"kind": "csv-report", "input_ref": "uploads/" + "1" * 32, "options": {"group_by": "region"}}


def _answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", URL))


def test_only_idempotent_calls_are_tried_again_and_retry_after_sets_the_wait():
    policy = RetryPolicy(max_attempts=3, backoff_seconds=0.5)
    request = httpx.Request("POST", URL)
    refused = httpx.ConnectError("refused")

    once = Attempts(policy, idempotent=False)
    with pytest.raises(ConnectionFailed, match="POST http://gw/longrun/api/jobs: ConnectError: refused"):
        once.after_error(request, refused)
    assert once.after_response(_answer(503, **{"retry-after": "1"})) is None  # the answer, not a retry

    attempts = Attempts(policy, idempotent=True)
    assert attempts.after_response(_answer(503, **{"retry-after": "7"})) == 7.0
    assert 0.5 <= attempts.after_error(request, refused) <= 1.0  # attempt 1: backoff up to 2 x 0.5 s
    with pytest.raises(ConnectionFailed):  # the third attempt was the last
        attempts.after_error(request, refused)

    fresh = Attempts(policy, idempotent=True)
    assert fresh.after_response(_answer(200)) is None and fresh.after_response(_answer(400)) is None
    assert all(fresh.after_response(_answer(status)) is not None for status in (429, 502))


def test_pages_follow_the_continuation_to_the_last_page():
    pages = Pages(jobs_query(JobStatus.FAILED, "simulate", 2))
    assert pages.query == {"limit": "2", "status": "FAILED", "kind": "simulate"} and not pages.done
    first = httpx.Response(200, json={"items": [{"id": "a"}, {"id": "b"}], "continuation": "c1"})
    assert [i["id"] for i in pages.items(first)] == ["a", "b"] and not pages.done
    assert pages.query["continuation"] == "c1"
    assert pages.items(httpx.Response(200, json={"items": [], "continuation": None})) == [] and pages.done

    item = {**RUNNING, "links": {}}
    assert listed_job(item).location == "api/jobs/" + "a" * 32
    assert listed_job(RUNNING).location == RUNNING["links"]["self"]
    assert replay_request("d1", None)[0] == "api/dead-letters/d1/replay"
    assert replay_request("d1", "k")[1] == {"headers": {"Idempotency-Key": "k"}}


def test_health_reads_the_json_503_as_an_answer():
    down = {"status": "unavailable", "storage": "unreachable", "queues": {}, "jobs": {}}
    health = health_of(httpx.Response(503, json=down, request=httpx.Request("GET", URL)))
    assert not health.ok
    with pytest.raises(ProblemError) as refused:
        health_of(httpx.Response(503, text="gateway down", request=httpx.Request("GET", URL)))
    assert refused.value.status == 503 and refused.value.detail == "gateway down"


def test_a_wait_sleeps_as_retry_after_says_but_never_past_its_deadline():
    snapshot = JobSnapshot.from_json(RUNNING)
    seen: list[JobSnapshot] = []
    clock = WaitClock(0.3, seen.append, snapshot)
    assert seen == [snapshot]  # told the state the wait starts from
    clock.changed(snapshot, snapshot)
    assert len(seen) == 1  # ...and only states that differ after that
    assert clock.poll_delay(snapshot, 5.0) <= 0.3
    read = clock.stream_timeout(snapshot).read
    assert read is not None and read <= 0.3
    time.sleep(0.35)
    assert clock.expired()
    with pytest.raises(WaitTimeout):
        clock.poll_delay(snapshot, 5.0)
    endless = WaitClock(None, None, snapshot)
    assert endless.poll_delay(snapshot, None) == 1.0 and endless.poll_delay(snapshot, 4.0) == 4.0
    assert endless.stream_timeout(snapshot).read == 60.0 and not endless.expired()


def test_event_streams_resume_after_the_last_event_until_they_keep_ending_empty():
    stream = EventResume()
    assert stream.headers() == {}
    stream.seen("5")
    assert stream.worth_resuming()  # that stream brought an event
    for _ in range(MAX_EMPTY_STREAMS - 1):
        assert stream.headers() == {"Last-Event-ID": "5"}
        assert stream.worth_resuming()
    stream.headers()
    assert not stream.worth_resuming()  # the third empty stream in a row: poll instead
    stream.seen("")  # an event without an id leaves the resume point alone
    assert stream.headers() == {"Last-Event-ID": "5"}
