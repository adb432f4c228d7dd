"""Azurite as devhost, the tests and the benchmarks start it: Node runs it with a larger young generation
(devhost.azurite.NODE_FLAGS; the figures are in docs/benchmarks.md, "Cost per job", stop 19)."""

from __future__ import annotations

import os

import psutil
from azure.storage.blob import BlobServiceClient

from devhost.azurite import NODE_FLAGS
from devhost.testing.azurite import Azurite


def test_azurite_runs_under_node_with_the_flags_and_streams_blobs_whole(azurite: Azurite) -> None:
    assert azurite.process is not None
    command = psutil.Process(azurite.process.pid).cmdline()
    assert os.path.basename(command[0]) == "node"
    assert command[1 : 1 + len(NODE_FLAGS)] == list(NODE_FLAGS)
    assert command[1 + len(NODE_FLAGS)].endswith("azurite.js")

    # Blocks staged in parallel and read back in ranges: the streaming the flags are for still holds every byte.
    blobs = BlobServiceClient.from_connection_string(
        azurite.connection_string, max_single_put_size=4 * 2**20, max_block_size=4 * 2**20
    )
    container = blobs.get_container_client("emulator-flags")
    container.create_container()
    data = os.urandom(3 * 2**20) * 7  # 21 MiB: six blocks
    blob = container.get_blob_client("payload")
    blob.upload_blob(data, max_concurrency=4)
    assert (
        blob.download_blob(offset=5 * 2**20, length=9 * 2**20, max_concurrency=2).readall()
        == data[5 * 2**20 : 14 * 2**20]
    )
    assert blob.download_blob().readall() == data
