"""Keyless storage, the names the code uses, the lifecycle safety net and the role assignments."""

from __future__ import annotations

import re

from storage import names
from tests.infra.templates import (
    interpolate,
    loop_of,
    module_condition,
    module_params,
    modules_using,
    object_entries,
    only_resource,
    render,
    resolve,
    resources,
    source,
    strings_in,
    template,
)

STORAGE = template("storage")
MAIN = template("main")


def provisioned(param: str) -> set[str]:
    """The literal names main.bicep passes to the app's storage module for a list parameter."""
    return {interpolate(MAIN, value) for value in strings_in(MAIN, module_params("storage")[param])}


def test_storage_account_accepts_only_entra_id_over_tls_1_2() -> None:
    account = only_resource(STORAGE, "Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True


def test_blob_soft_delete_is_on_and_containers_are_private() -> None:
    blob = only_resource(STORAGE, "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert blob["deleteRetentionPolicy"]["enabled"] is True
    assert blob["containerDeleteRetentionPolicy"]["enabled"] is True
    container = only_resource(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container["properties"]["publicAccess"] == "None"


def test_containers_queues_and_tables_loop_over_the_module_parameters() -> None:
    assert loop_of(STORAGE, "blobContainers")["array_name"] == "containers"
    assert loop_of(STORAGE, "storageQueues")["array_name"] == "queues"
    assert loop_of(STORAGE, "storageTables")["array_name"] == "tables"


def test_every_container_queue_and_table_the_code_uses_is_provisioned() -> None:
    containers = provisioned("containers")
    assert set(names.CONTAINERS) <= containers
    # Flex Consumption deploys the app package to a container of its own in the same account.
    package = containers - set(names.CONTAINERS)
    assert len(package) == 1 and next(iter(package)).startswith("app-package-")
    assert set(names.QUEUES) <= provisioned("queues")
    assert names.INBOX_POISON_QUEUE in provisioned("queues")
    assert set(names.TABLES) <= provisioned("tables")


def test_function_app_deploys_from_the_provisioned_package_container() -> None:
    params = module_params("functionApp")
    assert params["deploymentContainerName"] in module_params("storage")["containers"]


def test_lifecycle_policy_deletes_job_blobs_after_the_apps_retention() -> None:
    rules = {rule["name"]: rule for rule in module_params("storage")["lifecycleRules"]}
    prefixes = {name: {interpolate(MAIN, prefix) for prefix in rule["prefixes"]} for name, rule in rules.items()}
    jobs = f"{names.job_prefix('')}".rstrip("/") + "/"
    assert (
        set().union(*prefixes.values())
        == {
            f"{names.PAYLOADS_CONTAINER}/{jobs}",
            f"{names.PAYLOADS_CONTAINER}/{names.upload_blob_name('')}",
            f"{names.RESULTS_CONTAINER}/{jobs}",
        }
        == {"payloads/jobs/", "payloads/uploads/", "results/jobs/"}
    )

    # RETENTION_DAYS + a margin: the app's own purge runs first, the policy is the safety net. Job inputs
    # stay as long as dead letters, which keep them for replay.
    delays = {prefix: render(rules[name]["deleteAfterDays"]) for name, group in prefixes.items() for prefix in group}
    assert delays == {
        "payloads/uploads/": "retentionDays + lifecycleMarginDays",
        "results/jobs/": "retentionDays + lifecycleMarginDays",
        "payloads/jobs/": "max(retentionDays, deadLetterRetentionDays) + lifecycleMarginDays",
    }
    assert module_params("functionApp")["retentionDays"] == "retentionDays"
    assert module_params("functionApp")["deadLetterRetentionDays"] == "deadLetterRetentionDays"
    assert MAIN["parameters"]["lifecycleMarginDays"]["default"] >= 1

    policy = only_resource(STORAGE, "Microsoft.Storage/storageAccounts/managementPolicies")["properties"]["policy"]
    assert policy["rules"]["loop_type"]["detail"]["array_name"] == "lifecycleRules"
    rule = policy["rules"]["config"]
    assert render(rule["definition"]["filters"]["prefixMatch"]) == "rule.prefixes"
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert render(delete["daysAfterModificationGreaterThan"]) == "rule.deleteAfterDays"


def test_task_hub_can_live_in_a_storage_account_of_its_own() -> None:
    assert module_condition("taskHubStorage") == "separateTaskHubStorage"
    assert modules_using("modules/storage.bicep") == ["storage", "taskHubStorage"]
    endpoints = object_entries(MAIN, module_params("functionApp")["taskHubStorageEndpoints"])
    assert {key: render(value) for key, value in endpoints.items()} == {
        "blob": "taskHubStorage.outputs.blobEndpoint",
        "queue": "taskHubStorage.outputs.queueEndpoint",
        "table": "taskHubStorage.outputs.tableEndpoint",
    }


def test_the_app_runs_as_a_user_assigned_identity() -> None:
    site = only_resource(template("function-app"), "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    assert list(object_entries(template("function-app"), site["identity"]["userAssignedIdentities"])) == [
        "${identityResourceId}"
    ]
    assert render(module_params("functionApp")["identityResourceId"]) == "identity.outputs.resourceId"
    assert render(module_params("functionApp")["identityClientId"]) == "identity.outputs.clientId"


def test_role_assignments_are_one_guid_named_loop_with_the_four_roles() -> None:
    rbac = template("rbac")
    assignments = resources(rbac, "Microsoft.Authorization/roleAssignments")
    assert len(assignments) == 1, "one loop, not one resource per role"
    assert loop_of(rbac, "roleAssignments")["array_name"] == {
        "function": {"type": "items", "parameters": {"arg_1": "roles"}}
    }
    assert assignments[0]["name"]["function"]["type"] == "guid"
    roles = resolve(rbac, "roles")
    assert {key.strip("'"): value for key, value in roles.items()} == {
        "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    }
    # The app's identity always gets them; the deploying developer too, so the app runs from a laptop.
    assert render(module_params("appRoles")["principalId"]) == "identity.outputs.principalId"
    assert render(module_condition("developerRoles")) == "!empty(principalId)"
    assert module_params("developerRoles")["principalId"] == "principalId"


def test_no_key_or_connection_string_with_a_key_anywhere() -> None:
    for name in ("main", "storage", "function-app", "monitoring", "api-management", "application-gateway"):
        text = source(name)
        assert "AccountKey" not in text
        assert "listConnectionStrings" not in text
        # The only keys read are the function host's, for the gateway; never a storage account key.
        for call in re.findall(r"listKeys\(([^)]*)\)", text):
            assert "/host/default" in call, f"{name}.bicep reads keys: {call}"


def test_application_insights_refuses_instrumentation_key_auth() -> None:
    monitoring = template("monitoring")
    insights = only_resource(monitoring, "Microsoft.Insights/components")["properties"]
    assert insights["DisableLocalAuth"] is True
    assert render(insights["WorkspaceResourceId"]) == "logAnalytics.id"
    workspace = only_resource(monitoring, "Microsoft.OperationalInsights/workspaces")["properties"]
    assert workspace["features"]["disableLocalAuth"] is True
