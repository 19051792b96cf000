"""Hostile peers through a real Prosody (issue 14 items 3 and 4): what the server lets through
must not end or corrupt the session.

Prosody refuses to route most malformed addresses itself (``/``, ``a@b@localhost``,
``@localhost``, U+202E: stringprep forbids them; those are scripted in test_hostile.py). What
it passes are addresses stringprep allows and PRECIS (RFC 7622) does not, such as a symbol in
a localpart (``☃@…``) or an old Hangul jamo in a resource; a component (XEP-0114) may send
from any of them at its own domain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from simplexmpp import Client, Iq, errors
from simplexmpp.jid import JID
from simplexmpp.roster import item_element

from .conftest import Server
from .hostile import Conn, raw_component


@pytest.fixture
def component_conn(server: Server) -> Iterator[Conn]:
    conn = raw_component(server.host, server.component_port, server.component,
                         server.component_secret)
    yield conn
    try:
        conn.send("</stream:stream>")
    except OSError:
        pass
    conn.close()


@pytest.mark.parametrize("local, resource", [("\u2603", "x"), ("peer", "\u1160")])
def test_malformed_sender_through_prosody_is_dropped_and_the_session_lives(
        server: Server, connect: Callable[..., Client], component_conn: Conn,
        caplog: pytest.LogCaptureFixture, local: str, resource: str) -> None:
    victim = connect(reconnect=False)
    bad = f"{local}@{server.component}/{resource}"
    to = str(victim.jid)
    events: list[object] = []
    for name in ("presence", "receipt", "chat_state"):
        victim.on(name, lambda *args, name=name: events.append((name, args)))
    with caplog.at_level(logging.WARNING, logger="simplexmpp"):
        component_conn.send(
            f"<presence from='{bad}' to='{to}'/>"
            f"<message from='{bad}' to='{to}' type='chat' id='m1'><body>forged</body>"
            "<request xmlns='urn:xmpp:receipts'/>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
            f"<message from='{bad}' to='{to}' type='chat' id='m2'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
            f"<iq from='{bad}' to='{to}' type='get' id='q1'><query xmlns='urn:example'/></iq>")
        # Prosody routes our answer back to the component: jid-malformed, not the
        # service-unavailable an unknown query from a valid sender gets.
        reply = component_conn.read_until(r"<iq [^>]*>.*?</iq>").group(0).decode()
        assert "q1" in reply and "error" in reply and "jid-malformed" in reply
        component_conn.send(f"<message from='{server.component}' to='{to}' type='chat' "
                            "id='end'><body>end</body></message>")
        msg = victim.next_message(timeout=10)
        assert msg.body == "end", "a message from a malformed address was delivered"
        assert victim.is_connected and victim._core.sessions == 1
    assert events == []
    assert victim.presence_of(f"peer@{server.component}") == {}
    dropped = [r for r in caplog.records if "with a malformed from" in r.getMessage()]
    assert len(dropped) == 4
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_roster_push_from_a_second_session_of_our_account_is_refused(
        any_server: Server, connect_any: Callable[..., Client]) -> None:
    """RFC 6121 §2.1.6: the other resource routes an IQ set to our full JID; the server
    delivers it from alice@…/evil. It must not change our roster."""
    server, connect = any_server, connect_any
    account = server.new_account()
    victim = connect(account, resource="victim")
    victim.get_roster()
    evil = connect(account, resource="evil")
    forged = item_element(JID(f"mallory@{server.domain}"), name="Mallory")
    with pytest.raises(errors.IqError) as info:
        evil.iq(Iq.set(victim.jid, forged))
    assert info.value.condition == "service-unavailable"
    assert f"mallory@{server.domain}" not in victim.roster
    # The server's own push (after a roster set from any of our sessions) still applies.
    pushed = threading.Event()
    victim.on("roster_push", lambda item, removed: pushed.set())
    evil.add_contact(f"friend@{server.domain}", name="Friend")
    assert pushed.wait(10)
    assert victim.roster[f"friend@{server.domain}"].name == "Friend"
    assert f"mallory@{server.domain}" not in victim.roster


def test_carbon_of_a_message_from_a_malformed_sender_is_dropped(
        server: Server, connect: Callable[..., Client], component_conn: Conn,
        caplog: pytest.LogCaptureFixture) -> None:
    """A carbon comes from our own server, so it passes the check of the outer stanza; the
    copy inside it carries the peer's address, which must be checked before a "carbon_received"
    callback or messages() sees it."""
    account = server.new_account()
    victim = connect(account, resource="victim", reconnect=False)
    other = connect(account, resource="other", reconnect=False)
    victim.carbons.enable()
    copies: list[str | None] = []
    got = threading.Event()

    def on_carbon(copy: object) -> None:
        copies.append(getattr(copy, "body", None))
        got.set()

    victim.on("carbon_received", on_carbon)
    with caplog.at_level(logging.WARNING, logger="simplexmpp"):
        for sender, body in ((f"\u2603@{server.component}/x", "forged"),
                             (f"peer@{server.component}/x", "fine")):
            component_conn.send(f"<message from='{sender}' to='{other.jid}' type='chat' "
                                f"id='{body}'><body>{body}</body></message>")
        assert other.next_message(timeout=10).body == "fine"
        assert got.wait(10)
        assert victim.next_message(timeout=10).body == "fine"
    assert copies == ["fine"]
    assert victim.is_connected
    assert [r for r in caplog.records if "with a malformed from" in r.getMessage()]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
