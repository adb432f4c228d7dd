"""Language-worker processes: every app function runs here, as it does in the Python worker.

The host starts FUNCTIONS_WORKER_PROCESS_COUNT spawned processes. Each imports the app once and runs
invocations the way the worker's dispatcher does (`Dispatcher._handle__invocation_request` in
Azure/azure-functions-python-worker): a synchronous function on the one thread pool of
PYTHON_THREADPOOL_THREAD_COUNT threads (`_sync_call_tp`), an async function as a task on the worker's
event loop. HTTP, queue, timer and activity functions and orchestrator replays all share that pool, so a
busy activity delays an HTTP call or a replay as it does in Azure.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("devhost.workers")


class WorkerCrashed(Exception):
    """The worker process died while running the call; the host redelivers the work item."""


@dataclass
class ActivityFailure(Exception):
    """A function raised in the worker: its type, message and stack, as the worker reports them."""

    type_name: str
    message: str
    stack: str

    def __str__(self) -> str:
        """`Type: message`, as the worker's RpcException shows it."""
        return f"{self.type_name}: {self.message}"


# ---------------------------------------------------------------------------------------------------------
# Inside the worker process
# ---------------------------------------------------------------------------------------------------------
async def close_http_sessions() -> None:
    """Close the aiohttp sessions the app's async clients left open on this process's loop.

    A real worker process exits with its sessions; here each process outlives its loop for a moment, and
    each session still open would log "Unclosed client session" while the interpreter shuts down.
    """
    import gc

    import aiohttp

    for session in [obj for obj in gc.get_objects() if isinstance(obj, aiohttp.ClientSession)]:
        if not session.closed:
            await session.close()


