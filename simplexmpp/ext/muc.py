"""XEP-0045 Multi-User Chat, with XEP-0249 direct invitations.

```python
room = client.muc.join("lobby@conference.example.org", "alice")
room.send("Hello, room!")
for msg in room.messages(timeout=60):
    print(msg.from_.resource, msg.body)
```

`join()` blocks until the room has sent our own presence (XEP-0045 §7.2.2) and returns a
[`Room`][simplexmpp.ext.muc.Room]. A room that does not exist is created; a new room that the
service keeps locked (status 201, §10.1) is unlocked as an instant room (§10.1.2), or configured
first when a `config` is given (§10.1.3).

A joined room's groupchat messages and presences never reach the client's inbox: the room keeps
them (`room.messages()`, `room.occupants`) and the events `muc_message`, `muc_presence`
run for them. Private messages from occupants (type `chat`) arrive as ordinary messages.
Every room the user did not leave is entered again after a new session (not after a resumed
one, XEP-0198), whatever the server said while going down, asking for the history since the
last message seen (repeats are dropped by their XEP-0359 stanza-id); also, at once, when the
room put us out with status 332 or 333 (a shutdown, a technical error: nobody chose it), and
when an XEP-0410 self-ping finds that the room forgot us. A kick, a ban or a destroyed room
ends it for good. `with client.muc.join(...) as room:` leaves at the end of the block.
A groupchat message from no room we are in is dropped (`stray_groupchat`).

Events (`client.on(name, callback)`):

* `muc_message` (room, msg): a groupchat message (history included, subject changes not)
* `muc_presence` (room, occupant): an occupant came, changed or left (`occupant.available`)
* `muc_subject` (room, subject, nick): the subject was set (also sent on every join)
* `muc_nick` (room, old_nick, new_nick): an occupant, maybe us, changed nickname
* `muc_status` (room, codes): the room announced status codes (config changes, §10.2.1)
* `muc_joined` (room): we are in the room (after `join()` and after every re-join)
* `muc_left` (room, code): we are out for good: the status code (307 kicked, 301 banned, 321, 322)
  or None (left, room destroyed, disconnected, re-entering refused); the reason is in
  `room.left_reason`
* `muc_invite` (room_jid, inviter, reason, password): a mediated (§7.8.2) or direct (XEP-0249)
  invitation; the message also reaches the inbox
* `muc_decline` (room_jid, decliner, reason): someone declined our invitation
"""

from __future__ import annotations

import html
import logging
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from .. import errors
from ..errors import DisconnectedError, IqError, StanzaError, XMPPError
from ..extension import Extension, Session
from ..inbox import CLOSED, DEFAULT_MAX_INBOX, Inbox
from ..jid import JID
from ..stanza import Iq, Message, Presence, format_datetime, new_id
from .forms import Field, Form

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client
    from .disco import DiscoInfo, DiscoItem

__all__ = ["MUC", "Room", "Occupant", "RoomDecryptor", "MUCError", "NickConflictError",
           "RoomPasswordError", "BannedError", "RoomMembersOnlyError", "RoomNotFoundError",
           "RoomFullError", "NotInRoomError", "MUC_NS", "USER_NS", "ADMIN_NS", "OWNER_NS",
           "CONFERENCE_NS", "ROOMCONFIG_NS", "ROLES", "AFFILIATIONS"]

log = logging.getLogger(__name__)

_VCARD_UPDATE = "{vcard-temp:x:update}x"

MUC_NS = "http://jabber.org/protocol/muc"
USER_NS = MUC_NS + "#user"
ADMIN_NS = MUC_NS + "#admin"
OWNER_NS = MUC_NS + "#owner"
ROOMCONFIG_NS = MUC_NS + "#roomconfig"
CONFERENCE_NS = "jabber:x:conference"   # XEP-0249 direct invitations
ROLES = ("moderator", "participant", "visitor", "none")
AFFILIATIONS = ("owner", "admin", "member", "outcast", "none")

_C = "{jabber:client}"
_USER_X = "{%s}x" % USER_NS
_MUC_X = "{%s}x" % MUC_NS
_CONF_X = "{%s}x" % CONFERENCE_NS
_ITEM = "{%s}item" % USER_NS
_STATUS = "{%s}status" % USER_NS

# Status codes (XEP-0045 §12 and the registry).
SELF = 110
CREATED = 201
NICK_CHANGED = 303
REMOVALS = {307: "kicked", 301: "banned", 321: "affiliation-changed", 322: "members-only",
            332: "shutdown", 333: "error"}
"""Codes in our own unavailable presence that mean the room put us out (§8.2, §9.1, §9.4, §9.3,
§11.1, §11.2), with the `left_reason` they give."""
NOT_CHOSEN = frozenset({332, 333})
"""Of those, the removals nobody chose (XEP-0045 status-code registry): 332, the system is shutting
down, and 333, removed for technical reasons (the room got an error delivering to us; Prosody 0.12
sends it to occupants while it restarts, as it closes their sessions before the rooms). Not a person
(307 kick, 301 ban) nor a policy (321, 322): the room is entered again, at once while the session
lasts, else after the next session starts."""
RETRY_CONDITIONS = frozenset({"item-not-found", "service-unavailable", "remote-server-not-found",
                              "remote-server-timeout", "internal-server-error",
                              "resource-constraint", "recipient-unavailable", "gone"})
"""Errors answering a re-join that may clear up on their own (the room being re-created and still
locked, the service restarting): the re-join is tried again later. Any other refusal (banned,
members-only, wrong password, nickname taken) leaves the room for good."""
# XEP-0410 §3.2: a self-ping answered with these errors still proves we are in the room
# (the ping reached an occupant of ours that does not do XEP-0199, or our nickname is
# being changed by another of our clients).
_PING_STILL_IN = frozenset({"service-unavailable", "feature-not-implemented", "item-not-found"})
# XEP-0410 §3.2: no decision can be made on these (or on no answer): ask again later.
_PING_UNDECIDED = frozenset({"remote-server-not-found", "remote-server-timeout"})
PING_NS = "urn:xmpp:ping"
REJOIN_SKEW = timedelta(seconds=5)
"""The skew allowed between our clock and the room's when asking for history since the last message
on re-join; repeats are dropped by stanza-id."""
_SEEN_WINDOW = 2000
SUBJECT_WAIT = 5.0
"""How long join() waits for the room subject that ends the join sequence (§7.2.15)."""


class MUCError(StanzaError):
    """A room refused what we asked (entering, changing nickname, …); `condition`, `type`
    and `text` are those of the stanza error (RFC 6120 §8.3), `room` the room's JID."""

    kind = "muc"

    def __init__(self, message: str, condition: str = "undefined-condition",
                 type: str = "cancel", text: str | None = None, stanza: object = None,
                 room: JID | None = None) -> None:
        super().__init__(condition, type, text, stanza)
        self.args = (message + (f": {text}" if text else ""),)
        self.room = room


class NickConflictError(MUCError):
    """The nickname is in use or reserved by someone else (§7.2.8, §7.6: `conflict`)."""


class RoomPasswordError(MUCError):
    """The room needs a password and ours is missing or wrong (§7.2.5: `not-authorized`)."""


class BannedError(MUCError):
    """We are banned from the room (§7.2.7: `forbidden`)."""


class RoomMembersOnlyError(MUCError):
    """The room is members-only and we are not a member (§7.2.6: `registration-required`)."""


class RoomNotFoundError(MUCError):
    """The room does not exist and may not be created, or is locked while its creator
    configures it (§7.2.10, §7.2.11: `item-not-found`)."""


class RoomFullError(MUCError):
    """The room has reached its maximum number of occupants (§7.2.9)."""


class NotInRoomError(MUCError):
    """The operation needs us in the room, and we are not (any more) in it."""


