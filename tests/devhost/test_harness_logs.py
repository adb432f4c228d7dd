"""Where the test session's devhosts write their logs: a suite starts hundreds of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devhost.testing.harness import LOG_DIR_VARIABLE, DevHost


def test_devhost_logs_stay_in_pytests_temporary_directory(
    sample_host: DevHost, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Not in /tmp, where every run used to leave a few hundred files behind: under the session's basetemp,
    which pytest prunes itself (it keeps the last three runs')."""
    log = sample_host.log_path
    assert log is not None
    assert log.parent == Path(os.environ[LOG_DIR_VARIABLE])
    assert log.resolve().is_relative_to(tmp_path_factory.getbasetemp().resolve())
    assert "Host started in" in sample_host.logs()
