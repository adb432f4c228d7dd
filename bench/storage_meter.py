"""A counting HTTP proxy in front of Azurite: every storage request the host makes, by service, owner and operation.

Azure bills storage per transaction (a REST request; an entity group transaction, `$batch`, is one), so
counting requests at the wire counts what Azure would bill, whoever makes them: the app's own storage
calls, the Durable backend's queue polling, table writes and partition leases (devhost emulates
DurableTask.AzureStorage), and the host's trigger polling. One asyncio proxy per Azurite port, on loopback,
on one event loop in a daemon thread (bench/loopback_proxy.py, shared with the chaos suite's fault proxy);
the host is pointed at the proxies instead of Azurite.

Owners, from the resource a request names:
- `durable`: the task hub's tables (`<hub>History`, `<hub>Instances`), queues (`<hub>-control-NN`,
  `<hub>-workitems`) and containers (`<hub>-leases`, `<hub>-largemessages`, ...);
- `host`: the Functions host's own state (`azure-webjobs-*` containers) and queue-trigger polling
  (`jobs-inbox`, its poison queue): on Azure the host does this whether or not the app does anything;
- `app`: everything else (the `Jobs` and `DeadLetters` tables, `payloads` and `results` containers, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from bench.loopback_proxy import Connection, LoopbackProxy, ProxyThread, pump
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port
from devhost.testing.harness import DevHost

Key = tuple[str, str, str]  # (service, owner, operation)

HOST_QUEUES = ("jobs-inbox", "jobs-inbox-poison")
_BATCH_TARGET = re.compile(rb"(?:POST|PUT|MERGE|PATCH|DELETE|GET) \S*?/([A-Za-z][A-Za-z0-9]*)(?:\(|\?| )")


def owner_of(name: str, hub: str) -> str:
    """Who a container, queue or table belongs to (see the module docstring)."""
    lowered = name.lower()
    if lowered.startswith(hub.lower()):
        return "durable"
    if lowered.startswith("azure-webjobs") or lowered in HOST_QUEUES:
        return "host"
    return "app"


def blob_operation(method: str, parts: list[str], query: dict[str, list[str]]) -> tuple[str, str]:
    """(container, operation) of a Blob service request."""
    container = parts[0] if parts else ""
    comp = query.get("comp", [""])[0]
    if len(parts) <= 1:
        if comp == "batch":
            return container, "BlobBatch"
        if comp == "list":
            return container, "ListBlobs" if container else "ListContainers"
        return container, {"PUT": "CreateContainer", "DELETE": "DeleteContainer"}.get(method, "GetContainerProperties")
    if method == "PUT":
        names = {"block": "PutBlock", "blocklist": "PutBlockList", "lease": "LeaseBlob", "metadata": "SetMetadata"}
        return container, names.get(comp, "PutBlob")
    if method == "GET":
        return container, "GetBlob"
    if method == "HEAD":
        return container, "GetBlobProperties"
    if method == "DELETE":
        return container, "DeleteBlob"
    return container, f"{method}Blob"


def queue_operation(method: str, parts: list[str], query: dict[str, list[str]]) -> tuple[str, str]:
    """(queue, operation) of a Queue service request."""
    queue = parts[0] if parts else ""
    if len(parts) >= 2 and parts[1] == "messages":
        if len(parts) >= 3:
            return queue, {"DELETE": "DeleteMessage", "PUT": "UpdateMessage"}.get(method, f"{method}Message")
        if method == "POST":
            return queue, "PutMessage"
        if method == "GET":
            return queue, "PeekMessages" if query.get("peekonly") else "GetMessages"
        return queue, "ClearMessages"
    if query.get("comp", [""])[0] == "metadata":
        return queue, "GetQueueMetadata" if method in ("GET", "HEAD") else "SetQueueMetadata"
    return queue, {"PUT": "CreateQueue", "DELETE": "DeleteQueue"}.get(method, f"{method}Queue")


def table_operation(method: str, parts: list[str], body: bytes) -> tuple[str, str]:
    """(table, operation) of a Table service request; a batch is named after the table of its first change."""
    target = parts[0] if parts else ""
    if target == "$batch":
        match = _BATCH_TARGET.search(body)
        return (match.group(1).decode() if match else ""), "EntityGroupTransaction"
    if target.startswith("Tables"):
        return "Tables", "CreateTable" if method == "POST" else "QueryTables"
    name, _, keys = target.partition("(")
    point = bool(keys.strip(")"))
    if method == "POST":
        return name, "InsertEntity"
    if method == "GET":
        return name, "GetEntity" if point else "QueryEntities"
    if method == "PUT":
        return name, "UpdateEntity"
    if method in ("MERGE", "PATCH"):
        return name, "MergeEntity"
    if method == "DELETE":
        return name, "DeleteEntity"
    return name, f"{method}Entity"


def classify(service: str, method: str, target: str, body: bytes, hub: str) -> Key:
    """(service, owner, operation) of one request."""
    url = urlsplit(target)
    parts = [unquote(part) for part in url.path.split("/") if part][1:]  # drop the account name
    query = parse_qs(url.query)
    if service == "blob":
        name, operation = blob_operation(method, parts, query)
    elif service == "queue":
        name, operation = queue_operation(method, parts, query)
    else:
        name, operation = table_operation(method, parts, body)
    return service, owner_of(name, hub), operation


@dataclass
class Meter:
    """Counts by (service, owner, operation), request bytes and response-independent totals."""

    hub: str
    counts: Counter[Key] = field(default_factory=Counter)
    request_bytes: Counter[str] = field(default_factory=Counter)
    batched_changes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, method: str, target: str, body: bytes, size: int) -> None:
        """Count one request."""
        key = classify(service, method, target, body, self.hub)
        with self.lock:
            self.counts[key] += 1
            self.request_bytes[key[1]] += size
            if key[2] == "EntityGroupTransaction":
                self.batched_changes[key[1]] += max(1, body.count(b"Content-Type: application/http"))
            elif key[2] == "BlobBatch":
                # Azure bills a Blob Batch as one request plus each subrequest (here all Delete Blob).
                self.counts[(service, key[1], "DeleteBlob")] += body.count(b"\r\nDELETE ")

    def snapshot(self) -> Counter[Key]:
        """A copy of the counts so far."""
        with self.lock:
            return Counter(self.counts)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        return b""
    raw = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line.split(b";")[0].strip(), 16)
        data = await reader.readexactly(size + 2)
        raw += data
        if size == 0:
            return bytes(raw)


class CountingProxy(LoopbackProxy):
    """One loopback port forwarding to one Azurite port, counting each HTTP request on the way."""

    def __init__(self, service: str, listen_port: int, upstream_port: int, meter: Meter) -> None:
        super().__init__(listen_port, upstream_port)
        self.service = service
        self.meter = meter

    async def _carry(self, connection: Connection) -> None:
        client_reader, client_writer = connection.client_reader, connection.client_writer
        upstream_writer = connection.upstream_writer
        back = asyncio.create_task(self._answers(connection.upstream_reader, client_writer))
        try:
            while True:
                head = await client_reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await _read_body(client_reader, headers)
                self.meter.record(self.service, method, target, body, len(head) + len(body))
                upstream_writer.write(head + body)
                await upstream_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            upstream_writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(back, 5)
            client_writer.close()

    @staticmethod
    async def _answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Azurite's answers back to the host, as they come (they are not counted: requests are billed)."""
        try:
            await pump(reader, writer)
        finally:
            writer.close()


