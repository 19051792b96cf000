"""Benchmark workers for slixmpp (run by bench/run with bench/.venv/bin/python).

    bench/.venv/bin/python bench/workers_slixmpp.py NAME 'JSON-ARGS'   # "RESULT {...}" last

Each measures the same thing as its namesake in workers_simplexmpp.py. slixmpp connects to the
STARTTLS port with ``enable_direct_tls = False`` and trusts the server's self-signed
certificate through ``ca_certs``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import HEADER, chunks, cpu_seconds, now, proc_status, ready  # noqa: E402

import slixmpp  # noqa: E402
from slixmpp import ClientXMPP, JID  # noqa: E402

logging.basicConfig(level=logging.CRITICAL)


def new_client(a: dict[str, Any], jid: str, *plugins: str) -> ClientXMPP:
    xmpp = ClientXMPP(jid, a["password"])
    xmpp.enable_direct_tls = False
    xmpp.ca_certs = Path(a["ca"])
    for plugin in plugins:
        xmpp.register_plugin(plugin)
    return xmpp


async def connect(xmpp: ClientXMPP, a: dict[str, Any], timeout: float = 60) -> None:
    started = asyncio.get_running_loop().create_future()

    def on_start(_: object) -> None:
        if not started.done():
            started.set_result(None)

    def on_fail(event: object) -> None:
        if not started.done():
            started.set_exception(RuntimeError(f"slixmpp could not connect: {event}"))

    xmpp.add_event_handler("session_start", on_start)
    xmpp.add_event_handler("failed_auth", on_fail)
    xmpp.add_event_handler("connection_failed", on_fail)
    xmpp.connect(a["host"], a["port"])
    await asyncio.wait_for(started, timeout)


async def disconnect(xmpp: ClientXMPP) -> None:
    done = asyncio.get_running_loop().create_future()
    xmpp.add_event_handler("disconnected",
                           lambda _: done.done() or done.set_result(None))
    xmpp.disconnect()
    try:
        await asyncio.wait_for(done, 10)
    except asyncio.TimeoutError:
        xmpp.abort()


def fed_client() -> tuple[ClientXMPP, queue.SimpleQueue[Any]]:
    """A ClientXMPP on a fresh loop whose parser has seen the stream header, its "message"
    handler putting into the returned queue: the receive path without a socket."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    xmpp = ClientXMPP("bob@localhost/phone", "password")
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    xmpp.add_event_handler("message", inbox.put)
    xmpp.init_parser()
    xmpp.data_received(HEADER)
    return xmpp, inbox


def bench_receive(a: dict[str, Any]) -> dict[str, Any]:
    """Bytes -> XMLStream.data_received -> Message stanza -> "message" handler -> a queue.
    With "consume": the handler is the consumer (takes each message as it arrives)."""
    count = a["count"]
    pieces = chunks(benchlib.stanzas(count))
    if a.get("consume"):
        asyncio.set_event_loop(asyncio.new_event_loop())
        xmpp = ClientXMPP("bob@localhost/phone", "password")
        taken = [0]

        def handler(msg: Any) -> None:
            taken[0] += 1

        xmpp.add_event_handler("message", handler)
        xmpp.init_parser()
        xmpp.data_received(HEADER)
        start = time.perf_counter()
        for piece in pieces:
            xmpp.data_received(piece)
        seconds = time.perf_counter() - start
        if taken[0] != count:
            raise SystemExit(f"slixmpp's handler got {taken[0]} of {count} messages")
        return {"count": count, "seconds": seconds, "rate": count / seconds,
                "version": slixmpp.__version__}
    xmpp, inbox = fed_client()
    start = time.perf_counter()
    for piece in pieces:
        xmpp.data_received(piece)
    seconds = time.perf_counter() - start
    if inbox.qsize() != count:
        raise SystemExit(f"slixmpp delivered {inbox.qsize()} of {count} messages")
    first, take_seconds = benchlib.take_all(inbox.get, count)
    assert first["body"] == benchlib.body(0), first["body"]
    return {"count": count, "seconds": seconds, "rate": count / seconds,
            "taken_rate": count / (seconds + take_seconds), "version": slixmpp.__version__}


def bench_bigstanza(a: dict[str, Any]) -> dict[str, Any]:
    size = a["size"]
    xmpp, inbox = fed_client()
    pieces = chunks(benchlib.big_stanza(size))
    tracemalloc.start()
    tracemalloc.reset_peak()
    for piece in pieces:
        xmpp.data_received(piece)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"size": size, "peak_mb": peak / 2**20,
            "outcome": "accepted" if inbox.qsize() == 1 else "lost",
            "limit_mb": None, "delivered": inbox.qsize()}