# Entering a room: error condition -> (exception, what it means). §7.2.17.
_JOIN_ERRORS: dict[str, tuple[type[MUCError], str]] = {
    "conflict": (NickConflictError, "the nickname is in use or reserved"),
    "not-authorized": (RoomPasswordError, "a password is required and ours is missing or "
                                          "wrong"),
    "forbidden": (BannedError, "we are banned from this room"),
    "registration-required": (RoomMembersOnlyError, "the room is members-only and we are not "
                                                    "a member"),
    "item-not-found": (RoomNotFoundError, "the room does not exist (or is locked while its "
                                          "owner configures it)"),
    "service-unavailable": (RoomFullError, "the room is full (or the address is no room)"),
    "not-allowed": (MUCError, "we may not create rooms on this service"),
    "not-acceptable": (MUCError, "the nickname is not acceptable (the room may require the "
                                 "reserved one)"),
    "jid-malformed": (MUCError, "the nickname is missing or invalid"),
}


@dataclass(frozen=True)
class Occupant:
    """One occupant of a room: `nick`, `jid` (the real JID when the room tells us, else
    None), `role` (moderator, participant, visitor, none), `affiliation` (owner, admin,
    member, outcast, none), `show`, `status`; `available` is False in the presence that
    announces the occupant left."""

    nick: str
    jid: JID | None
    role: str
    affiliation: str
    show: str | None = None
    status: str | None = None
    available: bool = True


