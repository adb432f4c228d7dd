"""The contract as an OpenAPI 3.1 document, served at GET /api/openapi.json.

The routes, headers and problems are written here; everything about job kinds (their names, options
schemas, inline input, accepted content types and result formats) comes from the kinds registry, so a
new kind appears here without an edit to this module.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from azurefunctions.extensions.http.fastapi import Request, Response

import kinds
from api.app import blueprint
from api.http import JSON_MEDIA_TYPE, ROUTE_METHODS, dispatch
from api.links import base_url
from jobs.requests import JSON_CONTENT_TYPE, MAX_DEADLINE_SECONDS
from shared.contracts import CALLBACK_EVENTS, TERMINAL_EVENTS
from shared.settings import Settings, get_settings


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


def _unsupported(description: str) -> dict[str, Any]:
    """A 415: the body's media type is not one the operation reads, or the body came content-coded (then
    `Accept-Encoding: identity` says that only an uncompressed body is accepted)."""
    accepted = {"description": "On a content-coded body: identity", "schema": {"type": "string", "const": "identity"}}
    problem = _problem(f"{description}; or a body sent with a Content-Encoding")
    return {**problem, "headers": {"Accept-Encoding": accepted}}


def _with_retry_after(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem answer that tells when to try again."""
    return {**problem, "headers": {"Retry-After": {"schema": {"type": "integer"}}}}


def _page_of(schema: str, *, next_link: bool = False) -> dict[str, Any]:
    """A page of a listing: its items, and the continuation token of the next page (null on the last); with
    `next_link`, also the next page's URL (absent on the last)."""
    page: dict[str, Any] = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref(schema)},
            "continuation": {"type": ["string", "null"]},
        },
    }
    if next_link:
        page["properties"]["links"] = {
            "type": "object",
            "description": "Present while there is a next page",
            "properties": {"next": {"type": "string", "format": "uri"}},
        }
    return page


def _event_stream(description: str, data: dict[str, Any], names: list[str] | None, *, with_id: bool) -> dict[str, Any]:
    """A 200 answer of Server-Sent Events whose `data` is JSON of the given schema; `names` the events' `event:`
    (None: none is sent, so it reads as "message"); `with_id`: each event has a decimal `id:`.

    Before OpenAPI 3.2 (whose `itemSchema` this is), the `schema` of `text/event-stream` describes each event
    as its fields read (`event`, `data`, `id`, `retry`), which is how tools check a stream against it.
    """
    properties: dict[str, Any] = {
        "data": {"type": "string", "contentMediaType": JSON_CONTENT_TYPE, "contentSchema": data},
        "retry": {"type": "integer", "minimum": 0},
        "event": {"enum": names} if names is not None else {"const": "message"},
    }
    if with_id:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+$"}
    event = {"type": "object", "required": ["data"], "properties": properties}
    return {"description": description, "content": {"text/event-stream": {"schema": event}}}


def _html_page(operation_id: str, summary: str) -> dict[str, Any]:
    """A page of the web UI: anonymous (the page asks for the key its API calls send)."""
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        }
    }


