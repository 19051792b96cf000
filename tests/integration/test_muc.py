"""XEP-0045 Multi-User Chat (and XEP-0249 invitations) against the real Prosody, whose rooms
are locked on creation until configured (no --muc-instant)."""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client, JID
from simplexmpp.ext.muc import (BannedError, MUCError, NickConflictError, NotInRoomError,
                                Occupant, Room, RoomPasswordError)

from .conftest import Server
from .proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
_rooms = itertools.count(1)
WAIT = 15


@pytest.fixture
def any_room_jid(any_server: Server) -> str:
    """A fresh room name on the MUC service of each real server in turn."""
    return f"room{os.getpid()}x{next(_rooms)}@{any_server.muc}"


@pytest.fixture
def room_jid(server: Server) -> str:
    return f"room{os.getpid()}x{next(_rooms)}@{server.muc}"


class Events:
    """Collects one event's calls in a queue, to wait on them without sleeping."""

    def __init__(self, client: Client, name: str, wait: float = WAIT) -> None:
        self.calls: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.wait = wait
        client.on(name, lambda *args: self.calls.put(args))

    def next(self, match: Callable[..., bool] = lambda *a: True) -> tuple[Any, ...]:
        while True:
            args = self.calls.get(timeout=self.wait)
            if match(*args):
                return args


def bodies_until(room: Room, last: str) -> list[str]:
    out = []
    for msg in room.messages(timeout=WAIT):
        out.append(msg.body or "")
        if msg.body == last:
            return out
    raise AssertionError(f"{last!r} never arrived; got {out}")


