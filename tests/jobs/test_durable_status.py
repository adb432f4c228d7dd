"""jobs.durable.status reads the real SDK's answer to each of the host's replies.

The SDK's get_status accepts 200, 202, 400, 404 and 500 alike and builds a status from the body
(DurableOrchestrationClient.get_status): a 404's empty body becomes a status with `message` "", a 500's
error document a status without a runtime status. Only the first means "no instance"; reading the second
the same way once let a caller start a job again. The host is the one thing stood in for here (it is
Azure's): a local HTTP server answers as it would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.durable_functions as df
import pytest
from aiohttp import web

from jobs import durable

RUNNING = {
    "name": "job_orchestrator",
    "instanceId": "job-1",
    "runtimeStatus": "Running",
    "input": None,
    "customStatus": {"phase": "processing"},
    "output": None,
    "createdTime": "2026-12-03T09:00:00Z",
    "lastUpdatedTime": "2026-12-03T09:00:01Z",
}
# What the Functions host's web hook answers when the status query itself throws.
HOST_ERROR = {"Message": "An error has occurred.", "ExceptionMessage": "storage unavailable"}


async def _status_for(reply: web.Response) -> durable.Instance | None:
    async def answer(request: web.Request) -> web.Response:
        return reply

    app = web.Application()
    app.router.add_get("/durabletask/instances/{id}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    binding: dict[str, Any] = {
        "taskHubName": "hub",
        "creationUrls": {},
        "managementUrls": {},
        "baseUrl": f"http://127.0.0.1:{port}/runtime/webhooks/durabletask",
        "requiredQueryStringParameters": "code=k",
        "rpcBaseUrl": f"http://127.0.0.1:{port}/durabletask/",
        "connectionName": None,
    }
    try:
        return await durable.status(df.DurableOrchestrationClient(json.dumps(binding)), "job-1")
    finally:
        await runner.cleanup()


# The SDK keeps one HTTP session for the process, bound to the loop that first used it: one loop for all.
_LOOP = asyncio.new_event_loop()


def _run(reply: web.Response) -> Any:
    return _LOOP.run_until_complete(_status_for(reply))


def test_a_404_means_no_instance() -> None:
    assert _run(web.Response(status=404)) is None


def test_a_running_instance_is_read() -> None:
    instance = _run(web.json_response(RUNNING, status=202))
    assert instance is not None
    assert (instance.runtime_status, instance.custom_status) == ("Running", {"phase": "processing"})


def test_a_host_error_is_not_read_as_no_instance() -> None:
    with pytest.raises(durable.StatusUnknown):
        _run(web.json_response(HOST_ERROR, status=500))


def test_a_failed_instance_answered_500_is_still_an_instance() -> None:
    # returnInternalServerErrorOnFailure: the status document of a Failed instance, with a 500.
    instance = _run(web.json_response({**RUNNING, "runtimeStatus": "Failed"}, status=500))
    assert instance is not None and instance.runtime_status == "Failed"