_POLL_HEADERS = {
    "Location": {"description": "Absolute URL of the job", "schema": {"type": "string", "format": "uri"}},
    "Retry-After": {
        "description": (
            "Seconds to wait before polling again: by the job's age (1 s for its first 10 s, then 2, 5, 15, 30 s); "
            "for a PENDING job queued behind others, until its turn is likely to come (at most 10 s)"
        ),
        "schema": {"type": "integer"},
    },
}
_ETAG = {
    "ETag": {
        "description": 'Weak tag of the status and progress shown: W/"<version>", the id of the event that reports '
        "this state on /events. Send it back as If-None-Match with ?wait=N to long-poll.",
        "schema": {"type": "string", "pattern": '^W/"[0-9]+"$'},
    }
}
_WAIT = {
    "name": "wait",
    "in": "query",
    "description": "Long-poll: with If-None-Match naming the current state, answer once the status or progress "
    "differs, or after this many seconds; without it, or for a finished job, answer at once. Never 304.",
    "schema": {"type": "integer", "minimum": 0, "maximum": 60, "default": 0},
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "description": "The ETag last seen (weak comparison; a list is allowed). Only ?wait=N reads it.",
    "schema": {"type": "string"},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "description": "The id of the last event received: the stream resumes after it (no repeat, nothing lost).",
    # The ids a stream sends (api.events.MAX_EVENT_ID bounds what is read back: below 10**15).
    "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"},
}
_PROGRESS = {
    "type": "object",
    "properties": {
        "completed": {"type": "integer"},
        "total": {"type": "integer"},
        "percent": {"type": "number"},
    },
}
_STATE_EVENT = {
    "type": "object",
    "description": "Data of the status and progress events",
    "required": ["id", "status", "phase", "progress", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["PENDING", "RUNNING"]},
        "phase": {
            "enum": ["preparing", "processing", "merging", "finalizing", "cleaning_up", "done", None],
        },
        "progress": _PROGRESS,
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_EVENTS_DESCRIPTION = (
    "Server-Sent Events. First `retry: <ms>`; then `event: status` (first event of a fresh stream, and on a status "
    "change) and `event: progress` (phase/completed/total changed), each with data JobStateEvent; a comment "
    "`: ping` after SSE_HEARTBEAT_SECONDS (15) without an event; finally one of `event: completed`, `failed`, "
    "`cancelled` with the Job resource as GET /api/jobs/{job_id} gives it, and the stream ends. It also ends on "
    "its own after SSE_MAX_STREAM_SECONDS (90): reconnect with Last-Event-ID. Every event has an `id:` "
    "(decimal) that grows with the job's state and is the same on every server: 0 PENDING, seq+1 RUNNING, "
    "1000000000 terminal. Headers: Cache-Control: no-cache, X-Accel-Buffering: no."
)
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}
_CONTINUATION = {"name": "continuation", "in": "query", "schema": {"type": "string"}}
_RECORD_ID = {"name": "record_id", "in": "path", "required": True, "schema": {"type": "string"}}
_IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "The same key with the same request names the same job; with a different request: 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x20-\\x7E]+$"},
}
_TRACEPARENT = {
    "name": "traceparent",
    "in": "header",
    "description": "W3C trace context: the job joins the caller's trace (its trace_id is the caller's). "
    "One that is not a valid version-00 traceparent is ignored, and the job starts a trace of its own.",
    "schema": {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
}
_STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
_PRIORITIES = ["high", "normal", "low"]
_CLIENT_ID = {
    "name": "X-Client-Id",
    "in": "header",
    "description": "Who submits (per-client admission caps); set by the gateway in Azure (CLIENT_ID_HEADER)",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._@:-]{1,64}$"},
}
_TOO_MANY = _with_retry_after(
    _problem("More than MAX_PENDING_JOBS jobs wait for admission: retry after Retry-After; nothing was stored")
)

