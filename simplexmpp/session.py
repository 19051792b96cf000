"""The session layer: what one account's stream does with received stanzas and with time (sans-IO).

[SessionCore][simplexmpp.session.SessionCore] owns the rules that sit between the stream
(bytes <-> stanzas, [simplexmpp.stream][]) and the client's threads:

* the table of IQ requests waiting for a reply, and the RFC 6120 §8.1.2.1 check that a reply
  comes from the entity the request went to;
* the address check every received stanza passes (RFC 7622; RFC 6120 §8.3.3.8);
* the XEP-0359 window of messages seen, which drops repeats;
* IQ routing: a reply to its request, a roster push (RFC 6121 §2.1.6) applied to the cached
  roster, a request to the handlers, and the "own account" rule
  ([from_own_account][simplexmpp.session.from_own_account]) that pushes, carbons and archives
  share;
* the count of sessions: which is new, which resumed, which the first since `connect()`
  (the [Session][simplexmpp.extension.Session] that extensions' hooks get);
* the clock of the stream: XEP-0198 acknowledgements (`<a/>` bundled for a moment,
  `<r/>` one at a time), the XEP-0199 keepalive and the slow-stanza guard, as
  [next_deadline][simplexmpp.session.SessionCore.next_deadline] /
  [handle_timer][simplexmpp.session.SessionCore.handle_timer].

Like the stream it imports no socket, ssl or threading: it is tested by feeding it stanzas and
times (tests/unit/test_session.py). It does no locking either; the client calls it under its
lock wherever another thread shares the data (the pending table, the roster), and it never
calls back into user code: what it decides comes back as a return value.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Generic, NamedTuple, TypeVar

from . import errors
from .errors import StreamError
from .extension import Session
from .jid import JID
from .roster import ROSTER_NS, Roster, RosterItem, parse_item
from .stanza import Iq, error_element, new_id
from .stream import ClientStream
from .xml import CLIENT_NS

__all__ = ["SessionCore", "IqRoute", "from_own_account", "PING_NS", "SID_NS"]

log = logging.getLogger(__name__)

PING_NS = "urn:xmpp:ping"
SID_NS = "urn:xmpp:sid:0"
_IQ = "{%s}iq" % CLIENT_NS
_STANZA_ID = "{%s}stanza-id" % SID_NS
_ROSTER_QUERY = "{%s}query" % ROSTER_NS
_ROSTER_ITEM = "{%s}item" % ROSTER_NS

W = TypeVar("W")
_NO_GUARD: AbstractContextManager[object] = nullcontext()


def from_own_account(sender: str | None, account: JID) -> bool:
    """Whether a stanza whose `from` is `sender` comes from our own account, as the server
    speaks for it: no `from` at all, or our bare JID (normalised, so case does not matter) --
    not another resource of ours, nor our domain.

    The one rule behind roster pushes (RFC 6121 §2.1.6), carbons (XEP-0280 §11), block-list
    pushes (XEP-0191) and results from our own archive (XEP-0313 §4.2).

    Example:
        ```python
        forged = not from_own_account(stanza.xml.get("from"), client.account)
        ```
    """
    if sender is None:
        return True
    bare = account.bare
    if sender == str(bare):
        return True
    try:
        return JID(sender) == bare
    except errors.JIDError:
        return False


class IqRoute(NamedTuple):
    """What [SessionCore.route_iq][simplexmpp.session.SessionCore.route_iq] decided for a
    received IQ. `kind` is one of:

    * `"reply"`: the answer to our request `waiter` (`iq` is a result or an error);
    * `"roster"`: a roster push, already applied to `SessionCore.roster`; `reply` is the
      result to send, `item`/`removed` what changed;
    * `"request"`: a get/set for the handlers (the client runs them on its dispatcher);
    * `"answer"`: send `reply` and nothing else (a refused push, a malformed one);
    * `"ignore"`: nothing to do (a reply nobody waits for, an IQ of no valid type).
    """

    kind: str
    iq: Iq
    waiter: object = None
    reply: Iq | None = None
    item: RosterItem | None = None
    removed: bool = False


class SessionCore(Generic[W]):
    """The sans-IO session of one account (see the module docstring). `W` is the type of
    the waiters the caller files with its IQ requests (the client's futures).

    Args:
        account: Our account (its bare JID decides the sender checks).
        roster_pushes: Whether a roster `set` is a push (a client), or an ordinary request
            (a component, which has no roster).
        keepalive: Seconds of silence after which a ping checks the connection.
        timeout: Seconds a ping, or one stanza being received, may take.
        ack_delay: How long an XEP-0198 `<a/>` answering the server's `<r/>` waits.
        ack_every: Ask for an XEP-0198 acknowledgement after this many unacknowledged stanzas.
        duplicate_window: How many XEP-0359 message keys are remembered.
    """

    def __init__(self, account: JID, *, roster_pushes: bool = True, keepalive: float = 60.0,
                 timeout: float = 30.0, ack_delay: float = 0.05, ack_every: int = 32,
                 duplicate_window: int = 10000) -> None:
        self.account = account
        self.own_bare = str(account.bare)
        self.roster_pushes = roster_pushes
        self.keepalive = keepalive
        self.timeout = timeout
        self.ack_delay = ack_delay
        self.ack_every = ack_every
        self.pending: dict[str, tuple[W, frozenset[str] | None]] = {}
        """IQ requests waiting for their reply: id -> (waiter, who may answer; None: our
        account)."""
        self.roster = Roster()
        """The cached roster (a new object on every change: readers need no lock)."""
        self.roster_loaded = False
        # Addresses of received stanzas found to be valid JIDs (see misaddressed()).
        self.valid_addresses: set[str] = set()
        # XEP-0359 duplicate window (see is_duplicate): the keys, and the same in order.
        self.seen_ids: set[str] = set()
        self.seen_order: deque[str] = deque()
        self._sender_keys: dict[str, str] = {}   # 'from' attribute -> its key prefix
        self.duplicate_window = duplicate_window
        self.duplicates_dropped = 0
        self.last_stanza_id: str | None = None
        """The stanza-id our own archive gave the last message received (XEP-0359)."""
        # Sessions (see session_established()).
        self.sessions = 0            # sessions established or resumed so far
        self.new_sessions = 0        # new sessions (not resumptions): Session.number
        self.connect_pending = True  # the next new session is the first since connect()
        self.session: Session | None = None
        """The current session (the last one while reconnecting), or None before the first."""
        self.session_up = False      # a session is established on the current connection
        # The clock of the current stream (see connection_made()).
        self.stream: ClientStream | None = None
        self.last_recv = 0.0
        self.last_send = 0.0
        self.ping_sent_at: float | None = None
        self.r_outstanding = False
        self._ack_pending_since: float | None = None
        self._stanza_started: float | None = None
        self._stanza_mark = 0

    # ------------------------------------------------------------------------------------
    # Pending IQ requests and who may answer them (RFC 6120 §8.1.2.1)

    def expect_reply(self, iq_id: str, to: str | None, waiter: W) -> None:
        """File `waiter` for the reply to the request `iq_id` sent to `to`."""
        self.pending[iq_id] = (waiter, self.expected_senders(to))

    def forget(self, iq_id: str) -> W | None:
        """Stop waiting for the reply to `iq_id` (timed out, not sent); its waiter or None."""
        entry = self.pending.pop(iq_id, None)
        return None if entry is None else entry[0]

    def take_pending(self) -> list[W]:
        """Every waiter still filed (the connection ended for good), the table emptied."""
        waiters = [waiter for waiter, _ in self.pending.values()]
        self.pending.clear()
        return waiters

    def expected_senders(self, to: str | None) -> frozenset[str] | None:
        """Who may answer a request sent to `to`; None: our account (the server answers for
        it)."""
        if to is None:
            return None
        target = JID(to)
        if target.bare == self.account.bare:
            return None
        return frozenset({str(target)})

    def reply_sender_ok(self, expected: frozenset[str] | None, sender: str | None) -> bool:
        """RFC 6120 §8.1.2.1: whether a reply from `sender` may answer a request whose
        expected senders are `expected` (see expected_senders)."""
        if expected is None:
            # A request to our own account is answered by the server on its behalf: no from,
            # our bare or full JID, or our domain.
            if sender is None:
                return True
            try:
                jid = JID(sender)
            except errors.JIDError:
                return False
            return jid.bare == self.account.bare or str(jid) == self.account.domain
        if sender is None:
            return False
        if sender in expected:
            return True
        try:
            return str(JID(sender)) in expected
        except errors.JIDError:
            return False

    # ------------------------------------------------------------------------------------
    # Received stanzas

    def misaddressed(self, element: ET.Element) -> tuple[bool, ET.Element | None]:
        """Whether a received stanza has a `from` or `to` that is not a JID (RFC 7622): it is
        to be dropped (logged here in one line), and an IQ request answered with the
        returned jid-malformed error (RFC 6120 §8.3.3.8). Addresses found valid are
        remembered (a bounded set), so a known sender costs two lookups, not a parse."""
        valid = self.valid_addresses
        for name in ("from", "to"):
            value = element.get(name)
            if value is None or value == "" or value in valid:
                continue  # an empty address is an absent one (stanza.parse_jid)
            try:
                JID(value)
            except errors.JIDError as exc:
                kind = element.tag.rpartition("}")[2]
                type_ = element.get("type")
                # One line whatever the peer sent (%r escapes line breaks), and a short one.
                log.warning("dropping a <%s type=%r id=%r> with a malformed %s %r: %.200s",
                            kind, type_, element.get("id"), name, value[:200], exc)
                reply = None
                if element.tag == _IQ and type_ in ("get", "set"):
                    reply = ET.Element(_IQ, {"type": "error", "id": element.get("id", "")})
                    sender = element.get("from")
                    if sender:
                        reply.set("to", sender)  # as it came: the server can route it back
                    reply.append(error_element("jid-malformed", "modify"))
                return True, reply
            if len(valid) >= 4096:
                valid.clear()
            valid.add(value)
        return False, None

    def route_iq(self, iq: Iq) -> IqRoute:
        """Decide what a received IQ is (see [IqRoute][simplexmpp.session.IqRoute]); a reply
        leaves the pending table, a roster push changes `roster`."""
        element = iq.xml
        kind = element.get("type")
        if kind in ("result", "error"):
            iq_id = element.get("id", "")
            entry = self.pending.get(iq_id)
            if entry is None or not self.reply_sender_ok(entry[1], element.get("from")):
                log.debug("ignoring an IQ %s nobody waits for (id %r from %r)", kind,
                          iq_id, element.get("from"))
                return IqRoute("ignore", iq)
            del self.pending[iq_id]
            return IqRoute("reply", iq, entry[0])
        if kind not in ("get", "set"):
            return IqRoute("ignore", iq)  # RFC 6120 §8.2.3: an IQ without a valid type
        payload = iq.payload
        if kind == "set" and self.roster_pushes and payload is not None and \
                payload.tag == _ROSTER_QUERY:
            return self._roster_push(iq, payload)
        return IqRoute("request", iq)

    def _roster_push(self, iq: Iq, query: ET.Element) -> IqRoute:
        sender = iq.xml.get("from")
        if not from_own_account(sender, self.account):
            # RFC 6121 §2.1.6: only a push with no 'from' or from our bare JID is the
            # server's; not one from another resource of our own account, nor from our
            # domain. The RFC allows service-unavailable or no answer; this is what any IQ
            # nobody handles gets (RFC 6120 §8.4), so it tells the sender nothing more.
            log.warning("ignoring a roster push from %r: only the server may push", sender)
            return IqRoute("answer", iq, reply=iq.error_reply("service-unavailable"))
        items = query.findall(_ROSTER_ITEM)
        if len(items) != 1:
            return IqRoute("answer", iq, reply=iq.error_reply("bad-request", "modify"))
        try:
            item, removed = parse_item(items[0])
        except errors.JIDError:
            return IqRoute("answer", iq, reply=iq.error_reply("bad-request", "modify"))
        roster = self.roster.copy()
        roster._apply(item, removed)
        if query.get("ver") is not None:
            roster.version = query.get("ver")
        self.roster = roster
        return IqRoute("roster", iq, reply=iq.result(), item=item, removed=removed)

    def roster_fetched(self, payload: ET.Element | None) -> Roster:
        """The answer to a roster get (RFC 6121 §2.1.3): the new cached roster. An empty
        result means our cached version is current (RFC 6121 §2.6.3)."""
        if payload is not None and payload.tag == _ROSTER_QUERY:
            self.roster = Roster.from_query(payload)
        self.roster_loaded = True
        return self.roster

    # ------------------------------------------------------------------------------------
    # XEP-0359: the window of messages seen

    def is_duplicate(self, element: ET.Element, origin_el: ET.Element | None) -> bool:
        """XEP-0359: a message seen recently is a repeat (a re-send after a failed stream
        resumption, an archive catch-up); drop it. A message is known by its sender's bare JID
        and the origin-id the sender gave it, or, without an origin-id, by the stanza-id our
        own archive gave it: one key per message, so the bounded window covers as many
        messages as it holds keys. (A re-send gets a new stanza-id but keeps its origin-id; an
        archive copy keeps both.) `origin_el` is the message's last origin-id child.

        The keys are str (unlike tuples, str are not tracked by the garbage collector): the
        sender's bare JID, lowercased, then NUL (which XML cannot carry, so the two parts
        stay apart), then the origin-id; our archive's stanza-ids have an empty sender."""
        archived = None
        own = self.own_bare
        for child in element:
            if child.tag == _STANZA_ID and child.get("by") == own:
                archived = child.get("id")
                if archived is not None:
                    break
        if archived:
            self.last_stanza_id = archived
        origin = None if origin_el is None else origin_el.get("id")
        if origin:
            key = self.origin_key(element, origin)
        elif archived:
            key = "\0" + archived
        else:
            return False
        if self.remember(key):
            self.duplicates_dropped += 1
            return True
        return False

    def origin_key(self, element: ET.Element, origin_id: str) -> str:
        """The window key of a message's XEP-0359 origin-id (see is_duplicate)."""
        sender = element.get("from", "")
        prefix = self._sender_keys.get(sender)
        if prefix is None:
            if len(self._sender_keys) >= 1024:
                self._sender_keys.clear()
            prefix = self._sender_keys[sender] = sender.partition("/")[0].lower() + "\0"
        return prefix + origin_id

    def remember(self, key: str) -> bool:
        """True if `key` is in the duplicate window; otherwise add it, dropping the oldest
        keys beyond `duplicate_window`."""
        seen = self.seen_ids
        if key in seen:
            return True
        seen.add(key)
        order = self.seen_order
        order.append(key)
        window = self.duplicate_window
        while len(order) > window:  # more than one when the window was made smaller
            seen.discard(order.popleft())
        return False

    # ------------------------------------------------------------------------------------
    # Sessions

    def session_established(self, jid: JID, resumed: bool,
                            now: datetime | None = None) -> Session:
        """The stream is ready at `now` (wall-clock time; None: now), bound to `jid`: a new
        session, or the last one `resumed` (XEP-0198). Returns the
        [Session][simplexmpp.extension.Session] the extensions' hooks get."""
        if now is None:
            now = datetime.now(timezone.utc)
        self.sessions += 1
        self.session_up = True
        last = self.session
        if resumed and last is not None:
            session = Session(last.number, last.first, jid, True, last.started, last.connected)
        else:
            self.new_sessions += 1
            first = self.connect_pending or last is None
            self.connect_pending = False
            session = Session(self.new_sessions, first, jid, False, now,
                              now if first or last is None else last.connected)
        self.session = session
        return session

    def session_lost(self) -> bool:
        """The connection ended; whether a session was up on it (its extensions' hooks then
        hear of the loss)."""
        was_up, self.session_up = self.session_up, False
        return was_up

    # ------------------------------------------------------------------------------------
    # The clock: XEP-0198 acknowledgements, XEP-0199 keepalive, the slow-stanza guard

    def connection_made(self, stream: ClientStream, now: float) -> None:
        """A new stream (a new connection) starts at `now`: the clocks start afresh."""
        self.stream = stream
        self.last_recv = self.last_send = now
        self.ping_sent_at = None
        self.r_outstanding = False
        self._ack_pending_since = None
        self._stanza_started = None

    def data_received(self, now: float) -> None:
        """Bytes arrived at `now`: the peer is alive (any answer to a keepalive counts)."""
        self.last_recv = now
        self.ping_sent_at = None

    def data_sent(self, now: float) -> None:
        self.last_send = now

    def ack_received(self) -> None:
        """An XEP-0198 `<a/>` arrived: the next `<r/>` may go."""
        self.r_outstanding = False

    def request_ack(self) -> bool:
        """Queue an XEP-0198 `<r/>` on the stream unless one is still unanswered: one at a
        time, so acks are not requested faster than the server answers them. Returns
        whether one was queued."""
        stream = self.stream
        if self.r_outstanding or stream is None or stream.sm is None:
            return False
        stream.request_ack()
        self.r_outstanding = True
        return True

    def next_deadline(self, now: float) -> float:
        """When [handle_timer][simplexmpp.session.SessionCore.handle_timer] has work next (a
        `time.monotonic()` value). An idle connection wakes only for its keepalive, not
        every second, so a thousand idle clients cost next to no CPU."""
        stream = self.stream
        if self.keepalive <= 1:
            return now + 0.2
        if stream is None or stream.state != "ready" or stream.in_stanza:
            return now + 1.0  # negotiation deadline, slow-stanza guard: checked every second
        if self.ping_sent_at is not None:
            due = self.ping_sent_at + min(self.timeout, max(self.keepalive, 1.0))
        else:
            due = self.last_recv + self.keepalive
        sm = stream.sm
        if sm is not None and sm.unacked and not self.r_outstanding:
            due = min(due, self.last_send + 1.0)
        if stream.ack_pending:
            due = min(due, (self._ack_pending_since or now) + self.ack_delay)
        return now + min(max(due - now, 0.005), 60.0)

    def ack_wanted(self, now: float | None) -> bool:
        """Whether to ask for an XEP-0198 acknowledgement: none is outstanding, and
        `ack_every` stanzas are unacknowledged or (with `now`) some are and nothing was sent
        for a second."""
        stream = self.stream
        sm = stream.sm if stream is not None else None
        return sm is not None and not self.r_outstanding and (
            len(sm.unacked) >= self.ack_every
            or (now is not None and bool(sm.unacked) and now - self.last_send > 1.0))

    def handle_timer(self, now: float, guard: AbstractContextManager[object] = _NO_GUARD
                     ) -> bool:
        """Run what is due at `now`: send a bundled `<a/>` that waited long enough, ask for
        an acknowledgement, ping a silent server. Returns whether output was queued on the
        stream (the caller takes it). What it queues, it queues inside `guard` (the client's
        lock: other threads write to the same stream), so a turn with nothing due takes no
        lock. Raises [StreamError][simplexmpp.errors.StreamError]
        (policy-violation) when one stanza takes longer than `timeout` to arrive, and
        [ConnectionError][simplexmpp.errors.ConnectionError] when a keepalive ping went
        unanswered."""
        stream = self.stream
        if stream is None:
            return False
        if stream.in_stanza:
            # A peer trickling one endless stanza would hold the stream forever (slow loris).
            # The clock restarts whenever an element has completed since the last check, so
            # steady traffic whose reads all end inside a stanza is not mistaken for one.
            received = stream.elements_received
            if self._stanza_started is None or received != self._stanza_mark:
                self._stanza_started = now
                self._stanza_mark = received
            elif now - self._stanza_started > self.timeout:
                raise StreamError("policy-violation",
                                  f"the server took more than {self.timeout:g} s to send one "
                                  "stanza")
        else:
            self._stanza_started = None
        if stream.state != "ready":
            return False
        queued = False
        if not stream.ack_pending:
            self._ack_pending_since = None
        elif self._ack_pending_since is None:
            self._ack_pending_since = now
        elif now - self._ack_pending_since >= self.ack_delay:
            # The answer waited ack_delay (it answers what arrived meanwhile too): send it.
            with guard:
                stream.send_ack()
            self._ack_pending_since = None
            queued = True
        if self.ack_wanted(now):
            with guard:
                queued = self.request_ack() or queued
        idle = now - self.last_recv
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at > min(self.timeout, max(self.keepalive, 1.0)):
                raise errors.ConnectionError(
                    f"no answer from {self.account.domain} for {idle:.0f} s; the connection "
                    "is dead")
        elif idle > self.keepalive:
            # XEP-0199 §3: a ping to the server; any answer proves the connection alive.
            ping = Iq(type="get", id=new_id(), payload=ET.Element("{%s}ping" % PING_NS)).xml
            with guard:
                stream.send(ping)
            self.ping_sent_at = now
            queued = True
        return queued

    def unacked_ids(self) -> Iterator[str]:
        """The ids of the stanzas the server has not acknowledged (XEP-0198)."""
        stream = self.stream
        if stream is not None:
            for element in stream.unacked:
                yield element.get("id") or "?"
