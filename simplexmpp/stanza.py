"""Stanzas: thin typed wrappers around `xml.etree.ElementTree.Element` (sans-IO).

`Message`, `Presence` and `Iq` expose the common attributes (`to`, `from_`, `id`,
`type`) and their own children as properties; `.xml` is the element itself, so anything the
wrappers do not cover can be read or built with ElementTree. Attribute values are parsed when
read, which keeps wrapping a received element nearly free.
"""

from __future__ import annotations

import base64
import os
import re
import weakref
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

from .errors import (STANZA_ERROR_CONDITIONS, InvalidStanzaError, IqError, JIDError, MessageError,
                     StanzaError)
from .jid import JID, parse_jid
from .styling import Span
from .styling import parse as parse_styling
from .xml import CLIENT_NS, tostring

__all__ = ["Stanza", "Message", "Presence", "Iq", "new_id", "wrap", "STANZAS_NS",
           "error_element", "parse_error", "parse_datetime", "format_datetime", "SID_NS",
           "DELAY_NS", "Encryption", "mark_encrypted", "encryption_of", "REACTIONS_NS",
           "REPLY_NS", "RETRACT_NS", "FALLBACK_NS", "OCCUPANT_ID_NS", "HINTS_NS", "Reactions",
           "Reply", "Retraction", "Fallback"]

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
_NS = "{%s}" % CLIENT_NS
_ERROR_TAG = _NS + "error"

S = TypeVar("S", bound="Stanza")

SID_NS = "urn:xmpp:sid:0"
DELAY_NS = "urn:xmpp:delay"
_DELAY = "{%s}delay" % DELAY_NS
_STANZA_ID = "{%s}stanza-id" % SID_NS
_ORIGIN_ID = "{%s}origin-id" % SID_NS
REACTIONS_NS = "urn:xmpp:reactions:0"
"""XEP-0444 Message Reactions."""
REPLY_NS = "urn:xmpp:reply:0"
"""XEP-0461 Message Replies."""
RETRACT_NS = "urn:xmpp:message-retract:1"
"""XEP-0424 Message Retraction (version 1 and later; version 0 is read too)."""
FALLBACK_NS = "urn:xmpp:fallback:0"
"""XEP-0428 Fallback Indication."""
OCCUPANT_ID_NS = "urn:xmpp:occupant-id:0"
"""XEP-0421 Anonymous unique occupant identifiers for MUCs."""
HINTS_NS = "urn:xmpp:hints"
"""XEP-0334 Message Processing Hints."""
_REACTIONS = "{%s}reactions" % REACTIONS_NS
_REPLY = "{%s}reply" % REPLY_NS
_RETRACT = "{%s}retract" % RETRACT_NS
_RETRACT_V0 = "{urn:xmpp:fasten:0}apply-to"
_FALLBACK = "{%s}fallback" % FALLBACK_NS
_OCCUPANT_ID = "{%s}occupant-id" % OCCUPANT_ID_NS
_UNSTYLED = "{urn:xmpp:styling:0}unstyled"
_FRACTION = re.compile(r"\.(\d+)")


@dataclass(frozen=True)
class Encryption:
    """How a received message was end-to-end encrypted (see
    [mark_encrypted][simplexmpp.stanza.mark_encrypted])."""

    namespace: str
    """The encryption's namespace (`urn:xmpp:omemo:2`, `eu.siacs.conversations.axolotl`)."""
    sender_device: int | None
    """The sending device's id, when the message said."""
    error: str | None = None
    """Why the message could not be decrypted (None: it was)."""


# What the decrypting extension found out about a received message, keyed by the message's
# element itself (a side table, not an attribute: nothing a peer sends can claim that its
# message was encrypted). Weak: the entry goes with the element.
_ENCRYPTION: weakref.WeakKeyDictionary[ET.Element, Encryption] = weakref.WeakKeyDictionary()


def mark_encrypted(msg: Message | ET.Element, namespace: str, sender_device: int | None,
                   error: str | None = None) -> None:
    """For extensions that decrypt: record that `msg` (the message handed to
    [Client.deliver][simplexmpp.Client.deliver]) arrived encrypted with `namespace` from
    `sender_device`; `error` says why it could not be decrypted (then its body is None).
    Read back as [Message.encryption][simplexmpp.stanza.Message.encryption],
    `sender_device` and `decryption_error`."""
    element = msg.xml if isinstance(msg, Stanza) else msg
    _ENCRYPTION[element] = Encryption(namespace, sender_device, error)


