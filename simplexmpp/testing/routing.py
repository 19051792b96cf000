"""How the FakeServer routes stanzas between its accounts: RFC 6120 §8 and §10 (IQ, message and
presence routing, errors for unknown targets), RFC 6121 §2-§4 and §8 (roster, subscriptions,
presence broadcast, delivery to resources), in a base class of
[`FakeServer`][simplexmpp.testing.FakeServer]. Called on the sender's connection thread; the
server lock is re-entrant and held while the shared state changes."""

from __future__ import annotations

import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import JIDError
from ..jid import JID
from ..roster import ROSTER_NS, RosterItem
from ..stanza import Iq, Stanza, error_element, new_id, wrap
from ..xml import CLIENT_NS

if TYPE_CHECKING:
    from .session import Session

PING_NS = "urn:xmpp:ping"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
_IQ = "{%s}iq" % CLIENT_NS
_MESSAGE = "{%s}message" % CLIENT_NS
_PRESENCE = "{%s}presence" % CLIENT_NS
_ROSTER_QUERY = "{%s}query" % ROSTER_NS
_ROSTER_ITEM = "{%s}item" % ROSTER_NS
_SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))


@dataclass
class _Contact:
    """One roster item as the server stores it (RFC 6121 §2.1.2)."""

    name: str | None = None
    groups: tuple[str, ...] = ()
    subscription: str = "none"   # none, to, from, both
    ask: bool = False            # our subscription request is pending

    def has_to(self) -> bool:
        return self.subscription in ("to", "both")

    def has_from(self) -> bool:
        return self.subscription in ("from", "both")

    def set_to(self, on: bool) -> None:
        self.subscription = _subscription(on, self.has_from())

    def set_from(self, on: bool) -> None:
        self.subscription = _subscription(self.has_to(), on)


def _subscription(to: bool, from_: bool) -> str:
    return {(False, False): "none", (True, False): "to", (False, True): "from",
            (True, True): "both"}[(to, from_)]


