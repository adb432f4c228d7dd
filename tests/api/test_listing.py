"""GET /api/jobs shows a finished job as the job itself does (#16 item 9)."""

from __future__ import annotations

import json
from typing import Any

from azure.data.tables import TableServiceClient

from devhost.testing.harness import DevHost
from storage.indexed_table import INDEX_PARTITION
from storage.jobs import LAYOUT
from storage.names import JOBS_TABLE
from tests.api.probes import eventually, instances


def test_a_finished_job_is_listed_with_the_progress_it_shows_itself(devhost):
    """Before: the listing read finished jobs from their rows, which held no progress: {0, 0} for a 3/3 job."""
    submitted = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 3}})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    # Wait on Durable, not on the job resource: reading the job first would let it catch its row up.
    eventually(lambda: [i for i in instances(devhost, instanceIdPrefix=job_id) if i["runtimeStatus"] == "Completed"],
               timeout=60, interval=0.3)  # fmt: skip
    eventually(lambda: _listed(devhost, job_id)["status"] == "COMPLETED", timeout=30, interval=0.3)
    listed = _listed(devhost, job_id)
    own = devhost.client.get(f"/api/jobs/{job_id}").json()
    assert own["progress"] == {"completed": 3, "total": 3, "percent": 100.0}
    assert listed["progress"] == own["progress"]
    assert _listed(devhost, job_id)["progress"] == own["progress"]  # and again, now from the row


def _listed(devhost: DevHost, job_id: str) -> dict[str, Any]:
    items = devhost.client.get("/api/jobs", params={"kind": "simulate", "limit": 100}).json()["items"]
    [item] = [item for item in items if item["id"] == job_id]
    found: dict[str, Any] = item
    return found


def test_a_job_run_whole_records_its_outcome_in_both_rows(devhost: DevHost) -> None:
    """The submit hands the row's index key to the orchestration, and the whole run merges both rows with it
    instead of reading the job row first: the index row (what listings read) must still get the outcome."""
    submitted = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1}})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    # Wait on Durable, not on the job resource: reading the job could catch its rows up.
    eventually(lambda: [i for i in instances(devhost, instanceIdPrefix=job_id) if i["runtimeStatus"] == "Completed"],
               timeout=60, interval=0.3)  # fmt: skip
    table = TableServiceClient.from_connection_string(devhost.connection_string).get_table_client(JOBS_TABLE)
    row = table.get_entity(*LAYOUT.primary(job_id))
    index_row = table.get_entity(INDEX_PARTITION, str(row["index_key"]))
    for entity in (row, index_row):
        assert entity["status"] == "COMPLETED", dict(entity)
        assert json.loads(entity["progress"]) == {"completed": 1, "total": 1}, dict(entity)
