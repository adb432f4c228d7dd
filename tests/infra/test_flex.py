"""The function app follows the Flex Consumption (FC1) platform rules: no setting or site property Flex
rejects or ignores, the instance sizes the service accepts, the always-ready group Durable needs.

Sources: Microsoft Learn, "Flex Consumption plan hosting" and its "Deprecated properties and settings" list
(app settings that belong to the Consumption/Premium plans, or that Flex sets through functionAppConfig);
ARM error 51021 for siteConfig.ftpsState; azure-rest-api-specs#40898 (512 MB refused);
../shared/reference/platform-facts.md (memory sizes, always-ready, maxQueuePollingInterval <= 10 s).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.templates import ROOT, decorator, object_entries, only_resource, parameter, render, template

# App settings Flex Consumption rejects or ignores: the runtime and its version are functionAppConfig.runtime,
# scale is functionAppConfig.scaleAndConcurrency, the package is functionAppConfig.deployment, content shares
# and workers per instance do not exist on Flex.
FLEX_REJECTED_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_VNET_ROUTE_ALL",
    "WEBSITE_DNS_SERVER",
    "DOCKER_REGISTRY_SERVER_URL",
    "DOCKER_REGISTRY_SERVER_USERNAME",
    "DOCKER_REGISTRY_SERVER_PASSWORD",
    "FUNCTION_APP_EDIT_MODE",
}
# siteConfig properties Flex rejects (ftpsState: ARM 51021) or that belong to other plans' scaling and stacks.
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "alwaysOn",
    "functionAppScaleLimit",
    "minimumElasticInstanceCount",
    "preWarmedInstanceCount",
    "elasticWebAppScaleLimit",
    "linuxFxVersion",
    "windowsFxVersion",
    "pythonVersion",
    "javaVersion",
    "nodeVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "use32BitWorkerProcess",
    "numberOfWorkers",
    "healthCheckPath",
    "appSettings",
}
FLEX_REJECTED_SITE_PROPERTIES = {"containerSize", "dailyMemoryTimeQuota", "siteConfig.appSettings"}
FLEX_MEMORY_SIZES = {2048, 4096}  # what the service accepts for new apps (512 is refused: specs#40898)
MAX_QUEUE_POLLING_SECONDS = 10


def function_app() -> dict[str, Any]:
    return template("function-app")


def site() -> dict[str, Any]:
    return only_resource(function_app(), "Microsoft.Web/sites")


def app_settings() -> dict[str, Any]:
    config = only_resource(function_app(), "Microsoft.Web/sites/config")
    return object_entries(function_app(), config["properties"])


def test_no_app_setting_flex_rejects() -> None:
    assert set(app_settings()) & FLEX_REJECTED_SETTINGS == set()


def test_no_site_property_flex_rejects() -> None:
    properties = site()["properties"]
    assert set(properties.get("siteConfig", {})) & FLEX_REJECTED_SITE_CONFIG == set()
    assert set(properties) & FLEX_REJECTED_SITE_PROPERTIES == set()
    assert "ftpsState" not in render(properties)


def test_instance_memory_is_a_size_the_service_accepts() -> None:
    for name in ("function-app", "main"):
        param = parameter(template(name), "instanceMemoryMB")
        assert set(decorator(param, "allowed")) <= FLEX_MEMORY_SIZES, name
        assert param["default"] == 2048, name
    parameters = json.loads((ROOT / "infra" / "bicep" / "main.parameters.json").read_text())["parameters"]
    default = re.fullmatch(r"\$\{INSTANCE_MEMORY_MB=(\d+)\}", parameters["instanceMemoryMB"]["value"])
    assert default and int(default[1]) in FLEX_MEMORY_SIZES


def test_flex_scale_settings_are_within_the_plan_limits() -> None:
    config = site()["properties"]["functionAppConfig"]
    scale = config["scaleAndConcurrency"]
    assert [group["name"] for group in scale["alwaysReady"]] == ["durable"]
    maximum = parameter(function_app(), "maximumInstanceCount")
    assert 40 <= decorator(maximum, "min_value") and decorator(maximum, "max_value") <= 1000
    assert config["runtime"]["name"] == "python"
    assert only_resource(function_app(), "Microsoft.Web/serverfarms")["sku"] == {
        "tier": "FlexConsumption",
        "name": "FC1",
    }


def test_durable_polls_often_enough_for_flex_to_scale() -> None:
    durable = json.loads((ROOT / "host.json").read_text())["extensions"]["durableTask"]
    hours, minutes, seconds = (int(part) for part in durable["storageProvider"]["maxQueuePollingInterval"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds <= MAX_QUEUE_POLLING_SECONDS
