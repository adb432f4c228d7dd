"""The Durable HTTP management API (`/runtime/webhooks/durabletask/...` and the local RPC base), with the
extension's routes, bodies and status codes (HttpApiHandler)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from devhost.durable.engine import (
    FINISHED,
    InstanceExists,
    InstanceFinished,
    InstanceNotFound,
    OrchestrationEngine,
    UnknownOrchestrator,
)
from devhost.durable.history import Event, EventType, parse_time, status_time
from devhost.durable.store import sanitize_key

WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/durabletask"
_BAD_ARGUMENTS = "One or more of the arguments submitted is incorrect"
_INVALID_ID_CHARS = set("/\\#?")


def _error(status: int, message: str, exception_message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"Message": message}
    if exception_message is not None:
        body["ExceptionMessage"] = exception_message
    return web.json_response(body, status=status)


def _bad_request(detail: str) -> web.Response:
    return _error(400, _BAD_ARGUMENTS, detail)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.strip().lower() == "true"


def _token(text: Any) -> Any:
    """ParseToJToken: a JSON value when the stored text is JSON, the text itself otherwise."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _time(value: Any) -> str | None:
    if isinstance(value, datetime):
        return status_time(value)
    if isinstance(value, str) and value:
        return status_time(parse_time(value))
    return None


def check_instance_id(instance_id: str) -> str | None:
    """Why the extension would reject an instance id, or None if it is valid."""
    if not instance_id or len(instance_id) > 256:
        return "Instance ID must be between 1 and 256 characters."
    if instance_id.startswith("@"):
        return f"Instance ID '{instance_id}' starts with '@', which is reserved for entities."
    if any(ch in _INVALID_ID_CHARS or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in instance_id):
        return f"Instance ID '{instance_id}' contains invalid characters (/ \\ # ? or control characters)."
    return None


