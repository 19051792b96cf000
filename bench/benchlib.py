"""Shared helpers of the benchmark workers (standard library only: imported by the simplexmpp
workers in the project's virtualenv and by the slixmpp workers in bench/.venv alike).

A worker is run as ``python bench/workers_<impl>.py NAME 'JSON-ARGS'``; it prints progress
lines (``READY`` when it waits for a peer) and, last, one line ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from typing import Any

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='b1' "
          b"version='1.0' xml:lang='en'>")
CHUNK = 4096

#: About 200 bytes: a chat message with a body and an XEP-0359 origin-id (as bench/parse.py).
ONE_STANZA = ("<message from='alice@localhost/laptop' to='bob@localhost/phone' type='chat' "
              "id='m{0:08d}'><body>Hello Bob, this is message {0}</body><origin-id "
              "xmlns='urn:xmpp:sid:0' id='m{0:08d}'/></message>")

#: The body of every end-to-end message (sized like the receive benchmark's).
def body(i: int) -> str:
    return f"Hello Bob, this is message {i}"


def stanzas(count: int) -> bytes:
    return "".join(ONE_STANZA.format(i) for i in range(count)).encode()


def chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def big_stanza(size: int) -> bytes:
    """One message whose body is ``size`` bytes."""
    return (b"<message from='alice@localhost/laptop' to='bob@localhost/phone' type='chat' "
            b"id='big'><body>" + b"x" * size + b"</body></message>")


def take_all(get: Any, count: int) -> tuple[Any, float]:
    """Take ``count`` items with ``get()`` (a receive benchmark's queue): the first item
    and the seconds it took, the items kept alive until all are taken."""
    start = time.perf_counter()
    taken = [get() for _ in range(count)]
    return taken[0], time.perf_counter() - start


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status(field: str) -> int:
    """A numeric field of /proc/self/status (VmRSS, VmHWM in kB; Threads)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99),
            "mean_ms": statistics.fmean(ms), "max_ms": max(ms), "n": len(ms)}


def ready() -> None:
    """Tell the orchestrator this worker is connected and waits for its peer."""
    print("READY", flush=True)


def emit(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def main(benchmarks: dict[str, Any]) -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in benchmarks:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(benchmarks)}}} JSON-ARGS")
    args = json.loads(sys.argv[2])
    result = benchmarks[sys.argv[1]](args)
    result.setdefault("python", sys.version.split()[0])
    result.setdefault("pid", os.getpid())
    emit(result)


def now() -> float:
    """CLOCK_MONOTONIC: comparable between processes on one Linux machine."""
    return time.monotonic()