_SCHEMAS: dict[str, Any] = {
    "JobStateEvent": _STATE_EVENT,
    "Job": {
        "type": "object",
        "required": ["id", "kind", "status", "created_at", "updated_at", "progress", "links"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"enum": _STATUSES},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "deadline_at": {"type": "string", "format": "date-time"},
            "priority": {"enum": _PRIORITIES, "description": "The job's admission lane"},
            "queue": {
                "type": "object",
                "description": "While the job waits for admission (PENDING): its lane and approximate position",
                "properties": {
                    "lane": {"enum": _PRIORITIES},
                    "position": {"type": "integer", "minimum": 1, "description": "Approximate; 1 = next in its lane"},
                    "approximate": {"const": True},
                },
            },
            "trace_id": {
                "type": "string",
                "pattern": "^[0-9a-f]{32}$",
                "description": "W3C trace id of the job's trace (the submitter's traceparent, or a new trace)",
            },
            "progress": _PROGRESS,
            "links": {
                "type": "object",
                "properties": {k: {"type": "string", "format": "uri"} for k in ("self", "result", "cancel")},
            },
            "result": {"type": "object", "description": "Small summary, when COMPLETED"},
            "error": {
                "type": "object",
                "description": "When FAILED",
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "attempts": {"type": "integer"},
                },
            },
        },
    },
    "BatchRequest": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "description": "Job requests (as POST /api/jobs takes them), each with an optional idempotency_key",
                "items": _ref("BatchItem"),
            }
        },
    },
    "BatchResult": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "description": "One result per request item, in order",
                "items": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "integer", "description": "202 (the job), or the problem's status"},
                        "location": {"type": "string", "format": "uri"},
                        "job": _ref("Job"),
                        "problem": _ref("Problem"),
                    },
                },
            }
        },
    },
    "JobPage": _page_of("Job", next_link=True),
    "Upload": {
        "type": "object",
        "properties": {
            "input_ref": {"type": "string"},
            "upload_url": {"type": "string", "format": "uri", "description": "Write-only SAS URL: PUT the data"},
            "expires_at": {"type": "string", "format": "date-time"},
            "method": {"const": "PUT"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "DeadLetter": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "source": {"enum": ["job", "poison", "webhook"]},
            "job_id": {"type": ["string", "null"]},
            "kind": {"type": ["string", "null"]},
            "input_ref": {"type": ["string", "null"]},
            "input_content_type": {"type": ["string", "null"]},
            "options": {
                "type": ["object", "null"],
                "description": "The failed job's options, as a replay submits them",
            },
            "error_type": {"type": "string"},
            "reason": {"type": "string"},
            "attempts": {"type": "integer"},
            "raw_message": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "webhook": {
                "description": "source webhook: the undelivered event (its URL without userinfo and query)",
                "type": "object",
                "properties": {
                    "webhook_id": {"type": "string"},
                    "job_id": {"type": "string"},
                    "kind": {"type": "string"},
                    "type": {"type": "string"},
                    "url": {"type": "string"},
                    "payload": _ref("WebhookEvent"),
                    "traceparent": {
                        "type": ["string", "null"],
                        "description": "The job's W3C trace context: each delivery attempt is a span in it",
                    },
                },
            },
            "links": {
                "type": "object",
                "properties": {
                    "self": {"type": "string", "format": "uri"},
                    "replay": {"type": "string", "format": "uri"},
                },
            },
        },
    },
    "Callback": {
        "type": "object",
        "description": (
            "Where the job's events are POSTed, signed per Standard Webhooks. https only; the host must resolve to "
            "public addresses (loopback, private, link-local, multicast, reserved and metadata addresses are a 422)."
        ),
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {"enum": list(CALLBACK_EVENTS)},
                "default": list(TERMINAL_EVENTS),
            },
        },
    },
    "WebhookEvent": {
        "type": "object",
        "description": "The body of a webhook delivery (the same bytes on every attempt of one event)",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"enum": [f"job.{event}" for event in CALLBACK_EVENTS]},
            "timestamp": {"type": "string", "format": "date-time", "description": "When the event happened"},
            "data": _ref("JobEventData"),
        },
    },
    "WebhookReplay": {
        "type": "object",
        "properties": {
            "dead_letter": _ref("DeadLetter"),
            "webhook_id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": {"const": "redelivering"},
        },
    },
    "DeadLetterPage": _page_of("DeadLetter"),
    "Health": {
        "type": "object",
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "storage": {"type": "string"},
            "queues": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}},
            "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "jobs_counted_up_to": {
                "type": ["integer", "null"],
                "description": "Set when there were more jobs: `jobs` counts this many of the newest (null: all)",
            },
            "details_error": {
                "type": "string",
                "description": "Storage answered but the counts did not come in time: the error's type, and no counts",
            },
            "webhook_breakers": {
                "type": "object",
                "description": "Circuit breakers by callback host:port that are open, half-open or counting failures",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "state": {"enum": ["closed", "open", "half_open"]},
                        "failures": {"type": "integer"},
                        "open_until": {"type": "string", "format": "date-time"},
                        "probe_until": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "TaskCreate": {
        "type": "object",
        "description": "The reference design's task body (FastAPI + Celery): a vector-normalize job",
        "required": ["vector_data"],
        "additionalProperties": False,
        "properties": {
            "vector_data": {
                "description": "One vector (the reference's list of floats) or a list of vectors of equal length",
                "oneOf": [
                    {"type": "array", "minItems": 1, "items": {"type": "number"}},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                    },
                ],
            },
            "metadata": {"type": "object", "description": "Returned as result.metadata_processed"},
            "duration": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "Accepted and ignored (the reference slept)",
            },
            "task_type": {"const": "vector_processing"},
        },
    },
    "TaskAccepted": {
        "type": "object",
        "required": ["task_id", "status"],
        "properties": {"task_id": {"type": "string"}, "status": {"const": "Processing"}},
    },
    "TaskStatus": {
        "type": "object",
        "required": ["task_id", "status", "result"],
        "properties": {
            "task_id": {"type": "string"},
            "status": {"enum": ["PENDING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"]},
            "result": {
                "description": "PROGRESS: {current, total, message, job_id}; SUCCESS: the kind's summary (plus "
                "metadata_processed for vector-normalize); FAILURE: '<error type>: <message>'; otherwise null",
                "type": ["object", "string", "null"],
            },
        },
    },
    "JobStats": {
        "type": "object",
        "description": "Jobs created in the window, bucketed by creation time (as recorded in the Jobs table)",
        "properties": {
            "since": {"type": "string", "format": "date-time", "description": "Start of the first bucket"},
            "until": {"type": "string", "format": "date-time"},
            "bucket_minutes": {"type": "integer"},
            "buckets": {"type": "array", "items": _ref("JobStatsBucket")},
            "totals": _ref("JobStatsBucket"),
            "jobs_counted_up_to": {
                "type": ["integer", "null"],
                "description": "Set when more jobs were created in the window than one request reads (10,000)",
            },
        },
    },
    "JobStatsBucket": {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date-time", "description": "Buckets only"},
            "submitted": {"type": "integer"},
            "completed": {"type": "integer"},
            "failed": {"type": "integer"},
            "cancelled": {"type": "integer"},
            "failure_rate": {"type": ["number", "null"], "description": "failed / finished; null: none finished"},
            "duration_seconds": {
                "type": "object",
                "description": "Of the COMPLETED jobs: created_at to finished_at",
                "properties": {"mean": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]}},
            },
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri", "examples": ["urn:longrun:problem:validation-error"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    },
}
# A webhook's `data`: the job resource as a poll shows it, but its links are absolute URLs only where the app
# knows its public address (PUBLIC_BASE_URL): a delivery has no request to take a base URL from.
_SCHEMAS["JobEventData"] = {
    **_SCHEMAS["Job"],
    "description": "The job resource as GET /api/jobs/{job_id} shows it; `links` only when PUBLIC_BASE_URL is set",
    "required": [name for name in _SCHEMAS["Job"]["required"] if name != "links"],
}

