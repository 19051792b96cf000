"""OMEMO (XEP-0384) against the real Prosody: simplexmpp accounts in both namespaces, our own
other devices (carbons both ways), a restart with the same store, distrust, a caller whose
thread runs an event loop. The slixmpp-omemo peer is in test_omemo_peer.py."""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")

from simplexmpp import Client, Message  # noqa: E402
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
