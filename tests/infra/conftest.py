"""Fixtures for the infrastructure tests: one checkov scan per session."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.templates import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report for the Bicep files under a directory."""
    assert CHECKOV.exists(), "checkov is missing: `make test` (or `make pytest`) installs it into .venv-checkov/"
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "-o", "json", "-d", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # checkov exits 1 when a check fails and 0 on parse errors, so the report is the only truth.
    assert completed.returncode in (0, 1), completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    if isinstance(report, list):  # one entry per framework; we ask for one
        (report,) = report
    assert isinstance(report, dict)
    return report


@pytest.fixture(scope="session")
def checkov_report() -> dict[str, Any]:
    return run_checkov(ROOT / "infra")