_PATHS: dict[str, Any] = {
    "/api/jobs": {
        "post": {
            "operationId": "submitJob",
            "summary": "Submit a job (JSON envelope, or a raw CSV/NDJSON body with kind and options in the query)",
            "parameters": [
                _IDEMPOTENCY_KEY,
                {"name": "kind", "in": "query", "description": "Raw bodies only", "schema": {"type": "string"}},
                {"name": "priority", "in": "query", "description": "Raw bodies only", "schema": {"enum": _PRIORITIES}},
                {
                    "name": "deadline_seconds",
                    "in": "query",
                    "description": "Raw bodies only",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DEADLINE_SECONDS},
                },
                _CLIENT_ID,
                _TRACEPARENT,
                {
                    "name": "callback_url",
                    "in": "query",
                    "description": "Raw bodies only: the callback's url (JSON envelopes use `callback`)",
                    "schema": {"type": "string", "format": "uri"},
                },
                {
                    "name": "callback_events",
                    "in": "query",
                    "description": "Raw bodies only: comma-separated callback events (default: the terminal ones)",
                    "schema": {"type": "string", "examples": ["completed,failed"]},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {JSON_CONTENT_TYPE: {"schema": _ref("JobRequest")}},  # raw types: from the kinds
            },
            "responses": {
                "202": _json("Accepted: poll the Location", "Job", _POLL_HEADERS),
                "400": _problem("Malformed body or header"),
                "409": _problem("Idempotency key reused for a different request"),
                "411": _problem("Raw body without Content-Length (chunked): send the length, or upload"),
                "413": _problem("Body too large (1 MB JSON, 100 MB raw), or an upload over 5 GiB"),
                "415": _unsupported("Unsupported Content-Type"),
                "422": _problem(
                    "Validation failed (an input_ref must name a block blob; a callback the app may not call)"
                ),
                "429": _TOO_MANY,
                "503": _with_retry_after(
                    _problem("The job could not be recorded or started, or storage is unreachable: retry")
                ),
            },
        },
        "get": {
            "operationId": "listJobs",
            "summary": "Jobs, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": _STATUSES}},
                {"name": "kind", "in": "query", "schema": {"type": "string"}},
                _LIMIT,
                _CONTINUATION,
            ],
            "responses": {"200": _json("A page of jobs", "JobPage"), "422": _problem("Invalid filter")},
        },
    },
    "/api/jobs/batch": {
        "post": {
            "operationId": "submitJobs",
            "summary": "Submit up to 1,000 jobs; one result per item, in order (items are independent)",
            "parameters": [_CLIENT_ID],
            "requestBody": {"required": True, "content": {JSON_CONTENT_TYPE: {"schema": _ref("BatchRequest")}}},
            "responses": {
                "200": _json("Each item's job (as POST /api/jobs answers it) or problem", "BatchResult"),
                "400": _problem("Malformed JSON"),
                "413": _problem("Body over 32 MB"),
                "415": _unsupported("Not application/json"),
                "422": _problem("Not {items: [1..1000 requests]}"),
            },
        }
    },
    "/api/jobs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {
            "operationId": "getJob",
            "parameters": [_WAIT, _IF_NONE_MATCH],
            "responses": {
                "200": _json("Finished (COMPLETED, FAILED or CANCELLED)", "Job", _ETAG),
                "202": _json("Still PENDING or RUNNING", "Job", {**_POLL_HEADERS, **_ETAG}),
                "400": _problem("wait is not an integer from 0 to 60"),
                "404": _problem("Unknown job"),
            },
        },
        "delete": {
            "operationId": "cancelJob",
            "responses": {
                "200": _json("Already finished: nothing changed", "Job"),
                "202": _json("Cancellation requested", "Job", _POLL_HEADERS),
                "404": _problem("Unknown job"),
            },
        },
    },
    "/api/jobs/{job_id}/events": {
        "parameters": [_JOB_ID],
        "get": {
            "operationId": "streamJobEvents",
            "summary": "The job's status and progress as Server-Sent Events, until it finishes",
            "parameters": [_LAST_EVENT_ID],
            "responses": {
                "200": _event_stream(
                    _EVENTS_DESCRIPTION,
                    {"oneOf": [_ref("JobStateEvent"), _ref("Job")]},
                    ["status", "progress", "completed", "failed", "cancelled"],
                    with_id=True,
                ),
                "204": {"description": "The client saw the job's terminal event already: nothing more to send"},
                "400": _problem("Last-Event-ID is not an event id"),
                "404": _problem("Unknown job"),
            },
        },
    },
    "/api/jobs/{job_id}/result": {
        "parameters": [_JOB_ID, {"name": "format", "in": "query", "schema": {"type": "string"}}],
        "get": {
            "operationId": "getJobResult",
            "responses": {
                "200": {"description": "The full result document, in its content type"},
                "404": _problem("Unknown job"),
                "409": _with_retry_after(
                    _problem("Not COMPLETED: Retry-After says when to look again while it is PENDING or RUNNING")
                ),
                "422": _problem("Format not available for the kind"),
            },
        },
    },
    "/api/uploads": {
        "post": {
            "operationId": "createUpload",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": ["object", "null"],  # null or no body: nothing declared
                            "additionalProperties": False,
                            "properties": {"content_type": {"type": ["string", "null"]}},
                        }
                    }
                },
            },
            "responses": {
                "201": _json("Upload created", "Upload"),
                "400": _problem("The body is not JSON"),
                "413": _problem("A body over 4 KiB (the request names a content type, not the data)"),
                "415": _unsupported("A body that is not application/json"),
                "422": _problem("Invalid content_type"),
            },
        }
    },
    "/api/dead-letters": {
        "get": {
            "operationId": "listDeadLetters",
            "parameters": [_LIMIT, _CONTINUATION],
            "responses": {
                "200": _json("A page of dead letters", "DeadLetterPage"),
                "422": _problem("limit out of range, or a continuation token we did not issue"),
            },
        }
    },
    "/api/dead-letters/{record_id}": {
        "parameters": [_RECORD_ID],
        "get": {
            "operationId": "getDeadLetter",
            "responses": {"200": _json("The dead letter", "DeadLetter"), "404": _problem("Unknown")},
        },
    },
    "/api/dead-letters/{record_id}/replay": {
        "parameters": [_RECORD_ID],
        "post": {
            "operationId": "replayDeadLetter",
            "parameters": [_IDEMPOTENCY_KEY],
            "responses": {
                "202": {
                    "description": (
                        "A failed job: the new job (Job, Location + Retry-After). A webhook dead letter: its event is "
                        "delivered again with the same body and webhook-id (WebhookReplay, Location = the event's job)"
                    ),
                    "headers": _POLL_HEADERS,
                    "content": {"application/json": {"schema": {"oneOf": [_ref("Job"), _ref("WebhookReplay")]}}},
                },
                "400": _problem("Malformed Idempotency-Key"),
                "404": _problem("Unknown"),
                "409": _problem("Not replayable (poison message, or input gone)"),
                "429": _TOO_MANY,
            },
        },
    },
    "/api/tasks": {
        "post": {
            "operationId": "submitTask",
            "summary": "The reference design's submit: a vector-normalize job, answered in the reference's shape",
            "parameters": [_IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": {JSON_CONTENT_TYPE: {"schema": _ref("TaskCreate")}}},
            "responses": {
                "202": _json("Accepted: poll the Location (GET /api/tasks/{task_id})", "TaskAccepted", _POLL_HEADERS),
                "400": _problem("Malformed body or header"),
                "409": _problem("Idempotency key reused for a different request"),
                "413": _problem("Body over 1 MB"),
                "415": _unsupported("Not application/json"),
                "422": _problem("Validation failed (fields named as in the body: vector_data, metadata, ...)"),
                "429": _TOO_MANY,
            },
        }
    },
    "/api/tasks/{task_id}": {
        "parameters": [{**_JOB_ID, "name": "task_id"}],
        "get": {
            "operationId": "getTask",
            "summary": "The reference design's status: Celery state names; the job is also /api/jobs/{task_id}",
            "responses": {
                "200": {
                    "description": "The task (200 in every state, as the reference answers)",
                    "headers": {
                        "Retry-After": {
                            "description": "Seconds before polling again, by the task's age (1, 2, 5, 15, 30 s)",
                            "schema": {"type": "integer"},
                        }
                    },
                    "content": {"application/json": {"schema": _ref("TaskStatus")}},
                },
                "404": _problem("Unknown task"),
            },
        },
    },
    "/api/tasks/{task_id}/stream": {
        "parameters": [{**_JOB_ID, "name": "task_id"}],
        "get": {
            "operationId": "streamTask",
            "summary": "The reference design's stream: the task's status document as Server-Sent Events",
            "description": "`data: <TaskStatus>` whenever it changes (read every second), `: ping` after 15 s "
            "without one; ends after the ready state (SUCCESS, FAILURE, REVOKED) or after 90 s.",
            "responses": {
                "200": _event_stream("text/event-stream", _ref("TaskStatus"), None, with_id=False),
                "404": _problem("Unknown task"),
            },
        },
    },
    "/api/health": {
        "get": {
            "operationId": "health",
            "security": [],
            "responses": {
                "200": _json("Storage reachable", "Health"),
                "503": _json("Storage unreachable", "Health", {"Retry-After": {"schema": {"type": "integer"}}}),
            },
        }
    },
    "/api/openapi.json": {"get": {"operationId": "openapi", "responses": {"200": {"description": "This document"}}}},
    "/api/stats": {
        "get": {
            "operationId": "jobStats",
            "summary": "Jobs per bucket over the last hours: submitted, outcomes, durations, failure rate",
            "parameters": [
                {
                    "name": "hours",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 48, "default": 3},
                },
                {
                    "name": "bucket_minutes",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 60, "default": 5},
                },
            ],
            "responses": {"200": _json("The statistics", "JobStats"), "422": _problem("Invalid window")},
        }
    },
    "/api/ui": _html_page(
        "dashboard", "The web dashboard (HTML; its files under /api/ui/). Anonymous: it asks for the key"
    ),
    "/api/docs": _html_page("apiDocs", "Swagger UI over this document (HTML). Anonymous: it asks for the key"),
}


