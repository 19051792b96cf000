"""Pool: many accounts in one process, one merged message stream (real Prosody)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

from collections.abc import Callable

import pytest

from simplexmpp import Pool

from .conftest import Server


def io_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("simplexmpp-io-")]


def wait_until(predicate: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_two_hundred_accounts_in_one_pool(server: Server) -> None:
    count = 200
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        jids = list(ex.map(lambda i: server.new_account("pool"), range(count)))
    threads_before, rss_before = threading.active_count(), rss_mib()
    pool = Pool(host=server.host, port=server.port, ca_file=server.ca, timeout=60)
    for jid in jids:
        pool.add(jid, server.password)
    started = time.monotonic()
    pool.connect(parallel=16)
    connect_seconds = time.monotonic() - started
    try:
        assert all(client.state == "ready" for client in pool.clients)
        # Once ready, every connection is driven by the pool's one hub thread: the accounts'
        # own I/O threads end after handing over.
        assert pool.hub is not None
        assert wait_until(lambda: len(pool.hub) == count and not io_threads()), \
            (len(pool.hub), io_threads()[:5])
        assert [t.name for t in threading.enumerate()].count("simplexmpp-pool-io") == 1
        threads_connected, rss_connected = threading.active_count(), rss_mib()
        pool[jids[-1]].send_presence()
        for sender in jids[:10]:
            pool.send_message(sender, jids[-1], f"from {sender}")
        got = []
        for account, msg in pool.messages(timeout=30):
            assert account == jids[-1]
            got.append(msg.body)
            if len(got) == 10:
                break
        assert sorted(got) == sorted(f"from {s}" for s in jids[:10])
        print(f"\nPOOL accounts={count} connect_s={connect_seconds:.1f} "
              f"threads={threads_connected - threads_before} "
              f"rss_mib={rss_connected - rss_before:.1f} "
              f"per_account_kib={(rss_connected - rss_before) * 1024 / count:.0f}")
    finally:
        pool.disconnect(timeout=30)
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() <= threads_before, "threads outlived the pool"
    assert len(pool.hub) == 0


def test_pool_without_shared_io_keeps_a_thread_per_account(server: Server) -> None:
    jids = [server.new_account("own") for _ in range(3)]
    with Pool(host=server.host, port=server.port, ca_file=server.ca, shared_io=False) as pool:
        assert pool.hub is None
        for jid in jids:
            pool.add(jid, server.password)
        pool.connect()
        assert len([n for n in io_threads() if n.split("-io-")[1] in map(str, jids)]) == 3
        pool[jids[0]].send_presence()
        pool.send_message(jids[1], jids[0], "own threads")
        account, msg = next(pool.messages(timeout=20))
        assert (account, msg.body) == (jids[0], "own threads")


def test_hub_connections_keepalive_iq_and_disconnect(server: Server) -> None:
    """Timers (keepalive pings, XEP-0198 acks), IQ round trips and a clean close all work on
    the hub's thread; a client closed while others stay keeps the hub running."""
    jids = [server.new_account("hub") for _ in range(3)]
    pool = Pool(host=server.host, port=server.port, ca_file=server.ca, keepalive=1.5,
                timeout=20)
    for jid in jids:
        pool.add(jid, server.password)
    pool.connect()
    try:
        assert pool.hub is not None and wait_until(lambda: len(pool.hub) == 3)
        first = pool[jids[0]]
        sent_before = first._core.last_send
        # Silence for longer than the keepalive: the hub must send a ping and get the answer
        # (a client whose ping went unanswered would reconnect or fail).
        assert wait_until(lambda: first._core.last_send > sent_before + 1.0, 10)
        assert first.state == "ready" and first._core.sessions == 1
        assert first.ping(timeout=10) >= 0
        roster = pool[jids[1]].get_roster(timeout=10)
        assert len(roster) == 0
        pool.remove(jids[2], timeout=10)
        assert wait_until(lambda: len(pool.hub) == 2)
        pool[jids[0]].send_presence()
        pool.send_message(jids[1], jids[0], "still here")
        account, msg = next(pool.messages(timeout=20))
        assert (account, msg.body) == (jids[0], "still here")
    finally:
        pool.disconnect(timeout=20)
    assert wait_until(lambda: not [t for t in threading.enumerate()
                                   if t.name == "simplexmpp-pool-io"])


def test_pool_reports_failures_per_account(server: Server) -> None:
    good = server.new_account()
    pool = Pool(host=server.host, port=server.port, ca_file=server.ca, timeout=20,
                reconnect=False)
    pool.add(good, server.password)
    pool.add(server.new_account(), "wrong password")
    failures = pool.connect(raise_on_error=False)
    try:
        assert list(failures) == [pool.clients[1].account.bare]
        assert pool[good].state == "ready"
        with pytest.raises(ValueError):
            pool.add(good, server.password)  # the same account twice
    finally:
        pool.disconnect()
