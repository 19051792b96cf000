"""XEP-0202 entity time, XEP-0012 last activity, XEP-0157 contact addresses and room/vCard
avatars (XEP-0398 conversion feature, room vCards of mod_vcard_muc) against the real Prosody."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from simplexmpp import Client
from simplexmpp.errors import IqError
from simplexmpp.ext.vcard import VCardData
from simplexmpp.stanza import Iq

from .conftest import Server
from .test_avatar import befriend, tiny_png


def test_entity_time_of_the_server_and_of_a_client(connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    server_time = alice.time.get()
    client_time = alice.time.get(bob.jid)
    after = datetime.now(timezone.utc) + timedelta(seconds=5)
    for answer in (server_time, client_time):
        assert before <= answer.utc <= after
    assert client_time.offset == timedelta(0)  # our zone is not revealed by default
    bob.time.reveal_timezone = True
    local = datetime.now().astimezone().utcoffset()
    assert alice.time.get(bob.jid).offset == local
    bob.time.answer = False
    with pytest.raises(IqError) as refused:
        alice.time.get(bob.jid)
    assert refused.value.condition == "service-unavailable"


def test_last_activity_of_server_account_and_client(connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    uptime = alice.last_activity.get()
    assert uptime.seconds >= 0
    # A client answers only whom it shows its presence to (XEP-0012 §4, like presence).
    with pytest.raises(IqError) as refused:
        alice.last_activity.get(bob.jid)
    assert refused.value.condition == "forbidden"
    befriend(alice, bob)
    idle = alice.last_activity.get(bob.jid)
    assert 0 <= idle.seconds <= bob.last_activity.idle + 1
    # The server answers for an offline contact's account: seconds since its logout.
    bob.disconnect()
    offline = alice.last_activity.get(bob.account.bare)
    assert offline.seconds >= 0 and offline.when <= datetime.now(timezone.utc)


def test_contact_addresses_of_the_server(connect: Callable[..., Client]) -> None:
    client = connect()
    addresses = client.disco.contact_addresses()
    assert addresses["abuse"] == ["mailto:abuse@localhost"]
    assert addresses["admin"] == ["xmpp:admin@localhost", "mailto:admin@localhost"]
    assert "sales" not in addresses  # empty roles are left out
    assert client.disco.contact_addresses(client.account.bare) == {}


def test_room_avatar_from_the_room_vcard(server: Server, connect: Callable[..., Client]) -> None:
    owner, guest = connect(), connect()
    room_jid = f"avatar{os.getpid()}@{server.muc}"
    owner.muc.join(room_jid, "owner")
    assert guest.avatar.fetch_room(room_jid) is None
    image = tiny_png()
    # The room's owner sets its vCard (mod_vcard_muc); anyone may read it.
    owner.iq(Iq.set(room_jid, VCardData(photo=image, photo_type="image/png").to_element()))
    avatar = guest.avatar.fetch_room(room_jid)
    assert avatar is not None and avatar.data == image and avatar.source == "vcard"
    with pytest.raises(ValueError):
        guest.avatar.fetch_room(f"{room_jid}/owner")


def test_server_converts_avatars(connect: Callable[..., Client]) -> None:
    # Prosody's mod_vcard_legacy implements XEP-0398.
    assert connect().avatar.server_converts()


def test_vcard_photo_hashes_in_presence(server: Server, connect: Callable[..., Client]) -> None:
    """XEP-0153 hashes read from presence: a contact's, injected by Prosody's XEP-0398
    conversion from its XEP-0084 avatar, and a room's (mod_vcard_muc)."""
    from .test_muc import Events
    alice, bob = connect(), connect()
    befriend(alice, bob)
    changed = Events(bob, "vcard_avatar_changed")
    avatar_id = alice.avatar.publish(tiny_png(3, 3), "image/png")
    alice.send_presence(status="new face")
    changed.next(lambda jid, digest: jid == alice.jid and digest == avatar_id)
    assert bob.avatar.vcard_hash(alice.jid) == avatar_id

    room_jid = f"hash{os.getpid()}@{server.muc}"
    alice.muc.join(room_jid, "alice")
    bob.muc.join(room_jid, "bob")
    image = tiny_png(4, 4, (0, 0, 255))
    alice.iq(Iq.set(room_jid, VCardData(photo=image, photo_type="image/png").to_element()))
    import hashlib
    digest = hashlib.sha1(image).hexdigest()
    changed.next(lambda jid, sha1: str(jid) == room_jid and sha1 == digest)
    assert bob.avatar.vcard_hash(room_jid) == digest