def test_joining_a_new_room_creates_and_unlocks_it(connect_any: Callable[..., Client],
                                                   any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    room = alice.muc.join(any_room_jid, "alice")
    assert room.joined and room.created
    assert {110, 201} <= room.status_codes
    assert room.nick == "alice" and room.affiliation == "owner" and room.role == "moderator"
    assert alice.muc.room(any_room_jid) is room and JID(any_room_jid) in alice.muc.joined
    # Unlocked as an instant room: someone else may enter now (a locked room says
    # item-not-found, XEP-0045 §7.2.10).
    presences = Events(alice, "muc_presence")
    other = bob.muc.join(any_room_jid, "bob")
    assert not other.created and 201 not in other.status_codes
    assert set(other.occupants) == {"alice", "bob"}
    assert other.occupants["alice"].affiliation == "owner"
    assert other.occupants["alice"].role == "moderator"
    assert other.occupants["bob"] == Occupant("bob", other.occupants["bob"].jid, "participant",
                                              "none")
    _, seen = presences.next(lambda r, o: o.nick == "bob")
    assert seen.available and seen.role == "participant"
    assert "bob" in room.occupants
    assert "<table>" in room._repr_html_() and "bob" in room._repr_html_()


def test_two_clients_exchange_room_messages_outside_the_inbox(
        connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    msg_id = a_room.send("hello room")
    # No "muc_message" listener yet: the room queues what arrives before next_message().
    # (A room with a listener and no reader keeps no queue, so a listener added first made
    # this wait out its timeout whenever the message beat next_message(): a load flake.)
    got = b_room.next_message()
    assert got.body == "hello room" and got.type == "groupchat"
    assert got.from_ == JID(any_room_jid).with_resource("alice") and got.id == msg_id
    reflected = a_room.next_message()
    assert reflected.body == "hello room" and a_room.from_me(reflected)
    # Read once, the queue keeps filling with a listener too; both get each message.
    events = Events(bob, "muc_message")
    b_room.send("hi alice")
    assert bodies_until(a_room, "hi alice") == ["hi alice"]
    room, event_msg = events.next()
    assert room is b_room and event_msg.body == "hi alice"
    assert bodies_until(b_room, "hi alice") == ["hi alice"]
    # Private messages from an occupant are ordinary messages; room messages, which came
    # the same way before them, never reached the inbox.
    a_room.send_private("bob", "psst")
    bob.send_message(bob.jid, "marker")
    inbox = [bob.next_message(timeout=WAIT), bob.next_message(timeout=WAIT)]
    assert sorted((m.type, m.body) for m in inbox) == [("chat", "marker"), ("chat", "psst")]


def test_history_on_join(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob, carol = connect_any(), connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    for n in range(3):
        a_room.send(f"old {n}")
    bodies_until(a_room, "old 2")  # all three are in the room's history now
    b_room = bob.muc.join(any_room_jid, "bob", history=2)
    first, second = b_room.next_message(), b_room.next_message()
    assert [first.body, second.body] == ["old 1", "old 2"]
    assert first.delay is not None and second.delay is not None
    c_room = carol.muc.join(any_room_jid, "carol")       # history=0: none
    a_room.send("live")
    assert c_room.next_message().body == "live"
    d_room = connect_any().muc.join(any_room_jid, "dave", history=None, history_seconds=3600)
    assert bodies_until(d_room, "live") == ["old 0", "old 1", "old 2", "live"]


def test_subject(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice",
                            config={"muc#roomconfig_changesubject": False})
    assert a_room.subject is None
    b_room = bob.muc.join(any_room_jid, "bob")
    subjects = Events(bob, "muc_subject")
    a_room.set_subject("Witches only")
    assert a_room.subject == "Witches only" and a_room.subject_by == "alice"
    assert subjects.next() == (b_room, "Witches only", "alice")
    assert b_room.subject == "Witches only"
    late = connect_any().muc.join(any_room_jid, "carol")     # the subject comes with entering
    assert late.subject == "Witches only"
    # A participant may not change the subject in this room: a typed refusal.
    with pytest.raises(Exception) as refused:
        b_room.set_subject("mine now")
    assert getattr(refused.value, "condition", None) == "forbidden"
    # Subject changes are not room messages.
    a_room.send("after")
    assert b_room.next_message().body == "after"


def test_roles_affiliations_and_nick_change(connect_any: Callable[..., Client],
                                            any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    presences = Events(alice, "muc_presence")
    nicks = Events(alice, "muc_nick")
    a_room.set_affiliation(bob.account, "member", reason="welcome")
    presences.next(lambda r, o: o.nick == "bob" and o.affiliation == "member")
    assert a_room.affiliations("member") == {JID(bob.account): ""}
    a_room.set_role("bob", "visitor")
    presences.next(lambda r, o: o.nick == "bob" and o.role == "visitor")
    assert a_room.occupants["bob"].role == "visitor"
    with pytest.raises(ValueError):
        a_room.set_role("bob", "overlord")

    b_room.change_nick("bobby")
    assert b_room.nick == "bobby" and "bob" not in b_room.occupants
    assert b_room.occupants["bobby"].role == "visitor"
    assert nicks.next() == (a_room, "bob", "bobby")
    presences.next(lambda r, o: o.nick == "bobby" and o.available)
    assert "bobby" in a_room.occupants and "bob" not in a_room.occupants
    assert b_room.joined  # a nickname change is not leaving


def test_nick_conflict(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    alice.muc.join(any_room_jid, "alice")
    with pytest.raises(NickConflictError) as conflict:
        bob.muc.join(any_room_jid, "alice")
    assert conflict.value.condition == "conflict" and "alice" in str(conflict.value)
    assert bob.muc.room(any_room_jid) is None and not bob.muc.joined
    b_room = bob.muc.join(any_room_jid, "bob")           # another nickname works
    with pytest.raises(NickConflictError):
        b_room.change_nick("alice")
    assert b_room.nick == "bob" and b_room.joined


def test_password_protected_room(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    room = alice.muc.join(any_room_jid, "alice", config={
        "muc#roomconfig_passwordprotectedroom": True,
        "muc#roomconfig_roomsecret": "cauldronburn"})
    assert room.created
    assert "muc_passwordprotected" in room.info().features
    with pytest.raises(RoomPasswordError) as refused:
        bob.muc.join(any_room_jid, "bob")
    assert refused.value.condition == "not-authorized"
    with pytest.raises(RoomPasswordError):
        bob.muc.join(any_room_jid, "bob", password="wrong")
    assert bob.muc.join(any_room_jid, "bob", password="cauldronburn").joined


def test_kick_ends_the_kicked_clients_room(connect_any: Callable[..., Client],
                                           any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    left = Events(bob, "muc_left")
    a_room.send("before the kick")
    a_room.kick("bob", reason="too loud")
    # The iterator gives what came before, then ends.
    assert [m.body for m in b_room.messages(timeout=WAIT)] == ["before the kick"]
    assert not b_room.joined and b_room.left_code == 307 and b_room.left_reason == "kicked"
    assert b_room.left_text == "too loud"
    assert left.next() == (b_room, 307)
    assert bob.muc.room(any_room_jid) is None
    with pytest.raises(NotInRoomError):
        b_room.send("let me back")
    with pytest.raises(NotInRoomError):
        b_room.next_message(timeout=1)
    assert "bob" not in a_room.occupants
    assert bob.muc.join(any_room_jid, "bob").joined   # a kick is not a ban


def test_ban(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    a_room.ban(bob.jid, reason="enough")            # a full JID: the bare one is banned
    assert list(b_room.messages(timeout=WAIT)) == []
    assert b_room.left_code == 301 and b_room.left_reason == "banned"
    assert JID(bob.account) in a_room.affiliations("outcast")
    with pytest.raises(BannedError):
        bob.muc.join(any_room_jid, "bob")


def test_destroy_puts_everyone_out(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    left = Events(bob, "muc_left")
    a_room.destroy(reason="Macbeth doth come")
    assert left.next() == (b_room, None)
    assert b_room.left_reason == "destroyed" and b_room.left_text == "Macbeth doth come"
    assert a_room.left_reason == "destroyed" and not alice.muc.joined


def test_invitations(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    invites = Events(bob, "muc_invite")
    bob.send_presence()  # available: a message to the bare JID is delivered, not stored
    room = alice.muc.join(any_room_jid, "alice",
                          config={"roomsecret": "s3cret", "passwordprotectedroom": True})
    room.invite(bob.account, reason="come in")       # mediated, XEP-0045 §7.8.2
    where, inviter, reason, password = invites.next()
    # §7.8.2: the room names the inviter by bare, full or occupant JID (Prosody: occupant).
    assert where == JID(any_room_jid)
    assert inviter in (JID(alice.account), alice.jid, JID(any_room_jid).with_resource("alice"))
    assert reason == "come in" and password == "s3cret"
    room.invite(bob.jid, reason="really", direct=True)   # XEP-0249
    assert invites.next() == (JID(any_room_jid), alice.jid, "really", "s3cret")
    assert bob.muc.join(where, "bob", password=password).joined
    assert "jabber:x:conference" in bob.local_features
    assert "http://jabber.org/protocol/muc" in bob.local_features


def test_configure_with_a_form_and_list_rooms(connect: Callable[..., Client],
                                              room_jid: str, server: Server) -> None:
    alice = connect()
    room = alice.muc.join(room_jid, "alice", config={"muc#roomconfig_roomname": "First",
                                                     "publicroom": True})
    assert room.get_config().value("muc#roomconfig_roomname") == "First"
    form = room.get_config()
    assert form.form_type == "http://jabber.org/protocol/muc#roomconfig"
    form.set("muc#roomconfig_roomname", "The Coven")
    form.set("muc#roomconfig_roomdesc", "for witches")
    room.configure(form)
    again = room.get_config()
    assert again.value("muc#roomconfig_roomname") == "The Coven"
    assert again.value("muc#roomconfig_roomdesc") == "for witches"
    assert alice.muc.service() == JID(server.muc)
    listed = {str(item.jid): item.name for item in alice.muc.rooms()}
    assert listed[room_jid] == "The Coven"
    assert {str(i.jid) for i in alice.muc.rooms(server.muc)} == set(listed)


def test_leave(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice, bob = connect_any(), connect_any()
    a_room = alice.muc.join(any_room_jid, "alice")
    b_room = bob.muc.join(any_room_jid, "bob")
    presences = Events(alice, "muc_presence")
    left = Events(bob, "muc_left")
    b_room.leave(status="bye")
    assert b_room.left_reason == "left" and not b_room.joined and not bob.muc.joined
    assert list(b_room.messages(timeout=WAIT)) == []
    assert left.next() == (b_room, None)
    _, gone = presences.next(lambda r, o: o.nick == "bob" and not o.available)
    assert not gone.available and gone.status == "bye" and "bob" not in a_room.occupants
    b_room.leave()  # nothing to do


def test_room_archive_query(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice = connect_any()
    room = alice.muc.join(any_room_jid, "alice")
    room.send("archived one")
    room.send("archived two")
    bodies_until(room, "archived two")
    archived = list(alice.mam.query(archive=any_room_jid, max=20))
    assert [m.body for m in archived] == ["archived one", "archived two"]
    assert all(m.from_ == JID(any_room_jid).with_resource("alice") for m in archived)
    assert all(m.stanza_id(any_room_jid) for m in archived)


def test_room_lister_sample(connect: Callable[..., Client], room_jid: str,
                            server: Server) -> None:
    alice = connect()
    alice.muc.join(room_jid, "alice", config={"muc#roomconfig_roomname": "Listed room",
                                              "muc#roomconfig_publicroom": True})
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env.update(XMPP_JID=server.new_account(), XMPP_PASSWORD=server.password,
               XMPP_HOST=server.host, XMPP_PORT=str(server.port), XMPP_CA=server.ca)
    for extra in ([], [server.muc]):
        out = subprocess.run([sys.executable, str(ROOT / "samples" / "room_lister.py"),
                              *extra], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith(f"{server.muc}:")
        at = next(i for i, line in enumerate(lines) if line.startswith(room_jid))
        assert "Listed room" in lines[at] and "1 occupant(s)" in lines[at]
        assert lines[at + 1].split() == ["alice", "role=moderator", "affiliation=owner"]


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.port)
    yield fault_proxy
    fault_proxy.close()


def test_rooms_are_rejoined_after_a_new_session(connect: Callable[..., Client],
                                                room_jid: str, server: Server,
                                                proxy: FaultProxy) -> None:
    alice = connect()
    a_room = alice.muc.join(room_jid, "alice")
    # No stream management: a cut connection can only be replaced by a new session.
    bob = server.client(server.new_account(), port=proxy.port, stream_management=False)
    bob.connect()
    try:
        b_room = bob.muc.join(room_jid, "bob")
        joined = Events(bob, "muc_joined")
        presences = Events(alice, "muc_presence")
        a_room.send("before")
        assert b_room.next_message().body == "before"
        proxy.cut_all()
        presences.next(lambda r, o: o.nick == "bob" and not o.available)
        a_room.send("while away")
        assert joined.next() == (b_room,)
        assert b_room.joined and bob.muc.room(room_jid) is b_room
        assert set(b_room.occupants) == {"alice", "bob"}
        a_room.send("after")
        # Exactly once each: the history since the last message seen overlaps what we had.
        assert bodies_until(b_room, "after") == ["while away", "after"]
        assert b_room.duplicates_dropped >= 1
    finally:
        bob.disconnect(timeout=5)
    assert b_room.left_reason == "disconnected"
    assert list(b_room.messages(timeout=WAIT)) == []


def test_join_timeout_and_bad_arguments(connect: Callable[..., Client], room_jid: str,
                                        server: Server) -> None:
    alice = connect()
    with pytest.raises(ValueError):
        alice.muc.join(room_jid + "/nick", "alice")
    with pytest.raises(ValueError):
        alice.muc.join(room_jid, "")
    with pytest.raises(MUCError) as refused:
        # An address that is no room: the entity there refuses the presence.
        alice.muc.join(f"nobody@{server.upload}", "alice")
    assert refused.value.condition == "service-unavailable"
    assert not alice.muc.joined


def test_events_run_off_the_io_thread(connect_any: Callable[..., Client], any_room_jid: str) -> None:
    alice = connect_any()
    threads: queue.SimpleQueue[str] = queue.SimpleQueue()
    alice.on("muc_message", lambda room, msg: threads.put(threading.current_thread().name))
    room = alice.muc.join(any_room_jid, "alice")
    room.send("x")
    assert threads.get(timeout=WAIT).startswith("simplexmpp-dispatch")
    # With a listener and no iterator, the room keeps no queue (nothing piles up) ...
    assert room._queue.empty()


def test_a_resumed_session_stays_in_its_rooms(connect: Callable[..., Client], room_jid: str,
                                              server: Server, proxy: FaultProxy) -> None:
    alice = connect()
    a_room = alice.muc.join(room_jid, "alice")
    bob = server.client(server.new_account(), port=proxy.port)
    bob.connect()
    try:
        b_room = bob.muc.join(room_jid, "bob")
        resumed = Events(bob, "resumed")
        joined = Events(bob, "muc_joined")
        proxy.cut_all()
        resumed.next()
        b_room.send("still here")      # waits, if need be, until the room is usable again
        assert bodies_until(a_room, "still here") == ["still here"]
        assert bodies_until(b_room, "still here") == ["still here"]
        assert b_room.joined and joined.calls.empty()   # no second join was needed
    finally:
        bob.disconnect(timeout=5)


def test_a_room_that_vanished_with_the_session_is_created_again(
        connect: Callable[..., Client], room_jid: str, server: Server,
        proxy: FaultProxy) -> None:
    bob = server.client(server.new_account(), port=proxy.port, stream_management=False)
    bob.connect()
    try:
        b_room = bob.muc.join(room_jid, "bob", config={"roomname": "Again",
                                                       "roomsecret": "pw",
                                                       "passwordprotectedroom": True})
        joined = Events(bob, "muc_joined")
        proxy.cut_all()   # bob was alone: the temporary room goes with his session
        assert joined.next() == (b_room,)
        # The room was created anew on re-joining and configured as join() was told.
        assert b_room.created and 201 in b_room.status_codes
        alice = connect()
        with pytest.raises(RoomPasswordError):
            alice.muc.join(room_jid, "alice")
        assert alice.muc.join(room_jid, "alice", password="pw").joined
        assert b_room.get_config().value("muc#roomconfig_roomname") == "Again"
    finally:
        bob.disconnect(timeout=5)
