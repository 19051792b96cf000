"""Benchmark workers for simplexmpp (run by bench/run with the project's Python).

    python bench/workers_simplexmpp.py NAME 'JSON-ARGS'    # prints "RESULT {...}" last
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

# SIMPLEXMPP_SRC: another source tree to measure (bench/run --baseline DIR).
sys.path.insert(0, os.environ.get("SIMPLEXMPP_SRC") or str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from parse import run_pull  # noqa: E402  (the XMLPullParser ceiling, as bench/parse.py)
from benchlib import HEADER, chunks, cpu_seconds, now, proc_status, ready  # noqa: E402

from simplexmpp import Client, Message, Pool, sasl  # noqa: E402
from simplexmpp.errors import StreamError  # noqa: E402
from simplexmpp.jid import JID  # noqa: E402
from simplexmpp.stream import ClientStream, Ready, StartTLS  # noqa: E402
from simplexmpp.transport import Target  # noqa: E402

TLS_FEATURES = (b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                b"<required/></starttls></stream:features>")
SASL_FEATURES = (b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                 b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>")
BIND_FEATURES = (b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                 b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>")


def _conn(client: Client) -> Any:
    """The object that reads for `client`: its Connection, or, in a source tree from before
    the client's layers (bench/run --baseline), the client itself."""
    return getattr(client, "_conn", client)


def read_all(client: Client, pieces: list[bytes], stream: ClientStream) -> None:
    """Feed `pieces` through the I/O thread's own read loop."""
    _conn(client)._read(FeedWire(pieces), stream)


