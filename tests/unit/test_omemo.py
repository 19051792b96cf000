"""OMEMO glue without a server: the JSON store, the SCE envelope, the marks on decrypted
messages, and two engines (python-omemo on their private loops) talking through an in-memory
PEP service. The real-server tests are tests/integration/test_omemo.py."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import stat
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")

from simplexmpp.errors import DisconnectedError, NoTrustedDevicesError, OMEMOError  # noqa: E402
from simplexmpp.ext import omemo as omemo_ext  # noqa: E402
from simplexmpp.ext._omemo_engine import OLDMEMO, TWOMEMO, Engine  # noqa: E402
from simplexmpp.ext._omemo_store import JSONStorage  # noqa: E402
from simplexmpp.ext.pubsub import Item, PubSubError  # noqa: E402
from simplexmpp.jid import JID  # noqa: E402
from simplexmpp.stanza import Message, encryption_of, mark_encrypted, new_id  # noqa: E402
from simplexmpp.testing import FakeServer, xmpp_client, xmpp_server  # noqa: E402,F401

TIMEOUT = 60.0


# -- the store ------------------------------------------------------------------------------
def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_store_round_trip_persists_with_mode_0600_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alice.json"
    store = JSONStorage(str(path), "alice@example.org")
    run(store.store("/own_device_id", 1234))
    run(store.store_bytes("/ikp/key", b"\x01\x02"))
    run(store.store("/gone", None))
    run(store.delete("/gone"))
    store.flush()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["alice.json", "alice.json.lock"]
    store.close()
    again = JSONStorage(str(path), "alice@example.org")
    try:
        assert run(again.load_primitive("/own_device_id", int)).from_just() == 1234
        assert run(again.load_bytes("/ikp/key")).from_just() == b"\x01\x02"
        assert run(again.load("/gone")).is_nothing
        assert omemo_ext.read_store_file(str(path))["/own_device_id"] == 1234
    finally:
        again.close()


def test_store_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "alice.json")
    first = JSONStorage(path, "alice@example.org")
    try:
        with pytest.raises(OMEMOError, match="in use by another process"):
            JSONStorage(path, "alice@example.org")   # flock: another open file description
    finally:
        first.close()
    JSONStorage(path, "alice@example.org").close()  # free again once closed


def test_store_refuses_another_account_and_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    JSONStorage(str(path), "alice@example.org").close()
    with pytest.raises(OMEMOError, match="belongs to alice@example.org"):
        JSONStorage(str(path), "bob@example.org")
    path.write_text("{not json")
    with pytest.raises(OMEMOError, match="damaged"):
        JSONStorage(str(path), "alice@example.org")
    path.write_text(json.dumps({"format": "other", "data": {}}))
    with pytest.raises(OMEMOError, match="not a simplexmpp OMEMO store"):
        JSONStorage(str(path), "alice@example.org")


def test_store_survives_concurrent_writers_and_readers(tmp_path: Path) -> None:
    store = JSONStorage(str(tmp_path / "alice.json"), "alice@example.org")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                run(store.store(f"/w{n}/{i}", {"i": i}))
                if i % 20 == 0:
                    store.flush()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
    data = omemo_ext.read_store_file(str(tmp_path / "alice.json"))
    assert all(data[f"/w{n}/{i}"] == {"i": i} for n in range(4) for i in range(200))


# -- XEP-0420 envelopes and the marks on messages ------------------------------------------------
def test_envelope_round_trip_and_hostile_plaintexts() -> None:
    body = ET.Element("{jabber:client}body")
    body.text = "héllo <&>"
    raw = omemo_ext.build_envelope([body], "alice@example.org", "room@muc.example.org")
    envelope = omemo_ext.parse_envelope(raw)
    sce = "{urn:xmpp:sce:1}"
    assert envelope.find(f"{sce}content/{{jabber:client}}body").text == "héllo <&>"
    assert envelope.find(f"{sce}from").get("jid") == "alice@example.org"
    assert envelope.find(f"{sce}to").get("jid") == "room@muc.example.org"
    assert envelope.find(f"{sce}rpad").text
    assert omemo_ext.parse_envelope(b"<?xml version='1.0'?>" + raw).tag == f"{sce}envelope"
    for bad in (b"<!DOCTYPE x [<!ENTITY a 'b'>]><envelope xmlns='urn:xmpp:sce:1'/>",
                b"<envelope xmlns='urn:xmpp:sce:1'>", b"<other/>", b"not xml",
                b"<envelope xmlns='urn:xmpp:sce:1'/><envelope xmlns='urn:xmpp:sce:1'/>"):
        with pytest.raises(ValueError):
            omemo_ext.parse_envelope(bad)


def test_encryption_marks_live_beside_the_element_and_cannot_be_sent() -> None:
    msg = Message(to="bob@example.org", body="hi")
    assert (msg.encryption, msg.sender_device, msg.decryption_error) == (None, None, None)
    mark_encrypted(msg, TWOMEMO, 7, "no session")
    again = Message(msg.xml)  # the inbox re-wraps the element: the mark stays
    assert (again.encryption, again.sender_device, again.decryption_error) == (
        TWOMEMO, 7, "no session")
    assert "omemo" not in str(msg)  # nothing in the XML a peer could have forged
    assert encryption_of(Message(to="bob@example.org")) is None


def test_a_store_path_per_account_under_the_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert omemo_ext.default_store_path("alice@example.org/phone") == str(
        tmp_path / "simplexmpp" / "omemo" / "alice@example.org.json")


# -- two engines through an in-memory PEP service ----------------------------------------------
class Network:
    """PEP nodes of every account, and the messages sent."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], dict[str, ET.Element]] = {}
        self.config: dict[tuple[str, str], dict[str, str]] = {}
        self.sent: list[Message] = []
        self.lock = threading.Lock()
        self.ejabberd = False  # refuse pubsub#max_items as a publish option, as ejabberd does
        self.publishes = 0