def encryption_of(msg: Message | ET.Element) -> Encryption | None:
    """What [mark_encrypted][simplexmpp.stanza.mark_encrypted] recorded for `msg`, or None
    (a plain message)."""
    return _ENCRYPTION.get(msg.xml if isinstance(msg, Stanza) else msg)


def parse_datetime(text: str) -> datetime:
    """An XEP-0082 DateTime (`2002-09-10T23:08:25Z`, fractions and offsets allowed) as an
    aware datetime; ValueError when it is not one."""
    text = text.strip()
    if not text or "T" not in text:
        raise ValueError(f"not an XEP-0082 DateTime: {text!r}")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat takes only 3 or 6 fraction digits; XEP-0082 allows any.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"XEP-0082 DateTime without a time zone: {text!r}")
    return value


def format_datetime(value: datetime) -> str:
    """An aware (or UTC-naive) datetime as an XEP-0082 DateTime in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    text = value.replace(tzinfo=None).isoformat(timespec="microseconds" if value.microsecond
                                                else "seconds")
    return text + "Z"


_ID_BYTES = 12      # 96 random bits: 16 URL-safe base64 characters per id
_ID_BATCH = 256     # ids drawn from one os.urandom() call
_ids: list[str] = []
if hasattr(os, "register_at_fork"):  # a forked child must not hand out its parent's ids
    os.register_at_fork(after_in_child=_ids.clear)


def new_id() -> str:
    """A fresh stanza id: unique and unpredictable (RFC 6120 §8.1.3 and §13.10).

    96 bits from `os.urandom` (as `secrets.token_urlsafe(12)`), read for many ids at once:
    one system call per 256 ids instead of one per id. `list.pop` is atomic, so threads
    never share an id."""
    try:
        return _ids.pop()
    except IndexError:
        raw = base64.urlsafe_b64encode(os.urandom(_ID_BYTES * _ID_BATCH)).decode("ascii")
        # 12 bytes encode to exactly 16 characters, so every 16-character slice is an
        # independent 12-byte token.
        batch = [raw[i:i + 16] for i in range(0, len(raw), 16)]
        mine = batch.pop()
        _ids.extend(batch)
        return mine


class Stanza:
    """Base of the three stanza kinds; `xml` is the wrapped element."""

    __slots__ = ("xml",)
    TAG: ClassVar[str] = ""

    def __init__(self, xml: ET.Element | None = None, *, to: JID | str | None = None,
                 type: str | None = None, id: str | None = None,
                 from_: JID | str | None = None) -> None:
        if xml is None:
            xml = ET.Element(self.TAG)
        elif xml.tag != self.TAG:
            raise InvalidStanzaError(f"{type_name(self)} cannot wrap <{xml.tag}>")
        self.xml = xml
        if to is not None:
            self.to = to
        if from_ is not None:
            self.from_ = from_
        if type is not None:
            self.type = type
        if id is not None:
            self.id = id

    # -- common attributes -------------------------------------------------------------------
    @property
    def to(self) -> JID | None:
        return parse_jid(self.xml.get("to"))

    @to.setter
    def to(self, value: JID | str | None) -> None:
        self._set_jid("to", value)

    @property
    def from_(self) -> JID | None:
        return parse_jid(self.xml.get("from"))

    @from_.setter
    def from_(self, value: JID | str | None) -> None:
        self._set_jid("from", value)

    def _set_jid(self, name: str, value: JID | str | None) -> None:
        if value is None or value == "":
            self.xml.attrib.pop(name, None)
        else:
            self.xml.set(name, str(value if isinstance(value, JID) else JID(value)))

    @property
    def id(self) -> str | None:
        return self.xml.get("id")

    @id.setter
    def id(self, value: str | None) -> None:
        self._set_attr("id", value)

    @property
    def type(self) -> str | None:
        return self.xml.get("type")

    @type.setter
    def type(self, value: str | None) -> None:
        self._set_attr("type", value)

    @property
    def lang(self) -> str | None:
        return self.xml.get("{http://www.w3.org/XML/1998/namespace}lang")

    def _set_attr(self, name: str, value: str | None) -> None:
        if value is None:
            self.xml.attrib.pop(name, None)
        else:
            self.xml.set(name, value)

    # -- children ----------------------------------------------------------------------------
    def _child_text(self, name: str) -> str | None:
        child = self.xml.find(_NS + name)
        return None if child is None else (child.text or "")

    def _set_child_text(self, name: str, value: str | None) -> None:
        child = self.xml.find(_NS + name)
        if value is None:
            if child is not None:
                self.xml.remove(child)
            return
        if child is None:
            child = ET.SubElement(self.xml, _NS + name)
        child.text = value

    def find(self, path: str) -> ET.Element | None:
        """`self.xml.find(path)`: the first matching child element (Clark-notation tags)."""
        return self.xml.find(path)

    def append(self, element: ET.Element) -> None:
        """Add an extension payload."""
        self.xml.append(element)

    @property
    def is_error(self) -> bool:
        return self.xml.get("type") == "error"

    @property
    def error(self) -> StanzaError | None:
        """The stanza error as an exception object (RFC 6120 §8.3), or None."""
        if self.xml.get("type") != "error":
            return None
        condition, etype, text, by = parse_error(self.xml.find(_ERROR_TAG))
        cls = {"iq": IqError, "message": MessageError}.get(self.TAG[len(_NS):], StanzaError)
        return cls(condition, etype, text, stanza=self, by=by)

    def reply(self: S, type: str | None = None) -> S:
        """A new stanza of the same kind addressed back to the sender, with the same id."""
        new = type_of(self)(id=self.id)
        sender = self.xml.get("from")
        if sender:
            new.xml.set("to", sender)
        if type is not None:
            new.type = type
        return new

    def __str__(self) -> str:
        return tostring(self.xml)

    def __repr__(self) -> str:
        attrs = " ".join(f"{k}={v!r}" for k, v in self.xml.attrib.items())
        return f"<{type_name(self)} {attrs}>"


def type_of(stanza: S) -> type[S]:
    return type(stanza)


def type_name(obj: object) -> str:
    return type(obj).__name__


class Message(Stanza):
    """A `<message/>` stanza (RFC 6121 §5). `type` defaults to `"normal"` when absent."""

    __slots__ = ()
    TAG = _NS + "message"

    def __init__(self, xml: ET.Element | None = None, *, to: JID | str | None = None,
                 body: str | None = None, type: str | None = None, subject: str | None = None,
                 thread: str | None = None, id: str | None = None,
                 from_: JID | str | None = None) -> None:
        super().__init__(xml, to=to, type=type, id=id, from_=from_)
        if subject is not None:
            self.subject = subject
        if body is not None:
            self.body = body
        if thread is not None:
            self.thread = thread

    @property
    def type(self) -> str:
        return self.xml.get("type") or "normal"  # RFC 6121 §5.2.2: absent means normal

    @type.setter
    def type(self, value: str | None) -> None:
        self._set_attr("type", value)

    @property
    def body(self) -> str | None:
        return self._child_text("body")

    @body.setter
    def body(self, value: str | None) -> None:
        self._set_child_text("body", value)

    @property
    def subject(self) -> str | None:
        return self._child_text("subject")

    @subject.setter
    def subject(self, value: str | None) -> None:
        self._set_child_text("subject", value)

    @property
    def thread(self) -> str | None:
        return self._child_text("thread")

    @thread.setter
    def thread(self, value: str | None) -> None:
        self._set_child_text("thread", value)

    @property
    def encryption(self) -> str | None:
        """The end-to-end encryption the message arrived with (`"urn:xmpp:omemo:2"` or
        `"eu.siacs.conversations.axolotl"` for OMEMO), None for a plain message. An
        encrypted message is decrypted before it reaches `messages()` and callbacks; one that
        could not be decrypted has `body` None and a `decryption_error`."""
        info = _ENCRYPTION.get(self.xml)
        return info.namespace if info is not None else None

    @property
    def sender_device(self) -> int | None:
        """The OMEMO device id of the sender of an encrypted message (None otherwise)."""
        info = _ENCRYPTION.get(self.xml)
        return info.sender_device if info is not None else None

    @property
    def decryption_error(self) -> str | None:
        """Why an encrypted message could not be decrypted (it has `body` None); None when
        it was decrypted or was not encrypted."""
        info = _ENCRYPTION.get(self.xml)
        return info.error if info is not None else None

    @property
    def delay(self) -> datetime | None:
        """When the message was first sent, if it was delayed (XEP-0203: offline storage,
        archives, MUC history); None for a message delivered live."""
        el = self.xml.find(_DELAY)
        if el is None:
            return None
        try:
            return parse_datetime(el.get("stamp", ""))
        except ValueError:
            return None

    def stanza_id(self, by: JID | str) -> str | None:
        """The XEP-0359 stanza-id that `by` (our own archive, or a room) gave this message.

        Only the id assigned by the named entity counts (XEP-0359 §3.1: others may forge one).
        """
        wanted = str(by)
        for el in self.xml.iterfind(_STANZA_ID):
            if el.get("by") == wanted and el.get("id"):
                return el.get("id")
        return None

    def _repr_html_(self) -> str:
        """Jupyter: the message as a small table (sender, time, body)."""
        from html import escape
        when = self.delay
        rows = [("from", str(self.from_ or "")), ("to", str(self.to or "")),
                ("type", self.type), ("sent", when.isoformat() if when else ""),
                ("subject", self.subject or ""), ("body", self.body or "")]
        return "<table>%s</table>" % "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{escape(v)}</td></tr>"
            for k, v in rows if v)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython: `alice@example.org/pc → bob@example.org [chat]: hello`."""
        printer.text(f"{self.from_ or '?'} \u2192 {self.to or '?'} [{self.type}]: "
                     f"{self.body if self.body is not None else ''}")

    @property
    def origin_id(self) -> str | None:
        """The XEP-0359 origin-id the sender gave this message."""
        el = self.xml.find(_ORIGIN_ID)
        return el.get("id") if el is not None else None


    @property
    def occupant_id(self) -> str | None:
        """The XEP-0421 occupant id a room gave the sender (stable across nick changes), or
        None. Only a room sets it; a room that supports XEP-0421 removes forged ones."""
        el = self.xml.find(_OCCUPANT_ID)
        return el.get("id") if el is not None else None

    @property
    def reactions(self) -> Reactions | None:
        """The XEP-0444 reactions this message carries, or None when it is no reaction.

        A reaction message replaces the sender's earlier reactions to the same message
        (§3: an empty set removes them all)."""
        el = self.xml.find(_REACTIONS)
        if el is None or not el.get("id"):
            return None
        emojis = tuple(dict.fromkeys(
            r.text for r in el.iterfind("{%s}reaction" % REACTIONS_NS) if r.text))
        return Reactions(el.get("id", ""), emojis)

    @property
    def reply_to(self) -> Reply | None:
        """The XEP-0461 reference to the message this one answers, or None. (Not `reply`:
        [reply()][simplexmpp.stanza.Stanza.reply] builds an answer stanza.)"""
        el = self.xml.find(_REPLY)
        if el is None or not el.get("id"):
            return None
        return Reply(el.get("id", ""), _jid_or_none(el.get("to")))

    @property
    def retraction(self) -> Retraction | None:
        """The XEP-0424 retraction this message asks for (of an earlier message of the same
        sender, or, moderated, XEP-0425), or None.

        Version 1 (`<retract id=.../>`) and version 0 (an XEP-0422 `<apply-to>` wrapping
        `<retract/>`) are both read. A receiver applies it only when the retraction comes from
        the author of the original (same bare JID, or in a room the same occupant id)."""
        el = self.xml.find(_RETRACT)
        if el is not None and el.get("id"):
            moderated = el.find("{urn:xmpp:message-moderate:1}moderated")
            return Retraction(el.get("id", ""),
                              _jid_or_none(moderated.get("by")) if moderated is not None else None,
                              el.findtext("{%s}reason" % RETRACT_NS))
        for apply_to in self.xml.iterfind(_RETRACT_V0):
            if apply_to.find("{urn:xmpp:message-retract:0}retract") is not None \
                    and apply_to.get("id"):
                return Retraction(apply_to.get("id", ""))
        return None

    @property
    def fallbacks(self) -> list[Fallback]:
        """The XEP-0428 fallback indications: which parts of the body only stand in for a
        feature the receiver may not support."""
        found = []
        body_length = len(self.body or "")
        for el in self.xml.iterfind(_FALLBACK):
            ranges: list[tuple[int, int]] = []
            whole = True
            for part in el.iterfind("{%s}body" % FALLBACK_NS):
                whole = False
                try:
                    start = int(part.get("start", "0"))
                    end = int(part.get("end", str(body_length)))
                except ValueError:
                    continue  # a malformed range is ignored, not trusted
                if 0 <= start <= end <= body_length:
                    ranges.append((start, end))
            found.append(Fallback(el.get("for"), tuple(ranges), whole))
        return found

    def body_without_fallback(self, *namespaces: str) -> str | None:
        """The body without the parts that are a fallback (XEP-0428) for `namespaces`
        (every fallback when none is given): what a client that supports those features
        shows. Offsets count code points (XEP-0426), as Python strings do.

        Example:
            ```python
            if msg.reply_to:                     # a reply: drop the quote of the original
                text = msg.body_without_fallback(REPLY_NS)
            ```
        """
        body = self.body
        if body is None:
            return None
        drop: list[tuple[int, int]] = []
        for fallback in self.fallbacks:
            if namespaces and fallback.for_ not in namespaces:
                continue
            if fallback.whole_body:
                return ""
            drop.extend(fallback.ranges)
        if not drop:
            return body
        keep, at = [], 0
        for start, end in sorted(drop):
            if start > at:
                keep.append(body[at:start])
            at = max(at, end)
        keep.append(body[at:])
        return "".join(keep)

    @property
    def unstyled(self) -> bool:
        """Whether the sender asked for the body not to be styled (XEP-0393 `<unstyled/>`)."""
        return self.xml.find(_UNSTYLED) is not None

    @property
    def styling(self) -> list[Span]:
        """The body parsed into XEP-0393 styled spans ([simplexmpp.styling.parse][]): the
        body without the fallback parts of replies (XEP-0461), as one plain span when the
        message carries `<unstyled/>`; an empty list without a body."""
        text = self.body_without_fallback(REPLY_NS)
        if not text:
            return []
        if self.unstyled:
            return [Span(text, 0, len(text), frozenset())]
        return parse_styling(text)


