"""Every template parses with both Bicep parsers we have (there is no Bicep compiler offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

from tests.infra.templates import BICEP_DIR, bicep_files

BICEP = tree_sitter.Language(tree_sitter_bicep.language())


def tree_sitter_errors(text: bytes) -> list[str]:
    """Line:column and kind of every error or missing node tree-sitter-bicep reports."""
    parser = tree_sitter.Parser(BICEP)
    errors: list[str] = []
    stack = [parser.parse(text).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            errors.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1} {node.type}")
        stack.extend(node.children)
    return errors


def test_the_templates_are_all_there() -> None:
    names = {path.relative_to(BICEP_DIR).as_posix() for path in bicep_files()}
    assert {
        "main.bicep",
        "modules/identity.bicep",
        "modules/storage.bicep",
        "modules/rbac.bicep",
        "modules/monitoring.bicep",
        "modules/function-app.bicep",
        "modules/api-management.bicep",
        "modules/application-gateway.bicep",
        "modules/alerts.bicep",
        "modules/workbook.bicep",
    } <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_template_parses_with_pycep(path: Path) -> None:
    parsed = BicepParser().parse(file_path=path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_template_parses_with_tree_sitter_bicep(path: Path) -> None:
    assert tree_sitter_errors(path.read_bytes()) == []


def test_both_parsers_reject_a_broken_template() -> None:
    # The guard above is only worth something if a real syntax error makes it fail.
    broken = "param name string\nresource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  sku: {\n"
    with pytest.raises(Exception):  # noqa: B017 - pycep raises lark's exceptions, which vary by error
        BicepParser().parse(text=broken)
    assert tree_sitter_errors(broken.encode()) != []
