"""Every resource the templates declare type-checks against Azure's own definitions (no compiler needed).

The definitions are the ones the Bicep compiler ships (Azure/bicep-types-az `generated/`), vendored as a
subset in tests/infra/azure_types/ (provenance in its README.md). tests/infra/azure_types.py says what is
checked; the last tests here show each kind of mistake is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra.azure_types import TYPES_DIR, insecure_secure_inputs, resource_type, type_errors, versions
from tests.infra.templates import bicep_files, source, template

GA_API_MANAGEMENT_WITH_V2_TIERS = "2024-05-01"  # the first GA api version that knows BasicV2/StandardV2


def template_name(path: Path) -> str:
    return "main" if path.name == "main.bicep" else path.stem


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_every_resource_type_checks(path: Path) -> None:
    name = template_name(path)
    assert type_errors(name, template(name)) == []


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_sensitive_properties_get_secure_values(path: Path) -> None:
    # use-secure-value-for-secure-inputs (level error in bicepconfig.json) uses the same definitions.
    name = template_name(path)
    assert insecure_secure_inputs(name, template(name)) == []


def test_api_versions_are_ga_and_api_management_knows_the_v2_tiers() -> None:
    declared = {}
    for path in bicep_files():
        for resource in template(template_name(path)).get("resources", {}).values():
            declared[resource["type"]] = resource["api_version"]
            assert "preview" not in resource["api_version"], f"{resource['type']}@{resource['api_version']}"
    apim = [version for kind, version in declared.items() if kind.startswith("Microsoft.ApiManagement/")]
    assert apim and set(apim) == {GA_API_MANAGEMENT_WITH_V2_TIERS}
    sku = resource_type("Microsoft.ApiManagement/service", GA_API_MANAGEMENT_WITH_V2_TIERS)
    assert sku is not None
    text = json.dumps(json.loads((TYPES_DIR / sku.file).read_text()))
    assert '"BasicV2"' in text and '"StandardV2"' in text


def test_the_vendored_definitions_say_where_they_come_from() -> None:
    readme = (TYPES_DIR / "README.md").read_text(encoding="utf-8")
    index = json.loads((TYPES_DIR / "index.json").read_text())
    assert index["commit"] in readme and "Azure/bicep-types-az" in readme
    for file in sorted(TYPES_DIR.glob("microsoft.*.json")):
        document = json.loads(file.read_text())
        assert (
            document["source"].startswith("Azure/bicep-types-az generated/") and document["commit"] == index["commit"]
        )
        assert file.name in readme, f"{file.name} is not listed in azure_types/README.md"


@pytest.mark.parametrize(
    ("module", "before", "after", "expected"),
    [
        # An unknown property (BCP037): a typo the service would ignore or reject.
        ("function-app", "http20Enabled: true", "http2Enabled: true", "siteConfig.http2Enabled: no such property"),
        # A literal outside an enum.
        ("storage", "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1.2'", "'TLS1.2' is not one of"),
        # A parameter's @allowed value outside the enum it is written to.
        ("api-management", "  'StandardV2'\n])", "  'StandardV3'\n])", "'StandardV3' is not one of"),
        # The wrong kind of literal.
        ("monitoring", "retentionInDays: retentionInDays", "retentionInDays: '30'", "expects an integer"),
        # Inside a loop body, a conditional and a concat().
        ("storage", "type: 'Lifecycle'", "type: 'Lifecycl'", "rules[].type: 'Lifecycl'"),
        ("function-app", "tag: 'ServiceTag'", "tag: 'Service'", "tag: 'Service' is not one of"),
        ("application-gateway", "'Lowercase'", "'Lowercas'", "transforms[0]: 'Lowercas'"),
        # A discriminated object (sites/config by name, metric criteria by odata.type).
        ("function-app", "name: 'appsettings'", "name: 'appsetings'", "name 'appsetings' is not one of"),
        ("alerts", "criterionType: 'StaticThresholdCriterion'", "criterionType: 'Static'", "'Static' is not one of"),
        # A literal outside a string's length or pattern (an action group's short name is at most 12).
        (
            "alerts",
            "groupShortName: 'longrun'",
            "groupShortName: 'longrun-alerts'",
            "'longrun-alerts' is not None..12 long",
        ),
        # API Management's outbound VNet integration and the subnet delegation it needs.
        ("api-management", "subnetResourceId: subnetResourceId", "subnetId: subnetResourceId", "no such property"),
        ("network", "serviceName: 'Microsoft.Web/serverFarms'", "service: 'Microsoft.Web/serverFarms'", "no such"),
        # A read-only property written (BCP073).
        ("identity", "location: location", "location: location\n  properties: {\n    clientId: 'x'\n  }", "read-only"),
    ],
)
def test_the_type_check_catches(module: str, before: str, after: str, expected: str) -> None:
    text = source(module)
    assert before in text, f"{module}.bicep no longer contains {before!r}: pick another probe"
    errors = type_errors(module, dict(BicepParser().parse(text=text.replace(before, after, 1))))
    assert any(expected in error for error in errors), errors


def test_an_api_version_that_does_not_exist_is_caught() -> None:
    text = source("identity").replace("userAssignedIdentities@2023-01-31", "userAssignedIdentities@2023-01-32")
    errors = type_errors("identity", dict(BicepParser().parse(text=text)))
    assert any("api version does not exist" in error for error in errors), errors
    assert "2023-01-31" in versions()["microsoft.managedidentity/userassignedidentities"]


def test_a_literal_in_a_sensitive_property_is_caught() -> None:
    storage = "      azureStorageAccounts: {\n        share: {\n          accessKey: 'abc'\n        }\n      }\n"
    text = source("function-app").replace("      http20Enabled: true\n", "      http20Enabled: true\n" + storage)
    assert "accessKey" in text
    errors = insecure_secure_inputs("function-app", dict(BicepParser().parse(text=text)))
    assert any("accessKey" in error for error in errors), errors