def _jid_or_none(value: str | None) -> JID | None:
    """A JID from a peer's payload attribute, or None when absent or not a valid JID (a
    malformed reference is ignored rather than raised from an accessor)."""
    try:
        return parse_jid(value)
    except JIDError:
        return None


@dataclass(frozen=True)
class Reactions:
    """XEP-0444 reactions of one sender to one message.

    Attributes:
        id: The message reacted to: in a room its stanza-id by the room (XEP-0359), else
            its id.
        emojis: The sender's reactions, now (empty: all removed), in order, without repeats.
    """

    id: str
    emojis: tuple[str, ...]


@dataclass(frozen=True)
class Reply:
    """XEP-0461: the message a message answers.

    Attributes:
        id: Its id: in a room its stanza-id by the room, else its id.
        to: Its author (a full JID: in a room, the occupant JID), when the sender named it.
    """

    id: str
    to: JID | None


@dataclass(frozen=True)
class Retraction:
    """XEP-0424: the sender takes back an earlier message.

    Attributes:
        id: The retracted message: in a room its stanza-id by the room, else its
            origin-id (which simplexmpp makes equal to the id).
        moderated_by: For a moderator's retraction in a room (XEP-0425), who did it.
        reason: The moderator's reason, if given.
    """

    id: str
    moderated_by: JID | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Fallback:
    """XEP-0428: a part of the body that only stands in for a feature.

    Attributes:
        for_: The namespace of the feature (`for` attribute), or None.
        ranges: `(start, end)` code-point offsets into the body.
        whole_body: True when the whole body is the fallback (no ranges given).
    """

    for_: str | None
    ranges: tuple[tuple[int, int], ...]
    whole_body: bool


