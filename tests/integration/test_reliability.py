"""Never lose a message: dropped connections, a restarted server, a stalled link (real Prosody).

Figures printed here (run with ``-s``) are the ones quoted in docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp import Client
from simplexmpp.transport import Hub

from .conftest import Server, start_server
from .proxy import FaultProxy


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Prosody of its own, with its archive on disk as in production: Prosody's
    in-memory archive keeps only the last 1,000 messages of an account, fewer than these
    tests send, and the client's catch-up after a lost session reads the archive."""
    yield from start_server(tmp_path_factory.mktemp("durable"), "--archive", "internal")


@pytest.fixture
def proxy(durable: Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(durable.port)
    yield fault_proxy
    fault_proxy.close()


@pytest.fixture(params=["own-thread", "hub"])
def io_mode(request: pytest.FixtureRequest) -> str | Hub:
    """Each connection on its client's own I/O thread, or all of the test's connections on
    one shared hub thread (what a Pool does)."""
    return Hub("test-hub") if request.param == "hub" else request.param


def connected(server: Server, io_mode: str | Hub, **kwargs: object) -> Client:
    if isinstance(io_mode, Hub):
        kwargs["hub"] = io_mode
    return server.client(server.new_account(), **kwargs).connect()


def collect(client: Client, expected: int, idle: float = 20) -> list[str]:
    bodies = []
    for msg in client.messages(timeout=idle):
        bodies.append(msg.body or "")
        if len(bodies) >= expected:
            break
    return bodies


def report(name: str, sent: int, bodies: list[str], cuts: int, client: Client) -> None:
    counts = Counter(bodies)
    missing = sent - len(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\nRELIABILITY {name}: sent={sent} received={len(bodies)} missing={missing} "
          f"duplicates_delivered={duplicates} duplicates_dropped={client.duplicates_dropped} "
          f"cuts={cuts}")
    assert missing == 0, f"{missing} messages lost"
    assert duplicates == 0, f"{duplicates} duplicates delivered"


def cut_repeatedly(proxy: FaultProxy, times: int,
                   stop: threading.Event) -> tuple[list[int], threading.Thread]:
    """Cut every connection through ``proxy`` ``times`` times at random moments."""
    cuts: list[int] = []

    def run() -> None:
        rng = random.Random(1234)
        while len(cuts) < times and not stop.is_set():
            time.sleep(rng.uniform(0.05, 0.25))
            if proxy.cut_all():
                cuts.append(1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return cuts, thread


def test_sender_cut_twenty_times_loses_nothing(durable: Server, proxy: FaultProxy,
                                               io_mode: str | Hub) -> None:
    bob = connected(durable, io_mode)
    alice = connected(durable, io_mode, port=proxy.port, timeout=30, reconnect_max_delay=1.0)
    try:
        bob.send_presence()
        stop = threading.Event()
        cuts, cutter = cut_repeatedly(proxy, 20, stop)
        total = 5000
        for i in range(total):
            alice.send_message(bob.account, f"m{i}")
            if i % 250 == 0:
                time.sleep(0.05)  # spread the sending over the cuts
        cutter.join(60)
        stop.set()
        alice.disconnect()  # flushes: every message acknowledged by the server
        bodies = collect(bob, total)
        report("sender-cuts", total, bodies, len(cuts), bob)
        assert len(cuts) == 20
        assert bodies == [f"m{i}" for i in range(total)], "messages arrived out of order"
    finally:
        bob.disconnect()


def test_receiver_cut_twenty_times_loses_nothing(durable: Server, proxy: FaultProxy,
                                                 io_mode: str | Hub) -> None:
    bob = connected(durable, io_mode, port=proxy.port, timeout=30, reconnect_max_delay=1.0)
    alice = connected(durable, io_mode)
    try:
        bob.send_presence()
        stop = threading.Event()
        cuts, cutter = cut_repeatedly(proxy, 20, stop)
        total = 5000
        bodies: list[str] = []
        reader = threading.Thread(target=lambda: bodies.extend(collect(bob, total, 30)))
        reader.start()
        for i in range(total):
            alice.send_message(bob.account, f"m{i}")
            if i % 250 == 0:
                time.sleep(0.05)
        cutter.join(60)
        stop.set()
        reader.join(60)
        report("receiver-cuts", total, bodies, len(cuts), bob)
        assert len(cuts) == 20
    finally:
        alice.disconnect()
        bob.disconnect()


def test_prosody_restart_mid_session_loses_and_duplicates_nothing(
        tmp_path: Path) -> None:
    instance = start_server(tmp_path / "restart")
    srv = next(instance)
    try:
        alice_jid, bob_jid = srv.new_account(), srv.new_account()
        alice = srv.client(alice_jid, timeout=30, reconnect_max_delay=1).connect()
        bob = srv.client(bob_jid, timeout=30, reconnect_max_delay=1).connect()
        bob.send_presence()
        reconnected = threading.Event()
        bob.on("connected", lambda jid: reconnected.set())
        total = 2000
        bodies: list[str] = []
        reader = threading.Thread(target=lambda: bodies.extend(collect(bob, total, 60)))
        reader.start()
        for i in range(total):
            if i == total // 2:
                srv.restart()
            alice.send_message(bob_jid, f"m{i}", timeout=60)
        assert reconnected.wait(60), "bob never reconnected"
        alice.disconnect(timeout=30)
        reader.join(90)
        report("prosody-restart", total, bodies, 1, bob)
        bob.disconnect()
    finally:
        try:
            next(instance)
        except StopIteration:
            pass


def test_stalled_connection_is_detected_and_recovered(durable: Server, proxy: FaultProxy,
                                                      io_mode: str | Hub) -> None:
    alice = connected(durable, io_mode, port=proxy.port, keepalive=1, timeout=2)
    bob = connected(durable, io_mode)
    try:
        bob.send_presence()  # available, so chat messages reach this session (RFC 6121 §8.5.2)
        lost = threading.Event()
        back = threading.Event()
        alice.on("reconnecting", lambda exc: lost.set())
        alice.on("resumed", lambda jid: back.set())
        alice.on("connected", lambda jid: back.set())
        proxy.stall()
        assert lost.wait(15), "the stalled connection was never noticed"
        proxy.cut_all()
        proxy.unstall()
        assert back.wait(15), "the client did not come back"
        alice.send_message(bob.account, "after the stall")
        assert bob.next_message(timeout=10).body == "after the stall"
    finally:
        proxy.unstall()
        alice.disconnect()
        bob.disconnect()


def test_disconnect_right_after_a_burst_delivers_everything(connect) -> None:
    total = 20000
    # bob reads only after the burst: his inbox must hold all of it (the default bound,
    # 10,000, would give up the oldest: see test_realuse.py).
    alice, bob = connect(), connect(max_inbox=total)
    bob.send_presence()
    for i in range(total):
        alice.send_message(bob.jid.bare, f"m{i}")
    # Must flush, not drop (slixmpp 1.17 lost 2,498 of 20,000 here). The server handles
    # about 1,400 messages/s, slower on a loaded machine: give the flush room.
    alice.disconnect(timeout=120)
    bodies = collect(bob, total, 30)
    report("burst-then-disconnect", total, bodies, 0, bob)


def test_calls_made_while_reconnecting_wait_for_the_session(durable: Server,
                                                            proxy: FaultProxy) -> None:
    alice = durable.client(durable.new_account(), port=proxy.port, timeout=20).connect()
    try:
        proxy.cut_all()
        assert alice.ping(timeout=20) > 0  # waits for the reconnection, then answers
    finally:
        alice.disconnect()


def test_no_reconnect_after_user_disconnect(durable: Server, proxy: FaultProxy) -> None:
    alice = durable.client(durable.new_account(), port=proxy.port).connect()
    before = proxy.connections
    alice.disconnect()
    time.sleep(0.5)
    assert proxy.connections == before
    assert not alice.is_connected
