"""The fault suite's client: retries 5xx and dropped connections with the same key and body, stops on a 4xx."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.chaos.checker import Submission
from bench.chaos.client import JobClient
from bench.chaos.workload import vector_job


class Scripted(ThreadingHTTPServer):
    """Answers POST /api/jobs from a script: a status code, or "drop" to close without an answer."""

    def __init__(self, script: list[int | str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = script
        self.seen: list[tuple[str | None, bytes]] = []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.headers.get("Idempotency-Key"), body))
        step = self.server.script.pop(0)
        if step == "drop":
            self.close_connection = True
            self.connection.close()
            return
        assert isinstance(step, int)
        payload = json.dumps({"id": "f" * 32} if step == 202 else {"status": step}).encode()
        self.send_response(step)
        if step == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Scripted]:
    scripted = Scripted(list(request.param))
    thread = threading.Thread(target=scripted.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()


def _client(server: Scripted, budget: float = 10.0) -> JobClient:
    return JobClient(f"http://127.0.0.1:{server.server_address[1]}", budget=budget, max_backoff=0.05)


@pytest.mark.parametrize("server", [[503, "drop", 500, 202]], indirect=True)
def test_retries_with_the_same_key_and_body_until_202(server: Scripted) -> None:
    submission = Submission(vector_job("key-1", random.Random(1)))
    client = _client(server)
    client.submit(submission)
    client.close()
    assert submission.accepted_ids == ["f" * 32]
    assert submission.attempts == 4
    assert {key for key, _ in server.seen} == {"key-1"}
    assert len({body for _, body in server.seen}) == 1
    assert submission.answers["submit 503"] == 1 and submission.answers["submit 202"] == 1


@pytest.mark.parametrize("server", [[409]], indirect=True)
def test_a_4xx_is_final(server: Scripted) -> None:
    submission = Submission(vector_job("key-2", random.Random(1)))
    client = _client(server)
    client.submit(submission)
    client.close()
    assert submission.accepted_ids == []
    assert submission.gave_up is not None and submission.gave_up.startswith("submit answered 409")


@pytest.mark.parametrize("server", [[503] * 1000], indirect=True)
def test_gives_up_when_the_budget_runs_out(server: Scripted) -> None:
    submission = Submission(vector_job("key-3", random.Random(1)))
    client = _client(server, budget=0.5)
    client.submit(submission)
    client.close()
    assert submission.accepted_ids == []
    assert submission.gave_up is not None and "last submit: 503" in submission.gave_up
