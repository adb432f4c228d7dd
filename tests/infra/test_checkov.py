"""checkov over infra/: no parsing errors, no failed check, and every skip in the templates has a reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.infra.conftest import run_checkov
from tests.infra.templates import MODULES_DIR, checkov_skips


def failed(report: dict[str, Any]) -> list[str]:
    return [f"{c['check_id']} {c['resource']} {c['file_path']}" for c in report["results"]["failed_checks"]]


def test_checkov_parses_every_template(checkov_report: dict[str, Any]) -> None:
    assert checkov_report["summary"]["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    scanned = {Path(check["file_path"]).name for check in checkov_report["results"]["passed_checks"]}
    scanned |= {Path(check["file_path"]).name for check in checkov_report["results"]["skipped_checks"]}
    # Files with checkable resources must have been read (a silent parse failure shows up as absence).
    assert {"storage.bicep", "function-app.bicep", "api-management.bicep", "application-gateway.bicep"} <= scanned


def test_no_checkov_check_fails(checkov_report: dict[str, Any]) -> None:
    assert failed(checkov_report) == []


def test_every_skip_names_its_reason_and_is_needed(checkov_report: dict[str, Any]) -> None:
    skips = checkov_skips()
    assert skips, "expected the documented skips (public network access, zone redundancy, ...)"
    for path, check, reason in skips:
        assert len(reason) >= 30, f"{path.name}: skip of {check} needs a written reason, got {reason!r}"
    applied = {(Path(c["file_path"]).name, c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    declared = {(path.name, check) for path, check, _ in skips}
    # A skip that suppresses nothing is a stale comment that would hide a future failure.
    assert declared == applied


def test_checkov_guard_catches_parse_errors_and_weak_settings(tmp_path: Path) -> None:
    # checkov exits 0 when a file does not parse: the tests above must count parse errors themselves.
    (tmp_path / "broken.bicep").write_text("resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n")
    weak = (MODULES_DIR / "storage.bicep").read_text().replace("'TLS1_2'", "'TLS1_0'")
    (tmp_path / "weak-storage.bicep").write_text(weak)
    report = run_checkov(tmp_path)
    assert report["summary"]["parsing_errors"] == 1
    assert any(c["check_id"] == "CKV_AZURE_44" for c in report["results"]["failed_checks"])
