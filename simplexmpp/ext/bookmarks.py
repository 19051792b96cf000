"""Bookmarks of group chat rooms: XEP-0402 (PEP native bookmarks), with XEP-0048 bookmarks in
XEP-0049 private XML storage where the server does not offer XEP-0402.

```python
client.bookmarks.add("lobby@conference.example.org", name="Lobby", nick="ali",
                     autojoin=True)
[b.jid for b in client.bookmarks.list()]
client.bookmarks.remove("lobby@conference.example.org")
client.muc.autojoin_bookmarks = True    # enter the autojoin rooms at each connect()
```

Which store: XEP-0479 (Advanced Group Chat) asks clients to use XEP-0402 only where the server
says it keeps it in step with the legacy store, by advertising `urn:xmpp:bookmarks:1#compat` on
the account (XEP-0402 §3.1); otherwise the XEP-0048 list in private storage is used, which
every older client reads. `client.bookmarks.backend` is `"pep"` or `"private"`, found by one
disco#info query on our account, once per session; set `client.bookmarks.prefer` to
`"pep"` or `"private"` to force one.

XEP-0402 keeps one PEP item per room (item id = room JID), published with the
publish-options §3.3 requires (persistent, private: `whitelist` access, never sent as "last
item" to others). XEP-0048 keeps the whole list in one private storage element, so
`add`/`remove` read it, change it and write it back: elements we do not understand (URL
bookmarks, other clients' extensions) are kept, but two clients writing at the same moment
may lose one's change (XEP-0048 has no compare-and-set).
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IqError
from ..extension import Extension
from ..jid import JID
from ..stanza import Iq
from .pubsub import PubSub, PubSubError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Bookmarks", "Bookmark", "BOOKMARKS_NS", "BOOKMARKS_COMPAT", "LEGACY_NS",
           "PRIVATE_NS", "PrivateStorage"]

log = logging.getLogger(__name__)

BOOKMARKS_NS = "urn:xmpp:bookmarks:1"
"""XEP-0402: the PEP node and the namespace of `<conference/>`."""
BOOKMARKS_COMPAT = BOOKMARKS_NS + "#compat"
"""XEP-0402 §3.1: the server keeps XEP-0402 and XEP-0048 bookmarks in step."""
LEGACY_NS = "storage:bookmarks"
"""XEP-0048: the `<storage/>` element kept in private XML storage."""
PRIVATE_NS = "jabber:iq:private"
"""XEP-0049 private XML storage."""
_CONFERENCE = "{%s}conference" % BOOKMARKS_NS
_LEGACY_STORAGE = "{%s}storage" % LEGACY_NS
_LEGACY_CONFERENCE = "{%s}conference" % LEGACY_NS
_PRIVATE_QUERY = "{%s}query" % PRIVATE_NS
# XEP-0402 §3.3: the node must keep its items, only for us, and never push the last one.
_PUBLISH_OPTIONS: dict[str, str | bool | int | list[str]] = {
    "pubsub#persist_items": True,
    "pubsub#max_items": "max",
    "pubsub#send_last_published_item": "never",
    "pubsub#access_model": "whitelist",
}
_BACKENDS = (None, "pep", "private")


def _true(value: str | None) -> bool:
    return value in ("1", "true")  # xs:boolean


@dataclass
class Bookmark:
    """A bookmarked room: its `jid`, a display `name`, whether to enter it at login
    (`autojoin`), the `nick` and `password` to enter with, and `extensions`: elements
    other clients stored with it, kept as they are."""

    jid: JID
    name: str | None = None
    autojoin: bool = False
    nick: str | None = None
    password: str | None = None
    extensions: list[ET.Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jid = JID(self.jid)
        if self.jid.local is None or self.jid.resource is not None:
            raise ValueError(f"a bookmark is for a room (room@service): {self.jid}")

    # -- XEP-0402 ------------------------------------------------------------------------------
    @classmethod
    def from_conference(cls, jid: JID | str, conference: ET.Element) -> Bookmark:
        """A bookmark from an XEP-0402 `<conference/>` (the room is the item id)."""
        extensions = conference.find("{%s}extensions" % BOOKMARKS_NS)
        return cls(JID(jid), conference.get("name"), _true(conference.get("autojoin")),
                   conference.findtext("{%s}nick" % BOOKMARKS_NS) or None,
                   conference.findtext("{%s}password" % BOOKMARKS_NS),
                   list(extensions) if extensions is not None else [])

    def to_conference(self) -> ET.Element:
        """The XEP-0402 `<conference/>` payload of this bookmark."""
        conference = ET.Element(_CONFERENCE)
        if self.name:
            conference.set("name", self.name)
        if self.autojoin:
            conference.set("autojoin", "true")
        if self.nick:
            ET.SubElement(conference, "{%s}nick" % BOOKMARKS_NS).text = self.nick
        if self.password is not None:
            ET.SubElement(conference, "{%s}password" % BOOKMARKS_NS).text = self.password
        if self.extensions:
            ET.SubElement(conference, "{%s}extensions" % BOOKMARKS_NS).extend(self.extensions)
        return conference

    # -- XEP-0048 ------------------------------------------------------------------------------
    @classmethod
    def from_legacy(cls, conference: ET.Element) -> Bookmark:
        """A bookmark from an XEP-0048 `<conference jid=.../>`."""
        known = {"{%s}nick" % LEGACY_NS, "{%s}password" % LEGACY_NS}
        return cls(JID(conference.get("jid", "")), conference.get("name"),
                   _true(conference.get("autojoin")),
                   conference.findtext("{%s}nick" % LEGACY_NS) or None,
                   conference.findtext("{%s}password" % LEGACY_NS),
                   [child for child in conference if child.tag not in known])

    def to_legacy(self) -> ET.Element:
        """The XEP-0048 `<conference/>` element of this bookmark."""
        conference = ET.Element(_LEGACY_CONFERENCE, jid=str(self.jid))
        if self.name:
            conference.set("name", self.name)
        if self.autojoin:
            conference.set("autojoin", "true")
        if self.nick:
            ET.SubElement(conference, "{%s}nick" % LEGACY_NS).text = self.nick
        if self.password is not None:
            ET.SubElement(conference, "{%s}password" % LEGACY_NS).text = self.password
        conference.extend(self.extensions)
        return conference


class PrivateStorage:
    """XEP-0049 private XML storage of our own account (`client.bookmarks.private`): one
    element per namespace, readable and writable only by us."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, tag: str, timeout: float | None = None) -> ET.Element:
        """The stored element `tag` (Clark notation, `{storage:bookmarks}storage`); an
        empty one when nothing is stored."""
        query = ET.Element(_PRIVATE_QUERY)
        ET.SubElement(query, tag)
        reply = self._client.iq(Iq.get(None, query), timeout)
        payload = reply.payload
        found = payload.find(tag) if payload is not None else None
        return found if found is not None else ET.Element(tag)

    def set(self, element: ET.Element, timeout: float | None = None) -> None:
        """Store `element`, replacing what was stored under its tag."""
        if "}" not in element.tag or element.tag.startswith("{jabber:"):
            # XEP-0049 §3: the stored element must have a namespace of its own, not jabber:*
            raise ValueError(f"private storage needs a namespaced element, not {element.tag}")
        query = ET.Element(_PRIVATE_QUERY)
        query.append(element)
        self._client.iq(Iq.set(None, query), timeout)


