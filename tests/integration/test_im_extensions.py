"""The small IM extensions against the real servers (Prosody and ejabberd): disco/caps, version, receipts, chat
states, markers, correction, blocking, CSI, carbons."""

from __future__ import annotations

import queue
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from simplexmpp import JID, Client, Message, errors
from simplexmpp.ext.correction import replaced_id
from simplexmpp.ext.disco import CAPS_NS, Disco, INFO_NS

from .conftest import Server
from .proxy import FaultProxy


def collect(client: Client, event: str) -> "queue.SimpleQueue[tuple[Any, ...]]":
    found: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    client.on(event, lambda *args: found.put(args))
    return found


def no_message(client: Client, wait: float = 0.5) -> bool:
    try:
        client.next_message(timeout=wait)
    except errors.TimeoutError:
        return True
    return False


# -- XEP-0030 / XEP-0115 ----------------------------------------------------------------------

def test_server_disco_lists_its_services(connect_any, any_server: Server) -> None:
    client = connect_any()
    info = client.disco.info()
    assert info.has_identity("server", "im")
    assert "urn:xmpp:carbons:2" in info.features
    items = {str(item.jid) for item in client.disco.items()}
    assert {any_server.muc, any_server.upload} <= items
    muc = client.disco.find("conference", "text")
    assert [str(i.jid) for i in muc] == [any_server.muc]
    with pytest.raises(errors.IqError):
        client.disco.info(any_server.muc, node="no-such-node")


