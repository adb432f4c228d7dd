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
    loop_of,
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


def http_routes(anonymous_only: bool = False) -> set[str]:
    """The HTTP routes the app registers, as /api/<route> with parameter names blanked."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(api_blueprint)
    routes = set()
    for function in app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is None:
            continue
        if anonymous_only and trigger.auth_level != func.AuthLevel.ANONYMOUS:
            continue
        routes.add(re.sub(r"\{[^}]*\}", "{}", f"/api/{trigger.route}"))
    return routes


def declared(symbol: str) -> dict[str, Any]:
    """A resource of the API Management module by its symbolic name (a loop's: its body)."""
    config: dict[str, Any] = APIM["resources"][symbol]["config"]
    return config["config"] if "loop_type" in config else config


def page_paths() -> set[str]:
    """The paths the subscription-free page APIs expose (the API's suffix below apiPath, then the operation)."""
    pages = resolve(APIM, "pages")
    return {
        re.sub(r"\{[^}]*\}", "{}", f"/api/{pages[op['page']]['suffix']}{op['urlTemplate']}".rstrip("/"))
        for op in resolve(APIM, "pageOperations")
    }


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
    policy = declared("apiPolicy")["properties"]
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
    backend = declared("backend")
    header = object_entries(APIM, backend["properties"]["credentials"]["header"])
    assert header == {"x-functions-key": ["{{${functionKey.name}}}"]}
    assert backend["properties"]["url"] == "https://${functionAppHostName}"
    api = declared("api")["properties"]
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
    api = declared("api")["properties"]
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
    assert http_routes() <= exposed | page_paths()
    # A path is served by one API only: the pages' paths are not operations of `longrun` as well.
    assert not exposed & page_paths()
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
    api = declared("api")["properties"]
    assert api["subscriptionRequired"] is True
    assert "/api/health" not in page_paths()
    waf = only_resource(APP_GATEWAY, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies")
    rules = render(waf["properties"]["customRules"])
    assert "name: HealthIsInternal" in rules and "variableName: RequestUri" in rules
    assert "operator: BeginsWith" in rules and "matchValues: [/api/health]" in rules


def test_only_https_reaches_the_function_app() -> None:
    for backend in resources(APIM, "Microsoft.ApiManagement/service/backends"):
        for value in strings_in(APIM, backend):
            assert not value.startswith("http://")


def test_the_static_pages_are_subscription_free_apis_that_serve_nothing_else() -> None:
    # A browser sends no subscription key when it loads a page or its scripts (docs/dashboard.md): /api/ui,
    # its files and /api/docs are APIs of their own without a subscription; everything else, the data the
    # pages read included, stays in `longrun`, which requires one on every operation.
    assert page_paths() == {"/api/ui", "/api/ui/{}", "/api/docs"}
    # Only routes the app itself serves anonymously (api/web.py): nothing that needs a key is reachable
    # without one. /api/health is anonymous at the app (the gateways' probes) but subscription-only here.
    anonymous = http_routes(anonymous_only=True)
    assert page_paths() <= anonymous | {"/api/ui"}
    assert anonymous - page_paths() == {"/api/health"}
    pages = resolve(APIM, "pages")
    assert sorted(page["suffix"] for page in pages) == ["docs", "ui"]
    apis = resources(APIM, "Microsoft.ApiManagement/service/apis")
    assert len(apis) == 2  # `longrun` and the page loop
    assert [api["properties"]["subscriptionRequired"] for api in apis] == [True, False]
    page_api = declared("pageApis")["properties"]
    assert loop_of(APIM, "pageApis")["array_name"] == "pages"
    # One API per page prefix, never one at <apiPath>/api that would sit over the data routes.
    assert page_api["path"] == "${apiPath}/api/${page.suffix}"
    assert page_api["protocols"] == ["https"]
    operations = declared("pageApiOperations")
    assert loop_of(APIM, "pageApiOperations")["array_name"] == "pageOperations"
    assert operations["properties"]["method"] == "GET"
    assert render(operations["parent"]) == "pageApis[operation.page]"
    # Only `longrun` is in the product (its subscription is the one the pages' key is).
    (link,) = resources(APIM, "Microsoft.ApiManagement/service/products/apis")
    assert render(link["name"]) == "api.name"


def test_the_page_apis_reach_the_app_as_the_longrun_api_does() -> None:
    # Same policy (forward-request timeout, unbuffered, the client id header), same credentials and TLS
    # checks as the `longrun` backend, rooted at the page's path; the app adds the CSP and security headers.
    policy = declared("pageApiPolicies")
    assert render(policy["parent"]) == "pageApis[index]"
    assert policy["properties"]["format"] == "rawxml"
    assert (
        render(policy["properties"]["value"]) == "replace(apiPolicyTemplate, __BACKEND_ID__, pageBackends[index].name)"
    )
    main_backend = declared("backend")["properties"]
    page_backend = declared("pageBackends")["properties"]
    assert loop_of(APIM, "pageBackends")["array_name"] == "pages"
    assert page_backend["url"] == "https://${functionAppHostName}/api/${page.suffix}"
    assert declared("pageApis")["properties"]["serviceUrl"] == page_backend["url"]
    for key in ("protocol", "resourceId", "credentials", "tls"):
        assert page_backend[key] == main_backend[key], key


def test_behind_api_management_the_pages_send_the_key_as_a_subscription_key() -> None:
    from shared.settings import Settings

    allowed = decorator(parameter(template("function-app"), "dashboardCredentialHeader"), "allowed")
    assert set(allowed) == set(Settings.model_fields["api_key_header"].annotation.__args__)  # type: ignore[union-attr]
    assert parameter(template("function-app"), "dashboardCredentialHeader")["default"] == "x-functions-key"
    for gateway, header in (("apiManagement", "Ocp-Apim-Subscription-Key"), ("applicationGateway", "x-functions-key")):
        params = parameter_values(MAIN, gatewayType=gateway)
        assert evaluate(MAIN, module_params("functionApp")["dashboardCredentialHeader"], params) == header
