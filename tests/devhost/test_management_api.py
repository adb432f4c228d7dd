"""The Durable HTTP management API: the extension's routes, bodies and status codes."""

from __future__ import annotations

from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, start_orchestration, wait_status, wait_until


def test_start_answers_202_with_check_status_links(sample_host: DevHost) -> None:
    response = sample_host.client.post(f"{MANAGEMENT}/orchestrators/sequence/mgmt-start-1", json=None)
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == "mgmt-start-1"
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert "/instances/mgmt-start-1?" in body["statusQueryGetUri"] and "code=" in body["statusQueryGetUri"]
    assert {"sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri", "suspendPostUri", "resumePostUri"} <= set(
        body
    )


def test_status_is_202_while_running_and_200_when_done(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    running = sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}")
    assert running.status_code == 202
    assert running.headers["Retry-After"] == "5"
    assert running.headers["Location"].endswith(f"/instances/{instance_id}")
    assert running.json()["runtimeStatus"] in ("Pending", "Running")
    sample_host.client.post(f"{MANAGEMENT}/instances/{instance_id}/raiseEvent/approval", json=1)
    done = wait_status(sample_host, instance_id)
    assert done["runtimeStatus"] == "Completed" and done["output"] == {"approval": 1}
    assert set(done) >= {"name", "instanceId", "input", "customStatus", "output", "createdTime", "lastUpdatedTime"}


def test_failed_instances_are_200_or_500_on_request(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "calls_missing")
    wait_status(sample_host, instance_id)
    url = f"{MANAGEMENT}/instances/{instance_id}"
    assert sample_host.client.get(url).status_code == 200
    assert sample_host.client.get(url, params={"returnInternalServerErrorOnFailure": "true"}).status_code == 500


def test_unknown_instances_are_404_with_an_empty_body(sample_host: DevHost) -> None:
    response = sample_host.client.get(f"{MANAGEMENT}/instances/does-not-exist")
    assert response.status_code == 404 and response.content == b""
    assert sample_host.client.post(f"{MANAGEMENT}/instances/does-not-exist/terminate").status_code == 404
    assert sample_host.client.post(f"{MANAGEMENT}/instances/does-not-exist/raiseEvent/x", json=1).status_code == 404
    assert sample_host.client.delete(f"{MANAGEMENT}/instances/does-not-exist").status_code == 404


def test_bad_starts_are_400_with_the_extensions_message(sample_host: DevHost) -> None:
    unknown = sample_host.client.post(f"{MANAGEMENT}/orchestrators/nope", json=1)
    assert unknown.status_code == 400
    assert unknown.json()["Message"] == "One or more of the arguments submitted is incorrect"
    assert "The function 'nope' doesn't exist" in unknown.json()["ExceptionMessage"]
    malformed = sample_host.client.post(
        f"{MANAGEMENT}/orchestrators/sequence", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert sample_host.client.post(f"{MANAGEMENT}/orchestrators/sequence/bad%23id").status_code == 400
    assert sample_host.client.post(f"{MANAGEMENT}/orchestrators/sequence/@entity").status_code == 400
    assert sample_host.client.post(f"{MANAGEMENT}/orchestrators/sequence/{'x' * 257}").status_code == 400
    instance_id = start_orchestration(sample_host, "wait_event")
    again = sample_host.client.post(f"{MANAGEMENT}/orchestrators/wait_event/{instance_id}")
    assert again.status_code == 500 and "already exists" in again.json()["ExceptionMessage"]  # see test_host_details


def test_events_and_operations_on_finished_instances_are_410(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    wait_status(sample_host, instance_id)
    base = f"{MANAGEMENT}/instances/{instance_id}"
    assert sample_host.client.post(f"{base}/raiseEvent/x", json=1).status_code == 410
    assert sample_host.client.post(f"{base}/terminate").status_code == 410
    assert sample_host.client.post(f"{base}/suspend").status_code == 410


def test_raise_event_needs_json_content(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    response = sample_host.client.post(
        f"{MANAGEMENT}/instances/{instance_id}/raiseEvent/approval",
        content=b"x",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 400


def test_purge_deletes_the_instance(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    wait_status(sample_host, instance_id)
    purged = sample_host.client.delete(f"{MANAGEMENT}/instances/{instance_id}")
    assert purged.status_code == 200 and purged.json() == {"instancesDeleted": 1}
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 404
    assert sample_host.client.delete(f"{MANAGEMENT}/instances/").status_code == 400  # createdTimeFrom required


def test_list_pages_with_a_continuation_token(sample_host: DevHost) -> None:
    ids = [start_orchestration(sample_host, "sequence") for _ in range(3)]
    for instance_id in ids:
        wait_status(sample_host, instance_id)
    seen: list[str] = []
    token: str | None = None
    for _ in range(100):
        headers = {"x-ms-continuation-token": token} if token else {}
        page = sample_host.client.get(
            f"{MANAGEMENT}/instances/", params={"top": "2", "runtimeStatus": "Completed"}, headers=headers
        )
        assert page.status_code == 200
        assert len(page.json()) <= 2
        assert all(item["runtimeStatus"] == "Completed" for item in page.json())
        seen += [item["instanceId"] for item in page.json()]
        token = page.headers.get("x-ms-continuation-token")
        if not token:
            break
    assert set(ids) <= set(seen)


def test_unknown_routes_and_methods_are_clear_4xx(sample_host: DevHost) -> None:
    assert sample_host.client.get(f"{MANAGEMENT}/nothing/here").status_code == 404
    assert sample_host.client.put(f"{MANAGEMENT}/instances/x").status_code == 405
    assert sample_host.client.get(f"{MANAGEMENT}/orchestrators/sequence").status_code == 405
    assert sample_host.client.get(f"{MANAGEMENT}/entities/counter/one").status_code == 501
    assert sample_host.client.get("/durabletask/instances/nope").status_code == 404  # the rpc base


def test_terminate_then_status(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    wait_until(
        lambda: sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").json()["runtimeStatus"] == "Running"
    )
    assert (
        sample_host.client.post(f"{MANAGEMENT}/instances/{instance_id}/terminate", params={"reason": "r"}).status_code
        == 202
    )
    assert wait_status(sample_host, instance_id)["runtimeStatus"] == "Terminated"