class FakePEP:
    def __init__(self, net: Network, owner: str) -> None:
        self.net, self.owner = net, owner

    def publish(self, node: str, payload: ET.Element, id: str | None = None,
                options: dict[str, str] | None = None, timeout: float | None = None) -> str:
        key = (self.owner, node)
        with self.net.lock:
            self.net.publishes += 1
            if self.net.ejabberd and "pubsub#max_items" in (options or {}):
                raise PubSubError("resource-constraint", "wait",
                                  "Unknown field 'pubsub#max_items' of type "
                                  "'http://jabber.org/protocol/pubsub#publish-options'")
            if key in self.net.config and options is not None and any(
                    self.net.config[key].get(k) != v for k, v in options.items()):
                raise PubSubError("conflict", pubsub_condition="precondition-not-met")
            self.net.config.setdefault(key, dict(options or {}))
            self.net.nodes.setdefault(key, {})[id or new_id()] = copy.deepcopy(payload)
        return id or ""

    def items(self, jid: str, node: str, max_items: int | None = None,
              item_ids: list[str] | None = None, timeout: float | None = None) -> list[Item]:
        with self.net.lock:
            found = self.net.nodes.get((str(JID(jid).bare), node))
            if found is None:
                # Prosody answers forbidden for another account's missing node
                raise PubSubError("forbidden" if jid != self.owner else "item-not-found")
            # like Prosody, item_ids is not honoured: every item comes back
            return [Item(i, copy.deepcopy(p)) for i, p in found.items()]

    def retract(self, node: str, id: str, notify: bool = True,
                timeout: float | None = None) -> None:
        with self.net.lock:
            self.net.nodes.get((self.owner, node), {}).pop(id, None)

    def delete(self, node: str, timeout: float | None = None) -> None:
        with self.net.lock:
            self.net.nodes.pop((self.owner, node), None)


class FakePubSub:
    def __init__(self, net: Network, owner: str) -> None:
        self.net, self.owner = net, owner

    def set_configuration(self, service: Any, node: str, config: dict[str, str],
                          timeout: float | None = None) -> None:
        with self.net.lock:
            self.net.config.setdefault((self.owner, node), {}).update(config)


class FakeClient:
    """What the engine uses of a Client."""

    def __init__(self, net: Network, jid: str) -> None:
        self.account = JID(jid)
        self.net = net
        self.pep = FakePEP(net, jid)
        self.pubsub = FakePubSub(net, jid)

    def new_message(self, to: str, body: str | None, type: str = "chat") -> Message:
        msg = Message(to=to, body=body, type=type, id=new_id())
        msg.xml.set("from", str(self.account) + "/res")
        return msg

    def send(self, stanza: Message, timeout: float | None = None) -> None:
        with self.net.lock:
            self.net.sent.append(stanza)