class RoomDecryptor(Protocol):
    """What [MUC.decryptor][simplexmpp.ext.muc.MUC.decryptor] holds: end-to-end decryption of
    room messages (OMEMO: [simplexmpp.ext.omemo_muc][])."""

    def wants(self, msg: Message) -> bool:
        """I/O thread, quick, never blocking: whether `msg` is encrypted for this decryptor."""

    def decrypt_later(self, room: Room, msg: Message, nick: str | None, sender: JID | None,
                      then: Callable[[Message, str | None], object]) -> None:
        """I/O thread, never blocking: decrypt `msg` (sent by `nick`, whose real JID was
        `sender` when it arrived; None: the room did not show it) on another thread and call
        `then(decrypted, nick)` there, in arrival order with the room's other messages; one
        that cannot be decrypted is passed on too, undecrypted."""

    def hold_back(self, room: Room, msg: Message, nick: str | None,
                  then: Callable[[Message, str | None], object]) -> bool:
        """I/O thread: whether the plain message `msg` waits for an encrypted one before it
        (then `then(msg, nick)` is called in its turn and True returned)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Room:
    """A room we joined (or were in): see [`MUC.join()`][simplexmpp.ext.muc.MUC.join].

    `jid` (the room's bare JID), `nick` (ours), `subject`, `occupants` (a snapshot dict nick ->
    [`Occupant`][simplexmpp.ext.muc.Occupant], ours included), `status_codes` (of our last
    self-presence), `joined`, `created` (this join created the room), `left_reason`/`left_code`
    after we left or were put out.
    """

    def __init__(self, muc: MUC, jid: JID, nick: str, password: str | None) -> None:
        self._muc = muc
        self._client = muc._client
        self.jid = jid
        self.nick = nick
        self.password = password
        self.subject: str | None = None
        self.subject_by: str | None = None
        """The nickname that set the subject (None when the room itself sent it)."""
        self.occupants: dict[str, Occupant] = {}
        self.status_codes: set[int] = set()
        self.created = False
        self.state = "joining"
        """joining, joined, rejoining, left"""
        self.left_reason: str | None = None
        """Why we are out: left, kicked, banned, affiliation-changed, members-only, shutdown, error,
        destroyed, disconnected, removed."""
        self.left_code: int | None = None
        self.left_text: str | None = None
        """The text the room gave with a kick, ban or destruction."""
        self.alternate: JID | None = None
        """Where a destroyed room's owner asked occupants to go (§10.9)."""
        self._cond = threading.Condition()
        self._pending: tuple[str, str, Future[set[int]]] | None = None
        self._subject_waiters: dict[str, Future[None]] = {}
        self._subject_seen = threading.Event()
        # Bounded like the client's inbox (a room nobody reads must not grow for ever).
        self._queue: Inbox[Message] = Inbox(getattr(self._client, "max_inbox",
                                                    DEFAULT_MAX_INBOX),
                                            name=f"the message queue of room {jid}")
        self._queue_used = False
        self._last_seen: datetime | None = None
        self._lost = False  # the connection dropped; re-enter if the session is new
        self._config: Mapping[str, Any] | Form | None = None  # given to join()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates_dropped = 0
        """Room messages dropped as repeats (history overlapping what we had, on re-join)."""
        # When the room last sent us anything (time.monotonic()): XEP-0410 pings a room
        # that has been quiet for MUC.self_ping_interval seconds.
        self._activity = time.monotonic()
        self._retry_at: float | None = None   # re-join due (monotonic), while rejoining
        self._retry_delay = 1.0
        self.rejoins = 0
        """How often the room was entered again without our leaving it (after a new session, a
        shutdown notice, or a self-ping that found us gone)."""

    # -- state ---------------------------------------------------------------------------------
    @property
    def joined(self) -> bool:
        """True while we are in the room (also while re-entering after a reconnect)."""
        return self.state in ("joined", "rejoining")

    def __enter__(self) -> Room:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """`with client.muc.join(...) as room:` leaves the room at the end of the block."""
        try:
            self.leave()
        except XMPPError:
            if exc_info[0] is None:
                raise
            log.warning("leaving room %s after an error failed", self.jid, exc_info=True)

    @property
    def me(self) -> Occupant | None:
        """Our own occupant entry."""
        return self.occupants.get(self.nick)

    @property
    def role(self) -> str | None:
        own = self.me
        return own.role if own else None

    @property
    def affiliation(self) -> str | None:
        own = self.me
        return own.affiliation if own else None

    def occupant_jid(self, nick: str | None = None) -> JID:
        """The occupant JID `room@service/nick` (ours by default)."""
        return self.jid.with_resource(nick if nick is not None else self.nick)

    def from_me(self, msg: Message) -> bool:
        """Whether a room message is one we sent (the room reflects our messages, §7.4)."""
        sender = msg.from_
        return sender is not None and sender.resource == self.nick

    def _check_in(self) -> None:
        if self.state == "left":
            raise NotInRoomError(f"not in room {self.jid} (we {self._left_words()})",
                                 "not-acceptable", room=self.jid)

    def _left_words(self) -> str:
        reason = self.left_reason or "left"
        return {"left": "left it", "disconnected": "were disconnected",
                "destroyed": "were removed: the room was destroyed"}.get(
            reason, f"were removed: {reason}")

    def _wait_in(self, timeout: float) -> None:
        """Wait while re-entering after a reconnect; raise if we are out."""
        end = time.monotonic() + timeout
        with self._cond:
            while self.state in ("rejoining", "joining"):
                left = end - time.monotonic()
                if left <= 0:
                    raise errors.TimeoutError(f"not back in room {self.jid} within "
                                              f"{timeout:g} s")
                self._cond.wait(left)
        self._check_in()

    # -- messages ------------------------------------------------------------------------------
    def send(self, body: str | None, *, subject: str | None = None, thread: str | None = None,
             timeout: float | None = None) -> str:
        """Send a message to everyone in the room (§7.4); return its id. The room reflects it
        back, so it also appears in [`messages()`][simplexmpp.ext.muc.Room.messages]."""
        timeout = self._muc.timeout(timeout)
        self._wait_in(timeout)
        return self._client.send_message(self.jid, body, type="groupchat", subject=subject,
                                         thread=thread, timeout=timeout)

    def send_private(self, nick: str, body: str, timeout: float | None = None) -> str:
        """A private message to one occupant (§7.5); answers arrive in the client's inbox."""
        self._check_in()
        return self._client.send_message(self.occupant_jid(nick), body, type="chat",
                                         timeout=timeout)

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """The room's messages as they arrive (history first), our own reflected ones
        included; ends when we leave or are put out of the room, or the client disconnects.
        With `timeout`, it also ends after that many seconds without a message."""
        self._queue_used = True
        if timeout is not None:  # None: no limit
            timeout = self._muc.timeout(timeout)
        yield from self._queue.iterate(timeout)

    def next_message(self, timeout: float | None = None) -> Message:
        """The next room message; raises [`TimeoutError`][simplexmpp.errors.TimeoutError], or
        [`NotInRoomError`][simplexmpp.ext.muc.NotInRoomError] once we are out of the room and every
        message was read."""
        self._queue_used = True
        timeout = self._muc.timeout(timeout)
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise errors.TimeoutError(f"no message in room {self.jid} within "
                                      f"{timeout:g} s") from None
        if item is CLOSED:
            self._check_in()
            raise NotInRoomError(f"not in room {self.jid}", room=self.jid)  # pragma: no cover
        return item

    def set_subject(self, text: str, timeout: float | None = None) -> None:
        """Change the room's subject (§8.1) and wait until the room announces it; raises
        [`MUCError`][simplexmpp.ext.muc.MUCError] (`forbidden`) when we may not."""
        timeout = self._muc.timeout(timeout)
        self._wait_in(timeout)
        msg = Message(to=self.jid, type="groupchat", subject=text, id=new_id())
        done: Future[None] = Future()
        msg_id = msg.id or ""
        with self._cond:
            self._subject_waiters[msg_id] = done
        try:
            self._client.send(msg, timeout)
            try:
                done.result(timeout)
            except FutureTimeout:
                raise errors.TimeoutError(f"room {self.jid} did not announce the new subject "
                                          f"within {timeout:g} s") from None
        finally:
            with self._cond:
                self._subject_waiters.pop(msg_id, None)

    # -- presence ------------------------------------------------------------------------------
    def _begin(self, kind: str, nick: str) -> Future[set[int]]:
        future: Future[set[int]] = Future()
        with self._cond:
            if self._pending is not None and not self._pending[2].done():
                raise MUCError(f"room {self.jid}: a {self._pending[0]} is already in progress",
                               "unexpected-request", room=self.jid)
            self._pending = (kind, nick, future)
        return future

    def _wait(self, future: Future[set[int]], timeout: float, what: str) -> set[int]:
        try:
            return future.result(timeout)
        except FutureTimeout:
            with self._cond:
                if self._pending is not None and self._pending[2] is future:
                    self._pending = None
            raise errors.TimeoutError(f"room {self.jid} did not answer {what} within "
                                      f"{timeout:g} s") from None
        except XMPPError as exc:
            raise exc.with_traceback(None) from None

    def change_nick(self, nick: str, timeout: float | None = None) -> None:
        """Change our nickname (§7.6); raises
        [`NickConflictError`][simplexmpp.ext.muc.NickConflictError] when it is taken. The room may
        adjust it (status 210): `room.nick` is what it gave."""
        timeout = self._muc.timeout(timeout)
        self._wait_in(timeout)
        target = self.occupant_jid(nick)  # validates the nickname (a JID resourcepart)
        if target.resource == self.nick:
            return
        future = self._begin("nickname change", target.resource or nick)
        try:
            self._client.send(Presence(to=target, id=new_id()), timeout)
        except BaseException:
            with self._cond:
                self._pending = None
            raise
        self._wait(future, timeout, f"our change of nickname to {nick!r}")

    def set_status(self, show: str | None = None, status: str | None = None,
                   timeout: float | None = None) -> None:
        """Change our availability in the room (§7.7): `show` (away, chat, dnd, xa) and a
        status text."""
        self._wait_in(self._muc.timeout(timeout))
        self._client.send(Presence(to=self.occupant_jid(), show=show, status=status), timeout)

    def leave(self, status: str | None = None, timeout: float | None = None) -> None:
        """Leave the room (§7.14) and wait for the room to confirm; the room's
        [`messages()`][simplexmpp.ext.muc.Room.messages] iterators end. Nothing happens if we are
        already out."""
        if self.state == "left":
            return
        if self.state == "rejoining" and self._retry_at is not None:
            # The room put us out already (a shutdown, say): nothing to wait for.
            try:
                self._client.send(Presence(to=self.occupant_jid(), type="unavailable",
                                           status=status), timeout=0)
            except XMPPError:
                pass
            self._left("left", None)
            return
        timeout = self._muc.timeout(timeout)
        future = self._begin("leave", self.nick)
        try:
            self._client.send(Presence(to=self.occupant_jid(), type="unavailable",
                                       status=status), timeout)
        except DisconnectedError:
            self._left("left", None)  # the server has taken us out with the session
            return
        except BaseException:
            with self._cond:
                self._pending = None
            raise
        try:
            self._wait(future, timeout, "our leaving")
        except errors.TimeoutError:
            self._left("left", None)
            raise

    # -- moderation (IQs to the room, §8, §9, §10) ----------------------------------------------
    def _admin(self, item: dict[str, str], reason: str | None, timeout: float | None) -> None:
        query = ET.Element("{%s}query" % ADMIN_NS)
        element = ET.SubElement(query, "{%s}item" % ADMIN_NS, item)
        if reason:
            ET.SubElement(element, "{%s}reason" % ADMIN_NS).text = reason
        self._client.iq(Iq.set(self.jid, query), timeout)

    def kick(self, nick: str, reason: str | None = None, timeout: float | None = None) -> None:
        """Kick an occupant (§8.2: role none); they get status 307. Needs moderator."""
        self._admin({"nick": nick, "role": "none"}, reason, timeout)

    def ban(self, jid: JID | str, reason: str | None = None,
            timeout: float | None = None) -> None:
        """Ban a user by bare JID (§9.1: affiliation outcast); if present, they get status
        301. Needs admin."""
        self.set_affiliation(jid, "outcast", reason, timeout)

    def set_role(self, nick: str, role: str, reason: str | None = None,
                 timeout: float | None = None) -> None:
        """Give an occupant a role: moderator, participant, visitor or none (§8.3–8.4,
        §9.6–9.7)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        self._admin({"nick": nick, "role": role}, reason, timeout)

    def set_affiliation(self, jid: JID | str, affiliation: str, reason: str | None = None,
                        timeout: float | None = None) -> None:
        """Give a user (bare JID) an affiliation: owner, admin, member, outcast or none (§9,
        §10.3–10.7)."""
        if affiliation not in AFFILIATIONS:
            raise ValueError(f"affiliation must be one of {', '.join(AFFILIATIONS)}, not "
                             f"{affiliation!r}")
        self._admin({"jid": str(JID(jid).bare), "affiliation": affiliation}, reason, timeout)

    def affiliations(self, affiliation: str, timeout: float | None = None) -> dict[JID, str]:
        """The users with one affiliation (§9.5 member list, §9.2 ban list, §10.5, §10.8):
        bare JID -> their reserved nickname or ""."""
        if affiliation not in AFFILIATIONS or affiliation == "none":
            raise ValueError(f"affiliation must be owner, admin, member or outcast, not "
                             f"{affiliation!r}")
        query = ET.Element("{%s}query" % ADMIN_NS)
        ET.SubElement(query, "{%s}item" % ADMIN_NS, affiliation=affiliation)
        reply = self._client.iq(Iq.get(self.jid, query), timeout).payload
        found: dict[JID, str] = {}
        if reply is not None:
            for item in reply.iterfind("{%s}item" % ADMIN_NS):
                try:
                    found[JID(item.get("jid", ""))] = item.get("nick") or ""
                except ValueError:
                    log.info("room %s listed an item with a bad JID", self.jid)
        return found

    def get_config(self, timeout: float | None = None) -> Form:
        """The room's configuration form (§10.2); needs owner."""
        reply = self._client.iq(Iq.get(self.jid, ET.Element("{%s}query" % OWNER_NS)), timeout)
        form = Form.find_in(reply.payload)
        if form is None:
            raise IqError("bad-request", "cancel",
                          f"room {self.jid} answered without a configuration form", reply)
        return form

    def configure(self, values: Mapping[str, Any] | Form, timeout: float | None = None) -> None:
        """Change the room's configuration (§10.2): a dict of field var -> value (bool, int,
        str or list; `muc#roomconfig_` may be left out of the names) or a whole
        [`Form`][simplexmpp.ext.forms.Form]. Fields the room's form does not have are sent
        anyway (and logged); the room ignores or refuses them."""
        if isinstance(values, Form):
            submit = Form(type="submit", fields=[f for f in values.fields if f.var and
                                                 f.type != "fixed"])
            for f in submit.fields:
                if f.var == "FORM_TYPE":
                    f.type = "hidden"
            if submit.get("FORM_TYPE") is None:
                submit.fields.insert(0, Field("FORM_TYPE", [ROOMCONFIG_NS], type="hidden"))
        else:
            current = self.get_config(timeout)
            submit = Form(type="submit")
            submit.set("FORM_TYPE", current.form_type or ROOMCONFIG_NS, type="hidden")
            for var, value in values.items():
                name = var
                if current.get(name) is None and current.get(f"muc#roomconfig_{var}") is not None:
                    name = f"muc#roomconfig_{var}"
                if current.get(name) is None:
                    log.info("room %s: its configuration form has no field %r; sending it "
                             "anyway", self.jid, name)
                submit.set(name, _form_value(value))
        self._submit(submit, timeout)
        secret = submit.get("muc#roomconfig_roomsecret")
        if secret is not None:  # what direct invitations and re-joins need from now on
            self.password = secret.values[0] if secret.values and secret.values[0] else None

    def _submit(self, form: Form, timeout: float | None) -> None:
        query = ET.Element("{%s}query" % OWNER_NS)
        query.append(form.to_element())
        self._client.iq(Iq.set(self.jid, query), timeout)

    def invite(self, jid: JID | str, reason: str | None = None, *, direct: bool = False,
               timeout: float | None = None) -> None:
        """Invite someone: through the room (mediated, §7.8.2; the room adds the password), or
        with `direct=True` straight to them (XEP-0249, with our password if we have one)."""
        invitee = JID(jid)
        if direct:
            msg = Message(to=invitee, id=new_id())
            attrs = {"jid": str(self.jid)}
            if reason:
                attrs["reason"] = reason
            if self.password:
                attrs["password"] = self.password
            ET.SubElement(msg.xml, _CONF_X, attrs)
        else:
            msg = Message(to=self.jid, id=new_id())
            x = ET.SubElement(msg.xml, _USER_X)
            invite = ET.SubElement(x, "{%s}invite" % USER_NS, to=str(invitee))
            if reason:
                ET.SubElement(invite, "{%s}reason" % USER_NS).text = reason
        self._client.send(msg, timeout)

    def destroy(self, reason: str | None = None, alternate: JID | str | None = None,
                timeout: float | None = None) -> None:
        """Destroy the room (§10.9); everyone in it, we included, is put out. Needs owner."""
        query = ET.Element("{%s}query" % OWNER_NS)
        destroy = ET.SubElement(query, "{%s}destroy" % OWNER_NS)
        if alternate is not None:
            destroy.set("jid", str(JID(alternate)))
        if reason:
            ET.SubElement(destroy, "{%s}reason" % OWNER_NS).text = reason
        self._client.iq(Iq.set(self.jid, query), timeout)
        if self.state != "left":
            self.left_text = reason
            self._left("destroyed", None)

    def info(self, timeout: float | None = None) -> DiscoInfo:
        """The room's disco#info (§6.4): name, features such as `muc_passwordprotected`."""
        return self._client.disco.info(self.jid, timeout=timeout)

    # -- incoming (I/O thread: quick, no blocking) ----------------------------------------------
    def _on_presence(self, presence: Presence, nick: str | None) -> None:
        element = presence.xml
        kind = element.get("type")
        self._activity = time.monotonic()
        if kind == "error":
            self._on_error_presence(presence)
            return
        if nick is None or kind not in (None, "unavailable"):
            return
        x = element.find(_USER_X)
        codes: set[int] = set()
        item = None
        destroy = None
        if x is not None:
            for status in x.iterfind(_STATUS):
                code = status.get("code", "")
                if code.isdigit():
                    codes.add(int(code))
            item = x.find(_ITEM)
            destroy = x.find("{%s}destroy" % USER_NS)
        real = None
        if item is not None and item.get("jid"):
            try:
                real = JID(item.get("jid", ""))
            except ValueError:
                real = None
        occupant = Occupant(
            nick, real, item.get("role", "none") if item is not None else "none",
            item.get("affiliation", "none") if item is not None else "none",
            presence.show, presence.status, kind is None)
        client = self._client
        if kind == "unavailable":
            with self._cond:
                occupants = dict(self.occupants)
                occupants.pop(nick, None)
                self.occupants = occupants
                is_self = SELF in codes or (nick == self.nick and (
                    destroy is not None or bool(codes.intersection(REMOVALS))))
            if NICK_CHANGED in codes and item is not None and item.get("nick"):
                # §7.6: the old nickname leaves with 303 and the new one; the new one's
                # presence follows. Not a departure.
                client.emit("muc_nick", self, nick, item.get("nick"))
                return
            client.emit("muc_presence", self, occupant)
            if is_self:
                self._removed(codes, destroy, item)
            return
        with self._cond:
            occupants = dict(self.occupants)
            occupants[nick] = occupant
            self.occupants = occupants
            is_self = SELF in codes
            resolved = None
            previous = self.state
            if is_self:
                old_nick = self.nick
                self.nick = nick
                self.status_codes = codes
                if previous in ("joining", "rejoining"):
                    self.state = "joined"
                    self._retry_at = None
                    self._retry_delay = 1.0
                    if previous == "rejoining":
                        self.rejoins += 1
                        self._lost = False  # back in; a later session_lost sets it again
                    if previous == "joining" and CREATED in codes:
                        self.created = True
                    if self._last_seen is None:
                        # what a re-join after a lost session asks the history from
                        self._last_seen = _now()
                pending = self._pending
                if pending is not None and not pending[2].done() and (
                        pending[0] == "join" or
                        (pending[0] == "nickname change" and nick != old_nick)):
                    resolved = pending[2]
                    self._pending = None
                self._cond.notify_all()
        client.emit("muc_presence", self, occupant)
        if is_self:
            if resolved is not None:
                resolved.set_result(codes)
            if previous == "rejoining" and CREATED in codes:
                # The room went away with our old session (the last occupant of a temporary
                # room) and our re-join created it anew, locked (§10.1.1): set it up again.
                client.dispatch(self._recreated)
            if previous in ("joining", "rejoining"):
                client.emit("muc_joined", self)

    def _recreated(self) -> None:
        """Dispatcher thread: configure a room our re-join had to create again."""
        try:
            if self._config is None:
                self._submit(Form(type="submit"), None)
            else:
                self.configure(self._config)
        except XMPPError as exc:
            log.warning("room %s was created again on re-joining, and configuring it failed "
                        "(others cannot enter while it is locked): %s", self.jid, exc)

    def _removed(self, codes: set[int], destroy: ET.Element | None,
                 item: ET.Element | None) -> None:
        code = next((c for c in (333, 307, 301, 321, 322, 332) if c in codes), None)
        if code in NOT_CHOSEN and destroy is None:
            with self._cond:
                pending = self._pending
            if pending is None or pending[0] != "leave":
                self._put_out_for_now(code)
                return
        if code == 333:
            # §11.1: some services add 307 to 333; 333 (a technical removal) is what counts.
            reason = REMOVALS[333]
        elif code is not None:
            reason = REMOVALS[code]
        elif destroy is not None:
            reason = "destroyed"
            self.left_text = destroy.findtext("{%s}reason" % USER_NS)
            alternate = destroy.get("jid")
            if alternate:
                try:
                    self.alternate = JID(alternate)
                except ValueError:
                    pass
        else:
            with self._cond:
                pending = self._pending
            reason = "left" if pending is not None and pending[0] == "leave" else "removed"
        if item is not None and code is not None:
            self.left_text = item.findtext("{%s}reason" % USER_NS)
        self._left(reason, code)

    def _put_out_for_now(self, code: int | None) -> None:
        """I/O thread: the room put us out, but nobody chose it (a shutdown, an error, a
        self-ping that found us gone): we stay a member of this room in our own eyes and
        enter it again, as soon as the session allows (see MUC._upkeep_main), or after the
        next session starts."""
        with self._cond:
            if self.state == "left":
                return
            self.state = "rejoining"
            self._lost = True
            self.occupants = {}
            self.left_code = code
            self._retry_at = time.monotonic() + self._retry_delay
            self._cond.notify_all()
        log.info("room %s put us out (status %s) without anyone choosing it; entering it "
                 "again", self.jid, code)
        self._muc._wake_upkeep()

    def _on_error_presence(self, presence: Presence) -> None:
        error = presence.error
        assert error is not None
        with self._cond:
            pending = self._pending
            if pending is not None and not pending[2].done():
                self._pending = None
            else:
                pending = None
            state = self.state
        if pending is not None:
            kind, nick, future = pending
            future.set_exception(_typed_error(error, self.jid, kind, nick))
            return
        if state == "rejoining":
            if error.condition in RETRY_CONDITIONS:
                with self._cond:
                    delay = self._retry_delay
                    self._retry_delay = min(self._retry_delay * 2, self._muc.rejoin_max_delay)
                    self._retry_at = time.monotonic() + delay
                log.info("could not re-enter room %s yet (%s); trying again in %g s", self.jid,
                         error.condition, delay)
                self._muc._wake_upkeep()
                return
            log.warning("could not re-enter room %s as %r: %s", self.jid, self.nick, error)
            self.left_text = error.text
            self._left("error", None)
            return
        log.info("room %s sent an error presence: %s", self.jid, error)

    def _on_message(self, msg: Message, nick: str | None) -> None:
        element = msg.xml
        client = self._client
        self._activity = time.monotonic()
        subject = element.find(_C + "subject")
        if subject is not None and element.find(_C + "body") is None:
            # §7.2.15, §8.1: a subject and no body is a subject change (empty: no subject).
            text = subject.text or None
            with self._cond:
                self.subject = text
                self.subject_by = nick
                waiter = self._subject_waiters.pop(element.get("id") or "", None)
                if waiter is None and nick == self.nick and self._subject_waiters:
                    # A room that does not reflect our id: our own subject change is ours.
                    waiter = self._subject_waiters.pop(next(iter(self._subject_waiters)))
            self._subject_seen.set()
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            client.emit("muc_subject", self, text, nick)
            return
        if nick is None and element.find(_C + "body") is None:
            x = element.find(_USER_X)
            if x is not None:
                codes = {int(s.get("code", "")) for s in x.iterfind(_STATUS)
                         if s.get("code", "").isdigit()}
                client.emit("muc_status", self, codes)
                return
        key = msg.stanza_id(self.jid)
        if key is None and msg.origin_id:
            key = f"{element.get('from')}\x00{msg.origin_id}"
        stamp = msg.delay or _now()
        with self._cond:
            if key is not None:
                if key in self._seen:
                    self.duplicates_dropped += 1
                    return
                self._seen[key] = None
                while len(self._seen) > _SEEN_WINDOW:
                    self._seen.popitem(last=False)
            if self._last_seen is None or stamp > self._last_seen:
                self._last_seen = stamp
        if self._queue_used or not client.has_callbacks("muc_message"):
            self._queue.put(msg)
        client.emit("muc_message", self, msg)

    def _on_error_message(self, msg: Message) -> bool:
        """An error bounce of our subject change: fail the waiter (claimed)."""
        with self._cond:
            waiter = self._subject_waiters.pop(msg.xml.get("id") or "", None)
        if waiter is None:
            return False
        error = msg.error
        assert error is not None
        waiter.set_exception(MUCError(f"room {self.jid} refused the subject change",
                                      error.condition, error.type, error.text, msg, self.jid))
        return True

    # -- leaving -------------------------------------------------------------------------------
    def _left(self, reason: str, code: int | None) -> None:
        """We are out of the room: end the iterators, fail what waits, tell listeners."""
        with self._cond:
            if self.state == "left":
                return
            was_in = self.state in ("joined", "rejoining")
            self.state = "left"
            self.left_reason = reason
            self.left_code = code
            pending, self._pending = self._pending, None
            waiters = list(self._subject_waiters.values())
            self._subject_waiters.clear()
            self._cond.notify_all()
        self._muc._forget(self)
        self._queue.close()
        if pending is not None and not pending[2].done():
            if pending[0] == "leave":
                pending[2].set_result({code} if code is not None else set())
            elif reason == "disconnected":
                pending[2].set_exception(DisconnectedError(
                    f"the client disconnected before room {self.jid} answered our "
                    f"{pending[0]}"))
            else:
                pending[2].set_exception(NotInRoomError(
                    f"not in room {self.jid} (we {self._left_words()})", room=self.jid))
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(NotInRoomError(f"not in room {self.jid}", room=self.jid))
        if was_in:
            self._client.emit("muc_left", self, code)

    # -- display -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<Room {self.jid} as {self.nick!r} {self.state}, "
                f"{len(self.occupants)} occupant(s)>")

    def _repr_html_(self) -> str:
        """Jupyter: the occupants as a table, the subject as the caption."""
        esc = html.escape
        caption = f"{esc(str(self.jid))} ({esc(self.state)})"
        if self.subject:
            caption += f": {esc(self.subject)}"
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("nick", "role", "affiliation", "jid", "show", "status"))
        rows = "".join(
            "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in (
                o.nick + (" (me)" if o.nick == self.nick else ""), o.role, o.affiliation,
                str(o.jid or ""), o.show or "", o.status or "")) + "</tr>"
            for o in sorted(self.occupants.values(), key=lambda o: o.nick.lower()))
        return f"<table><caption>{caption}</caption><tr>{head}</tr>{rows}</table>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython: the room and one line per occupant."""
        lines = [f"{self.jid} as {self.nick!r} ({self.state})"
                 + (f": {self.subject}" if self.subject else "")]
        for o in sorted(self.occupants.values(), key=lambda o: o.nick.lower()):
            lines.append(f"  {o.nick:<20} {o.role:<11} {o.affiliation:<7} {o.jid or ''}")
        printer.text("\n".join(lines))