async def _e2e_recv(a: dict[str, Any]) -> dict[str, Any]:
    xmpp = new_client(a, a["jid"])
    await connect(xmpp, a)
    count = a["count"]
    state: dict[str, Any] = {"received": 0, "t_first": None, "t_last": None}
    done = asyncio.get_running_loop().create_future()

    def on_message(msg: Any) -> None:
        if state["t_first"] is None:
            state["t_first"] = now()
        state["received"] += 1
        if state["received"] == count:
            state["t_last"] = now()
            done.set_result(None)

    xmpp.add_event_handler("message", on_message)
    cpu0 = cpu_seconds()
    ready()
    idle = a.get("idle_timeout", 60)
    last = -1
    while not done.done():
        try:
            await asyncio.wait_for(asyncio.shield(done), idle)
        except asyncio.TimeoutError:
            if state["received"] == last:
                break  # nothing arrived for `idle` seconds
            last = state["received"]
    state["cpu"] = cpu_seconds() - cpu0
    await disconnect(xmpp)
    return state


async def _e2e_send(a: dict[str, Any]) -> dict[str, Any]:
    xmpp = new_client(a, a["jid"])
    await connect(xmpp, a)
    to = JID(a["to"])
    cpu0 = cpu_seconds()
    t_first = now()
    for i in range(a["count"]):
        xmpp.send_message(mto=to, mbody=benchlib.body(i), mtype="chat")
    t_queued = now()
    # A ping answered after the messages proves the server handled them all (RFC 6120 §10.1).
    iq = xmpp.Iq()
    iq["type"] = "get"
    iq["to"] = JID("localhost")
    iq.append(slixmpp.ET.Element("{urn:xmpp:ping}ping"))
    await iq.send(timeout=600)
    t_flushed = now()
    cpu = cpu_seconds() - cpu0
    await disconnect(xmpp)
    return {"t_first": t_first, "t_queued": t_queued, "t_flushed": t_flushed, "cpu": cpu}


async def _ping(a: dict[str, Any]) -> dict[str, Any]:
    xmpp = new_client(a, a["jid"], "xep_0199")
    await connect(xmpp, a)
    server = JID("localhost")
    ping = xmpp["xep_0199"]
    for _ in range(a.get("warmup", 20)):
        await ping.send_ping(server, timeout=30)
    rtts = []
    for _ in range(a["count"]):
        start = time.perf_counter()
        await ping.send_ping(server, timeout=30)
        rtts.append(time.perf_counter() - start)
    await disconnect(xmpp)
    return benchlib.latency_summary(rtts)


async def _connect(a: dict[str, Any]) -> dict[str, Any]:
    times = []
    mechanism = None
    for i in range(a["count"]):
        xmpp = new_client(a, f"{a['jid']}{i}")
        start = time.perf_counter()
        await connect(xmpp, a)
        await xmpp.get_roster()
        times.append(time.perf_counter() - start)
        sasl = xmpp.plugin.get("feature_mechanisms", None)
        mechanism = getattr(getattr(sasl, "mech", None), "name", None)
        await disconnect(xmpp)
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
            "mechanism": mechanism, "n": len(times)}


async def _login(a: dict[str, Any]) -> dict[str, Any]:
    """slixmpp's login (its own choice of mechanism) from connect to session_start."""
    times = []
    mechanism = None
    for i in range(a["count"]):
        xmpp = new_client(a, f"{a['jid']}/login-{i}")
        start = time.perf_counter()
        await connect(xmpp, a)
        times.append(time.perf_counter() - start)
        sasl = xmpp.plugin.get("feature_mechanisms", None)
        mechanism = getattr(getattr(sasl, "mech", None), "name", None)
        await disconnect(xmpp)
    return {"median_ms": statistics.median(times) * 1000, "mechanism": mechanism,
            "n": len(times)}


async def _scale(a: dict[str, Any]) -> dict[str, Any]:
    n = a["connections"]
    benchlib.raise_fd_limit(4 * n + 256)
    rss0 = proc_status("VmRSS")
    clients = [new_client(a, f"user{i}@localhost/{a['resource']}") for i in range(1, n + 1)]
    limit = asyncio.Semaphore(16)  # as simplexmpp's Pool.connect(parallel=16)

    async def one(xmpp: ClientXMPP) -> None:
        async with limit:
            await connect(xmpp, a, timeout=120)

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in clients))
    connect_s = time.perf_counter() - start
    await asyncio.sleep(a.get("settle", 2))
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.sleep(a["idle"])
    idle_pct = 100 * (cpu_seconds() - cpu0) / (time.perf_counter() - t0)
    rss = proc_status("VmRSS")
    threads = proc_status("Threads")
    await asyncio.gather(*(disconnect(c) for c in clients))
    return {"connections": n, "connect_s": connect_s, "rss_mb": rss / 1024,
            "peak_rss_mb": proc_status("VmHWM") / 1024, "added_mb": (rss - rss0) / 1024,
            "per_conn_kb": (rss - rss0) / n, "threads": threads, "idle_cpu_pct": idle_pct}


def _async(fn: Any) -> Any:
    def run(a: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(fn(a))
        result["version"] = slixmpp.__version__
        return result
    return run


if __name__ == "__main__":
    benchlib.main({"receive": bench_receive, "bigstanza": bench_bigstanza,
                   "e2e-recv": _async(_e2e_recv), "e2e-send": _async(_e2e_send),
                   "ping": _async(_ping), "connect": _async(_connect), "login": _async(_login),
                   "scale": _async(_scale)})