def engine(net: Network, jid: str, store: Path, policy: str = "blind") -> Engine:
    e = Engine(FakeClient(net, jid), str(store), lambda: policy)  # type: ignore[arg-type]
    e.run(e.start(1), TIMEOUT)
    return e


def encrypted_for(sender: Engine, to: str, text: str, namespace: str) -> ET.Element:
    body = ET.Element("{jabber:client}body")
    body.text = text
    plaintexts = {TWOMEMO: omemo_ext.build_envelope([body], sender.own),
                  OLDMEMO: text.encode()}
    elements = sender.run(sender.encrypt([to], plaintexts, [namespace]), TIMEOUT)
    assert [el.tag for el in elements] == ["{%s}encrypted" % namespace]
    return elements[0]


def read(receiver: Engine, element: ET.Element, namespace: str, sender: str) -> Any:
    return receiver.run(receiver.decrypt(element, namespace, sender), TIMEOUT)


@pytest.mark.parametrize("namespace", [TWOMEMO, OLDMEMO])
def test_engines_exchange_messages_and_a_restart_keeps_device_and_sessions(
        tmp_path: Path, namespace: str) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        # our device is announced: on the device lists and with a bundle, nodes open to all
        for account, e in (("alice@example.org", alice), ("bob@example.org", bob)):
            assert net.config[(account, "urn:xmpp:omemo:2:bundles")] == {
                "pubsub#access_model": "open", "pubsub#max_items": "max"}
            assert str(e.device_id) in ET.tostring(
                net.nodes[(account, "urn:xmpp:omemo:2:devices")]["current"]).decode()
        first = read(bob, encrypted_for(alice, "bob@example.org", "one", namespace),
                     namespace, "alice@example.org")
        assert first.error is None and first.device_id == alice.device_id
        text = first.plaintext if namespace == OLDMEMO else omemo_ext.parse_envelope(
            first.plaintext).find(".//{jabber:client}body").text.encode()
        assert text == b"one"
        answer = read(alice, encrypted_for(bob, "alice@example.org", "two", namespace),
                      namespace, "bob@example.org")
        assert answer.error is None
        bob_id = bob.device_id
        bob.close()
        exchanges_before = len(net.sent)
        bob = engine(net, "bob@example.org", tmp_path / "bob.json")  # the same store again
        assert bob.device_id == bob_id
        later = encrypted_for(alice, "bob@example.org", "three", namespace)
        # the session goes on: no new key exchange in what alice sends
        assert 'kex="true"' not in ET.tostring(later).decode() and \
            'prekey="true"' not in ET.tostring(later).decode()
        assert read(bob, later, namespace, "alice@example.org").error is None
        assert len(net.sent) == exchanges_before  # and nothing had to be healed
    finally:
        alice.close()
        bob.close()


