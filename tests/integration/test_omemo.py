"""OMEMO (XEP-0384) against the real Prosody: two simplexmpp accounts, both namespaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("omemo")

from simplexmpp import Client  # noqa: E402
from simplexmpp.ext.omemo import OLDMEMO_NS, TWOMEMO_NS  # noqa: E402

WAIT = 30.0


@pytest.mark.parametrize("namespace", [TWOMEMO_NS, OLDMEMO_NS])
def test_two_accounts_exchange_encrypted_messages(connect: Callable[..., Client],
                                                  tmp_path: Path, namespace: str) -> None:
    alice = connect(omemo_store=tmp_path / "alice.json")
    bob = connect(omemo_store=tmp_path / "bob.json")
    alice.send_presence()
    bob.send_presence()
    assert alice.omemo.device_id and bob.omemo.device_id
    alice.omemo.send_message(bob.account.bare, "hello bob", namespace=namespace)
    msg = bob.next_message(timeout=WAIT)
    assert msg.body == "hello bob"
    assert msg.encryption == namespace
    assert msg.sender_device == alice.omemo.device_id
    bob.omemo.send_message(alice.account.bare, "hello alice", namespace=namespace)
    msg = alice.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption, msg.sender_device) == (
        "hello alice", namespace, bob.omemo.device_id)
