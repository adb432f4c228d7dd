"""The checks a Bicep build would make that the parsers do not: modules get the parameters they declare,
outputs that main.bicep reads exist, and nothing is declared and left unused (bicepconfig.json's errors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.templates import BICEP_DIR, bicep_files, module_params, template

MAIN = template("main")


def module_template_name(module_name: str) -> str:
    path: str = MAIN["modules"][module_name]["detail"]["path"]
    assert (BICEP_DIR / path).exists(), f"module {module_name}: {path} does not exist"
    return path.removeprefix("modules/").removesuffix(".bicep")


@pytest.mark.parametrize("module_name", sorted(MAIN["modules"]))
def test_module_gets_every_required_parameter_and_no_unknown_one(module_name: str) -> None:
    declared = template(module_template_name(module_name))["parameters"]
    passed = set(module_params(module_name))
    assert passed <= set(declared), f"{module_name}: unknown parameters {passed - set(declared)}"
    required = {name for name, param in declared.items() if param["default"] is None}
    assert required <= passed, f"{module_name}: missing required parameters {required - passed}"


def test_every_module_output_main_reads_exists() -> None:
    text = (BICEP_DIR / "main.bicep").read_text(encoding="utf-8")
    references = set(re.findall(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)", text))
    assert references
    for module_name, output in references:
        outputs = template(module_template_name(module_name)).get("outputs", {})
        assert output in outputs, f"{module_name}.outputs.{output} is not declared"


def _code_without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_every_parameter_and_variable_is_used(path: Path) -> None:
    name = "main" if path.name == "main.bicep" else path.stem
    tpl = template(name)
    code = _code_without_comments(path.read_text(encoding="utf-8"))
    for kind, names in (("param", tpl["parameters"]), ("var", tpl.get("variables", {}))):
        for symbol in names:
            uses = len(re.findall(rf"(?<![\w.']){re.escape(symbol)}\b", code))
            # One occurrence is the declaration itself.
            assert uses >= 2, f"{path.name}: {kind} {symbol} is never used"