def test_distrusted_device_is_not_encrypted_for_and_not_read(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    bob2 = engine(net, "bob@example.org", tmp_path / "bob2.json")
    try:
        assert read(bob2, encrypted_for(alice, "bob@example.org", "x", TWOMEMO), TWOMEMO,
                    "alice@example.org").error is None
        alice.run(alice.set_trust("bob@example.org", bob2.device_id, "distrusted"), TIMEOUT)
        element = encrypted_for(alice, "bob@example.org", "secret", TWOMEMO)
        assert str(bob2.device_id) not in ET.tostring(element).decode()
        assert read(bob2, element, TWOMEMO, "alice@example.org").error == \
            "not encrypted for this device"
        assert read(bob, element, TWOMEMO, "alice@example.org").error is None
        # and alice no longer reads that device either
        back = encrypted_for(bob2, "alice@example.org", "hi", TWOMEMO)
        assert "distrusted" in read(alice, back, TWOMEMO, "bob@example.org").error
        alice.run(alice.set_trust("bob@example.org", bob.device_id, "distrusted"), TIMEOUT)
        with pytest.raises(NoTrustedDevicesError) as caught:
            encrypted_for(alice, "bob@example.org", "nobody", TWOMEMO)
        assert caught.value.jids == ["bob@example.org"]
        with pytest.raises(OMEMOError, match="no OMEMO device 12345"):
            alice.run(alice.set_trust("bob@example.org", 12345, "trusted"), TIMEOUT)
    finally:
        for e in (alice, bob, bob2):
            e.close()


def test_blind_trust_until_a_device_is_verified_then_manual(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        trust = {d.device_id: d.trust_level_name
                 for d in alice.run(alice.devices("bob@example.org"), TIMEOUT)}
        assert trust == {bob.device_id: "blind"}
        alice.run(alice.set_trust("bob@example.org", bob.device_id, "trusted"), TIMEOUT)
        bob2 = engine(net, "bob@example.org", tmp_path / "bob2.json")
        try:
            alice.run(alice.refresh("bob@example.org", force=True), TIMEOUT)
            trust = {d.device_id: d.trust_level_name
                     for d in alice.run(alice.devices("bob@example.org"), TIMEOUT)}
            # a verified device exists: the new one is not trusted blindly, nor encrypted for
            assert trust == {bob.device_id: "trusted", bob2.device_id: "undecided"}
            element = encrypted_for(alice, "bob@example.org", "m", OLDMEMO)
            assert str(bob2.device_id) not in ET.tostring(element).decode()
        finally:
            bob2.close()
    finally:
        alice.close()
        bob.close()


def test_manual_policy_trusts_nothing_by_itself(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json", policy="manual")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        with pytest.raises(NoTrustedDevicesError):
            encrypted_for(alice, "bob@example.org", "m", TWOMEMO)
        alice.run(alice.set_trust("bob@example.org", bob.device_id, "trusted"), TIMEOUT)
        element = encrypted_for(alice, "bob@example.org", "m", TWOMEMO)
        assert read(bob, element, TWOMEMO, "alice@example.org").error is None
    finally:
        alice.close()
        bob.close()


def test_precondition_not_met_reconfigures_the_node_and_publishes_again(
        tmp_path: Path) -> None:
    net = Network()
    # a bundles node someone made with another access model
    net.config[("alice@example.org", "urn:xmpp:omemo:2:bundles")] = {
        "pubsub#access_model": "presence"}
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    try:
        assert net.config[("alice@example.org", "urn:xmpp:omemo:2:bundles")][
            "pubsub#access_model"] == "open"
        assert str(alice.device_id) in net.nodes[("alice@example.org",
                                                   "urn:xmpp:omemo:2:bundles")]
    finally:
        alice.close()


def test_a_broken_session_is_healed_with_a_new_key_exchange_once(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        assert read(bob, encrypted_for(alice, "bob@example.org", "1", OLDMEMO), OLDMEMO,
                    "alice@example.org").error is None
        # bob's answer confirms the session: alice sends no more key exchanges
        assert read(alice, encrypted_for(bob, "alice@example.org", "1b", OLDMEMO), OLDMEMO,
                    "bob@example.org").error is None
        # bob loses his sessions (a restored old backup, say); alice's next message, without
        # a key exchange, cannot be read
        bob.close()
        data = omemo_ext.read_store_file(str(tmp_path / "bob.json"))
        state = {"format": omemo_ext.FORMAT,
                 "data": {k: v for k, v in data.items()
                          if not k.startswith(f"/{OLDMEMO}/alice@example.org/")}}
        (tmp_path / "bob.json").write_text(json.dumps(state))
        bob = engine(net, "bob@example.org", tmp_path / "bob.json")
        sent_before = len(net.sent)
        broken = encrypted_for(alice, "bob@example.org", "2", OLDMEMO)
        outcome = read(bob, broken, OLDMEMO, "alice@example.org")
        assert outcome.error is not None and "new session was offered" in outcome.error
        healing = net.sent[sent_before:]
        assert len(healing) == 1 and healing[0].to == JID("alice@example.org")
        assert 'prekey="true"' in str(healing[0])  # a key exchange, empty payload
        assert healing[0].xml.find(".//{eu.siacs.conversations.axolotl}payload") is None
        # alice reads it (her session is replaced) and bob reads her next message
        heal = healing[0].xml.find("{eu.siacs.conversations.axolotl}encrypted")
        assert read(alice, heal, OLDMEMO, "bob@example.org").error is None
        assert read(bob, encrypted_for(alice, "bob@example.org", "3", OLDMEMO), OLDMEMO,
                    "alice@example.org").error is None
        # a second failure from the same device within HEAL_INTERVAL sends nothing more
        count = len(net.sent)
        read(bob, broken, OLDMEMO, "alice@example.org")
        assert len(net.sent) == count
    finally:
        alice.close()
        bob.close()


def test_engine_works_from_a_thread_whose_event_loop_is_running(tmp_path: Path) -> None:
    """As in a Jupyter cell: the caller's thread runs an asyncio loop; the engine's work
    runs on its own loop, never on the caller's."""
    net = Network()
    results: list[Any] = []

    async def cell() -> None:
        alice = engine(net, "alice@example.org", tmp_path / "alice.json")
        bob = engine(net, "bob@example.org", tmp_path / "bob.json")
        try:
            element = encrypted_for(alice, "bob@example.org", "from a cell", OLDMEMO)
            results.append(read(bob, element, OLDMEMO, "alice@example.org").plaintext)
        finally:
            alice.close()
            bob.close()

    asyncio.run(cell())
    assert results == [b"from a cell"]


def envelope_message(body: str, from_jid: str, to_jid: str | None = None,
                     extra: list[ET.Element] | None = None) -> bytes:
    element = ET.Element("{jabber:client}body")
    element.text = body
    return omemo_ext.build_envelope([element, *(extra or [])], from_jid, to_jid)


def test_envelope_content_is_taken_only_when_its_affixes_agree() -> None:
    outer = Message(to="bob@example.org/phone", type="chat").xml
    outer.set("from", "alice@example.org/laptop")
    forged_id = ET.Element("{urn:xmpp:sid:0}stanza-id", by="bob@example.org", id="forged")
    reaction = ET.Element("{urn:xmpp:reactions:0}reactions", id="m1")
    plain = ET.Element("{jabber:client}message")
    omemo_ext.take_envelope(plain, envelope_message("hi", "alice@example.org", None,
                                                    [forged_id, reaction]),
                            "alice@example.org", outer)
    assert [child.tag for child in plain] == ["{jabber:client}body",
                                              "{urn:xmpp:reactions:0}reactions"]
    with pytest.raises(ValueError, match="says it is from mallory@example.org"):
        omemo_ext.take_envelope(ET.Element("m"), envelope_message("hi", "mallory@example.org"),
                                "alice@example.org", outer)
    with pytest.raises(ValueError, match="addressed to room@muc.example.org"):
        omemo_ext.take_envelope(ET.Element("m"), envelope_message(
            "hi", "alice@example.org", "room@muc.example.org"), "alice@example.org", outer)
    # in a room the <to/> affix names the room the message comes from
    room_message = Message(to="bob@example.org/phone", type="groupchat").xml
    room_message.set("from", "room@muc.example.org/alice")
    plain = ET.Element("{jabber:client}message")
    omemo_ext.take_envelope(plain, envelope_message("all", "alice@example.org",
                                                    "room@muc.example.org"),
                            "alice@example.org", room_message)
    assert plain.findtext("{jabber:client}body") == "all"


@pytest.mark.parametrize("element", [
    "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='x'/></encrypted>",
    "<encrypted xmlns='urn:xmpp:omemo:2'><header sid='5'><keys jid='bob@example.org'>"
    "<key rid='1'>!!notbase64</key></keys></header><payload>AAAA</payload></encrypted>",
    "<encrypted xmlns='urn:xmpp:omemo:2'/>",
])
def test_malformed_omemo_elements_are_reported_not_raised(tmp_path: Path,
                                                          element: str) -> None:
    net = Network()
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        outcome = read(bob, ET.fromstring(element), TWOMEMO, "alice@example.org")
        assert outcome.plaintext is None and outcome.error
    finally:
        bob.close()


# -- the extension on the in-process fake server (no OMEMO keys needed) ---------------------------
def test_an_omemo_message_to_a_client_without_omemo_arrives_unreadable(
        xmpp_server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # no default store: OMEMO stays off
    alice = xmpp_server.client("alice")
    alice.connect()
    try:
        assert not alice.omemo.enabled and alice.omemo.device_id is None
        xmpp_server.inject(
            f"<message xmlns='jabber:client' to='{alice.jid}' from='bob@localhost/x' "
            "type='chat' id='m1'><body>fallback text</body>"
            "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='42'>"
            "<key rid='7'>AAAA</key><iv>AAAA</iv></header><payload>AAAA</payload>"
            "</encrypted><store xmlns='urn:xmpp:hints'/></message>")
        msg = alice.next_message(timeout=5)  # not dropped, not shown as the fallback
        assert (msg.body, msg.encryption, msg.sender_device) == (None, OLDMEMO, 42)
        assert "OMEMO is off" in (msg.decryption_error or "")
        assert msg.xml.find("{urn:xmpp:hints}store") is not None  # the rest is kept
        assert any("cannot decrypt the message m1" in r.getMessage() for r in caplog.records)
        # and a plain message is untouched
        xmpp_server.inject(f"<message xmlns='jabber:client' to='{alice.jid}' "
                           "from='bob@localhost/x' type='chat'><body>plain</body></message>")
        plain = alice.next_message(timeout=5)
        assert (plain.body, plain.encryption) == ("plain", None)
        with pytest.raises(ValueError):
            alice.omemo.policy = "sometimes"
    finally:
        alice.disconnect()


def test_a_note_to_ourselves_without_another_device_is_refused(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    try:
        with pytest.raises(NoTrustedDevicesError, match="never encrypts for the sending"):
            encrypted_for(alice, "alice@example.org", "note", TWOMEMO)
        other = engine(net, "alice@example.org", tmp_path / "other.json")
        try:
            alice.run(alice.refresh("alice@example.org", force=True), TIMEOUT)
            element = encrypted_for(alice, "alice@example.org", "note", TWOMEMO)
            assert read(other, element, TWOMEMO, "alice@example.org").error is None
        finally:
            other.close()
    finally:
        alice.close()


def test_a_store_in_use_elsewhere_is_a_clear_error_and_loses_no_message(
        xmpp_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alice.json"
    other_process = JSONStorage(str(path), "alice@localhost")  # holds the lock
    alice = xmpp_server.client("alice", omemo_store=path)
    try:
        alice.connect()
        assert alice.omemo.enabled
        with pytest.raises(OMEMOError, match="in use by another process"):
            alice.omemo.send_message("bob@localhost", "secret")
        xmpp_server.inject(
            f"<message xmlns='jabber:client' to='{alice.jid}' from='bob@localhost/x' "
            "type='chat'><encrypted xmlns='urn:xmpp:omemo:2'><header sid='9'>"
            "<keys jid='alice@localhost'><key rid='1'>AAAA</key></keys></header>"
            "<payload>AAAA</payload></encrypted></message>")
        msg = alice.next_message(timeout=5)
        assert (msg.body, msg.encryption, msg.sender_device) == (None, TWOMEMO, 9)
        assert "in use by another process" in (msg.decryption_error or "")
        assert any("OMEMO could not start" in r.getMessage() for r in caplog.records)
    finally:
        alice.disconnect()
        other_process.close()


def test_a_closed_engine_refuses_at_once_and_frees_its_thread_and_store(tmp_path: Path) -> None:
    net = Network()
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    alice.close()
    assert not alice.thread.is_alive()
    with pytest.raises(DisconnectedError):
        alice.run(alice.devices("bob@example.org"), 3600)  # no wait for the timeout
    JSONStorage(str(tmp_path / "alice.json"), "alice@example.org").close()  # unlocked


def test_a_server_refusing_max_items_as_publish_option_gets_it_as_configuration(
        tmp_path: Path) -> None:
    net = Network()
    net.ejabberd = True
    alice = engine(net, "alice@example.org", tmp_path / "alice.json")
    bob = engine(net, "bob@example.org", tmp_path / "bob.json")
    try:
        assert net.config[("alice@example.org", "urn:xmpp:omemo:2:bundles")] == {
            "pubsub#access_model": "open", "pubsub#max_items": "max"}
        element = encrypted_for(bob, "alice@example.org", "hi", TWOMEMO)
        before = net.publishes
        # reading a key exchange uses up a pre key: the bundle is published again, at once
        # without the refused option
        assert read(alice, element, TWOMEMO, "bob@example.org").error is None
        assert net.publishes == before + 1
    finally:
        alice.close()
        bob.close()
