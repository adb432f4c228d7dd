"""A small app of sample orchestrations that pins devhost's protocol behaviour (not part of the product)."""

import json
import os
import time
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}!"


@app.activity_trigger(input_name="value")
def fail_always(value: Any) -> None:
    raise ValueError(f"boom {value}")


@app.activity_trigger(input_name="seconds")
def burn_cpu(seconds: float) -> dict[str, float]:
    started = time.thread_time()  # this thread's CPU: two burns sharing one GIL would each take twice as long
    wall = time.perf_counter()  # CLOCK_MONOTONIC: comparable between the worker processes
    while time.thread_time() - started < seconds:
        pass
    return {"start": wall, "end": time.perf_counter(), "pid": os.getpid()}


@app.activity_trigger(input_name="seconds")
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.activity_trigger(input_name="payload")
def noop(payload: Any) -> Any:
    return payload


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("hello", "Tokyo")
    second = yield context.call_activity("hello", "Seattle")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input() or 5
    results = yield context.task_all([context.call_activity("noop", i) for i in range(count)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def sequence_noop(context: df.DurableOrchestrationContext):
    count = context.get_input() or 10
    for i in range(count):
        yield context.call_activity("noop", i)
    return count


@app.orchestration_trigger(context_name="context")
def retry_exhausted(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=200, max_number_of_attempts=2)
    try:
        yield context.call_activity_with_retry("fail_always", options, "x")
    except Exception as exc:  # noqa: BLE001 - the sample reports what the SDK raised
        return {"caught": str(exc).split("\n")[0]}
    return {"caught": None}


@app.orchestration_trigger(context_name="context")
def timer(context: df.DurableOrchestrationContext):
    seconds = context.get_input() or 1
    fire_at = context.current_utc_datetime + timedelta(seconds=seconds)
    yield context.create_timer(fire_at)
    return "fired"


@app.orchestration_trigger(context_name="context")
def wait_event(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("approval")
    return {"approval": value}


@app.orchestration_trigger(context_name="context")
def event_or_timeout(context: df.DurableOrchestrationContext):
    deadline = context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    event = context.wait_for_external_event("go")
    winner = yield context.task_any([event, deadline])
    if winner == event:
        deadline.cancel()
        return "event"
    return "timeout"


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("sequence")
    second = yield context.call_sub_orchestrator("sequence", None, f"{context.instance_id}-child")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    value = context.get_input() or 0
    yield context.call_activity("noop", value)
    if value < 3:
        context.continue_as_new(value + 1)
        return None
    return value


@app.orchestration_trigger(context_name="context")
def progress(context: df.DurableOrchestrationContext):
    context.set_custom_status({"step": 1})
    yield context.wait_for_external_event("continue")
    return "done"


@app.orchestration_trigger(context_name="context")
def huge_status(context: df.DurableOrchestrationContext):
    context.set_custom_status("x" * 20000)
    yield context.call_activity("noop", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def calls_missing(context: df.DurableOrchestrationContext):
    yield context.call_activity("no_such_activity", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def parallel_cpu(context: df.DurableOrchestrationContext):
    seconds = context.get_input() or 1.0
    spans = yield context.task_all([context.call_activity("burn_cpu", seconds) for _ in range(2)])
    return spans


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["name"], None, payload)
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@app.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"id": int(req.route_params["id"]), "q": req.params.get("q"), "method": req.method}),
        mimetype="application/json",
    )


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    text = msg.get_body().decode()
    if text.startswith("fail"):
        raise RuntimeError(f"cannot take {text!r} (dequeue {msg.dequeue_count})")


@app.activity_trigger(input_name="seconds")
def slow_step(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.orchestration_trigger(context_name="context")
def slow_sequence(context: df.DurableOrchestrationContext):
    steps, seconds = context.get_input() or [6, 0.5]
    total = 0.0
    for _ in range(steps):
        total += yield context.call_activity("slow_step", seconds)
    return total


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    import os

    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], os.environ["TICK_QUEUE"])
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    queue.send_message(f"tick past_due={timer.past_due} pid={os.getpid()}")


@app.activity_trigger(input_name="size")
def big_text(size: int) -> str:
    return "x" * size


@app.orchestration_trigger(context_name="context")
def big(context: df.DurableOrchestrationContext):
    text = yield context.call_activity("big_text", context.get_input() or 100_000)
    echoed = yield context.call_activity("noop", text)  # a work item over the 45 KB queue limit
    return len(echoed)


@app.orchestration_trigger(context_name="context")
def drifting(context: df.DurableOrchestrationContext):
    import os

    # Deliberately non-deterministic: the activity name depends on a file the test creates mid-flight.
    name = "noop" if os.path.exists(os.environ.get("DRIFT_MARKER", "/nonexistent")) else "hello"
    yield context.call_activity(name, "x")
    yield context.wait_for_external_event("next")
    yield context.call_activity(name, "y")
    return "unreachable"


