"""Uploads (valet key): a short-lived, write-only SAS URL for one server-named blob.

For inputs too big to post, a client asks for an upload, PUTs the data straight to Blob storage and
then submits a job with the upload's `input_ref`. Against Azurite (a connection string with a key)
the SAS is signed with the account key; in Azure, where shared keys are off, with a user delegation key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

import kinds
from shared.clock import iso, utc_now
from shared.settings import Settings
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER, upload_blob_name

_CLOCK_SKEW = timedelta(minutes=5)


def upload_content_types(settings: Settings) -> list[str]:
    """The content types an upload may declare: every type some kind reads."""
    return kinds.all_input_content_types(simulate_enabled=settings.enable_simulate_kind)


@dataclass(frozen=True)
class Upload:
    """Where and until when a client may write its input."""

    input_ref: str
    upload_url: str
    expires_at: str
    content_type: str | None


async def _sas(blobs: BlobServiceClient, blob_name: str, expires: datetime) -> str:
    start = utc_now() - _CLOCK_SKEW
    permission = BlobSasPermissions(create=True, write=True)
    account_key = getattr(blobs.credential, "account_key", None)
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


async def create_upload(clients: StorageClients, settings: Settings, content_type: str | None) -> Upload:
    """Record a new upload and sign its write-only URL."""
    upload_id = uuid.uuid4().hex
    now = utc_now()
    expires = now + timedelta(minutes=settings.upload_url_ttl_minutes)
    blob_name = upload_blob_name(upload_id)
    sas = await _sas(clients.blobs, blob_name, expires)
    await job_store.insert_upload(
        clients.jobs,
        {"upload_id": upload_id, "content_type": content_type, "created_at": iso(now), "expires_at": iso(expires)},
    )
    url = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, blob_name).url
    log_event("upload.created", upload_id=upload_id)
    return Upload(blob_name, f"{url}?{sas}", iso(expires), content_type)
