"""A small app on HTTP streams (azurefunctions-extensions-http-fastapi) that pins how devhost serves them."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import azure.durable_functions as df
import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response, StreamingResponse

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


async def _ticks(count: int, interval: float) -> AsyncIterator[bytes]:
    sent = 0
    try:
        for sent in range(1, count + 1):
            yield f"id: {sent}\nevent: tick\ndata: {time.time()}\n\n".encode()
            await asyncio.sleep(interval)
        print(f"ticks: finished after {sent}", flush=True)
    except BaseException as exc:  # the client left: Starlette cancels the response's stream
        print(f"ticks: cancelled after {sent} ({type(exc).__name__})", flush=True)
        raise


@app.route(route="ticks", methods=["GET"])
async def ticks(req: Request) -> StreamingResponse:
    count = int(req.query_params.get("count", "5"))
    interval = float(req.query_params.get("interval", "0.2"))
    return StreamingResponse(_ticks(count, interval), media_type="text/event-stream")


@app.route(route="upload", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def upload(req: Request) -> JSONResponse:
    size = 0
    parts = 0
    async for part in req.stream():
        size += len(part)
        parts += bool(part)
    print(f"upload: read {size} bytes", flush=True)
    return JSONResponse({"bytes": size, "parts": parts})


@app.route(route="refuse", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def refuse(req: Request) -> JSONResponse:
    # Answers before the body has arrived, as an app's own size limit does.
    return JSONResponse({"refused": True}, status_code=413)


@app.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def item(req: Request) -> JSONResponse:
    return JSONResponse(
        {
            "path_params": dict(req.path_params),
            "query": req.url.query,
            "path": req.url.path,
            "forwarded_host": req.headers.get("x-forwarded-host"),
            "invocation_header": req.headers.get("x-ms-invocation-id") is not None,
            "connection": req.headers.get("connection"),
            "peer_port": req.client.port if req.client else None,
        }
    )


@app.route(route="sync", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def sync_item(req: Request) -> Response:
    return Response("sync " + req.query_params.get("q", ""), media_type="text/plain")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def boom(req: Request) -> Response:
    raise ValueError("boom")


@app.route(route="slow", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def slow(req: Request) -> Response:
    await asyncio.sleep(float(req.query_params.get("seconds", "1")))
    return Response("finally", media_type="text/plain")


@app.route(route="start/{name}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.durable_client_input(client_name="client")
async def start(req: Request, client: df.DurableOrchestrationClient) -> JSONResponse:
    body = await req.body()
    instance_id = await client.start_new(req.path_params["name"], None, json.loads(body) if body else None)
    return JSONResponse({"id": instance_id}, status_code=202)


@app.orchestration_trigger(context_name="context")
def hello(context: df.DurableOrchestrationContext):
    return f"hello {context.get_input()}"
