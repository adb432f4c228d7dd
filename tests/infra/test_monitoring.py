"""Alerts and the workbook exist, are wired to the action group, and query the events the app writes.

The events are OpenTelemetry log records (shared/telemetry.py): every query reads customDimensions and
none parses message text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.templates import (
    MODULES_DIR,
    decorator,
    loop_of,
    module_params,
    only_resource,
    parameter,
    render,
    resolve,
    template,
)

ALERTS = template("alerts")
WORKBOOK = template("workbook")
EVENT = "tostring(customDimensions.event)"


def assert_reads_fields_not_text(query: str) -> None:
    assert "parse-kv" not in query and "parse " not in query and "split(message" not in query, query
    assert "key=value" not in query


def log_alerts() -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = [
        {key: unescape(resolve(ALERTS, value)) for key, value in alert.items()}
        for alert in resolve(ALERTS, "logAlerts")
    ]
    return alerts


def unescape(value: Any) -> Any:
    """pycep keeps a Bicep string's escapes (\\' for a quote); KQL sees the unescaped text."""
    return value.replace("\\'", "'") if isinstance(value, str) else value


def workbook() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MODULES_DIR / "workbook.json").read_text(encoding="utf-8"))
    return data


def workbook_queries() -> dict[str, str]:
    return {item["name"]: item["content"]["query"] for item in workbook()["items"] if item["type"] == 3}


def test_action_group_mails_the_address_from_a_parameter() -> None:
    group = only_resource(ALERTS, "Microsoft.Insights/actionGroups")["properties"]
    assert [receiver["emailAddress"] for receiver in group["emailReceivers"]] == ["alertEmail"]
    assert module_params("alerts")["alertEmail"] == "alertEmail"
    assert decorator(template("main")["parameters"]["alertEmail"], "description")


def test_log_alerts_cover_poison_dead_letters_failure_rate_and_function_errors() -> None:
    by_name = {alert["name"]: alert for alert in log_alerts()}
    assert set(by_name) == {"poison-queue", "dead-letters", "job-failure-rate", "function-errors"}
    poison = by_name["poison-queue"]["query"]
    assert poison.startswith(f'traces | where {EVENT} in ("intake.poison", "intake.poison_unread")')
    assert by_name["dead-letters"]["query"].startswith(f'traces | where {EVENT} == "job.deadlettered"')
    assert "trace_id = operation_Id" in by_name["dead-letters"]["query"]  # straight to the job's trace
    assert by_name["poison-queue"]["threshold"] == 0 and by_name["dead-letters"]["threshold"] == 0
    rate = by_name["job-failure-rate"]["query"]
    assert f"extend event = {EVENT}" in rate and '"job.failed"' in rate and '"job.completed"' in rate
    assert "${jobFailureRatePercent}" in rate and "${jobFailureRateMinimumJobs}" in rate
    # Count aggregation counts result rows: one row per failed invocation, never a summarized table.
    assert by_name["function-errors"]["query"].startswith("requests | where success == false | project")
    for name in ("poison-queue", "dead-letters", "function-errors"):
        assert "summarize" not in by_name[name]["query"], name
    for alert in log_alerts():
        assert_reads_fields_not_text(alert["query"])


def test_every_log_alert_runs_on_application_insights_and_notifies_the_action_group() -> None:
    assert loop_of(ALERTS, "logAlertRules")["array_name"] == "logAlerts"
    rule = only_resource(ALERTS, "Microsoft.Insights/scheduledQueryRules")["properties"]
    assert rule["scopes"] == ["applicationInsightsResourceId"]
    assert [render(group) for group in rule["actions"]["actionGroups"]] == ["actionGroup.id"]
    (criterion,) = rule["criteria"]["allOf"]
    assert render(criterion["query"]) == "alert.query" and criterion["operator"] == "GreaterThan"
    assert render(module_params("alerts")["applicationInsightsResourceId"]) == (
        "monitoring.outputs.applicationInsightsResourceId"
    )


def test_queue_backlog_alert_uses_the_account_wide_queue_metric() -> None:
    alert = only_resource(ALERTS, "Microsoft.Insights/metricAlerts")["properties"]
    (criterion,) = alert["criteria"]["allOf"]
    assert criterion["metricName"] == "QueueMessageCount"
    assert criterion["metricNamespace"] == "Microsoft.Storage/storageAccounts/queueServices"
    assert criterion["threshold"] == "queueBacklogThreshold"
    assert [render(action["actionGroupId"]) for action in alert["actions"]] == ["actionGroup.id"]
    assert parameter(ALERTS, "queueBacklogThreshold")["default"] >= 1


def test_workbook_is_deployed_with_the_queries_file_and_real_resource_ids() -> None:
    resource = only_resource(WORKBOOK, "Microsoft.Insights/workbooks")
    assert resource["kind"] == "shared"
    assert resource["properties"]["category"] == "workbook"
    assert resource["properties"]["sourceId"] == "applicationInsightsResourceId"
    serialized = render(resolve(WORKBOOK, "serializedData"))
    assert "load_text_content(workbook.json)" in serialized
    assert "__STORAGE_ACCOUNT_ID__, storageAccountResourceId" in serialized
    assert "__APPLICATION_INSIGHTS_ID__, applicationInsightsResourceId" in serialized
    raw = (MODULES_DIR / "workbook.json").read_text(encoding="utf-8")
    assert set(re.findall(r"__[A-Z_]+__", raw)) == {"__STORAGE_ACCOUNT_ID__", "__APPLICATION_INSIGHTS_ID__"}
    assert workbook()["version"] == "Notebook/1.0"


def test_workbook_shows_jobs_over_time_durations_queues_and_the_slowest_and_failing_jobs() -> None:
    queries = workbook_queries()
    over_time = queries["jobs-over-time"]
    for event in ("job.submitted", "job.completed", "job.failed"):
        assert f'"{event}"' in over_time
    assert "bin(timestamp, {TimeRange:grain})" in over_time
    assert re.search(
        r"percentile\(duration_ms, 50\).*percentile\(duration_ms, 90\).*percentile\(duration_ms, 99\)",
        queries["job-duration-percentiles"],
    )
    assert "top 20 by duration_ms desc" in queries["slowest-jobs"]
    assert '"job.failed"' in queries["failing-jobs"] and '"job.deadlettered"' in queries["failing-jobs"]
    assert '"intake.poison"' in queries["poison-and-dead-letters"]
    metrics = [item for item in workbook()["items"] if item["type"] == 10]
    assert [metric["content"]["metrics"][0]["metric"].rsplit("-", 1)[-1] for metric in metrics] == ["QueueMessageCount"]
    for name, query in queries.items():
        assert query.startswith(("traces\n", "customMetrics\n", "let job = ")), name
        assert_reads_fields_not_text(query)
        if query.startswith("traces\n"):
            assert f"extend event = {EVENT}" in query, name


def test_workbook_has_a_job_timeline_keyed_by_job_id_and_the_apps_metrics() -> None:
    items = {item["name"]: item for item in workbook()["items"]}
    (parameter_item,) = items["job-parameter"]["content"]["parameters"]
    assert parameter_item["name"] == "JobId" and parameter_item["type"] == 1  # free text
    timeline = items["job-timeline"]["content"]["query"]
    assert timeline.startswith('let job = "{JobId}";')
    assert "tostring(customDimensions.job_id) == job" in timeline and "distinct operation_Id" in timeline
    for table in ("requests", "dependencies"):
        assert f"({table} | where operation_Id in (job_traces)" in timeline, table
    assert "(operation_Id in (job_traces) or tostring(customDimensions.job_id) == job)" in timeline
    assert "order by timestamp asc" in timeline
    metrics = workbook_queries()["job-metrics"] + workbook_queries()["queue-wait-and-breakers"]
    for name in (
        "longrun.jobs.submitted",
        "longrun.jobs.completed",
        "longrun.jobs.failed",
        "longrun.retries",
        "longrun.dead_letters",
        "longrun.webhook.deliveries",
        "longrun.job.queue_wait",
        "longrun.job.duration",
        "longrun.chunk.duration",
        "longrun.webhook.breaker_state",
    ):
        assert f'"{name}"' in metrics, name
