"""XEP-0084 User Avatar (and XEP-0163 PEP notifications) against the real Prosody."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import struct
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client
from simplexmpp.ext.avatar import DATA_NS, METADATA_NS, AvatarError, AvatarInfo
from simplexmpp.ext.pubsub import Item
from simplexmpp.jid import JID

from .conftest import Server

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid PNG (8-bit RGB, no filter) built by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription between a and b (RFC 6121 §3.1), both available."""
    done = {a: threading.Event(), b: threading.Event()}
    for me, other in ((a, b), (b, a)):
        other_bare = str(other.account.bare)

        def approve(presence: Any, me: Client = me, other_bare: str = other_bare) -> None:
            if presence.from_ is not None and str(presence.from_.bare) == other_bare:
                me.approve(other_bare)

        def pushed(item: Any, removed: bool, me: Client = me,
                   other_bare: str = other_bare) -> None:
            if str(item.jid) == other_bare and item.subscription == "both":
                done[me].set()

        me.on("subscription_request", approve)
        me.on("roster_push", pushed)
    for client in (a, b):
        client.get_roster()  # RFC 6121 §2.1.6: roster pushes go to interested resources only
        client.send_presence()
    a.subscribe(b.account)
    b.subscribe(a.account)
    assert done[a].wait(WAIT) and done[b].wait(WAIT), "mutual subscription did not complete"


def run_sample(server: Server, jid: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env.update(XMPP_JID=jid, XMPP_PASSWORD=server.password, XMPP_HOST=server.host,
               XMPP_PORT=str(server.port), XMPP_CA=server.ca)
    return subprocess.run([sys.executable, str(ROOT / "samples" / "display_avatar.py"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_tiny_png_is_a_valid_png() -> None:
    png = tiny_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    # the IDAT holds 2 rows of filter byte + 2 RGB pixels
    start = png.index(b"IDAT") + 4
    length = struct.unpack(">I", png[start - 8:start - 4])[0]
    assert zlib.decompress(png[start:start + length]) == (b"\x00" + b"\xff\x00\x00" * 2) * 2


def test_contact_fetches_published_avatar_and_sample_saves_it(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    befriend(alice, bob)
    png = tiny_png(3, 2, (0, 128, 255))
    avatar_id = alice.avatar.publish(png, "image/png", width=3, height=2)
    assert avatar_id == hashlib.sha1(png).hexdigest()

    image = bob.avatar.fetch(alice.account.bare, vcard_fallback=False)
    assert image is not None
    assert image.data == png and image.id == avatar_id
    assert image.content_type == "image/png" and image.source == "pep"
    infos = bob.avatar.metadata(alice.account.bare)
    assert infos == [AvatarInfo(avatar_id, "image/png", len(png), 3, 2, None)]

    out = run_sample(server, str(bob.account), str(alice.account.bare),
                     str(tmp_path / "alice-avatar"))
    assert out.returncode == 0, out.stderr
    saved = Path(out.stdout.strip())
    assert saved == tmp_path / "alice-avatar.png"
    assert saved.read_bytes() == png


def test_avatar_is_hidden_from_strangers_by_default(connect: Callable[..., Client]) -> None:
    alice, stranger = connect(), connect()
    alice.avatar.publish(tiny_png())
    assert alice.avatar.fetch(None) is not None  # we see our own
    # Prosody's PEP default access model is "presence": a stranger sees no node at all.
    assert stranger.avatar.metadata(alice.account.bare) is None
    assert stranger.avatar.fetch(alice.account.bare) is None


def test_open_access_model_lets_anyone_fetch(connect: Callable[..., Client]) -> None:
    alice, stranger = connect(), connect()
    png = tiny_png(1, 1)
    alice.avatar.publish(png, access_model="open")
    image = stranger.avatar.fetch(alice.account.bare, vcard_fallback=False)
    assert image is not None and image.data == png


def test_account_without_avatar_gives_none(connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    assert bob.avatar.fetch(alice.account.bare) is None
    assert alice.avatar.fetch(None) is None


def test_disabled_avatar_gives_none(connect: Callable[..., Client]) -> None:
    alice = connect()
    alice.avatar.publish(tiny_png())
    alice.avatar.disable()
    assert alice.avatar.metadata(None) == []
    assert alice.avatar.fetch(None) is None


def test_data_not_matching_its_id_is_refused(connect: Callable[..., Client]) -> None:
    alice = connect()
    real = tiny_png()
    forged_id = hashlib.sha1(b"something else").hexdigest()
    data = ET.Element("{%s}data" % DATA_NS)
    data.text = base64.b64encode(real).decode()
    alice.pep.publish(DATA_NS, data, id=forged_id)
    meta = ET.Element("{%s}metadata" % METADATA_NS)
    ET.SubElement(meta, "{%s}info" % METADATA_NS, id=forged_id, type="image/png",
                  bytes=str(len(real)))
    alice.pep.publish(METADATA_NS, meta, id=forged_id)
    with pytest.raises(AvatarError, match="does not match"):
        alice.avatar.fetch(None)


def test_metadata_announcing_missing_data_is_refused(connect: Callable[..., Client]) -> None:
    alice = connect()
    alice.avatar.publish(tiny_png())  # creates the data node with another item
    missing = hashlib.sha1(b"never published").hexdigest()
    meta = ET.Element("{%s}metadata" % METADATA_NS)
    ET.SubElement(meta, "{%s}info" % METADATA_NS, id=missing, type="image/png", bytes="5")
    alice.pep.publish(METADATA_NS, meta, id=missing)
    with pytest.raises(AvatarError, match="does not hold it"):
        alice.avatar.fetch(None)


def test_bad_input_is_refused_before_sending(connect: Callable[..., Client]) -> None:
    alice = connect()
    with pytest.raises(ValueError):
        alice.avatar.publish(b"")
    with pytest.raises(ValueError):
        alice.avatar.publish(tiny_png(), content_type="png")


def test_contact_with_notify_gets_avatar_changed_and_pep_event(
        connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    changes: queue.Queue[tuple[JID, AvatarInfo | None]] = queue.Queue()
    events: queue.Queue[tuple[JID, str, list[Item]]] = queue.Queue()
    bob.on("avatar_changed", lambda jid, info: changes.put((jid, info)))
    bob.on("pep_event", lambda jid, node, items: events.put((jid, node, items)))
    bob.avatar.subscribe_notify()
    assert METADATA_NS + "+notify" in bob.local_features
    assert METADATA_NS in bob.pep.notify_nodes
    befriend(alice, bob)
    # bob's caps (with +notify) reach Prosody through his presence; Prosody asks his
    # disco#info and from then on (or at once, with the last item) notifies him.
    png = tiny_png(4, 4)
    avatar_id = alice.avatar.publish(png, width=4, height=4)
    while True:
        jid, info = changes.get(timeout=WAIT)
        if info is not None and info.id == avatar_id:
            break
    assert jid == alice.account.bare
    assert info == AvatarInfo(avatar_id, "image/png", len(png), 4, 4, None)
    seen_nodes = set()
    while METADATA_NS not in seen_nodes:
        jid, node, items = events.get(timeout=WAIT)
        seen_nodes.add(node)
        assert jid == alice.account.bare
    # bob did not ask for the data node: only metadata notifications reach him.
    assert DATA_NS not in seen_nodes
    # The notifications were claimed: bob's inbox sees the next chat message first.
    alice.send_message(bob.account.bare, "after the avatar")
    assert bob.next_message(timeout=WAIT).body == "after the avatar"
