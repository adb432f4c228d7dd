"""A fault-injecting TCP proxy on loopback: sits between the host and one Azurite port.

It forwards bytes both ways and, on command, severs the connections it carries: `drop` closes them
(FIN, the peer reads end of stream mid-response), `reset` aborts them with SO_LINGER 0 (RST, the peer
gets ECONNRESET). A flaky window does the same to new connections at random for a while, and an
optional delay holds every forwarded block back. When the upstream (Azurite) is down, a new connection
is reset at once, which the client sees as it would see a refused connection.

The forwarding and the event-loop thread (`ProxyGroup`, driven from the suite's own threads) are
bench/loopback_proxy.py's, shared with the storage meter; this module adds the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Literal

from bench.loopback_proxy import Connection, LoopbackProxy, ProxyThread, pump

Sever = Literal["drop", "reset"]


@dataclass
class ProxyCounters:
    """What one proxy has seen and done (read by the suite's report)."""

    connections: int = 0
    dropped: int = 0
    reset: int = 0
    upstream_refused: int = 0


@dataclass
class _Flaky:
    """New connections until `until` are severed with `probability`, after up to `max_after` seconds."""

    kind: Sever
    until: float
    probability: float
    max_after: float


@dataclass(eq=False)  # identity: links live in a set
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    severed: bool = False


def _abort(writer: asyncio.StreamWriter, kind: Sever) -> None:
    """Close one side: gracefully (FIN) for drop, with an RST for reset."""
    if kind == "reset":
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


class FaultProxy(LoopbackProxy):
    """One listening port forwarding to one upstream port, both on 127.0.0.1, severing on command."""

    def __init__(self, listen_port: int, upstream_port: int, max_delay: float = 0.0, seed: int | None = None) -> None:
        super().__init__(listen_port, upstream_port)
        self.max_delay = max_delay
        self.counters = ProxyCounters()
        self._random = random.Random(seed)
        self._links: set[_Link] = set()
        self._flaky: _Flaky | None = None

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        await super().stop()
        for link in list(self._links):
            self._cut(link, "drop")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def open_connections(self) -> int:
        """Connections currently carried."""
        return len(self._links)

    def sever_all(self, kind: Sever, fraction: float = 1.0) -> int:
        """Sever a random `fraction` of the open connections now; returns how many were severed."""
        chosen = [link for link in list(self._links) if self._random.random() < fraction]
        for link in chosen:
            self._cut(link, kind)
        return len(chosen)

    def flaky(self, kind: Sever, seconds: float, probability: float = 0.5, max_after: float = 0.3) -> None:
        """For `seconds`, sever each new connection with `probability` after up to `max_after` s."""
        self._flaky = _Flaky(kind, time.monotonic() + seconds, probability, max_after)

    def _cut(self, link: _Link, kind: Sever) -> None:
        if link.severed:
            return
        link.severed = True
        if kind == "reset":
            self.counters.reset += 1
        else:
            self.counters.dropped += 1
        _abort(link.client, kind)
        _abort(link.upstream, kind)
        for task in link.tasks:
            task.cancel()
        self._links.discard(link)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        await super()._serve(client_reader, client_writer)

    def _upstream_refused(self, client_writer: asyncio.StreamWriter) -> None:
        # Reset at once: the client sees what it would see of a refused connection.
        self.counters.upstream_refused += 1
        _abort(client_writer, "reset")

    async def _carry(self, connection: Connection) -> None:
        client_writer, upstream_writer = connection.client_writer, connection.upstream_writer
        link = _Link(client_writer, upstream_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(connection.client_reader, upstream_writer, link)),
            asyncio.create_task(self._pump(connection.upstream_reader, client_writer, link)),
        ]
        flaky = self._flaky
        if flaky is not None and time.monotonic() < flaky.until and self._random.random() < flaky.probability:
            link.tasks.append(asyncio.create_task(self._cut_later(link, flaky)))
        await asyncio.gather(*link.tasks[:2], return_exceptions=True)
        if not link.severed:
            self._links.discard(link)
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _cut_later(self, link: _Link, flaky: _Flaky) -> None:
        await asyncio.sleep(self._random.uniform(0, flaky.max_after))
        self._cut(link, flaky.kind)

    async def _delay(self) -> None:
        await asyncio.sleep(self._random.uniform(0, self.max_delay))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            await pump(
                reader, writer, carrying=lambda: not link.severed, pace=self._delay if self.max_delay > 0 else None
            )
        finally:
            # One side ended: pass the end of stream on, so HTTP keep-alive behaves as without the proxy.
            if not link.severed and writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()


class ProxyGroup(ProxyThread[FaultProxy]):
    """Several FaultProxy instances on one event loop in a daemon thread, driven from other threads."""

    def __init__(self, routes: list[tuple[int, int]], max_delay: float = 0.0, seed: int | None = None) -> None:
        proxies = [
            FaultProxy(listen, upstream, max_delay, None if seed is None else seed + i)
            for i, (listen, upstream) in enumerate(routes)
        ]
        super().__init__(proxies, name="chaos-proxy")

    def sever_all(self, kind: Sever, fraction: float = 1.0) -> int:
        """Sever open connections on every proxy; returns how many."""

        async def sever() -> int:
            return sum(proxy.sever_all(kind, fraction) for proxy in self.proxies)

        return int(self._call(sever()))

    def flaky(self, kind: Sever, seconds: float, probability: float = 0.5, max_after: float = 0.3) -> None:
        """Open a flaky window on every proxy."""

        async def set_flaky() -> None:
            for proxy in self.proxies:
                proxy.flaky(kind, seconds, probability, max_after)

        self._call(set_flaky())

    def counters(self) -> ProxyCounters:
        """The counters summed over the proxies."""
        total = ProxyCounters()
        for proxy in self.proxies:
            total.connections += proxy.counters.connections
            total.dropped += proxy.counters.dropped
            total.reset += proxy.counters.reset
            total.upstream_refused += proxy.counters.upstream_refused
        return total
