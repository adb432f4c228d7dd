"""`longrun watch` seen through a pseudo-terminal, as a user sees it: a live bar with the phase, chunks done of
the total, the rate and an ETA, ending with the result summary. Without a terminal there is no bar."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from longrun_client import LongrunClient
from tests.client.conftest import LONGRUN, cli_env

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run a command with a pty as its terminal (120 x 40); its exit code and screen output without escapes."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    code = process.wait(timeout=10)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_watch_shows_a_live_progress_bar_in_a_terminal(devhost_factory):
    # One chunk at a time: six 1.5 s chunks take 9 s, long enough to see the counts move even when a loaded
    # machine takes seconds to start the CLI (with 3 s in all, the job was over before `watch` looked).
    host = devhost_factory(env={"MAX_PARALLEL_CHUNKS": "1"})
    with LongrunClient(host.base_url) as client:
        job = client.submit("simulate", options={"chunks": 6, "chunk_seconds": 1.5})
    env = cli_env(host.base_url, TERM="xterm-256color")
    env.pop("NO_COLOR")
    env.pop("COLUMNS")
    code, screen = run_in_terminal([str(LONGRUN), "watch", job.id, "--timeout", "120"], env)
    assert code == 0, screen
    frames = screen.replace("\r", "\n")
    counts = {int(m.group(1)) for m in re.finditer(r"\b(\d)/6 chunks", frames)}
    assert 6 in counts and counts & {1, 2, 3, 4, 5}, frames  # the bar moved through the chunks
    assert re.search(r"processing .*\d/6 chunks .*chunks/s .*ETA", frames), frames
    assert re.search(r"\d+\.\d\d chunks/s", frames), frames  # a rate once there were two samples
    assert f"COMPLETED job {job.id} (simulate)" in frames
    assert "progress: 6/6 chunks" in frames and "checksum" in frames  # the result summary closes the output


def test_no_bar_without_a_terminal(devhost_factory):
    host = devhost_factory()
    with LongrunClient(host.base_url) as client:
        job = client.submit("simulate", options={"chunks": 2, "chunk_seconds": 0.2})
    done = subprocess.run(
        [str(LONGRUN), "watch", job.id], capture_output=True, text=True, env=cli_env(host.base_url), timeout=120
    )
    assert done.returncode == 0
    assert "chunks/s" not in done.stdout + done.stderr  # piped: the summary only, no bar frames
    assert f"COMPLETED job {job.id}" in done.stdout


def test_submit_shows_the_upload_then_the_job_in_a_terminal(devhost_factory, tmp_path):
    host = devhost_factory()
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\n" + "".join(f"r{i % 7},{i}\n" for i in range(60_000)))
    size = data.stat().st_size
    env = cli_env(host.base_url, TERM="xterm-256color", LONGRUN_INLINE_LIMIT="65536")
    env.pop("NO_COLOR")
    env.pop("COLUMNS")
    args = [str(LONGRUN), "submit", str(data), "--option", "group_by=region", "--wait", "--timeout", "120"]
    code, screen = run_in_terminal(args, env)
    assert code == 0, screen
    frames = screen.replace("\r", "\n")
    assert re.search(r"uploading .*[\d.]+/[\d.]+ [kKM]B", frames), frames  # bytes sent of the file's size
    assert size > 65536 and "COMPLETED job" in frames and "rows: 60000" in frames
    assert frames.index("uploading") < frames.index("COMPLETED job")