def _worker_main(conn: multiprocessing.connection.Connection, app_dir: str, threads: int) -> None:
    # Ctrl+C reaches the whole process group; the host stops its workers itself (over the pipe, as the
    # real host does over gRPC), so a worker must not die mid-call with a KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from devhost import streams
    from devhost.indexing import index_functions, load_app

    os.chdir(app_dir)
    app = load_app(Path(app_dir))
    functions = {s.name: s for s in index_functions(app, "api")}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # One pool for every synchronous function, as the worker's `_sync_call_tp`.
    pool = ThreadPoolExecutor(max_workers=threads)
    send_lock = threading.Lock()
    stopping = asyncio.Event()
    running: set[asyncio.Task[None]] = set()
    # HTTP streams: the worker starts the extension's web server at init and tells the host its URI.
    coordinator: streams.HttpCoordinator | None = None
    http_uri: str | None = None
    web_server: asyncio.Task[Any] | None = None
    if streams.enabled():
        coordinator = streams.HttpCoordinator(loop)
        http_uri, web_server = streams.start_web_server(loop, coordinator)

    def reply(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    def failure(call_id: int, exc: BaseException) -> tuple[Any, ...]:
        # Every failure goes back to the host as the worker reports it: type, message, stack.
        return (call_id, False, (type(exc).__name__, str(exc), traceback.format_exc()))

    def run_sync(call_id: int, spec: Any, kind: str, payload: Any) -> None:
        # On a pool thread, and the reply leaves from it too: no hop back through the event loop, so a
        # call costs what it did when only activities ran here (the real worker hops through its loop
        # and gRPC thread; the thread that runs the code is the same).
        try:
            message = (call_id, True, _encode(kind, spec.user_function(**_bind(spec, kind, payload))))
        except BaseException as exc:
            message = failure(call_id, exc)
        reply(message)

    async def run_async(call_id: int, spec: Any, kind: str, payload: Any) -> None:
        try:
            message = (call_id, True, _encode(kind, await spec.user_function(**_bind(spec, kind, payload))))
        except BaseException as exc:
            message = failure(call_id, exc)
        # A large reply would block the loop while the pipe drains: a pool thread sends it.
        await loop.run_in_executor(None, reply, message)

    async def run_http_stream(call_id: int, spec: Any, payload: Any) -> None:
        # `_handle__invocation_request` with http_v2 enabled: wait for the proxied request, give it the
        # host's route values, call the function with it, and hand its answer (or exception) to the web
        # server, which sends it; the invocation itself returns nothing.
        assert coordinator is not None
        invocation_id = payload["invocation_id"]
        try:
            request = await coordinator.request(invocation_id)
            streams.sync_route_params(request, payload["route_params"])
            kwargs: dict[str, Any] = {spec.trigger_param: request}
            if spec.client_param:
                kwargs[spec.client_param] = payload["client"]
            if spec.is_async:
                result = await spec.user_function(**kwargs)
            else:
                result = await loop.run_in_executor(pool, functools.partial(spec.user_function, **kwargs))
            coordinator.set_response(invocation_id, result)
            message: tuple[Any, ...] = (call_id, True, None)
        except BaseException as exc:
            coordinator.set_response(invocation_id, exc)
            message = failure(call_id, exc)
        await loop.run_in_executor(None, reply, message)

    def start_async(call_id: int, spec: Any, kind: str, payload: Any) -> None:
        if kind == "http" and coordinator is not None:
            task = loop.create_task(run_http_stream(call_id, spec, payload))
        else:
            task = loop.create_task(run_async(call_id, spec, kind, payload))
        running.add(task)
        task.add_done_callback(running.discard)

    def read() -> None:
        # Like the worker's gRPC thread: receive, then hand a sync function to the thread pool and an
        # async one to the event loop.
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                loop.call_soon_threadsafe(stopping.set)
                return
            call_id, name, payload, kind = message
            spec = functions.get(name)
            if spec is None:
                reply(failure(call_id, KeyError(f"no function named {name!r} in the worker")))
            elif spec.is_async or (kind == "http" and coordinator is not None):
                loop.call_soon_threadsafe(start_async, call_id, spec, kind, payload)
            else:
                pool.submit(run_sync, call_id, spec, kind, payload)

    async def serve() -> None:
        reply((0, True, {"http_uri": http_uri}))
        await stopping.wait()
        if running:
            await asyncio.wait(list(running))
        if web_server is not None:
            web_server.cancel()
            await asyncio.gather(web_server, return_exceptions=True)
        await close_http_sessions()

    threading.Thread(target=read, daemon=True, name="worker-reader").start()
    try:
        loop.run_until_complete(serve())
    finally:
        pool.shutdown(wait=True)


def _bind(spec: Any, kind: str, payload: Any) -> dict[str, Any]:
    """The function's arguments from what the host sent, decoded as the worker's converters do."""
    import azure.functions as func
    from azure.functions import meta
    from azure.functions.durable_functions import ActivityTriggerConverter
    from azure.functions.queue import QueueMessage
    from azure.functions.timer import TimerRequest

    kwargs: dict[str, Any] = {}
    if kind == "orchestrator":
        # The SDK's handle takes the context JSON and answers the OrchestratorState JSON.
        kwargs[spec.trigger_param] = payload
        return kwargs
    if kind == "activity":
        kwargs[spec.trigger_param] = ActivityTriggerConverter.decode(meta.Datum(payload, "string"), trigger_metadata={})
        return kwargs
    if kind == "http":
        kwargs[spec.trigger_param] = func.HttpRequest(
            method=payload["method"],
            url=payload["url"],
            headers=payload["headers"],
            params=payload["params"],
            route_params=payload["route_params"],
            body=payload["body"],
        )
    elif kind == "queue":
        kwargs[spec.trigger_param] = QueueMessage(  # type: ignore[no-untyped-call]
            id=payload["id"],
            body=payload["body"],
            dequeue_count=payload["dequeue_count"],
            expiration_time=payload["expiration_time"],
            insertion_time=payload["insertion_time"],
            time_next_visible=payload["time_next_visible"],
            pop_receipt=payload["pop_receipt"],
        )
    elif kind == "timer":
        kwargs[spec.trigger_param] = TimerRequest(
            past_due=payload["past_due"], schedule_status=payload["schedule_status"], schedule=payload["schedule"]
        )
    else:
        raise ValueError(f"unknown invocation kind {kind!r}")
    if spec.client_param:
        # The durableClient binding arrives as its JSON text; the SDK's decorator builds the client from it.
        kwargs[spec.client_param] = payload["client"]
    return kwargs


def _encode(kind: str, result: Any) -> Any:
    """The function's return value as the worker sends it back: JSON for activities, RpcHttp for HTTP."""
    if kind == "orchestrator":
        return result
    if kind == "activity":
        from azure.functions.durable_functions import ActivityTriggerConverter

        return ActivityTriggerConverter.encode(result, expected_type=None).value
    if kind == "http":
        return _http_response(result)
    return None


def _http_response(result: Any) -> dict[str, Any] | None:
    """Encode an HTTP return value with the library's HttpResponseConverter, as the worker does."""
    from azure.functions.http import HttpResponseConverter

    if result is None:
        return None
    datum = HttpResponseConverter.encode(result, expected_type=None)  # NotImplementedError for other types
    if datum.type == "string":
        return {"status": 200, "headers": [], "body": str(datum.value).encode("utf-8")}
    value = datum.value
    headers = [(str(k), str(v.value)) for k, v in value["headers"].items()]
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            headers.append(("Set-Cookie", morsel.OutputString()))
    return {"status": int(value["status_code"].value), "headers": headers, "body": bytes(value["body"].value or b"")}


# ---------------------------------------------------------------------------------------------------------
# In the host
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Pipe writes block until the worker reads (a long history is hundreds of KB): a thread does them,
    # so the event loop serving HTTP never waits on a pipe.
    outbox: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    # The worker's web server for HTTP streams (its `HttpUri` capability), None without streams.
    http_uri: str | None = None


class WorkerPool:
    """The host's side of the language workers: spawn them, send invocations, restart the ones that die."""

    def __init__(self, app_dir: Path, processes: int, threads: int) -> None:
        self.app_dir = app_dir
        self.size = max(1, processes)
        self.threads = max(1, threads)
        self.workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    async def start(self) -> None:
        """Spawn the worker processes (they import the app in the background)."""
        self._loop = asyncio.get_running_loop()
        for _ in range(self.size):
            self.workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        # The worker must import the app the way the host's worker does: from the app folder.
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
        process = self._context.Process(
            target=_worker_main, args=(child, str(self.app_dir), self.threads), daemon=True, name="python-worker"
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        threading.Thread(target=self._read, args=(worker,), daemon=True, name="worker-reader").start()
        threading.Thread(target=self._write, args=(worker,), daemon=True, name="worker-writer").start()
        return worker

    @staticmethod
    def _write(worker: _Worker) -> None:
        while True:
            message = worker.outbox.get()
            try:
                worker.conn.send(message)
            except (OSError, ValueError):
                return  # the reader sees the pipe close and fails the pending calls
            if message is None:
                return

    def _read(self, worker: _Worker) -> None:
        assert self._loop is not None
        loop = self._loop
        while True:
            try:
                call_id, ok, payload = worker.conn.recv()
            except (EOFError, OSError):
                break
            if call_id == 0:
                worker.http_uri = payload.get("http_uri") if isinstance(payload, dict) else None
                loop.call_soon_threadsafe(worker.ready.set)
                continue
            loop.call_soon_threadsafe(self._resolve, worker, call_id, ok, payload)
        loop.call_soon_threadsafe(self._crashed, worker)

    def _resolve(self, worker: _Worker, call_id: int, ok: bool, payload: Any) -> None:
        future = worker.pending.pop(call_id, None)
        if future is None or future.done():
            return
        if ok:
            future.set_result(payload)
        else:
            future.set_exception(ActivityFailure(*payload))

    def _crashed(self, worker: _Worker) -> None:
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(WorkerCrashed("the language worker process exited"))
        worker.pending.clear()
        if worker in self.workers and not self._closing:
            log.warning("language worker %s exited; starting a new one", worker.process.pid)
            self.workers[self.workers.index(worker)] = self._spawn()

    def pick(self) -> _Worker:
        """The least busy worker (where the next call goes)."""
        return min(self.workers, key=lambda w: len(w.pending))

    async def ready_worker(self) -> _Worker:
        """The least busy worker, once it has imported the app (and reported its web server)."""
        worker = self.pick()
        await worker.ready.wait()
        return worker

    async def call(
        self, name: str, payload: Any, timeout: float | None, kind: str = "activity", worker: _Worker | None = None
    ) -> Any:
        """Invoke function `name` in the least busy worker and return what the worker answers.

        `kind` says how the worker binds `payload` and encodes the result: "activity" (input and output
        JSON text), "orchestrator" (context JSON in, OrchestratorState JSON out), "http" (request dict in,
        response dict out), "queue" and "timer" (trigger dicts in, nothing out).
        """
        if worker is None:
            worker = self.pick()
        await worker.ready.wait()
        assert self._loop is not None
        call_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        worker.pending[call_id] = future
        worker.outbox.put((call_id, name, payload, kind))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # A thread cannot be stopped: like the real host, recycle the worker that ran over.
            worker.pending.pop(call_id, None)
            worker.process.kill()
            raise

    def any_ready(self) -> bool:
        """Whether some worker has imported the app (the host's functions are indexed and can be invoked)."""
        return any(w.ready.is_set() for w in self.workers)

    async def wait_ready(self) -> None:
        """Wait until every worker has imported the app."""
        await asyncio.gather(*(w.ready.wait() for w in self.workers))

    def busy(self) -> int:
        """Invocations in flight over all workers."""
        return sum(len(w.pending) for w in self.workers)

    async def stop(self, grace: float) -> None:
        """Ask every worker to finish what it runs, then kill the ones still alive after `grace` seconds."""
        self._closing = True
        for worker in self.workers:
            worker.outbox.put(None)
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, grace)
            if worker.process.is_alive():
                worker.process.kill()

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self.workers if w.process.pid]