class ManagementApi:
    """The HTTP management API and the Durable client binding of one task hub."""

    def __init__(self, engine: OrchestrationEngine, hub: str, system_key: str, enforce_auth: bool) -> None:
        self.engine = engine
        self.hub = hub
        self.system_key = system_key
        self.enforce_auth = enforce_auth

    # --- URLs -------------------------------------------------------------------------------------
    def base_url(self, origin: str) -> str:
        """The webhook base URL under the given origin."""
        return f"{origin}{WEBHOOK_PREFIX}"

    def required_query(self) -> str:
        """The query string every management URL carries (task hub, connection, system key)."""
        return urlencode({"taskHub": self.hub, "connection": "Storage", "code": self.system_key})

    def management_urls(self, origin: str, instance_id: str) -> dict[str, str]:
        """An instance's management URLs, as in the extension's HttpManagementPayload."""
        base = f"{self.base_url(origin)}/instances/{instance_id}"
        query = self.required_query()
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{query}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{base}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{base}?{query}",
            "restartPostUri": f"{base}/restart?{query}",
            "suspendPostUri": f"{base}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{base}/resume?reason={{text}}&{query}",
        }

    def client_binding(self, origin: str, rpc_origin: str) -> str:
        """The durableClient binding JSON the host passes to the function (legacy out-of-proc protocol)."""
        base = self.base_url(origin)
        query = self.required_query()
        return json.dumps(
            {
                "taskHubName": self.hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
                    "createAndWaitOnNewInstancePostUri": (
                        f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}"
                        f"&pollingInterval={{intervalInSeconds}}&{query}"
                    ),
                },
                "managementUrls": self.management_urls(origin, "INSTANCEID"),
                "baseUrl": base,
                "requiredQueryStringParameters": query,
                "rpcBaseUrl": f"{rpc_origin}{RPC_PREFIX}/",
                "connectionName": None,
            }
        )

    # --- dispatch ---------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route a management request to its handler."""
        path = request.path
        webhook = path.startswith(WEBHOOK_PREFIX + "/") or path == WEBHOOK_PREFIX
        prefix = WEBHOOK_PREFIX if webhook else RPC_PREFIX
        if webhook and self.enforce_auth and request.query.get("code") != self.system_key:
            return _error(401, "Unauthorized: the durabletask webhooks require the system key (code=...).")
        parts = [p for p in path[len(prefix) :].split("/") if p]
        method = request.method
        try:
            if parts[:1] == ["orchestrators"] and len(parts) in (2, 3):
                return await self._only(
                    method, "POST", self._start(request, parts[1], parts[2] if len(parts) == 3 else None)
                )
            if parts[:1] == ["instances"]:
                if len(parts) == 1:
                    if method == "GET":
                        return await self._list(request)
                    if method == "DELETE":
                        return await self._purge_many(request)
                    return _method_not_allowed("GET, DELETE")
                instance_id = parts[1]
                if len(parts) == 2:
                    if method == "GET":
                        return await self._status(request, instance_id)
                    if method == "DELETE":
                        return await self._purge(instance_id)
                    return _method_not_allowed("GET, DELETE")
                if len(parts) == 4 and parts[2] == "raiseEvent":
                    return await self._only(method, "POST", self._raise(request, instance_id, parts[3]))
                if len(parts) == 3 and parts[2] in ("terminate", "suspend", "resume", "rewind", "restart"):
                    return await self._only(method, "POST", self._operation(request, instance_id, parts[2]))
            if parts[:1] == ["entities"]:
                return _error(501, "Durable entities are not supported by devhost (the app uses none).")
        except json.JSONDecodeError as exc:
            return _bad_request(f"The request body is not valid JSON: {exc.msg}")
        return _error(404, f"No durabletask route matches {request.method} {path}.")

    @staticmethod
    async def _only(method: str, allowed: str, handler: Any) -> web.StreamResponse:
        if method != allowed:
            handler.close()
            return _method_not_allowed(allowed)
        return await handler  # type: ignore[no-any-return]

    def _origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _check_status_response(self, request: web.Request, instance_id: str) -> web.Response:
        urls = self.management_urls(self._origin(request), instance_id)
        return web.json_response(urls, status=202, headers={"Location": urls["statusQueryGetUri"], "Retry-After": "10"})

    # --- handlers --------------------------------------------------------------------------------
    async def _start(self, request: web.Request, name: str, instance_id: str | None) -> web.Response:
        if instance_id is None:
            import uuid

            instance_id = uuid.uuid4().hex
        problem = check_instance_id(instance_id)
        if problem:
            return _bad_request(problem)
        body = await request.read()
        value = json.loads(body) if body.strip() else None
        input_text = json.dumps(value, separators=(",", ":"))
        try:
            await self.engine.start_instance(name, instance_id, input_text)
        except UnknownOrchestrator:
            return _bad_request(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                "Additional info: no orchestrator of that name is registered."
            )
        except InstanceExists as exc:
            return _already_exists(str(exc))
        return self._check_status_response(request, instance_id)

    def _payload(self, row: dict[str, Any], show_input: bool) -> dict[str, Any]:
        return {
            "name": row.get("Name"),
            "instanceId": row.get("InstanceId"),
            "runtimeStatus": row.get("RuntimeStatus"),
            "input": _token(row.get("Input")) if show_input else None,
            "customStatus": _token(row.get("CustomStatus")),
            "output": _token(row.get("Output")),
            "createdTime": _time(row.get("CreatedTime")),
            "lastUpdatedTime": _time(row.get("LastUpdatedTime")),
        }

    async def _status(self, request: web.Request, instance_id: str) -> web.Response:
        row = await self.engine.store.read_instance(instance_id)
        if row is None:
            return web.Response(status=404)
        payload = self._payload(row, _flag(request, "showInput", True))
        if _flag(request, "showHistory", False) and row.get("RuntimeStatus") != "Pending":
            events = await self.engine.history_of(instance_id)
            payload["historyEvents"] = _public_history(
                events, _flag(request, "showHistoryOutput", False), _flag(request, "showInput", True)
            )
        status = row.get("RuntimeStatus")
        if status in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            return web.json_response(payload, status=202, headers={"Location": str(request.url), "Retry-After": "5"})
        if status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False):
            return web.json_response(payload, status=500)
        return web.json_response(payload, status=200)

    def _filter(self, request: web.Request) -> str:
        clauses = ["RowKey eq ''"]
        query = request.query
        for name, op in (("createdTimeFrom", "ge"), ("createdTimeTo", "le")):
            if query.get(name):
                moment = parse_time(query[name])
                clauses.append(f"CreatedTime {op} datetime'{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'")
        statuses = [s.strip() for s in query.get("runtimeStatus", "").split(",") if s.strip()]
        if statuses:
            clauses.append("(" + " or ".join(f"RuntimeStatus eq '{s.replace(chr(39), '')}'" for s in statuses) + ")")
        prefix = query.get("instanceIdPrefix")
        if prefix:
            key = sanitize_key(prefix).replace("'", "''")
            clauses.append(f"PartitionKey ge '{key}' and PartitionKey lt '{key}\uffff'")
        return " and ".join(clauses)

    async def _list(self, request: web.Request) -> web.Response:
        try:
            filter_text = self._filter(request)
            top = int(request.query["top"]) if request.query.get("top") else None
        except ValueError as exc:
            return _bad_request(str(exc))
        if top is not None and top <= 0:
            return _bad_request("top must be a positive number")
        continuation = request.headers.get("x-ms-continuation-token")
        try:
            rows, token = await self.engine.store.query_instances(filter_text, top, continuation)
        except (ValueError, TypeError):
            return _bad_request("invalid continuation token")
        show_input = _flag(request, "showInput", False)
        headers = {"x-ms-continuation-token": token} if token else {}
        return web.json_response([self._payload(r, show_input) for r in rows], headers=headers)

    async def _purge(self, instance_id: str) -> web.Response:
        if not await self.engine.purge(instance_id):
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": 1})

    async def _purge_many(self, request: web.Request) -> web.Response:
        # HandleDeleteHistoryWithFiltersRequestAsync: createdTimeFrom is required, createdTimeTo defaults to
        # now, and the statuses are filtered only when runtimeStatus is given: without it, every status.
        if not request.query.get("createdTimeFrom"):
            return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
        try:
            filter_text = self._filter(request)
        except ValueError as exc:
            return _bad_request(str(exc))
        deleted = 0
        async for row in self.engine.store.iter_instances(filter_text):
            if await self.engine.purge(str(row.get("InstanceId"))):
                deleted += 1
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def _raise(self, request: web.Request, instance_id: str, name: str) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        row = await self.engine.store.read_instance(instance_id)
        if row is None:
            return web.Response(status=404)
        if row.get("RuntimeStatus") in FINISHED:
            return web.Response(status=410)
        if not content_type.lower().startswith("application/json"):
            return _bad_request("Only application/json request content is supported")
        body = await request.read()
        value = json.loads(body) if body.strip() else None
        try:
            await self.engine.raise_event(instance_id, name, json.dumps(value, separators=(",", ":")))
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceFinished:
            return web.Response(status=410)
        return web.Response(status=202)

    async def _operation(self, request: web.Request, instance_id: str, operation: str) -> web.Response:
        reason = request.query.get("reason")
        try:
            if operation == "terminate":
                await self.engine.terminate(instance_id, reason)
            elif operation == "suspend":
                await self.engine.suspend(instance_id, reason)
            elif operation == "resume":
                await self.engine.resume(instance_id, reason)
            elif operation == "rewind":
                row = await self.engine.store.read_instance(instance_id)
                if row is None:
                    return web.Response(status=404)
                if row.get("RuntimeStatus") in ("Completed", "Terminated", "Canceled"):
                    return web.Response(status=410)
                return _error(501, "Rewind (a preview feature of the extension) is not supported by devhost.")
            else:
                return await self._restart(request, instance_id)
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceFinished:
            return web.Response(status=410)
        return web.Response(status=202)

    async def _restart(self, request: web.Request, instance_id: str) -> web.Response:
        row = await self.engine.store.read_instance(instance_id)
        if row is None:
            return _bad_request(f"An orchestration with the instanceId {instance_id} was not found.")
        new_id = instance_id
        if _flag(request, "restartWithNewInstanceId", True):
            import uuid

            new_id = uuid.uuid4().hex
        try:
            await self.engine.start_instance(str(row.get("Name")), new_id, str(row.get("Input") or "null"))
        except UnknownOrchestrator as exc:
            return _bad_request(str(exc))
        except InstanceExists as exc:
            return _already_exists(str(exc))
        return self._check_status_response(request, new_id)


