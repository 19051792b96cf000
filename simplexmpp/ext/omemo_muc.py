"""OMEMO in group chats (XEP-0384 §5.8 with XEP-0045): `client.omemo_muc`.

```python
room = client.muc.join("team@conference.example.org", "alice")
client.omemo_muc.send(room, "only the members' devices can read this")
# or: client.omemo.send_message(room.jid, "...", type="groupchat")
for msg in room.messages():
    print(msg.from_.resource, msg.body, msg.encryption)    # decrypted before it gets here
```

A room message is encrypted for the devices of every member (XEP-0384 §5.8.1: the room's
owner, admin and member lists, offline members included, so that they can read it later from
the archive) and of every occupant, by real JID, and for our own other devices. The affiliation
lists are asked for once per room and session and kept up to date from the room's presences;
where the room does not give them to us (many servers show them only to admins), the occupants
are the recipients.

That needs a **non-anonymous** room (XEP-0384 §5.8: MUST), where the real JIDs are shown, and
OMEMO clients also require it to be **members-only** (SHOULD), so that nobody can walk in and be
encrypted for unnoticed. `send()` checks both in the room's disco#info (features
`muc_nonanonymous` and `muc_membersonly`, XEP-0045 §6.4) and raises
[OMEMOError][simplexmpp.errors.OMEMOError] when one is missing (`require_members_only = False`
drops the second check, for rooms whose membership you control otherwise).

Encrypted room messages are decrypted before they reach `room.messages()` and the
"muc_message" event (on OMEMO's decryption thread, through
[MUC.decryptor][simplexmpp.ext.muc.MUC.decryptor], in arrival order: a plain message that
arrives after an encrypted one waits for it); the sender is known by the real JID the room
shows for the sender's nickname when the message arrives (never a JID inside the message: a
sender can put any there, and Prosody relays it). Room history from someone who left before we
joined therefore cannot be decrypted. One that cannot be decrypted arrives with `body` None,
`encryption` set and `decryption_error` saying why. The room reflects our own messages
(XEP-0045 §7.4), encrypted for the others but not for the device that sent them: those are shown
with the text we sent (remembered for the last 1,000 messages).

Trust works as for one-to-one messages: the devices of each member follow the trust policy of
[`client.omemo`][simplexmpp.ext.omemo.OMEMO], and `client.omemo.distrust()` keeps a device out of
room messages too.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import OMEMOError, XMPPError
from ..extension import Extension
from ..jid import JID
from ..stanza import Message, mark_encrypted
from ..xml import CLIENT_NS
from .muc import NotInRoomError, Occupant, Room

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["OmemoMUC", "NONANONYMOUS", "MEMBERSONLY"]

log = logging.getLogger(__name__)

NONANONYMOUS = "muc_nonanonymous"
"""XEP-0045 §6.4: the room shows every occupant's real JID to every occupant."""
MEMBERSONLY = "muc_membersonly"
"""XEP-0045 §6.4: only members may enter."""

_ENCRYPTED = ("{urn:xmpp:omemo:2}encrypted", "{eu.siacs.conversations.axolotl}encrypted")
_NAMESPACE = {tag: tag[1:].partition("}")[0] for tag in _ENCRYPTED}
_BODY = "{%s}body" % CLIENT_NS
_EME = "{urn:xmpp:eme:0}encryption"
_REMEMBERED = 1000
_USER_X = "{http://jabber.org/protocol/muc#user}x"
_USER_ITEM = "{http://jabber.org/protocol/muc#user}item"


