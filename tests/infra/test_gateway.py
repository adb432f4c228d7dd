"""The gateway: its timeout comes from one parameter within the platform limits; API Management adds the
function key from Key Vault (never read at deployment), Application Gateway adds none; the function app
answers the gateway only (its subnet: Application Gateway, or API Management StandardV2 with outbound VNet
integration; the AzureCloud tag only on tiers without it), and /api/health is not public."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from pycep import BicepParser

from api import blueprint as api_blueprint
from tests.infra.templates import (
    BICEP_DIR,
    ROOT,
    bicep_files,
    decorator,
    evaluate,
    module_condition,
    module_params,
    object_entries,
    only_resource,
    parameter,
    parameter_values,
    render,
    resolve,
    resources,
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
    # Event streams (GET /api/jobs/{id}/events) pass through unbuffered, or a client sees nothing until they end.
    assert 'buffer-response="false"' in forward[0]
    assert '<set-backend-service backend-id="__BACKEND_ID__" />' in template_text


def test_api_management_adds_the_function_key_from_key_vault() -> None:
    # A Key Vault reference, read with the gateway identity: no key value anywhere in the template.
    named_value = only_resource(APIM, "Microsoft.ApiManagement/service/namedValues")["properties"]
    assert named_value["secret"] is True and "value" not in named_value
    assert named_value["keyVault"] == {
        "secretIdentifier": "functionKeySecretUri",
        "identityClientId": "identityClientId",
    }
    assert render(module_params("apiManagement")["functionKeySecretUri"]) == "keyVault.outputs.functionKeyUri"
    assert render(module_params("apiManagement")["identityClientId"]) == "gatewayIdentity.outputs.clientId"
    backend = only_resource(APIM, "Microsoft.ApiManagement/service/backends")
    header = object_entries(APIM, backend["properties"]["credentials"]["header"])
    assert header == {"x-functions-key": ["{{${functionKey.name}}}"]}
    assert backend["properties"]["url"] == "https://${functionAppHostName}"
    api = only_resource(APIM, "Microsoft.ApiManagement/service/apis")["properties"]
    assert api["protocols"] == ["https"]
    assert api["path"] == "apiPath"


def test_the_key_vault_secret_is_a_placeholder_until_the_hook_writes_the_key() -> None:
    vault = template("key-vault")
    secret = vault["resources"]["placeholder"]["config"]
    # Written only until the hook has stored the real key (then provisioning must not reset it).
    assert render(secret["condition"]) == "!functionKeyStored"
    assert secret["config"]["properties"]["value"] == "placeholderValue"
    assert module_params("keyVault")["functionKeyStored"] == "functionKeyInKeyVault"
    assert "not-a-key" in module_params("keyVault")["placeholderValue"]
    parameters = json.loads((BICEP_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["functionKeyInKeyVault"]["value"] == "${FUNCTION_KEY_IN_KEY_VAULT=false}"
    roles = [
        render(role["properties"]["roleDefinitionId"])
        for role in resources(vault, "Microsoft.Authorization/roleAssignments")
    ]
    assert roles == [
        "subscription_resource_id(Microsoft.Authorization/roleDefinitions, secretsUserRole)",
        "subscription_resource_id(Microsoft.Authorization/roleDefinitions, secretsOfficerRole)",
        "subscription_resource_id(Microsoft.Authorization/roleDefinitions, secretsUserRole)",  # the app: webhook secret
    ]


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.name)
def test_no_template_reads_the_apps_keys_at_deployment(path: Path) -> None:
    # listKeys('<site>/host/default') asks the Functions runtime for its keys while it is being created:
    # it fails on a first deployment (azure-functions-host#5722, #11379) and puts the key into whatever
    # resource receives it. No list*() on a site at all.
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\blist\w*\(", text), path.name
    assert "functionKeys" not in text and "/host/default" not in text


def test_the_function_key_is_never_a_plain_parameter_or_an_output() -> None:
    for path in bicep_files():
        name = "main" if path.name == "main.bicep" else path.stem
        tpl = template(name)
        for param_name, param in tpl["parameters"].items():
            if param["type"] not in ("string", "object"):
                continue
            if re.search(r"key|secret|password", param_name, re.IGNORECASE) and not re.search(
                r"Secret(Uri|Url|Name)$|KeyVault$", param_name
            ):
                assert {"type": "secure"} in param["decorators"], f"{path.name} parameter {param_name}"
        for output_name, output in tpl.get("outputs", {}).items():
            assert "list" not in render(output["value"]).split("(")[0], output_name


def test_api_management_publishes_a_product_with_a_subscription() -> None:
    api = only_resource(APIM, "Microsoft.ApiManagement/service/apis")["properties"]
    assert api["subscriptionRequired"] is True
    product = only_resource(APIM, "Microsoft.ApiManagement/service/products")
    assert product["properties"]["subscriptionRequired"] is True
    assert product["properties"]["state"] == "published"
    assert product["properties"]["approvalRequired"] is False
    link = only_resource(APIM, "Microsoft.ApiManagement/service/products/apis")
    assert (link["parent"], render(link["name"])) == ("product", "api.name")
    subscription = only_resource(APIM, "Microsoft.ApiManagement/service/subscriptions")["properties"]
    assert render(subscription["scope"]) == "product.id" and subscription["state"] == "active"
    # The keys are read on demand (docs/deploy.md), never an output.
    for output in APIM["outputs"].values():
        assert "listSecrets" not in render(output["value"])


def test_the_function_app_answers_the_gateway_only() -> None:
    site = only_resource(template("function-app"), "Microsoft.Web/sites")["properties"]
    config = site["siteConfig"]
    assert render(config["ipSecurityRestrictionsDefaultAction"]) == "empty(allowedCaller) ? Allow : Deny"
    assert render(config["ipSecurityRestrictions"]) == "empty(allowedCaller) ? [] : [callerRule]"
    rule = render(resolve(template("function-app"), "callerRule"))
    assert "vnetSubnetResourceId: allowedCaller.subnetResourceId" in rule and "tag: ServiceTag" in rule
    params = parameter_values(MAIN, gatewayType="applicationGateway")
    assert evaluate(MAIN, module_condition("network"), params) is True
    allowed = evaluate(MAIN, module_params("functionApp")["allowedCaller"], params)
    assert allowed == {"subnetResourceId": "network.outputs.gatewaySubnetResourceId"}
    assert render(module_params("applicationGateway")["subnetResourceId"]) == allowed["subnetResourceId"]
    subnet = gateway_subnet(params)
    assert subnet["properties"]["serviceEndpoints"] == [{"service": "Microsoft.Web"}]
    # Application Gateway refuses a delegated subnet, and an NSG there would have to open its management ports.
    assert subnet["properties"]["delegations"] == []
    assert subnet["properties"]["networkSecurityGroup"] is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("gatewayType == 'apiManagement' ? 'yes' : 'no'", "yes"),
        ("gatewayType == 'applicationGateway' ? 'yes' : 'no'", "no"),
        ("gatewayType == 'apiManagement' && sku == 'StandardV2'", False),
        ("gatewayType == 'applicationGateway' || sku == 'BasicV2'", True),
        ("gatewayType == 'x' || sku == 'BasicV2' && gatewayType == 'apiManagement' ? 'yes' : 'no'", "yes"),
    ],
)
def test_expressions_evaluate_with_bicep_precedence(expression: str, expected: object) -> None:
    """Bicep binds == before &&, && before ||, and ?: last; pycep groups the other way round."""
    text = "param gatewayType string = 'apiManagement'\nparam sku string = 'BasicV2'\nvar probe = " + expression + "\n"
    tpl = dict(BicepParser().parse(text=text))
    assert evaluate(tpl, "probe", parameter_values(tpl)) == expected


def gateway_subnet(main_params: dict[str, Any]) -> dict[str, Any]:
    """The subnet modules/network.bicep declares for a deployment with these main.bicep parameters."""
    network = template("network")
    given = {name: evaluate(MAIN, value, main_params) for name, value in module_params("network").items()}
    subnets = only_resource(network, "Microsoft.Network/virtualNetworks")["properties"]["subnets"]
    assert len(subnets) == 1
    subnet: dict[str, Any] = evaluate(network, subnets[0], parameter_values(network, **given))
    return subnet


def api_management_network(main_params: dict[str, Any]) -> dict[str, Any]:
    """virtualNetworkType and virtualNetworkConfiguration of the API Management service for these parameters."""
    given = {name: evaluate(MAIN, value, main_params) for name, value in module_params("apiManagement").items()}
    params = parameter_values(APIM, **given)
    service = only_resource(APIM, "Microsoft.ApiManagement/service")["properties"]
    return {
        "sku": params["skuName"],
        "virtualNetworkType": evaluate(APIM, service.get("virtualNetworkType", "None"), params),
        "virtualNetworkConfiguration": evaluate(APIM, service.get("virtualNetworkConfiguration"), params),
    }


def test_api_management_reaches_the_app_from_its_own_subnet_only() -> None:
    """By default API Management is StandardV2 with outbound VNet integration (virtualNetworkType External
    and a subnet delegated to Microsoft.Web/serverFarms, api version 2024-05-01 or later), and the function
    app admits that subnet alone, not the AzureCloud service tag every Azure tenant's traffic carries."""
    params = parameter_values(MAIN, gatewayType="apiManagement", apiManagementSku="StandardV2")
    allowed = evaluate(MAIN, module_params("functionApp")["allowedCaller"], params)
    assert allowed == {"subnetResourceId": "network.outputs.gatewaySubnetResourceId"}
    assert evaluate(MAIN, module_condition("network"), params) is True
    assert api_management_network(params) == {
        "sku": "StandardV2",
        "virtualNetworkType": "External",
        "virtualNetworkConfiguration": {"subnetResourceId": allowed["subnetResourceId"]},
    }
    subnet = gateway_subnet(params)
    assert subnet["properties"]["serviceEndpoints"] == [{"service": "Microsoft.Web"}]
    assert [d["properties"]["serviceName"] for d in subnet["properties"]["delegations"]] == [
        "Microsoft.Web/serverFarms"
    ]
    # "A network security group must be associated with the subnet" (Learn, integrate-vnet-outbound).
    assert subnet["properties"]["networkSecurityGroup"] == {"id": "apiManagementNsg.id"}
    # ... and that is what a deployment gets unless the user picks another tier.
    assert parameter_values(MAIN) == params
    assert APIM["parameters"]["skuName"]["default"] == "StandardV2"
    azd_params = json.loads((BICEP_DIR / "main.parameters.json").read_text())["parameters"]
    assert azd_params["apiManagementSku"] == {"value": "${API_MANAGEMENT_SKU=StandardV2}"}


