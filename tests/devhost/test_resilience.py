"""Crashes lose nothing; SIGTERM drains; broken apps fail start-up clearly; workers run in parallel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from devhost.testing.azurite import ROOT, Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, SAMPLE_APP, sample_env, start_orchestration, wait_status, wait_until


def completed_steps(host: Any, instance_id: str) -> int:
    status = host.client.get(f"{MANAGEMENT}/instances/{instance_id}", params={"showHistory": "true"}).json()
    return sum(1 for e in status.get("historyEvents") or [] if e["EventType"] == "TaskCompleted")


def test_sigkill_mid_job_loses_nothing(sample_factory: Any) -> None:
    host = sample_factory()
    slow = start_orchestration(host, "slow_sequence", [6, 0.4])
    timer = start_orchestration(host, "timer", 3)
    wait_until(lambda: completed_steps(host, slow) >= 2, timeout=30)
    host.kill()  # the whole process group: host and worker processes, mid-activity
    time.sleep(0.5)
    host.start()
    assert wait_status(host, slow)["output"] == 2.4
    assert wait_status(host, timer)["output"] == "fired"  # the durable timer survived the crash


def test_sigterm_lets_in_flight_work_finish_and_exits_0(sample_factory: Any) -> None:
    host = sample_factory()
    instance_id = start_orchestration(host, "slow_sequence", [2, 1.5])
    wait_until(lambda: "Executing 'Functions.slow_step'" in host.logs(), timeout=30)  # a 1.5 s step is running
    assert host.stop(timeout=60) == 0
    assert "Executed 'Functions.slow_step' (Succeeded" in host.logs()  # it finished instead of being cut off
    host.start()
    assert wait_status(host, instance_id)["output"] == 3.0


def test_sigterm_with_storage_down_still_exits_in_seconds(tmp_path: Path) -> None:
    """Storage gone before the host (Azurite stopped first, or an outage): a stop must not wait on the SDK's
    retries of the control-queue polls and lease calls. It waited over 200 s; now a poll still under way
    after 2 s is cancelled and the leases, which expire on their own, are given up for 5 s at most.
    DurableTask.AzureStorage's StopAsync cancels its dequeues the same way (`shutdownSource`,
    src/DurableTask.AzureStorage/AzureStorageOrchestrationService.cs, Azure/durabletask at 52170329)."""
    storage = Azurite.start(location=tmp_path / "azurite")  # its own: this test stops it
    host = DevHost(storage.connection_string, env=sample_env(), args=["--app-dir", str(SAMPLE_APP)])
    try:
        host.start()
        wait_until(lambda: "Acquired the lease on partition" in host.logs(), timeout=30)
        storage.stop()
        began = time.monotonic()
        assert host.stop(timeout=60) == 0
        assert time.monotonic() - began < 20
        assert "Host stopped." in host.logs()
    finally:
        host.kill()
        storage.stop()


def test_cpu_bound_activities_run_in_parallel_processes(sample_factory: Any) -> None:
    host = sample_factory()
    spans = wait_status(host, start_orchestration(host, "parallel_cpu", 1.0))["output"]
    # Two worker processes, burning at the same time: not serialized by one GIL. (How much the burns overlap
    # depends on how soon each process picks its activity up on a busy machine; that they overlap does not.)
    assert len({s["pid"] for s in spans}) == 2, spans
    overlap = min(s["end"] for s in spans) - max(s["start"] for s in spans)
    assert overlap > 0, spans


def _start_broken(azurite: Azurite, tmp_path: Path, app_code: str, env: dict[str, str] | None = None) -> Any:
    (tmp_path / "function_app.py").write_text(textwrap.dedent(app_code))
    (tmp_path / "host.json").write_text((SAMPLE_APP / "host.json").read_text())
    (tmp_path / "local.settings.json").write_text(
        '{"Values": {"TASK_HUB_NAME": "brokenhub", "SAMPLE_QUEUE": "q", "TICK_SCHEDULE": "0 0 0 1 1 *"}}'
    )
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--port", "0", "--app-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "AzureWebJobsStorage": azurite.connection_string,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
    )


def test_a_binding_without_its_parameter_fails_start_up(azurite: Azurite, tmp_path: Path) -> None:
    result = _start_broken(
        azurite,
        tmp_path,
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.route(route="x")
        def broken(request: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
    """,
    )
    assert result.returncode == 2
    assert "function 'broken'" in result.stderr and "binding 'req'" in result.stderr


def test_an_unresolvable_setting_fails_start_up(azurite: Azurite, tmp_path: Path) -> None:
    result = _start_broken(
        azurite,
        tmp_path,
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="%MISSING_QUEUE_SETTING%", connection="AzureWebJobsStorage")
        def consume(msg: func.QueueMessage) -> None:
            pass
    """,
    )
    assert result.returncode == 2
    assert "function 'consume'" in result.stderr and "MISSING_QUEUE_SETTING" in result.stderr


def test_an_invalid_task_hub_name_fails_start_up(azurite: Azurite, tmp_path: Path) -> None:
    result = _start_broken(
        azurite,
        tmp_path,
        "import azure.functions as func\napp = func.FunctionApp()\n",
        env={"TASK_HUB_NAME": "no-dashes-allowed"},
    )
    assert result.returncode == 2 and "task hub name" in result.stderr


def test_an_import_error_names_the_cause(azurite: Azurite, tmp_path: Path) -> None:
    result = _start_broken(azurite, tmp_path, "import azure.functions as func\nimport not_a_module\n")
    assert result.returncode == 2 and "not_a_module" in result.stderr
