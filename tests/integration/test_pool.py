"""Pool: many accounts in one process, one merged message stream (real Prosody)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

import pytest

from simplexmpp import Pool

from .conftest import Server


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