_SIGNATURE_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "msg_<job id>_<event>[_<completed>]: the same on every attempt and replay of the event"},
    {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Unix seconds of this attempt (verifiers refuse it 5 minutes off)"},
    {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "v1,<base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` with the WEBHOOK_SECRET>"},
]  # fmt: skip

_WEBHOOKS: dict[str, Any] = {
    "jobEvent": {
        "post": {
            "operationId": "jobEvent",
            "summary": "A job's event POSTed to its callback (Standard Webhooks)",
            "description": (
                "Retried on 5xx, 429 (honouring Retry-After), timeouts and connection errors with the project's "
                "backoff; never on other 4xx or redirects; then a dead letter (replayable). A circuit breaker per "
                "host:port stops calls while a receiver keeps failing. Events of one job may arrive out of order."
            ),
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("WebhookEvent")}}},
            "responses": {
                "2XX": {"description": "Delivered"},
                "4XX": {"description": "Refused: not retried (429: retried)"},
                "5XX": {"description": "Retried"},
            },
        }
    }
}

_NO_STORAGE = ("/api/health", "/api/openapi.json", "/api/ui", "/api/docs")
"""Routes that answer without storage (health says 503 its own way)."""

_OUTAGE = _with_retry_after(_problem("Storage unreachable: retry after Retry-After seconds (answered within ~2 s)"))


