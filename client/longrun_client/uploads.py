"""Big inputs go straight to Blob storage: POST /api/uploads hands out a write-only URL, the file goes
up in blocks in parallel (azure-storage-blob), and the job names the upload by its input_ref."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from azure.storage.blob import BlobClient, ContentSettings

from longrun_client.models import UploadTicket

UploadProgress = Callable[[int, int], None]
"""Called with (bytes sent, file size) as blocks finish."""

DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024
"""Each block is a billed Put Block: 100 MB goes up in 7 requests instead of 25 with the SDK's 4 MiB, and
Azurite serves it with 40 % less CPU (0.46-0.56 s against 0.80 s, 4 blocks in flight; docs/benchmarks.md).
Blocks over 4 MiB also take Azure's high-throughput block blob path. Memory: `concurrency` blocks at once."""
DEFAULT_CONCURRENCY = 4


def upload_file(
    ticket: UploadTicket,
    path: Path,
    content_type: str,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: UploadProgress | None = None,
) -> int:
    """PUT the file to the ticket's URL as a block blob (blocks in parallel); returns the bytes sent."""
    size = os.path.getsize(path)

    def hook(current: int, total: int | None) -> None:
        if progress is not None:
            progress(current, total or size)

    # A single PUT only for files that fit one block; above it, staged blocks in parallel and one commit.
    blob = BlobClient.from_blob_url(ticket.upload_url, max_single_put_size=block_bytes, max_block_size=block_bytes)
    with blob, open(path, "rb") as data:
        blob.upload_blob(
            data,
            length=size,
            overwrite=True,
            max_concurrency=concurrency,
            content_settings=ContentSettings(content_type=ticket.headers.get("Content-Type", content_type)),
            progress_hook=hook,
        )
    return size
