"""Running the programs of samples/ as subprocesses against the test server."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """Read the sample's stdout until a line containing ``word``."""
    import selectors
    import time
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        if not sel.select(max(0.0, end - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if word in line:
            return line
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"sample never said {word!r}: {''.join(seen)} {err}")


__all__ = ["SAMPLES", "Path", "run_sample", "start_sample", "wait_ready", "sample_env"]