def test_peers_answer_disco_and_caps_are_verified_and_cached(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    bob.local_features.add("urn:example:feature")
    seen = threading.Event()
    alice.on("presence", lambda p: seen.set() if p.from_ == bob.jid else None)
    # Directed presence carries caps as well.
    bob.send_presence(status="here", to=alice.jid)
    assert seen.wait(10)
    caps = alice.disco.caps_of(bob.jid)
    assert caps is not None and caps[1] == bob.disco.ver and caps[2] == "sha-1"
    Disco._cache.clear()
    info = alice.disco.capabilities(bob.jid)
    assert "urn:example:feature" in info.features and INFO_NS in info.features
    assert CAPS_NS in info.features
    assert ("sha-1", bob.disco.ver) in Disco._cache
    # Asked directly, without a node, bob answers the same.
    assert alice.disco.info(bob.jid).features == info.features
    # A node we do not have is item-not-found.
    with pytest.raises(errors.IqError) as failure:
        alice.disco.info(bob.jid, node="urn:none")
    assert failure.value.condition == "item-not-found"


def test_a_lying_caps_hash_is_not_cached(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    seen = threading.Event()
    alice.on("presence", lambda p: seen.set() if p.from_ == bob.jid else None)
    presence = ET.Element("{jabber:client}presence", to=str(alice.jid))
    ET.SubElement(presence, "{%s}c" % CAPS_NS, hash="sha-1", node="urn:x", ver="bogus=")
    bob.disco.nodes["urn:x#bogus="] = bob.disco.local_info()
    bob.send(presence)
    assert seen.wait(10)
    Disco._cache.clear()
    info = alice.disco.capabilities(bob.jid)
    assert INFO_NS in info.features
    assert ("sha-1", "bogus=") not in Disco._cache


# -- XEP-0092 ---------------------------------------------------------------------------------

def test_software_version_of_server_and_peer(connect_any, any_server: Server) -> None:
    alice, bob = connect_any(), connect_any()
    assert alice.version.get().name.lower() == any_server.kind
    answer = alice.version.get(bob.jid)
    assert answer.name == "simplexmpp" and answer.version and answer.os is None


# -- XEP-0184 ---------------------------------------------------------------------------------

def test_receipts_are_requested_answered_and_awaited(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    bob.receipts.reply_to = "all"
    receipts = collect(alice, "receipt")
    msg_id = alice.receipts.send(bob.jid, "did you get it?")
    assert bob.next_message(timeout=10).body == "did you get it?"
    assert alice.receipts.wait(msg_id, timeout=10) == bob.jid
    assert receipts.get(timeout=10) == (bob.jid, msg_id)
    assert no_message(alice)  # the receipt itself is not a chat message


def test_receipts_are_not_given_to_strangers_by_default(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    msg_id = alice.receipts.send(bob.jid, "hello stranger")
    assert bob.next_message(timeout=10).body == "hello stranger"
    with pytest.raises(errors.TimeoutError):
        alice.receipts.wait(msg_id, timeout=1)


# -- XEP-0085 / XEP-0333 / XEP-0308 -----------------------------------------------------------

def test_chat_states_are_events_not_messages(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    states = collect(bob, "chat_state")
    alice.chatstates.send(bob.jid, "composing")
    sender, state, _ = states.get(timeout=10)
    assert (sender, state) == (alice.jid, "composing")
    assert no_message(bob)
    with pytest.raises(ValueError):
        alice.chatstates.send(bob.jid, "shouting")


def test_markers_round_trip(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    markers = collect(alice, "marker")
    msg_id = alice.markers.send_markable(bob.jid, "read me")
    msg = bob.next_message(timeout=10)
    bob.markers.mark(msg)
    assert markers.get(timeout=10) == (bob.jid, "displayed", msg_id)
    assert no_message(alice)


def test_correction_names_the_replaced_message(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    first_id = alice.send_message(bob.jid, "helo")
    alice.correction.send(bob.jid, "hello", replaces=first_id)
    original, fixed = bob.next_message(timeout=10), bob.next_message(timeout=10)
    assert fixed.body == "hello" and replaced_id(fixed) == first_id
    assert bob.correction.is_valid(original, fixed)


# -- XEP-0191 ---------------------------------------------------------------------------------

def test_blocking_stops_messages_and_is_pushed_to_other_sessions(connect_any, any_server: Server) -> None:
    alice = connect_any()
    alice2 = connect_any(str(alice.account.bare), resource="second")
    bob = connect_any()
    changes = collect(alice2, "blocklist_changed")
    # XEP-0191 §3.3: pushes go to the sessions that have asked for the list.
    assert alice2.blocking.list() == set()
    alice.blocking.block(bob.account.bare)
    assert alice.blocking.list() == {bob.account.bare}
    assert changes.get(timeout=10)[0] == {bob.account.bare}
    bob.send_message(alice.jid, "you cannot see this")
    assert no_message(alice, 1.0)
    alice.blocking.unblock()
    assert alice.blocking.list() == set()
    assert changes.get(timeout=10)[0] == set()
    bob.send_message(alice.jid, "now you can")
    assert alice.next_message(timeout=10).body == "now you can"


# -- XEP-0352 ---------------------------------------------------------------------------------

def test_client_state_indication(connect_any) -> None:
    alice = connect_any()
    assert alice.csi.available
    alice.csi.inactive()
    alice.csi.active()
    assert alice.csi.state == "active"
    assert alice.ping() > 0  # the stream is still fine


# -- XEP-0280 ---------------------------------------------------------------------------------

def test_carbons_are_enabled_again_on_a_new_session(connect: Any, server: Server) -> None:
    # The extensions start watching "connected" when first used (enable(), inactive()): a
    # session that replaces a lost one must get carbons again (and the CSI state is re-sent
    # on it without getting in the way).
    proxy = FaultProxy(server.port)
    phone = connect()
    laptop = connect(str(phone.account.bare), resource="laptop", port=proxy.port,
                     stream_management=False)  # a cut connection means a new session
    try:
        laptop.send_presence()
        laptop.carbons.enable()
        laptop.csi.inactive()
        copies = collect(laptop, "carbon_received")
        reconnected = threading.Event()
        laptop.on("connected", lambda jid: reconnected.set())
        proxy.cut_all()
        assert reconnected.wait(20)
        laptop.ping(timeout=10)  # the re-enable IQ and the CSI nonza went out before this
        bob = connect()
        bob.send_message(phone.jid, "to the phone, after the cut")
        assert phone.next_message(timeout=10).body == "to the phone, after the cut"
        copy = copies.get(timeout=10)[0]
        assert copy.body == "to the phone, after the cut"
    finally:
        laptop.disconnect(timeout=5)
        proxy.close()


def test_carbons_copy_both_directions_and_refuse_forgeries(connect_any) -> None:
    phone = connect_any()
    laptop = connect_any(str(phone.account.bare), resource="laptop")
    bob = connect_any()
    # ejabberd copies only to sessions that are available (have sent presence).
    phone.send_presence()
    laptop.send_presence()
    laptop.carbons.enable()
    received, sent = collect(laptop, "carbon_received"), collect(laptop, "carbon_sent")
    bob.send_message(phone.jid, "to the phone")
    assert phone.next_message(timeout=10).body == "to the phone"
    copy = received.get(timeout=10)[0]
    assert copy.body == "to the phone" and copy.from_ == bob.jid
    assert laptop.next_message(timeout=10).body == "to the phone"
    phone.send_message(bob.jid, "from the phone")
    out = sent.get(timeout=10)[0]
    assert out.body == "from the phone" and out.to == bob.account.bare or out.to == bob.jid
    # bob forges a carbon: dropped, counted, never delivered.
    forged = Message(to=laptop.jid, type="chat")
    wrapper = ET.SubElement(forged.xml, "{urn:xmpp:carbons:2}received")
    fwd = ET.SubElement(wrapper, "{urn:xmpp:forward:0}forwarded")
    ET.SubElement(fwd, "{jabber:client}message", {"from": "ceo@localhost/x", "type": "chat"}) \
        .append(ET.Element("{jabber:client}body"))
    bob.send(forged)
    deadline = time.monotonic() + 10
    while laptop.carbons.forged == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert laptop.carbons.forged == 1
    assert no_message(laptop)
    laptop.carbons.disable()
    bob.send_message(phone.jid, "no copy now")
    assert phone.next_message(timeout=10).body == "no copy now"
    assert no_message(laptop)