class MeteredStorage(ProxyThread[CountingProxy]):
    """Three counting proxies (blob, queue, table) on one event loop in a daemon thread."""

    def __init__(
        self,
        upstream: tuple[int, int, int],
        listen: tuple[int, int, int],
        hub: str,
        meter: Callable[[str], Meter] = Meter,
    ) -> None:
        """Proxy `listen` ports (blob, queue, table) to the `upstream` Azurite ports, counting for task hub `hub`
        with a `meter(hub)` (a Meter, or a subclass that counts more)."""
        self.meter = meter(hub)
        proxies = [
            CountingProxy(service, port, up, self.meter)
            for service, port, up in zip(("blob", "queue", "table"), listen, upstream, strict=True)
        ]
        super().__init__(proxies, name="storage-meter")


@contextlib.contextmanager
def metered_devhost(
    azurite: Azurite,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    meter: Callable[[str], Meter] = Meter,
    stop_timeout: float = 20.0,
) -> Iterator[tuple[DevHost, MeteredStorage]]:
    """A started devhost whose storage requests reach `azurite` through the counting proxies; both stopped after.

    `env` and `args` are the devhost's extra settings and command line; `meter` makes the meter (for its task hub).
    """
    listen = (free_port(), free_port(), free_port())
    host = DevHost(development_connection_string(listen), env=dict(env or {}), args=list(args))
    upstream = (azurite.blob_port, azurite.queue_port, azurite.table_port)
    storage = MeteredStorage(upstream, listen, host.task_hub, meter).start()
    try:
        host.start()
        yield host, storage
    finally:
        try:
            host.stop(timeout=stop_timeout)
        finally:
            storage.stop()
