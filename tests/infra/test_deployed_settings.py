"""The app runs with the settings the function app module deploys (at its defaults), and answers with
links under PUBLIC_BASE_URL, so a gateway that keeps the path below its base reaches every link."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.infra.templates import object_entries, only_resource, render, template

FUNCTION_APP = template("function-app")
GATEWAY_BASE = "https://apim-test.azure-api.net/longrun"
# Settings that name Azure resources (storage endpoints, identity, telemetry) or that the test harness owns.
AZURE_ONLY_PREFIXES = (
    "AzureWebJobsStorage__",
    "DurableTaskStorage__",
    "AzureFunctionsJobHost__",
    "APPLICATIONINSIGHTS_",
)


def deployed_value(value: Any) -> str | None:
    """A setting's value with every parameter at its default; None if it depends on a deployed resource."""
    parameters = FUNCTION_APP["parameters"]
    text = render(value)
    if text in parameters:
        default = parameters[text]["default"]
        return None if default is None else str(default)
    if text.startswith("string(") and text[len("string(") : -1] in parameters:
        default = parameters[text[len("string(") : -1]]["default"]
        return None if default is None or isinstance(default, dict) else str(default)
    if "${" in text or "(" in text:
        return None
    return text


def deployed_settings() -> dict[str, str]:
    config = only_resource(FUNCTION_APP, "Microsoft.Web/sites/config")
    settings = {}
    for name, value in object_entries(FUNCTION_APP, config["properties"]).items():
        if name.startswith(AZURE_ONLY_PREFIXES) or name == "TASK_HUB_NAME":
            continue
        resolved = deployed_value(value)
        if resolved is not None:
            settings[name] = resolved
    settings["PUBLIC_BASE_URL"] = GATEWAY_BASE  # a required parameter of the module: the gateway's URL
    return settings


@pytest.fixture(scope="module")
def production_host(azurite: Azurite) -> Iterator[DevHost]:
    # Not devhost_factory: its test defaults (simulate kind on, tiny chunks) are what this test must avoid.
    host = DevHost(azurite.connection_string, env=deployed_settings()).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


def test_the_deployed_settings_are_complete_and_production_safe() -> None:
    settings = deployed_settings()
    assert settings["ENABLE_SIMULATE_KIND"] == "false"
    assert settings["RETENTION_SCHEDULE"] == "0 15 3 * * *"
    assert settings["MAX_RAW_BODY_BYTES"] == str(100 * 1024 * 1024)
    assert {"RETENTION_DAYS", "MAX_PARALLEL_CHUNKS", "RETRY_MAX_ATTEMPTS", "PYTHON_THREADPOOL_THREAD_COUNT"} <= set(
        settings
    )


def test_the_app_starts_and_is_healthy_with_the_deployed_settings(production_host: DevHost) -> None:
    response = production_host.client.get("/api/health")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_links_point_at_the_gateway_and_keep_the_path_below_it(production_host: DevHost) -> None:
    data = b"region,amount\nnorth,1\nsouth,2\nnorth,3\n"
    response = production_host.client.post(
        "/api/jobs",
        content=data,
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    assert location.startswith(f"{GATEWAY_BASE}/api/jobs/")
    # The gateway forwards <base>/api/... to the app's /api/..., so the same path works on the app directly.
    final = production_host.wait_for_job(location.removeprefix(GATEWAY_BASE), timeout=60)
    assert final.status_code == 200, final.text
    job = final.json()
    assert job["status"] == "COMPLETED", job
    assert job["links"]["result"].startswith(GATEWAY_BASE)


def test_the_simulate_kind_is_refused_in_production(production_host: DevHost) -> None:
    response = production_host.client.post("/api/jobs", json={"kind": "simulate", "options": {}})
    assert response.status_code == 422, response.text
    known = response.json()["detail"]
    assert "csv-report" in known and "simulate" not in known.split("known kinds:")[-1]
