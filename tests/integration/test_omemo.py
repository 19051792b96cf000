"""OMEMO (XEP-0384) against the real Prosody: simplexmpp accounts in both namespaces, our own
other devices (carbons both ways), a restart with the same store, distrust, a caller whose
thread runs an event loop. The slixmpp-omemo peer is in test_omemo_peer.py."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")

from simplexmpp import JID, Client, Message  # noqa: E402
from simplexmpp.errors import NoTrustedDevicesError  # noqa: E402
from simplexmpp.ext.omemo import OLDMEMO_NS, TWOMEMO_NS  # noqa: E402

from .conftest import Server  # noqa: E402

WAIT = 30.0


def online(connect: Callable[..., Client], store: Path, jid: str | None = None,
           **kwargs: Any) -> Client:
    client = connect(jid, omemo_store=store, **kwargs)
    client.send_presence()
    assert client.omemo.device_id  # waits until our device is published
    return client


@pytest.mark.parametrize("namespace", [TWOMEMO_NS, OLDMEMO_NS])
def test_two_accounts_exchange_encrypted_messages(connect: Callable[..., Client],
                                                  tmp_path: Path, namespace: str) -> None:
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")
    alice.omemo.send_message(bob.account.bare, "hello bob", namespace=namespace)
    msg = bob.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption, msg.sender_device, msg.decryption_error) == (
        "hello bob", namespace, alice.omemo.device_id, None)
    bob.omemo.send_message(alice.account.bare, "hello alice", namespace=namespace)
    msg = alice.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption, msg.sender_device) == (
        "hello alice", namespace, bob.omemo.device_id)
    # the fallback body never reaches the reader
    bob.omemo.send_message(alice.account.bare, "second")
    assert alice.next_message(timeout=WAIT).body == "second"


def test_namespace_follows_what_the_recipient_publishes(connect: Callable[..., Client],
                                                        tmp_path: Path) -> None:
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")
    # Both publish both versions: the newest is chosen.
    [device] = alice.omemo.devices(bob.account.bare)
    assert device.namespace == TWOMEMO_NS and device.trust == "blind"
    assert device.namespaces == (TWOMEMO_NS, OLDMEMO_NS)
    assert device.id == bob.omemo.device_id and device.fingerprint == bob.omemo.fingerprint
    alice.omemo.send_message(bob.account.bare, "newest")
    msg = bob.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption) == ("newest", TWOMEMO_NS)
    own = alice.omemo.devices()
    assert [(d.id, d.this_device) for d in own] == [(alice.omemo.device_id, True)]


def test_our_other_device_reads_what_we_get_and_what_we_send(connect: Callable[..., Client],
                                                            server: Server,
                                                            tmp_path: Path) -> None:
    account = server.new_account()
    phone = online(connect, tmp_path / "phone.json", account)
    laptop = online(connect, tmp_path / "laptop.json", account)
    bob = online(connect, tmp_path / "bob.json")
    phone.carbons.enable()
    laptop.carbons.enable()
    sent: queue.Queue[Message] = queue.Queue()
    laptop.on("carbon_sent", sent.put)
    # the phone started first: it learns of the laptop by a notification, or by asking now
    assert {d.id for d in phone.omemo.devices(refresh=True)} == {phone.omemo.device_id,
                                                                 laptop.omemo.device_id}
    bob.omemo.send_message(account, "to both of you")
    for device in (phone, laptop):
        msg = device.next_message(timeout=WAIT)
        assert (msg.body, msg.sender_device) == ("to both of you", bob.omemo.device_id)
    phone.omemo.send_message(bob.account.bare, "from my phone")
    assert bob.next_message(timeout=WAIT).body == "from my phone"
    copy = sent.get(timeout=WAIT)  # our own sent carbon, decrypted like the rest
    assert (copy.body, copy.encryption, copy.sender_device) == (
        "from my phone", TWOMEMO_NS, phone.omemo.device_id)
    assert copy.to is not None and copy.to.bare == bob.account.bare


def test_a_restarted_client_keeps_its_device_and_sessions(connect: Callable[..., Client],
                                                          server: Server, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    account = server.new_account()
    alice = online(connect, tmp_path / "alice.json", account)
    bob = online(connect, tmp_path / "bob.json")
    alice.omemo.send_message(bob.account.bare, "one")
    assert bob.next_message(timeout=WAIT).body == "one"
    bob.omemo.send_message(account, "two")  # confirms the session on alice's side
    assert alice.next_message(timeout=WAIT).body == "two"
    device, fingerprint = alice.omemo.device_id, alice.omemo.fingerprint
    alice.disconnect()
    assert alice.omemo.device_id == device  # read from the store while offline
    again = online(connect, tmp_path / "alice.json", account)
    assert (again.omemo.device_id, again.omemo.fingerprint) == (device, fingerprint)
    with caplog.at_level(logging.DEBUG, logger="simplexmpp.wire"):
        again.omemo.send_message(bob.account.bare, "three")
        msg = bob.next_message(timeout=WAIT)
    assert (msg.body, msg.sender_device) == ("three", device)
    sent = [r.getMessage() for r in caplog.records if "SEND" in r.getMessage()
            and "encrypted" in r.getMessage()]
    assert sent and not any('kex="true"' in line for line in sent)  # no new key exchange
    assert [d.id for d in bob.omemo.devices(account)] == [device]


def test_a_distrusted_device_can_no_longer_read_what_we_send(connect: Callable[..., Client],
                                                            server: Server,
                                                            tmp_path: Path) -> None:
    account = server.new_account()
    good = online(connect, tmp_path / "good.json", account)
    stolen = online(connect, tmp_path / "stolen.json", account)
    alice = online(connect, tmp_path / "alice.json")
    alice.omemo.send_message(account, "before")
    assert stolen.next_message(timeout=WAIT).body == "before"
    assert good.next_message(timeout=WAIT).body == "before"
    alice.omemo.distrust(account, stolen.omemo.device_id)
    trust = {d.id: d.trust for d in alice.omemo.devices(account)}
    assert trust == {good.omemo.device_id: "blind", stolen.omemo.device_id: "distrusted"}
    alice.omemo.send_message(account, "after")
    assert good.next_message(timeout=WAIT).body == "after"
    msg = stolen.next_message(timeout=WAIT)  # delivered all the same, not readable
    assert msg.body is None and msg.encryption == TWOMEMO_NS
    assert msg.decryption_error == "not encrypted for this device"
    assert msg.sender_device == alice.omemo.device_id
    alice.omemo.distrust(account, good.omemo.device_id)
    with pytest.raises(NoTrustedDevicesError) as caught:
        alice.omemo.send_message(account, "nobody can read this")
    assert caught.value.jids == [account]


def test_works_from_a_thread_whose_event_loop_is_running(connect: Callable[..., Client],
                                                         tmp_path: Path) -> None:
    """Jupyter runs cells in a thread with a running asyncio loop: OMEMO does not use it."""
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")

    async def cell() -> str:
        asyncio.get_running_loop()  # really inside a running loop
        alice.omemo.send_message(bob.account.bare, "from a notebook")
        return bob.next_message(timeout=WAIT).body or ""

    assert asyncio.run(cell()) == "from a notebook"


def test_archived_messages_are_decrypted_too(connect: Callable[..., Client], server: Server,
                                             tmp_path: Path) -> None:
    account = server.new_account()
    phone = online(connect, tmp_path / "phone.json", account)
    # the laptop is connected but not available: live messages go to the phone only, the
    # laptop reads them from the archive (XEP-0313), encrypted for it all the same
    laptop = connect(account, omemo_store=tmp_path / "laptop.json")
    assert laptop.omemo.device_id
    alice = online(connect, tmp_path / "alice.json")
    for text in ("first", "second"):
        alice.omemo.send_message(account, text)
        assert phone.next_message(timeout=WAIT).body == text
    archived = [m for m in laptop.mam.query(with_=alice.account.bare) if m.body is not None]
    assert [(m.body, m.encryption, m.sender_device) for m in archived] == [
        ("first", TWOMEMO_NS, alice.omemo.device_id),
        ("second", TWOMEMO_NS, alice.omemo.device_id)]
    # the phone read them live: the archived copies cannot be read again (forward secrecy),
    # they come back undecrypted
    again = [m for m in phone.mam.query(with_=alice.account.bare)
             if m.encryption is not None and m.from_ is not None
             and m.from_.bare == alice.account.bare]
    assert len(again) >= 2 and all(m.body is None and m.decryption_error for m in again)


def test_device_list_updates_are_followed(connect: Callable[..., Client], server: Server,
                                          tmp_path: Path) -> None:
    account = server.new_account()
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json", account)
    # mutual presence subscription: PEP notifications flow (XEP-0163 §4)
    alice.add_contact(account)
    bob.add_contact(alice.account.bare)
    alice.subscribe(account)
    bob.approve(alice.account.bare)
    bob.subscribe(alice.account.bare)
    alice.approve(account)
    assert [d.id for d in alice.omemo.devices(account)] == [bob.omemo.device_id]
    updates: queue.Queue[Any] = queue.Queue()
    alice.on("pep_event", lambda jid, node, items: updates.put((jid, node)))
    tablet = online(connect, tmp_path / "tablet.json", account)
    while updates.get(timeout=WAIT) != (JID(account), "urn:xmpp:omemo:2:devices"):
        pass
    # (the update was handed to the OMEMO thread before this callback ran: applied first)
    assert {d.id for d in alice.omemo.devices(account)} == {bob.omemo.device_id,
                                                            tablet.omemo.device_id}
    alice.omemo.send_message(account, "to all three")
    assert tablet.next_message(timeout=WAIT).body == "to all three"
    assert bob.next_message(timeout=WAIT).body == "to all three"


def test_a_repeated_message_is_not_decrypted_twice(connect: Callable[..., Client],
                                                   tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A copy that comes again (a re-send after a failed resumption) is dropped before
    decryption: decrypting it would fail and offer a needless new session."""
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")
    msg = alice.omemo.encrypt_message(alice.new_message(bob.account.bare, "once"),
                                      [bob.account.bare])
    with caplog.at_level(logging.INFO, logger="simplexmpp.ext._omemo_engine"):
        alice.send(msg)
        assert bob.next_message(timeout=WAIT).body == "once"
        alice.send(msg)
        alice.omemo.send_message(bob.account.bare, "next")
        assert bob.next_message(timeout=WAIT).body == "next"
    assert not [r for r in caplog.records if "new" in r.getMessage() and
                "session" in r.getMessage()]