@pytest.mark.parametrize("sku", ["Consumption", "BasicV2", "Developer"])
def test_api_management_without_vnet_integration_falls_back_to_the_documented_service_tag(sku: str) -> None:
    """These tiers cannot integrate outbound traffic into a subnet: the app admits AzureCloud, no VNet is
    deployed, and docs/deploy.md says this is weaker."""
    params = parameter_values(MAIN, apiManagementSku=sku)
    assert evaluate(MAIN, module_condition("network"), params) is False
    assert evaluate(MAIN, module_params("functionApp")["allowedCaller"], params) == {"serviceTag": "AzureCloud"}
    assert api_management_network(params) == {
        "sku": sku,
        "virtualNetworkType": "None",
        "virtualNetworkConfiguration": None,
    }
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    section = deploy.split("## Who can reach the function app", 1)[1].split("\n## ", 1)[0]
    assert "AzureCloud" in section and "weaker" in section and "StandardV2" in section


def test_application_gateway_needs_its_certificate() -> None:
    # An empty certificate used to reach the gateway and fail there with an opaque error; now the module's
    # own parameter check names it before anything is created.
    certificate = parameter(APP_GATEWAY, "certificateSecretUri")
    assert decorator(certificate, "min_length") == 1 and certificate["default"] is None
    assert "Required" in decorator(certificate, "description")
    assert module_params("applicationGateway")["certificateSecretUri"] == "appGatewayCertificateSecretUri"
    assert "required" in decorator(MAIN["parameters"]["appGatewayCertificateSecretUri"], "description")


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