class Router:
    """The routing rules of [`FakeServer`][simplexmpp.testing.FakeServer] (its base class)."""

    domain: str
    disco_features: set[str]
    _lock: threading.RLock
    _changed: threading.Condition
    _users: dict[str, tuple[str, bytes]]
    _rosters: dict[str, dict[JID, _Contact]]
    _sessions: dict[JID, Session]
    _connections: set[Session]
    _received: list[Stanza]
    _delivered: list[tuple[JID, Stanza]]

    def _run_script(self, session: Session, iq: Iq) -> bool:
        raise NotImplementedError   # FakeServer's scripted replies

    # -- accounts ------------------------------------------------------------------------------
    def _user_key(self, name: str) -> str | None:
        """The normalised localpart of an existing account, or None."""
        try:
            local = JID(local=name, domain=self.domain).local
        except JIDError:
            return None
        with self._lock:
            return local if local in self._users else None

    def _credentials(self, user: str) -> tuple[str, bytes]:
        with self._lock:
            return self._users[user]

    def _bare(self, user: str) -> JID:
        return JID(local=user, domain=self.domain)

    def _is_domain(self, text: str) -> bool:
        try:
            return JID(text) == self.domain
        except JIDError:
            return False

    def _existing(self, user: str) -> str:
        name = JID(user).local if "@" in user else user
        key = self._user_key(name or "")
        if key is None:
            raise KeyError(f"no account {user!r} on this FakeServer")
        return key

    @staticmethod
    def _roster_item(jid: JID, contact: _Contact) -> RosterItem:
        return RosterItem(jid=jid, name=contact.name, groups=frozenset(contact.groups),
                          subscription=contact.subscription, ask=contact.ask)

    @staticmethod
    def _item_element(jid: JID, contact: _Contact | None) -> ET.Element:
        item = ET.Element(_ROSTER_ITEM, jid=str(jid))
        if contact is None:
            item.set("subscription", "remove")
            return item
        item.set("subscription", contact.subscription)
        if contact.name:
            item.set("name", contact.name)
        if contact.ask:
            item.set("ask", "subscribe")
        for group in contact.groups:
            ET.SubElement(item, "{%s}group" % ROSTER_NS).text = group
        return item

    def _push(self, user: str, jid: JID) -> None:
        """RFC 6121 §2.1.6: a roster push of one item to every session of `user`."""
        contact = self._rosters[user].get(jid)
        for session in self._sessions_of(user):
            query = ET.Element(_ROSTER_QUERY)
            query.append(self._item_element(jid, contact))
            assert session.jid is not None
            push = Iq(type="set", id=new_id(), to=session.jid, payload=query)
            self._deliver(session, push.xml)

    # -- routing (connection threads) ----------------------------------------------------------
    def _bind(self, session: Session, user: str, wanted: str | None) -> JID:
        bare = self._bare(user)
        with self._changed:
            jid = bare.with_resource(wanted) if wanted else \
                bare.with_resource("fake-" + secrets.token_hex(4))
            # RFC 6120 §7.7.2.2: a resource already in use gets a different one here (the
            # server's choice among the allowed policies; the older session is kept).
            while jid in self._sessions:
                jid = bare.with_resource(f"{jid.resource}-{secrets.token_hex(2)}")
            session.jid = jid
            self._sessions[jid] = session
            self._changed.notify_all()
        return jid

    def _connection_ended(self, session: Session) -> None:
        with self._changed:
            self._connections.discard(session)
            jid = session.jid
            if jid is not None and self._sessions.get(jid) is session:
                del self._sessions[jid]
                if session.available:
                    # RFC 6121 §4.6: the server sends unavailable presence on the user's behalf.
                    unavailable = ET.Element(_PRESENCE, {"from": str(jid), "type": "unavailable"})
                    session.available = False
                    session.presence = None
                    self._broadcast(session, unavailable)
            self._changed.notify_all()

    def _sessions_of(self, user: str) -> list[Session]:
        prefix = self._bare(user)
        return [s for jid, s in self._sessions.items() if jid.bare == prefix]

    def _deliver(self, session: Session, element: ET.Element) -> None:
        """Send to one session and log it (server lock held or not: it is re-entrant)."""
        with self._changed:
            assert session.jid is not None
            self._delivered.append((session.jid, wrap(element) or Iq(element)))
            session.deliver(element)
            self._changed.notify_all()

    def _bounce(self, session: Session, el: ET.Element, condition: str,
                text: str | None = None) -> None:
        """An error reply to a stanza (RFC 6120 §8.3.1); never an error for an error."""
        if el.get("type") == "error" or (el.tag == _IQ and el.get("type") in ("result",)):
            return
        reply = ET.Element(el.tag, type="error")
        if el.get("id") is not None:
            reply.set("id", el.get("id", ""))
        if el.get("to"):
            reply.set("from", el.get("to", ""))
        assert session.jid is not None
        reply.set("to", str(session.jid))
        reply.append(error_element(condition, "cancel", text))
        self._deliver(session, reply)

    def _recipients(self, user: str) -> list[Session]:
        """Sessions that get a stanza sent to `user`'s bare JID (RFC 6121 §8.5.2.1.1): the
        available ones of highest non-negative priority. A departure from the RFC for
        convenience in tests: an account that is connected but has sent no presence gets it
        on all its sessions rather than not at all."""
        sessions = self._sessions_of(user)
        available = [s for s in sessions if s.available and s.priority >= 0]
        if available:
            top = max(s.priority for s in available)
            return [s for s in available if s.priority == top]
        return [s for s in sessions if not s.available]

    def _route(self, session: Session, el: ET.Element) -> None:
        assert session.jid is not None
        # RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
        el.set("from", str(session.jid))
        stanza = wrap(el)
        assert stanza is not None
        with self._changed:
            self._received.append(stanza)
            self._changed.notify_all()
        target: JID | None = None
        to_text = el.get("to")
        if to_text:
            try:
                target = JID(to_text)
            except JIDError:
                with self._lock:
                    if el.tag != _PRESENCE:
                        self._bounce(session, el, "jid-malformed")
                return
            el.set("to", str(target))
        if el.tag == _IQ:
            self._route_iq(session, Iq(el), target)
        else:
            with self._lock:
                if el.tag == _MESSAGE:
                    self._route_message(session, el, target)
                else:
                    self._route_presence(session, el, target)

    # IQ ---------------------------------------------------------------------------------------
    def _route_iq(self, session: Session, iq: Iq, target: JID | None) -> None:
        kind = iq.xml.get("type")
        if kind in ("get", "set") and self._run_script(session, iq):
            return
        assert session.jid is not None
        own = session.jid.bare
        with self._lock:
            if kind not in ("get", "set", "result", "error"):
                self._bounce(session, iq.xml, "bad-request")
                return
            request = kind in ("get", "set")
            if target is None or target == own:
                if request:
                    self._account_iq(session, iq, own=True)
                return   # a reply to the server (a roster push): nothing to do
            if target.domain != self.domain:
                if request:
                    self._bounce(session, iq.xml, "remote-server-not-found",
                                 "this test server has no server-to-server links")
                return
            if target.local is None:
                if target.resource is None and request:
                    self._server_iq(session, iq)
                elif request:
                    self._bounce(session, iq.xml, "service-unavailable")
                return
            user = self._user_key(target.local)
            if user is None:
                if request:
                    self._bounce(session, iq.xml, "service-unavailable")
                return
            if target.resource is None:
                # RFC 6121 §8.5.2.1.3: an IQ to a bare JID is answered by the server.
                if request:
                    self._account_iq(session, iq, own=False)
                return
            recipient = self._sessions.get(target)
            if recipient is not None:
                self._deliver(recipient, iq.xml)
            elif request:
                self._bounce(session, iq.xml, "service-unavailable")

    def _account_iq(self, session: Session, iq: Iq, own: bool) -> None:
        payload = iq.payload
        tag = payload.tag if payload is not None else ""
        kind = iq.xml.get("type")
        if own and tag == _ROSTER_QUERY:
            if kind == "get":
                self._roster_get(session, iq)
            else:
                self._roster_set(session, iq)
        elif tag == "{%s}ping" % PING_NS and kind == "get":
            self._reply(session, iq, None)
        elif tag == "{%s}query" % DISCO_INFO_NS and kind == "get" and payload is not None \
                and payload.get("node") is None:
            query = ET.Element("{%s}query" % DISCO_INFO_NS)
            ET.SubElement(query, "{%s}identity" % DISCO_INFO_NS, category="account",
                          type="registered")
            ET.SubElement(query, "{%s}feature" % DISCO_INFO_NS, var=DISCO_INFO_NS)
            self._reply(session, iq, query)
        else:
            self._bounce(session, iq.xml, "service-unavailable")

    def _server_iq(self, session: Session, iq: Iq) -> None:
        payload = iq.payload
        tag = payload.tag if payload is not None else ""
        if iq.xml.get("type") != "get" or payload is None:
            self._bounce(session, iq.xml, "service-unavailable")
        elif tag == "{%s}ping" % PING_NS:
            self._reply(session, iq, None)
        elif tag == "{%s}query" % DISCO_INFO_NS and payload.get("node") is None:
            query = ET.Element("{%s}query" % DISCO_INFO_NS)
            ET.SubElement(query, "{%s}identity" % DISCO_INFO_NS, category="server", type="im",
                          name="simplexmpp FakeServer")
            for var in sorted(self.disco_features):
                ET.SubElement(query, "{%s}feature" % DISCO_INFO_NS, var=var)
            self._reply(session, iq, query)
        elif tag == "{%s}query" % DISCO_ITEMS_NS and payload.get("node") is None:
            self._reply(session, iq, ET.Element("{%s}query" % DISCO_ITEMS_NS))
        else:
            self._bounce(session, iq.xml, "service-unavailable")

    def _reply(self, session: Session, iq: Iq, payload: ET.Element | None) -> None:
        reply = iq.result(payload)
        if iq.xml.get("to"):
            reply.xml.set("from", iq.xml.get("to", ""))
        self._deliver(session, reply.xml)

    def _roster_get(self, session: Session, iq: Iq) -> None:
        assert session.user is not None
        query = ET.Element(_ROSTER_QUERY)
        for jid, contact in self._rosters[session.user].items():
            query.append(self._item_element(jid, contact))
        self._reply(session, iq, query)

    def _roster_set(self, session: Session, iq: Iq) -> None:
        assert session.user is not None and iq.payload is not None
        user = session.user
        items = iq.payload.findall(_ROSTER_ITEM)
        # RFC 6121 §2.3.3: exactly one item, with a valid JID.
        if len(items) != 1:
            self._bounce(session, iq.xml, "bad-request", "a roster set carries one item")
            return
        item = items[0]
        try:
            jid = JID(item.get("jid", "")).bare
        except JIDError:
            self._bounce(session, iq.xml, "bad-request", "the item's jid is not a JID")
            return
        if jid == self._bare(user):
            self._bounce(session, iq.xml, "not-allowed", "you cannot add yourself")
            return
        roster = self._rosters[user]
        if item.get("subscription") == "remove":
            contact = roster.get(jid)
            if contact is None:
                self._bounce(session, iq.xml, "item-not-found")
                return
            # RFC 6121 §2.5.2: removing an item cancels the subscriptions both ways.
            if contact.has_to() or contact.ask:
                self._cancel_subscription(user, jid, outbound=True)
            if contact.has_from():
                self._cancel_subscription(user, jid, outbound=False)
            del roster[jid]
            self._push(user, jid)
            self._reply(session, iq, None)
            return
        groups = tuple(sorted({(g.text or "").strip() for g in item.findall(
            "{%s}group" % ROSTER_NS) if (g.text or "").strip()}))
        contact = roster.setdefault(jid, _Contact())
        contact.name = item.get("name") or None
        contact.groups = groups
        # RFC 6121 §2.3.2: push to every interested resource, then answer the requester.
        self._push(user, jid)
        self._reply(session, iq, None)

    # Message ----------------------------------------------------------------------------------
    def _route_message(self, session: Session, el: ET.Element, target: JID | None) -> None:
        assert session.jid is not None
        kind = el.get("type") or "normal"
        if target is None:
            target = session.jid.bare   # RFC 6120 §10.3.1: no 'to' means the account itself
            el.set("to", str(target))
        if target.domain != self.domain:
            self._bounce(session, el, "remote-server-not-found",
                         "this test server has no server-to-server links")
            return
        if target.local is None:
            return   # messages to the server itself are ignored
        user = self._user_key(target.local)
        if user is None:
            # RFC 6121 §8.5.2.2.1 / §8.5.3.2.1: no such account.
            self._bounce(session, el, "service-unavailable")
            return
        if target.resource is not None:
            recipient = self._sessions.get(target)
            if recipient is not None:
                self._deliver(recipient, el)
                return
            # RFC 6121 §8.5.3.2.1: for a resource that is not connected, chat and normal go
            # to the bare JID, groupchat bounces, headline and error are dropped.
            if kind == "groupchat":
                self._bounce(session, el, "service-unavailable")
                return
            if kind not in ("chat", "normal"):
                return
        if kind == "groupchat":
            self._bounce(session, el, "service-unavailable")
            return
        if kind == "error":
            return
        recipients = self._recipients(user)
        if kind == "headline":
            recipients = [s for s in self._sessions_of(user)
                          if not s.available or s.priority >= 0]
        if not recipients:
            if kind in ("chat", "normal"):
                # No offline storage here: RFC 6121 §8.5.2.2.1 allows service-unavailable.
                self._bounce(session, el, "service-unavailable",
                             "the recipient is offline (this test server stores nothing)")
            return
        for recipient in recipients:
            self._deliver(recipient, el)

    # Presence ---------------------------------------------------------------------------------
    def _route_presence(self, session: Session, el: ET.Element, target: JID | None) -> None:
        assert session.jid is not None and session.user is not None
        kind = el.get("type")
        if target is None:
            if kind is None:
                first = not session.available
                session.available = True
                session.presence = el
                session.priority = _priority(el)
                self._broadcast(session, el)
                if first:
                    self._probe_contacts(session)
            elif kind == "unavailable":
                session.available = False
                session.presence = None
                self._broadcast(session, el)
            return
        if kind in _SUBSCRIPTION_TYPES:
            # RFC 6121 §3.1.2: subscription stanzas carry the sender's bare JID.
            el.set("from", str(session.jid.bare))
            self._subscription(session.user, target.bare, kind, el)
            return
        if kind == "probe":
            user = self._local_user(target)
            if user is not None:
                contact = self._rosters[user].get(session.jid.bare)
                if contact is not None and contact.has_from():
                    self._send_presences_of(user, [session])
            return
        # Directed presence (RFC 6121 §4.6): to the session, or the available resources.
        if target.domain != self.domain or target.local is None:
            return
        user = self._user_key(target.local)
        if user is None:
            return
        if target.resource is not None:
            recipient = self._sessions.get(target)
            recipients = [recipient] if recipient is not None else []
        else:
            recipients = [s for s in self._sessions_of(user) if s.available] or \
                self._sessions_of(user)
        for recipient in recipients:
            self._deliver(recipient, el)

    def _local_user(self, jid: JID) -> str | None:
        if jid.domain != self.domain or jid.local is None:
            return None
        return self._user_key(jid.local)

    def _broadcast(self, session: Session, el: ET.Element) -> None:
        """RFC 6121 §4.2.2, §4.4.2, §4.5.2: to contacts with a subscription `from` or
        `both` (their available resources) and to the user's own available resources."""
        assert session.user is not None and session.jid is not None
        recipients = [s for s in self._sessions_of(session.user)
                      if s.available or s is session]
        for jid, contact in self._rosters[session.user].items():
            contact_user = self._local_user(jid)
            if contact.has_from() and contact_user is not None:
                recipients += [s for s in self._sessions_of(contact_user) if s.available]
        for recipient in recipients:
            if recipient is session and el.get("type") == "unavailable" and \
                    session.jid not in self._sessions:
                continue   # the connection is gone
            assert recipient.jid is not None
            copy = ET.Element(el.tag, el.attrib)
            copy.text = el.text
            copy.extend(list(el))
            copy.set("to", str(recipient.jid))
            self._deliver(recipient, copy)

    def _probe_contacts(self, session: Session) -> None:
        """RFC 6121 §4.2.2: after initial presence, the current presence of every contact the
        user is subscribed to (`to` or `both`)."""
        assert session.user is not None
        for jid, contact in self._rosters[session.user].items():
            contact_user = self._local_user(jid)
            if contact.has_to() and contact_user is not None:
                self._send_presences_of(contact_user, [session])

    def _send_presences_of(self, user: str, recipients: list[Session],
                           unavailable: bool = False) -> None:
        for source in self._sessions_of(user):
            if not source.available or source.presence is None:
                continue
            for recipient in recipients:
                if not recipient.available or recipient.jid is None:
                    continue
                if unavailable:
                    copy = ET.Element(_PRESENCE, {"type": "unavailable"})
                else:
                    copy = ET.Element(_PRESENCE, source.presence.attrib)
                    copy.text = source.presence.text
                    copy.extend(list(source.presence))
                copy.set("from", str(source.jid))
                copy.set("to", str(recipient.jid))
                self._deliver(recipient, copy)

    def _share_presence(self, owner: str, viewer: JID) -> None:
        """`viewer` may now see `owner`'s presence: send the current one."""
        viewer_user = self._local_user(viewer)
        if viewer_user is not None:
            self._send_presences_of(owner, self._sessions_of(viewer_user))

    def _subscription(self, user: str, contact_jid: JID, kind: str, el: ET.Element) -> None:
        """A simplified RFC 6121 §3 between local accounts (no pre-approval, nothing kept for
        offline accounts)."""
        user_jid = self._bare(user)
        roster = self._rosters[user]
        contact_user = self._local_user(contact_jid)
        contact_roster = self._rosters[contact_user] if contact_user is not None else None
        if kind == "subscribe":
            theirs = contact_roster.get(user_jid) if contact_roster is not None else None
            if theirs is not None and theirs.has_from():
                # §3.1.3: already approved: the contact's server answers on its behalf.
                item = roster.setdefault(contact_jid, _Contact())
                item.set_to(True)
                item.ask = False
                self._push(user, contact_jid)
                answer = ET.Element(_PRESENCE, {"from": str(contact_jid), "type": "subscribed"})
                for session in self._recipients(user):
                    answer.set("to", str(session.jid))
                    self._deliver(session, answer)
                self._send_presences_of(contact_user or "", self._sessions_of(user))
                return
            item = roster.setdefault(contact_jid, _Contact())
            if not item.has_to():
                item.ask = True
                self._push(user, contact_jid)
            if contact_user is not None:
                for session in self._recipients(contact_user):
                    self._deliver(session, el)
            return
        if kind == "subscribed":
            # The user approves the contact's request to see the user's presence (§3.1.5).
            theirs = contact_roster.get(user_jid) if contact_roster is not None else None
            if contact_user is None or theirs is None or not theirs.ask:
                return   # no pending request: pre-approval is not supported here
            item = roster.setdefault(contact_jid, _Contact())
            item.set_from(True)
            self._push(user, contact_jid)
            theirs.set_to(True)
            theirs.ask = False
            self._push(contact_user, user_jid)
            for session in self._recipients(contact_user):
                self._deliver(session, el)
            self._send_presences_of(user, self._sessions_of(contact_user))
            return
        # unsubscribe (§3.3): the user stops seeing the contact; unsubscribed (§3.2): the
        # user stops the contact from seeing the user.
        self._cancel_subscription(user, contact_jid, outbound=kind == "unsubscribe", stanza=el)

    def _cancel_subscription(self, user: str, contact_jid: JID, outbound: bool,
                             stanza: ET.Element | None = None) -> None:
        user_jid = self._bare(user)
        item = self._rosters[user].get(contact_jid)
        if item is not None:
            if outbound:
                item.set_to(False)
                item.ask = False
            else:
                item.set_from(False)
            self._push(user, contact_jid)
        contact_user = self._local_user(contact_jid)
        if contact_user is None:
            return
        theirs = self._rosters[contact_user].get(user_jid)
        if theirs is not None:
            if outbound:
                theirs.set_from(False)
            else:
                theirs.set_to(False)
                theirs.ask = False
            self._push(contact_user, user_jid)
        if stanza is None:
            stanza = ET.Element(_PRESENCE, {
                "from": str(user_jid), "type": "unsubscribe" if outbound else "unsubscribed"})
        for session in self._recipients(contact_user):
            self._deliver(session, stanza)
        if outbound:
            # §3.3.3: the user no longer sees the contact: unavailable from each resource.
            self._send_presences_of(contact_user, self._sessions_of(user), unavailable=True)
        else:
            self._send_presences_of(user, self._sessions_of(contact_user), unavailable=True)


def _priority(el: ET.Element) -> int:
    text = el.findtext("{%s}priority" % CLIENT_NS)
    try:
        return max(-128, min(127, int(text))) if text else 0
    except ValueError:
        return 0
