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

A keyed body streams too, although its job row, which decides who may store the input, needs the
request's fingerprint and so all of the body: until then every request with that key stages under the same
name. Each request's block ids begin with an id of its own (`block_id`), so no request replaces another's
blocks, and the one whose row wins commits exactly its own (jobs.submit._store). A commit discards every
other uncommitted block of the blob ("Put Block List": blocks not in the list are deleted); a duplicate that
commits later finds the blob there and compares the body's SHA-256, kept in the blob's metadata. A body read
whole held up to MAX_RAW_BODY_BYTES in the worker per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from azure.storage.blob.aio import BlobClient

BLOCK_BYTES = 4 * 1024 * 1024
"""The size of every block of a stored input but its last (bodies up to this size are put in one request)."""
BLOCKS_IN_FLIGHT = 4
"""Blocks being staged at once: what a streamed body holds in memory, about 16 MiB, and enough to keep the
storage service busy while the next block arrives."""


SHA256_METADATA = "sha256"
"""The stored input's metadata entry with the SHA-256 of its bytes (hex): what a later submitter of the same
keyed request compares instead of reading the blob back."""


def new_staging() -> str:
    """The id that one request's block ids begin with."""
    return uuid.uuid4().hex


def block_id(staging: str, index: int) -> str:
    """The id of block `index` staged by the request `staging` (new_staging): the same length for every
    block, as the service requires of a blob's blocks, and never another request's."""
    return base64.b64encode(f"{staging}-{index:08d}".encode()).decode()


@dataclass(frozen=True)
class StagedInput:
    """A body staged as uncommitted blocks of the job's input blob, in order."""

    block_ids: tuple[str, ...]
    size: int
    sha256: str  # of the whole body, as JobRequest.fingerprint takes it of a body read whole

    @property
    def stored(self) -> bool:
        """Whether the body's blocks were staged (False: it was only read and hashed)."""
        return bool(self.block_ids)


async def stage_body(chunks: AsyncIterator[bytes], blob: BlobClient | None) -> StagedInput:
    """Stage the body's blocks as they fill; once it has ended and every block is staged, what was staged.

    Without a blob the body is only read and hashed: what it was (no block ids), with the same bounded memory.
    A failure (the body cut off, a block refused) cancels the blocks still in flight and is raised.
    """
    request = new_staging()
    hasher = hashlib.sha256()
    gate = asyncio.Semaphore(BLOCKS_IN_FLIGHT)
    staging: list[asyncio.Task[None]] = []
    ids: list[str] = []
    parts: list[bytes] = []  # what arrived since the last block, held bytes in all
    held = 0
    size = 0

    async def stage(block_index: int, data: bytes) -> None:
        try:
            if blob is not None:
                await blob.stage_block(block_id(request, block_index), data)
        finally:
            gate.release()

    async def send(data: bytes) -> None:
        # Waiting for a place holds the reading of the body back: at most BLOCKS_IN_FLIGHT blocks in memory.
        await gate.acquire()
        # Hashing 4 MiB takes milliseconds: off the event loop, and in order, block after block.
        await asyncio.to_thread(hasher.update, data)
        ids.append(block_id(request, len(ids)))
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
    return StagedInput(tuple(ids) if blob is not None else (), size, hasher.hexdigest())
