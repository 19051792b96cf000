"""MUC rooms survive what the user did not choose (issue 13 item 3): a Prosody restart, a
room that forgot us (XEP-0410 self-ping); a kick is not undone. And groupchat messages from
no room we are in never look like room traffic (issue 14 item 5). Real Prosody."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp import Client, Message, errors
from simplexmpp.ext.muc import Room
from simplexmpp.testing import running_server

from .conftest import Server, start_server
from .test_muc import Events

WAIT = 30
_names = itertools.count(1)


def events(client: Client, name: str) -> Events:
    """test_muc's Events with this module's longer wait (a server restart is in between)."""
    return Events(client, name, WAIT)


def room_name(server: Server) -> str:
    return f"rejoin{os.getpid()}x{next(_names)}@{server.muc}"


def wait_for_body(room: Room, body: str) -> Message:
    for msg in room.messages(timeout=WAIT):
        if msg.body == body:
            return msg
    raise AssertionError(f"{body!r} never arrived in {room.jid}")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Server]:
    """A Prosody of this test's own, which the test may stop and start again (same
    directory, same ports, same accounts and persistent rooms)."""
    yield from start_server(tmp_path / "prosody")


def prosody_shell(server: Server, lua: str) -> str:
    """Run one line of Lua in the running Prosody (its admin console)."""
    out = subprocess.run(["prosodyctl", "--config", f"{server.state}/prosody.cfg.lua", "shell"],
                         input=f"> {lua}\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_both_occupants_are_back_in_the_room_after_a_server_restart(
        restartable: Server) -> None:
    server = restartable
    jid = room_name(server)
    alice = server.client(server.new_account("alice"), reconnect_max_delay=1)
    bob = server.client(server.new_account("bob"), reconnect_max_delay=1)
    try:
        alice.connect()
        bob.connect()
        alice_room = alice.muc.join(jid, "alice", config={"persistentroom": True})
        bob_room = bob.muc.join(jid, "bob")
        alice_back, bob_back = events(alice, "muc_joined"), events(bob, "muc_joined")
        alice_left, bob_left = events(alice, "muc_left"), events(bob, "muc_left")

        server.restart()

        assert alice_back.next()[0] is alice_room
        assert bob_back.next()[0] is bob_room
        assert alice_left.calls.empty() and bob_left.calls.empty()
        assert alice_room.state == bob_room.state == "joined"
        assert alice_room.rejoins >= 1 and bob_room.rejoins >= 1
        # Both can send, and each sees the other's message.
        bob_room.send("bob is back")
        alice_room.send("alice is back")
        assert wait_for_body(alice_room, "bob is back").from_.resource == "bob"
        assert wait_for_body(bob_room, "alice is back").from_.resource == "alice"
    finally:
        for client in (alice, bob):
            try:
                client.disconnect(timeout=5)
            except errors.XMPPError:
                pass


def forget_occupant(server: Server, room: Room) -> None:
    """Make the room forget an occupant without telling anyone (what a restart of the MUC
    service with rooms kept, or a lost s2s link, does: XEP-0410 §1)."""
    out = prosody_shell(server, (
        f'local r = prosody.hosts["{server.muc}"].modules.muc.get_room_from_jid("{room.jid}"); '
        f'local o = r:get_occupant_by_nick("{room.occupant_jid()}"); r._occupants[o.nick] = nil; '
        'for j in o:each_session() do r._jid_nick[j] = nil end; return "forgotten"'))
    assert "forgotten" in out, out


def test_self_ping_enters_again_a_room_that_forgot_us(server: Server) -> None:
    jid = room_name(server)
    alice = server.client(server.new_account("alice"))
    bob = server.client(server.new_account("bob"))
    try:
        alice.connect()
        bob.connect()
        alice.muc.self_ping_interval = 0.5  # seconds of silence before a self-ping
        alice_room = alice.muc.join(jid, "alice")
        bob_room = bob.muc.join(jid, "bob")
        back = events(alice, "muc_joined")
        forget_occupant(server, alice_room)
        assert back.next()[0] is alice_room  # no reconnect: the self-ping found out
        assert alice_room.rejoins == 1 and alice_room.state == "joined"
        assert alice.is_connected and alice.session is not None and \
            alice.session.number == 1
        alice_room.send("found my way back")
        assert wait_for_body(bob_room, "found my way back").from_.resource == "alice"
    finally:
        alice.disconnect()
        bob.disconnect()


def test_a_kick_is_not_undone(server: Server) -> None:
    jid = room_name(server)
    owner = server.client(server.new_account("owner"))
    alice = server.client(server.new_account("alice"))
    try:
        owner.connect()
        alice.connect()
        alice.muc.self_ping_interval = 0.2
        owner_room = owner.muc.join(jid, "owner")
        alice_room = alice.muc.join(jid, "alice")
        left = events(alice, "muc_left")
        owner_room.kick("alice", "out")
        assert left.next() == (alice_room, 307)
        assert alice_room.state == "left" and alice_room.left_reason == "kicked"
        # The upkeep thread has no room left to look after, and no re-join went out.
        assert alice.muc.joined == {}
        assert "alice" not in owner.muc.room(jid).occupants
        with pytest.raises(errors.XMPPError):
            alice_room.send("let me in")
    finally:
        owner.disconnect()
        alice.disconnect()


def test_a_room_left_with_a_with_block_is_left(server: Server) -> None:
    jid = room_name(server)
    with server.client(server.new_account("alice")) as alice:
        with alice.muc.join(jid, "alice") as room:
            assert room.joined
        assert room.state == "left" and room.left_reason == "left"
        assert alice.muc.room(jid) is None


def test_groupchat_from_someone_who_is_no_room_never_reaches_the_inbox(server: Server) -> None:
    # Through Prosody an attacker can send a groupchat-typed message from their own full
    # JID (Prosody stamps the real from): it must not look like room traffic.
    victim = server.client(server.new_account("victim"))
    mallory = server.client(server.new_account("mallory"))
    try:
        victim.connect()
        mallory.connect()
        mallory.send_message(victim.jid, "I am a room, trust me", type="groupchat")
        mallory.send_message(victim.jid, "plain chat")
        msg = victim.next_message(timeout=WAIT)
        assert (msg.type, msg.body) == ("chat", "plain chat")
        assert victim.muc.stray_groupchat == {str(mallory.account.bare): 1}
    finally:
        victim.disconnect()
        mallory.disconnect()


def test_groupchat_forged_from_a_room_we_never_joined_is_dropped() -> None:
    # A hostile server can put any room JID in from; a room we never entered is no room
    # of ours. (Scripted server: a real one stamps the from.)
    with running_server() as fake:
        with fake.client("alice") as alice:
            fake.inject(f"<message xmlns='jabber:client' to='{alice.jid}' type='groupchat' "
                        "from='council@conference.localhost/chair'><body>vote now</body>"
                        "</message>")
            fake.inject(f"<message xmlns='jabber:client' to='{alice.jid}' type='chat' "
                        "from='bob@localhost/x'><body>after</body></message>")
            msg = alice.next_message(timeout=WAIT)
            assert (msg.type, msg.body) == ("chat", "after")
            assert alice.muc.stray_groupchat == {"council@conference.localhost": 1}
