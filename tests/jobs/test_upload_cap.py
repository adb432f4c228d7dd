"""The upload size cap is checked at submit, before anything is stored or started (#16 item 5)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from api.problems import problem_from
from jobs import submit
from jobs.errors import TooLarge
from jobs.requests import SubmitBody
from shared.clock import iso, utc_now
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from storage.names import PAYLOADS_CONTAINER, upload_blob_name


def test_an_upload_over_the_cap_is_413_at_submit(azurite, monkeypatch):
    # The real cap is 5 GiB; a smaller one shows the rule without writing gigabytes to Azurite.
    monkeypatch.setattr(submit, "MAX_UPLOAD_BYTES", 1024)
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    upload_id = uuid.uuid4().hex

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            now = iso(utc_now())
            upload: job_store.UploadRecord = {
                "upload_id": upload_id, "content_type": "text/csv", "created_at": now, "expires_at": now,
            }  # fmt: skip
            await job_store.insert_upload(clients.jobs, upload)
            blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, upload_blob_name(upload_id))
            body = SubmitBody(kind="csv-report", input_ref=upload_blob_name(upload_id), options={"group_by": "g"})
            await blob.upload_blob(b"g\n" + b"x\n" * 512, overwrite=True)  # 1026 bytes
            with pytest.raises(TooLarge) as refused:
                await submit.request_from_body(body, settings=settings, clients=clients, idempotency_key=None,
                                               source="http")  # fmt: skip
            problem = problem_from(refused.value)
            assert problem.status == 413 and [e["field"] for e in problem.errors] == ["input_ref"]
            await blob.upload_blob(b"g\n" + b"x\n" * 511, overwrite=True)  # 1024 bytes: at the cap is fine
            request = await submit.request_from_body(
                body, settings=settings, clients=clients, idempotency_key=None, source="http"
            )
            assert request.input_ref == upload_blob_name(upload_id)
        finally:
            await close_storage_clients()

    asyncio.run(scenario())
