"""The function app module sets every setting the code reads, with production-safe values, on Flex."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from pydantic import AliasChoices

from shared.settings import Settings
from tests.infra.templates import (
    ROOT,
    decorator,
    module_params,
    object_entries,
    only_resource,
    parameter,
    render,
    resolve,
    template,
)

FUNCTION_APP = template("function-app")
MAIN = template("main")
# Where the app's own code lives (the packages function_app.py registers), for %NAME% binding expressions.
APP_SOURCES = [
    "function_app.py",
    "admission",
    "api",
    "activities",
    "intake",
    "jobs",
    "kinds",
    "maintenance",
    "orchestrators",
    "shared",
    "storage",
    "webhooks",
]
IDENTITY_STORAGE = {"blobServiceUri", "queueServiceUri", "tableServiceUri", "credential", "clientId"}


def app_settings() -> dict[str, Any]:
    config = only_resource(FUNCTION_APP, "Microsoft.Web/sites/config")
    assert config["name"] == "appsettings"
    return object_entries(FUNCTION_APP, config["properties"])


def setting_names(field_alias: object) -> list[str]:
    if isinstance(field_alias, AliasChoices):
        return [choice for choice in field_alias.choices if isinstance(choice, str)]
    return [field_alias] if isinstance(field_alias, str) else []


def test_every_setting_the_app_reads_is_set() -> None:
    settings = app_settings()
    missing = []
    for name, field in Settings.model_fields.items():
        aliases = setting_names(field.validation_alias) or setting_names(field.alias)
        assert aliases, f"Settings.{name} has no app-setting alias"
        if aliases == ["AzureWebJobsStorage"]:
            # In Azure the connection string is replaced by identity-based settings, never a key.
            assert "AzureWebJobsStorage" not in settings
            assert {f"AzureWebJobsStorage__{part}" for part in IDENTITY_STORAGE} <= set(settings)
            continue
        if not any(alias in settings for alias in aliases):
            missing.append(f"{name} ({' or '.join(aliases)})")
    assert missing == [], "set these in infra/bicep/modules/function-app.bicep"


def test_every_binding_expression_is_set() -> None:
    # %NAME% in host.json and in trigger decorators is resolved from app settings by the host.
    texts = [(ROOT / "host.json").read_text()]
    for entry in APP_SOURCES:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        texts += [file.read_text(encoding="utf-8") for file in files]
    expressions = {match for text in texts for match in re.findall(r"%([A-Z][A-Z0-9_]{2,})%", text)}
    assert {"TASK_HUB_NAME", "RETENTION_SCHEDULE"} <= expressions
    assert expressions <= set(app_settings())


def test_production_safe_values() -> None:
    settings = app_settings()
    assert settings["ENABLE_SIMULATE_KIND"] == "false"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert render(settings["AzureWebJobsStorage__clientId"]) == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    for name, value in settings.items():
        assert "AccountKey" not in render(value), name
    # Flex Consumption declares the runtime in functionAppConfig; these app settings would conflict.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(settings)


def test_public_base_url_is_the_gateway_url() -> None:
    assert app_settings()["PUBLIC_BASE_URL"] == "publicBaseUrl"
    assert module_params("functionApp")["publicBaseUrl"] == "publicBaseUrl"
    url = render(resolve(MAIN, "publicBaseUrl"))
    assert url == (
        "gatewayType == apiManagement ? https://${apiManagementName}.azure-api.net/${apiPath} : appGatewayUrl"
    )
    # The API Management instance is the one that name belongs to, serving the API on that path.
    apim = module_params("apiManagement")
    assert (apim["name"], apim["apiPath"]) == ("apiManagementName", "apiPath")
    assert render(resolve(MAIN, "appGatewayUrl")).startswith(
        "empty(appGatewayHostName) ? https://${appGatewayDnsLabel}"
    )
    assert module_params("applicationGateway")["dnsLabel"] == "appGatewayDnsLabel"


def test_retention_settings_follow_the_retention_parameter() -> None:
    settings = app_settings()
    assert render(settings["RETENTION_DAYS"]) == "string(retentionDays)"
    assert settings["RETENTION_SCHEDULE"] == "retentionSchedule"
    default_schedule = parameter(FUNCTION_APP, "retentionSchedule")["default"]
    assert default_schedule == Settings.model_fields["retention_schedule"].default
    assert len(default_schedule.split()) == 6, "the Functions timer takes six-field NCRONTAB"


def test_flex_consumption_python_311_with_an_always_ready_durable_instance() -> None:
    plan = only_resource(FUNCTION_APP, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    config = only_resource(FUNCTION_APP, "Microsoft.Web/sites")["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    scale = config["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] == "instanceMemoryMB"
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert scale["alwaysReady"] == [{"name": "durable", "instanceCount": "alwaysReadyDurableInstances"}]
    assert decorator(parameter(FUNCTION_APP, "instanceMemoryMB"), "allowed") == [2048, 4096]
    assert parameter(FUNCTION_APP, "alwaysReadyDurableInstances")["default"] >= 1
    deployment = config["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    site = only_resource(FUNCTION_APP, "Microsoft.Web/sites")
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"


def test_durable_concurrency_equals_the_real_python_concurrency() -> None:
    settings = app_settings()
    # Flex runs one Python worker process per instance (FUNCTIONS_WORKER_PROCESS_COUNT is not a Flex setting).
    assert render(resolve(FUNCTION_APP, "pythonConcurrency")) == "threadsPerWorker"
    assert "FUNCTIONS_WORKER_PROCESS_COUNT" not in settings
    prefix = "AzureFunctionsJobHost__extensions__durableTask__"
    for name in ("maxConcurrentActivityFunctions", "maxConcurrentOrchestratorFunctions"):
        assert render(settings[prefix + name]) == "string(pythonConcurrency)"
    assert render(settings["PYTHON_THREADPOOL_THREAD_COUNT"]) == "string(threadsPerWorker)"
    # host.json carries the same figure for the Bicep defaults (and for local runs).
    durable = json.loads((ROOT / "host.json").read_text())["extensions"]["durableTask"]
    processes = 1
    threads = parameter(FUNCTION_APP, "threadsPerWorker")["default"]
    assert durable["maxConcurrentActivityFunctions"] == processes * threads
    assert durable["maxConcurrentOrchestratorFunctions"] == processes * threads


def _timespan(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_host_json_fits_flex_consumption() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TASK_HUB_NAME%"
    provider = durable["storageProvider"]
    assert _timespan(provider["maxQueuePollingInterval"]) <= timedelta(seconds=10)
    assert 1 <= provider["partitionCount"] <= 16
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] >= 2, "a queue message gets retries before it goes to -poison"
    assert queues["messageEncoding"] == "base64"


def test_operations_doc_explains_every_host_json_number() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    host = json.loads((ROOT / "host.json").read_text())
    numbers: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            numbers.append(path.rsplit(".", 1)[-1])
        elif isinstance(node, str) and re.fullmatch(r"\d\d:\d\d:\d\d", node):
            numbers.append(path.rsplit(".", 1)[-1])

    walk(host["extensions"], "")
    numbers.append("functionTimeout")
    assert numbers
    undocumented = [name for name in numbers if f"`{name}`" not in doc]
    assert undocumented == []