def test_application_gateway_request_timeout_and_no_key_of_its_own() -> None:
    gateway = only_resource(APP_GATEWAY, "Microsoft.Network/applicationGateways")["properties"]
    (settings,) = gateway["backendHttpSettingsCollection"]
    assert settings["properties"]["requestTimeout"] == "backendTimeoutSeconds"
    assert settings["properties"]["protocol"] == "Https"
    # No rewrite rule adds a key (it would be plain text to every Reader): clients send their own.
    assert "rewriteRuleSets" not in gateway
    (routing,) = gateway["requestRoutingRules"]
    assert "rewriteRuleSet" not in routing["properties"]
    # HTTPS only, with TLS 1.2 or later, behind a WAF that lets 100 MB raw submits through.
    assert [listener["properties"]["protocol"] for listener in gateway["httpListeners"]] == ["Https"]
    assert gateway["sslPolicy"]["minProtocolVersion"] == "TLSv1_2"
    assert gateway["sku"]["tier"] == "WAF_v2"
    waf = only_resource(APP_GATEWAY, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies")
    policy = waf["properties"]["policySettings"]
    assert policy["mode"] == "Prevention"
    assert policy["requestBodyEnforcement"] is False and policy["fileUploadLimitInMb"] >= 100
    rules = render(waf["properties"]["customRules"])
    assert "empty(allowedClientAddresses) ? [] : [{name: AllowListedClientsOnly" in rules
    assert "variableName: RemoteAddr" in rules and "negationConditon: true" in rules and "action: Block" in rules
    assert module_params("applicationGateway")["allowedClientAddresses"] == "appGatewayAllowedClientAddresses"
    (probe,) = gateway["probes"]
    assert probe["properties"]["path"] == "/api/health"


def test_health_is_not_public() -> None:
    # GET /api/health reports queue depths and job counts (api/health.py), so no gateway serves it to
    # strangers: API Management asks for a subscription key on every operation, the WAF blocks it outright
    # (the gateway's own probe goes to the backend directly), and the app answers nobody else.
    source_text = (ROOT / "api" / "health.py").read_text(encoding="utf-8")
    assert '"queues"' in source_text and '"jobs"' in source_text
    api = only_resource(APIM, "Microsoft.ApiManagement/service/apis")["properties"]
    assert api["subscriptionRequired"] is True
    waf = only_resource(APP_GATEWAY, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies")
    rules = render(waf["properties"]["customRules"])
    assert "name: HealthIsInternal" in rules and "variableName: RequestUri" in rules
    assert "operator: BeginsWith" in rules and "matchValues: [/api/health]" in rules


def test_only_https_reaches_the_function_app() -> None:
    for value in strings_in(APIM, only_resource(APIM, "Microsoft.ApiManagement/service/backends")):
        assert not value.startswith("http://")
