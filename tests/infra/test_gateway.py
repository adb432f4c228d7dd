"""The gateway: its timeout comes from one parameter within the platform limits, and it adds the function
key from a secret it reads at deployment, for every route the app serves."""

from __future__ import annotations

import re

import azure.durable_functions as df
import azure.functions as func

from api import blueprint as api_blueprint
from tests.infra.templates import (
    decorator,
    module_condition,
    module_params,
    object_entries,
    only_resource,
    parameter,
    render,
    resolve,
    source,
    strings_in,
    template,
)

APIM = template("api-management")
APP_GATEWAY = template("application-gateway")
MAIN = template("main")
FUNCTIONS_HTTP_LIMIT_SECONDS = 230  # the Functions front end drops a response after this
APIM_HONOURED_SECONDS = 240  # forward-request timeouts above this may not be honoured
HEARTBEAT_SECONDS = 15  # event streams send a heartbeat this often


def http_routes() -> set[str]:
    """The HTTP routes the app registers, as /api/<route> with parameter names blanked."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(api_blueprint)
    routes = set()
    for function in app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is not None:
            routes.add(re.sub(r"\{[^}]*\}", "{}", f"/api/{trigger.route}"))
    return routes


def test_the_gateway_is_chosen_by_a_parameter() -> None:
    assert decorator(MAIN["parameters"]["gatewayType"], "allowed") == ["apiManagement", "applicationGateway"]
    assert MAIN["parameters"]["gatewayType"]["default"] == "apiManagement"
    assert render(module_condition("apiManagement")) == "gatewayType == apiManagement"
    assert render(module_condition("applicationGateway")) == "gatewayType == applicationGateway"


def test_backend_timeout_parameter_stays_within_the_platform_limits() -> None:
    timeout = MAIN["parameters"]["gatewayBackendTimeoutSeconds"]
    assert HEARTBEAT_SECONDS < decorator(timeout, "min_value") <= timeout["default"]
    assert timeout["default"] <= decorator(timeout, "max_value") < FUNCTIONS_HTTP_LIMIT_SECONDS < APIM_HONOURED_SECONDS
    description = decorator(timeout, "description")
    for reason in ("230 s", "heartbeat", "Retry-After", "100 MB", "docs/timeouts.md"):
        assert reason in description
    for name, tpl in (("apiManagement", APIM), ("applicationGateway", APP_GATEWAY)):
        assert module_params(name)["backendTimeoutSeconds"] == "gatewayBackendTimeoutSeconds"
        module_timeout = parameter(tpl, "backendTimeoutSeconds")
        assert decorator(module_timeout, "max_value") < FUNCTIONS_HTTP_LIMIT_SECONDS
        assert decorator(module_timeout, "min_value") > HEARTBEAT_SECONDS


def test_api_management_forward_request_uses_the_timeout_parameter() -> None:
    policy = only_resource(APIM, "Microsoft.ApiManagement/service/apis/policies")["properties"]
    assert policy["format"] == "rawxml"
    template_text = resolve(APIM, "apiPolicyTemplate")
    assert render(policy["value"]) == "replace(apiPolicyTemplate, __BACKEND_ID__, backend.name)"
    forward = re.findall(r"<forward-request [^>]*>", template_text)
    assert len(forward) == 1 and 'timeout="${backendTimeoutSeconds}"' in forward[0]
    assert '<set-backend-service backend-id="__BACKEND_ID__" />' in template_text


def test_api_management_adds_the_function_key_from_a_secret_named_value() -> None:
    named_value = only_resource(APIM, "Microsoft.ApiManagement/service/namedValues")
    assert named_value["properties"]["secret"] is True
    assert render(named_value["properties"]["value"]).startswith("listKeys(${functionApp.id}/host/default")
    assert render(named_value["properties"]["value"]).endswith(".functionKeys.default")
    backend = only_resource(APIM, "Microsoft.ApiManagement/service/backends")
    header = object_entries(APIM, backend["properties"]["credentials"]["header"])
    assert header == {"x-functions-key": ["{{${functionKey.name}}}"]}
    assert backend["properties"]["url"] == "https://${functionAppHostName}"
    api = only_resource(APIM, "Microsoft.ApiManagement/service/apis")["properties"]
    assert api["protocols"] == ["https"]
    assert api["path"] == "apiPath"


def test_the_function_key_is_never_a_plain_parameter_or_an_output() -> None:
    for name, tpl in (("main", MAIN), ("api-management", APIM), ("application-gateway", APP_GATEWAY)):
        for param_name, param in tpl["parameters"].items():
            if re.search(r"key|secret|password", param_name, re.IGNORECASE) and not param_name.endswith(
                "SecretId"
            ):
                assert {"type": "secure"} in param["decorators"], f"{name}.bicep parameter {param_name}"
        for output_name, output in tpl.get("outputs", {}).items():
            assert "listKeys" not in render(output["value"]) and "key" not in output_name.lower()
        assert "functionKeys" not in source(name).split("resource ", 1)[0], "keys are read inside resources only"


def test_api_management_exposes_every_route_the_app_serves() -> None:
    operations = resolve(APIM, "operations")
    exposed = {re.sub(r"\{[^}]*\}", "{}", operation["urlTemplate"]) for operation in operations}
    assert http_routes() <= exposed
    methods = {(operation["method"], operation["urlTemplate"]) for operation in operations}
    for expected in (
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/{id}"),
        ("DELETE", "/api/jobs/{id}"),
        ("GET", "/api/jobs/{id}/result"),
        ("POST", "/api/uploads"),
        ("GET", "/api/health"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/dead-letters"),
        ("POST", "/api/dead-letters/{id}/replay"),
    ):
        assert expected in methods


def test_application_gateway_request_timeout_and_function_key() -> None:
    gateway = only_resource(APP_GATEWAY, "Microsoft.Network/applicationGateways")["properties"]
    (settings,) = gateway["backendHttpSettingsCollection"]
    assert settings["properties"]["requestTimeout"] == "backendTimeoutSeconds"
    assert settings["properties"]["protocol"] == "Https"
    (rule_set,) = gateway["rewriteRuleSets"]
    (rewrite,) = rule_set["properties"]["rewriteRules"]
    (header,) = rewrite["actionSet"]["requestHeaderConfigurations"]
    assert header["headerName"] == "x-functions-key"
    assert render(header["headerValue"]).startswith("listKeys(${functionApp.id}/host/default")
    (routing,) = gateway["requestRoutingRules"]
    assert "rewriteRuleSets/add-function-key" in routing["properties"]["rewriteRuleSet"]["id"]
    # HTTPS only, with TLS 1.2 or later, behind a WAF that lets 100 MB raw submits through.
    assert [listener["properties"]["protocol"] for listener in gateway["httpListeners"]] == ["Https"]
    assert gateway["sslPolicy"]["minProtocolVersion"] == "TLSv1_2"
    assert gateway["sku"]["tier"] == "WAF_v2"
    waf = only_resource(APP_GATEWAY, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies")
    policy = waf["properties"]["policySettings"]
    assert policy["mode"] == "Prevention"
    assert policy["requestBodyEnforcement"] is False and policy["fileUploadLimitInMb"] >= 100
    # The gateway adds the key for every caller, so it can restrict who the callers are.
    rules = render(waf["properties"]["customRules"])
    assert rules.startswith("empty(allowedClientAddresses) ? [] : [{name: AllowListedClientsOnly")
    assert "variableName: RemoteAddr" in rules and "negationConditon: true" in rules and "action: Block" in rules
    assert module_params("applicationGateway")["allowedClientAddresses"] == "appGatewayAllowedClientAddresses"
    (probe,) = gateway["probes"]
    assert probe["properties"]["path"] == "/api/health"


def test_only_https_reaches_the_function_app() -> None:
    for value in strings_in(APIM, only_resource(APIM, "Microsoft.ApiManagement/service/backends")):
        assert not value.startswith("http://")