class FeedWire:
    """Stands in for transport.Wire in Connection._read: hands out the given chunks, then None
    (= nothing more to read right now)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._it = iter(pieces)

    def recv(self) -> bytes | None:
        return next(self._it, None)


def ready_client(**kwargs: Any) -> tuple[Client, ClientStream]:
    """A Client whose stream machine was driven to the ready state (STARTTLS, SASL, bind,
    XEP-0198 enabled) by replaying a server transcript, exactly as the I/O thread would."""
    client = Client("bob@localhost/phone", "password", **kwargs)
    target = Target("127.0.0.1", 5222, False)
    conn = getattr(client, "_conn", None)
    if conn is None:  # a tree from before the client's layers (bench/run --baseline)
        stream = client._new_stream(target, {})  # type: ignore[attr-defined]
        client._stream = stream  # type: ignore[attr-defined]
    else:
        from simplexmpp.connection import ClientState
        stream = conn.role.new_stream(client, target, {}, None)
        conn.stream = client._core.stream = stream
        conn.state = ClientState.CONNECTING  # as connect() leaves it
    stream.start()

    sent = [b""]

    def server(data: bytes) -> list[object]:
        events = list(stream.receive_data(data))
        sent[0] = stream.data_to_send()
        return events

    def bind_id() -> bytes:   # the id of the bind request the stream just sent
        match = re.search(rb'<iq type="set" id="([^"]+)"', sent[0])
        assert match is not None, sent[0]
        return match.group(1)

    server(HEADER + TLS_FEATURES)
    assert server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") == [StartTLS()]
    stream.tls_established({})
    stream.data_to_send()
    server(HEADER + SASL_FEATURES)
    server(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    server(HEADER + BIND_FEATURES)
    server(b"<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           b"<jid>bob@localhost/phone</jid></bind></iq>" % bind_id())
    events = server(b"<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")
    assert any(isinstance(e, Ready) for e in events), events
    if conn is None:
        client._on_ready(JID("bob@localhost/phone"), stream.features,  # type: ignore[attr-defined]
                         resumed=False)
    else:
        conn.session_ready(JID("bob@localhost/phone"), stream.features, resumed=False)
    return client, stream


def _receive_consumed(count: int, pieces: list[bytes]) -> float:
    """The receive path with the consumer taking messages as they arrive, as a program does:
    a thread iterating `messages()` while this one runs Client._read over the bytes (two
    threads and the GIL, as with a real I/O thread). Seconds until the last is taken."""
    # Bounded by the count: a consumer that falls behind by more than the default 10,000
    # (the GIL gives the reading thread 5 ms slices) would lose the oldest, by design.
    client, stream = ready_client(max_inbox=count)
    taken = 0
    done = threading.Event()

    def consume() -> None:
        nonlocal taken
        for msg in client.messages():
            taken += 1
            if taken == count:
                break
        done.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    start = time.perf_counter()
    read_all(client, pieces, stream)
    end = time.monotonic() + 600
    while not done.wait(0.5) and not client.inbox_dropped and time.monotonic() < end:
        pass
    seconds = time.perf_counter() - start
    if client.inbox_dropped:
        raise SystemExit(f"simplexmpp's inbox gave up {client.inbox_dropped} messages")
    if taken != count:
        raise SystemExit(f"simplexmpp's consumer took {taken} of {count} messages")
    return seconds


def bench_receive(a: dict[str, Any]) -> dict[str, Any]:
    """Bytes -> ClientStream -> Router.message -> Message in the client's inbox, through
    Client._read (the reader thread's own loop), 4 KiB at a time."""
    count = a["count"]
    pieces = chunks(benchlib.stanzas(count))
    if a.get("consume"):
        seconds = _receive_consumed(count, pieces)
        pull_pieces = chunks(HEADER + benchlib.stanzas(count))
        start = time.perf_counter()
        assert run_pull(pull_pieces) == count
        pull_seconds = time.perf_counter() - start
        return {"count": count, "seconds": seconds, "rate": count / seconds,
                "pull_rate": count / pull_seconds}
    # Bounded (the default path, which checks the bound on every message) and large enough
    # to keep them all: nobody reads until the end.
    client, stream = ready_client(max_inbox=count)
    start = time.perf_counter()
    read_all(client, pieces, stream)
    seconds = time.perf_counter() - start
    delivered = client._inbox.qsize()
    if delivered != count:
        raise SystemExit(f"simplexmpp delivered {delivered} of {count} messages")
    # Then the consumer's side: the inbox holds elements and makes each Message as it is
    # taken (what messages()/next_message() do), so taking them out is timed too.
    first, take_seconds = benchlib.take_all(client._inbox.get, count)
    assert isinstance(first, Message) and first.body == benchlib.body(0), first
    pull_pieces = chunks(HEADER + benchlib.stanzas(count))
    start = time.perf_counter()
    got = run_pull(pull_pieces)
    pull_seconds = time.perf_counter() - start
    assert got == count
    return {"count": count, "seconds": seconds, "rate": count / seconds,
            "taken_rate": count / (seconds + take_seconds), "pull_rate": count / pull_seconds}


def _client(a: dict[str, Any], jid: str, **kw: Any) -> Client:
    options = {**a.get("client_options", {}), **kw}  # for experiments: Client keywords
    return Client(jid, a["password"], host=a["host"], port=a["port"], ca_file=a["ca"],
                  timeout=a.get("timeout", 60), **options)


def bench_e2e_recv(a: dict[str, Any]) -> dict[str, Any]:
    """Receive `count` messages: iterating `messages()` (mode "iter"), in a "message"
    callback on the dispatcher thread (mode "callback"), or left in the inbox (mode "none":
    the I/O thread's cost alone)."""
    client = _client(a, a["jid"]).connect()
    count = a["count"]
    received = 0
    t_first = t_last = None
    done = threading.Event()

    def on_message(msg: Message) -> None:
        nonlocal received, t_first, t_last
        if t_first is None:
            t_first = now()
        received += 1
        if received == count:
            t_last = now()
            done.set()

    callback = a.get("mode") == "callback"
    if callback:
        # Every call may wait at once (as max_inbox=count elsewhere): none given up.
        client.max_pending_callbacks = max(count, 1)
        client.on("message", on_message)
    cpu0 = cpu_seconds()
    thread0 = time.thread_time()
    ready()
    try:
        if a.get("mode") == "none":  # nobody takes them: the I/O thread alone (pace)
            end = time.monotonic() + a.get("idle_timeout", 60)
            while client._inbox.qsize() < count and time.monotonic() < end:
                time.sleep(0.1)  # ~10 wake-ups a second: < 0.2 µs per message at this pace
            received = client._inbox.qsize()
            t_first = t_last = now()
        elif callback:
            idle = a.get("idle_timeout", 60)
            last = -1
            while not done.wait(idle) and received != last:  # ends when idle for `idle` s
                last = received
        else:
            for msg in client.messages(timeout=a.get("idle_timeout", 60)):
                if t_first is None:
                    t_first = now()
                received += 1
                if received == count:
                    t_last = now()
                    break
    finally:
        cpu = cpu_seconds() - cpu0
        main_cpu = time.thread_time() - thread0  # the consumer's share (mode "iter")
        client.disconnect()
    return {"received": received, "t_first": t_first, "t_last": t_last, "cpu": cpu,
            "main_cpu": main_cpu}


def bench_e2e_send(a: dict[str, Any]) -> dict[str, Any]:
    client = _client(a, a["jid"]).connect()
    to = JID(a["to"])
    cpu0 = cpu_seconds()
    t_first = now()
    for i in range(a["count"]):
        client.send_message(to, benchlib.body(i))
    t_queued = now()
    client.disconnect()  # waits until the server acknowledged everything (XEP-0198)
    return {"t_first": t_first, "t_queued": t_queued, "t_flushed": now(),
            "cpu": cpu_seconds() - cpu0}


def bench_ping(a: dict[str, Any]) -> dict[str, Any]:
    with _client(a, a["jid"]) as client:
        for _ in range(a.get("warmup", 20)):
            client.ping()
        rtts = [client.ping() for _ in range(a["count"])]
    return benchlib.latency_summary(rtts)


def bench_connect(a: dict[str, Any]) -> dict[str, Any]:
    times = []
    mechanism = None
    for i in range(a["count"]):
        client = _client(a, f"{a['jid']}{i}")
        start = time.perf_counter()
        client.connect()
        client.get_roster()
        times.append(time.perf_counter() - start)
        mechanism = client.mechanism
        client.disconnect()
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
            "mechanism": mechanism, "n": len(times)}


