"""A TCP forwarding proxy on loopback, and the event-loop thread that runs a group of them.

bench/storage_meter.py (counting each storage request on the way) and bench/chaos/proxy.py (severing and
delaying connections on command) both put one of these between the host and each Azurite port: listen on
127.0.0.1 only, open one upstream connection per client connection, copy bytes both ways. Subclasses say what
happens on the way (`_carry`) and when the upstream refuses (`_upstream_refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

LOOPBACK = "127.0.0.1"
BLOCK_BYTES = 64 * 1024


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    carrying: Callable[[], bool] = lambda: True,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Copy one direction until end of stream, a connection error, or `carrying()` turns false.

    `pace` runs before each block is passed on (a fault proxy's delay). The caller closes or half-closes.
    """
    try:
        while carrying():
            data = await reader.read(BLOCK_BYTES)
            if not data:
                return
            if pace is not None:
                await pace()
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass  # the peer went away: the connection ends as it would without the proxy


@dataclass(frozen=True)
class Connection:
    """One client connection, and the upstream connection opened for it."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    upstream_reader: asyncio.StreamReader
    upstream_writer: asyncio.StreamWriter


class LoopbackProxy:
    """One listening port on 127.0.0.1 forwarding each connection to one upstream port on 127.0.0.1."""

    def __init__(self, listen_port: int, upstream_port: int) -> None:
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on 127.0.0.1:`listen_port` (loopback only)."""
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.listen_port, reuse_address=True)

    async def stop(self) -> None:
        """Stop listening (connections carried so far end with their peers)."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            self._upstream_refused(client_writer)
            return
        await self._carry(Connection(client_reader, client_writer, upstream_reader, upstream_writer))

    def _upstream_refused(self, client_writer: asyncio.StreamWriter) -> None:
        """The upstream is down: end the client's connection (subclasses choose how)."""
        client_writer.close()

    async def _carry(self, connection: Connection) -> None:
        """Forward one connection both ways until either side ends it."""
        raise NotImplementedError


ProxyT = TypeVar("ProxyT", bound=LoopbackProxy)


class ProxyThread(Generic[ProxyT]):
    """Proxies on one event loop in a daemon thread, so that synchronous code (a suite, a benchmark) drives them."""

    def __init__(self, proxies: Sequence[ProxyT], name: str = "loopback-proxy") -> None:
        self.proxies = list(proxies)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def _call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the proxies' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self) -> Self:
        """Start the loop and every proxy."""
        self._thread.start()
        for proxy in self.proxies:
            self._call(proxy.start())
        return self

    def stop(self) -> None:
        """Stop every proxy, end the connections still carried, then stop the loop (a proxy that fails to stop
        does not keep the others running)."""
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                self._call(proxy.stop())
        # Connections left to the garbage collector would close their transports on a stopped loop ("Event
        # loop is closed", raised where nobody can catch it): end them on the loop while it runs.
        with contextlib.suppress(Exception):
            self._call(_end_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


async def _end_tasks() -> None:
    """Cancel every other task on the running loop and wait until they have ended."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
