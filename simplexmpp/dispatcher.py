"""The dispatcher layer: where each received stanza goes, the event bus, and the thread user
code runs on.

[Router][simplexmpp.dispatcher.Router] takes every stanza the connection reads (on the I/O
thread, quickly, never running user code) and hands it on: an IQ reply to its future, a roster
push to the roster and the "roster_push" event, an IQ request to its handler, a message to the
extensions' interceptors, the XEP-0359 repeat check and then the inbox and "message"
callbacks, a presence to the presence book and its events. It also tells the extensions that
follow sessions when one starts, resumes or is lost.

[Dispatcher][simplexmpp.dispatcher.Dispatcher] owns

* the event callbacks (`on()`/`off()`): registered and removed under a lock, read without one
  (each event's callbacks are an immutable tuple, replaced, never changed in place, so an
  event being emitted on the I/O thread while another thread registers a callback sees
  either the old tuple or the new one, never a list changing under its loop);
* the dispatcher thread (`simplexmpp-dispatch-<jid>`), started when there is work and ended
  after `idle` seconds without any, which runs event callbacks, IQ request handlers, stanza
  handlers and `Future` done-callbacks one at a time: never on the I/O thread, so a callback
  may call any blocking client method;
* the bound on callback calls waiting for that thread: a callback slower than the stanzas
  that trigger it (a peer flooding us, or a callback that blocks) must not grow memory
  without limit, so an event that would make more than `max_pending` calls wait is refused
  for the callbacks it cannot queue (counted in `dropped`, logged once per burst). Only
  events stanzas produce are bounded: the protocol's own work (IQ request handlers and the
  "iq" event they answer through, extension hooks, `Future` done-callbacks, the session's
  events in `UNBOUNDED_EVENTS`, the stop marker) is always queued. The I/O thread never
  waits for room: a callback may be waiting on it (`client.iq()`).

The inbox that `messages()` reads is an [Inbox][simplexmpp.inbox.Inbox] (one closable queue
for every reader: the client's, a pool's, a room's).
"""

from __future__ import annotations

import itertools
import logging
import queue
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import DisconnectedError, IqError, XMPPError
from .stanza import Iq, Message, Presence, Stanza
from .xml import CLIENT_NS

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, IqFuture
    from .extension import Extension, Session

__all__ = ["DEFAULT_MAX_PENDING", "Dispatcher", "Router", "UNBOUNDED_EVENTS"]

log = logging.getLogger(__name__)

_Callbacks = tuple[tuple[int, Callable[..., object]], ...]
# A queued task: the function, its arguments, and whether it counts toward the bound.
_Task = tuple[Callable[..., object], tuple[object, ...], bool]

DEFAULT_MAX_PENDING = 10_000
"""The default bound on callback calls waiting for the dispatcher thread (see
[Dispatcher.max_pending][simplexmpp.dispatcher.Dispatcher.max_pending])."""

UNBOUNDED_EVENTS = frozenset({
    "iq",                 # an IQ request nobody else claimed: its callback owes the reply
    "roster_push",        # from our own server only (RFC 6121 §2.1.6), one per change
    "connected", "resumed", "resumption_failed", "reconnecting", "disconnected",
})
"""Events never refused when callbacks fall behind: the session's life, and the work the
protocol owes an answer for. Every other event (stanza events: "message", "presence",
extensions' events) counts toward the bound."""

_IQ = "{%s}iq" % CLIENT_NS
_MESSAGE = "{%s}message" % CLIENT_NS
_PRESENCE = "{%s}presence" % CLIENT_NS
_ORIGIN_ID = "{urn:xmpp:sid:0}origin-id"
_STANZA_ID = "{urn:xmpp:sid:0}stanza-id"
_MESSAGE_TYPES = frozenset({"chat", "error", "groupchat", "headline", "normal"})
_new_message = object.__new__

# (handle, interceptor, child tags it wants, types it wants; None: all) — see
# Router.add_interceptor().
_Interceptor = tuple[int, Callable[[Any], bool], "frozenset[str] | None",
                     "frozenset[str] | None"]