def bench_login(a: dict[str, Any]) -> dict[str, Any]:
    """Alternately a password login and a FAST token login (XEP-0484) of fresh clients, each
    from connect() to the session ready; the token comes from one untimed login first."""
    store = Path(tempfile.mkdtemp(prefix="bench-tokens.")) / "tokens"
    first = _client(a, a["jid"], token_store=store)
    first.connect()
    first.disconnect()
    times: dict[str, list[float]] = {"password": [], "fast": []}
    mechanisms: dict[str, str | None] = {}
    for _ in range(a["count"]):
        for kind in ("password", "fast"):
            if kind == "fast":
                client = Client(a["jid"], None, host=a["host"], port=a["port"],
                                ca_file=a["ca"], timeout=60, token_store=store)
            else:
                client = _client(a, a["jid"])
                # As a script's run does: a new process has no salted password cached yet.
                sasl.clear_cache()
            start = time.perf_counter()
            client.connect()
            times[kind].append(time.perf_counter() - start)
            mechanisms[kind] = client.mechanism
            client.disconnect()
    shutil.rmtree(store.parent, ignore_errors=True)
    return {"fast_median_ms": statistics.median(times["fast"]) * 1000,
            "password_median_ms": statistics.median(times["password"]) * 1000,
            "fast_mechanism": mechanisms["fast"], "password_mechanism": mechanisms["password"],
            "n": a["count"]}


def _traced_per_connection(snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot,
                           n: int, key: str = "filename") -> dict[str, float]:
    """Python memory added per connection, by source file (KiB), largest first (`key`
    "lineno": by line)."""
    stats = snapshot.compare_to(base, key)
    out: dict[str, float] = {}
    for stat in stats[:14]:
        frame = stat.traceback[0]
        name = frame.filename if key == "filename" else f"{frame.filename}:{frame.lineno}"
        for marker in ("/simplexmpp/", "/lib/python3"):
            if marker in name:
                name = name[name.index(marker) + 1:]
                break
        out[name] = round(stat.size_diff / n / 1024, 2)
    out["total"] = round(sum(s.size_diff for s in stats) / n / 1024, 2)
    return out


