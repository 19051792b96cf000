"""OMEMO at the edges, on the real Prosody: encrypted rooms with three accounts, and encrypted
file sharing (client.omemo.upload / download)."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")

from simplexmpp import Client  # noqa: E402
from simplexmpp.errors import NoTrustedDevicesError, OMEMOError  # noqa: E402
from simplexmpp.ext.muc import Room  # noqa: E402
from simplexmpp.ext.omemo import OLDMEMO_NS, TWOMEMO_NS, FALLBACK_BODY  # noqa: E402
from simplexmpp.ext.omemo_media import aesgcm_link_of  # noqa: E402
from simplexmpp.ext.upload import http_session  # noqa: E402

from .conftest import Server  # noqa: E402

WAIT = 30.0
_rooms = itertools.count(1)

SECRET_ROOM = {"muc#roomconfig_membersonly": True, "muc#roomconfig_whois": "anyone"}


def room_jid(server: Server) -> str:
    return f"omemo{os.getpid()}x{next(_rooms)}@{server.muc}"


def omemo_client(connect: Callable[..., Client], tmp_path: Path, name: str) -> Client:
    client = connect(omemo_store=tmp_path / f"{name}.json")
    client.send_presence()
    assert client.omemo.device_id  # our device is announced before anything is sent
    return client


def secret_room(server: Server, owner: Client, members: list[Client]) -> tuple[str, Room]:
    """A non-anonymous, members-only room of `owner` with `members` as members."""
    jid = room_jid(server)
    room = owner.muc.join(jid, "owner", config=SECRET_ROOM)
    for member in members:
        room.set_affiliation(member.account.bare, "member")
    return jid, room


def wait_for_occupant(client: Client, room: Room, nick: str) -> None:
    """Until `client` has seen `nick` enter `room` (its presence reached our occupant list and
    the "muc_presence" callbacks)."""
    arrived = threading.Event()

    def seen(where: Room, occupant: Any) -> None:
        if where is room and occupant.nick == nick and occupant.available:
            arrived.set()

    handle = client.on("muc_presence", seen)
    try:
        if nick not in room.occupants:
            assert arrived.wait(WAIT), f"{nick} did not enter {room.jid}"
        # "muc_presence" callbacks run in order on the dispatcher: one more round through it
        # means every earlier one (the member tracking too) has run.
        done = threading.Event()
        client.dispatch(done.set)
        assert done.wait(WAIT)
    finally:
        client.off(handle)


def next_room_message(room: Room) -> Any:
    """The next room message that is not a reflection of one we sent ourselves."""
    for msg in room.messages(timeout=WAIT):
        if not room.from_me(msg):
            return msg
    raise AssertionError("no room message")


@pytest.mark.parametrize("namespace", [TWOMEMO_NS, OLDMEMO_NS])
def test_three_accounts_talk_encrypted_in_a_members_only_room(
        server: Server, connect: Callable[..., Client], tmp_path: Path, namespace: str) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    carol = omemo_client(connect, tmp_path, "carol")
    jid, a_room = secret_room(server, alice, [bob, carol])
    b_room = bob.muc.join(jid, "bob")
    c_room = carol.muc.join(jid, "carol")
    assert alice.omemo_muc.recipients(a_room) == sorted([str(bob.account.bare),
                                                         str(carol.account.bare)])
    alice.omemo.send_message(jid, "the plan is at noon", type="groupchat",
                             namespace=namespace)
    for room in (b_room, c_room):
        msg = next_room_message(room)
        assert msg.body == "the plan is at noon"
        assert msg.encryption == namespace
        assert msg.sender_device == alice.omemo.device_id
        assert msg.from_.resource == "owner"
    # Our own reflection shows what we sent, marked as encrypted by this device.
    own = next(iter(a_room.messages(timeout=WAIT)))
    assert a_room.from_me(own) and own.body == "the plan is at noon"
    assert own.encryption == namespace
    # Answers go to everyone, the sender included.
    bob.omemo_muc.send(b_room, "noon works", namespace=namespace)
    for room in (a_room, c_room):
        msg = next_room_message(room)
        assert (msg.body, msg.encryption, msg.sender_device) == (
            "noon works", namespace, bob.omemo.device_id)


def test_what_the_room_relays_is_only_the_fallback_and_a_member_without_omemo_blocks(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    eve = connect()  # no OMEMO
    jid, a_room = secret_room(server, alice, [bob])
    bob.muc.join(jid, "bob")
    alice.omemo_muc.send(a_room, "history secret")
    # Eve becomes a member later and reads the room's history raw (no decryptor): the
    # server kept and relays only the fallback body and the <encrypted/> element.
    a_room.set_affiliation(eve.account.bare, "member")
    eve.muc.decryptor = None
    e_room = eve.muc.join(jid, "eve", history=10)
    relayed = next_room_message(e_room)
    assert relayed.body == FALLBACK_BODY
    assert relayed.xml.find("{%s}encrypted" % TWOMEMO_NS) is not None
    assert "history secret" not in str(relayed)
    wait_for_occupant(alice, a_room, "eve")
    # Now Eve is a member without a device: a message nobody could send to all is refused.
    with pytest.raises(NoTrustedDevicesError) as caught:
        alice.omemo_muc.send(a_room, "secret")
    assert str(eve.account.bare) in caught.value.jids


def test_a_room_that_shows_no_real_jids_is_refused(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    room = alice.muc.join(room_jid(server), "alice",
                          config={"muc#roomconfig_membersonly": True,
                                  "muc#roomconfig_whois": "moderators"})
    with pytest.raises(OMEMOError, match="non-anonymous"):
        alice.omemo_muc.send(room, "secret")


def test_an_open_room_is_refused_unless_allowed(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    jid = room_jid(server)
    a_room = alice.muc.join(jid, "alice", config={"muc#roomconfig_whois": "anyone"})
    b_room = bob.muc.join(jid, "bob")
    wait_for_occupant(alice, a_room, "bob")
    with pytest.raises(OMEMOError, match="members-only"):
        alice.omemo_muc.send(a_room, "secret")
    alice.omemo_muc.require_members_only = False
    alice.omemo_muc.send(a_room, "fine here")
    msg = next_room_message(b_room)
    assert (msg.body, msg.encryption) == ("fine here", TWOMEMO_NS)


def test_a_distrusted_member_device_cannot_read_room_messages(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    carol = omemo_client(connect, tmp_path, "carol")
    jid, a_room = secret_room(server, alice, [bob, carol])
    b_room = bob.muc.join(jid, "bob")
    c_room = carol.muc.join(jid, "carol")
    alice.omemo.distrust(carol.account.bare, carol.omemo.device_id)
    with pytest.raises(NoTrustedDevicesError):  # carol has no other device
        alice.omemo_muc.send(a_room, "not for carol")
    alice.omemo.trust(carol.account.bare, carol.omemo.device_id)
    alice.omemo_muc.send(a_room, "for all of you")
    assert next_room_message(b_room).body == "for all of you"
    assert next_room_message(c_room).body == "for all of you"


def test_room_message_from_a_device_we_distrust_arrives_undecrypted(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    jid, a_room = secret_room(server, alice, [bob])
    b_room = bob.muc.join(jid, "bob")
    bob.omemo.distrust(alice.account.bare, alice.omemo.device_id)
    alice.omemo_muc.send(a_room, "bob distrusts me")
    msg = next_room_message(b_room)
    assert msg.body is None and msg.encryption is not None
    assert msg.decryption_error


def test_upload_sends_an_aesgcm_link_the_other_side_downloads(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    data = os.urandom(200_000)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    link = alice.omemo.upload(path, bob.account.bare)
    msg = bob.next_message(timeout=WAIT)
    assert msg.encryption is not None and msg.body == link.url
    found = aesgcm_link_of(msg)
    assert found == link and found.https_url.endswith(".pdf")
    out = tmp_path / "bob"
    out.mkdir()
    target = bob.omemo.download(msg, out)
    assert target.read_bytes() == data and target.suffix == ".pdf"
    # The HTTP server holds ciphertext and tag only.
    with http_session(bob) as session:
        stored = session.get(link.https_url, timeout=WAIT).content
    assert len(stored) == len(data) + 16 and data[:64] not in stored


def test_upload_to_a_room(server: Server, connect: Callable[..., Client],
                          tmp_path: Path) -> None:
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    jid, _ = secret_room(server, alice, [bob])
    b_room = bob.muc.join(jid, "bob")
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    link = alice.omemo.upload(path, jid, type="groupchat")
    msg = next_room_message(b_room)
    assert aesgcm_link_of(msg) == link
    out = tmp_path / "bob"
    out.mkdir()
    assert bob.omemo.download(msg, out).read_bytes() == path.read_bytes()


def test_download_of_a_message_without_a_link_is_a_typed_error(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    from simplexmpp.ext.omemo_media import InvalidAesgcmLinkError
    from simplexmpp.stanza import Message
    alice = connect(omemo_store=tmp_path / "a.json")
    with pytest.raises(InvalidAesgcmLinkError):
        alice.omemo.download(Message(to="bob@localhost", body=FALLBACK_BODY), tmp_path)


def test_omemo_bot_sample_answers_encrypted_and_keeps_files(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    from .samples import start_sample, wait_ready
    bot = server.new_account("bot")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    proc = start_sample(server, "omemo_bot.py", "--store", str(tmp_path / "bot.json"),
                        "--downloads", str(downloads), "--max", "2", "--idle", "60", jid=bot)
    try:
        wait_ready(proc, "ready", timeout=60)
        alice = omemo_client(connect, tmp_path, "alice")
        alice.send_message(bot, "plain hello")
        note = alice.next_message(timeout=WAIT)
        assert note.encryption is None and "only answer OMEMO" in (note.body or "")
        alice.omemo.send_message(bot, "encrypted hello")
        echo = alice.next_message(timeout=WAIT)
        assert (echo.body, echo.encryption) == ("encrypted hello", TWOMEMO_NS)
        path = tmp_path / "data.bin"
        path.write_bytes(os.urandom(10_000))
        alice.omemo.upload(path, bot)
        ack = alice.next_message(timeout=WAIT)
        assert ack.encryption is not None and "(10000 bytes)" in (ack.body or "")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "answered 2 message(s)" in out
    kept = list(downloads.iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == path.read_bytes()


def test_a_plain_room_message_never_overtakes_an_encrypted_one(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    """Issue 16, in a room: Bob's encrypted message, then his plain one; Carol's client reads
    both while the first is still being decrypted, and shows them in that order."""
    from .test_omemo import hold_decryption
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    carol = omemo_client(connect, tmp_path, "carol")
    jid, _ = secret_room(server, alice, [bob, carol])
    c_room = carol.muc.join(jid, "carol")
    b_room = bob.muc.join(jid, "bob")
    wait_for_occupant(bob, b_room, "carol")
    release = hold_decryption(carol)
    bob.omemo_muc.send(b_room, "encrypted first", namespace=TWOMEMO_NS)
    b_room.send("plain second")
    bob.ping(carol.jid, timeout=WAIT)  # answered after Carol read both (RFC 6120 §10.1)
    release.set()
    first, second = next_room_message(c_room), next_room_message(c_room)
    assert [(m.from_.resource, m.body, m.encryption) for m in (first, second)] == [
        ("bob", "encrypted first", TWOMEMO_NS), ("bob", "plain second", None)]


def test_a_rooms_archive_is_decrypted_like_its_live_messages(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    """client.mam.query(archive=room): the sender's keys are found by the real JID the
    archive of a non-anonymous room gives; our own messages show what we sent."""
    alice = omemo_client(connect, tmp_path, "alice")
    bob = omemo_client(connect, tmp_path, "bob")
    carol = omemo_client(connect, tmp_path, "carol")
    jid, a_room = secret_room(server, alice, [bob, carol])
    b_room = bob.muc.join(jid, "bob")
    wait_for_occupant(alice, a_room, "bob")
    alice.omemo.send_message(jid, "for the archive", type="groupchat", namespace=TWOMEMO_NS)
    assert next_room_message(b_room).body == "for the archive"
    # Carol, a member who was not in the room, reads it from the room's archive: it was
    # encrypted for her too (members, XEP-0384 §5.8.1).
    archived = [m for m in carol.mam.query(archive=jid) if m.encryption is not None]
    assert [(m.body, m.encryption, m.sender_device, m.decryption_error) for m in archived] == [
        ("for the archive", TWOMEMO_NS, alice.omemo.device_id, None)]
    own = [m for m in alice.mam.query(archive=jid) if m.encryption is not None]
    assert [m.body for m in own] == ["for the archive"]
    # Bob read it live: its key is used up (forward secrecy); the archived copy says so.
    again = [m for m in bob.mam.query(archive=jid) if m.encryption is not None]
    assert len(again) == 1 and again[0].body is None and again[0].decryption_error