def _kind_request(spec: kinds.KindSpec) -> dict[str, Any]:
    """A JSON submission of one kind: the kind's own members plus the API's (input_ref, deadline_seconds)."""
    fragment = spec.openapi_fragment()["request"]
    properties = dict(fragment["properties"])
    if spec.requires_input:
        properties["input_ref"] = {
            "type": "string",
            "pattern": "^uploads/[0-9a-f]{32}$",
            "description": "An upload's input_ref (POST /api/uploads): a block blob of at most 5 GiB",
        }
    properties["deadline_seconds"] = {"type": "integer", "minimum": 1, "maximum": MAX_DEADLINE_SECONDS}
    properties["priority"] = {"enum": _PRIORITIES, "default": "normal", "description": "The admission lane"}
    properties["callback"] = _ref("Callback")
    request = {**fragment, "additionalProperties": False, "properties": properties}
    if spec.requires_input and spec.accepts_inline_input:
        request["oneOf"] = [{"required": ["input"]}, {"required": ["input_ref"]}]  # exactly one of them
    elif spec.requires_input:
        request["required"] = [*fragment["required"], "input_ref"]
    return request


def _component_name(kind_name: str) -> str:
    return f"JobRequest.{kind_name}"


def _batch_item_name(kind_name: str) -> str:
    return f"BatchItem.{kind_name}"


