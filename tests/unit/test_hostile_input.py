"""Hostile or careless input to the client's API (issue 14): a typed error, nothing left behind."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import pytest

from simplexmpp import Client, Iq, Message, Pool, Presence, errors
from simplexmpp.client import IqFuture
from simplexmpp.jid import JID
from simplexmpp.roster import PresenceBook
from simplexmpp.testing import NO_REPLY, FakeServer
from simplexmpp.testing import xmpp_server  # noqa: F401  (the fixture)


def test_send_message_to_a_lone_surrogate_is_a_jid_error() -> None:
    client = Client("alice@localhost", "pw")
    with pytest.raises(errors.JIDError):
        client.send_message("bob\ud800@localhost", "hi")
    with pytest.raises(errors.JIDError):
        client.new_message("bob@localhost/\udfff", "hi")


# ---------------------------------------------------------------------------------------------
# Item 9: a huge or infinite timeout waits as long as it takes; NaN or a negative one is a
# ValueError; nothing is left in the pending-IQ table.

HUGE = [float("inf"), 1e12, threading.TIMEOUT_MAX * 10]
BAD = [float("nan"), -1.0, float("-inf")]


def ping_iq() -> Iq:
    return Iq.get("localhost", ET.Element("{urn:xmpp:ping}ping"))


@pytest.mark.parametrize("timeout", HUGE)
def test_huge_timeouts_wait_as_long_as_it_takes(xmpp_server: FakeServer,
                                                timeout: float) -> None:
    alice = xmpp_server.client("alice", timeout=timeout)   # the default timeout, too
    alice.connect(timeout=timeout)
    bob = xmpp_server.client("bob").connect()
    try:
        assert alice.iq(ping_iq(), timeout=timeout).type == "result"
        assert alice.iq(ping_iq()).type == "result"
        assert alice.ping(timeout=timeout) >= 0
        alice.send_message("bob@localhost", "one", timeout=timeout)
        alice.send(Message(to="bob@localhost", body="two"), timeout=timeout)
        assert bob.next_message(timeout=timeout).body == "one"
        assert next(iter(bob.messages(timeout=timeout))).body == "two"
        assert alice._core.pending == {}
    finally:
        bob.disconnect()
        alice.disconnect(timeout=timeout)


@pytest.mark.parametrize("timeout", BAD)
def test_nan_or_negative_timeouts_are_value_errors(xmpp_server: FakeServer,
                                                   timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        xmpp_server.client("alice", timeout=timeout)
    alice = xmpp_server.client("alice")
    with pytest.raises(ValueError, match="timeout"):
        alice.connect(timeout=timeout)
    alice.connect()
    try:
        calls = [lambda: alice.iq(ping_iq(), timeout=timeout),
                 lambda: alice.send_iq(ping_iq(), timeout=timeout),
                 lambda: alice.send_message("bob@localhost", "hi", timeout=timeout),
                 lambda: alice.send(Message(to="bob@localhost", body="hi"), timeout=timeout),
                 lambda: alice.next_message(timeout=timeout),
                 lambda: next(iter(alice.messages(timeout=timeout))),
                 lambda: alice.receipts.wait("nothing", timeout=timeout),
                 lambda: alice.get_roster(timeout=timeout)]
        for call in calls:
            with pytest.raises(ValueError, match="timeout"):
                call()
        assert alice._core.pending == {}
        with pytest.raises(ValueError, match="timeout"):
            alice.disconnect(timeout=timeout)
        assert alice.is_connected   # a refused timeout changed nothing
    finally:
        alice.disconnect()


def test_failed_send_iq_leaves_nothing_pending(xmpp_server: FakeServer) -> None:
    alice = xmpp_server.client("alice")
    with pytest.raises(errors.DisconnectedError):
        alice.send_iq(ping_iq())
    assert alice._core.pending == {}


def test_iq_interrupted_while_waiting_leaves_nothing_pending(
        xmpp_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    xmpp_server.script("{urn:example}slow", NO_REPLY)
    alice = xmpp_server.client("alice").connect()
    try:
        def interrupted(self: object, timeout: float | None = None) -> None:
            raise KeyboardInterrupt
        monkeypatch.setattr(IqFuture, "result", interrupted)
        with pytest.raises(KeyboardInterrupt):
            alice.iq(Iq.get("localhost", ET.Element("{urn:example}slow")))
        assert alice._core.pending == {}
    finally:
        monkeypatch.undo()
        alice.disconnect()


def test_pool_messages_with_an_infinite_timeout(xmpp_server: FakeServer) -> None:
    pool = Pool(host=xmpp_server.host, port=xmpp_server.port, tls="none", reconnect=False)
    pool.add("bob@localhost", "password")
    pool.connect()
    alice = xmpp_server.client("alice").connect()
    try:
        alice.send_message("bob@localhost", "hi")
        account, msg = next(iter(pool.messages(timeout=float("inf"))))
        assert account == "bob@localhost" and msg.body == "hi"
        with pytest.raises(ValueError, match="timeout"):
            next(iter(pool.messages(timeout=-1)))
    finally:
        alice.disconnect()
        pool.disconnect()


# ---------------------------------------------------------------------------------------------
# Seen while writing the client fuzzer: anyone may send us directed presence (RFC 6121 §4.6),
# from as many addresses as they like, and every one stayed in the presence book.

def test_presence_book_is_bounded(xmpp_server: FakeServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PresenceBook, "limit", 50)
    alice = xmpp_server.client("alice").connect()
    seen = threading.Semaphore(0)
    alice.on("presence", lambda presence: seen.release())
    try:
        for i in range(40):
            xmpp_server.inject(f"<presence from='stranger{i}@evil.example/r' to='{alice.jid}'/>")
        for i in range(30):
            xmpp_server.inject(f"<presence from='many@evil.example/r{i}' to='{alice.jid}'/>")
        xmpp_server.inject(f"<presence from='stranger39@evil.example/r' to='{alice.jid}'><show>"
                           "away</show></presence>")
        for _ in range(71):
            assert seen.acquire(timeout=10)
        book = alice._presences
        assert len(book) == 50
        assert sum(len(book.of(JID(f"stranger{i}@evil.example"))) for i in range(40)) == 20
        assert len(book.of(JID("many@evil.example"))) == 30
        assert book.of(JID("stranger0@evil.example")) == {}     # heard from longest ago
        assert book.of(JID("stranger39@evil.example"))["r"].show == "away"  # heard from last
        xmpp_server.inject(f"<presence from='many@evil.example' type='unavailable' "
                           f"to='{alice.jid}'/>")
        assert seen.acquire(timeout=10)
        assert len(book) == 20
    finally:
        alice.disconnect()


def test_presence_book_trims_one_entity_with_too_many_resources() -> None:
    book = PresenceBook()
    book.limit = 3
    for i in range(5):
        book.update(Presence(from_=f"many@evil.example/r{i}"))
    assert len(book) == 3 and sorted(book.of(JID("many@evil.example"))) == ["r2", "r3", "r4"]


def test_fake_server_takes_huge_timeouts_too() -> None:
    server = FakeServer(users={"alice": "pw"}).start()
    assert server.wait_for(lambda: True, timeout=float("inf"))
    with pytest.raises(ValueError, match="timeout"):
        server.wait_for(lambda: True, timeout=float("nan"))
    server.stop(timeout=float("inf"))