@app.route(route="client/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def client_ops(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Exercise the DurableOrchestrationClient methods an app uses, against the host, and report."""
    import asyncio

    instance_id = req.route_params["instance_id"]
    report: dict[str, Any] = {}
    report["started"] = await client.start_new("wait_event", instance_id, {"n": 1})
    status = await client.get_status(instance_id, show_input=True)
    report["status_input"] = status.input_
    await client.raise_event(instance_id, "approval", {"ok": True})
    for _ in range(200):
        status = await client.get_status(instance_id)
        if status.runtime_status == df.OrchestrationRuntimeStatus.Completed:
            break
        await asyncio.sleep(0.05)
    report["runtime_status"] = status.runtime_status.value if status.runtime_status else None
    report["output"] = status.output
    everything = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Completed])
    report["listed"] = instance_id in [s.instance_id for s in everything]
    missing = await client.get_status("no-such-instance")
    report["missing_status"] = missing.runtime_status
    other = await client.start_new("wait_event", None, None)
    await client.terminate(other, "enough")
    for _ in range(200):
        status = await client.get_status(other)
        if status.runtime_status == df.OrchestrationRuntimeStatus.Terminated:
            break
        await asyncio.sleep(0.05)
    report["terminated"] = status.runtime_status.value if status.runtime_status else None
    purged = await client.purge_instance_history(instance_id)
    report["purged"] = purged.instances_deleted
    return func.HttpResponse(json.dumps(report), mimetype="application/json")


@app.orchestration_trigger(context_name="context")
def failing_child(context: df.DurableOrchestrationContext):
    yield context.call_activity("noop", 1)
    raise ValueError("child broke")


@app.orchestration_trigger(context_name="context")
def parent_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=2)
    try:
        yield context.call_sub_orchestrator_with_retry("failing_child", options)
    except Exception as exc:  # noqa: BLE001 - the sample reports what the SDK raised
        return {"caught": str(exc).split("\n")[0]}
    return {"caught": None}


# --- where code runs and how the host delivers HTTP and queue messages (tests/devhost/test_*_delivery.py,
# test_worker_placement.py) -------------------------------------------------------------------------------
def _whereabouts() -> dict[str, Any]:
    import os
    import threading

    return {"pid": os.getpid(), "thread": threading.current_thread().name}


def _report(**fields: Any) -> None:
    """Tell the test what ran: a JSON message on REPORT_QUEUE."""
    import os

    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], os.environ["REPORT_QUEUE"])
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    queue.send_message(json.dumps({**fields, **_whereabouts(), "at": time.time()}))


@app.route(route="echo/{*rest}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body()
    report = {"method": req.method, "params": dict(req.params), "body_length": len(body), **_whereabouts()}
    return func.HttpResponse(json.dumps(report), mimetype="application/json")


@app.route(route="whoami", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def whoami_async(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(_whereabouts()), mimetype="application/json")


@app.route(route="slow", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def slow_http(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("finally", status_code=200)


@app.activity_trigger(input_name="payload")
def whoami(payload: Any) -> dict[str, Any]:
    return _whereabouts()


@app.orchestration_trigger(context_name="context")
def where(context: df.DurableOrchestrationContext):
    activity = yield context.call_activity("whoami", None)
    return {"orchestrator": _whereabouts(), "activity": activity}


@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="AzureWebJobsStorage")
def slow_message(msg: func.QueueMessage) -> None:
    """`sleep N` sleeps N seconds; `fail` raises; every invocation reports first."""
    text = msg.get_body().decode()
    visible = msg.time_next_visible.timestamp() if msg.time_next_visible else None
    inserted = msg.insertion_time.timestamp() if msg.insertion_time else None
    _report(source="slow", text=text, dequeue_count=msg.dequeue_count, next_visible=visible, inserted=inserted)
    if text.startswith("sleep "):
        time.sleep(float(text.split()[1]))
    if text.startswith("fail"):
        raise RuntimeError(f"cannot take {text!r}")


@app.queue_trigger(arg_name="msg", queue_name="%DEAD_QUEUE%", connection="AzureWebJobsStorage")
def dead_message(msg: func.QueueMessage) -> None:
    """A trigger on a poison queue (the name ends in -poison) that always fails."""
    _report(source="dead", text=msg.get_body().decode(), dequeue_count=msg.dequeue_count)
    raise RuntimeError("a poison message that cannot be handled")


from strict_orchestrations import bp as strict_orchestrations  # type: ignore[import-not-found]  # noqa: E402, I001

app.register_functions(strict_orchestrations)