class Presence(Stanza):
    """A `<presence/>` stanza (RFC 6121 §4). No `type` means available."""

    __slots__ = ()
    TAG = _NS + "presence"

    def __init__(self, xml: ET.Element | None = None, *, to: JID | str | None = None,
                 type: str | None = None, show: str | None = None, status: str | None = None,
                 priority: int | None = None, id: str | None = None,
                 from_: JID | str | None = None) -> None:
        super().__init__(xml, to=to, type=type, id=id, from_=from_)
        if show is not None:
            self.show = show
        if status is not None:
            self.status = status
        if priority is not None:
            self.priority = priority

    @property
    def available(self) -> bool:
        return self.xml.get("type") is None

    @property
    def show(self) -> str | None:
        """`away`, `chat`, `dnd`, `xa` or None (RFC 6121 §4.7.2.1)."""
        return self._child_text("show")

    @show.setter
    def show(self, value: str | None) -> None:
        if value is not None and value not in ("away", "chat", "dnd", "xa"):
            raise InvalidStanzaError(f"presence show must be away, chat, dnd or xa, not {value!r}")
        self._set_child_text("show", value)

    @property
    def status(self) -> str | None:
        return self._child_text("status")

    @status.setter
    def status(self, value: str | None) -> None:
        self._set_child_text("status", value)

    @property
    def priority(self) -> int:
        """-128..127; 0 when absent or unreadable (RFC 6121 §4.7.2.3)."""
        text = self._child_text("priority")
        try:
            return max(-128, min(127, int(text))) if text else 0
        except ValueError:
            return 0

    @priority.setter
    def priority(self, value: int | None) -> None:
        if value is not None and not -128 <= int(value) <= 127:
            raise InvalidStanzaError(f"presence priority must be in -128..127, not {value}")
        self._set_child_text("priority", None if value is None else str(int(value)))


