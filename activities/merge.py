"""Merging a job's partials, read by their deterministic names in chunk order, into its result blob.

The result is written once per job and says which kind wrote it, so a merge redelivered after the
job was finalized (its plan and partials deleted) answers from the result instead of failing.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from activities.chunks import read_partial
from activities.plan import JobPlan, input_source, load_plan
from activities.resources import JSON_CONTENT_TYPE, job_kind, results, upload_json
from shared.contracts import MergeOutput
from shared.settings import Settings, get_settings
from storage.names import result_blob_name

KIND_METADATA = "kind"
"""Blob metadata on the result: the kind that merged it (to summarize it again without the plan)."""

READ_AHEAD = 8
"""Partials read ahead of the one being merged: their reads overlap, and memory holds a few, not all."""


def partials_in_order(settings: Settings, job_id: str, count: int) -> Iterator[Any]:
    """The job's partials in chunk order, read up to READ_AHEAD at a time.

    One after another, the reads of a 1 GB job's 128 partials were a second or more of its critical path;
    all held at once, a csv-report's parsed partials were tens of MB in one worker.
    """
    with ThreadPoolExecutor(max_workers=max(1, min(READ_AHEAD, count))) as pool:
        pending: deque[Future[Any]] = deque()
        for index in range(count):
            pending.append(pool.submit(read_partial, settings, job_id, index))
            if len(pending) >= READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def merge_partials(job_id: str, chunk_count: int) -> MergeOutput:
    """Merge the partials (read by their deterministic names, in order) into the result blob; idempotent."""
    settings = get_settings()
    merged = merged_already(settings, job_id)
    if merged is not None:
        return merged
    plan = load_plan(settings, job_id)
    return write_result(settings, job_id, plan, merge_result(settings, job_id, chunk_count, plan))


def _never() -> bool:
    return False


def merge_result(
    settings: Settings, job_id: str, chunk_count: int, plan: JobPlan, should_stop: Callable[[], bool] = _never
) -> Any:
    """The job's result: its partials, reconciled with the plan and merged by its kind (computed, not written).

    Raises ChunkStopped if told to stop while the kind redoes a chunk (`JobKind.reconcile`).
    """
    kind = job_kind(settings, plan["kind"])
    source = input_source(settings, plan["input_ref"], plan)
    partials = partials_in_order(settings, job_id, chunk_count)
    return kind.merge(kind.reconcile(source, plan["chunks"], partials, plan["options"], should_stop), plan["options"])


def write_result(settings: Settings, job_id: str, plan: JobPlan, result: Any) -> MergeOutput:
    """Write the merged result blob, tagged with its kind; returns what merge_partials answers."""
    summary = job_kind(settings, plan["kind"]).summarize(result)
    name = result_blob_name(job_id)
    # Deterministic content: a concurrent re-run overwriting with the same bytes is harmless.
    upload_json(results(settings), name, result, metadata={KIND_METADATA: plan["kind"]})
    return {"result_ref": name, "content_type": JSON_CONTENT_TYPE, "summary": summary}


def merged_already(settings: Settings, job_id: str) -> MergeOutput | None:
    """The output of an earlier merge of this job, rebuilt from its result blob (None if there is none)."""
    name = result_blob_name(job_id)
    try:
        download = results(settings).get_blob_client(name).download_blob()
    except ResourceNotFoundError:
        return None
    kind_name = (download.properties.metadata or {}).get(KIND_METADATA)
    if kind_name is None:
        return None  # written by an older version: merge again from the partials
    summary = job_kind(settings, kind_name).summarize(json.loads(download.readall()))
    return {"result_ref": name, "content_type": JSON_CONTENT_TYPE, "summary": summary}
