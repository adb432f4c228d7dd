"""Start a private Azurite (in memory, free ports) so test runs never share state."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def connection_string(blob: int, queue: int, table: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/{ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table}/{ACCOUNT};"
    )


def azurite_executable() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        raise RuntimeError("Azurite is not installed: run `make setup` (npm ci)")
    return found


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes] | None = None
    location: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @classmethod
    def start(cls, location: Path | None = None, ports: tuple[int, int, int] | None = None) -> Azurite:
        """Start Azurite on the given (or free) ports; in memory unless a location is given."""
        blob, queue, table = ports or (free_port(), free_port(), free_port())
        args = [
            azurite_executable(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            # Keep idle connections open longer than aiohttp does (15 s), so the client always closes first;
            # with Node's 5 s default a reused connection is reset and the SDK retries after a backoff.
            "--blobKeepAliveTimeout",
            "60",
            "--queueKeepAliveTimeout",
            "60",
            "--tableKeepAliveTimeout",
            "60",
            # Keep idle connections open longer than aiohttp does (15 s), so the client always closes first;
            # with Node's 5 s default a reused connection is reset and the SDK retries after a backoff.
            "--blobKeepAliveTimeout",
            "60",
            "--queueKeepAliveTimeout",
            "60",
            "--tableKeepAliveTimeout",
            "60",
        ]
        if location is None:
            args.append("--inMemoryPersistence")
        else:
            location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(location)]
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy()
        )
        azurite = cls(blob, queue, table, proc, location)
        deadline = time.monotonic() + 30
        while not all(port_open(p) for p in (blob, queue, table)):
            if proc.poll() is not None:
                raise RuntimeError(f"Azurite exited with {proc.returncode}")
            if time.monotonic() > deadline:
                azurite.stop()
                raise RuntimeError("Azurite did not start within 30 s")
            time.sleep(0.05)
        return azurite

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