class Iq(Stanza):
    """An `<iq/>` stanza (RFC 6120 §8.2.3): `get`/`set` requests, `result`/`error`."""

    __slots__ = ()
    TAG = _NS + "iq"

    def __init__(self, xml: ET.Element | None = None, *, to: JID | str | None = None,
                 type: str | None = None, payload: ET.Element | None = None,
                 id: str | None = None, from_: JID | str | None = None) -> None:
        super().__init__(xml, to=to, type=type, id=id, from_=from_)
        if payload is not None:
            self.xml.append(payload)

    @classmethod
    def get(cls, to: JID | str | None, payload: ET.Element) -> Iq:
        """A `get` request carrying `payload`, with a fresh id."""
        return cls(to=to, type="get", payload=payload, id=new_id())

    @classmethod
    def set(cls, to: JID | str | None, payload: ET.Element) -> Iq:
        """A `set` request carrying `payload`, with a fresh id."""
        return cls(to=to, type="set", payload=payload, id=new_id())

    @property
    def payload(self) -> ET.Element | None:
        """The first child element that is not `<error/>`, or None."""
        for child in self.xml:
            if child.tag != _ERROR_TAG:
                return child
        return None

    def result(self, payload: ET.Element | None = None) -> Iq:
        """The `result` reply to this request."""
        reply = self.reply("result")
        if payload is not None:
            reply.xml.append(payload)
        return reply

    def error_reply(self, condition: str, type: str = "cancel", text: str | None = None) -> Iq:
        """The `error` reply to this request (RFC 6120 §8.3.1)."""
        reply = self.reply("error")
        reply.xml.append(error_element(condition, type, text))
        return reply