# Per kind: (interceptors for all, by child tag, by type) — see Router.index_interceptors().
_InterceptorIndex = tuple[list[_Interceptor], dict[str, list[_Interceptor]],
                          dict[str, list[_Interceptor]]]
_NO_INTERCEPTORS: dict[str, list[_Interceptor]] = {}


def _handle_of(entry: _Interceptor) -> int:
    return entry[0]


def wrap_message(element: ET.Element) -> Message:
    """A `Message` around a received `<message/>` element (the tag is known: no checks)."""
    msg: Message = _new_message(Message)
    msg.xml = element
    return msg


def _message_type(type_: str | None) -> str:
    """RFC 6121 §5.2.2: a message without a type, or with one not understood, is normal."""
    return type_ if type_ is not None and type_ in _MESSAGE_TYPES else "normal"


class Dispatcher:
    """The event bus and the dispatcher thread of one client (see the module docstring).

    Args:
        name: The thread's name (`simplexmpp-dispatch-alice@example.org`).
        events: The event names `on()` accepts (more with `declare()`).
        idle: Returns the seconds the thread waits for work before it ends (read each
            time, so a client's `dispatcher_idle` may change at any time).
    """

    def __init__(self, name: str, events: Iterable[str], idle: Callable[[], float]) -> None:
        self.name = name
        self.idle = idle
        self.handlers: dict[str, _Callbacks] = {}
        """Callbacks by event: read without a lock, replaced (never changed) under one."""
        self.event_names = set(events)
        self.handle_ids = itertools.count(1)
        """Handles for `on()`, and for whatever else the client hands out (stanza handlers)."""
        self._handlers_lock = threading.Lock()
        self._lock = threading.Lock()  # the thread's start and end, and the task queue
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        # Bounded tasks queued (written under _lock) and taken (by the dispatcher thread
        # alone): their difference is how many wait, with no lock on the thread's side.
        self._queued = 0
        self._taken = 0
        self._bound = DEFAULT_MAX_PENDING  # sys.maxsize: no bound (one compare either way)
        self._warned = False
        self.dropped = 0
        """How many callback calls of bounded events were refused because `max_pending`
        were waiting."""

    # ------------------------------------------------------------------------------------
    # Events

    def on(self, event: str, callback: Callable[..., object]) -> int:
        if event not in self.event_names:
            raise ValueError(f"unknown event {event!r}; known: "
                             f"{', '.join(sorted(self.event_names))}")
        handle = next(self.handle_ids)
        with self._handlers_lock:
            self.handlers[event] = self.handlers.get(event, ()) + ((handle, callback),)
        return handle

    def off(self, handle: int) -> None:
        with self._handlers_lock:
            for name, callbacks in list(self.handlers.items()):
                kept = tuple(entry for entry in callbacks if entry[0] != handle)
                if len(kept) != len(callbacks):
                    self.handlers[name] = kept

    def declare(self, name: str) -> None:
        self.event_names.add(name)

    def emit(self, event: str, *args: object) -> None:
        """Queue every callback of `event` (any thread; no check of the name). Unless the
        event is in `UNBOUNDED_EVENTS`, each call counts toward `max_pending`."""
        callbacks = self.handlers.get(event)
        if not callbacks:
            return
        if event in UNBOUNDED_EVENTS:
            for _, callback in callbacks:
                self.dispatch(callback, *args)
            return
        queue_bounded = self.queue_bounded
        for _, callback in callbacks:
            queue_bounded(callback, args)

    # ------------------------------------------------------------------------------------
    # The bound

    @property
    def max_pending(self) -> int | None:
        """The most callback calls of bounded events waiting for the dispatcher thread
        (None: no bound); may be changed at any time."""
        return None if self._bound == sys.maxsize else self._bound

    @max_pending.setter
    def max_pending(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"max_pending must be None or a number >= 1, not {value!r}")
        self._bound = sys.maxsize if value is None else value

    @property
    def pending(self) -> int:
        """How many callback calls of bounded events wait for the dispatcher thread."""
        return self._queued - self._taken

    def _refuse(self, fn: Callable[..., object]) -> None:
        """Under `_lock`: the bound is reached; `fn`'s call is given up, counted, and
        logged once per burst (again only after the callbacks have caught up)."""
        self.dropped += 1
        if not self._warned:
            self._warned = True
            log.warning("%s: %d callback calls wait, the callbacks are slower than the "
                        "stanzas arrive: giving up new calls (first: %r). Make callbacks "
                        "return sooner or raise client.max_pending_callbacks. This is "
                        "logged once until they catch up; the count is in "
                        "client.callbacks_dropped", self.name, self._bound, fn)

    # ------------------------------------------------------------------------------------
    # The thread

    def dispatch(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the dispatcher thread (started when there is work); never
        refused (the protocol's work: see `queue_bounded` for what a flood produces)."""
        with self._lock:
            self._tasks.put((fn, args, False))
            if self.thread is None:
                self._start(fn)

    def queue_bounded(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        """Run `fn(*args)` on the dispatcher thread unless `max_pending` such calls are
        waiting already: then it is given up, counted in `dropped` (never blocks)."""
        with self._lock:
            # The one compare of the hot path (no bound: sys.maxsize).
            if self._queued - self._taken >= self._bound:
                self._refuse(fn)
                return
            self._queued += 1
            self._tasks.put((fn, args, True))
            if self.thread is None:
                self._start(fn)

    def _start(self, fn: Callable[..., object]) -> None:
        """Under `_lock`: start the thread for the work just queued (`fn`)."""
        thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            # Python 3.12+ at interpreter exit: "can't create new thread at
            # interpreter shutdown" (a client closed at exit).
            log.debug("callback %r not run: %s", fn, exc)
            return
        self.thread = thread

    def _main(self) -> None:
        current = threading.current_thread()
        while True:
            try:
                task = self._tasks.get(timeout=self.idle())
            except queue.Empty:
                with self._lock:
                    if self._tasks.empty():  # nothing was queued meanwhile (same lock)
                        if self.thread is current:
                            self.thread = None
                        return
                continue
            if task is None:
                with self._lock:
                    if self._tasks.empty():
                        if self.thread is current:
                            self.thread = None
                        return
                    self._tasks.put(None)  # work arrived after the stop: run it first
                continue
            fn, args, bounded = task
            if bounded:
                self._taken += 1  # this thread alone writes it
                if self._warned and self._taken == self._queued:
                    self._warned = False  # caught up: the next burst is logged again
            try:
                fn(*args)
            except Exception:
                log.exception("callback %r raised; the client carries on", fn)

    def stop(self) -> None:
        """The thread ends once it has run what is queued."""
        with self._lock:
            if self.thread is not None:
                self._tasks.put(None)

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the thread to end (not from the thread itself)."""
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        with self._lock:
            if not thread.is_alive() and self.thread is thread:
                self.thread = None


class Router:
    """Where each received stanza of one client goes (see the module docstring). Its
    methods named for a stanza kind run on the I/O thread (or the hub's) and never run user
    code: they queue it on the [Dispatcher][simplexmpp.dispatcher.Dispatcher]."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.core = client._core
        self.events = client._events
        self.handlers = client._events.handlers  # the same dict (hot path: one lookup less)
        self.inbox = client._inbox
        self.presences = client._presences
        self.role = client._role
        self.lock = client._lock
        self.iq_handlers: dict[tuple[str, str], Callable[[Iq], object]] = {}
        self.interceptors: dict[str, list[_Interceptor]] = {}
        self.interceptor_index: dict[str, _InterceptorIndex] = {}
        self.inbox_used = False  # messages()/next_message() was called: fill the inbox
        # One extension may hold messages back just before they are handed out (OMEMO keeps a
        # conversation in arrival order while one of its messages is decrypted): see
        # Extension._order_messages and hand_out().
        self.gate: Callable[[ET.Element, Message | None], bool] | None = None
        # Per lifecycle hook, the extensions that follow it (see follow_sessions).
        self.hooks: dict[str, list[Extension]] = {}

    def stanza(self, element: ET.Element) -> None:
        tag = element.tag
        if tag == _MESSAGE:
            self.message(element)
        elif tag == _PRESENCE:
            presence = Presence(element)
            if not self.intercepted("presence", presence):
                self.presence(presence)
        elif tag == _IQ:
            self.iq(Iq(element))

    def misaddressed(self, element: ET.Element) -> bool:
        """Whether a received stanza has a 'from' or 'to' that is not a JID (see
        [SessionCore.misaddressed][simplexmpp.session.SessionCore.misaddressed]): dropped,
        and an IQ request answered with jid-malformed. The one check every received stanza
        passes (`_read`, and `deliver` for what extensions unwrap)."""
        bad, reply = self.core.misaddressed(element)
        if reply is not None:
            self.send_reply(reply)
        return bad

    def intercepted(self, kind: str, stanza: Stanza) -> bool:
        """Whether an interceptor claimed `stanza` (a `kind`: message or presence)."""
        index = self.interceptor_index.get(kind)
        if index is None:
            return False
        matched = None
        by_tag = index[1]
        if by_tag:
            for child in stanza.xml:
                found = by_tag.get(child.tag)
                if found is not None:
                    matched = found if matched is None else matched + found
        type_ = _message_type(stanza.xml.get("type")) if kind == "message" else \
            stanza.xml.get("type") or "available"
        return self.run_interceptors(stanza, index, matched, type_)

    def run_interceptors(self, stanza: Stanza, index: _InterceptorIndex,
                          matched: list[_Interceptor] | None, type_: str) -> bool:
        """Ask the interceptors that want `stanza` (all of them, those for its type
        `type_`, and `matched`: those for one of its children's tags), oldest first."""
        always, _by_tag, by_type = index
        typed = by_type.get(type_) if by_type else None
        if matched is None and typed is None:
            entries = always
        elif matched is None and not always:
            entries = typed  # type: ignore[assignment]  # not None here
        else:
            entries = sorted(set(always).union(typed or (), matched or ()), key=_handle_of)
        for _, interceptor, _tags, types in entries:
            if types is not None and type_ not in types:
                continue  # it named child tags and types: both must match
            try:
                if interceptor(stanza):
                    return True
            except Exception:
                log.exception("interceptor %r failed on %r", interceptor, stanza)
        return False

    def index_interceptors(self, kind: str) -> None:
        """Under the lock: rebuild what `_intercepted` reads (copy on write, so the I/O
        thread never needs the lock)."""
        always = []
        by_tag: dict[str, list[_Interceptor]] = {}
        by_type: dict[str, list[_Interceptor]] = {}
        for entry in self.interceptors.get(kind, ()):
            if entry[2] is not None:
                for tag in entry[2]:
                    by_tag.setdefault(tag, []).append(entry)
            elif entry[3] is not None:
                for type_ in entry[3]:
                    by_type.setdefault(type_, []).append(entry)
            else:
                always.append(entry)
        self.interceptor_index[kind] = (always, by_tag, by_type)

    def add_interceptor(self, kind: str, interceptor: Callable[[Any], bool], *,
                         tags: Iterable[str] | None = None,
                         types: Iterable[str] | None = None) -> int:
        """Package-private fast path of simplexmpp's own extensions (through
        `Extension._intercept_stanzas`): `interceptor(stanza)` sees every received
        `"message"` or `"presence"` before the client handles it, and returns True to
        claim it. With `tags` (Clark names of child elements) it sees only stanzas with
        such a child, with `types` only stanzas of those types (a message without a type,
        or with one not in RFC 6121, is `"normal"`; a presence without one is
        `"available"`); both keep the receive path fast.

        It runs on the I/O thread, so it must be quick and must not block or call blocking
        client methods. User code never runs here: the public way is
        [add_stanza_handler][simplexmpp.client.Client.add_stanza_handler]."""
        if kind not in ("message", "presence"):
            raise ValueError("kind must be 'message' or 'presence'")
        handle = next(self.events.handle_ids)
        tagset = frozenset(tags) if tags is not None else None
        typeset = frozenset(types) if types is not None else None
        with self.lock:
            self.interceptors.setdefault(kind, []).append(
                (handle, interceptor, tagset, typeset))
            self.index_interceptors(kind)
        return handle

    def remove_interceptor(self, handle: int) -> None:
        with self.lock:
            for kind, entries in self.interceptors.items():
                self.interceptors[kind] = [e for e in entries if e[0] != handle]
                self.index_interceptors(kind)

    def iq(self, iq: Iq) -> None:
        with self.lock:
            route = self.core.route_iq(iq)
        kind = route.kind
        if kind == "reply":
            future: IqFuture = route.waiter  # type: ignore[assignment]  # what send_iq filed
            if future.set_running_or_notify_cancel():
                if iq.xml.get("type") == "result":
                    future.set_result(iq)
                else:
                    future.set_exception(iq.error or IqError("undefined-condition"))
        elif kind == "request":
            if not self.role.incoming_request(self.client, iq):
                self.events.dispatch(self.handle_iq_request, iq)
        elif route.reply is not None:
            self.send_reply(route.reply)
            if kind == "roster":
                self.events.emit("roster_push", route.item, route.removed)

    def send_reply(self, stanza: Stanza | ET.Element) -> None:
        """Send without waiting, from the I/O or dispatcher thread; failures are logged."""
        try:
            self.client.send(stanza, timeout=0)
        except XMPPError as exc:
            log.debug("could not send IQ reply: %s", exc)

    def handle_iq_request(self, iq: Iq) -> None:
        """Dispatcher thread: run the registered handler or reply service-unavailable."""
        payload = iq.payload
        handler = None if payload is None else self.iq_handlers.get(
            (iq.xml.get("type", ""), payload.tag))
        if handler is None:
            if self.events.handlers.get("iq"):
                self.events.emit("iq", iq)
            else:
                # RFC 6120 §8.4: an IQ nobody understands gets service-unavailable.
                self.send_reply(iq.error_reply("service-unavailable"))
            return
        try:
            answer = handler(iq)
        except IqError as exc:
            reply = iq.error_reply(exc.condition, exc.type, exc.text)
        except Exception:
            log.exception("IQ handler for %s failed", payload.tag if payload is not None else "")
            reply = iq.error_reply("internal-server-error", "wait")
        else:
            if isinstance(answer, Iq):
                reply = answer
            else:
                reply = iq.result(answer if isinstance(answer, ET.Element) else None)
        self.send_reply(reply)

    def message(self, element: ET.Element, msg: Message | None = None,
                          intercept: bool = True) -> None:
        """A received message (`msg` its wrapper if one was made already; `intercept`
        False for what deliver() hands over): the interceptors, then the inbox and
        "message" callbacks, unless it is an error or a repeat (XEP-0359).

        Hot path (every message), so all in one function: one scan of the children finds
        both the interceptors that asked for a child's tag and the XEP-0359 ids; the
        Message wrapper is made only for whoever gets to see it. The window of ids seen
        is the session's (see
        [SessionCore.is_duplicate][simplexmpp.session.SessionCore.is_duplicate])."""
        index = self.interceptor_index.get("message") if intercept else None
        by_tag = _NO_INTERCEPTORS if index is None else index[1]
        matched = origin = None
        stanza_ids = False
        for child in element:
            child_tag = child.tag
            if child_tag == _ORIGIN_ID:
                origin = child
            elif child_tag == _STANZA_ID:
                stanza_ids = True
            found = by_tag.get(child_tag)
            if found is not None:
                matched = found if matched is None else matched + found
        type_ = element.get("type")
        if index is not None:
            known_type = _message_type(type_)
            if matched is not None or index[0] or known_type in index[2]:
                if msg is None:
                    msg = wrap_message(element)
                if self.run_interceptors(msg, index, matched, known_type):
                    return
        if type_ == "error":
            self.events.emit("message_error", msg or wrap_message(element))
            return
        if stanza_ids and type_ != "groupchat":
            if self.core.is_duplicate(element, origin):
                log.debug("dropping a repeated message %s", element.get("id"))
                return
        elif origin is not None:
            origin_id = origin.get("id")
            core = self.core
            if origin_id and core.remember(core.origin_key(element, origin_id)):
                core.duplicates_dropped += 1
                log.debug("dropping a repeated message %s", element.get("id"))
                return
        gate = self.gate
        if gate is not None and gate(element, msg):
            return  # held back: the gate hands it out later (hand_out)
        self.hand_out(element, msg)

    def hand_out(self, element: ET.Element, msg: Message | None = None) -> None:
        """Give a message that passed every check of `message()` to the inbox and the
        "message" callbacks (called by `message()`, and later for what the gate held back;
        any thread)."""
        handlers = self.handlers.get("message")
        if not handlers or self.inbox_used:
            self.inbox.put(element)
        if handlers:
            self.events.emit("message", msg or wrap_message(element))

    def presence(self, presence: Presence) -> None:
        kind = presence.type
        if kind is None or kind == "unavailable":
            self.presences.update(presence)
        self.events.emit("presence", presence)
        if kind == "subscribe":
            self.events.emit("subscription_request", presence)
        elif kind in ("subscribed", "unsubscribed", "unsubscribe"):
            self.events.emit(kind, presence)

    # ------------------------------------------------------------------------------------
    # Messages for the caller

    # ------------------------------------------------------------------------------------
    # The session's life (called by the connection, on the I/O thread or the hub's)

    def follow_sessions(self, extension: Extension) -> None:
        """Register the lifecycle hooks `extension` overrides (once each)."""
        with self.lock:
            for hook in type(extension).overridden_hooks():
                followers = self.hooks.get(hook, [])
                if extension not in followers:
                    # A new list: run_hooks may be iterating over the old one.
                    self.hooks[hook] = followers + [extension]

    def run_hooks(self, hook: str, arg: object) -> None:
        """Queue `hook(arg)` of every extension that follows it on the dispatcher."""
        for extension in self.hooks.get(hook, ()):
            self.events.dispatch(getattr(extension, hook), arg)

    def session_ready(self, session: Session, reconnected: bool) -> None:
        """A session is ready (new, or resumed): the extensions' hooks and the events."""
        jid = session.jid
        if session.resumed:
            self.run_hooks("session_resumed", session)
            self.events.emit("resumed", jid)
            return
        self.presences.clear()
        presence = self.client.broadcast_presence
        if presence is not None:
            self.send_reply(presence)
        # The extensions restore their state first (rooms entered, carbons enabled): an
        # archive catch-up below may take long, and what arrives meanwhile needs them.
        self.run_hooks("session_started", session)
        if reconnected:
            # What the lost session held undelivered may be gone (a server drops the
            # queue of a session it cannot resume); an archive can fill the gap.
            self.events.emit("resumption_failed", self.core.last_stanza_id)
        self.events.emit("connected", jid)

    def session_lost(self, error: BaseException | None) -> None:
        """The connection ended: the extensions that follow sessions hear of it."""
        if self.core.session_lost():
            self.run_hooks("session_lost", error)

    def stopped(self, error: BaseException | None, pending: list[IqFuture]) -> None:
        """The client has stopped for good: fail what waits, tell the callbacks, and let
        the dispatcher end."""
        for future in pending:
            if not future.done():
                future.set_exception(DisconnectedError(
                    "the connection closed before the reply arrived"
                    + (f": {error}" if error else "")))
        if self.client.jid is not None or error is not None:
            self.run_hooks("client_stopped", error)
            self.events.emit("disconnected", error)
        self.events.stop()
