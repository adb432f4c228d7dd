"""The job-kind contract: a byte source to read from, the errors a kind raises, and the `JobKind` protocol.

Kinds work over a `ByteSource` and know nothing of Azure or Durable. The activities wrap them with blob I/O.
"""

from __future__ import annotations

import codecs
import ctypes
import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

# The failure protocol lives in shared.failures; kinds keep importing it from here.
from shared.failures import NonRetryableError as NonRetryableError
from shared.failures import parse_non_retryable as parse_non_retryable

STREAM_BLOCK_BYTES = 4 * 1024 * 1024
"""Size of the blocks `stream` yields: large enough for C-speed scans, small enough for flat memory."""


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3
LARGE_ALLOCATION_BYTES = 1024 * 1024
"""Allocations of at least this size are mapped (and unmapped when freed) by the C heap, see below."""

HEAP_TOP_KEPT_BYTES = 2 * LARGE_ALLOCATION_BYTES
"""Free memory at the top of a heap that glibc keeps for the next allocations instead of returning it."""


def map_large_allocations() -> bool:
    """Make the C heap map every allocation of LARGE_ALLOCATION_BYTES or more, returning it to the OS when freed.

    glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after which the
    MB-sized blocks a chunk streams (blob pieces, the bytes Arrow reads) come from per-thread arenas that
    keep them. With four chunks on four threads of one process that is the difference between +173 MB and
    +83 MB at the peak, +86 MB and +15 MB after (measured with 8 MiB pieces). Mapping a block costs a
    system call and its page faults, nothing next to parsing it. Process-wide and idempotent; False where
    the C library is not glibc.

    Setting the mmap threshold also stops glibc's dynamic trim threshold (mallopt(3)), which then stays at
    128 KiB: every numpy temporary of an Arrow block (a few hundred KB, a dozen per metric) was handed back
    at once and faulted in again, about 20,000 page faults per 16 MB chunk. The trim threshold is set to
    twice the mmap threshold, as the dynamic rule would; `malloc_trim` after each chunk still returns it.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, HEAP_TOP_KEPT_BYTES)
    )


@runtime_checkable
class ByteSource(Protocol):
    """Random and streamed access to an input (a blob, a file or bytes), never loaded whole."""

    @property
    def size(self) -> int:
        """Length of the input in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end of the source)."""
        ...

    def stream(self, offset: int, length: int) -> Iterator[bytes]:
        """The bytes of [offset, offset + length) in blocks of a few MB."""
        ...


class BytesSource:
    """A `ByteSource` over bytes in memory, for tests and inline inputs."""

    def __init__(self, data: bytes, block_bytes: int = STREAM_BLOCK_BYTES) -> None:
        self._data = bytes(data)
        self._block_bytes = max(1, block_bytes)

    @property
    def size(self) -> int:
        """Length of the input in bytes."""
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end)."""
        _check_range(offset, length)
        return self._data[offset : offset + length]

    def stream(self, offset: int, length: int) -> Iterator[bytes]:
        """The bytes of [offset, offset + length) in blocks of at most `block_bytes`."""
        _check_range(offset, length)
        end = min(offset + length, len(self._data))
        view = memoryview(self._data)
        for start in range(offset, end, self._block_bytes):
            yield bytes(view[start : min(start + self._block_bytes, end)])


class FileSource:
    """A `ByteSource` over a local file, for benchmarks and tests."""

    def __init__(self, path: str | os.PathLike[str], block_bytes: int = STREAM_BLOCK_BYTES) -> None:
        self._path = os.fspath(path)
        self._size = os.path.getsize(self._path)
        self._block_bytes = max(1, block_bytes)

    @property
    def size(self) -> int:
        """Length of the input in bytes."""
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end)."""
        _check_range(offset, length)
        with open(self._path, "rb") as file:
            file.seek(offset)
            return file.read(length)

    def stream(self, offset: int, length: int) -> Iterator[bytes]:
        """The bytes of [offset, offset + length) in blocks of at most `block_bytes`."""
        _check_range(offset, length)
        remaining = max(0, min(length, self._size - offset))
        with open(self._path, "rb") as file:
            file.seek(offset)
            while remaining > 0:
                block = file.read(min(self._block_bytes, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield block


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid byte range: offset={offset} length={length}")


class BlockReader(io.RawIOBase):
    """A read-only file object over an iterator of byte blocks, for readers that want a file (io, Arrow)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        super().__init__()
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        """Always true: this is a reader."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` from the pending block, taking the next block when it is used up; 0 at the end."""
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class ArrowBlockFile:
    """A file object for Arrow's readers over an iterator of byte blocks: `read(n)` answers n bytes, fewer only
    at the end, as a view of a block wherever the n bytes lie in one.

    Arrow takes each read as a block to parse, so reads must be full, and it keeps what `read` returns as
    its buffer without copying it (pyarrow's PyBuffer): only a read across two blocks is copied, where
    `io.BufferedReader` copied every byte once more.
    """

    closed = False

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        """Always true: this is a reader."""
        return True

    def read(self, size: int = -1) -> bytes | memoryview:
        """The next `size` bytes (all that is left if negative)."""
        wanted = sys.maxsize if size < 0 else size
        parts: list[memoryview] = []
        while wanted > 0:
            if not self._pending:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._pending = memoryview(block)
            part = self._pending[:wanted]
            self._pending = self._pending[len(part) :]
            parts.append(part)
            wanted -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)


class SourceReader(BlockReader):
    """A read-only file object over `source.stream(offset, length)`, so `io.TextIOWrapper` can decode it."""

    def __init__(self, source: ByteSource, offset: int, length: int) -> None:
        super().__init__(source.stream(offset, length))


