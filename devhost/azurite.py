"""Start Azurite for `make run` on its default ports, or reuse one that is already listening."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

DEFAULT_PORTS = (10000, 10001, 10002)


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_azurite(app_dir: Path) -> subprocess.Popen[bytes] | None:
    """Return the Azurite process we started, or None when one was already listening."""
    if all(_open(p) for p in DEFAULT_PORTS):
        print("Azurite is already listening on 10000-10002; reusing it.", flush=True)
        return None
    if any(_open(p) for p in DEFAULT_PORTS):
        raise RuntimeError("some of the ports 10000-10002 are taken by something that is not a full Azurite")
    executable = app_dir / "node_modules" / ".bin" / "azurite"
    command = str(executable) if executable.exists() else shutil.which("azurite")
    if not command:
        raise RuntimeError("Azurite is not installed: run `make setup` (npm ci)")
    location = app_dir / ".azurite"
    location.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            command,
            "--blobHost",
            "127.0.0.1",
            "--queueHost",
            "127.0.0.1",
            "--tableHost",
            "127.0.0.1",
            "--location",
            str(location),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            # Keep idle connections open longer than aiohttp does (15 s), so the client always closes first;
            # with Node's 5 s default a reused connection can be reset and the SDK retries after a backoff.
            "--blobKeepAliveTimeout",
            "60",
            "--queueKeepAliveTimeout",
            "60",
            "--tableKeepAliveTimeout",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not all(_open(p) for p in DEFAULT_PORTS):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("Azurite did not start within 30 s")
        time.sleep(0.05)
    print(f"Azurite started (data in {location}).", flush=True)
    return process
