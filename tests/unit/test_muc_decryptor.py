"""MUC.decryptor: encrypted room messages are decrypted off the I/O thread, with the sender's
real JID as it was when the message arrived; plain ones are untouched, but wait for an encrypted
one before them (arrival order, issue 16)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from simplexmpp import JID, Message
from simplexmpp.ext._omemo_order import Sequencer
from simplexmpp.ext.muc import Room

from .test_muc import ROOM, FakeClient, entered, stanza

ENCRYPTED = "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='7'/></encrypted>"


class Dispatching(FakeClient):
    """The fake client with a dispatcher queue the test runs by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def dispatch(self, fn: Callable[..., object], *args: Any) -> None:
        self.queued.append((fn, args))

    def run_dispatcher(self) -> None:
        while self.queued:
            fn, args = self.queued.pop(0)
            fn(*args)


class Decryptor:
    """Decrypts on the fake client's dispatcher queue, in order as OMEMO's does."""

    def __init__(self, client: Dispatching) -> None:
        self.client = client
        self.calls: list[tuple[Room, str | None, JID | None]] = []
        self.order = Sequencer()

    def wants(self, msg: Message) -> bool:
        return msg.xml.find("{eu.siacs.conversations.axolotl}encrypted") is not None

    def decrypt_later(self, room: Room, msg: Message, nick: str | None, sender: JID | None,
                      then: Callable[[Message, str | None], object]) -> None:
        slot = self.order.reserve(str(room.jid))
        assert slot is not None

        def work() -> None:
            self.calls.append((room, nick, sender))
            self.order.fill(slot, then, Message(to=str(msg.to), type="groupchat",
                                                body=f"decrypted from {sender}"), nick)
        self.client.dispatch(work)

    def hold_back(self, room: Room, msg: Message, nick: str | None,
                  then: Callable[[Message, str | None], object]) -> bool:
        return self.order.hold(str(room.jid), then, msg, nick)


def occupant_presence(nick: str, jid: str, type: str | None = None) -> str:
    kind = f" type='{type}'" if type else ""
    return stanza(f"<presence from='{ROOM}/{nick}' to='hag66@shakespeare.lit/pda'{kind}>"
                  "<x xmlns='http://jabber.org/protocol/muc#user'>"
                  f"<item affiliation='member' role='participant' jid='{jid}'/></x></presence>")


def test_encrypted_room_message_is_decrypted_on_the_dispatcher_with_its_sender() -> None:
    client = Dispatching()
    room = entered(client)  # type: ignore[arg-type]
    decryptor = Decryptor(client)
    room._muc.decryptor = decryptor
    client.receive(occupant_presence("bard", "bard@avon.lit/quill"))
    assert client.receive(stanza(f"<message from='{ROOM}/bard' type='groupchat'>"
                                 f"<body>fallback</body>{ENCRYPTED}</message>"))
    # The occupant leaves before the dispatcher gets to the message: the sender is still
    # the one the room showed when the message arrived.
    client.receive(occupant_presence("bard", "bard@avon.lit/quill", type="unavailable"))
    assert room._queue.qsize() == 0 and decryptor.calls == []   # nothing on the I/O thread
    client.run_dispatcher()
    assert decryptor.calls == [(room, "bard", JID("bard@avon.lit/quill"))]
    [(name, where, msg)] = [e for e in client.events if e[0] == "muc_message"]
    assert where is room and msg.body == "decrypted from bard@avon.lit/quill"


def test_plain_room_messages_do_not_pass_the_decryptor() -> None:
    client = Dispatching()
    room = entered(client)  # type: ignore[arg-type]
    decryptor = Decryptor(client)
    room._muc.decryptor = decryptor
    assert client.receive(stanza(f"<message from='{ROOM}/firstwitch' type='groupchat'>"
                                 "<body>plain</body></message>"))
    assert client.queued == [] and decryptor.calls == []
    assert [e[2].body for e in client.events if e[0] == "muc_message"] == ["plain"]


def test_a_plain_room_message_waits_for_an_encrypted_one_before_it() -> None:
    client = Dispatching()
    room = entered(client)  # type: ignore[arg-type]
    decryptor = Decryptor(client)
    room._muc.decryptor = decryptor
    client.receive(occupant_presence("bard", "bard@avon.lit/quill"))
    client.receive(stanza(f"<message from='{ROOM}/bard' type='groupchat'>"
                          f"<body>fallback</body>{ENCRYPTED}</message>"))
    client.receive(stanza(f"<message from='{ROOM}/firstwitch' type='groupchat'>"
                          "<body>plain after it</body></message>"))
    assert [e for e in client.events if e[0] == "muc_message"] == []  # held back
    client.run_dispatcher()
    assert [(e[2].body, e[2].from_.resource if e[2].from_ else None)
            for e in client.events if e[0] == "muc_message"] == [
        ("decrypted from bard@avon.lit/quill", None), ("plain after it", "firstwitch")]


def test_the_sender_of_an_archived_room_message_is_the_archives_last_claim() -> None:
    from simplexmpp.ext.omemo_muc import _archived_sender

    def archived(*claims: str) -> Message:
        items = "".join(f"<x xmlns='http://jabber.org/protocol/muc#user'><item jid='{j}'/></x>"
                        for j in claims)
        return Message(ET.fromstring(stanza(f"<message from='{ROOM}/bard' type='groupchat'>{items}"
                              "</message>")))

    # A sender's own <x/> comes first, the one the archive adds last (Prosody's mod_muc_mam).
    assert _archived_sender(archived("victim@avon.lit", "bard@avon.lit/quill")) == \
        "bard@avon.lit"
    assert _archived_sender(archived()) is None          # the room hid the real JID
    assert _archived_sender(archived("not a jid@")) is None
