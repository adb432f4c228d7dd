"""A large raw body goes to its blob while it arrives: staged block by block, committed once the job is recorded.

Read whole first, a 100 MB CSV body sat in the worker's memory and went to storage only after its last byte,
in a second pass (about a third of the peers' CSV test, issue #15). Instead each block is staged as soon as
it has arrived, a few in flight (which also bounds the memory the body takes), and the body's SHA-256 (the
request's fingerprint) is taken along the way.

Staged blocks are not a blob: nothing is visible under the job's name until the submit commits the block
list, after the job row and beside the admission join, where the whole body used to be put
(jobs.submit._store). A request that fails before that (a client gone mid-body, storage away, a full queue)
leaves only uncommitted blocks, which storage discards by itself (Azure after a week; "Put Block",
Blob service REST reference).

Only a body without an idempotency key streams: its job id is random, so no other request writes its blob.
A keyed body is read whole first: its job row decides who may write the blob, and the row needs the
request's fingerprint, hence all of the body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from azure.storage.blob.aio import BlobClient

BLOCK_BYTES = 4 * 1024 * 1024
"""The size of every block of a stored input but its last (bodies up to this size are put in one request)."""
BLOCKS_IN_FLIGHT = 4
"""Blocks being staged at once: what a streamed body holds in memory, about 16 MiB, and enough to keep the
storage service busy while the next block arrives."""


def block_id(index: int) -> str:
    """The id of an input's block `index`: the same length for every block, as the service requires."""
    return base64.b64encode(f"{index:08d}".encode()).decode()


@dataclass(frozen=True)
class StagedInput:
    """A body staged as uncommitted blocks of the job's input blob, in order."""

    block_ids: tuple[str, ...]
    size: int
    sha256: str  # of the whole body, as JobRequest.fingerprint takes it of a body read whole


async def stage_body(chunks: AsyncIterator[bytes], blob: BlobClient) -> StagedInput:
    """Stage the body's blocks as they fill; once it has ended and every block is staged, what was staged.

    A failure (the body cut off, a block refused) cancels the blocks still in flight and is raised.
    """
    hasher = hashlib.sha256()
    gate = asyncio.Semaphore(BLOCKS_IN_FLIGHT)
    staging: list[asyncio.Task[None]] = []
    ids: list[str] = []
    parts: list[bytes] = []  # what arrived since the last block, held bytes in all
    held = 0
    size = 0

    async def stage(block_index: int, data: bytes) -> None:
        try:
            await blob.stage_block(block_id(block_index), data)
        finally:
            gate.release()

    async def send(data: bytes) -> None:
        # Waiting for a place holds the reading of the body back: at most BLOCKS_IN_FLIGHT blocks in memory.
        await gate.acquire()
        # Hashing 4 MiB takes milliseconds: off the event loop, and in order, block after block.
        await asyncio.to_thread(hasher.update, data)
        ids.append(block_id(len(ids)))
        staging.append(asyncio.create_task(stage(len(ids) - 1, data)))
        refused = next((task for task in staging if task.done() and task.exception() is not None), None)
        if refused is not None:
            refused.result()  # a block was refused: raise its error now rather than read on

    try:
        async for part in chunks:
            size += len(part)
            # Each block is copied once, when its parts are joined: a growing buffer sliced into blocks copied
            # every byte three times, each copy into freshly mapped pages (kinds.base.map_large_allocations),
            # all of it on the event loop that also reads the body (docs/benchmarks.md, stop 27).
            while held + len(part) >= BLOCK_BYTES:
                cut = BLOCK_BYTES - held
                parts.append(part[:cut])
                part = part[cut:]
                await send(b"".join(parts))
                parts, held = [], 0
            if part:
                parts.append(part)
                held += len(part)
        if parts or not ids:
            await send(b"".join(parts))
        await asyncio.gather(*staging)
    except BaseException:
        for task in staging:
            task.cancel()
        await asyncio.gather(*staging, return_exceptions=True)
        raise
    return StagedInput(tuple(ids), size, hasher.hexdigest())
