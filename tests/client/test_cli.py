"""The `longrun` console script, run as a user runs it (a subprocess), against a real devhost.

Exit codes: 0 completed, 1 failed, 2 bad usage, 3 cancelled, 4 timeout; `--json` prints the resources.
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests.client.conftest import Cli

pytestmark = pytest.mark.slow

QUICK = ["--kind", "simulate", "--option", "chunks=3", "--option", "chunk_seconds=0.05"]


def test_submit_wait_completed_prints_the_finished_job(cli: Cli):
    run = cli("--json", "submit", *QUICK, "--wait", "--timeout", "120")
    assert run.code == 0, run.stderr
    job = run.json()
    assert job["status"] == "COMPLETED"
    assert job["progress"] == {"completed": 3, "total": 3, "percent": 100.0}
    assert job["result"]["chunks"] == 3

    human = cli("submit", *QUICK, "--wait", "--timeout", "120")
    assert human.code == 0, human.stderr
    assert "COMPLETED" in human.stdout and "progress: 3/3 chunks" in human.stdout


def test_submit_wait_failed_exits_1_with_the_error(cli: Cli):
    run = cli("--json", "submit", "--kind", "simulate", "--option", "permanent_failure=true", "--wait")
    assert run.code == 1, run.stderr
    job = run.json()
    assert job["status"] == "FAILED"
    assert job["error"]["type"] == "simulated_failure"


def test_cancelled_job_exits_3(cli: Cli):
    submitted = cli("--json", "submit", "--kind", "simulate", "--option", "chunks=40", "--option", "chunk_seconds=1")
    assert submitted.code == 0, submitted.stderr
    job_id = submitted.json()["id"]
    cancelled = cli("--json", "cancel", job_id)
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json()["id"] == job_id
    watched = cli("--json", "watch", job_id, "--timeout", "120")
    assert watched.code == 3, watched.stderr
    assert watched.json()["status"] == "CANCELLED"


def test_wait_timeout_exits_4_and_the_job_runs_on(cli: Cli):
    started = time.monotonic()
    run = cli("--json", "submit", "--kind", "simulate", "--option", "chunks=20", "--option", "chunk_seconds=1",
              "--wait", "--timeout", "2")  # fmt: skip
    assert run.code == 4, run.stderr
    assert time.monotonic() - started < 30
    job = run.json()
    assert job["timed_out"] is True and job["status"] in ("PENDING", "RUNNING")
    assert "timeout" in run.stderr
    assert cli("cancel", job["id"]).code == 0  # leave nothing running for the next tests


def test_bad_usage_exits_2(cli: Cli):
    unknown_kind = cli("submit", "--kind", "no-such-kind")
    assert unknown_kind.code == 2
    assert "422" in unknown_kind.stderr and "kind" in unknown_kind.stderr
    not_an_option = cli("submit", "--kind", "simulate", "--option", "chunks")
    assert not_an_option.code == 2
    assert cli("frobnicate").code == 2


def test_problem_as_json_for_scripts(cli: Cli):
    run = cli("--json", "submit", "--kind", "simulate", "--option", "chunks=0")
    assert run.code == 2
    problem = run.json()["problem"]
    assert problem["status"] == 422
    assert problem["type"] == "urn:longrun:problem:validation-error"
    assert any(e["field"] == "options.chunks" for e in problem["errors"])
    missing = cli("--json", "watch", "0" * 32)
    assert missing.code == 1
    assert missing.json()["problem"]["status"] == 404


def test_ls_follows_continuation_pages(cli: Cli):
    ids = []
    for _ in range(5):
        run = cli("--json", "submit", "--kind", "simulate", "--option", "chunks=1")
        assert run.code == 0, run.stderr
        ids.append(run.json()["id"])
    listed = cli("--json", "ls", "--kind", "simulate", "--page-size", "2", "--limit", "1000")
    assert listed.code == 0, listed.stderr
    seen = [job["id"] for job in listed.json()]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)  # 5 jobs through pages of 2: the continuation was followed
    assert seen.index(ids[-1]) < seen.index(ids[0])  # newest first
    limited = cli("--json", "ls", "--kind", "simulate", "--page-size", "2", "--limit", "3")
    assert len(limited.json()) == 3

    table = cli("ls", "--kind", "simulate", "--limit", "5")
    assert table.code == 0
    assert ids[-1] in table.stdout and "simulate" in table.stdout


def test_result_to_a_file_as_csv(cli: Cli, tmp_path):
    document = json.dumps({"vector_data": [[3, 4], [1, 0]], "metadata": {"source": "cli"}})
    run = cli("--json", "submit", "--kind", "vector-normalize", "--json", document, "--wait")
    assert run.code == 0, run.stderr
    job_id = run.json()["id"]
    target = tmp_path / "vectors.csv"
    saved = cli("result", job_id, "-o", str(target), "--format", "csv")
    assert saved.code == 0, saved.stderr
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert [[float(x) for x in row] for row in rows] == [[0.6, 0.8], [1.0, 0.0]]
    assert not (tmp_path / "vectors.csv.part").exists()
    printed = cli("result", job_id)
    assert json.loads(printed.stdout)["metadata_processed"] == {"source": "cli"}


def test_submit_a_file(cli: Cli, tmp_path):
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nnorth,1\nsouth,2\nnorth,3\n")
    run = cli("--json", "submit", str(data), "--option", "group_by=region", "--option", "metrics=amount", "--wait")
    assert run.code == 0, run.stderr
    job = run.json()
    assert job["kind"] == "csv-report" and job["status"] == "COMPLETED"
    assert job["result"]["rows"] == 3


def test_dead_letters_and_replay(cli: Cli):
    failed = cli("--json", "submit", "--kind", "simulate", "--option", "permanent_failure=true", "--wait")
    assert failed.code == 1
    job_id = failed.json()["id"]
    letters = cli("--json", "dead-letters", "--limit", "100")
    assert letters.code == 0, letters.stderr
    letter = next(item for item in letters.json() if item["job_id"] == job_id)
    assert letter["error_type"] == "simulated_failure"
    table = cli("dead-letters")
    assert letter["id"] in table.stdout

    replayed = cli("--json", "replay", letter["id"], "--wait", "--timeout", "120")
    assert replayed.code == 1  # the same input fails the same way, as a new job
    again = replayed.json()
    assert again["id"] != job_id and again["kind"] == "simulate" and again["status"] == "FAILED"


def test_health(cli: Cli):
    run = cli("--json", "health")
    assert run.code == 0, run.stderr
    assert run.json()["status"] == "ok"
    assert "status: ok" in cli("health").stdout


def test_unreachable_host_exits_1(cli: Cli):
    run = cli("--url", "http://127.0.0.1:9", "health")
    assert run.code == 1
    assert "error" in run.stderr