class Utf8Check:
    """Incremental strict UTF-8 validation of a byte stream, at C speed for ASCII blocks."""

    def __init__(self, offset: int = 0) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.offset = offset

    def feed(self, block: bytes) -> None:
        """Check the next block; NonRetryableError names the offending byte's offset in the input."""
        try:
            if not block.isascii() or self._decoder.getstate()[0]:
                self._decoder.decode(block)
        except UnicodeDecodeError as error:
            raise NonRetryableError(
                "invalid_input", f"the input is not valid UTF-8 (at byte {self.offset + error.start})"
            ) from None
        self.offset += len(block)

    def finish(self) -> None:
        """Fail if the stream ends inside a multi-byte character."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise NonRetryableError("invalid_input", "the input is not valid UTF-8 (truncated at the end)") from None


class ChunkStopped(Exception):
    """`process_chunk` saw `should_stop()` become true (cancel or deadline) and stopped early."""


def chunk_size_bytes(size: int, target_chunk_bytes: int, max_chunks: int) -> int:
    """Bytes per chunk: the target, grown so that the input needs at most `max_chunks` chunks."""
    if target_chunk_bytes < 1 or max_chunks < 1:
        raise ValueError("target_chunk_bytes and max_chunks must be positive")
    return max(target_chunk_bytes, math.ceil(size / max_chunks))


def require_source(source: ByteSource | None) -> ByteSource:
    """The input of a kind that needs one; a missing input is a bad request, not worth a retry."""
    if source is None:
        raise NonRetryableError("invalid_input", "this job kind needs an input")
    return source


class ExactPlan:
    """For a kind whose plan guesses nothing that the chunks must check: `reconcile` hands the partials on."""

    def reconcile(
        self,
        source: ByteSource | None,
        chunks: Sequence[dict[str, Any]],
        partials: Iterable[dict[str, Any]],
        options: dict[str, Any],
        should_stop: Callable[[], bool],
    ) -> Iterator[dict[str, Any]]:
        """The partials as they are."""
        return iter(partials)


@runtime_checkable
class JobKind(Protocol):
    """A job kind: validates its options and input, splits the work into chunks and merges the results."""

    # Read-only properties, so that a kind may declare them as plain class attributes of narrower types.
    @property
    def name(self) -> str:
        """The name clients submit as `kind`."""
        ...

    @property
    def description(self) -> str:
        """What the kind does, for the OpenAPI document."""
        ...

    @property
    def requires_input(self) -> bool:
        """Whether a job of this kind needs an input."""
        ...

    @property
    def input_content_types(self) -> tuple[str, ...]:
        """Accepted input media types, the first the default."""
        ...

    @property
    def options_model(self) -> type[BaseModel]:
        """What `parse_options` validates; its JSON schema goes into the OpenAPI document."""
        ...

    @property
    def input_model(self) -> type[BaseModel] | None:
        """The inline JSON `input` of a submission, None if the kind takes none."""
        ...

    @property
    def render_formats(self) -> Mapping[str, str]:
        """`render` format -> media type, besides "json" (the stored result itself)."""
        ...

    @property
    def streams_chunks(self) -> bool:
        """Whether `process_chunk` reads its range as a stream, holding a bounded window of it whatever the
        range's size (csv-report), rather than all of it (vector-normalize keeps a chunk's vectors).

        Such a kind's chunks may be larger (CHUNK_TARGET_BYTES_STREAMED), and the in-flight budget counts a
        chunk at the window it holds (activities.plan)."""
        ...

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated, normalized options; raises pydantic.ValidationError."""
        ...

    def validate_inline_input(self, data: Any) -> None:
        """Check the JSON `input` of a submission; raises pydantic.ValidationError or ValueError."""
        ...

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """Small JSON-native chunk specs (at least one); raises NonRetryableError for an invalid input."""
        ...

    def process_chunk(
        self,
        source: ByteSource | None,
        chunk: dict[str, Any],
        options: dict[str, Any],
        attempt: int,
        should_stop: Callable[[], bool],
    ) -> dict[str, Any]:
        """The JSON-native partial result of one chunk; raises ChunkStopped when `should_stop()` is true."""
        ...

    def work_seconds(self, input_size: int, chunks: Sequence[dict[str, Any]], options: dict[str, Any]) -> float | None:
        """About how long one worker thread needs for all of `chunks`; None if the kind cannot tell.

        A job of several chunks estimated at WHOLE_RUN_MAX_SECONDS or less runs whole in its first step
        (activities.whole_job): below that, an activity per chunk costs more than the work it spreads.
        """
        ...

    def reconcile(
        self,
        source: ByteSource | None,
        chunks: Sequence[dict[str, Any]],
        partials: Iterable[dict[str, Any]],
        options: dict[str, Any],
        should_stop: Callable[[], bool],
    ) -> Iterator[dict[str, Any]]:
        """The partials as `merge` takes them, in chunk order, once the kind has checked the plan against them.

        A kind whose plan guessed something that only the chunks could check (csv-report: its boundaries)
        corrects it here, redoing work if it must; the others hand the partials on. Raises ChunkStopped
        when `should_stop()` is true during such work.
        """
        ...

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """The full result document from the partial results, in chunk order."""
        ...

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """A small (< 2 KB) summary of a result document for the job resource."""
        ...

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """The result in one of `render_formats`, e.g. "csv" -> (bytes, "text/csv; charset=utf-8"); None for others."""
        ...