_BATCH_ITEM_KEY: dict[str, Any] = {
    **_IDEMPOTENCY_KEY["schema"],  # checked as the header is (jobs.requests.check_idempotency_key)
    "description": "The item's Idempotency-Key: a retried batch creates its job only once",
}


def _one_of_kinds(description: str, specs: list[kinds.KindSpec], name: Callable[[str], str]) -> dict[str, Any]:
    """One schema per kind, told apart by `kind`."""
    return {
        "description": description,
        "oneOf": [_ref(name(spec.name)) for spec in specs],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {spec.name: f"#/components/schemas/{name(spec.name)}" for spec in specs},
        },
    }


def _kinds_part(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kinds' schemas and the values the paths need (names, raw content types, formats by kind)."""
    specs = kinds.all_kinds(simulate_enabled=settings.enable_simulate_kind)
    schemas: dict[str, Any] = {}
    for spec in specs:
        fragment = spec.openapi_fragment()
        for name, schema in fragment["components"].items():
            if schemas.setdefault(name, schema) != schema:
                raise RuntimeError(f"two kinds declare different schemas named {name!r}")
        request = _kind_request(spec)
        schemas[_component_name(spec.name)] = request
        # A batch item is the same request plus its own key: a member of its own schema, since the request's
        # additionalProperties: false would refuse a key added beside it (allOf cannot extend a closed object).
        schemas[_batch_item_name(spec.name)] = {
            **request,
            "properties": {**request["properties"], "idempotency_key": _BATCH_ITEM_KEY},
        }
    schemas["JobRequest"] = _one_of_kinds("A JSON submission: its members depend on the kind", specs, _component_name)
    schemas["BatchItem"] = _one_of_kinds("A JobRequest with an optional idempotency_key", specs, _batch_item_name)
    raw_kinds = [spec for spec in specs if any(t != JSON_CONTENT_TYPE for t in spec.input_content_types)]
    values = {
        "names": [spec.name for spec in specs],
        "raw_kinds": [spec.name for spec in raw_kinds],
        "raw_types": [t for t in kinds.all_input_content_types(simulate_enabled=settings.enable_simulate_kind)
                      if t != JSON_CONTENT_TYPE],
        "upload_types": kinds.all_input_content_types(simulate_enabled=settings.enable_simulate_kind),
        "formats": kinds.all_render_formats(simulate_enabled=settings.enable_simulate_kind),
        "formats_by_kind": {spec.name: list(spec.render_formats) for spec in specs},
        "result_types": sorted({media.split(";")[0] for spec in specs for media in spec.render_formats.values()}),
        "raw_options": _raw_options(raw_kinds),
    }  # fmt: skip
    return schemas, values


_SCALAR_KEYWORDS = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "default")


