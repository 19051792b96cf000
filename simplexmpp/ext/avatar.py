"""XEP-0084 User Avatar over PEP, with the XEP-0153 vCard photo as a fallback.

```python
avatar_id = client.avatar.publish(open("me.png", "rb").read(), "image/png")
image = client.avatar.fetch("bob@example.org")
if image is not None:
    open("bob.png", "wb").write(image.data)
```

`publish` stores the image in the `urn:xmpp:avatar:data` node and then announces it in
`urn:xmpp:avatar:metadata`, in that order (XEP-0084 §4.1–4.2), both under the image's
SHA-1 (hex) as item id.

`fetch` reads the metadata, then the data with that id, and checks that the SHA-1 of the bytes is
the id ([`AvatarError`][simplexmpp.ext.avatar.AvatarError] if not). When the account published no
XEP-0084 avatar (no metadata node, or the node is not visible to us) it falls back to the `PHOTO` of
the vcard-temp vCard (XEP-0153) unless `vcard_fallback=False`; an account that disabled its avatar
(empty `<metadata/>`, §4.5) gives None without the fallback being tried.

Event `"avatar_changed"`: `callback(jid: JID, info: AvatarInfo | None)` when a contact's metadata
notification arrives (`info` None: the avatar was disabled). Only sent for contacts we see the
presence of, after [`Avatar.subscribe_notify()`][simplexmpp.ext.avatar.Avatar.subscribe_notify].

vCard-based avatars (XEP-0153): the photo hash others announce in their presence
(`<x xmlns='vcard-temp:x:update'><photo>sha1</photo></x>`) is kept:
[`vcard_hash(jid)`][simplexmpp.ext.avatar.Avatar.vcard_hash], and event
`"vcard_avatar_changed"`: `callback(jid: JID, sha1: str | None)` when it changes (None: no
avatar). Rooms with a vCard avatar announce it the same way. We do not add the hash to our own
presence: a server doing XEP-0398 ([`server_converts()`][simplexmpp.ext.avatar.Avatar.server_converts],
Prosody's mod_vcard_legacy) adds the hash of our XEP-0084 avatar itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..extension import Extension
from ..errors import XMPPError
from ..jid import JID
from ..stanza import Presence
from .pep import PEP
from .pubsub import Item, PubSubError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Avatar", "AvatarImage", "AvatarInfo", "AvatarError", "DATA_NS", "METADATA_NS",
           "CONVERSION_FEATURE", "VCARD_UPDATE_NS"]

log = logging.getLogger(__name__)

DATA_NS = "urn:xmpp:avatar:data"
METADATA_NS = "urn:xmpp:avatar:metadata"
VCARD_UPDATE_NS = "vcard-temp:x:update"
"""XEP-0153: the `<x/>` in presence announcing the SHA-1 of the vCard photo."""
_X_UPDATE = "{%s}x" % VCARD_UPDATE_NS
_PHOTO = "{%s}photo" % VCARD_UPDATE_NS
VCARD_HASHES_KEPT = 10_000
"""Most senders whose XEP-0153 photo hash is remembered (the least recently heard go first)."""
CONVERSION_FEATURE = "urn:xmpp:pep-vcard-conversion:0"
"""XEP-0398 §3: the server converts between XEP-0084 and vCard (XEP-0153) avatars."""
_INFO = "{%s}info" % METADATA_NS
_METADATA = "{%s}metadata" % METADATA_NS
_DATA = "{%s}data" % DATA_NS
# A missing or hidden avatar node; Prosody answers item-not-found for both.
_ABSENT = ("item-not-found", "forbidden", "not-authorized", "feature-not-implemented",
           "service-unavailable", "subscription-required", "presence-subscription-required")


class AvatarError(XMPPError, ValueError):
    """An avatar cannot be used: its data does not hash to its id, is not base64, or the
    metadata announces an image the data node does not hold."""


@dataclass
class AvatarInfo:
    """One `<info/>` of the metadata (XEP-0084 §4.2.1): `id` (SHA-1 hex of the image),
    `type` (MIME), `bytes`, and optional `width`, `height` and `url` (an image
    held outside PEP)."""

    id: str
    type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    url: str | None = None

    @classmethod
    def from_element(cls, info: ET.Element) -> AvatarInfo:
        def number(name: str) -> int | None:
            try:
                return int(info.get(name, ""))
            except ValueError:
                return None
        return cls(info.get("id", "").lower(), info.get("type", ""), number("bytes") or 0,
                   number("width"), number("height"), info.get("url"))


@dataclass
class AvatarImage:
    """An avatar: the image `data`, its `content_type` and `id` (SHA-1 hex of the
    data); `source` says where it came from: `"pep"` (XEP-0084) or `"vcard"`
    (XEP-0153)."""

    data: bytes
    content_type: str
    id: str
    source: str = "pep"


def _infos(items: list[Item]) -> list[AvatarInfo] | None:
    """The `<info/>` list of the newest metadata item; [] if disabled; None if absent."""
    for item in items:
        if item.payload is not None and item.payload.tag == _METADATA:
            return [AvatarInfo.from_element(i) for i in item.payload.iterfind(_INFO)]
    return None


class Avatar(Extension):
    """`client.avatar`: XEP-0084 User Avatar (publish, fetch, change notifications)."""

    name = "avatar"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        pep = getattr(client, "pep", None)
        self._pep: PEP = pep if isinstance(pep, PEP) else PEP(client)
        client.declare_event("avatar_changed")
        client.declare_event("vcard_avatar_changed")
        client.on("pep_event", self._on_pep_event)
        self._vcard_hashes: OrderedDict[str, str] = OrderedDict()
        self._hash_lock = threading.Lock()
        self._intercept_stanzas("presence", self._watch_vcard_update, tags=(_X_UPDATE,))

    def publish(self, image: bytes, content_type: str = "image/png",
                width: int | None = None, height: int | None = None, *,
                access_model: str | None = None, timeout: float | None = None) -> str:
        """Publish `image` as our avatar and return its id (SHA-1 hex).

        `access_model` (`"open"`, `"presence"` …) is sent as a publish-option for both
        nodes; None keeps the server's default (`presence` on Prosody: only contacts who
        see our presence may read it)."""
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise ValueError("the avatar image must be non-empty bytes")
        if not content_type or "/" not in content_type:
            raise ValueError(f"not a MIME type: {content_type!r}")
        data = bytes(image)
        avatar_id = hashlib.sha1(data).hexdigest()
        options = {"pubsub#access_model": access_model} if access_model else None
        payload = ET.Element(_DATA)
        payload.text = base64.b64encode(data).decode()
        # XEP-0084 §4.1: the data first, so that whoever sees the metadata can fetch it.
        self._pep.publish(DATA_NS, payload, avatar_id, options, timeout)
        metadata = ET.Element(_METADATA)
        info = ET.SubElement(metadata, _INFO, bytes=str(len(data)), id=avatar_id,
                             type=content_type)
        if width is not None:
            info.set("width", str(int(width)))
        if height is not None:
            info.set("height", str(int(height)))
        self._pep.publish(METADATA_NS, metadata, avatar_id, options, timeout)
        return avatar_id

    def disable(self, timeout: float | None = None) -> None:
        """Stop showing an avatar: publish empty metadata (XEP-0084 §4.5)."""
        self._pep.publish(METADATA_NS, ET.Element(_METADATA), None, None, timeout)

    def metadata(self, jid: JID | str | None,
                 timeout: float | None = None) -> list[AvatarInfo] | None:
        """The `<info/>` entries `jid` (None: us) announces; [] when the avatar is
        disabled, None when there is no (visible) metadata node."""
        try:
            items = self._pep.items(jid, METADATA_NS, max_items=1, timeout=timeout)
        except PubSubError as exc:
            if exc.condition in _ABSENT:
                return None
            raise
        return _infos(items)

    def fetch(self, jid: JID | str | None, timeout: float | None = None, *,
              vcard_fallback: bool = True) -> AvatarImage | None:
        """The avatar of `jid` (None: ours), or None when there is none.

        Raises [`AvatarError`][simplexmpp.ext.avatar.AvatarError] when the data does not match its
        SHA-1 id, [`PubSubError`][simplexmpp.ext.pubsub.PubSubError] for other service errors."""
        infos = self.metadata(jid, timeout)
        if infos is None:
            return self._from_vcard(jid, timeout) if vcard_fallback else None
        # §4.2.1: one info describes the image in the data node (no url); others point at
        # images held elsewhere, which we do not download.
        stored = [i for i in infos if not i.url and i.id]
        if not stored:
            return None
        info = stored[0]
        try:
            items = self._pep.items(jid, DATA_NS, item_ids=[info.id], timeout=timeout)
        except PubSubError as exc:
            if exc.condition == "item-not-found":
                raise AvatarError(f"{jid or 'our account'} announces avatar {info.id} but "
                                  "its data node does not hold it") from None
            raise
        item = next((i for i in items if i.id == info.id), None)
        if item is None or item.payload is None or item.payload.tag != _DATA:
            raise AvatarError(f"{jid or 'our account'} announces avatar {info.id} but its "
                              "data node does not hold it")
        try:
            data = base64.b64decode("".join((item.payload.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise AvatarError(f"avatar {info.id} of {jid or 'our account'} is not valid "
                              "base64") from None
        digest = hashlib.sha1(data).hexdigest()
        if digest != info.id:  # XEP-0084 §4.2.1: the id is the SHA-1 of the image data
            raise AvatarError(f"avatar of {jid or 'our account'} does not match its id: "
                              f"SHA-1 {digest}, announced {info.id}")
        return AvatarImage(data, info.type or "application/octet-stream", info.id, "pep")

    def _from_vcard(self, jid: JID | str | None, timeout: float | None) -> AvatarImage | None:
        vcard = getattr(self._client, "vcard", None)
        if vcard is None:
            return None
        card = vcard.get(jid, timeout)
        if not card.photo:
            return None
        # XEP-0153 §2: the photo's hash is the SHA-1 of the image, as for XEP-0084.
        return AvatarImage(card.photo, card.photo_type or "application/octet-stream",
                           hashlib.sha1(card.photo).hexdigest(), "vcard")

    def fetch_room(self, room: JID | str, timeout: float | None = None) -> AvatarImage | None:
        """The avatar of MUC room `room`: the `PHOTO` of the room's vcard-temp (rooms have
        no PEP service; XEP-0486 §3 and XEP-0153), or None when the room has none. A service
        without room vCards answers with an [IqError][simplexmpp.errors.IqError]
        (`service-unavailable`, `feature-not-implemented`); a room that does not exist with
        `item-not-found`."""
        target = JID(room)
        if target.resource is not None or target.local is None:
            raise ValueError(f"not a room address (room@service): {room}")
        return self._from_vcard(target.bare, timeout)

    def vcard_hash(self, jid: JID | str) -> str | None:
        """The SHA-1 (hex) of the vCard photo `jid` last announced in its presence (XEP-0153
        §4.3), `""` when it announced having none, None when we heard nothing. `jid` as the
        presence came: a contact's full JID, a room's bare JID, an occupant's room/nick."""
        with self._hash_lock:
            return self._vcard_hashes.get(str(JID(jid)))

    def _watch_vcard_update(self, presence: Presence) -> bool:
        self.note_vcard_update(presence)
        return False

    def note_vcard_update(self, presence: Presence) -> None:
        """Note the XEP-0153 photo hash of a received presence, and emit
        "vcard_avatar_changed" when it changed. Called for every presence with one, also by
        the MUC extension for the room presences it claims; quick, never blocks (it runs on
        the I/O thread)."""
        sender = presence.xml.get("from")
        update = presence.xml.find(_X_UPDATE)
        if not sender or update is None or presence.xml.get("type") is not None:
            return
        photo = update.find(_PHOTO)
        if photo is None:
            return  # §4.3: no <photo/>: the client is not ready to say; nothing known
        digest = (photo.text or "").strip().lower()
        with self._hash_lock:
            old = self._vcard_hashes.pop(sender, None)
            self._vcard_hashes[sender] = digest
            while len(self._vcard_hashes) > VCARD_HASHES_KEPT:
                self._vcard_hashes.popitem(last=False)
        if old != digest and self._client.has_callbacks("vcard_avatar_changed"):
            try:
                who = JID(sender)
            except ValueError:
                return
            self._client.emit("vcard_avatar_changed", who, digest or None)

    def server_converts(self, timeout: float | None = None) -> bool:
        """Whether our server keeps XEP-0084 avatars and vCard photos in step (XEP-0398:
        it advertises `urn:xmpp:pep-vcard-conversion:0` on our account): then
        [publish][simplexmpp.ext.avatar.Avatar.publish] alone also updates the vCard
        photo that older clients read (XEP-0153)."""
        disco = getattr(self._client, "disco", None)
        if disco is None:
            return False
        info = disco.info(self._client.account.bare, timeout=timeout)
        return CONVERSION_FEATURE in info.features

    def subscribe_notify(self, timeout: float | None = None) -> None:
        """Receive `"avatar_changed"` for contacts: advertise
        `urn:xmpp:avatar:metadata+notify` (XEP-0084 §4.3)."""
        self._pep.subscribe_notify(METADATA_NS, timeout)

    def unsubscribe_notify(self, timeout: float | None = None) -> None:
        self._pep.unsubscribe_notify(METADATA_NS, timeout)

    def _on_pep_event(self, jid: JID, node: str, items: list[Item]) -> None:
        if node != METADATA_NS:
            return
        infos = _infos(items)
        if infos is None:
            log.debug("avatar metadata notification from %s without <metadata/>", jid)
            return
        stored = [i for i in infos if not i.url and i.id] or infos
        self._client.emit("avatar_changed", jid, stored[0] if stored else None)
