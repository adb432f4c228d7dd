"""The kind contract: byte sources, error markers and chunk sizing (the registry: test_registry.py)."""

from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys
from typing import IO, cast

import pytest

from devhost.testing.azurite import ROOT
from kinds.base import (
    ArrowBlockFile,
    ByteSource,
    BytesSource,
    FileSource,
    NonRetryableError,
    chunk_size_bytes,
    parse_non_retryable,
)


@pytest.fixture(params=["bytes", "file"])
def source(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> ByteSource:
    data = bytes(range(256)) * 40
    if request.param == "bytes":
        return BytesSource(data, block_bytes=1000)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    return FileSource(path, block_bytes=1000)


def test_sources_read_and_stream_ranges(source: ByteSource) -> None:
    data = bytes(range(256)) * 40
    assert isinstance(source, ByteSource)
    assert source.size == len(data)
    assert source.read(100, 50) == data[100:150]
    assert source.read(len(data) - 5, 50) == data[-5:]
    blocks = list(source.stream(10, 5000))
    assert b"".join(blocks) == data[10:5010]
    assert max(len(b) for b in blocks) <= 1000
    assert b"".join(source.stream(0, source.size + 100)) == data
    assert list(source.stream(source.size, 10)) == []
    with pytest.raises(ValueError):
        source.read(-1, 3)


def test_arrow_block_file_answers_full_reads_as_views_of_its_blocks() -> None:
    blocks = [bytes(range(10)) * 100, b"x" * 300, b"y" * 50]  # 1000, 300 and 50 bytes
    data = b"".join(blocks)
    file = ArrowBlockFile(iter(blocks))
    inside = file.read(400)
    # A read within one block is that block's memory, not a copy (Arrow keeps it as its buffer).
    assert isinstance(inside, memoryview) and inside.obj is blocks[0]
    assert bytes(inside) == data[:400]
    across = file.read(700)  # the rest of the first block, then the second: copied once, in full
    assert bytes(across) == data[400:1100]
    assert bytes(file.read(-1)) == data[1100:]
    assert file.read(10) == b""


def test_arrow_reads_a_csv_through_an_arrow_block_file() -> None:
    import pyarrow.csv as pacsv

    rows = b"".join(b"k%d,%d\n" % (n % 7, n) for n in range(20_000))
    blocks = [rows[start : start + 3001] for start in range(0, len(rows), 3001)]  # rows cut mid-way
    reader = pacsv.open_csv(
        cast(IO[bytes], ArrowBlockFile(iter(blocks))),
        read_options=pacsv.ReadOptions(column_names=["k", "v"], block_size=4096, use_threads=False),
    )
    table = reader.read_all()
    assert table.num_rows == 20_000
    assert table.column("v").to_pylist() == list(range(20_000))


def test_non_retryable_error_text_carries_its_type() -> None:
    error = NonRetryableError("unknown_column", "unknown column 'x'\nin the header")
    assert error.error_type == "unknown_column"
    assert str(error) == "[non-retryable:unknown_column] unknown column 'x' in the header"
    failed = f"Activity function 'process_chunk' failed: NonRetryableError: {error} \n Traceback..."
    assert parse_non_retryable(failed) == ("unknown_column", "unknown column 'x' in the header")
    assert parse_non_retryable("Activity function 'x' failed: RuntimeError: boom") is None
    copy = pickle.loads(pickle.dumps(error))  # worker processes send exceptions pickled
    assert (type(copy), copy.error_type, copy.message, str(copy)) == (
        NonRetryableError,
        error.error_type,
        error.message,
        str(error),
    )


@pytest.mark.parametrize(
    ("size", "target", "max_chunks", "expected"),
    [(100, 10, 100, 10), (1000, 10, 10, 100), (1001, 10, 10, 101), (0, 10, 5, 10)],
)
def test_chunk_size(size: int, target: int, max_chunks: int, expected: int) -> None:
    assert chunk_size_bytes(size, target, max_chunks) == expected


_FREED_BLOCKS = """
import sys, threading
from kinds.base import map_large_allocations

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

if sys.argv[1] == "mapped":
    assert map_large_allocations()

def chunk():  # on a thread of its own, as activities run
    big = b"x" * (16 << 20)  # a 16 MiB planning piece, freed: glibc would raise its mmap threshold to it
    del big
    pieces = [b"y" * (2 << 20) for _ in range(40)]  # 80 MB streamed in 2 MiB blocks
    del pieces

before = rss_mb()
thread = threading.Thread(target=chunk)
thread.start()
thread.join()
print(rss_mb() - before)
"""


def _printed_number(script: str, mode: str) -> int:
    """What `script` prints, run in a fresh interpreter (its allocator untouched by this one) with `mode`."""
    run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(run.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_blocks_a_chunk_frees_go_back_to_the_os_at_once() -> None:
    assert _printed_number(_FREED_BLOCKS, "default") >= 16  # the arena keeps what the threshold no longer maps
    assert _printed_number(_FREED_BLOCKS, "mapped") <= 4


_REUSED_TEMPORARIES = """
import resource, sys, threading
from kinds.base import map_large_allocations

assert map_large_allocations()
if sys.argv[1] == "old":  # the mmap threshold alone, as before: glibc's trim threshold stays at 128 KiB
    import ctypes
    ctypes.CDLL("libc.so.6").mallopt(-1, 128 * 1024)

faults = []

def block_temporaries():  # on a thread of its own, as activities run
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        temporary = b"t" * (400 << 10)  # a numpy temporary of one Arrow block: below the mmap threshold
        del temporary
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)

thread = threading.Thread(target=block_temporaries)
thread.start()
thread.join()
block_temporaries()  # and on the main thread's heap
print(max(faults))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_heap_keeps_freed_block_temporaries_for_the_next_block() -> None:
    """A freed block-sized allocation is reused without page faults, not returned and faulted in again."""

    def faults(mode: str) -> int:
        return _printed_number(_REUSED_TEMPORARIES, mode)

    assert faults("old") >= 200 * 50  # 100 pages a round: what the chunks paid
    assert faults("new") <= 2_000
