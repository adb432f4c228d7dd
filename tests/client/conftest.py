"""Fixtures for the client and CLI tests: the real `longrun` console script against a real devhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devhost.testing.harness import DevHost
from tests.client.gateway import Gateway

LONGRUN = Path(sys.executable).parent / "longrun"
"""The console script `pip install -e ./client` put next to the test interpreter (.venv/bin/longrun)."""


@dataclass
class CliRun:
    """What one `longrun` invocation printed and how it exited."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as JSON (the --json output)."""
        return json.loads(self.stdout)


def cli_env(url: str, **extra: str) -> dict[str, str]:
    """The CLI's environment: the host's URL, a wide terminal for tables, no colour codes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGRUN_")}
    env.update({"LONGRUN_URL": url, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    env.update(extra)
    return env


Cli = Callable[..., CliRun]


@pytest.fixture
def cli(devhost: DevHost) -> Cli:
    """Run `longrun ARGS...` against the module's devhost."""

    def run(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> CliRun:
        assert LONGRUN.exists(), f"{LONGRUN} missing: pip install -e ./client (make setup does)"
        done = subprocess.run(
            [str(LONGRUN), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=cli_env(devhost.base_url, **(env or {})),
            check=False,
        )
        return CliRun(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., Gateway]]:
    """Start loopback gateways in front of a host; stopped at teardown."""
    started: list[Gateway] = []

    def start(upstream: str = "", prefix: str = "", retry_after: str = "1") -> Gateway:
        gateway = Gateway(upstream, prefix=prefix, retry_after=retry_after).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
