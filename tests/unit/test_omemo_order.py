"""Arrival order with OMEMO: an encrypted message is decrypted off the I/O thread, and a plain
message of the same conversation that arrives after it must not overtake it (issue 16). The
decryption is replaced by a fake that waits until the test lets it go, so every order shown
here is fixed by the code, not by timing. The real-server test is in
tests/integration/test_omemo.py (test_a_plain_message_never_overtakes_an_encrypted_one)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from simplexmpp.errors import TimeoutError as XMPPTimeoutError
from simplexmpp.ext import omemo as omemo_ext
from simplexmpp.ext._omemo_order import Sequencer, conversation_of
from simplexmpp.stanza import Message, mark_encrypted
from simplexmpp.testing import FakeServer, xmpp_server  # noqa: F401

OLDMEMO = "eu.siacs.conversations.axolotl"
WAIT = 30.0  # how long a fake decryption waits for the test at most (never reached)


def encrypted(sender: str, to: str, ident: str) -> str:
    return (f"<message xmlns='jabber:client' to='{to}' from='{sender}' type='chat' "
            f"id='{ident}'><body>fallback</body><encrypted xmlns='{OLDMEMO}'>"
            "<header sid='42'><key rid='7'>AAAA</key><iv>AAAA</iv></header>"
            "<payload>AAAA</payload></encrypted></message>")


def plain(sender: str, to: str, ident: str) -> str:
    return (f"<message xmlns='jabber:client' to='{to}' from='{sender}' type='chat' "
            f"id='{ident}'><body>plain {ident}</body></message>")


def read_by_the_client(server: FakeServer, client: Any) -> None:
    """Return once `client` has read everything injected so far: a message of another
    conversation, injected last, has come out (so nothing here depends on timing)."""
    server.inject(plain("carol@localhost/x", str(client.jid), "mark"))
    msg = client.next_message(timeout=10)
    assert (msg.from_.bare, msg.body) == ("carol@localhost", "plain mark")


@pytest.fixture
def release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> threading.Event:
    """Decryption waits until the returned event is set, then 'decrypts' to `secret <id>`."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    gate = threading.Event()

    def fake_decrypt(self: omemo_ext.OMEMO, msg: Message, sender: Any, timeout: Any,
                     heal: bool = True) -> tuple[Message, bool]:
        assert gate.wait(WAIT)
        result = Message(omemo_ext._without_encryption(msg.xml))
        result.body = f"secret {msg.id}"
        mark_encrypted(result, OLDMEMO, 42)
        return result, False

    monkeypatch.setattr(omemo_ext.OMEMO, "_decrypt", fake_decrypt)
    return gate


def test_a_plain_message_waits_for_an_earlier_encrypted_one_from_the_same_peer(
        xmpp_server: FakeServer, release: threading.Event) -> None:
    alice = xmpp_server.client("alice")
    alice.connect()
    try:
        me = str(alice.jid)
        xmpp_server.inject(encrypted("bob@localhost/phone", me, "e1"))
        xmpp_server.inject(plain("bob@localhost/laptop", me, "p2"))  # another resource too
        xmpp_server.inject(plain("carol@localhost/x", me, "p3"))
        # Carol's conversation has nothing to wait for: it is not held up by Bob's.
        first = alice.next_message(timeout=10)
        assert (first.from_.bare, first.body) == ("carol@localhost", "plain p3")
        release.set()
        second = alice.next_message(timeout=10)
        third = alice.next_message(timeout=10)
        assert [(m.body, m.encryption) for m in (second, third)] == [
            ("secret e1", OLDMEMO), ("plain p2", None)]
        assert alice.omemo.order.held == 0
    finally:
        alice.disconnect()