def test_an_account_without_omemo_has_no_devices_and_gets_nothing(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = online(connect, tmp_path / "alice.json")
    plain = connect()  # never used OMEMO: its nodes do not exist (Prosody: forbidden)
    plain.send_presence()
    assert alice.omemo.devices(plain.account.bare) == []
    with pytest.raises(NoTrustedDevicesError) as caught:
        alice.omemo.send_message(plain.account.bare, "unreadable")
    assert caught.value.jids == [str(plain.account.bare)]
    alice.send_message(plain.account.bare, "plain")  # nothing encrypted went out before it
    assert plain.next_message(timeout=WAIT).body == "plain"


def test_a_node_with_other_options_is_reconfigured(connect: Callable[..., Client],
                                                   server: Server, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    account = server.new_account()
    setup = connect(account)
    setup.pubsub.create(None, "urn:xmpp:omemo:2:bundles", {"pubsub#access_model": "presence"})
    setup.disconnect()
    with caplog.at_level(logging.INFO, logger="simplexmpp.ext._omemo_engine"):
        alice = online(connect, tmp_path / "alice.json", account)
    # Prosody refused the publish (conflict + precondition-not-met): reconfigured, published
    assert any("reconfiguring our PEP node urn:xmpp:omemo:2:bundles" in r.getMessage()
               for r in caplog.records)
    config = alice.pubsub.get_configuration(None, "urn:xmpp:omemo:2:bundles")
    assert config.value("pubsub#access_model") == "open"
    bob = online(connect, tmp_path / "bob.json")  # not a contact: reads the open node
    bob.omemo.send_message(account, "readable", namespace=TWOMEMO_NS)
    assert alice.next_message(timeout=WAIT).body == "readable"


class _Seen(logging.Handler):
    """Sets `event` when a record from `thread` contains `text` (a condition to wait on)."""

    def __init__(self, thread: str, text: str) -> None:
        super().__init__()
        self.thread, self.text, self.event = thread, text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == self.thread and self.text in record.getMessage():
            self.event.set()


def test_a_broken_session_is_healed(connect: Callable[..., Client], server: Server,
                                    tmp_path: Path) -> None:
    """XEP-0384 §7: a message that cannot be decrypted is answered with a new key exchange,
    so the sender's next message can be read, without the reader writing anything."""
    account = server.new_account()
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json", account)
    alice.omemo.send_message(account, "one")
    assert bob.next_message(timeout=WAIT).body == "one"
    bob.omemo.send_message(alice.account.bare, "two")  # confirms alice's session
    assert alice.next_message(timeout=WAIT).body == "two"
    bob.disconnect()
    # bob's sessions with alice are lost (an old backup of the store, say)
    store = tmp_path / "bob.json"
    document = json.loads(store.read_text())
    prefixes = tuple(f"/{ns}/{alice.account.bare}/" for ns in (TWOMEMO_NS, OLDMEMO_NS))
    document["data"] = {k: v for k, v in document["data"].items()
                        if not k.startswith(prefixes)}
    store.write_text(json.dumps(document))
    bob = online(connect, store, account)
    replaced = _Seen(f"simplexmpp-omemo-{alice.account.bare}",
                     "Key exchange replaces existing session")
    logging.getLogger("omemo").addHandler(replaced)
    try:
        alice.omemo.send_message(account, "three")
        broken = bob.next_message(timeout=WAIT)
        assert broken.body is None and "new session was offered" in broken.decryption_error
        assert replaced.event.wait(WAIT)  # alice took bob's new session
    finally:
        logging.getLogger("omemo").removeHandler(replaced)
    alice.omemo.send_message(account, "four")
    msg = bob.next_message(timeout=WAIT)
    assert (msg.body, msg.decryption_error) == ("four", None)


@pytest.mark.parametrize("namespace", [TWOMEMO_NS, OLDMEMO_NS])
def test_two_accounts_on_each_server(connect_any: Callable[..., Client], tmp_path: Path,
                                     namespace: str) -> None:
    """The PEP details differ between servers (publish-options, max_items "max", the answer
    for a missing node): the exchange works on Prosody and on ejabberd."""
    alice = online(connect_any, tmp_path / "alice.json")
    bob = online(connect_any, tmp_path / "bob.json")
    alice.omemo.send_message(bob.account.bare, "across", namespace=namespace)
    msg = bob.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption) == ("across", namespace)
    bob.omemo.send_message(alice.account.bare, "and back", namespace=namespace)
    assert alice.next_message(timeout=WAIT).body == "and back"


def test_many_threads_send_and_every_message_is_read(connect: Callable[..., Client],
                                                    tmp_path: Path) -> None:
    """The session manager and the store are used by one thread at a time whatever the
    number of callers: the ratchet never skips or repeats a key."""
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            for i in range(5):
                alice.omemo.send_message(bob.account.bare, f"{n}-{i}",
                                         namespace=(TWOMEMO_NS, OLDMEMO_NS)[n % 2])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    got = [bob.next_message(timeout=WAIT) for _ in range(20)]
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(m.body or "" for m in got) == sorted(f"{n}-{i}" for n in range(4)
                                                       for i in range(5))
    assert all(m.decryption_error is None for m in got)


def hold_decryption(client: Client) -> threading.Event:
    """Make `client`'s decryptions wait until the returned event is set (then they go on as
    usual): what a slow decryption (a key to fetch, a loaded machine) looks like, without
    timing."""
    engine = client.omemo._engine
    assert engine is not None
    release = threading.Event()
    original = engine.decrypt

    async def held(*args: Any, **kwargs: Any) -> Any:
        await asyncio.to_thread(release.wait, WAIT)
        return await original(*args, **kwargs)

    engine.decrypt = held  # type: ignore[method-assign]
    return release


@pytest.mark.parametrize("namespace", [TWOMEMO_NS, OLDMEMO_NS])
def test_a_plain_message_never_overtakes_an_encrypted_one(connect: Callable[..., Client],
                                                          tmp_path: Path,
                                                          namespace: str) -> None:
    """Issue 16: Bob sends an encrypted message, then a plain one. Alice's client reads both
    while the first is still being decrypted; the plain one still comes second."""
    alice = online(connect, tmp_path / "alice.json")
    bob = online(connect, tmp_path / "bob.json")
    release = hold_decryption(alice)
    bob.omemo.send_message(alice.account.bare, "encrypted first", namespace=namespace)
    bob.send_message(alice.account.bare, "plain second")
    # Alice answers this ping after she has read both messages (one stream, in order:
    # RFC 6120 §10.1), while the first one is still held in its decryption.
    bob.ping(alice.jid, timeout=WAIT)
    release.set()
    first, second = alice.next_message(timeout=WAIT), alice.next_message(timeout=WAIT)
    assert [(m.body, m.encryption) for m in (first, second)] == [
        ("encrypted first", namespace), ("plain second", None)]
    assert alice.omemo.order.held == 0
