"""GET /api/jobs shows a finished job as the job itself does (#16 item 9)."""

from __future__ import annotations

from typing import Any

from devhost.testing.harness import DevHost
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
