"""Fixtures: a private Azurite per test session and devhost processes serving the real app."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from devhost.durable.timings import FAST_TEST_TIMINGS
from devhost.testing.azurite import Azurite
from devhost.testing.harness import APP_TEST_ENV, LOG_DIR_VARIABLE, DevHost

# The app's test settings, and devhost's fast timings so that crash tests recover in seconds.
DEFAULT_TEST_ENV = {**APP_TEST_ENV, **FAST_TEST_TIMINGS}


@pytest.fixture(scope="session", autouse=True)
def devhost_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's devhost logs go to pytest's temporary directory (pruned by pytest), not /tmp."""
    previous = os.environ.get(LOG_DIR_VARIABLE)
    os.environ[LOG_DIR_VARIABLE] = str(tmp_path_factory.mktemp("devhost-logs"))
    yield
    if previous is None:
        os.environ.pop(LOG_DIR_VARIABLE, None)
    else:
        os.environ[LOG_DIR_VARIABLE] = previous


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    emulator = Azurite.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def devhost_factory(azurite: Azurite) -> Iterator[Callable[..., DevHost]]:
    """Start devhosts with extra env/args; each gets its own task hub. Stopped at teardown."""
    started: list[DevHost] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, wait: bool = True) -> DevHost:
        host = DevHost(azurite.connection_string, env={**DEFAULT_TEST_ENV, **(env or {})}, args=list(args or []))
        started.append(host)
        return host.start(wait=wait)

    yield start
    for host in started:
        host.stop(timeout=20)


@pytest.fixture(scope="module")
def devhost(azurite: Azurite) -> Iterator[DevHost]:
    """One devhost shared by a test module, with the default test settings."""
    host = DevHost(azurite.connection_string, env=dict(DEFAULT_TEST_ENV)).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)