def test_callbacks_see_the_same_order(xmpp_server: FakeServer,
                                      release: threading.Event) -> None:
    alice = xmpp_server.client("alice")
    seen: list[str | None] = []
    done, marked = threading.Event(), threading.Event()

    def on_message(msg: Message) -> None:
        seen.append(msg.body)
        if msg.body == "plain mark":
            marked.set()
        if len(seen) == 4:
            done.set()

    alice.on("message", on_message)
    alice.connect()
    try:
        me = str(alice.jid)
        xmpp_server.inject(encrypted("bob@localhost/a", me, "e1"))
        xmpp_server.inject(plain("bob@localhost/a", me, "p2"))
        xmpp_server.inject(encrypted("bob@localhost/a", me, "e3"))
        xmpp_server.inject(plain("carol@localhost/x", me, "mark"))
        assert marked.wait(10)  # read by the client, the rest of it too
        release.set()
        assert done.wait(10)
        assert seen == ["plain mark", "secret e1", "plain p2", "secret e3"]
    finally:
        alice.disconnect()


def test_a_decryption_that_fails_is_delivered_undecrypted_in_its_turn(
        xmpp_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    gate = threading.Event()

    def broken(self: omemo_ext.OMEMO, *args: Any, **kwargs: Any) -> tuple[Message, bool]:
        assert gate.wait(WAIT)
        raise RuntimeError("a bug in the decryption")

    monkeypatch.setattr(omemo_ext.OMEMO, "_decrypt", broken)
    alice = xmpp_server.client("alice")
    alice.connect()
    try:
        me = str(alice.jid)
        xmpp_server.inject(encrypted("bob@localhost/a", me, "e1"))
        xmpp_server.inject(plain("bob@localhost/a", me, "p2"))
        read_by_the_client(xmpp_server, alice)
        gate.set()
        first = alice.next_message(timeout=10)   # not lost, and first
        assert (first.id, first.body, first.encryption) == ("e1", None, OLDMEMO)
        assert "RuntimeError: a bug in the decryption" in (first.decryption_error or "")
        assert alice.next_message(timeout=10).body == "plain p2"
    finally:
        alice.disconnect()


def test_a_decryption_that_times_out_is_delivered_undecrypted_in_its_turn(
        xmpp_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real _decrypt with an engine whose operation times out (as Engine.run does)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    gate = threading.Event()

    class StuckEngine:
        def decrypt(self, *args: Any, **kwargs: Any) -> None:
            return None

        def run(self, coro: Any, timeout: float) -> Any:
            assert gate.wait(WAIT)
            raise XMPPTimeoutError(f"OMEMO operation took longer than {timeout:g} s")

    alice = xmpp_server.client("alice")
    monkeypatch.setattr(alice.omemo, "_active", True)
    monkeypatch.setattr(alice.omemo, "_ready", lambda timeout: StuckEngine())
    alice.connect()
    try:
        me = str(alice.jid)
        xmpp_server.inject(encrypted("bob@localhost/a", me, "e1"))
        xmpp_server.inject(plain("bob@localhost/a", me, "p2"))
        read_by_the_client(xmpp_server, alice)
        gate.set()
        first = alice.next_message(timeout=10)
        assert (first.id, first.body, first.sender_device) == ("e1", None, 42)
        assert "took longer than" in (first.decryption_error or "")
        assert alice.next_message(timeout=10).body == "plain p2"
    finally:
        alice.disconnect()


def test_carbon_copies_keep_the_order_of_the_conversation(
        xmpp_server: FakeServer, release: threading.Event) -> None:
    alice = xmpp_server.client("alice")
    alice.connect()
    try:
        me = str(alice.jid)
        inner = encrypted("bob@localhost/a", "alice@localhost/other", "e1").replace(
            "xmlns='jabber:client' ", "")
        # XEP-0280 §6: a copy of what Bob sent to our other device, from our own account.
        xmpp_server.inject(f"<message xmlns='jabber:client' from='alice@localhost' to='{me}'>"
                           "<received xmlns='urn:xmpp:carbons:2'>"
                           "<forwarded xmlns='urn:xmpp:forward:0'>"
                           f"<message xmlns='jabber:client' {inner[len('<message '):]}"
                           "</forwarded></received></message>")
        xmpp_server.inject(plain("bob@localhost/a", me, "p2"))
        read_by_the_client(xmpp_server, alice)
        release.set()
        first = alice.next_message(timeout=10)
        assert (first.id, first.body) == ("e1", "secret e1")
        assert alice.next_message(timeout=10).body == "plain p2"
    finally:
        alice.disconnect()


# -- the sequencer alone ------------------------------------------------------------------------
def test_sequencer_hands_out_in_order_per_conversation() -> None:
    order = Sequencer()
    out: list[str] = []
    first = order.reserve("bob@x")
    assert first is not None
    assert not order.hold("carol@x", out.append, "carol")   # nothing waits there: not held
    assert order.hold("bob@x", out.append, "p2")
    second = order.reserve("bob@x")
    assert second is not None
    assert order.hold("bob@x", out.append, "p4")
    order.fill(second, out.append, "e3")           # done early: waits for the first
    assert out == [] and order.held == 4
    order.fill(first, out.append, "e1")
    assert out == ["e1", "p2", "e3", "p4"] and order.held == 0
    assert not order.hold("bob@x", out.append, "p5")          # nothing waits any more


def test_sequencer_an_empty_message_and_a_failing_hand_out_do_not_stop_the_queue() -> None:
    order = Sequencer()
    out: list[str] = []
    empty = order.reserve("bob@x")
    broken = order.reserve("bob@x")
    assert empty is not None and broken is not None
    assert order.hold("bob@x", out.append, "p3")

    def fail(_: str) -> None:
        raise RuntimeError("a bug where it is handed out")

    order.fill(broken, fail, "e2")
    order.fill(empty, None)   # key material only: nothing to hand out
    assert out == ["p3"] and order.held == 0


def test_sequencer_is_bounded_and_then_hands_out_unordered() -> None:
    order = Sequencer(limit=2)
    out: list[str] = []
    first = order.reserve("bob@x")
    assert first is not None
    assert order.hold("bob@x", out.append, "p2")
    assert order.reserve("bob@x") is None        # full: decrypted and handed out unordered
    assert not order.hold("bob@x", out.append, "p4")  # full: the caller hands it out now
    assert order.unordered == 2 and order.held == 2
    order.fill(first, out.append, "e1")
    assert out == ["e1", "p2"] and order.held == 0


def test_sequencer_a_message_handed_out_in_its_turn_passes_the_gate() -> None:
    """What a turn delivers goes through the client's gate again (deliver()): it must pass,
    though later messages of the conversation are still waiting."""
    order = Sequencer()
    out: list[str] = []
    first, second = order.reserve("bob@x"), order.reserve("bob@x")
    assert first is not None and second is not None

    def deliver(text: str) -> None:  # like Client.deliver, which asks the gate
        if not order.hold("bob@x", out.append, text):
            out.append(text)

    order.fill(first, deliver, "e1")
    assert out == ["e1"] and order.held == 1
    order.fill(second, deliver, "e2")
    assert out == ["e1", "e2"]


def test_conversations_are_bare_jids() -> None:
    assert conversation_of("Bob@Example.org/Phone") == "bob@example.org"
    assert conversation_of("room@muc.example.org") == "room@muc.example.org"
    assert conversation_of(None) == ""


def test_the_clients_gate_is_on_only_while_a_message_waits(
        xmpp_server: FakeServer, release: threading.Event) -> None:
    """Nothing on the receive path while no decryption is pending (issue 18's budget)."""
    alice = xmpp_server.client("alice")
    alice.connect()
    try:
        router = alice._router
        assert router.gate is None
        me = str(alice.jid)
        xmpp_server.inject(encrypted("bob@localhost/a", me, "e1"))
        read_by_the_client(xmpp_server, alice)
        assert router.gate is not None and alice.omemo.order.held == 1
        release.set()
        assert alice.next_message(timeout=10).body == "secret e1"
        with alice.omemo.order._lock:  # the hand-out that delivered it has ended
            assert router.gate is None and alice.omemo.order.held == 0
    finally:
        alice.disconnect()


def test_sequencer_tells_when_it_is_busy() -> None:
    changes: list[bool] = []
    order = Sequencer(on_busy=changes.append)
    first = order.reserve("bob@x")
    second = order.reserve("carol@x")
    assert first is not None and second is not None and changes == [True]
    order.fill(first, None)
    assert changes == [True]
    order.fill(second, None)
    assert changes == [True, False]