def bench_scale(a: dict[str, Any]) -> dict[str, Any]:
    """`connections` accounts in one Pool: connect them all, settle, then idle; RSS, threads,
    idle CPU. With "trace": tracemalloc's view of the Python memory per connection by file
    (a separate run: tracing costs time and memory of its own)."""
    n = a["connections"]
    benchlib.raise_fd_limit(4 * n + 256)
    trace = a.get("trace")
    if trace:
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
    rss0 = proc_status("VmRSS")
    threads0 = threading.active_count()
    options = {"keepalive": a["keepalive"]} if a.get("keepalive") else {}
    pool = Pool(host=a["host"], port=a["port"], ca_file=a["ca"], timeout=a.get("timeout", 300),
                **options)
    for i in range(1, n + 1):
        pool.add(f"user{i}@localhost/{a['resource']}", a["password"])
    added_rss = proc_status("VmRSS")
    start = time.perf_counter()
    pool.connect(parallel=a.get("parallel", 16))
    connect_s = time.perf_counter() - start
    traced: dict[str, float] = {}
    try:
        time.sleep(a.get("settle", 2))
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        time.sleep(a["idle"])
        idle_pct = 100 * (cpu_seconds() - cpu0) / (time.perf_counter() - t0)
        rss = proc_status("VmRSS")
        threads = proc_status("Threads")
        if trace:
            traced = _traced_per_connection(tracemalloc.take_snapshot(), base, n,
                                            "lineno" if trace == "lineno" else "filename")
            tracemalloc.stop()
    finally:
        pool.disconnect()
    return {"connections": n, "connect_s": connect_s, "rss_mb": rss / 1024,
            "peak_rss_mb": proc_status("VmHWM") / 1024, "added_mb": (rss - rss0) / 1024,
            "per_conn_kb": (rss - rss0) / n, "clients_kb": (added_rss - rss0) / n,
            "threads": threads, "threads_python": threads0, "idle_cpu_pct": idle_pct,
            "traced_kb": traced}


def bench_cluster(a: dict[str, Any]) -> dict[str, Any]:
    """One process of the scale-out benchmark: a Pool of `accounts` on one cluster node,
    each sending `count` messages to its partner (a full JID connected to the other node,
    so every message crosses the cluster); counts what its own accounts receive. Prints
    READY once connected and starts sending when the orchestrator writes GO on stdin."""
    benchlib.raise_fd_limit(4 * len(a["accounts"]) + 256)
    pool = Pool(host=a["host"], port=a["port"], ca_file=a["ca"], timeout=a.get("timeout", 120),
                max_inbox=None)
    for name in a["accounts"]:
        pool.add(f"{name}@localhost/c", a["password"])
    start = time.perf_counter()
    pool.connect(parallel=a.get("parallel", 8))
    connect_s = time.perf_counter() - start
    expect, count = a["expect"], a["count"]
    received = 0
    t_last: float | None = None
    all_in = threading.Event()

    def receive() -> None:
        nonlocal received, t_last
        for _account, _msg in pool.messages(timeout=a.get("idle_timeout", 60)):
            received += 1
            if received == expect:
                t_last = now()
                all_in.set()
                return
        all_in.set()

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    ready()
    sys.stdin.readline()  # GO
    cpu0 = cpu_seconds()
    t_first = now()
    pairs = list(zip(a["accounts"], a["partners"]))
    sent = 0
    for i in range(count):
        for name, partner in pairs:
            pool.send_message(f"{name}@localhost", f"{partner}@localhost/c", benchlib.body(i))
            sent += 1
    t_queued = now()
    all_in.wait(a.get("idle_timeout", 60) + 600)
    cpu = cpu_seconds() - cpu0
    pool.disconnect()  # waits for the server's XEP-0198 acks of what we sent
    return {"accounts": len(pairs), "sent": sent, "received": received, "expect": expect,
            "t_first": t_first, "t_queued": t_queued, "t_last": t_last, "cpu": cpu,
            "connect_s": connect_s, "rss_mb": proc_status("VmRSS") / 1024}


def bench_bigstanza(a: dict[str, Any]) -> dict[str, Any]:
    """Peak memory while one stanza of ``size`` bytes arrives (default 1 MiB limit)."""
    size = a["size"]
    client, stream = ready_client()
    pieces = chunks(benchlib.big_stanza(size))
    tracemalloc.start()
    tracemalloc.reset_peak()
    outcome = "accepted"
    try:
        read_all(client, pieces, stream)
    except StreamError as exc:
        outcome = f"refused: {exc.condition}"
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"size": size, "peak_mb": peak / 2**20, "outcome": outcome,
            "limit_mb": client.max_stanza_size / 2**20, "delivered": client._inbox.qsize()}


if __name__ == "__main__":
    benchlib.main({"receive": bench_receive, "e2e-recv": bench_e2e_recv,
                   "e2e-send": bench_e2e_send, "ping": bench_ping, "connect": bench_connect,
                   "login": bench_login, "scale": bench_scale, "bigstanza": bench_bigstanza,
                   "cluster": bench_cluster})
