"""The Bicep linter rules bicepconfig.json sets to `error` hold, checked without the compiler.

`bicep build` (and so `azd up`) stops on any of them. Each check follows the rule's analyzer in Azure/bicep
(src/Bicep.Core/Analyzers/Linter/Rules/); see tests/infra/bicep_lint.py. no-unused-params and
no-unused-vars are checked by test_wiring.py, use-secure-value-for-secure-inputs by test_types.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra import bicep_lint
from tests.infra.templates import BICEP_DIR, bicep_files, template

# Where each error-level rule is checked; a rule added to bicepconfig.json at `error` must be added here.
CHECKED_ERROR_RULES = {
    "adminusername-should-not-be-literal": "test_linter.py::test_no_literal_admin_user_names",
    "no-hardcoded-env-urls": "test_linter.py::test_no_hardcoded_environment_urls",
    "no-hardcoded-location": "test_linter.py::test_no_hardcoded_locations",
    "no-unused-params": "test_wiring.py::test_every_parameter_and_variable_is_used",
    "no-unused-vars": "test_wiring.py::test_every_parameter_and_variable_is_used",
    "outputs-should-not-contain-secrets": "test_linter.py::test_outputs_hold_no_secrets",
    "protect-commandtoexecute-secrets": "test_linter.py::test_no_command_to_execute",
    "secure-parameter-default": "test_linter.py::test_secure_parameters_have_no_literal_defaults",
    "secure-params-in-nested-deploy": "test_linter.py::test_no_nested_deployment_resources",
    "secure-secrets-in-params": "test_linter.py::test_parameters_named_like_secrets_are_secure",
    "use-secure-value-for-secure-inputs": "test_types.py::test_sensitive_properties_get_secure_values",
}


each_template = pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
"""A rule checked on every Bicep file, one test per file."""


def name_of(path: Path) -> str:
    return "main" if path.name == "main.bicep" else path.stem


def test_every_error_level_rule_is_checked() -> None:
    rules = json.loads((BICEP_DIR / "bicepconfig.json").read_text())["analyzers"]["core"]["rules"]
    errors = {rule for rule, setting in rules.items() if setting.get("level") == "error"}
    assert errors == set(CHECKED_ERROR_RULES)


@each_template
def test_no_hardcoded_environment_urls(path: Path) -> None:
    assert bicep_lint.hardcoded_hosts(path.read_text(encoding="utf-8")) == []


@each_template
def test_parameters_named_like_secrets_are_secure(path: Path) -> None:
    assert bicep_lint.insecure_secret_params(template(name_of(path))) == []


@each_template
def test_secure_parameters_have_no_literal_defaults(path: Path) -> None:
    assert bicep_lint.secure_params_with_defaults(template(name_of(path))) == []


@each_template
def test_outputs_hold_no_secrets(path: Path) -> None:
    assert bicep_lint.secret_outputs(template(name_of(path))) == []


@each_template
def test_no_hardcoded_locations(path: Path) -> None:
    assert bicep_lint.hardcoded_locations(template(name_of(path))) == []


@each_template
def test_no_literal_admin_user_names(path: Path) -> None:
    assert bicep_lint.literal_properties(template(name_of(path)), "adminUsername") == []


@each_template
def test_no_command_to_execute(path: Path) -> None:
    # protect-commandtoexecute-secrets is about VM extensions: none here, and none may appear unprotected.
    assert bicep_lint.keys_anywhere(template(name_of(path)), "commandToExecute") == []


@each_template
def test_no_nested_deployment_resources(path: Path) -> None:
    # secure-params-in-nested-deploy concerns Microsoft.Resources/deployments with outer scope; modules
    # compile to inner-scoped deployments, so only a hand-written deployments resource could break it.
    resources = template(name_of(path)).get("resources", {}).values()
    assert not [r for r in resources if r["type"].lower() == "microsoft.resources/deployments"]


# -- each check can fail -----------------------------------------------------------------------------------


def test_a_vault_url_in_a_description_is_caught_and_a_comment_is_not() -> None:
    text = (
        "// https://kv.vault.azure.net/ in a comment is fine\n"
        "@description('Key Vault secret id (https://<vault>.vault.azure.net/secrets/<name>)')\n"
        "param certificate string\n"
        "var schema = 'https://schema.management.azure.com/schemas/x.json'\n"
        "var storage = 'https://${name}.blob.core.windows.net/'\n"
        "var fine = 'mycore.windows.network'\n"
    )
    found = bicep_lint.hardcoded_hosts(text)
    assert [item.split(":")[0] for item in found] == ["2", "5"], found


def test_a_secret_id_parameter_is_caught_and_a_secret_uri_is_not() -> None:
    tpl = dict(
        BicepParser().parse(
            text="param certSecretId string\nparam certSecretUri string\nparam vaultSecretName string\n"
            "@secure()\nparam adminPassword string\nparam pwdLength int\n"
        )
    )
    assert bicep_lint.insecure_secret_params(tpl) == ["certSecretId"]


def test_secure_defaults_outputs_and_locations_are_caught() -> None:
    tpl = dict(
        BicepParser().parse(
            text="@secure()\nparam a string = 'literal'\n@secure()\nparam b string = newGuid()\n"
            "@secure()\nparam c string = ''\noutput leak string = a\noutput dbPassword string = 'x'\n"
            "output keys object = listKeys('id', '2023-01-01')\noutput fine string = 'ok'\n"
            "resource r 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {\n"
            "  name: 'x'\n  location: 'westeurope'\n}\n"
        )
    )
    assert bicep_lint.secure_params_with_defaults(tpl) == ["a"]
    assert bicep_lint.secret_outputs(tpl) == ["leak", "dbPassword", "keys"]
    assert bicep_lint.hardcoded_locations(tpl) == ["r: westeurope"]
