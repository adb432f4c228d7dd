"""The Celery + Redis reference that longrun's users would otherwise pick, rebuilt minimal for bench.side_by_side.

FastAPI enqueues and answers 202 with a task id; Celery runs the work; Redis is broker and result
backend, with Celery's defaults (early ack: a killed worker loses its task). The same job semantics as
longrun's: `simulate` is a chord of N chunks of S seconds merged by its body; `csv` stores the raw body
in a folder (the claim check) and groups it with pyarrow in one task, the fastest way Arrow offers.

Runs only in the benchmark's own virtualenv (bench/requirements-peer.txt), never in the app's:
    uvicorn bench.celery_peer:api          celery -A bench.celery_peer worker --pool threads
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, chord  # type: ignore[import-not-found]
from celery.result import AsyncResult  # type: ignore[import-not-found]
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from bench import arrow_group_by

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BLOB_DIR = Path(os.environ.get("PEER_BLOB_DIR", "/tmp/longrun-peer-blobs"))

celery = Celery("peer", broker=REDIS_URL, backend=REDIS_URL)
celery.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@celery.task(name="chunk")
def chunk(index: int, seconds: float) -> int:
    time.sleep(seconds)
    return index + 1


@celery.task(name="merge")
def merge(values: list[int]) -> dict[str, int]:
    return {"chunks": len(values), "checksum": sum(values)}


@celery.task(name="csv_group_by")
def csv_group_by(path: str, group_by: str, metrics: list[str]) -> dict[str, Any]:
    rows, groups = arrow_group_by.group_by(path, group_by, metrics)
    Path(path).unlink(missing_ok=True)
    return {"rows": rows, "groups": {row["g"]: row["g_count"] for row in groups}}


api = FastAPI(title="Celery + Redis reference")


@api.post("/tasks", status_code=202)
def create_task(body: dict[str, Any]) -> dict[str, str]:
    header = [chunk.s(index, float(body.get("chunk_seconds", 0.0))) for index in range(int(body.get("chunks", 1)))]
    return {"task_id": str(chord(header)(merge.s()).id)}


@api.post("/tasks/csv", status_code=202)
async def create_csv_task(request: Request, group_by: str, metrics: str) -> dict[str, str]:
    BLOB_DIR.mkdir(parents=True, exist_ok=True)
    path = BLOB_DIR / f"{uuid.uuid4().hex}.csv"
    with open(path, "wb") as out:
        async for block in request.stream():
            await run_in_threadpool(out.write, block)
    names = [name for name in metrics.split(",") if name]
    result = await run_in_threadpool(csv_group_by.delay, str(path), group_by, names)
    return {"task_id": str(result.id)}


@api.get("/tasks/{task_id}")
def get_status(task_id: str) -> dict[str, Any]:
    result = AsyncResult(task_id, app=celery)
    state = str(result.state)
    return {"task_id": task_id, "status": state, "result": result.result if state == "SUCCESS" else None}
