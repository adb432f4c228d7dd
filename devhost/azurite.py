"""Azurite, the storage emulator: how devhost and the tests start it, and how they connect to it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

DEFAULT_PORTS = (10000, 10001, 10002)  # blob, queue, table
# Azurite's well-known development account: documented and public, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on `host:port` (checked within 0.2 s)."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def development_connection_string(ports: tuple[int, int, int] = DEFAULT_PORTS) -> str:
    """A connection string for Azurite's well-known development account on these (blob, queue, table) ports."""
    blob, queue, table = ports
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table}/{DEV_ACCOUNT};"
    )


def azurite_command(app_dir: Path, ports: tuple[int, int, int], location: Path | None) -> list[str]:
    """The command line for Azurite on loopback: on disk at `location`, or in memory without one."""
    executable = app_dir / "node_modules" / ".bin" / "azurite"
    command = str(executable) if executable.exists() else shutil.which("azurite")
    if not command:
        raise RuntimeError("Azurite is not installed: run `make setup` (npm ci)")
    blob, queue, table = ports
    args = [
        *_node(command),
        *("--blobHost", "127.0.0.1", "--blobPort", str(blob)),
        *("--queueHost", "127.0.0.1", "--queuePort", str(queue)),
        *("--tableHost", "127.0.0.1", "--tablePort", str(table)),
        # Without --disableTelemetry Azurite keeps trying to reach an outside host; newer SDKs send an API
        # version Azurite 3.35 does not know yet.
        *("--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose"),
        # Keep idle connections open longer than aiohttp does (15 s), so the client always closes first;
        # with Node's 5 s default a reused connection can be reset and the SDK retries after a backoff.
        *("--blobKeepAliveTimeout", "60", "--queueKeepAliveTimeout", "60", "--tableKeepAliveTimeout", "60"),
    ]
    if location is None:
        return [*args, "--inMemoryPersistence"]
    location.mkdir(parents=True, exist_ok=True)
    return [*args, "--location", str(location)]


NODE_FLAGS = ("--max-semi-space-size=32",)
"""V8's young generation at 32 MiB per semi-space instead of 16: the blob service streams every byte through
short-lived buffers, and with the default the scavenger ran so often that it was a fifth of Azurite's busy
time. A 100 MB upload took 0.39-0.51 s instead of 0.60-0.74 s, and Azurite's CPU for it and for the job's
reads fell by about a third (docs/benchmarks.md, "Cost per job", stop 19)."""


def _node(command: str) -> list[str]:
    """Azurite's entry script run by Node with NODE_FLAGS; the command as it is if it is not a script."""
    script = Path(command).resolve()
    node = shutil.which("node")
    if script.suffix != ".js" or node is None:
        return [command]
    return [node, *NODE_FLAGS, str(script)]


def wait_listening(process: subprocess.Popen[bytes], ports: tuple[int, int, int], timeout: float = 30.0) -> None:
    """Wait until Azurite listens on all three ports; RuntimeError if it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not all(port_open(p) for p in ports):
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Azurite did not start within {timeout:.0f} s")
        time.sleep(0.05)


def ensure_azurite(app_dir: Path) -> subprocess.Popen[bytes] | None:
    """For `make run`: start Azurite on its default ports with data in .azurite/, or reuse a running one.

    Returns the process we started, or None when one was already listening.
    """
    if all(port_open(p) for p in DEFAULT_PORTS):
        print("Azurite is already listening on 10000-10002; reusing it.", flush=True)
        return None
    if any(port_open(p) for p in DEFAULT_PORTS):
        raise RuntimeError("some of the ports 10000-10002 are taken by something that is not a full Azurite")
    location = app_dir / ".azurite"
    process = subprocess.Popen(
        azurite_command(app_dir, DEFAULT_PORTS, location),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_listening(process, DEFAULT_PORTS)
    print(f"Azurite started (data in {location}).", flush=True)
    return process
