"""Per-activity overhead of devhost with no-op activities and Azurite on disk.

Measures a 100-activity sequence, a 1,000-activity fan-out and the start-up time to the first
202 (Azurite already running). Targets on a 2-core machine: sequential >= 30 activities/s,
fan-out >= 150 activities/s, start-up <= 3 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost

SAMPLE_APP = Path(__file__).resolve().parents[1] / "tests" / "devhost" / "sample_app"
MANAGEMENT = "/runtime/webhooks/durabletask"


def _run(host: DevHost, name: str, payload: Any) -> float:
    started = time.perf_counter()
    response = host.client.post(f"/api/start/{name}", json=payload)
    assert response.status_code == 202, response.text
    instance_id = response.json()["id"]
    while True:
        status = host.client.get(f"{MANAGEMENT}/instances/{instance_id}")
        if status.status_code == 200:
            assert status.json()["runtimeStatus"] == "Completed", status.text
            return time.perf_counter() - started
        time.sleep(0.1)  # a client polling every 100 ms, not a busy loop that loads the host


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as data:
        azurite = Azurite.start(location=Path(data))
        env = {"SAMPLE_QUEUE": "bench-inbox", "TICK_QUEUE": "bench-ticks", "TICK_SCHEDULE": "0 0 0 1 1 *"}
        try:
            host = DevHost(azurite.connection_string, env=env, args=["--app-dir", str(SAMPLE_APP)])
            began = time.perf_counter()
            host.start(wait=False)
            while True:  # start-up to the first 202 of a real start request
                try:
                    if host.client.post("/api/start/sequence").status_code == 202:
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    time.sleep(0.1)  # a client polling every 100 ms, not a busy loop that loads the host
            startup = time.perf_counter() - began
            _run(host, "sequence_noop", 5)  # warm the worker processes
            sequence_seconds = _run(host, "sequence_noop", 100)
            fan_out_seconds = _run(host, "fan_out", 1000)
            host.stop()
        finally:
            azurite.stop()
    return {
        "startup_to_first_202_s": round(startup, 2),
        "sequence_100_s": round(sequence_seconds, 2),
        "sequence_activities_per_s": round(100 / sequence_seconds, 1),
        "fan_out_1000_s": round(fan_out_seconds, 2),
        "fan_out_activities_per_s": round(1000 / fan_out_seconds, 1),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
