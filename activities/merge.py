"""Merging a job's partials, read by their deterministic names in chunk order, into its result blob."""

from __future__ import annotations

import json

from azure.storage.blob import ContentSettings

from activities.chunks import read_partial
from activities.plan import load_plan
from activities.resources import JSON_CONTENT_TYPE, job_kind, results
from shared.contracts import MergeOutput
from shared.settings import get_settings
from storage.names import result_blob_name


def merge_partials(job_id: str, chunk_count: int) -> MergeOutput:
    """Merge the partials (read by their deterministic names, in order) into the result blob."""
    settings = get_settings()
    plan = load_plan(settings, job_id)
    kind = job_kind(settings, plan["kind"])
    partials = [read_partial(settings, job_id, index) for index in range(chunk_count)]
    result = kind.merge(partials, plan["options"])
    summary = kind.summarize(result)
    name = result_blob_name(job_id)
    # Deterministic content: overwriting with the same bytes on a re-run is harmless.
    results(settings).get_blob_client(name).upload_blob(
        json.dumps(result).encode(), overwrite=True, content_settings=ContentSettings(content_type=JSON_CONTENT_TYPE)
    )
    return {"result_ref": name, "content_type": JSON_CONTENT_TYPE, "summary": summary}
