"""One POST to a checked destination: connect to its checked address, name the host in Host and SNI.

http.client follows no redirects and is given the address itself, so nothing here resolves a name
again (no DNS rebinding between the check and the connection). Short timeouts, and at most
MAX_ANSWER_BYTES of the answer are read: a receiver cannot hold a worker thread or fill its memory.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from shared.clock import utc_now
from webhooks.guard import Destination

CONNECT_SECONDS = 5.0
READ_SECONDS = 10.0
MAX_ANSWER_BYTES = 4096
MAX_RETRY_AFTER_SECONDS = 3600.0
"""A Retry-After further out than this is taken as this: a delivery is not parked for days by one answer."""


@dataclass(frozen=True)
class Answer:
    """What the receiver answered."""

    status: int
    retry_after: float | None


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, destination: Destination) -> None:
        super().__init__(destination.host, destination.port, timeout=READ_SECONDS)
        self._address = destination.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), CONNECT_SECONDS)
        self.sock.settimeout(READ_SECONDS)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, destination: Destination) -> None:
        super().__init__(destination.host, destination.port, timeout=READ_SECONDS, context=ssl.create_default_context())
        self._address = destination.address
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), CONNECT_SECONDS)
        raw.settimeout(READ_SECONDS)
        # The certificate is checked against the host name, not the address we connected to.
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - utc_now()).total_seconds(), MAX_RETRY_AFTER_SECONDS))


def post(destination: Destination, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to the destination; raises OSError (incl. timeouts) or HTTPException if there is no answer."""
    connection: http.client.HTTPConnection
    connection = _PinnedHTTPS(destination) if destination.scheme == "https" else _PinnedHTTP(destination)
    try:
        connection.putrequest("POST", destination.target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", destination.host_header)
        for name, value in {**headers, "Content-Length": str(len(body)), "Connection": "close"}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)  # drain a little so the receiver is not cut mid-answer; never more
        return Answer(response.status, retry_after_seconds(response.getheader("Retry-After")))
    finally:
        connection.close()
