"""How often a running job asks storage for its stop marker (issue #15), counted at the client.

Every ask is a billed GetBlobProperties. The chunks of one job in one worker process share one answer,
and the interval between asks doubles from CHECK_INTERVAL_SECONDS up to MAX_CHECK_INTERVAL_SECONDS, which
bounds how late a running chunk hears a cancel. Requests are counted with azure-core's per-request hook
on a real client against Azurite.
"""

from __future__ import annotations

import threading
import time
import uuid

from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import BlobServiceClient, ContainerClient

from activities.stop_marker import CHECK_INTERVAL_SECONDS, MAX_CHECK_INTERVAL_SECONDS, StopSignal, write_stop_marker
from devhost.testing.azurite import Azurite
from storage.names import RESULTS_CONTAINER, stop_marker_blob_name


class _Counted:
    """A results container whose requests for one job's stop marker are counted."""

    def __init__(self, azurite: Azurite, job_id: str) -> None:
        self.asks = 0
        marker = stop_marker_blob_name(job_id)

        def count(request: object) -> None:
            http: HttpRequest = request.http_request  # type: ignore[attr-defined]
            if http.method == "HEAD" and marker in http.url:
                self.asks += 1

        service = BlobServiceClient.from_connection_string(azurite.connection_string, raw_request_hook=count)
        self.container: ContainerClient = service.get_container_client(RESULTS_CONTAINER)


def _poll(signals: list[StopSignal], seconds: float) -> list[bool]:
    """Call each signal every 20 ms from its own thread (as chunks do between row batches) for `seconds`."""
    answers = [False] * len(signals)

    def chunk(n: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not answers[n]:
            answers[n] = signals[n]()
            time.sleep(0.02)

    threads = [threading.Thread(target=chunk, args=(n,)) for n in range(len(signals))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_the_chunks_of_a_job_in_one_process_share_one_ask_that_backs_off(
    blobs: BlobServiceClient, azurite: Azurite
) -> None:
    job_id = uuid.uuid4().hex
    counted = _Counted(azurite, job_id)
    signals = [StopSignal(counted.container, job_id) for _ in range(4)]
    assert _poll(signals, 4.0) == [False] * 4
    # Alone, each of the four would have asked every 0.5 s: 32 asks. Shared and backing off (0.5, 1, 2, 2 s):
    # asks at about 0, 0.5, 1.5 and 3.5 s.
    assert 2 <= counted.asks <= 5, counted.asks


def test_a_cancel_is_heard_within_the_longest_interval_by_every_chunk(
    blobs: BlobServiceClient, azurite: Azurite
) -> None:
    job_id = uuid.uuid4().hex
    counted = _Counted(azurite, job_id)
    signals = [StopSignal(counted.container, job_id) for _ in range(3)]
    assert _poll(signals, 3.0) == [False] * 3  # by now the interval is at its longest
    write_stop_marker(counted.container, job_id, "cancelled")
    written = time.monotonic()
    assert _poll(signals, MAX_CHECK_INTERVAL_SECONDS + 1.5) == [True] * 3
    assert time.monotonic() - written <= MAX_CHECK_INTERVAL_SECONDS + 1.0  # 1 s of slack for a loaded machine


def test_check_now_asks_storage_unless_another_chunk_just_did(blobs: BlobServiceClient, azurite: Azurite) -> None:
    job_id = uuid.uuid4().hex
    counted = _Counted(azurite, job_id)
    first, second = StopSignal(counted.container, job_id), StopSignal(counted.container, job_id)
    assert first.check_now() is False and counted.asks == 1
    assert second.check_now(fresh_within=CHECK_INTERVAL_SECONDS) is False and counted.asks == 1  # shared answer
    write_stop_marker(counted.container, job_id, "cancelled")
    assert second.check_now() is True and counted.asks == 2  # before an output: always asked
    assert first() is True and counted.asks == 2  # the answer is the process's: the marker stays once written