def _form_value(value: Any) -> str | bool | int | list[str]:
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, JID):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    raise TypeError(f"a configuration value must be a bool, int, str or list, not "
                    f"{type(value).__name__}")


def _typed_error(error: StanzaError, room: JID, kind: str, nick: str) -> MUCError:
    cls, meaning = _JOIN_ERRORS.get(error.condition, (MUCError, error.condition))
    if kind == "nickname change" and error.condition == "not-acceptable":
        meaning = "nicknames are locked down in this room"
    what = f"cannot enter room {room} as {nick!r}" if kind == "join" else \
        f"room {room} refused our {kind} to {nick!r}"
    return cls(f"{what}: {meaning} ({error.condition})", error.condition, error.type,
               error.text, error.stanza, room)


class MUC(Extension):
    """`client.muc`: enter rooms ([`join()`][simplexmpp.ext.muc.MUC.join]), list them
    ([`rooms()`][simplexmpp.ext.muc.MUC.rooms]), track invitations.
    """

    name = "muc"
    features = (MUC_NS, CONFERENCE_NS)
    follow_sessions_from_start = False  # see follow_sessions(): from first use

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._rooms: dict[str, Room] = {}
        self._lock = threading.Lock()
        self._service: JID | None = None
        for event in ("muc_message", "muc_presence", "muc_subject", "muc_nick", "muc_status",
                      "muc_joined", "muc_left", "muc_invite", "muc_decline",
                      "muc_autojoined"):
            client.declare_event(event)
        self._intercept_stanzas("presence", self._intercept_presence)
        # Chat and headline messages are never the room's (see _intercept_message).
        self._intercept_stanzas("message", self._intercept_message,
                                types=("groupchat", "error", "normal"))
        # The session hooks are followed from the first join on (follow_sessions()).
        self.self_ping_interval: float | None = 600.0
        """XEP-0410 self-ping: a joined room that sent nothing for this many seconds is pinged at
        our own occupant JID, and entered again if the answer says we are not in it any more. None
        or 0: off."""
        self.self_ping_timeout: float | None = None
        """How long a self-ping waits for its answer (None: the client's timeout)."""
        self.rejoin_max_delay = 60.0
        """Longest wait between two attempts to re-enter a room (doubling from 1 s)."""
        self.stray_groupchat: dict[str, int] = {}
        """groupchat messages dropped because they came from no room we are in (a room we never
        joined or already left, or someone's full JID): they never reach messages(). Per sender's
        bare JID, at most 1,000 of them kept."""
        self.stray_groupchat_dropped = 0
        self.decryptor: RoomDecryptor | None = None
        """End-to-end encrypted room messages: when set, a groupchat message it
        [wants][simplexmpp.ext.muc.RoomDecryptor.wants] is handed to its
        [decrypt_later][simplexmpp.ext.muc.RoomDecryptor.decrypt_later], and what that passes
        on takes the message's place (in `room.messages()` and "muc_message"), in arrival
        order with the room's other messages. Set by [simplexmpp.ext.omemo_muc][] (OMEMO in
        rooms)."""
        self._upkeep: threading.Thread | None = None
        self._upkeep_wake = threading.Event()
        self._autojoin = False
        self.autojoin_nick: str | None = None
        """The nickname for bookmarked rooms that name none (default: our account's
        localpart)."""

    # -- bookmarks (XEP-0402 / XEP-0048) ---------------------------------------------------------
    @property
    def autojoin_bookmarks(self) -> bool:
        """Opt-in: when True, each `connect()` enters every room bookmarked with
        `autojoin` ([client.bookmarks][simplexmpp.ext.bookmarks.Bookmarks]), on a thread of
        its own once the session is ready, then emits `"muc_autojoined"` with the result of
        [join_bookmarks][simplexmpp.ext.muc.MUC.join_bookmarks]. Rooms entered this way
        are entered again after a lost session like any other."""
        return self._autojoin

    @autojoin_bookmarks.setter
    def autojoin_bookmarks(self, on: bool) -> None:
        self._autojoin = bool(on)
        if self._autojoin:
            self.follow_sessions()

    def join_bookmarks(self, nick: str | None = None, timeout: float | None = None,
                       ) -> dict[JID, Room | XMPPError]:
        """Enter every room bookmarked with `autojoin` (not already joined), each with its
        bookmark's nick and password (else `nick`, then
        [autojoin_nick][simplexmpp.ext.muc.MUC.autojoin_nick], then our localpart).
        Returns, per room, the [Room][simplexmpp.ext.muc.Room] or the error that kept us
        out: one room that fails does not stop the others."""
        from .bookmarks import Bookmarks
        bookmarks = self._client.extension(Bookmarks)
        default_nick = nick or self.autojoin_nick or self._client.account.local or "user"
        results: dict[JID, Room | XMPPError] = {}
        for bookmark in bookmarks.list(timeout):
            if not bookmark.autojoin:
                continue
            room = self.room(bookmark.jid)
            if room is not None:
                results[bookmark.jid] = room
                continue
            try:
                results[bookmark.jid] = self.join(bookmark.jid, bookmark.nick or default_nick,
                                                  bookmark.password, timeout=timeout)
            except XMPPError as exc:
                log.warning("could not enter bookmarked room %s: %s", bookmark.jid, exc)
                results[bookmark.jid] = exc
        return results

    def _autojoin_main(self) -> None:
        try:
            results = self.join_bookmarks()
        except XMPPError as exc:
            log.warning("could not read the bookmarks to enter their rooms: %s", exc)
            results = {}
        self._client.emit("muc_autojoined", results)

    # -- rooms -------------------------------------------------------------------------------
    @property
    def joined(self) -> dict[JID, Room]:
        """The rooms we are in, by room JID."""
        with self._lock:
            return {room.jid: room for room in self._rooms.values() if room.joined}

    def room(self, room_jid: JID | str) -> Room | None:
        """The joined room with this JID, or None."""
        with self._lock:
            room = self._rooms.get(str(JID(room_jid).bare))
        return room if room is not None and room.joined else None

    def join(self, room_jid: JID | str, nick: str, password: str | None = None,
             history: int | None = 0, config: Mapping[str, Any] | Form | None = None,
             timeout: float | None = None, *, history_seconds: int | None = None,
             since: datetime | None = None, history_chars: int | None = None) -> Room:
        """Enter a room (§7.2) as `nick` and return the [`Room`][simplexmpp.ext.muc.Room] once the
        room has sent our own presence (after everyone else's, so `room.occupants` is complete).

        `history` is how many past messages to get (0 none, None: the room's default);
        `history_seconds`/`since`/`history_chars` limit it further (§7.2.14; with
        `since` or `history_seconds` given, `history=0` means no count limit). A room
        that does not exist is created; if the room stays locked (status 201) it is unlocked
        as an instant room (§10.1.2), or, with `config` (dict var -> value, or a Form),
        configured first (§10.1.3). `config` is also applied to an existing room we own.

        Raises [`NickConflictError`][simplexmpp.ext.muc.NickConflictError],
        [`RoomPasswordError`][simplexmpp.ext.muc.RoomPasswordError],
        [`BannedError`][simplexmpp.ext.muc.BannedError],
        [`RoomMembersOnlyError`][simplexmpp.ext.muc.RoomMembersOnlyError],
        [`RoomNotFoundError`][simplexmpp.ext.muc.RoomNotFoundError],
        [`RoomFullError`][simplexmpp.ext.muc.RoomFullError],
        [`MUCError`][simplexmpp.ext.muc.MUCError] for other refusals,
        [`TimeoutError`][simplexmpp.errors.TimeoutError].
        """
        timeout = self.timeout(timeout)
        jid = JID(room_jid)
        if jid.local is None or jid.resource is not None:
            raise ValueError(f"a room JID looks like room@service, without a nickname: "
                             f"{room_jid!r} (give the nickname separately)")
        if not nick:
            raise ValueError("the nickname must not be empty")
        jid.with_resource(nick)  # the nickname must be a valid resourcepart (§17.1)
        if history is not None and history < 0:
            raise ValueError("history must be 0 or more (or None for the room's default)")
        key = str(jid)
        self.follow_sessions()
        with self._lock:
            existing = self._rooms.get(key)
            if existing is not None and existing.state != "left":
                if existing.state == "joining":
                    raise MUCError(f"already entering room {jid}", "unexpected-request",
                                   room=jid)
                room = existing
            else:
                room = Room(self, jid, nick, password)
                room._config = config
                self._rooms[key] = room
        if room is existing:
            if nick != room.nick:
                room.change_nick(nick, timeout)
            return room
        future = room._begin("join", nick)
        try:
            self._send_join(room, history, history_seconds, since, history_chars, timeout)
            codes = room._wait(future, timeout, f"our entering as {nick!r}")
        except BaseException as exc:
            with room._cond:
                room.state = "left"
                room.left_reason = "error"
                room._cond.notify_all()
            self._forget(room)
            room._queue.close()
            if isinstance(exc, errors.TimeoutError):
                try:  # do not leave a half-entered room behind
                    self._client.send(Presence(to=room.occupant_jid(nick), type="unavailable"),
                                      timeout=0)
                except XMPPError:
                    pass
            raise
        try:
            if CREATED in codes:
                # §10.1.1: the room exists but is locked until its owner configures it.
                if config is None:
                    room._submit(Form(type="submit"), timeout)  # §10.1.2 instant room
                else:
                    room.configure(config, timeout)                # §10.1.3 reserved room
            elif config is not None:
                if room.affiliation == "owner":
                    room.configure(config, timeout)
                else:
                    log.warning("room %s already exists and we are not its owner: the "
                                "configuration given to join() was not applied", jid)
        except BaseException:
            if CREATED in codes:
                try:  # a locked new room we cannot configure is of no use: leave (it goes)
                    room.leave(timeout=min(timeout, 5))
                except XMPPError:
                    room._left("error", None)
            raise
        # §7.2.15: the subject comes last, after the history; once it is here the room is
        # fully entered (occupants, history queued, subject). Every server we know sends it;
        # for one that does not, do not wait long.
        if not room._subject_seen.wait(min(timeout, SUBJECT_WAIT)):
            log.debug("room %s sent no subject after our entering", jid)
        self._wake_upkeep()
        return room

    def _send_join(self, room: Room, history: int | None, seconds: int | None,
                   since: datetime | None, chars: int | None, timeout: float | None) -> None:
        presence = Presence(to=room.occupant_jid(), id=new_id())
        last = self._client.broadcast_presence
        if last is not None:
            presence.show = last.show
            presence.status = last.status
        x = ET.SubElement(presence.xml, _MUC_X)
        if room.password is not None:
            ET.SubElement(x, "{%s}password" % MUC_NS).text = room.password
        attrs: dict[str, str] = {}
        if history == 0 and seconds is None and since is None and chars is None:
            # §7.2.14: "no history" is asked for with maxchars="0".
            attrs = {"maxchars": "0", "maxstanzas": "0"}
        else:
            if history:
                attrs["maxstanzas"] = str(history)
            if seconds is not None:
                attrs["seconds"] = str(int(seconds))
            if since is not None:
                attrs["since"] = format_datetime(since)
            if chars is not None:
                attrs["maxchars"] = str(int(chars))
        if attrs:
            ET.SubElement(x, "{%s}history" % MUC_NS, attrs)
        for decorate in list(self._client.presence_decorators):
            decorate(presence)
        self._client.send(presence, timeout)

    def _forget(self, room: Room) -> None:
        with self._lock:
            if self._rooms.get(str(room.jid)) is room:
                del self._rooms[str(room.jid)]
            if not self._rooms:
                self._upkeep_wake.set()  # nothing to look after: the upkeep thread ends

    # -- services ------------------------------------------------------------------------------
    def service(self, timeout: float | None = None) -> JID:
        """Our server's MUC service: the first disco item with identity conference/text
        (§6.1); raises [`MUCError`][simplexmpp.ext.muc.MUCError] when there is none."""
        if self._service is None:
            found = self._client.disco.find("conference", "text", timeout=timeout)
            if not found or found[0].jid is None:
                raise MUCError(f"{self._client.account.domain} offers no multi-user chat "
                               "service (no disco item with identity conference/text)",
                               "item-not-found")
            self._service = JID(found[0].jid)
        return self._service

    def rooms(self, service: JID | str | None = None,
              timeout: float | None = None) -> list[DiscoItem]:
        """The public rooms of a MUC service (§6.3), as disco items (`jid`, `name`);
        default service: [`service()`][simplexmpp.ext.muc.MUC.service]."""
        target = JID(service) if service is not None else self.service(timeout)
        return list(self._client.disco.items(target, timeout=timeout))

    # -- incoming (I/O thread) -----------------------------------------------------------------
    def _room_for(self, sender: str) -> tuple[Room | None, str | None]:
        bare, _, nick = sender.partition("/")
        room = self._rooms.get(bare)
        if room is None:
            try:
                jid = JID(sender)
            except ValueError:
                return None, None
            room = self._rooms.get(str(jid.bare))
            nick = jid.resource or ""
        return room, nick or None

    def _intercept_presence(self, presence: Presence) -> bool:
        sender = presence.xml.get("from")
        if not sender or "@" not in sender:
            return False
        room, nick = self._room_for(sender)
        if room is None:
            return False
        if presence.xml.find(_VCARD_UPDATE) is not None:
            # Rooms and occupants announce vCard avatar hashes (XEP-0153, XEP-0486): the
            # avatar extension keeps them, though the presence is the room's.
            avatar = getattr(self._client, "avatar", None)
            note = getattr(avatar, "note_vcard_update", None)
            if callable(note):
                note(presence)
        room._on_presence(presence, nick)
        return True

    def _intercept_message(self, msg: Message) -> bool:
        element = msg.xml
        kind = element.get("type")
        sender = element.get("from")
        if not sender:
            return False
        if kind == "groupchat":
            room, nick = self._room_for(sender)
            if room is None:
                self._stray_groupchat(sender)
                return True
            decryptor = self.decryptor
            if decryptor is not None:
                if decryptor.wants(msg):
                    # Decrypting may wait for the network (keys): never on the I/O thread. Who
                    # sent it is read now: the occupant may leave before it is decrypted.
                    occupant = room.occupants.get(nick) if nick is not None else None
                    real = occupant.jid if occupant is not None else None
                    decryptor.decrypt_later(room, msg, nick, real, room._on_message)
                    return True
                if decryptor.hold_back(room, msg, nick, room._on_message):
                    return True  # after an encrypted message still being decrypted
            room._on_message(msg, nick)
            return True
        if kind == "error":
            room, _ = self._room_for(sender)
            return room is not None and room._on_error_message(msg)
        if kind in ("chat", "headline"):
            return False
        self._invitation(msg, sender)
        return False  # invitations also reach the inbox (Prosody adds a readable body)

    def _stray_groupchat(self, sender: str) -> None:
        """I/O thread: a groupchat message from no room we are in. Only a room sends
        groupchat messages to its occupants (XEP-0045 §7.4), so one from a room we never
        entered (or left), or from a user's JID, is not room traffic; handed to messages()
        it would look like it. Dropped, counted per sender, logged once per sender."""
        bare = sender.partition("/")[0].lower()
        self.stray_groupchat_dropped += 1
        counts = self.stray_groupchat
        seen = counts.get(bare)
        if seen is None:
            if len(counts) >= 1000:
                counts.pop(next(iter(counts)))
            log.warning("dropping groupchat messages from %s: we are in no such room "
                        "(counted in client.muc.stray_groupchat)", bare)
        counts[bare] = (seen or 0) + 1

    def _invitation(self, msg: Message, sender: str) -> None:
        element = msg.xml
        x = element.find(_USER_X)
        try:
            if x is not None:
                invite = x.find("{%s}invite" % USER_NS)
                decline = x.find("{%s}decline" % USER_NS)
                room = JID(sender).bare
                if invite is not None:  # §7.8.2: from the room, on the inviter's behalf
                    who = invite.get("from")
                    inviter = JID(who) if who else None
                    self._client.emit("muc_invite", room, inviter,
                                       invite.findtext("{%s}reason" % USER_NS),
                                       x.findtext("{%s}password" % USER_NS))
                elif decline is not None:
                    who = decline.get("from")
                    decliner = JID(who) if who else None
                    self._client.emit("muc_decline", room, decliner,
                                       decline.findtext("{%s}reason" % USER_NS))
                return
            conference = element.find(_CONF_X)
            if conference is not None and conference.get("jid"):
                # XEP-0249 §2: the invitation comes straight from the inviter.
                self._client.emit("muc_invite", JID(conference.get("jid", "")).bare,
                                   JID(sender), conference.get("reason"),
                                   conference.get("password"))
        except ValueError as exc:
            log.info("ignoring an invitation with a bad JID from %s: %s", sender, exc)

    # -- session changes (dispatcher thread) ---------------------------------------------------
    def _rooms_now(self) -> list[Room]:
        with self._lock:
            return list(self._rooms.values())

    def session_lost(self, error: BaseException | None) -> None:
        """Until we know whether the session is resumed, a room is not to be written to."""
        for room in self._rooms_now():
            with room._cond:
                if room.state in ("joined", "joining", "rejoining"):
                    room._lost = True
                if room.state == "joined":
                    room.state = "rejoining"

    def session_resumed(self, session: Session) -> None:
        """XEP-0198: a resumed session is still in every room; nothing was lost (a room
        that put us out for a shutdown meanwhile is still re-entered by the upkeep)."""
        for room in self._rooms_now():
            with room._cond:
                if room._retry_at is not None:
                    continue
                room._lost = False
                if room.state == "rejoining":
                    room.state = "joined"
                    room._cond.notify_all()

    def session_started(self, session: Session) -> None:
        """A new session replaced a lost one: the server took us out of every room with the
        old session, whatever it said while going down (a 332/333 shutdown notice
        included); enter every room we did not leave again, asking for what was said
        since the last message we saw (§7.2.14). A join that was under way is sent again.
        The first session after `connect()` enters the bookmarked rooms when
        [autojoin_bookmarks][simplexmpp.ext.muc.MUC.autojoin_bookmarks] is on."""
        if self._autojoin and session.first:
            # Not on the dispatcher: entering rooms takes round trips, and callbacks
            # ("connected" among them) should not wait for them.
            threading.Thread(target=self._autojoin_main, daemon=True,
                             name=f"simplexmpp-muc-autojoin-{self._client.account.bare}"
                             ).start()
        for room in self._rooms_now():
            with room._cond:
                if not room._lost or room.state == "left":
                    continue
                room._lost = False
                rejoin = room.state == "rejoining"
                if rejoin:
                    room.occupants = {}
                    room._retry_at = time.monotonic() + max(room._retry_delay, 5.0)
            try:
                if rejoin:
                    self._rejoin(room)
                else:
                    self._send_join(room, 0, None, None, None, None)
            except XMPPError as exc:
                log.warning("could not re-enter room %s: %s", room.jid, exc)
        self._wake_upkeep()

    def client_stopped(self, error: BaseException | None) -> None:
        """The client stopped: we are out of every room; the upkeep thread ends."""
        for room in self._rooms_now():
            room._left("disconnected", None)
        self._upkeep_wake.set()
        upkeep = self._upkeep
        if upkeep is not None and upkeep is not threading.current_thread():
            upkeep.join(min(self.client.timeout, 5.0))

    def _rejoin(self, room: Room, timeout: float | None = None) -> None:
        """Send the presence that enters `room` again, with the history since the last
        message we saw (repeats are dropped by stanza-id)."""
        since = (room._last_seen or _now()) - REJOIN_SKEW
        self._send_join(room, None, None, since, None, timeout)

    # -- upkeep: re-joins and XEP-0410 self-pings (a thread of its own) ----------------------
    def _wake_upkeep(self) -> None:
        """Start the upkeep thread if a room needs it, or have it look at the rooms again."""
        if self.client.state == "disconnected":
            return
        with self._lock:
            needed = bool(self._rooms) and (
                bool(self.self_ping_interval) or
                any(r._retry_at is not None for r in self._rooms.values()))
            if not needed:
                return
            self._upkeep_wake.set()
            if self._upkeep is None:
                self._upkeep = threading.Thread(
                    target=self._upkeep_main, daemon=True,
                    name=f"simplexmpp-muc-{self.client.account.bare}")
                self._upkeep.start()

    def _upkeep_main(self) -> None:
        """The upkeep thread: re-enter rooms that put us out without anyone choosing it,
        and self-ping quiet rooms (XEP-0410). Runs while there are rooms to look after and
        the client has not stopped; never runs user code (the events it causes run on the
        dispatcher)."""
        while True:
            self._upkeep_wake.clear()
            with self._lock:
                rooms = list(self._rooms.values())
                if not rooms or self.client.state == "disconnected":
                    self._upkeep = None
                    return
            now = time.monotonic()
            interval = self.self_ping_interval or 0.0
            wait = 60.0
            for room in rooms:
                try:
                    due = self._look_after(room, now, interval)
                except Exception:  # noqa: BLE001 - reported; the thread carries on
                    log.exception("looking after room %s failed", room.jid)
                    due = now + 5.0
                if due is not None:
                    wait = min(wait, due - time.monotonic())
            self._upkeep_wake.wait(max(wait, 0.01))

    def _look_after(self, room: Room, now: float, interval: float) -> float | None:
        """Re-join or self-ping `room` if it is due; when to look at it next."""
        client = self.client
        with room._cond:
            state, retry_at, pending = room.state, room._retry_at, room._pending
        if state == "rejoining" and retry_at is not None:
            if now < retry_at:
                return retry_at
            if not client.is_connected:
                return now + 1.0  # the session hooks take over after a reconnect
            with room._cond:
                room._retry_at = now + max(room._retry_delay, 5.0)
                room.occupants = {}
            try:
                self._rejoin(room, timeout=0)
            except XMPPError as exc:
                log.info("could not re-enter room %s yet: %s", room.jid, exc)
            return room._retry_at
        if state != "joined" or not interval:
            return None
        due = room._activity + interval
        if now < due:
            return due
        if pending is not None or not client.is_connected:
            # XEP-0410 §4: not during a nickname change, nor while the session is away.
            return now + min(interval, 5.0)
        self._self_ping(room)
        return room._activity + interval

    def _self_ping(self, room: Room) -> None:
        """XEP-0410 §3.2: ping our own occupant JID; the answer tells whether the room
        still knows us."""
        ping = Iq.get(room.occupant_jid(), ET.Element("{%s}ping" % PING_NS))
        try:
            self.client.iq(ping, timeout=self.self_ping_timeout)
        except IqError as exc:
            if exc.condition in _PING_STILL_IN:
                pass
            elif exc.condition in _PING_UNDECIDED:
                log.info("self-ping of room %s: %s; no decision, asking again later",
                         room.jid, exc.condition)
            else:
                # not-acceptable (§3.2: we are not an occupant) or any other error: the
                # room forgot us (a restart of the MUC service, a lost notice).
                log.warning("room %s no longer knows us (self-ping: %s); entering it again",
                            room.jid, exc.condition)
                room._activity = time.monotonic()
                room._put_out_for_now(None)
                with room._cond:
                    room._retry_at = time.monotonic()
                return
        except errors.TimeoutError:
            log.info("self-ping of room %s got no answer; asking again later", room.jid)
        except XMPPError as exc:
            log.debug("self-ping of room %s not sent: %s", room.jid, exc)
        room._activity = time.monotonic()