class OmemoMUC(Extension):
    """`client.omemo_muc`: OMEMO-encrypted messages in non-anonymous, members-only rooms."""

    name = "omemo_muc"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.require_members_only = True
        """Refuse to encrypt for a room that is not members-only (see the module's text)."""
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, str] = OrderedDict()  # our message ids -> plaintext
        self._checked: dict[tuple[str, int], bool] = {}  # (room, session number) -> checked
        # Members per room (bare JIDs, from the affiliation lists, §5.8.1), per session.
        self._members: dict[str, tuple[int, set[str]]] = {}
        self._presence_handle: int | None = None
        client.muc.decryptor = self

    # -- sending --------------------------------------------------------------------------------
    def send(self, room: Room | JID | str, body: str, *, namespace: str | None = None,
             timeout: float | None = None) -> str:
        """Send `body` to a joined room, encrypted for every occupant's devices and our own
        other devices; return the message id.

        Raises:
            NotInRoomError: we are not in the room.
            OMEMOError: the room is not non-anonymous (or not members-only, see
                `require_members_only`), or nobody else is in it.
            NoTrustedDevicesError: some occupant has no device that could read it; nothing
                was sent.
        """
        if not isinstance(body, str):
            raise TypeError("body must be a str")
        joined = self._room(room)
        self.check_room(joined, timeout)
        recipients = self.recipients(joined, timeout)
        if not recipients:
            raise OMEMOError(f"nobody else is in room {joined.jid} to encrypt for")
        msg = self.client.new_message(joined.jid, body, "groupchat")
        self.client.omemo.encrypt_message(msg, list(recipients), namespace=namespace,
                                          timeout=timeout)
        with self._lock:
            for key in (msg.id, msg.origin_id):
                if key:
                    self._sent[key] = body
            while len(self._sent) > 2 * _REMEMBERED:
                self._sent.popitem(last=False)
        self.client.send(msg, timeout)
        return msg.id or ""

    def recipients(self, room: Room | JID | str, timeout: float | None = None) -> list[str]:
        """The bare JIDs a message to `room` is encrypted for now: every member (owner, admin
        and member lists, when the room gives them to us) and every occupant's real JID, but
        ours. Raises [OMEMOError][simplexmpp.errors.OMEMOError] when an occupant's real JID is
        hidden (the room is not non-anonymous, or hides it from us)."""
        joined = self._room(room)
        own = str(self.client.account.bare)
        found = set(self._member_list(joined, timeout))
        hidden = []
        for nick, occupant in dict(joined.occupants).items():
            if not occupant.available or nick == joined.nick:
                continue
            if occupant.jid is None:
                hidden.append(nick)
                continue
            found.add(str(occupant.jid.bare))
        found.discard(own)
        if hidden:
            raise OMEMOError(
                f"room {joined.jid} does not show the real JID of {', '.join(sorted(hidden))}: "
                "OMEMO in a room needs a non-anonymous room (whois: anyone)")
        return sorted(found)

    def _member_list(self, room: Room, timeout: float | None) -> set[str]:
        """The room's members (§5.8.1), asked for once per session, then followed."""
        session = self.client.session
        number = session.number if session is not None else 0
        key = str(room.jid)
        with self._lock:
            cached = self._members.get(key)
            if cached is not None and cached[0] == number:
                return set(cached[1])
            if self._presence_handle is None:
                self._presence_handle = self.client.on("muc_presence", self._on_presence)
        members: set[str] = set()
        for affiliation in ("owner", "admin", "member"):
            try:
                members.update(str(jid.bare) for jid in room.affiliations(affiliation, timeout))
            except XMPPError as exc:  # forbidden for non-admins on most services
                log.debug("room %s: the %s list is not available to us (%s); encrypting for "
                          "the occupants", room.jid, affiliation, exc)
        with self._lock:
            self._members[key] = (number, members)
        return set(members)

    def _on_presence(self, room: Room, occupant: Occupant) -> None:
        """Dispatcher: follow affiliation changes (§5.8.1) in the rooms whose lists we have."""
        if occupant.jid is None:
            return
        with self._lock:
            cached = self._members.get(str(room.jid))
            if cached is None:
                return
            bare = str(occupant.jid.bare)
            if occupant.affiliation in ("owner", "admin", "member"):
                cached[1].add(bare)
            elif occupant.affiliation in ("none", "outcast"):
                cached[1].discard(bare)

    def check_room(self, room: Room | JID | str, timeout: float | None = None) -> None:
        """Check (once per room and session) that the room is non-anonymous and, unless
        `require_members_only` is False, members-only; raise
        [OMEMOError][simplexmpp.errors.OMEMOError] saying what is missing."""
        joined = self._room(room)
        session = self.client.session
        key = (str(joined.jid), session.number if session is not None else 0)
        if self._checked.get(key):
            return
        features = joined.info(timeout=timeout).features
        missing = [name for name, needed in ((NONANONYMOUS, True),
                                             (MEMBERSONLY, self.require_members_only))
                   if needed and name not in features]
        if missing:  # XEP-0384 §5.8: non-anonymous MUST, members-only SHOULD
            raise OMEMOError(
                f"room {joined.jid} is not {' and '.join(_WORDS[m] for m in missing)}: OMEMO in "
                "a room needs every occupant's real JID, and members only (an owner can set "
                "both in the room's configuration)")
        self._checked[key] = True

    def _room(self, room: Room | JID | str) -> Room:
        if isinstance(room, Room):
            if not room.joined:
                raise NotInRoomError(f"not in room {room.jid}", room=room.jid)
            return room
        found = self.client.muc.room(room)
        if found is None:
            raise NotInRoomError(f"not in room {JID(room).bare}: join it first",
                                 room=JID(room).bare)
        return found

    # -- receiving (MUC.decryptor) ----------------------------------------------------------------
    def wants(self, msg: Message) -> bool:
        """I/O thread: whether a room message carries an OMEMO element."""
        return any(child.tag in _NAMESPACE for child in msg.xml)

    def decrypt_later(self, room: Room, msg: Message, nick: str | None, sender: JID | None,
                      then: Callable[[Message, str | None], object]) -> None:
        """I/O thread: decrypt a room message on OMEMO's decryption thread and pass it to
        `then(decrypted, nick)` in arrival order with the room's other messages."""
        self.client.omemo.run_in_turn(str(room.jid), msg,
                                      lambda: self.decrypt(room, msg, nick, sender),
                                      lambda plain: then(plain, nick))

    def hold_back(self, room: Room, msg: Message, nick: str | None,
                  then: Callable[[Message, str | None], object]) -> bool:
        """I/O thread: a plain room message waits while the room has an encrypted one
        before it that is still being decrypted."""
        return self.client.omemo.hold_back(str(room.jid), then, msg, nick)

    def decrypt(self, room: Room, msg: Message, nick: str | None,
                sender: JID | None) -> Message:
        """The decrypted room message (see the module's text); `sender` is the real JID of
        `nick` when the message arrived. Blocks while it decrypts."""
        if nick is not None and nick == room.nick:
            own = self._own_reflection(msg)
            if own is not None:
                return own
        if sender is None:
            return self._undecrypted(msg, f"room {room.jid} does not show who {nick!r} is (no "
                                          "real JID): the sender's keys cannot be found")
        try:
            return self.client.omemo.decrypt_message(msg, sender=sender.bare)
        except XMPPError as exc:
            return self._undecrypted(msg, f"OMEMO failed: {exc}")

    def decrypt_archived(self, room: JID | str, msg: Message,
                         timeout: float | None = None) -> Message:
        """An OMEMO message from the archive (XEP-0313) of `room`, decrypted like a live
        one: for `client.mam.query(archive=room)`. The sender's keys are found by the real JID
        the archive gives for the message (`<x xmlns='http://jabber.org/protocol/muc#user'>
        <item jid=.../>`, which a non-anonymous room's archive adds; XEP-0313 §5.1.2); without
        one the message is undecrypted, with the reason. Our own messages show what we sent
        (remembered for the last 1,000, as live reflections); a copy read before may no longer
        be readable (forward secrecy), and is not answered with a new session."""
        sender = _archived_sender(msg)
        if sender == str(self.client.account.bare):
            own = self._own_reflection(msg)
            if own is not None:
                return own
        if sender is None:
            return self._undecrypted(msg, f"the archive of room {JID(room).bare} does not say "
                                          "who sent it (no real JID): the sender's keys "
                                          "cannot be found")
        try:
            return self.client.omemo.decrypt_message(msg, sender=sender, timeout=timeout,
                                                     archived=True)
        except XMPPError as exc:
            return self._undecrypted(msg, f"OMEMO failed: {exc}")

    def _own_reflection(self, msg: Message) -> Message | None:
        with self._lock:
            body = None
            for key in (msg.id, msg.origin_id):
                if key and key in self._sent:
                    body = self._sent[key]
                    break
        if body is None:
            return None
        result = Message(_without_encryption(msg.xml))
        result.body = body
        mark_encrypted(result, self._namespace(msg), self.client.omemo.device_id)
        return result

    def _undecrypted(self, msg: Message, error: str) -> Message:
        log.warning("OMEMO: cannot decrypt the room message %s from %s: %s", msg.id,
                    msg.xml.get("from"), error)
        result = Message(_without_encryption(msg.xml))
        mark_encrypted(result, self._namespace(msg), None, error)
        return result

    @staticmethod
    def _namespace(msg: Message) -> str:
        for child in msg.xml:
            if child.tag in _NAMESPACE:
                return _NAMESPACE[child.tag]
        return ""  # pragma: no cover - only called for messages wants() took


_WORDS = {NONANONYMOUS: "non-anonymous", MEMBERSONLY: "members-only"}


def _archived_sender(msg: Message) -> str | None:
    """The sender's bare JID as a room's archive gives it, or None. The archive adds its
    `<x><item jid=.../></x>` after the message's own children (Prosody's mod_muc_mam), and
    a sender may have put one of its own into the message: the last one is the archive's. A
    false claim cannot make a message readable: decrypting it authenticates the sending
    device, which must then be one of that JID's devices with a session with us."""
    found = None
    for x in msg.xml.findall(_USER_X):
        for item in x.findall(_USER_ITEM):
            if item.get("jid"):
                found = item.get("jid")
    if not found:
        return None
    try:
        return str(JID(found).bare)
    except ValueError:
        return None


def _without_encryption(element: ET.Element) -> ET.Element:
    """A copy of a message without its OMEMO elements, XEP-0380 hint and fallback body."""
    copy = ET.Element(element.tag, dict(element.attrib))
    copy.text = element.text
    copy.extend(child for child in element
                if child.tag not in _NAMESPACE and child.tag not in (_BODY, _EME))
    return copy
