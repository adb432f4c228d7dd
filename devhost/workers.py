"""Language-worker processes: activities run in separate Python processes, as FUNCTIONS_WORKER_PROCESS_COUNT
gives the real host, so CPU-bound activities run in parallel instead of taking turns under one GIL.

Each worker process imports the app once and runs calls on a thread pool (PYTHON_THREADPOOL_THREAD_COUNT),
as the Python worker does for synchronous functions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
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
    type_name: str
    message: str
    stack: str

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


# ---------------------------------------------------------------------------------------------------------
# Inside the worker process
# ---------------------------------------------------------------------------------------------------------
def _worker_main(conn: multiprocessing.connection.Connection, app_dir: str, threads: int) -> None:
    import asyncio as worker_asyncio
    import inspect

    from azure.functions import meta
    from azure.functions.durable_functions import ActivityTriggerConverter

    from devhost.indexing import index_functions, load_app

    os.chdir(app_dir)
    app = load_app(Path(app_dir))
    specs = index_functions(app, "api")
    activities = {s.name: s for s in specs if s.trigger_type == "activityTrigger"}
    orchestrators = {s.name: s for s in specs if s.trigger_type == "orchestrationTrigger"}
    send_lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity")
    # Episodes get a thread of their own: a replay takes milliseconds and must not queue behind a
    # chunk activity that holds every activity thread for seconds.
    episodes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator")

    def reply(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    def run(call_id: int, name: str, input_text: str | None, kind: str = "activity") -> None:
        try:
            if kind == "orchestrator":
                # The SDK's handle: context JSON in, OrchestratorState JSON out (or an exception carrying it).
                reply((call_id, True, orchestrators[name].user_function(input_text)))
                return
            spec = activities[name]
            value = ActivityTriggerConverter.decode(meta.Datum(input_text, "string"), trigger_metadata={})
            result = spec.user_function(**{spec.trigger_param: value})
            if inspect.isawaitable(result):
                result = worker_asyncio.run(_await(result))
            datum = ActivityTriggerConverter.encode(result, expected_type=None)
            reply((call_id, True, datum.value))
        except BaseException as exc:  # every failure goes back to the host as the worker reports it
            reply((call_id, False, (type(exc).__name__, str(exc), traceback.format_exc())))

    reply((0, True, "ready"))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        (episodes if message[3] == "orchestrator" else pool).submit(run, *message)
    pool.shutdown(wait=True)
    episodes.shutdown(wait=True)


async def _await(awaitable: Any) -> Any:
    return await awaitable


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


class WorkerPool:
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

    async def call(
        self, name: str, input_text: str | None, timeout: float | None, kind: str = "activity"
    ) -> str | None:
        """Run an activity (or an orchestrator episode) in the least busy worker; returns its JSON text."""
        worker = min(self.workers, key=lambda w: len(w.pending))
        await worker.ready.wait()
        assert self._loop is not None
        call_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        worker.pending[call_id] = future
        worker.outbox.put((call_id, name, input_text, kind))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # A thread cannot be stopped: like the real host, recycle the worker that ran over.
            worker.pending.pop(call_id, None)
            worker.process.kill()
            raise

    async def wait_ready(self) -> None:
        await asyncio.gather(*(w.ready.wait() for w in self.workers))

    def busy(self) -> int:
        return sum(len(w.pending) for w in self.workers)

    async def stop(self, grace: float) -> None:
        self._closing = True
        for worker in self.workers:
            worker.outbox.put(None)
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, grace)
            if worker.process.is_alive():
                worker.process.kill()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid]
