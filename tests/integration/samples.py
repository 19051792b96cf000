"""Running the programs of samples/ as subprocesses against the test server."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import ROOT, Server

SAMPLES = ROOT / "samples"


def sample_env(server: Server, jid: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env.update(XMPP_JID=jid, XMPP_PASSWORD=server.password, XMPP_HOST=server.host,
               XMPP_PORT=str(server.port), XMPP_CA=server.ca, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_sample(server: Server, name: str, *args: str, jid: str, timeout: float = 60,
               **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SAMPLES / name), *args], capture_output=True,
                          text=True, env=sample_env(server, jid, **extra), timeout=timeout)


def start_sample(server: Server, name: str, *args: str, jid: str,
                 **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(SAMPLES / name), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=sample_env(server, jid, **extra))


def wait_ready(proc: subprocess.Popen[str], word: str = "ready", timeout: float = 30) -> str:
    """Read the sample's stdout until a line containing ``word``; the rest stays readable
    from ``proc.stdout``.

    A thread reads the lines and hands them over through a queue. Selecting on the pipe and
    then calling readline() missed a line: one read can bring two lines into the text
    stream's buffer, readline() returns the first, and the pipe then has nothing more to
    select on, so the second (the awaited one) waited in the buffer until the timeout.
    """
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        while True:
            line = stdout.readline()
            lines.put(line)
            if not line or word in line:  # end of output, or the line: read no further
                return

    reader = threading.Thread(target=read, name=f"wait_ready-{proc.pid}", daemon=True)
    reader.start()
    end = time.monotonic() + timeout
    seen = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            break
        if not line:
            break
        seen.append(line)
        if word in line:
            reader.join()
            return line
    proc.kill()  # the reader then sees the end of the output
    reader.join(timeout=30)
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"sample never said {word!r} within {timeout} s: {''.join(seen)} "
                         f"{err}")


__all__ = ["SAMPLES", "Path", "run_sample", "start_sample", "wait_ready", "sample_env"]