_WRAPPERS: dict[str, type[Stanza]] = {cls.TAG: cls for cls in (Message, Presence, Iq)}


def wrap(element: ET.Element) -> Stanza | None:
    """The stanza wrapper for a received top-level element, or None if it is not a stanza."""
    cls = _WRAPPERS.get(element.tag)
    return None if cls is None else cls(element)


def error_element(condition: str, type: str = "cancel", text: str | None = None) -> ET.Element:
    """An `<error/>` child (RFC 6120 §8.3.2)."""
    if condition not in STANZA_ERROR_CONDITIONS:
        raise ValueError(f"{condition!r} is not a stanza error condition of RFC 6120 §8.3.3")
    error = ET.Element(_ERROR_TAG, type=type)
    ET.SubElement(error, "{%s}%s" % (STANZAS_NS, condition))
    if text:
        ET.SubElement(error, "{%s}text" % STANZAS_NS).text = text
    return error


def parse_error(error: ET.Element | None) -> tuple[str, str, str | None, str | None]:
    """`(condition, type, text, by)` of an `<error/>` element; tolerant of sloppy peers."""
    if error is None:
        return "undefined-condition", "cancel", None, None
    condition = "undefined-condition"
    text = None
    prefix = "{%s}" % STANZAS_NS
    for child in error:
        if child.tag == prefix + "text":
            text = child.text
        elif child.tag.startswith(prefix) and condition == "undefined-condition":
            condition = child.tag[len(prefix):]
    return condition, error.get("type") or "cancel", text, error.get("by")
