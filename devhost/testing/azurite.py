"""Start a private Azurite (in memory, free ports) so test and benchmark runs never share state."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devhost.azurite import azurite_command, development_connection_string, wait_listening

# The repository root: devhost runs from here, and Azurite comes from its node_modules.
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Azurite:
    """A running Azurite on three ports, owned by the caller (stop it when done)."""

    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes] | None = None
    location: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def connection_string(self) -> str:
        """The connection string for this Azurite's well-known development account."""
        return development_connection_string((self.blob_port, self.queue_port, self.table_port))

    @classmethod
    def start(cls, location: Path | None = None, ports: tuple[int, int, int] | None = None) -> Azurite:
        """Start Azurite on the given (or free) ports; in memory unless a location is given."""
        blob, queue, table = ports or (free_port(), free_port(), free_port())
        proc = subprocess.Popen(
            azurite_command(ROOT, (blob, queue, table), location),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
        azurite = cls(blob, queue, table, proc, location)
        try:
            wait_listening(proc, (blob, queue, table))
        except RuntimeError:
            azurite.stop()
            raise
        return azurite

    def stop(self) -> None:
        """Terminate Azurite (kill it if it does not exit within 10 s)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