def _already_exists(status: str) -> web.Response:
    """OrchestrationAlreadyExistsException escapes HttpApiHandler's ArgumentException handler: a 500."""
    return _error(
        500,
        "Something went wrong while processing your request",
        f"An Orchestration instance with the status {status} already exists.",
    )


def _method_not_allowed(allowed: str) -> web.Response:
    return web.json_response(
        {"Message": f"The requested resource does not support this method; use {allowed}."},
        status=405,
        headers={"Allow": allowed},
    )


def _public_history(events: list[Event], show_output: bool, show_input: bool) -> list[dict[str, Any]]:
    """The extension's post-processed history: names for types, schedule rows folded into completions."""
    scheduled = {
        int(e["EventId"]): e
        for e in events
        if e["EventType"] in (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated)
    }
    public: list[dict[str, Any]] = []
    for ev in events:
        kind = EventType(ev["EventType"])
        if kind in (
            EventType.OrchestratorStarted,
            EventType.OrchestratorCompleted,
            EventType.TaskScheduled,
            EventType.SubOrchestrationInstanceCreated,
        ):
            continue
        item = {k: v for k, v in ev.items() if k not in ("EventId", "IsPlayed", "TaskScheduledId", "Version")}
        item["EventType"] = kind.name
        if kind == EventType.ExecutionStarted:
            item["FunctionName"] = item.pop("Name", None)
        source = scheduled.get(int(ev.get("TaskScheduledId", -2))) if "TaskScheduledId" in ev else None
        if source is not None:
            item["FunctionName"] = source.get("Name")
            item["ScheduledTime"] = source.get("Timestamp")
            if show_input:
                item["Input"] = source.get("Input")
        if not show_output:
            item.pop("Result", None)
        if not show_input and kind != EventType.ExecutionStarted:
            item.pop("Input", None)
        public.append(item)
    return public


def quote_id(instance_id: str) -> str:
    """An instance id escaped for a URL path segment."""
    return quote(instance_id, safe="")
