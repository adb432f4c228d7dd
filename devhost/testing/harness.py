"""Run the real app in a devhost subprocess, as `make run` does, and talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devhost.testing.azurite import ROOT, free_port

# The app's settings for tests and benchmarks (small, fast: short backoff, small chunks, the simulate kind);
# they live beside the harness so that bench/ need not import tests/.
APP_TEST_ENV = {
    "ENABLE_SIMULATE_KIND": "true",
    "RETRY_FIRST_INTERVAL_SECONDS": "0.2",
    "RETRY_MAX_INTERVAL_SECONDS": "1",
    "RETRY_MAX_ATTEMPTS": "3",
    "CHUNK_TARGET_BYTES": "4096",
    # Small for every kind: csv-report's tests are written for dozens of chunks, not for the larger streamed
    # chunks of local.settings.sample.json.
    "CHUNK_TARGET_BYTES_STREAMED": "0",
    # Multi-chunk test jobs are tiny: they would all run whole. Tests of the whole run set it themselves.
    "WHOLE_RUN_MAX_SECONDS": "0",
}


LOG_DIR_VARIABLE = "DEVHOST_LOG_DIR"
"""Where a devhost without a log_path writes its log (default: the temporary directory). The test session
points it into pytest's own temporary directory, which pytest prunes (it keeps the last three runs'); a
suite starts hundreds of devhosts, and their logs must not pile up in /tmp from run to run."""


def unique_hub() -> str:
    """A fresh task hub name, so every devhost works on state of its own."""
    # Task hub names: 3-45 alphanumerics starting with a letter.
    return "t" + uuid.uuid4().hex[:20]


@dataclass
class DevHost:
    """A devhost process serving function_app.py against a test's own task hub."""

    connection_string: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    task_hub: str = field(default_factory=unique_hub)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """The host's HTTP root on loopback."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        """A shared HTTP client for this host (closed by stop)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30.0)
        return self._client

    def full_env(self) -> dict[str, str]:
        """The child's environment: ours, the storage connection and task hub, then the extra settings."""
        env = os.environ.copy()
        env.update(
            {
                "AzureWebJobsStorage": self.connection_string,
                "TASK_HUB_NAME": self.task_hub,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        return env

    def start(self, wait: bool = True) -> DevHost:
        """Spawn the devhost process (logging to log_path) and, by default, wait until it serves requests."""
        if self.log_path is None:
            directory = Path(os.environ.get(LOG_DIR_VARIABLE) or tempfile.gettempdir())
            self.log_path = directory / f"devhost-{self.task_hub}-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", str(self.port), *self.args],
            cwd=ROOT,
            env=self.full_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until /admin/host/status says Running (a worker has imported the app); raise with the log if the
        process exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"devhost exited with {self.process.returncode}:\n{self.logs()}")
            try:
                status = httpx.get(f"{self.base_url}/admin/host/status", timeout=1.0)
                if status.status_code == 200 and status.json().get("state") == "Running":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"devhost not ready after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group (host and its workers), as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return int(self.process.returncode)

    def restart(self) -> DevHost:
        """Stop gracefully and start again on the same port and task hub."""
        self.stop()
        return self.start()

    def wait_for_job(self, location: str, timeout: float = 120.0) -> httpx.Response:
        """Poll a job's Location until it stops answering 202 (the client side of the pattern)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(location)
            if response.status_code != 202:
                return response
            if time.monotonic() > deadline:
                raise TimeoutError(f"job still running after {timeout} s: {response.text}")
            time.sleep(0.1)
