"""Durable history per job: the bytes written to the History table for csv-report jobs on 1 MB, 100 MB
and 1 GB inputs (default sizes; `--sizes` changes them). The claim check keeps data out of the
orchestration and MAX_CHUNKS_PER_JOB bounds the plan, so the figure must stay constant within 10 %.

Every orchestrator episode adds an OrchestratorStarted/OrchestratorCompleted pair, and how many chunk
completions share an episode depends on how close together they arrive, as it does in Azure. So the
target is measured with one chunk in flight (`MAX_PARALLEL_CHUNKS=1`: one episode per completion, the
input size is the only variable), and the same jobs with four in flight are reported beside it.

Run: `.venv/bin/python -m bench.history_size [--sizes 1,100,1000] [--windows 1,4]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient

from bench.csv_report import generate_csv, run_job
from devhost.testing.azurite import Azurite
from devhost.testing.harness import APP_TEST_ENV, DevHost

TOLERANCE = 0.10
BENCH_ENV = {
    # Small target chunks but at most 16 per job: every size below gets the same plan shape.
    "ENABLE_SIMULATE_KIND": "false",
    "CHUNK_TARGET_BYTES": "65536",
    "MAX_CHUNKS_PER_JOB": "16",
}
TARGET_WINDOW = 1
"""Chunks in flight for the figure held to the target: one episode per completion, whatever the timing."""


def _entity_bytes(entity: dict[str, Any]) -> int:
    """Stored size of a table entity, approximated by its property names and values as UTF-8."""
    return sum(len(str(key).encode()) + len(str(value).encode()) for key, value in entity.items())


def durable_state_bytes(connection_string: str, task_hub: str, job_id: str) -> dict[str, int]:
    """History rows (the job and its chunk batches, if any) and Instances rows written for one job."""
    service = TableServiceClient.from_connection_string(connection_string)
    history = service.get_table_client(f"{task_hub}History")
    instances = service.get_table_client(f"{task_hub}Instances")
    query = f"PartitionKey ge '{job_id}' and PartitionKey lt '{job_id}\uffff'"
    history_rows = [dict(row) for row in history.query_entities(query)]
    instance_rows = [dict(row) for row in instances.query_entities(query)]
    # How many chunk completions share an orchestrator episode depends on timing, not on the input;
    # each episode adds an OrchestratorStarted/Completed pair. The figure without them isolates the input.
    markers = ("OrchestratorStarted", "OrchestratorCompleted")
    return {
        "history_rows": len(history_rows),
        "history_bytes": sum(_entity_bytes(row) for row in history_rows),
        "history_bytes_without_episode_markers": sum(
            _entity_bytes(row) for row in history_rows if row.get("EventType") not in markers
        ),
        "instances_bytes": sum(_entity_bytes(row) for row in instance_rows),
    }


def _spread(values: list[int]) -> float:
    return (max(values) - min(values)) / min(values) if values else 0.0


def measure(connection_string: str, window: int, sizes: list[int], timeout: float) -> list[dict[str, Any]]:
    """History of one csv-report job per size on a devhost with `window` chunks in flight."""
    figures: list[dict[str, Any]] = []
    env = {**APP_TEST_ENV, **BENCH_ENV, "MAX_PARALLEL_CHUNKS": str(window)}
    host = DevHost(connection_string, env=env)
    try:
        host.start()
        for size in sizes:
            run = run_job(host, generate_csv(size), timeout)
            state = durable_state_bytes(connection_string, host.task_hub, run["job"]["id"])
            figure = {"size_mb": size, "window": window, "chunks": run["job"]["progress"]["total"], **state}
            figures.append(figure)
            print(
                f"history for a {size} MB csv-report ({figure['chunks']} chunks, {window} in flight): "
                f"{figure['history_bytes']} bytes in {figure['history_rows']} rows "
                f"({figure['history_bytes_without_episode_markers']} without episode markers; "
                f"+ {figure['instances_bytes']} bytes of instance status)",
                flush=True,
            )
    finally:
        host.stop(timeout=30)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="comma-separated input sizes in MB")
    parser.add_argument("--windows", default="1,4", help=f"chunks in flight; the target uses {TARGET_WINDOW}")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    windows = [int(part) for part in args.windows.split(",") if part.strip()]
    spreads: dict[int, dict[str, float]] = {}
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="longrun-azurite-") as location:
        azurite = Azurite.start(location=Path(location))
        try:
            for window in windows:
                measured = measure(azurite.connection_string, window, sizes, args.timeout)
                figures.extend(measured)
                spreads[window] = {
                    "spread": round(_spread([f["history_bytes"] for f in measured]), 4),
                    "spread_without_episode_markers": round(
                        _spread([f["history_bytes_without_episode_markers"] for f in measured]), 4
                    ),
                }
                print(
                    f"{window} in flight: spread {spreads[window]['spread']:.1%} "
                    f"({spreads[window]['spread_without_episode_markers']:.1%} without episode markers; "
                    f"target <= {TOLERANCE:.0%} with {TARGET_WINDOW} in flight)",
                    flush=True,
                )
        finally:
            azurite.stop()
    print(json.dumps({"benchmark": "history_size", "settings": BENCH_ENV, "figures": figures, "spreads": spreads}))
    target = spreads.get(TARGET_WINDOW)
    return 0 if target is None or target["spread"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
