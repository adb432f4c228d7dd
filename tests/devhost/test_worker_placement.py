"""Where app code runs: in the language worker processes, on one shared thread pool (issue #9, item 4).

Source: Azure/azure-functions-python-worker, `Dispatcher._handle__invocation_request`: every invocation
(HTTP, queue, timer, activity, orchestrator) arrives over gRPC in the worker process; a synchronous
function runs `await self._loop.run_in_executor(self._sync_call_tp, ...)`, one pool of
PYTHON_THREADPOOL_THREAD_COUNT threads, and an async function runs on the worker's event loop
(`_run_async_func`). The host process runs no app code.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, queue_client, start_orchestration, wait_status, wait_until


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def _assert_worker(host: DevHost, pid: int) -> None:
    assert host.process is not None
    assert pid != host.process.pid, "app code ran in the host process"
    assert _parent(pid) == host.process.pid, f"{pid} is not a worker process of the host"


def _reports(azurite: Azurite, queue: str) -> list[dict[str, Any]]:
    client = queue_client(azurite, queue)
    try:
        return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    except Exception:  # noqa: BLE001 - not created yet
        return []


def test_http_queue_timer_activity_and_orchestrator_code_runs_in_workers(azurite: Azurite, sample_factory: Any) -> None:
    reports = f"reports-{uuid.uuid4().hex[:12]}"
    slow = f"slow-{uuid.uuid4().hex[:12]}"
    host = sample_factory(env={"TICK_SCHEDULE": "*/1 * * * * *", "REPORT_QUEUE": reports, "SLOW_QUEUE": slow})

    sync_http = host.client.get("/api/echo").json()
    _assert_worker(host, sync_http["pid"])
    assert sync_http["thread"] != "MainThread"  # the worker's thread pool
    async_http = host.client.get("/api/whoami").json()
    _assert_worker(host, async_http["pid"])
    assert async_http["thread"] == "MainThread"  # the worker's event loop

    output = wait_status(host, start_orchestration(host, "where"))["output"]
    _assert_worker(host, output["orchestrator"]["pid"])
    _assert_worker(host, output["activity"]["pid"])
    assert output["orchestrator"]["thread"] != "MainThread"  # the handle is synchronous: thread pool

    wait_until(lambda: _exists(queue_client(azurite, slow)), timeout=30)  # the listener creates it
    queue_client(azurite, slow).send_message("aGVsbG8=")  # "hello", base64
    wait_until(lambda: len(_reports(azurite, reports)) >= 1, timeout=30)
    _assert_worker(host, _reports(azurite, reports)[0]["pid"])

    ticks = queue_client(azurite, host.env["TICK_QUEUE"])
    wait_until(lambda: bool(_peek(ticks)), timeout=30)
    _assert_worker(host, int(_peek(ticks)[0].rsplit("pid=", 1)[1]))


def _exists(queue: Any) -> bool:
    try:
        queue.get_queue_properties()
    except Exception:  # noqa: BLE001 - not created yet
        return False
    return True


def _peek(queue: Any) -> list[str]:
    try:
        return [str(m.content) for m in queue.peek_messages(max_messages=1)]
    except Exception:  # noqa: BLE001 - not created yet
        return []


def test_sync_functions_replays_and_activities_share_one_thread_pool(sample_factory: Any) -> None:
    """With one worker of one thread, a running activity holds back a sync HTTP call and another
    instance's replay; an async HTTP function runs on the event loop and answers at once."""
    host = sample_factory(env={"FUNCTIONS_WORKER_PROCESS_COUNT": "1", "PYTHON_THREADPOOL_THREAD_COUNT": "1"})
    busy = start_orchestration(host, "slow_sequence", [1, 5])
    wait_until(lambda: "Executing 'Functions.slow_step'" in host.logs(), timeout=30)
    activity_started = time.monotonic()

    started = time.monotonic()
    assert host.client.get("/api/whoami").status_code == 200
    assert time.monotonic() - started < 2.0  # async: not queued behind the activity

    # `start` is async too: it answers while the thread is busy; the replay it causes must wait.
    other = start_orchestration(host, "progress")
    with ThreadPoolExecutor(1) as background:
        # A sync HTTP function meanwhile, from another client: it waits for the only thread as well.
        echo = background.submit(lambda: (host.client.get("/api/echo").status_code, time.monotonic()))

        def replayed() -> bool:
            status = host.client.get(f"{MANAGEMENT}/instances/{other}")
            return bool(status.status_code == 202 and status.json().get("customStatus") == {"step": 1})

        wait_until(replayed, timeout=30)
        assert time.monotonic() - activity_started >= 3.5, "a replay ran beside a busy activity"
        code, answered = echo.result(timeout=30)
    assert code == 200
    assert answered - activity_started >= 3.5, "a sync HTTP function ran beside a busy activity"
    assert wait_status(host, busy)["runtimeStatus"] == "Completed"
