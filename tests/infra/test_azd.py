"""The azd wiring: azure.yaml, parameters with azd variables, names from abbreviations, outputs for azd."""

from __future__ import annotations

import json
import re

from tests.infra.templates import BICEP_DIR, ROOT, bicep_files, decorator, source, strings_in, template

MAIN = template("main")


def test_azure_yaml_deploys_this_folder_as_a_python_function_app() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra/bicep\n  module: main$", text, re.MULTILINE)
    assert re.search(r"^  api:\n    project: \.\n    language: python\n    host: function$", text, re.MULTILINE)
    # azd finds the app by this tag, so the service name and the tag must agree.
    assert "serviceName: 'api'" in source("main")
    assert "'azd-service-name': serviceName" in source("function-app")


def test_parameters_file_feeds_main_with_azd_variables() -> None:
    parameters = json.loads((BICEP_DIR / "main.parameters.json").read_text())["parameters"]
    declared = MAIN["parameters"]
    assert set(parameters) <= set(declared), "the parameters file names a parameter main.bicep lacks"
    required = {name for name, param in declared.items() if param["default"] is None}
    assert required <= set(parameters), "azd would prompt for these on every run"
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    for name, entry in parameters.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", entry["value"]), name


def test_every_parameter_is_described_and_outputs_are_upper_snake() -> None:
    for path in bicep_files():
        name = "main" if path.name == "main.bicep" else path.stem
        for param_name, param in template(name)["parameters"].items():
            assert decorator(param, "description"), f"{path.name}: @description on {param_name}"
    assert MAIN["outputs"]
    for output in MAIN["outputs"]:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", output), output
    for expected in ("AZURE_FUNCTION_APP_NAME", "PUBLIC_BASE_URL", "AZURE_STORAGE_BLOB_ENDPOINT", "TASK_HUB_NAME"):
        assert expected in MAIN["outputs"]


def test_names_come_from_abbreviations_and_a_resource_token() -> None:
    abbreviations = json.loads((BICEP_DIR / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.([A-Za-z]+)", source("main")))
    assert used and used <= set(abbreviations)
    assert "uniqueString(subscription().id, environmentName, location)" in source("main")
    tags = MAIN["variables"]["tags"]["value"]
    assert tags["'azd-env-name'"] == "environmentName"
    # Every module that tags its resources gets the environment's tags.
    for name, declared in MAIN["modules"].items():
        module_template = template(declared["detail"]["path"].removeprefix("modules/").removesuffix(".bicep"))
        if "tags" in module_template["parameters"]:
            body = declared["config"].get("config", declared["config"])
            assert body["params"].get("tags") == "tags", name


def test_bicep_linter_is_on() -> None:
    config = json.loads((BICEP_DIR / "bicepconfig.json").read_text())
    core = config["analyzers"]["core"]
    assert core["enabled"] is True
    for rule in ("no-unused-params", "outputs-should-not-contain-secrets", "secure-secrets-in-params"):
        assert core["rules"][rule]["level"] == "error"


def test_no_hardcoded_cloud_endpoints_for_storage() -> None:
    # Endpoints come from the storage account's properties, so sovereign clouds work too.
    for path in bicep_files():
        name = "main" if path.name == "main.bicep" else path.stem
        assert not any("core.windows.net" in value for value in strings_in(template(name), template(name)))
