"""XEP-0045 room state from stanza transcripts: no sockets, a stand-in for the client."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from simplexmpp import JID, Message, Presence
from simplexmpp.ext.muc import (MUC, BannedError, MUCError, NickConflictError,
                                NotInRoomError, Room, RoomPasswordError)

ROOM = "coven@chat.shakespeare.lit"
ME = "hag66@shakespeare.lit/pda"


class FakeClient:
    """Just what the MUC extension uses of a Client; sent stanzas and events are recorded."""

    def __init__(self) -> None:
        self.account = JID(ME)
        self.timeout = 1.0
        self.local_features: set[str] = set()
        self.presence_decorators: list[Callable[[Presence], None]] = []
        self.broadcast_presence = None
        self.interceptors: dict[str, list[Callable[[Any], bool]]] = {}
        self._handlers: dict[str, list[Any]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.sent: list[Any] = []

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def declare_event(self, name: str) -> None:
        pass

    @property
    def _router(self) -> FakeClient:  # what Extension's helpers reach: here, the same object
        return self

    def add_interceptor(self, kind: str, fn: Callable[[Any], bool], **filters: Any) -> int:
        self.interceptors.setdefault(kind, []).append(fn)
        return 1

    def follow_sessions(self, extension: Any) -> None:
        pass

    state = "ready"
    is_connected = True

    def on(self, event: str, callback: Callable[..., object]) -> int:
        self._handlers.setdefault(event, []).append(callback)
        return 1

    def has_callbacks(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def emit(self, name: str, *args: Any) -> None:
        self.events.append((name, *args))

    def send(self, stanza: Any, timeout: float | None = None) -> None:
        self.sent.append(stanza)

    def receive(self, xml: str) -> bool:
        element = ET.fromstring(xml)
        kind = element.tag.partition("}")[2]
        stanza = (Presence if kind == "presence" else Message)(element)
        return any(fn(stanza) for fn in self.interceptors[kind])


def stanza(xml: str) -> str:
    return xml.replace("<presence", "<presence xmlns='jabber:client'", 1).replace(
        "<message", "<message xmlns='jabber:client'", 1)


def presence(nick: str, *codes: int, type: str | None = None, role: str = "participant",
             affiliation: str = "none", extra: str = "", item_extra: str = "") -> str:
    status = "".join(f"<status code='{c}'/>" for c in codes)
    kind = f" type='{type}'" if type else ""
    return stanza(f"<presence from='{ROOM}/{nick}' to='{ME}'{kind}>"
                  f"<x xmlns='http://jabber.org/protocol/muc#user'>"
                  f"<item affiliation='{affiliation}' role='{role}'>{item_extra}</item>"
                  f"{status}{extra}</x></presence>")


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def entered(client: FakeClient, nick: str = "thirdwitch") -> Room:
    """A room as after a successful join (the transcript of XEP-0045 §7.2.2)."""
    muc = MUC(client)  # type: ignore[arg-type]
    room = Room(muc, JID(ROOM), nick, None)
    muc._rooms[ROOM] = room
    room._begin("join", nick)
    assert client.receive(presence("firstwitch", role="moderator", affiliation="owner"))
    assert client.receive(presence(nick, 110))
    assert room.state == "joined"
    return room


def test_self_presence_completes_the_join_and_the_occupant_list(client: FakeClient) -> None:
    room = entered(client)
    assert set(room.occupants) == {"firstwitch", "thirdwitch"}
    assert room.occupants["firstwitch"].affiliation == "owner"
    assert room.status_codes == {110} and room.role == "participant"
    assert ("muc_joined", room) in client.events
    assert "http://jabber.org/protocol/muc" in MUC.features  # added by client.extension()


def test_presence_and_messages_of_other_rooms_are_not_room_traffic(client: FakeClient) -> None:
    room = entered(client)
    assert not client.receive(stanza("<presence from='other@chat.shakespeare.lit/x'/>"))
    # issue 14 item 5: a groupchat message from a room we never joined is dropped (claimed,
    # so it never reaches the inbox looking like room traffic), counted per sender
    for _ in range(2):
        assert client.receive(stanza(
            "<message from='other@chat.shakespeare.lit/x' type='groupchat'><body>hi</body>"
            "</message>"))
    assert room._muc.stray_groupchat == {"other@chat.shakespeare.lit": 2}
    assert room._muc.stray_groupchat_dropped == 2
    # a private message from an occupant goes to the inbox
    assert not client.receive(stanza(
        f"<message from='{ROOM}/firstwitch' type='chat'><body>psst</body></message>"))


def test_nick_change_is_not_a_departure(client: FakeClient) -> None:
    room = entered(client)
    client.receive(presence("firstwitch", 303, type="unavailable",
                            item_extra="").replace("<item ", "<item nick='oldhag' "))
    client.receive(presence("oldhag", role="moderator", affiliation="owner"))
    assert set(room.occupants) == {"oldhag", "thirdwitch"}
    assert ("muc_nick", room, "firstwitch", "oldhag") in client.events
    # our own change: unavailable with 110 and 303, then the new self-presence
    client.receive(presence("thirdwitch", 110, 303, type="unavailable").replace(
        "<item ", "<item nick='hag' "))
    assert room.joined
    client.receive(presence("hag", 110))
    assert room.nick == "hag" and room.joined and "thirdwitch" not in room.occupants


@pytest.mark.parametrize("code,reason", [(307, "kicked"), (301, "banned"),
                                         (321, "affiliation-changed"), (322, "members-only")])
def test_removal_ends_the_room(client: FakeClient, code: int, reason: str) -> None:
    room = entered(client)
    client.receive(stanza(f"<message from='{ROOM}/firstwitch' type='groupchat'>"
                          "<body>last words</body></message>"))
    client.receive(presence("thirdwitch", 110, code, type="unavailable", role="none",
                            item_extra="<reason>Avaunt</reason>"))
    assert [m.body for m in room.messages(timeout=1)] == ["last words"]
    assert room.left_code == code and room.left_reason == reason and not room.joined
    assert room.left_text == "Avaunt"
    assert ("muc_left", room, code) in client.events
    with pytest.raises(NotInRoomError):
        room.send("hello?")


@pytest.mark.parametrize("codes", [(332,), (333,), (307, 333)])
def test_a_removal_nobody_chose_keeps_the_room_and_enters_it_again(
        client: FakeClient, codes: tuple[int, ...]) -> None:
    # XEP-0045 §11.1: 332 (the service shuts down) and 333 (a technical error) are not a
    # kick; the room is entered again after the next session (issue 13 item 3).
    client.state = "disconnected"  # no upkeep thread here: the session hook re-enters
    room = entered(client)
    client.receive(presence("thirdwitch", 110, *codes, type="unavailable", role="none"))
    assert room.state == "rejoining" and room.joined and room.left_reason is None
    assert not [e for e in client.events if e[0] == "muc_left"]
    client.sent.clear()
    room._muc.session_lost(None)
    room._muc.session_started(None)  # type: ignore[arg-type]
    joins = [s for s in client.sent if isinstance(s, Presence)
             and s.xml.find("{http://jabber.org/protocol/muc}x") is not None]
    assert [str(p.to) for p in joins] == [f"{ROOM}/thirdwitch"]
    client.receive(presence("thirdwitch", 110))
    assert room.state == "joined" and room.rejoins == 1
    assert ("muc_joined", room) in client.events


def test_destroyed_room_without_status_code(client: FakeClient) -> None:
    room = entered(client)
    client.receive(presence("thirdwitch", type="unavailable", role="none", extra=(
        "<destroy jid='heath@chat.shakespeare.lit'><reason>Macbeth doth come.</reason>"
        "</destroy>")))
    assert room.left_reason == "destroyed" and room.left_text == "Macbeth doth come."
    assert room.alternate == JID("heath@chat.shakespeare.lit")
    assert ("muc_left", room, None) in client.events


def test_someone_elses_kick_is_not_ours(client: FakeClient) -> None:
    room = entered(client)
    client.receive(presence("firstwitch", 307, type="unavailable", role="none"))
    assert room.joined and "firstwitch" not in room.occupants


def test_subject_without_body_is_a_subject_change(client: FakeClient) -> None:
    room = entered(client)
    client.receive(stanza(f"<message from='{ROOM}/firstwitch' type='groupchat'>"
                          "<subject>Fire Burn and Cauldron Bubble!</subject></message>"))
    assert room.subject == "Fire Burn and Cauldron Bubble!" and room.subject_by == "firstwitch"
    client.receive(stanza(f"<message from='{ROOM}' type='groupchat'><subject/></message>"))
    assert room.subject is None
    # a message with a body and a subject is a message (§7.2.15 note)
    client.receive(stanza(f"<message from='{ROOM}/firstwitch' type='groupchat'>"
                          "<subject>s</subject><body>b</body></message>"))
    assert room.next_message(timeout=1).body == "b" and room.subject is None


def test_repeated_history_is_dropped_by_stanza_id(client: FakeClient) -> None:
    room = entered(client)
    for _ in range(2):
        client.receive(stanza(
            f"<message from='{ROOM}/firstwitch' type='groupchat'><body>once</body>"
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='a1'/></message>"))
    # an id claimed by someone else than the room does not count (XEP-0359 §3.1)
    for _ in range(2):
        client.receive(stanza(
            f"<message from='{ROOM}/firstwitch' type='groupchat'><body>twice</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@example.org' id='a1'/></message>"))
    assert [m.body for m in room.messages(timeout=0.2)] == ["once", "twice", "twice"]
    assert room.duplicates_dropped == 1


@pytest.mark.parametrize("condition,error", [("conflict", NickConflictError),
                                             ("not-authorized", RoomPasswordError),
                                             ("forbidden", BannedError),
                                             ("gone", MUCError)])
def test_join_errors_are_typed(client: FakeClient, condition: str,
                               error: type[MUCError]) -> None:
    muc = MUC(client)  # type: ignore[arg-type]
    room = Room(muc, JID(ROOM), "thirdwitch", None)
    muc._rooms[ROOM] = room
    future = room._begin("join", "thirdwitch")
    client.receive(stanza(
        f"<presence from='{ROOM}/thirdwitch' type='error'><error type='cancel'>"
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"))
    with pytest.raises(error) as raised:
        room._wait(future, 1, "entering")
    assert raised.value.condition == condition and raised.value.room == JID(ROOM)
    assert ROOM in str(raised.value)


def test_invitations(client: FakeClient) -> None:
    MUC(client)  # type: ignore[arg-type]
    # mediated, with Prosody's compatibility payload (which must not count twice)
    assert not client.receive(stanza(
        f"<message from='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<invite from='crone1@shakespeare.lit/desktop'><reason>Hey</reason></invite>"
        "<password>cauldronburn</password></x>"
        f"<x xmlns='jabber:x:conference' jid='{ROOM}'>Hey</x></message>"))
    # direct (XEP-0249)
    client.receive(stanza(
        "<message from='crone1@shakespeare.lit/desktop'>"
        f"<x xmlns='jabber:x:conference' jid='{ROOM}' reason='Join us'/></message>"))
    invites = [e[1:] for e in client.events if e[0] == "muc_invite"]
    assert invites == [
        (JID(ROOM), JID("crone1@shakespeare.lit/desktop"), "Hey", "cauldronburn"),
        (JID(ROOM), JID("crone1@shakespeare.lit/desktop"), "Join us", None)]


def test_join_presence_asks_for_no_history_and_carries_the_password(
        client: FakeClient) -> None:
    muc = MUC(client)  # type: ignore[arg-type]
    room = Room(muc, JID(ROOM), "thirdwitch", "cauldronburn")
    muc._send_join(room, 0, None, None, None, None)
    sent = client.sent[-1].xml
    assert sent.get("to") == f"{ROOM}/thirdwitch"
    x = sent.find("{http://jabber.org/protocol/muc}x")
    assert x.findtext("{http://jabber.org/protocol/muc}password") == "cauldronburn"
    history = x.find("{http://jabber.org/protocol/muc}history")
    assert history.get("maxchars") == "0"        # XEP-0045 §7.2.14
    muc._send_join(room, 5, 60, None, None, None)
    history = client.sent[-1].xml.find("{http://jabber.org/protocol/muc}x/"
                                       "{http://jabber.org/protocol/muc}history")
    assert history.attrib == {"maxstanzas": "5", "seconds": "60"}
