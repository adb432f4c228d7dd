"""Uploads (valet key): a short-lived, write-only SAS URL for one server-named blob.

For inputs too big to post, a client asks for an upload, PUTs the data straight to Blob storage and
then submits a job with the upload's `input_ref`. Against Azurite (a connection string with a key)
the SAS is signed with the account key; in Azure, where shared keys are off, with a user delegation key.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import azure.functions as func
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, json_response, read_json
from shared.clock import iso, utc_now
from shared.problems import field_error, validation_problem
from shared.settings import get_settings
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import storage_clients
from storage.names import PAYLOADS_CONTAINER, upload_blob_name

UPLOAD_CONTENT_TYPES = ("text/csv", "application/json", "application/x-ndjson")
_CLOCK_SKEW = timedelta(minutes=5)


@blueprint.route(route="uploads", methods=ROUTE_METHODS)
async def uploads_collection(req: func.HttpRequest) -> func.HttpResponse:
    """POST: create an upload and hand out its write-only URL."""
    return await dispatch(req, {"POST": lambda: create_upload(req)})


def _content_type(body: object) -> str | None:
    if body is None:
        return None
    if not isinstance(body, dict) or set(body) - {"content_type"}:
        raise validation_problem(
            "the body may only hold content_type", [field_error("body", "only content_type is allowed")]
        )
    value = body.get("content_type")
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in UPLOAD_CONTENT_TYPES:
        accepted = ", ".join(UPLOAD_CONTENT_TYPES)
        raise validation_problem("unsupported content_type", [field_error("content_type", f"one of: {accepted}")])
    return value.lower()


async def _sas(blobs: BlobServiceClient, blob_name: str, expires: datetime) -> str:
    start = utc_now() - _CLOCK_SKEW
    permission = BlobSasPermissions(create=True, write=True)
    credential = blobs.credential
    account_key = getattr(credential, "account_key", None)
    if account_key:
        return generate_blob_sas(
            str(blobs.account_name), PAYLOADS_CONTAINER, blob_name,
            account_key=account_key, permission=permission, expiry=expires, start=start,
        )  # fmt: skip
    delegation_key = await blobs.get_user_delegation_key(start, expires)
    return generate_blob_sas(
        str(blobs.account_name), PAYLOADS_CONTAINER, blob_name,
        user_delegation_key=delegation_key, permission=permission, expiry=expires, start=start,
    )  # fmt: skip


async def create_upload(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    content_type = _content_type(read_json(req, 4096, optional=True))
    clients = await storage_clients(settings)
    upload_id = uuid.uuid4().hex
    now = utc_now()
    expires = now + timedelta(minutes=settings.upload_url_ttl_minutes)
    blob_name = upload_blob_name(upload_id)
    sas = await _sas(clients.blobs, blob_name, expires)
    await job_store.insert_upload(
        clients.jobs,
        {"upload_id": upload_id, "content_type": content_type, "created_at": iso(now),
         "expires_at": iso(expires)},
    )  # fmt: skip
    url = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, blob_name).url
    log_event("upload.created", upload_id=upload_id)
    headers = {"x-ms-blob-type": "BlockBlob"}
    if content_type:
        headers["Content-Type"] = content_type
    body = {
        "input_ref": blob_name,
        "upload_url": f"{url}?{sas}",
        "expires_at": iso(expires),
        "method": "PUT",
        "headers": headers,
    }
    return json_response(body, 201)
