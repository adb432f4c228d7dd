"""The fault suite's TCP proxy: it forwards, and when told to drop or reset a connection, that really happens."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.chaos.proxy import ProxyGroup
from devhost.testing.azurite import free_port


class EchoServer:
    """A loopback TCP server that echoes every byte back (the stand-in for Azurite)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets connections on purpose
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[ProxyGroup]:
    group = ProxyGroup([(free_port(), echo.port)], seed=7).start()
    yield group
    group.stop()


def connect(group: ProxyGroup) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", group.proxies[0].listen_port), timeout=5)
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"  # the connection is established end to end before any fault
    return sock


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_forwards_both_ways(proxy: ProxyGroup) -> None:
    with connect(proxy) as sock:
        payload = bytes(range(256)) * 1000
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += sock.recv(65536)
        assert received == payload
    assert proxy.counters().connections == 1


def test_reset_gives_the_peer_econnreset(proxy: ProxyGroup) -> None:
    with connect(proxy) as sock:
        assert proxy.sever_all("reset") == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
            # Some stacks report the RST on the next send instead of the pending recv.
            sock.sendall(b"x")
            sock.recv(10)
    assert proxy.counters().reset == 1


def test_drop_gives_the_peer_end_of_stream(proxy: ProxyGroup) -> None:
    with connect(proxy) as sock:
        assert proxy.sever_all("drop") == 1
        assert sock.recv(10) == b""  # FIN: an orderly close in the middle of the exchange
    assert proxy.counters().dropped == 1
    assert proxy.proxies[0].open_connections == 0


def test_sever_all_leaves_later_connections_alone(proxy: ProxyGroup) -> None:
    with connect(proxy) as first:
        proxy.sever_all("drop")
        assert first.recv(10) == b""
    with connect(proxy) as second:
        second.sendall(b"again")
        assert second.recv(5) == b"again"


def test_flaky_window_severs_new_connections_then_stops(proxy: ProxyGroup) -> None:
    proxy.flaky("reset", seconds=1.0, probability=1.0, max_after=0.05)
    with socket.create_connection(("127.0.0.1", proxy.proxies[0].listen_port), timeout=5) as sock:
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(100):
                sock.sendall(b"x")
                if not sock.recv(10):
                    raise ConnectionResetError("closed")
                time.sleep(0.01)
    time.sleep(1.1)
    with connect(proxy) as sock:  # the window has passed: connections survive again
        time.sleep(0.1)
        sock.sendall(b"ok")
        assert sock.recv(2) == b"ok"


def test_upstream_down_resets_the_client(echo: EchoServer) -> None:
    closed_port = free_port()  # nothing listens there
    group = ProxyGroup([(free_port(), closed_port)]).start()
    try:
        # The reset can arrive while connecting, on the send or on the receive: as for a refused connection,
        # the client never gets an answer.
        with pytest.raises(ConnectionResetError):
            with socket.create_connection(("127.0.0.1", group.proxies[0].listen_port), timeout=5) as sock:
                sock.sendall(b"hello")
                sock.recv(10)
        wait_until(lambda: group.counters().upstream_refused == 1)
    finally:
        group.stop()


def test_delay_holds_each_block_back(echo: EchoServer) -> None:
    group = ProxyGroup([(free_port(), echo.port)], max_delay=0.05, seed=3).start()
    try:
        with socket.create_connection(("127.0.0.1", group.proxies[0].listen_port), timeout=5) as sock:
            started = time.monotonic()
            for _ in range(10):
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"
            elapsed = time.monotonic() - started
        # Two delayed hops per round trip, uniform in [0, 0.05]: about 0.5 s for 10 round trips, never ~0.
        assert elapsed > 0.15
    finally:
        group.stop()
