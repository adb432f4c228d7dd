"""Uploads (valet key): POST /api/uploads hands out a short-lived, write-only URL for one blob (jobs.uploads)."""

from __future__ import annotations

from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, json_response, read_json
from api.problems import validation_problem
from jobs.errors import field_error
from jobs.uploads import create_upload, upload_content_types
from shared.settings import Settings, get_settings
from storage.clients import storage_clients


@blueprint.route(route="uploads", methods=ROUTE_METHODS)
async def uploads_collection(req: Request) -> Response:
    """POST: create an upload and hand out its write-only URL."""
    return await dispatch(req, {"POST": lambda: post_upload(req)})


def _content_type(body: object, settings: Settings) -> str | None:
    if body is None:
        return None
    if not isinstance(body, dict) or set(body) - {"content_type"}:
        raise validation_problem(
            "the body may only hold content_type", [field_error("body", "only content_type is allowed")]
        )
    value = body.get("content_type")
    if value is None:
        return None
    accepted_types = upload_content_types(settings)
    if not isinstance(value, str) or value.lower() not in accepted_types:
        accepted = ", ".join(accepted_types)
        raise validation_problem("unsupported content_type", [field_error("content_type", f"one of: {accepted}")])
    return value.lower()


MAX_UPLOAD_REQUEST_BYTES = 4096
"""The body of a request for an upload names one content type: anything longer is no such request (413)."""


async def post_upload(req: Request) -> Response:
    """201 with the upload's input_ref, its URL and the headers to PUT with."""
    settings = get_settings()
    content_type = _content_type(await read_json(req, MAX_UPLOAD_REQUEST_BYTES, optional=True), settings)
    upload = await create_upload(await storage_clients(settings), settings, content_type)
    headers = {"x-ms-blob-type": "BlockBlob"}
    if upload.content_type:
        headers["Content-Type"] = upload.content_type
    body = {
        "input_ref": upload.input_ref,
        "upload_url": upload.upload_url,
        "expires_at": upload.expires_at,
        "method": "PUT",
        "headers": headers,
    }
    return json_response(body, 201)