class Bookmarks(Extension):
    """`client.bookmarks`: list, add and remove room bookmarks (XEP-0402, or XEP-0048 in
    XEP-0049 private storage)."""

    name = "bookmarks"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        pubsub = getattr(client, "pubsub", None)
        self._pubsub: PubSub = pubsub if isinstance(pubsub, PubSub) else PubSub(client)
        self.private = PrivateStorage(client)
        """XEP-0049 private XML storage of our account."""
        self.prefer: str | None = None
        """None: XEP-0402 when the server advertises `#compat`, else private storage;
        `"pep"` or `"private"`: that store, whatever the server says."""
        self._lock = threading.Lock()
        self._found: tuple[int, str] | None = None  # (session number, backend)

    @property
    def backend(self) -> str:
        """The store in use: `"pep"` (XEP-0402) or `"private"` (XEP-0048 in XEP-0049)."""
        return self._backend(None)

    def _backend(self, timeout: float | None) -> str:
        if self.prefer not in _BACKENDS:
            raise ValueError(f"bookmarks.prefer must be None, 'pep' or 'private', "
                             f"not {self.prefer!r}")
        if self.prefer is not None:
            return self.prefer
        session = self._client.session
        number = session.number if session is not None else 0
        with self._lock:
            if self._found is not None and self._found[0] == number:
                return self._found[1]
        disco = getattr(self._client, "disco", None)
        backend = "private"
        if disco is not None:
            try:
                info = disco.info(self._client.account.bare, timeout=timeout)
            except IqError as exc:
                log.info("cannot ask our account which bookmark store it has (%s); "
                         "using private storage", exc.condition)
            else:
                if BOOKMARKS_COMPAT in info.features:
                    backend = "pep"
        with self._lock:
            self._found = (number, backend)
        return backend

    def list(self, timeout: float | None = None) -> list[Bookmark]:
        """Every bookmarked room."""
        if self._backend(timeout) == "pep":
            try:
                items = self._pubsub.items(None, BOOKMARKS_NS, timeout=timeout)
            except PubSubError as exc:
                if exc.condition == "item-not-found":  # no node yet: no bookmarks
                    return []
                raise
            found = []
            for item in items:
                if item.payload is None or item.payload.tag != _CONFERENCE or not item.id:
                    continue
                try:
                    found.append(Bookmark.from_conference(item.id, item.payload))
                except ValueError as exc:
                    log.info("skipping a bookmark with a bad room address: %s", exc)
            return found
        found = []
        for conference in self.private.get(_LEGACY_STORAGE, timeout).iterfind(
                _LEGACY_CONFERENCE):
            try:
                found.append(Bookmark.from_legacy(conference))
            except ValueError as exc:
                log.info("skipping a bookmark with a bad room address: %s", exc)
        return found

    def get(self, room: JID | str, timeout: float | None = None) -> Bookmark | None:
        """The bookmark of `room`, or None."""
        jid = JID(room).bare
        return next((b for b in self.list(timeout) if b.jid == jid), None)

    def add(self, room: JID | str | Bookmark, name: str | None = None, *,
            nick: str | None = None, password: str | None = None, autojoin: bool = False,
            timeout: float | None = None) -> Bookmark:
        """Bookmark `room` (or store a ready [Bookmark][simplexmpp.ext.bookmarks.Bookmark]),
        replacing an existing bookmark of the same room; returns what was stored. A
        bookmark replaced this way keeps the `extensions` other clients stored in it."""
        if isinstance(room, Bookmark):
            bookmark = room
        else:
            bookmark = Bookmark(JID(room), name, autojoin, nick, password)
        if self._backend(timeout) == "pep":
            if not bookmark.extensions:
                old = self._pep_get(bookmark.jid, timeout)
                if old is not None:
                    bookmark.extensions = old.extensions
            self._pubsub.publish(None, BOOKMARKS_NS, bookmark.to_conference(),
                                 str(bookmark.jid), _PUBLISH_OPTIONS, timeout)
            return bookmark
        storage = self.private.get(_LEGACY_STORAGE, timeout)
        for conference in list(storage.iterfind(_LEGACY_CONFERENCE)):
            if _same_room(conference, bookmark.jid):
                if not bookmark.extensions:
                    bookmark.extensions = Bookmark.from_legacy(conference).extensions
                storage.remove(conference)
        storage.append(bookmark.to_legacy())
        self.private.set(storage, timeout)
        return bookmark

    def remove(self, room: JID | str, timeout: float | None = None) -> bool:
        """Remove the bookmark of `room`; False when there was none."""
        jid = JID(room).bare
        if self._backend(timeout) == "pep":
            if self._pep_get(jid, timeout) is None:
                return False
            self._pubsub.retract(None, BOOKMARKS_NS, str(jid), True, timeout)
            return True
        storage = self.private.get(_LEGACY_STORAGE, timeout)
        matching = [c for c in storage.iterfind(_LEGACY_CONFERENCE) if _same_room(c, jid)]
        if not matching:
            return False
        for conference in matching:
            storage.remove(conference)
        self.private.set(storage, timeout)
        return True

    def _pep_get(self, jid: JID, timeout: float | None) -> Bookmark | None:
        try:
            items = self._pubsub.items(None, BOOKMARKS_NS, item_ids=[str(jid)],
                                       timeout=timeout)
        except PubSubError as exc:
            if exc.condition == "item-not-found":
                return None
            raise
        for item in items:
            if item.id == str(jid) and item.payload is not None and \
                    item.payload.tag == _CONFERENCE:
                return Bookmark.from_conference(jid, item.payload)
        return None


def _same_room(conference: ET.Element, jid: JID) -> bool:
    try:
        return JID(conference.get("jid", "")).bare == jid
    except ValueError:
        return False
