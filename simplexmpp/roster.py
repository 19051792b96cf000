"""Roster (RFC 6121 §2) and presence book-keeping (RFC 6121 §4), as plain data (sans-IO)."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import JIDError
from .jid import JID
from .stanza import Presence

__all__ = ["ROSTER_NS", "RosterItem", "Roster", "PresenceBook", "parse_item", "item_element"]

log = logging.getLogger(__name__)

ROSTER_NS = "jabber:iq:roster"
_ITEM = "{%s}item" % ROSTER_NS
_GROUP = "{%s}group" % ROSTER_NS
SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True)
class RosterItem:
    """One contact: `subscription` is none/to/from/both; `ask` is True while our
    subscription request is pending (RFC 6121 §2.1.2.2)."""

    jid: JID
    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    subscription: str = "none"
    ask: bool = False
    approved: bool = False


def parse_item(element: ET.Element) -> tuple[RosterItem, bool]:
    """`(item, removed)` from an `<item/>`; raises JIDError on a bad jid attribute."""
    jid = JID(element.get("jid", ""))
    subscription = element.get("subscription", "none")
    removed = subscription == "remove"
    if subscription not in SUBSCRIPTIONS:
        subscription = "none"
    groups = frozenset((g.text or "").strip() for g in element.findall(_GROUP)
                       if (g.text or "").strip())
    return RosterItem(jid=jid.bare, name=element.get("name") or None, groups=groups,
                      subscription=subscription, ask=element.get("ask") == "subscribe",
                      approved=element.get("approved") in ("true", "1")), removed


def item_element(jid: JID, name: str | None = None, groups: tuple[str, ...] | frozenset[str] = (),
                 remove: bool = False) -> ET.Element:
    """A `<query><item/></query>` for a roster set (RFC 6121 §2.3, §2.5)."""
    query = ET.Element("{%s}query" % ROSTER_NS)
    item = ET.SubElement(query, _ITEM, jid=str(jid.bare))
    if remove:
        item.set("subscription", "remove")
        return query
    if name:
        item.set("name", name)
    for group in sorted(set(groups)):
        if not group.strip():
            raise ValueError("roster group names must not be empty (RFC 6121 §2.1.2.5)")
        ET.SubElement(item, _GROUP).text = group
    return query


class Roster(Mapping[JID, RosterItem]):
    """The contact list: a read-only mapping from bare JID to [`RosterItem`][simplexmpp.RosterItem],
    with the roster `version` (RFC 6121 §2.6) when the server supports versioning."""

    def __init__(self, items: Mapping[JID, RosterItem] | None = None,
                 version: str | None = None) -> None:
        self._items: dict[JID, RosterItem] = dict(items or {})
        self.version = version

    def __getitem__(self, jid: object) -> RosterItem:
        key = jid if isinstance(jid, JID) else JID(str(jid))
        return self._items[key.bare]

    def __contains__(self, jid: object) -> bool:
        try:
            key = jid if isinstance(jid, JID) else JID(str(jid))
        except JIDError:
            return False
        return key.bare in self._items

    def __iter__(self) -> Iterator[JID]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Roster {len(self)} contacts version={self.version!r}>"

    def copy(self) -> Roster:
        return Roster(self._items, self.version)

    # -- updates (used by the client) -------------------------------------------------------
    def _apply(self, item: RosterItem, removed: bool) -> None:
        if removed:
            self._items.pop(item.jid, None)
        else:
            self._items[item.jid] = item

    @classmethod
    def from_query(cls, query: ET.Element) -> Roster:
        """Build from the `<query/>` of a roster result; bad items are skipped."""
        roster = cls(version=query.get("ver"))
        for element in query.findall(_ITEM):
            try:
                item, removed = parse_item(element)
            except JIDError:
                continue
            if not removed:
                roster._items[item.jid] = item
        return roster

    def _repr_html_(self) -> str:
        from html import escape
        rows = "".join(
            "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
                escape(str(i.jid)), escape(i.name or ""), escape(", ".join(sorted(i.groups))),
                escape(i.subscription + (" (ask)" if i.ask else "")))
            for i in self._items.values())
        return ("<table><tr><th>JID</th><th>Name</th><th>Groups</th><th>Subscription</th></tr>"
                f"{rows}</table>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython: one contact per line."""
        if not self._items:
            printer.text("Roster (empty)")
            return
        printer.text("\n".join(
            f"{i.jid}" + (f" ({i.name})" if i.name else "") + f" [{i.subscription}]"
            + (f" {', '.join(sorted(i.groups))}" if i.groups else "")
            for i in self._items.values()))


class PresenceBook:
    """The latest available presence of every resource we heard from (thread-safe).

    Anyone may send us directed presence (RFC 6121 §4.6), from as many addresses as they
    like, so the book is bounded: past `limit` resources it forgets the entity heard from
    least recently (a contact that is online announces itself again on its next change)."""

    limit = 10_000
    """The most resources remembered, all entities together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_bare: dict[JID, dict[str, Presence]] = {}  # least recently updated first
        self._count = 0  # resources held, all entities together
        self._warned = False

    def __len__(self) -> int:
        return self._count

    def update(self, presence: Presence) -> bool:
        """Record an available/unavailable presence; True if it changed the book."""
        sender = presence.from_
        if sender is None:
            return False
        kind = presence.type
        with self._lock:
            bare = sender.bare
            resources = self._by_bare.pop(bare, None)
            if resources is None:
                resources = {}
            self._by_bare[bare] = resources  # (re)inserted last: the most recent
            key = sender.resource or ""
            if kind is None:
                if key not in resources:
                    self._count += 1
                    if self._count > self.limit:
                        self._forget_oldest(bare)
                resources[key] = presence
                return True
            if kind == "unavailable":
                if sender.resource is None:
                    self._count -= len(resources)
                    resources.clear()   # unavailable from the bare JID: every resource is gone
                elif resources.pop(key, None) is not None:
                    self._count -= 1
                if not resources:
                    self._by_bare.pop(bare, None)
                return True
            if not resources:
                self._by_bare.pop(bare, None)
        return False

    def _forget_oldest(self, keep: JID) -> None:
        """Under the lock: drop what was heard least recently until within `limit`."""
        if not self._warned:
            self._warned = True
            log.warning("more than %d resources sent presence; forgetting the oldest",
                        self.limit)
        by_bare = self._by_bare
        while self._count > self.limit:
            oldest = next(iter(by_bare))
            resources = by_bare[oldest]
            if oldest == keep:  # only the newest entity is left: trim its resources
                if not resources:
                    break
                resources.pop(next(iter(resources)))
                self._count -= 1
                continue
            del by_bare[oldest]
            self._count -= len(resources)

    def of(self, jid: JID) -> dict[str, Presence]:
        with self._lock:
            return dict(self._by_bare.get(jid.bare, {}))

    def clear(self) -> None:
        with self._lock:
            self._by_bare.clear()
            self._count = 0
