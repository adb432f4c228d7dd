"""jobs.streamed_input.stage_body against Azurite: however the body arrives, its blocks are BLOCK_BYTES each
but the last, and the committed blob is the body byte for byte with the SHA-256 the submit fingerprints."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobServiceClient

from devhost.testing.azurite import Azurite
from jobs.streamed_input import BLOCK_BYTES, stage_body

KIB = 1024


async def arriving(body: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """The body in parts of `sizes` (repeated), as a web server hands it over."""
    offset, turn = 0, 0
    while offset < len(body):
        size = sizes[turn % len(sizes)]
        yield body[offset : offset + size]
        offset, turn = offset + size, turn + 1


async def stage_and_commit(conn: str, body: bytes, sizes: list[int]) -> tuple[list[int], bytes, str, int]:
    """Stage `body` arriving in `sizes`, commit it; the staged block sizes, the blob, the digest, the size."""
    async with BlobServiceClient.from_connection_string(conn) as service:
        container = service.get_container_client(f"staged{uuid.uuid4().hex[:12]}")
        await container.create_container()
        try:
            blob = container.get_blob_client("input")
            staged = await stage_body(arriving(body, sizes), blob)
            blocks = (await blob.get_block_list("uncommitted"))[1]
            by_id = {block.id: block.size for block in blocks}
            await blob.commit_block_list([BlobBlock(block_id=i) for i in staged.block_ids])
            stored = await (await blob.download_blob()).readall()
            return [by_id[i] for i in staged.block_ids], stored, staged.sha256, staged.size
        finally:
            await container.delete_container()


@pytest.mark.parametrize(
    ("length", "sizes"),
    [
        (2 * BLOCK_BYTES + 1, [64 * KIB]),  # a byte into a third block
        (3 * BLOCK_BYTES, [64 * KIB, 1, 3 * KIB]),  # blocks end exactly where the body does
        (BLOCK_BYTES + 5, [5 * BLOCK_BYTES]),  # one part longer than a block
        (BLOCK_BYTES - 1, [7 * KIB]),  # shorter than a block: one block
        (2 * BLOCK_BYTES + 10, [BLOCK_BYTES - 3, 7]),  # parts straddling every block boundary
    ],
)
def test_blocks_are_full_but_the_last_and_the_blob_is_the_body(azurite: Azurite, length: int, sizes: list[int]) -> None:
    body = os.urandom(length)
    block_sizes, stored, digest, size = asyncio.run(stage_and_commit(azurite.connection_string, body, sizes))
    assert block_sizes[:-1] == [BLOCK_BYTES] * (len(block_sizes) - 1)
    assert 0 < block_sizes[-1] <= BLOCK_BYTES
    assert sum(block_sizes) == size == length
    assert stored == body
    assert digest == hashlib.sha256(body).hexdigest()