def _raw_options(raw_kinds: list[kinds.KindSpec]) -> list[dict[str, Any]]:
    """The query parameters a raw body's options travel in: one per option name of the kinds that read raw
    bodies (a list option is comma-separated, so its parameter is a string)."""
    options: dict[str, dict[str, Any]] = {}
    for spec in raw_kinds:
        for name, schema in spec.openapi_fragment()["options"].get("properties", {}).items():
            option = options.setdefault(name, {"kinds": [], "schema": schema})
            option["kinds"].append(spec.name)
    parameters = []
    for name, option in options.items():
        schema = option["schema"]
        scalar = schema.get("type") in ("string", "integer", "number", "boolean") and len(option["kinds"]) == 1
        parameters.append(
            {
                "name": name,
                "in": "query",
                "description": f"Raw bodies only: option of {', '.join(option['kinds'])}. "
                + (schema.get("description", "") if scalar else "A list is comma-separated."),
                "schema": {k: v for k, v in schema.items() if k in _SCALAR_KEYWORDS} if scalar else {"type": "string"},
            }
        )
    return parameters


def _with_kinds(paths: dict[str, Any], values: dict[str, Any]) -> None:
    """Fill the kind-dependent parts of the paths (in a copy of _PATHS) from the registry."""
    submit = paths["/api/jobs"]["post"]
    submit["parameters"][1]["schema"] = {"enum": values["raw_kinds"]}
    submit["parameters"].extend(values["raw_options"])
    content = submit["requestBody"]["content"]
    for media_type in values["raw_types"]:
        content[media_type] = {
            "schema": {"type": "string"},
            "description": "A raw body (Content-Length required); kind, deadline_seconds and options in the query",
        }
    paths["/api/jobs"]["get"]["parameters"][1]["schema"] = {"enum": values["names"]}
    result = paths["/api/jobs/{job_id}/result"]
    result["parameters"][1]["schema"] = {"enum": values["formats"]}
    result["parameters"][1]["description"] = "Formats the job's kind renders: " + "; ".join(
        f"{name}: {', '.join(formats)}" for name, formats in values["formats_by_kind"].items()
    )
    result["parameters"][1]["x-formats-by-kind"] = values["formats_by_kind"]
    # JSON by default (the kind's own document: any JSON); ?format= picks one of the kind's renderings.
    result["get"]["responses"]["200"]["content"] = {
        media_type: {"schema": {} if media_type == JSON_CONTENT_TYPE else {"type": "string"}}
        for media_type in values["result_types"]
    }
    upload_body = paths["/api/uploads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    upload_body["properties"]["content_type"] = {"enum": [*values["upload_types"], None]}  # null: not declared


def _paths(values: dict[str, Any]) -> dict[str, Any]:
    """The paths, each operation with the 503 every route answers while storage is unreachable."""
    paths: dict[str, Any] = {}
    for path, item in copy.deepcopy(_PATHS).items():
        paths[path] = {}
        for method, operation in item.items():
            if method != "parameters" and path not in _NO_STORAGE:
                operation = {**operation, "responses": {"503": _OUTAGE, **operation["responses"]}}
            paths[path][method] = operation
    _with_kinds(paths, values)
    return paths


def openapi_document(server_url: str, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with links under `server_url`, for the kinds these settings enable."""
    kind_schemas, values = _kinds_part(settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "longrun job API",
            "version": "1.0.0",
            "description": "Long-running jobs behind 202 Accepted + Location. Errors are RFC 9457 problems.",
        },
        "servers": [{"url": server_url}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "paths": _paths(values),
        "webhooks": _WEBHOOKS,
        "components": {
            "schemas": {**_SCHEMAS, **kind_schemas},
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                # The host reads ?code= too, and passes it on; the API ignores it.
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }


@lru_cache(maxsize=16)
def _document_text(server_url: str, settings: Settings) -> str:
    # Building it (the kinds' JSON schemas from pydantic, deep copies) takes about 6 ms of CPU; it changes
    # only with the base URL and the settings. Bounded: a client choosing its Host cannot grow it.
    return json.dumps(openapi_document(server_url, settings))


@blueprint.route(route="openapi.json", methods=ROUTE_METHODS)
async def openapi(req: Request) -> Response:
    """GET: this API's OpenAPI 3.1 document."""

    async def document() -> Response:
        settings = get_settings()
        text = _document_text(base_url(req, settings), settings)
        return Response(text, status_code=200, media_type=JSON_MEDIA_TYPE)

    return await dispatch(req, {"GET": document})
