"""`Client`: the blocking API, on two background threads.

Threads (see docs/threads.md):

* the **I/O thread** (`simplexmpp-io-<jid>`) owns the socket: it connects, negotiates the
  stream, reads and parses, writes what other threads queued, answers keepalives, resolves IQ
  futures and reconnects. It never runs user code.
* the **dispatcher thread** (`simplexmpp-dispatch-<jid>`) runs event callbacks, IQ request
  handlers and `Future` done-callbacks, one at a time, so a callback may call any blocking
  method (`get_roster()` included) without deadlock.
* any user thread may call any method. One lock guards the stream state and the outgoing
  buffer; it is never held while user code runs.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import os
import queue
import random
import re
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors
from .errors import (AuthenticationError, DisconnectedError, InvalidStanzaError, IqError,
                     NotSentError, StreamError, TLSError, XMPPError)
from .dispatcher import Dispatcher
from .extension import Extension, Session, installed_extensions
from .inbox import CLOSED, DEFAULT_MAX_INBOX, Inbox
from .jid import JID
from .roster import ROSTER_NS, PresenceBook, Roster, item_element
from .session import PING_NS, SID_NS, SessionCore
from .stanza import Iq, Message, Presence, Stanza, error_element, new_id
from .stream import (AckReceived, Authenticated, ClientStream, NonzaReceived, Ready, Resumed,
                     SMState, StartTLS, StreamClosed)
from .transport import (Hub, Target, Wire, channel_bindings, is_loopback, open_socket, resolve,
                        ssl_context, start_tls)
from .xml import CLIENT_NS, check_text, tostring
from .xml import escape as _escape

if TYPE_CHECKING:  # pragma: no cover - the extension classes, for type checkers and IDEs
    from .ext.avatar import Avatar
    from .ext.blocking import Blocking
    from .ext.carbons import Carbons
    from .ext.chatstates import ChatStates
    from .ext.correction import Correction
    from .ext.csi import CSI
    from .ext.disco import Disco
    from .ext.mam import MAM
    from .ext.markers import Markers
    from .ext.muc import MUC
    from .ext.omemo import OMEMO
    from .ext.omemo_muc import OmemoMUC
    from .ext.oob import OOB
    from .ext.pep import PEP
    from .ext.pubsub import PubSub
    from .ext.receipts import Receipts
    from .ext.register import Registration
    from .ext.upload import Upload
    from .ext.vcard import VCard
    from .ext.version import Version

__all__ = ["Client", "EVENTS"]

log = logging.getLogger(__name__)
wire_log = logging.getLogger("simplexmpp.wire")  # every byte sent/received, one switch

_IQ = "{%s}iq" % CLIENT_NS
_MESSAGE = "{%s}message" % CLIENT_NS
_PRESENCE = "{%s}presence" % CLIENT_NS
_ORIGIN_ID = "{%s}origin-id" % SID_NS
_new_message = object.__new__
_ELEMENT = ET.Element
_SUB_ELEMENT = ET.SubElement
_BODY = "{%s}body" % CLIENT_NS
_SUBJECT = "{%s}subject" % CLIENT_NS
_THREAD = "{%s}thread" % CLIENT_NS
_STANZA_ID = "{%s}stanza-id" % SID_NS
_SENDABLE_MESSAGE_TYPES = frozenset(("chat", "normal", "headline", "groupchat"))
ROSTERVER_NS = "urn:xmpp:features:rosterver"

EVENTS = frozenset({
    "message",               # Message (not errors): every chat/normal/headline/groupchat
    "message_error",         # Message of type error (its .error is a MessageError)
    "presence",              # Presence, every one received
    "subscription_request",  # Presence type=subscribe: answer with approve() or deny()
    "subscribed", "unsubscribed", "unsubscribe",  # Presence of those types
    "roster_push",           # RosterItem, removed: bool  (after the cached roster changed)
    "iq",                    # Iq get/set that no handler claimed: the callback must reply
    "connected",             # JID: the session is ready (also after a reconnect)
    "resumed",               # JID: the stream was resumed (XEP-0198)
    "resumption_failed",     # str | None: a new session replaced a lost one that could not be
                             # resumed; the XEP-0359 stanza-id of the last message received
                             # before (what an archive catch-up starts after)
    "reconnecting",          # the connection dropped; exception that caused it
    "disconnected",          # exception or None: the client stopped for good
})
"""Every event name [`Client.on()`][simplexmpp.Client.on] accepts (extensions add theirs with
`declare_event`)."""

_RECONNECT_FATAL = (AuthenticationError, TLSError)
_REDACT = re.compile(r"(<(auth|response|challenge|success)\b[^>]*>)[^<]*|"
                     r"(<password\b[^>]*>)[^<]*")

F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E", bound=Extension)


# (handle, interceptor, child tags it wants, types it wants; None: all) — see
# _add_interceptor().
_Interceptor = tuple[int, Callable[[Any], bool], "frozenset[str] | None",
                     "frozenset[str] | None"]
# Per kind: (interceptors for all, by child tag, by type) — see _index_interceptors().
_InterceptorIndex = tuple[list[_Interceptor], dict[str, list[_Interceptor]],
                          dict[str, list[_Interceptor]]]
_NO_INTERCEPTORS: dict[str, list[_Interceptor]] = {}


_MESSAGE_TYPES = frozenset({"chat", "error", "groupchat", "headline", "normal"})


def _handle_of(entry: _Interceptor) -> int:
    return entry[0]


def timeout_seconds(timeout: float) -> float:
    """`timeout` as seconds every waiting primitive accepts: NaN or a negative number is a
    ValueError; infinity, or anything longer than `threading.TIMEOUT_MAX` (some 292 years),
    becomes `threading.TIMEOUT_MAX`: wait as long as it takes (issue 14: `float("inf")`
    used to raise OverflowError from deep inside a lock or a socket)."""
    seconds = float(timeout)
    if not seconds >= 0:  # also catches NaN, which compares false with everything
        raise ValueError(f"timeout must be a number of seconds >= 0 (or None), not {timeout!r}")
    return seconds if seconds < threading.TIMEOUT_MAX else threading.TIMEOUT_MAX


def _checked_message(to: JID | str, body: str | None, type: str, subject: str | None,
                     thread: str | None) -> JID:
    """new_message()/send_message(): the recipient as a JID, once type and texts are checked."""
    recipient = to if isinstance(to, JID) else JID(to)
    if type not in _SENDABLE_MESSAGE_TYPES:
        raise ValueError(f"message type must be chat, normal, headline or groupchat, "
                         f"not {type!r}")
    for name, value in (("body", body), ("subject", subject), ("thread", thread)):
        if value is not None:
            check_text(value, f"message {name}")
    return recipient


def _wrap_message(element: ET.Element) -> Message:
    msg: Message = _new_message(Message)  # the tag is known: skip __init__'s checks
    msg.xml = element
    return msg


def _message_type(type_: str | None) -> str:
    """RFC 6121 §5.2.2: a message without a type, or with one not understood, is normal."""
    return type_ if type_ is not None and type_ in _MESSAGE_TYPES else "normal"


# A lock that is none (see Client._read).
_UNLOCKED = contextlib.nullcontext()


# Socket reads (of up to Wire.READ_SIZE) a hub-driven connection gets per turn of the hub.
_HUB_READS_PER_TURN = 16


def _close_clients(clients: list[tuple[Client, float]]) -> list[NotSentError | None]:
    """Flush and close `clients`, each by its deadline (`time.monotonic()`), side by side:
    every confirmation is asked for before any is waited for, so several clients take as
    long as the slowest, not the sum. Starts no thread (at interpreter exit Python 3.12
    refuses new ones). Returns, per client, what it could not confirm (None: all)."""
    flushing = [client._state in ("ready", "reconnecting") for client, _ in clients]
    pings = [client._ask_confirmation() if busy else None
             for (client, _), busy in zip(clients, flushing)]
    outcomes: list[tuple[bool, list[str]]] = []
    for (client, deadline), busy, ping in zip(clients, flushing, pings):
        outcomes.append(client._flush_until(deadline, ping) if busy else (True, []))
    for client, _ in clients:
        client._begin_close()
    for client, deadline in clients:
        client._end_close(deadline)
    results: list[NotSentError | None] = []
    for (client, _), (confirmed, ids) in zip(clients, outcomes):
        if confirmed and not ids:
            results.append(None)
        elif ids:
            results.append(NotSentError(
                f"the server did not confirm {len(ids)} stanza(s) before the connection "
                f"closed: {', '.join(ids[:10])}" + (" …" if len(ids) > 10 else ""), ids))
        else:
            results.append(NotSentError(
                "the server did not confirm the last stanzas sent before the timeout (no "
                "answer to a ping sent after them; without stream management they cannot be "
                "named)", ids))
    return results


# Clients connected (or reconnecting), flushed and closed at interpreter exit.
_live: set[Client] = set()
_live_lock = threading.Lock()
_exit_hook = False


def _track(client: Client) -> None:
    """connect(): flush and close `client` at interpreter exit unless it stops before."""
    global _exit_hook
    with _live_lock:
        _live.add(client)
        if not _exit_hook:
            # atexit, not threading._register_atexit: atexit functions run after the
            # interpreter has joined every non-daemon thread (a thread of yours still
            # sending, or reading messages(), keeps its client until it ends), while the
            # daemon I/O threads still run. Those hooks run before that join, and would
            # close a client under a thread still using it.
            atexit.register(_close_at_exit)
            _exit_hook = True


def _untrack(client: Client) -> None:
    with _live_lock:
        _live.discard(client)


def _close_at_exit() -> None:
    """At interpreter exit: flush every client still connected (each within its own
    `timeout`, all side by side), close its stream, and name on stderr what the server
    could not confirm. See docs/reliability.md, "A script that just ends"."""
    with _live_lock:
        clients = list(_live)
    if not clients:
        return
    now = time.monotonic()
    try:
        outcomes = _close_clients([(client, now + client.timeout) for client in clients])
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C during the flush, for one
        sys.stderr.write(f"simplexmpp: closing {len(clients)} client(s) at exit was "
                         f"interrupted ({exc!r}); what they sent last may not have arrived\n")
        return
    for client, outcome in zip(clients, outcomes):
        if outcome is not None:
            # The API contract asks for stderr here: logging may not be configured at all
            # in the script that just ended.
            sys.stderr.write(f"simplexmpp: {client.account.bare} at exit: {outcome}\n")
            if outcome.ids:
                sys.stderr.write("simplexmpp: not confirmed: " + " ".join(outcome.ids)
                                 + "\n")
    sys.stderr.flush()


class IqFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A `Future[Iq]` whose done-callbacks run on the client's dispatcher thread, never on the
    I/O thread (so a callback may block)."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future], object]) -> None:  # type: ignore[type-arg]
        client = self._client
        super().add_done_callback(lambda future: client._events.dispatch(fn, future))


def _check_tls_settings(ca_file: str | None, verify: bool | ssl.SSLContext,
                        context: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """The caller's own TLS context (`ssl_context=`, or `verify=` a context, as
    requests and httpx take one), refusing combinations that contradict each other: the
    context alone decides what is trusted and how."""
    if isinstance(verify, ssl.SSLContext):
        if context is not None and context is not verify:
            raise ValueError("two TLS contexts given: pass either ssl_context= or verify= "
                             "a context, not both")
        context = verify
    elif not isinstance(verify, int):  # bool, or 0/1; a CA path here would be ignored
        raise ValueError(f"verify must be True, False or an ssl.SSLContext, not {verify!r}; "
                         "a CA file goes in ca_file=")
    elif context is not None and verify is False:
        raise ValueError("verify=False contradicts ssl_context=: the context decides about "
                         "verification (set its verify_mode and check_hostname instead)")
    if context is None:
        return None
    if not isinstance(context, ssl.SSLContext):
        raise ValueError(f"ssl_context must be an ssl.SSLContext, not {type(context).__name__}")
    if ca_file is not None:
        raise ValueError("ca_file= and an ssl_context cannot be combined: load the CA into "
                         "the context (context.load_verify_locations(ca_file))")
    return context


class Client:
    """A blocking XMPP client: one account, one connection, usable from any number of threads.

    Nothing goes on the network until [`connect()`][simplexmpp.Client.connect] (or a `with` block,
    which connects on entry and disconnects on exit). The guide to this API is the "The API" page of
    the documentation (docs/api.md).

    ```python
    with Client("alice@example.org", "password",
                ca_file="certs/example.org.crt") as client:
        client.send_message("bob@example.org", "Hello!")
    ```

    Args:
        jid: The account, `local@domain`; a resource part asks for that resource.
        password: The account's password.
        host: Where to connect. None: DNS SRV records of the JID's domain
            (`_xmpps-client._tcp`, `_xmpp-client._tcp`; RFC 6120 §3.2), else the domain.
        port: The port; None: 5222, or 5223 with `tls="direct"`.
        tls: `"starttls"` (the default: TLS required, a server without STARTTLS is refused
            as a downgrade), `"direct"` (TLS from the first byte, XEP-0368) or `"none"`
            (plain text, loopback hosts only; PLAIN is then never used).
        ca_file: A CA certificate (or a self-signed server certificate) to trust besides the
            system's store. The certificate is checked against the JID's domain.
        verify: False turns certificate checking off, with a warning logged (an
            `ssl.SSLContext` here is the same as `ssl_context=`).
        resource: The resource to ask for (the server may assign another).
        timeout: Seconds every blocking call waits by default.
        stream_management: Use XEP-0198 (acknowledgements, resumption) when offered.
        reconnect: Reconnect, with backoff, after a connection is lost.
        max_stanza_size: Largest stanza, in bytes, sent or accepted (a larger one from the
            server ends the stream with `policy-violation`).
        keepalive: Seconds of silence after which a ping checks the connection.
        mechanisms: SASL mechanisms allowed, e.g. `["SCRAM-SHA-256"]`; None: all the
            library supports, strongest first.
        lang: The `xml:lang` of our stream.
        reconnect_max_delay: Longest wait, in seconds, between two reconnect attempts.
        ack_every: Ask for an XEP-0198 acknowledgement after this many unacknowledged stanzas.
        ssl_context: Your own `ssl.SSLContext` for every TLS handshake (client certificates,
            pinned CAs, TLS versions); not combined with `ca_file` or `verify=False`.
        resolver: A `dns.resolver.Resolver` for the SRV look-ups; None: the system's.
        max_inbox: Most received messages kept for `messages()`/`next_message()`; when
            full the oldest is given up (counted in `inbox_dropped`). None: no bound.
        omemo_store: The file of OMEMO end-to-end encryption's keys, sessions and trust
            (`client.omemo`, needs `simplexmpp[omemo]`); giving one turns OMEMO on from the
            first session. None: a file under the user's data directory, used from the
            first `client.omemo` call on (or at once when it exists).
    """

    # Extensions, attached by simplexmpp.ext.attach() (see simplexmpp/ext/__init__.py).
    disco: Disco
    version: Version
    receipts: Receipts
    chatstates: ChatStates
    markers: Markers
    correction: Correction
    blocking: Blocking
    csi: CSI
    carbons: Carbons
    mam: MAM
    muc: MUC
    upload: Upload
    oob: OOB
    registration: Registration
    vcard: VCard
    pubsub: PubSub
    pep: PEP
    avatar: Avatar
    omemo: OMEMO
    omemo_muc: OmemoMUC

    def __init__(self, jid: JID | str, password: str | None, *, host: str | None = None,
                 port: int | None = None, tls: str = "starttls", ca_file: str | None = None,
                 verify: bool | ssl.SSLContext = True, resource: str | None = None,
                 timeout: float = 30.0,
                 stream_management: bool = True, reconnect: bool = True,
                 max_stanza_size: int = 1 << 20, keepalive: float = 60.0,
                 mechanisms: list[str] | None = None, lang: str = "en",
                 reconnect_max_delay: float = 30.0, ack_every: int = 32,
                 ssl_context: ssl.SSLContext | None = None, resolver: Any | None = None,
                 max_inbox: int | None = DEFAULT_MAX_INBOX,
                 load_extensions: bool = True,
                 omemo_store: str | os.PathLike[str] | None = None) -> None:
        self.account = JID(jid)
        self.omemo_store = os.fspath(omemo_store) if omemo_store is not None else None
        """The OMEMO store file given to the constructor (None: the default, see
        [OMEMO][simplexmpp.ext.omemo.OMEMO])."""
        self.mechanisms = mechanisms
        self._check_account(password)
        if tls not in ("starttls", "direct", "none"):
            raise ValueError(f"tls must be 'starttls', 'direct' or 'none', not {tls!r}")
        if tls == "none" and host is not None and not is_loopback(host):
            raise ValueError("tls='none' (plain text) is only allowed to a loopback address; "
                             f"{host!r} is not one")
        if resource is not None:
            self.account = self.account.with_resource(resource)  # validates it (PRECIS)
        self.host = host
        self.port = port
        self.tls = tls
        self.ssl_context: ssl.SSLContext | None = _check_tls_settings(ca_file, verify,
                                                                      ssl_context)
        """The TLS context of every handshake when given (`ssl_context=` or `verify=` a
        context); None: one built from `ca_file` and `verify`."""
        self.ca_file = ca_file
        if self.ssl_context is not None:
            verify = self.ssl_context.verify_mode != ssl.CERT_NONE
        self.verify = bool(verify)
        self.resolver = resolver
        """The `dns.resolver.Resolver` of the SRV lookups (None: the system's)."""
        if not verify:
            log.warning("TLS certificate verification is OFF for %s: anyone on the network "
                        "path can read and change this session", self.account)
        self.timeout = timeout_seconds(timeout)
        """Seconds a blocking call waits when it is given no `timeout` (the default of every
        `timeout=None`)."""
        self.stream_management = stream_management
        self.reconnect = reconnect
        self.reconnect_max_delay = reconnect_max_delay
        self.max_stanza_size = max_stanza_size
        self.keepalive = keepalive
        self.ack_every = ack_every
        self.mechanisms = mechanisms
        self.lang = lang
        self._password = password

        self._lock = threading.RLock()                 # stream state + outgoing buffer
        self._changed = threading.Condition(self._lock)  # ready/drained/acked notifications
        self._outbuf = bytearray()
        self._stream: ClientStream | None = None
        self._wire: Wire | None = None
        self._state = "disconnected"   # disconnected, connecting, ready, reconnecting, closing
        self._closing = False
        self._close_expected = False  # see expect_server_close()
        self._error: BaseException | None = None
        self._sm_state: SMState | None = None
        self._io_idle = True   # the I/O thread may be waiting: queued output must wake it
        self._ready_future: concurrent.futures.Future[JID] | None = None
        self._io_thread: threading.Thread | None = None
        # Set by a Pool: the shared thread that takes over ready connections (see
        # transport.Hub); None = this client's I/O thread keeps its connection.
        self._hub: Hub | None = None
        self._in_hub = False           # the hub drives the current connection
        self._done: threading.Event | None = None  # set by _finish: the client has stopped
        self._attempt = 0              # reconnect attempts since the last session
        self._lost_at: float | None = None  # when the connection was lost (None: not lost)
        self._failed_attempts = 0      # reconnect attempts failed since then
        self._sessions_before = 0
        self._io_timeout = self.timeout
        self._sending = bytearray()    # taken from _outbuf, being written (I/O side only)
        self._negotiation_deadline: float | None = None
        # The event bus and the dispatcher thread (callbacks, handlers, done-callbacks).
        self._events = Dispatcher(f"simplexmpp-dispatch-{self.account.bare}", EVENTS,
                                  lambda: self.dispatcher_idle)
        # The sans-IO session: pending IQs, duplicate window, IQ routing, roster, timers.
        self._core: SessionCore[IqFuture] = SessionCore(self.account)
        self._iq_handlers: dict[tuple[str, str], Callable[[Iq], object]] = {}
        self._interceptors: dict[str, list[_Interceptor]] = {}
        self._interceptor_index: dict[str, _InterceptorIndex] = {}
        # Received messages waiting for messages()/next_message(): bare elements, wrapped
        # in a Message as they are taken (a wrapper made late costs nothing, and each
        # waiting message is one object fewer for the garbage collector to walk). Bounded:
        # the I/O thread never waits for a reader (see docs/reliability.md, "A reader that
        # falls behind").
        self._inbox: Inbox[Message] = Inbox(
            max_inbox, convert=_wrap_message, name=f"the inbox of {self.account.bare}",
            hint="Read messages()/next_message(), register a \"message\" callback, or "
                 "raise Client(max_inbox=...).")
        self._inbox_used = False
        # Messages and presences sent (IQs have their answers), and how many of them a flush
        # ping confirmed: what a flush without XEP-0198 can tell (see _flush).
        self._sent = 0
        self._confirmed = 0
        self._presences = PresenceBook()
        self.jid: JID | None = None
        self.mechanism: str | None = None   # the SASL mechanism of the current session
        self.features: ET.Element | None = None
        self._last_presence: Presence | None = None
        self._sessions = 0   # sessions established (or resumed) so far
        self._first_connected: datetime | None = None  # when the first session was ready
        self._session: Session | None = None  # the current (or last) session
        self._new_sessions = 0     # new sessions (not resumptions) so far: Session.number
        self._connect_pending = True   # the next new session is the first since connect()
        self._session_up = False   # a session is established on the current connection
        # Attached extensions by class, and per lifecycle hook the extensions that follow it.
        self._extensions: dict[type[Extension], Extension] = {}
        self._extension_lock = threading.RLock()
        self._hooks: dict[str, list[Extension]] = {}
        self.local_features: set[str] = {PING_NS, "http://jabber.org/protocol/disco#info",
                                         SID_NS}
        """What this client advertises in XEP-0030 disco#info; extensions add theirs."""
        self.local_identities: set[tuple[str, str, str]] = {("client", "pc", "simplexmpp")}
        """(category, type, name) identities for disco#info (XEP-0030 §3.1)."""
        self.presence_decorators: list[Callable[[Presence], None]] = []
        """For extensions: callables that add children to every available presence this client sends
        with `send_presence()` (XEP-0115 caps, for one)."""
        self.register_iq_handler("get", "{%s}ping" % PING_NS, lambda iq: None)
        self._load_extensions()
        if load_extensions:
            self._attach_installed()

    def _load_extensions(self) -> None:
        """Attach the built-in extensions (`client.disco`, `client.muc` …)."""
        from . import ext
        ext.attach(self)

    def _attach_installed(self) -> None:
        """Attach the extensions installed packages register in the entry-point group
        `simplexmpp.extensions` (found once per process, see
        [installed_extensions][simplexmpp.extension.installed_extensions]). One that cannot
        be attached is logged and skipped: a broken plug-in does not stop the client."""
        for cls in installed_extensions():
            try:
                self.extension(cls)
            except Exception:  # noqa: BLE001 - reported, the client works without it
                log.exception("could not attach the installed extension %s.%s",
                              cls.__module__, cls.__qualname__)

    # ------------------------------------------------------------------------------------
    # Extensions (see simplexmpp.extension and docs/extensions/writing.md)

    def extension(self, cls: type[E]) -> E:
        """Attach an extension: create one `cls(client)`, make it `client.<cls.name>`,
        add its `features` to our disco#info and caps hash and register the lifecycle
        hooks it overrides. Attached once: later calls return the same object.

        Raises:
            TypeError: `cls` is not a subclass of [Extension][simplexmpp.extension.Extension].
            ValueError: its `name` is not an identifier, starts with `_`, or is taken by
                another attribute of the client (or another extension).

        Example:
            ```python
            weather = client.extension(Weather)
            assert client.weather is weather is client.extension(Weather)
            ```
        """
        if not (isinstance(cls, type) and issubclass(cls, Extension)):
            raise TypeError(f"client.extension() takes a subclass of simplexmpp.Extension, "
                            f"not {cls!r}")
        with self._extension_lock:
            existing = self._extensions.get(cls)
            if existing is not None:
                return existing  # type: ignore[return-value]  # keyed by its class
            name = cls.name
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"{cls.__qualname__}.name must be a public Python identifier "
                                 f"(it becomes client.<name>), not {name!r}")
            if name in self.__dict__ or hasattr(type(self), name):
                raise ValueError(f"cannot attach {cls.__qualname__} as client.{name}: the "
                                 "client already has an attribute of that name")
            instance = cls(self)
            setattr(self, name, instance)
            self._extensions[cls] = instance
            self.local_features.update(cls.features)
            if cls.follow_sessions_from_start:
                self._follow_sessions(instance)
        if cls.features and self._state == "ready" and self._last_presence is not None:
            disco = getattr(self, "disco", None)
            if disco is not None:  # XEP-0115 §4: announce the new hash
                self._events.dispatch(disco.update_caps)
        return instance

    @property
    def extensions(self) -> dict[str, Extension]:
        """The attached extensions by name (a copy)."""
        with self._extension_lock:
            return {type(e).name: e for e in self._extensions.values()}

    @property
    def session(self) -> Session | None:
        """The current session (the last one while reconnecting), or None before the
        first."""
        return self._session

    def set_password(self, password: str) -> None:
        """The password to log in with from now on (reconnects included), after the
        account's password was changed (XEP-0077 §3.3 does it for you)."""
        self._password = password

    def _follow_sessions(self, extension: Extension) -> None:
        """Register the lifecycle hooks `extension` overrides (once each)."""
        with self._lock:
            for hook in type(extension).overridden_hooks():
                followers = self._hooks.get(hook, [])
                if extension not in followers:
                    # A new list: _run_hooks may be iterating over the old one.
                    self._hooks[hook] = followers + [extension]

    def _run_hooks(self, hook: str, arg: object) -> None:
        """Queue `hook(arg)` of every extension that follows it on the dispatcher."""
        for extension in self._hooks.get(hook, ()):
            self._events.dispatch(getattr(extension, hook), arg)

    # ------------------------------------------------------------------------------------
    # Connecting and disconnecting

    @property
    def is_connected(self) -> bool:
        """True while a session is established (False while reconnecting)."""
        return self._state == "ready"

    def connect(self, timeout: float | None = None) -> Client:
        """Connect, secure, authenticate and bind; return self once the session is ready.

        A client may be connected again after [disconnect][simplexmpp.Client.disconnect]
        (or after it stopped for good): that is a fresh start, like the first one. Messages
        still unread in the inbox stay readable; `messages()` and `next_message()` wait
        for the new session's.

        Raises [`ConnectionError`][simplexmpp.errors.ConnectionError],
        [`TLSError`][simplexmpp.errors.TLSError],
        [`AuthenticationError`][simplexmpp.errors.AuthenticationError],
        [`StreamError`][simplexmpp.errors.StreamError] or
        [`TimeoutError`][simplexmpp.errors.TimeoutError].
        """
        timeout = self._timeout(timeout)
        with self._lock:
            if self._state in ("ready", "connecting", "reconnecting"):
                if self._state == "ready":
                    return self
                raise XMPPError("connect() is already in progress")
            previous = self._done
        if previous is not None and not previous.is_set():
            # The last session is still stopping (its I/O thread runs _finish): let it end
            # before this one starts, or its end would close the new session's inbox.
            self._join_threads(min(timeout, 5.0))
        with self._lock:
            if self._state != "disconnected":
                raise XMPPError("connect() is already in progress")
            self._state = "connecting"
            self._closing = False
            self._close_expected = False
            self._error = None
            self._ready_future = concurrent.futures.Future()
            ready = self._ready_future
            self._inbox.reopen()  # the end marker of the last session is forgotten
        self._join_threads(0)
        self._attempt = 0
        self._lost_at = None
        self._sessions_before = self._sessions
        self._connect_pending = True
        self._done = threading.Event()
        _track(self)
        self._start_io_thread(timeout)
        try:
            ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self._abort()
            raise errors.TimeoutError(
                f"connecting {self.account.bare} did not complete within {timeout:g} s") from None
        except XMPPError as exc:
            self._join_threads(5)
            raise exc.with_traceback(None) from None
        return self

    def disconnect(self, timeout: float | None = None) -> None:
        """Flush what was sent, close the stream cleanly and stop the threads.

        Nothing `send_message()` accepted is dropped silently: the server must acknowledge it
        (XEP-0198) or answer a ping sent after it; otherwise
        [`NotSentError`][simplexmpp.errors.NotSentError] lists the stanza ids that may not have been
        delivered.

        `timeout` (None: the client's) is the whole budget: flushing, the closing
        handshake and stopping the threads. A server that does not answer in time has its
        connection cut when the budget is spent; the call returns a moment later.
        """
        timeout = self._timeout(timeout)
        outcome = _close_clients([(self, time.monotonic() + timeout)])[0]
        if outcome is not None:
            raise outcome

    # The steps of disconnect(), run for several clients side by side at interpreter exit
    # (see _close_clients): ask for confirmation, wait for it, close, stop.

    def _ask_confirmation(self) -> tuple[IqFuture, int] | None:
        """Step 1 of a flush, not waiting: ask the server to confirm what it has handled, by
        an XEP-0198 `<r/>` (the answer counts what it handled), or else a ping, whose answer
        proves everything sent before it was handled (RFC 6120 §10.1: stanzas on one stream
        are handled in order). Returns the ping's future and what it confirms (see
        _send_flush_ping), or None."""
        with self._lock:
            stream = self._stream
            if self._state != "ready" or stream is None or stream.state != "ready":
                return None
            if stream.sm is not None:
                self._request_ack()
                ping = None
            else:
                ping = True
        if ping is None:
            self._wake()
            return None
        try:
            return self._send_flush_ping(0)
        except XMPPError:
            return None

    def _request_ack(self) -> bool:
        """Queue an XEP-0198 `<r/>` unless one is still unanswered (see
        [SessionCore.request_ack][simplexmpp.session.SessionCore.request_ack]). The caller
        holds the lock. Returns whether one was queued."""
        if not self._core.request_ack():
            return False
        self._take_output()
        return True

    def _send_flush_ping(self, timeout: float) -> tuple[IqFuture, int]:
        """A ping whose answer confirms the stanzas sent before it: its future, and how many
        messages and presences were sent by then."""
        with self._lock:
            mark = self._sent
            future = self.send_iq(Iq.get(self.account.domain,
                                         ET.Element("{%s}ping" % PING_NS)), timeout)
        return future, mark

    def _flush_until(self, deadline: float,
                     ping: tuple[IqFuture, int] | None = None) -> tuple[bool, list[str]]:
        """Flush, riding out reconnects, until everything is confirmed or the deadline.
        Returns (everything confirmed, ids of the stanzas not confirmed)."""
        while True:
            with self._changed:
                while self._state != "ready" or self._stream is None or \
                        self._stream.state != "ready":
                    left = deadline - time.monotonic()
                    if self._state not in ("ready", "reconnecting") or left <= 0:
                        ids = self._unacked_ids()
                        return not ids and self._all_confirmed(), ids
                    self._changed.wait(min(left, 0.5))
            try:
                confirmed, unconfirmed = self._flush(deadline, ping)
            except XMPPError as exc:
                log.debug("flush before disconnect interrupted: %s", exc)
                unconfirmed = self._unacked_ids()
                confirmed = not unconfirmed and self._all_confirmed()
            ping = None
            if confirmed or time.monotonic() >= deadline:
                return confirmed, unconfirmed
            # The connection was lost during the flush: wait for the next session and retry.

    def _all_confirmed(self) -> bool:
        """With XEP-0198: nothing is unacknowledged (the caller checked); without: a flush
        ping confirmed every stanza sent."""
        stream = self._stream
        return (stream is not None and stream.sm is not None) or self._sent <= self._confirmed

    def _flush(self, deadline: float, ping: tuple[IqFuture, int] | None = None
               ) -> tuple[bool, list[str]]:
        """Wait until the server has handled everything we sent: (confirmed, the ids of the
        stanzas it did not confirm). `ping`: one already sent by _ask_confirmation."""
        stream = self._stream
        if stream is not None and stream.sm is not None:
            with self._lock:
                self._request_ack()
            self._wake()
            with self._changed:
                while (self._stream is stream and stream.sm is not None and stream.sm.unacked
                       and self._state == "ready"):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(min(left, 0.5))
                    # Ask again once the last <r/> was answered (every wake-up here, an
                    # output taken included, used to send another).
                    if stream.sm.unacked and self._stream is stream and \
                            self._state == "ready" and self._request_ack():
                        self._wake()
            ids = self._unacked_ids()
            return not ids, ids
        # Without stream management: the server handles stanzas in order, so the answer to a
        # ping sent last proves everything before it was handled (RFC 6120 §10.1). An error
        # answer (a server without XEP-0199) proves it just as well.
        if ping is None:
            ping = self._send_flush_ping(max(0.0, deadline - time.monotonic()))
        future, mark = ping
        try:
            future.result(max(0.0, deadline - time.monotonic()))
        except IqError:
            pass
        except concurrent.futures.TimeoutError:
            return self._sent <= self._confirmed, []  # confirmed if nothing was sent since
        with self._lock:
            self._confirmed = max(self._confirmed, mark)
        return self._sent <= self._confirmed, []

    def _unacked_ids(self) -> list[str]:
        # Under the lock: the I/O thread trims the XEP-0198 queue as acks arrive, and a
        # copy taken without it can fail with "deque mutated during iteration".
        with self._lock:
            return list(self._core.unacked_ids())

    def _begin_close(self) -> None:
        """Step 3: queue our closing footer (RFC 6120 §4.4) and let the threads wind down."""
        with self._lock:
            self._closing = True
            if self._stream is not None and self._state == "ready":
                self._stream.close()
                self._take_output()
            running = self._done is not None and not self._done.is_set()
            self._state = "closing" if running else "disconnected"
            self._changed.notify_all()
        if self._wire is not None:
            self._wire.wake()

    # Seconds a connection cut at the end of the budget of disconnect() gets to stop.
    _stop_grace = 0.5

    def _end_close(self, deadline: float) -> None:
        """Step 4: wait until the deadline for the server's closing footer and the threads'
        end; past it, cut the connection (the I/O thread then ends at once)."""
        self._join_threads(max(0.0, deadline - time.monotonic()))
        if self._done is not None and not self._done.is_set():
            self._abort()
            self._join_threads(self._stop_grace)
        # The session was closed on purpose: the next connect() is a fresh start, like the
        # first one (no resumption of a session the server has ended, no presence of old).
        self._sm_state = None
        self._last_presence = None

    def _abort(self) -> None:
        """Tear the connection down now (no flush)."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        if self._wire is not None:
            self._wire.shutdown()

    def expect_server_close(self, expected: bool = True) -> None:
        """For extensions: the server is about to end this stream on purpose (XEP-0077 §3.2
        closes it after removing the account), so its closing ends the client cleanly: no
        reconnect, and the "disconnected" event carries no error."""
        self._close_expected = expected

    @classmethod
    def register(cls, jid: JID | str, password: str, **connection_kwargs: Any) -> None:
        """Create the account `jid` with `password` by XEP-0077 in-band registration, on a
        stream of its own (closed again before returning); afterwards the account can log in.

        `connection_kwargs` are those of the constructor (`host`, `port`, `tls`,
        `ca_file`, `timeout` …) plus `fields` (extra registration fields). Raises
        `AccountExistsError`, `RegistrationNotSupportedError` or `RegistrationError`
        from [`simplexmpp.ext.register`][simplexmpp.ext.register], or the usual connection errors.
        """
        from .ext.register import register_account
        register_account(jid, password, **connection_kwargs)

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.disconnect()
        except XMPPError:
            if exc_info[0] is None:
                raise
            log.exception("disconnect after an error failed")

    def _timeout(self, timeout: float | None) -> float:
        """The seconds a blocking call given `timeout` waits (None: the client's
        `timeout`); every blocking call goes through here (see `timeout_seconds`)."""
        return timeout_seconds(self.timeout if timeout is None else timeout)

    # ------------------------------------------------------------------------------------
    # Threads

    ack_delay = 0.05
    """Longest a XEP-0198 `<a/>` waits for other output to ride along with (seconds)."""

    dispatcher_idle = 10.0
    """Seconds the dispatcher thread waits for work before it ends; the next callback starts a new
    one. Idle clients (a Pool of them, say) then hold only their I/O thread."""

    def _join_threads(self, timeout: float) -> None:
        """Wait up to `timeout` seconds in all for the client's threads to end."""
        end = time.monotonic() + timeout
        current = threading.current_thread()
        done = self._done
        hub = self._hub
        if done is not None and current is not self._io_thread and \
                not (hub is not None and hub.is_hub_thread()):
            done.wait(timeout)  # covers a connection the hub drives (no I/O thread then)
        io = self._io_thread
        if io is not None and io is not current:
            io.join(max(0.0, end - time.monotonic()))
            if not io.is_alive():
                self._io_thread = None
        if self._io_thread is None:
            self._events.join(max(0.0, end - time.monotonic()))

    def _start_io_thread(self, timeout: float, delay: float = 0.0) -> None:
        self._io_thread = threading.Thread(target=self._io_main, args=(timeout, delay),
                                           name=f"simplexmpp-io-{self.account.bare}",
                                           daemon=True)
        self._io_thread.start()

    def _io_main(self, timeout: float, delay: float = 0.0) -> None:
        """The I/O thread: connect, run, and reconnect until told to stop, or until a shared
        [`Hub`][simplexmpp.transport.Hub] takes the ready connection over."""
        while True:
            if delay and self._sleep_unless_closing(delay):
                self._finish(None)
                return
            try:
                if self._run_connection(timeout):
                    return  # the hub drives the connection from now on
                error: BaseException | None = None
            except BaseException as exc:  # noqa: BLE001 - reported, never lost
                error = self._io_error(exc)
            next_delay = self._connection_ended(error)
            if next_delay is None:
                return
            delay = next_delay

    def _io_error(self, exc: BaseException) -> BaseException:
        """What a failure of the connection is reported as."""
        if isinstance(exc, XMPPError):
            return exc
        if isinstance(exc, OSError):  # resets, broken pipes, TLS records cut short
            return errors.ConnectionError(f"connection to {self.account.domain} lost: {exc}")
        log.exception("unexpected failure in the I/O thread", exc_info=exc)
        return errors.ConnectionError(f"connection failed: {exc!r}")

    def _connection_ended(self, error: BaseException | None) -> float | None:
        """The connection is gone (cleanly when `error` is None). Returns the delay before
        the next attempt, or None once the client has stopped for good (then it has run
        `_finish`). Runs on the I/O thread, or on the hub's thread for a hub connection."""
        with self._lock:
            if self._stream is not None:
                self._stream.connection_lost()
            if self._state == "ready":
                self._state = "reconnecting"
            self._in_hub = False
            self._changed.notify_all()
        if self._wire is not None:
            self._wire.close()
        if self._session_up:
            self._session_up = False
            self._run_hooks("session_lost", error)
        if self._sessions != self._sessions_before:
            self._attempt = 0  # this connection worked: start the backoff afresh
        self._sessions_before = self._sessions
        ready = self._ready_future
        if ready is not None and not ready.done():
            ready.set_exception(error or DisconnectedError("server closed the stream"))
            self._finish(error if not self._closing else None)
            return None
        if self._close_expected:
            self._closing = True  # the server ended the stream as announced: no error
        if self._closing or not self.reconnect or isinstance(error, _RECONNECT_FATAL) or (
                # Another session took our resource: fighting back would loop forever.
                isinstance(error, StreamError) and error.condition == "conflict"):
            self._finish(error if not self._closing else None)
            return None
        with self._lock:
            self._state = "reconnecting"
            self._changed.notify_all()
        self._events.emit("reconnecting", error)
        if isinstance(error, StreamError) and error.other_host:
            self.host, _, port = error.other_host.rpartition(":") if \
                error.other_host.count(":") == 1 else (error.other_host, "", "")
            self.port = int(port) if port.isdigit() else self.port
        # First retry at once (a quick resumption keeps the session); then exponential
        # backoff with jitter, capped.
        delay = 0.0 if self._attempt == 0 else min(
            self.reconnect_max_delay, 0.25 * 2 ** (self._attempt - 1)) * random.uniform(0.5, 1)
        self._attempt = min(self._attempt + 1, 20)
        # One WARNING when the connection is lost and one INFO when it is back (_on_ready);
        # the attempts in between at DEBUG, so an outage does not flood the log.
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._failed_attempts = 0
            log.warning("connection to %s lost (%s); reconnecting", self.account.domain, error)
        else:
            self._failed_attempts += 1
            log.debug("reconnect attempt %d to %s failed (%s); next in %.1f s",
                      self._failed_attempts, self.account.domain, error, delay)
        return delay

    def _sleep_unless_closing(self, delay: float) -> bool:
        with self._changed:
            end = time.monotonic() + delay
            while not self._closing:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._state = "disconnected"
            self._error = error
            pending = self._core.take_pending()
            # Under the lock, with the state: a connect() right after this reopens the
            # inbox, never before it was closed here.
            self._inbox.close()
            _untrack(self)
            done = self._done
            self._changed.notify_all()
        for future in pending:
            if not future.done():
                future.set_exception(DisconnectedError(
                    "the connection closed before the reply arrived"
                    + (f": {error}" if error else "")))
        if self.jid is not None or error is not None:
            self._run_hooks("client_stopped", error)
            self._events.emit("disconnected", error)
        self._events.stop()
        if done is not None:
            done.set()

    def _run_connection(self, timeout: float) -> bool:
        """Connect and drive one connection on this thread until it ends (False), or until
        it is ready and handed to the client's hub (True)."""
        # One budget for finding and reaching the server: the SRV lookups get at most half
        # of it (a silent resolver must leave time for the RFC 6120 §3.2.2 fallback to the
        # domain), the connection attempts share what is left.
        deadline = time.monotonic() + timeout
        targets = resolve(self.account.domain, self.host, self.port, self.tls, timeout / 2,
                          resolver=self.resolver)
        sock = None
        target: Target | None = None
        failure: XMPPError | None = None
        for index, target in enumerate(targets):
            if self.tls == "none" and not is_loopback(target.host):
                failure = errors.ConnectionError(
                    f"refusing a plain-text connection to {target.host}: tls='none' is only "
                    "allowed to loopback")
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                failure = errors.TimeoutError(
                    f"no connection to {self.account.domain} within {timeout:g} s"
                    + (f" (last: {failure})" if failure else ""))
                break
            try:
                # Each remaining target gets an equal share, so one that never answers
                # cannot eat the time of the records after it (RFC 2782 order).
                sock = open_socket(target, left / (len(targets) - index))
                break
            except XMPPError as exc:
                failure = exc
        if sock is None or target is None:
            raise failure or errors.ConnectionError(f"no address to connect to for "
                                                    f"{self.account.domain}")
        bindings: dict[str, bytes] = {}
        if target.direct_tls:
            sock = start_tls(sock, self._tls_context(), self.account.domain,
                             timeout)
            bindings = channel_bindings(sock)
        wire = Wire(sock)
        stream = self._new_stream(target, bindings)
        with self._lock:
            if self._closing:
                wire.close()
                return False
            self._wire = wire
            self._stream = stream
            self._outbuf.clear()
            stream.start()
            self._take_output()
        core = self._core
        core.keepalive, core.timeout = self.keepalive, self.timeout
        core.ack_delay, core.ack_every = self.ack_delay, self.ack_every
        with self._lock:
            core.connection_made(stream, time.monotonic())
        self._io_timeout = timeout
        self._negotiation_deadline = time.monotonic() + timeout
        self._sending = bytearray()
        readable = False
        while True:
            step = self._io_step(wire, stream, readable)
            if step is None:
                return False
            hub = self._hub
            if hub is not None and stream.state == "ready" and not self._closing:
                with self._lock:
                    self._in_hub = True
                hub.adopt(self, wire)
                return True
            readable, _ = wire.wait(*step)

    def _io_step(self, wire: Wire, stream: ClientStream,
                 readable: bool) -> tuple[float, bool] | None:
        """One turn of the I/O loop, after the socket was found readable (or not): read and
        handle what arrived, write what is queued, run the timers. Returns how long to sleep
        and whether to wait for the socket to take more, or None once the connection has
        ended cleanly; raises when it failed. Called by this client's I/O thread, or by the
        hub's thread once the hub drives the connection."""
        self._io_idle = False  # the wait is over (see _collect_output)
        if self._negotiation_deadline is not None and \
                time.monotonic() > self._negotiation_deadline:
            raise errors.TimeoutError(
                f"stream negotiation with {self.account.domain} did not finish within "
                f"{self._io_timeout:g} s (stuck while {stream.state})")
        sending = self._sending
        if readable:
            # On a hub, a connection the server floods must not starve the others: it reads
            # at most 1 MiB per turn (the selector reports the rest as readable next turn).
            if self._read(wire, stream, _HUB_READS_PER_TURN if self._in_hub else None):
                return None  # the stream closed cleanly
            if stream.state == "tls-handshake":
                self._upgrade(wire, stream, self._io_timeout)
            if stream.state == "ready":
                self._negotiation_deadline = None
                wire.quickack = False
        self._collect_output(sending, idle=False)  # what came while waiting or reading
        while sending:
            sent = wire.send(sending)
            if not sent:
                break
            if wire_log.isEnabledFor(logging.DEBUG):
                self._log_wire("SEND", bytes(sending[:sent]))
            del sending[:sent]
            self._core.data_sent(time.monotonic())
        if self._closing and stream.state == "closed" and not sending:
            return None
        now = time.monotonic()
        with self._lock:
            if self._core.handle_timer(now):
                self._take_output()
        # About to wait: output queued from now on must wake us (see _wake); what was queued
        # meanwhile (the timers' <r/> or ping too) is written on the next turn.
        self._collect_output(sending, idle=True)
        return self._core.next_deadline(now) - now, bool(sending)

    def _hub_step(self, readable: bool) -> tuple[float, bool] | None:
        """One turn of the I/O loop on the hub's thread (see transport.Hub)."""
        wire, stream = self._wire, self._stream
        assert wire is not None and stream is not None
        return self._io_step(wire, stream, readable)

    def _hub_ended(self, exc: BaseException | None) -> None:
        """The hub let go of our connection: stop, or reconnect on an I/O thread again."""
        delay = self._connection_ended(None if exc is None else self._io_error(exc))
        if delay is not None:
            self._start_io_thread(self._io_timeout, delay)

    def _new_stream(self, target: Target, bindings: dict[str, bytes]) -> ClientStream:
        """The sans-IO stream machine for one connection (`Component` supplies its own)."""
        return ClientStream(
            self.account, self._password,
            tls="direct" if target.direct_tls else ("none" if self.tls == "none" else "starttls"),
            resource=self.account.resource, sm=self.stream_management, sm_state=self._sm_state,
            mechanisms=self.mechanisms, max_stanza_size=self.max_stanza_size, lang=self.lang,
            channel_bindings=bindings)

    def _check_account(self, password: str | None) -> None:
        if self.account.local is None and password is not None and self.mechanisms is None:
            raise errors.JIDError(f"{self.account} has no localpart; an account JID looks "
                                  "like user@example.org")

    def _read(self, wire: Wire, stream: ClientStream, max_reads: int | None = None) -> bool:
        """Read and handle everything available, or `max_reads` socket reads of it; True
        once the stream has closed."""
        reads = 0
        while max_reads is None or reads < max_reads:
            reads += 1
            data = wire.recv()
            if data is None:
                return False
            if not data:
                if stream.state in ("closing", "closed"):
                    return True
                raise errors.ConnectionError(
                    f"the server closed the connection ({stream.state})")
            self._core.data_received(time.monotonic())
            if wire_log.isEnabledFor(logging.DEBUG):
                self._log_wire("RECV", data)
            failure: StreamError | None = None
            # During negotiation the stream computes SCRAM's salted password, as slow as the
            # server's iteration count makes it: not under the lock, which connect() and
            # disconnect() need to give up in time (issue 14). No other thread touches a
            # stream before its session is ready, so the lock guards nothing there.
            with _UNLOCKED if stream.negotiating else self._lock:
                try:
                    events = stream.receive_data(data)
                except StreamError as exc:
                    # What came before the error in the same read still counts (XEP-0077
                    # §3.2: the answer to <remove/> arrives right before the stream error).
                    events, failure = stream.events_before_error, exc
                finally:
                    with self._lock:
                        self._take_output()
            closed = False
            incoming, message = self._incoming, self._incoming_message
            valid = self._core.valid_addresses
            for event in events:
                if type(event) is _ELEMENT:  # a stanza (see stream.Event)
                    sender, to = event.get("from"), event.get("to")
                    if ((sender is not None and sender not in valid)
                            or (to is not None and to not in valid)) \
                            and self._misaddressed(event):
                        continue
                    if event.tag == _MESSAGE:
                        message(event)
                    else:
                        incoming(event)
                elif isinstance(event, AckReceived):
                    with self._lock:
                        self._core.ack_received()
                        self._changed.notify_all()
                elif isinstance(event, Ready):
                    self._on_ready(event.jid, event.features, resumed=False)
                elif isinstance(event, Resumed):
                    self._on_ready(event.jid, stream.features, resumed=True)
                elif isinstance(event, StartTLS):
                    return False
                elif isinstance(event, StreamClosed):
                    closed = True
                elif isinstance(event, Authenticated):
                    self.mechanism = event.mechanism
                    log.debug("authenticated %s with %s", self.account.bare, event.mechanism)
                elif isinstance(event, NonzaReceived):
                    log.debug("ignoring top-level <%s>", event.element.tag)
            if failure is not None:
                raise failure
            if closed:
                if not self._closing:
                    raise errors.ConnectionError("the server closed the stream")
                return True
        return False  # more may be waiting: the caller comes back (the hub, next turn)

    def _tls_context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        return ssl_context(self.ca_file, self.verify)

    def _upgrade(self, wire: Wire, stream: ClientStream, timeout: float) -> None:
        sock = wire.detach_for_blocking(timeout)
        tls_sock = start_tls(sock, self._tls_context(), self.account.domain,
                             timeout)
        wire.replace_socket(tls_sock)
        with self._lock:
            stream.tls_established(channel_bindings(tls_sock))
            self._take_output()

    def _take_output(self) -> None:
        """Move the stream's pending output into the buffer the I/O thread writes (locked)."""
        stream = self._stream
        if stream is not None:
            data = stream.data_to_send()
            if data:
                self._outbuf += data

    def _collect_output(self, sending: bytearray, idle: bool) -> None:
        """I/O thread: move what other threads queued into `sending`. With `idle` it is
        about to wait: output queued after this must wake it (see `_wake()`)."""
        with self._lock:
            if self._outbuf:
                sending += self._outbuf
                self._outbuf.clear()
                self._changed.notify_all()
            self._io_idle = idle

    def _wake(self) -> None:
        """After queueing output (under the lock, before this call): wake the I/O thread if
        it may be waiting. While it is busy it collects everything queued before it next
        waits, so a burst of sends costs one wake-up, not one per stanza."""
        wire = self._wire
        if wire is not None and self._io_idle and \
                threading.current_thread() is not self._io_thread:
            self._io_idle = False
            wire.wake()

    def _log_wire(self, direction: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        text = _REDACT.sub(lambda m: (m.group(1) or m.group(3)) + "[redacted]", text)
        wire_log.debug("%s %s: %s", self.account.bare, direction, text)

    def _on_ready(self, jid: JID, features: ET.Element | None, resumed: bool) -> None:
        stream = self._stream
        now = datetime.now(timezone.utc)
        with self._lock:
            self.jid = jid
            self.features = features
            self._state = "ready"
            self._sessions += 1
            self._session_up = True
            if self._first_connected is None:
                self._first_connected = now
            last = self._session
            if resumed and last is not None:
                session = Session(last.number, last.first, jid, True, last.started,
                                  last.connected)
            else:
                self._new_sessions += 1
                first = self._connect_pending or last is None
                self._connect_pending = False
                session = Session(self._new_sessions, first, jid, False, now,
                                  now if first or last is None else last.connected)
            self._session = session
            if stream is not None and stream.sm is not None and stream.sm.resumable:
                self._sm_state = stream.sm
            elif not resumed:
                self._sm_state = None
            self._changed.notify_all()
        ready = self._ready_future
        reconnected = ready is not None and ready.done()
        if ready is not None and not ready.done():
            ready.set_result(jid)
        if self._lost_at is not None:
            log.info("connection to %s back after %.1f s and %d failed attempt(s) (%s)",
                     self.account.domain, time.monotonic() - self._lost_at,
                     self._failed_attempts, "stream resumed" if resumed else "new session")
            self._lost_at = None
        if resumed:
            self._run_hooks("session_resumed", session)
            self._events.emit("resumed", jid)
        else:
            self._presences.clear()
            if self._last_presence is not None:
                self._send_reply(self._last_presence)
            # The extensions restore their state first (rooms entered, carbons enabled): an
            # archive catch-up below may take long, and what arrives meanwhile needs them.
            self._run_hooks("session_started", session)
            if reconnected:
                # What the lost session held undelivered may be gone (a server drops the
                # queue of a session it cannot resume); an archive can fill the gap.
                self._events.emit("resumption_failed", self._core.last_stanza_id)
            self._events.emit("connected", jid)

    # ------------------------------------------------------------------------------------
    # Sending

    def send(self, stanza: Stanza | ET.Element, timeout: float | None = None) -> None:
        """Send a stanza (any `Message`, `Presence`, `Iq` or raw element).

        While the client is reconnecting this waits (up to `timeout`) for the session to come back;
        once disconnected it raises [`DisconnectedError`][simplexmpp.errors.DisconnectedError].
        """
        element = stanza.xml if isinstance(stanza, Stanza) else stanza
        # Serialised here, once (it validates the characters before anything is queued).
        self._send_text(tostring(element), timeout, element)

    def _send_text(self, text: str, timeout: float | None,
                   element: ET.Element | None = None) -> None:
        """Queue serialised XML (see [`send()`][simplexmpp.Client.send]): `element` serialised,
        which the stream gets too (it tells stanzas from nonzas; a component's stream completes the
        addresses and serialises again), or, without it, a stanza written directly."""
        if len(text) > self.max_stanza_size:
            raise InvalidStanzaError(f"stanza of {len(text)} bytes exceeds max_stanza_size "
                                     f"({self.max_stanza_size})")
        if timeout is not None:  # checked even when the ready stream will not need it
            timeout = timeout_seconds(timeout)
        with self._lock:  # the lock of self._changed, so _wait_ready may wait on it
            stream = self._wait_ready(timeout)
            if element is None:
                stream.send_text(text)
            else:
                stream.send(element, text)
            if element is None or element.tag != _IQ:
                self._sent += 1  # an IQ is confirmed by its answer; others need a flush
            self._take_output()
            if len(self._outbuf) > 8 << 20:
                # Back-pressure: a sender far ahead of the socket waits for it to drain.
                self._wake()
                end = time.monotonic() + self._timeout(timeout)
                while len(self._outbuf) > 4 << 20 and self._state == "ready":
                    left = end - time.monotonic()
                    if left <= 0:
                        raise errors.TimeoutError("the server is not reading; outgoing buffer "
                                                  "full")
                    self._changed.wait(left)
        self._wake()

    def _wait_ready(self, timeout: float | None) -> ClientStream:
        """Under the lock: the ready session's stream, once there is one (waiting up to
        `timeout`, None: the client's); raise if there will not be one."""
        stream = self._stream
        if self._state == "ready" and stream is not None and stream.state == "ready":
            return stream  # the usual case, without a clock reading
        timeout = self._timeout(timeout)
        end = time.monotonic() + timeout
        while self._state != "ready" or self._stream is None or self._stream.state != "ready":
            if self._state in ("disconnected", "closing") or self._closing:
                raise self._disconnected_error()
            left = end - time.monotonic()
            if left <= 0:
                raise errors.TimeoutError(f"not reconnected within {timeout:g} s")
            self._changed.wait(left)
        return self._stream

    def _disconnected_error(self) -> DisconnectedError:
        if self._error is not None:
            exc = DisconnectedError(f"the client is disconnected: {self._error}")
            exc.__cause__ = self._error
            return exc
        return DisconnectedError("the client is not connected; call connect() first")

    def new_message(self, to: JID | str, body: str | None, type: str = "chat", *,
                    subject: str | None = None, thread: str | None = None) -> Message:
        """A message ready for [`send()`][simplexmpp.Client.send]: `type` and text checked, a fresh
        id, and an XEP-0359 origin-id equal to the id, by which receivers drop duplicates after a
        reconnect. Extensions add their payload to it before sending it."""
        recipient = _checked_message(to, body, type, subject, thread)
        # Built directly (hot path): the same element Message(to=, type=, id=, subject=,
        # body=, thread=) builds, children in that order, then the origin-id.
        stanza_id = new_id()
        element = _ELEMENT(_MESSAGE, {"to": str(recipient), "type": type, "id": stanza_id})
        if subject is not None:
            _SUB_ELEMENT(element, _SUBJECT).text = subject
        if body is not None:
            _SUB_ELEMENT(element, _BODY).text = body
        if thread is not None:
            _SUB_ELEMENT(element, _THREAD).text = thread
        _SUB_ELEMENT(element, _ORIGIN_ID, {"id": stanza_id})
        return _wrap_message(element)

    def send_message(self, to: JID | str, body: str | None, type: str = "chat", *,
                     subject: str | None = None, thread: str | None = None,
                     timeout: float | None = None) -> str:
        """Send a message (see [`new_message()`][simplexmpp.Client.new_message]); return its id."""
        recipient = _checked_message(to, body, type, subject, thread)
        stanza_id = new_id()
        # Hot path: written directly, byte for byte what tostring(new_message(...).xml) gives
        # (tests/unit/test_stanza.py compares them), without building the element first.
        parts = ['<message to="', _escape(str(recipient)), '" type="', type, '" id="',
                 stanza_id, '">']
        for value, start, end in ((subject, "<subject", "</subject>"),
                                  (body, "<body", "</body>"),
                                  (thread, "<thread", "</thread>")):
            if value is not None:
                parts += (start, ">", _escape(value), end) if value else (start, "/>")
        parts += ('<origin-id xmlns="', SID_NS, '" id="', stanza_id, '"/></message>')
        self._send_text("".join(parts), timeout)
        return stanza_id

    def send_presence(self, show: str | None = None, status: str | None = None,
                      priority: int = 0, to: JID | str | None = None, *,
                      type: str | None = None, timeout: float | None = None) -> None:
        """Broadcast our presence, or send it to one entity (directed presence)."""
        presence = Presence(to=to, type=type, show=show, status=status,
                            priority=priority if priority else None)
        if type is None:
            for decorate in list(self.presence_decorators):
                decorate(presence)
        self.send(presence, timeout)
        if to is None:
            # Broadcast presence is session state: a new session after a reconnect gets it
            # again (a resumed one still has it).
            self._last_presence = None if type == "unavailable" else presence

    @property
    def broadcast_presence(self) -> Presence | None:
        """The available presence last broadcast with `send_presence()`, or None."""
        return self._last_presence

    def subscribe(self, jid: JID | str, timeout: float | None = None) -> None:
        """Ask to see `jid`'s presence (RFC 6121 §3.1.1).

        While the client is reconnecting this waits up to `timeout` (None: the client's)
        for the session to come back, then raises
        [TimeoutError][simplexmpp.errors.TimeoutError].
        """
        self.send(Presence(to=JID(str(jid)).bare, type="subscribe", id=new_id()), timeout)

    def unsubscribe(self, jid: JID | str, timeout: float | None = None) -> None:
        """Stop seeing `jid`'s presence (RFC 6121 §3.3).

        While the client is reconnecting this waits up to `timeout` (None: the client's)
        for the session to come back, then raises
        [TimeoutError][simplexmpp.errors.TimeoutError].
        """
        self.send(Presence(to=JID(str(jid)).bare, type="unsubscribe", id=new_id()), timeout)

    def approve(self, jid: JID | str, timeout: float | None = None) -> None:
        """Let `jid` see our presence (RFC 6121 §3.1.4, also pre-approval §3.4).

        While the client is reconnecting this waits up to `timeout` (None: the client's)
        for the session to come back, then raises
        [TimeoutError][simplexmpp.errors.TimeoutError].
        """
        self.send(Presence(to=JID(str(jid)).bare, type="subscribed", id=new_id()), timeout)

    def deny(self, jid: JID | str, timeout: float | None = None) -> None:
        """Refuse, or cancel, `jid`'s subscription to our presence (RFC 6121 §3.2).

        While the client is reconnecting this waits up to `timeout` (None: the client's)
        for the session to come back, then raises
        [TimeoutError][simplexmpp.errors.TimeoutError].
        """
        self.send(Presence(to=JID(str(jid)).bare, type="unsubscribed", id=new_id()), timeout)

    def presence_of(self, jid: JID | str) -> dict[str, Presence]:
        """The latest available presence of each resource of `jid` we know of."""
        return self._presences.of(JID(str(jid)))

    # ------------------------------------------------------------------------------------
    # IQ

    def send_iq(self, iq: Iq, timeout: float | None = None) -> IqFuture:
        """Send an IQ request; the future resolves to the result `Iq` or fails with
        [`IqError`][simplexmpp.errors.IqError] (or
        [`DisconnectedError`][simplexmpp.errors.DisconnectedError])."""
        if iq.type not in ("get", "set"):
            raise InvalidStanzaError(f"send_iq() sends get/set requests, not {iq.type!r}")
        if not iq.id:
            iq.id = new_id()
        if timeout is not None:
            timeout = timeout_seconds(timeout)  # a bad one fails before anything is pending
        future = IqFuture(self)
        to = iq.xml.get("to")
        with self._lock:
            self._core.expect_reply(iq.id, to, future)
        try:
            self.send(iq, timeout)
        except BaseException:
            with self._lock:
                self._core.forget(iq.id)
            raise
        return future

    def iq(self, iq: Iq, timeout: float | None = None) -> Iq:
        """Send an IQ request and wait for the result (raises IqError on an error reply)."""
        timeout = self._timeout(timeout)
        future = self.send_iq(iq, timeout)
        try:
            result: Iq = future.result(timeout)
            return result
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._core.forget(iq.id or "")
            raise errors.TimeoutError(
                f"no answer to the IQ {iq.type} {self._payload_name(iq)} sent to "
                f"{iq.to or self.account.domain} within {timeout:g} s") from None
        except XMPPError as exc:
            raise exc.with_traceback(None) from None
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt, say): nothing is left behind.
            with self._lock:
                self._core.forget(iq.id or "")
            raise

    @staticmethod
    def _payload_name(iq: Iq) -> str:
        payload = iq.payload
        return "" if payload is None else payload.tag

    def ping(self, to: JID | str | None = None, timeout: float | None = None) -> float:
        """XEP-0199 ping; return the round-trip time in seconds."""
        started = time.perf_counter()
        self.iq(Iq.get(to if to is not None else self.account.domain,
                       ET.Element("{%s}ping" % PING_NS)), timeout)
        return time.perf_counter() - started

    def register_iq_handler(self, type: str, tag: str, handler: Callable[[Iq], object]) -> None:
        """Answer incoming IQ `type` (get/set) requests whose payload is `tag` (Clark
        notation). The handler runs on the dispatcher thread and returns the result payload
        (an Element), a complete `Iq` reply, or None for an empty result; raising
        [`IqError`][simplexmpp.errors.IqError] sends that error back."""
        if type not in ("get", "set"):
            raise ValueError("type must be 'get' or 'set'")
        self._iq_handlers[(type, tag)] = handler

    # ------------------------------------------------------------------------------------
    # Receiving (I/O thread: fast, no user code)

    def _incoming(self, element: ET.Element) -> None:
        tag = element.tag
        if tag == _MESSAGE:
            self._incoming_message(element)
        elif tag == _PRESENCE:
            presence = Presence(element)
            if not self._intercepted("presence", presence):
                self._incoming_presence(presence)
        elif tag == _IQ:
            self._incoming_iq(Iq(element))

    def _misaddressed(self, element: ET.Element) -> bool:
        """Whether a received stanza has a 'from' or 'to' that is not a JID (see
        [SessionCore.misaddressed][simplexmpp.session.SessionCore.misaddressed]): dropped,
        and an IQ request answered with jid-malformed. The one check every received stanza
        passes (`_read`, and `deliver` for what extensions unwrap)."""
        bad, reply = self._core.misaddressed(element)
        if reply is not None:
            self._send_reply(reply)
        return bad

    def _intercepted(self, kind: str, stanza: Stanza) -> bool:
        """Whether an interceptor claimed `stanza` (a `kind`: message or presence)."""
        index = self._interceptor_index.get(kind)
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
        return self._run_interceptors(stanza, index, matched, type_)

    def _run_interceptors(self, stanza: Stanza, index: _InterceptorIndex,
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

    def _index_interceptors(self, kind: str) -> None:
        """Under the lock: rebuild what `_intercepted` reads (copy on write, so the I/O
        thread never needs the lock)."""
        always = []
        by_tag: dict[str, list[_Interceptor]] = {}
        by_type: dict[str, list[_Interceptor]] = {}
        for entry in self._interceptors.get(kind, ()):
            if entry[2] is not None:
                for tag in entry[2]:
                    by_tag.setdefault(tag, []).append(entry)
            elif entry[3] is not None:
                for type_ in entry[3]:
                    by_type.setdefault(type_, []).append(entry)
            else:
                always.append(entry)
        self._interceptor_index[kind] = (always, by_tag, by_type)

    def _add_interceptor(self, kind: str, interceptor: Callable[[Any], bool], *,
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
        handle = next(self._events.handle_ids)
        tagset = frozenset(tags) if tags is not None else None
        typeset = frozenset(types) if types is not None else None
        with self._lock:
            self._interceptors.setdefault(kind, []).append(
                (handle, interceptor, tagset, typeset))
            self._index_interceptors(kind)
        return handle

    def add_stanza_handler(self, kind: str, handler: Callable[[Any], object], *,
                           tags: Iterable[str] | None = None,
                           types: Iterable[str] | None = None) -> int:
        """Handle received `kind` stanzas (`"message"` or `"presence"`) that carry a
        child element named in `tags` (Clark notation, `"{urn:example}x"`) and/or are of
        one of `types`: `handler(stanza)` runs on the dispatcher thread (never on the I/O
        thread), so it may call blocking client methods. The stanzas it gets are claimed:
        they do not reach `messages()`, `next_message()` or the "message"/"presence"
        callbacks. At least one of `tags` and `types` is required (a message without a
        type is `"normal"`, a presence without one `"available"`); returns a handle for
        [remove_stanza_handler][simplexmpp.client.Client.remove_stanza_handler].

        Example:
            ```python
            client.add_stanza_handler("message", on_weather, tags=["{urn:example:weather}x"])
            ```
        """
        if tags is None and types is None:
            raise ValueError("add_stanza_handler() needs tags= or types= (use client.on() "
                             "for every message or presence)")
        dispatch = self._events.dispatch

        def claim(stanza: Stanza) -> bool:  # I/O thread: no user code, only a hand-over
            dispatch(handler, stanza)
            return True

        return self._add_interceptor(kind, claim, tags=tags, types=types)

    def remove_stanza_handler(self, handle: int) -> None:
        """Stop the stanza handler registered under `handle`."""
        self._remove_interceptor(handle)

    def _remove_interceptor(self, handle: int) -> None:
        with self._lock:
            for kind, entries in self._interceptors.items():
                self._interceptors[kind] = [e for e in entries if e[0] != handle]
                self._index_interceptors(kind)

    def dispatch(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the dispatcher thread (where callbacks run)."""
        self._events.dispatch(fn, *args)

    def well_addressed(self, stanza: Stanza | ET.Element) -> bool:
        """Whether a stanza's `from` and `to` are valid JIDs (RFC 7622).

        Every stanza the client reads passes this check; extensions that unwrap stanzas
        (carbons, archives) call it on what they unwrap before they read its addresses or
        hand it to user code. A stanza that fails is logged in one line (and an IQ request
        answered with jid-malformed); its caller drops it.
        """
        return not self._misaddressed(stanza if isinstance(stanza, ET.Element) else stanza.xml)

    def deliver(self, msg: Message) -> None:
        """Hand a message to the normal path (inbox and "message" events), for extensions
        that unwrap messages (carbons, archives). A message with a malformed address is
        dropped (see [well_addressed][simplexmpp.Client.well_addressed])."""
        if self._misaddressed(msg.xml):
            return
        self._incoming_message(msg.xml, msg, intercept=False)

    def _incoming_iq(self, iq: Iq) -> None:
        with self._lock:
            route = self._core.route_iq(iq)
        kind = route.kind
        if kind == "reply":
            future: IqFuture = route.waiter  # type: ignore[assignment]  # what send_iq filed
            if future.set_running_or_notify_cancel():
                if iq.xml.get("type") == "result":
                    future.set_result(iq)
                else:
                    future.set_exception(iq.error or IqError("undefined-condition"))
        elif kind == "request":
            self._events.dispatch(self._handle_iq_request, iq)
        elif route.reply is not None:
            self._send_reply(route.reply)
            if kind == "roster":
                self._events.emit("roster_push", route.item, route.removed)

    def _send_reply(self, stanza: Stanza | ET.Element) -> None:
        """Send without waiting, from the I/O or dispatcher thread; failures are logged."""
        try:
            self.send(stanza, timeout=0)
        except XMPPError as exc:
            log.debug("could not send IQ reply: %s", exc)

    def _handle_iq_request(self, iq: Iq) -> None:
        """Dispatcher thread: run the registered handler or reply service-unavailable."""
        payload = iq.payload
        handler = None if payload is None else self._iq_handlers.get(
            (iq.xml.get("type", ""), payload.tag))
        if handler is None:
            if self._events.handlers.get("iq"):
                self._events.emit("iq", iq)
            else:
                # RFC 6120 §8.4: an IQ nobody understands gets service-unavailable.
                self._send_reply(iq.error_reply("service-unavailable"))
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
        self._send_reply(reply)

    def _incoming_message(self, element: ET.Element, msg: Message | None = None,
                          intercept: bool = True) -> None:
        """A received message (`msg` its wrapper if one was made already; `intercept`
        False for what deliver() hands over): the interceptors, then the inbox and
        "message" callbacks, unless it is an error or a repeat (XEP-0359).

        Hot path (every message), so all in one function: one scan of the children finds
        both the interceptors that asked for a child's tag and the XEP-0359 ids; the
        Message wrapper is made only for whoever gets to see it. The window of ids seen
        is the session's (see
        [SessionCore.is_duplicate][simplexmpp.session.SessionCore.is_duplicate])."""
        index = self._interceptor_index.get("message") if intercept else None
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
                    msg = _wrap_message(element)
                if self._run_interceptors(msg, index, matched, known_type):
                    return
        if type_ == "error":
            self._events.emit("message_error", msg or _wrap_message(element))
            return
        if stanza_ids and type_ != "groupchat":
            if self._core.is_duplicate(element, origin):
                log.debug("dropping a repeated message %s", element.get("id"))
                return
        elif origin is not None:
            origin_id = origin.get("id")
            core = self._core
            if origin_id and core.remember(core.origin_key(element, origin_id)):
                core.duplicates_dropped += 1
                log.debug("dropping a repeated message %s", element.get("id"))
                return
        handlers = self._events.handlers.get("message")
        if not handlers or self._inbox_used:
            self._inbox.put(element)
        if handlers:
            self._events.emit("message", msg or _wrap_message(element))

    def _incoming_presence(self, presence: Presence) -> None:
        kind = presence.type
        if kind is None or kind == "unavailable":
            self._presences.update(presence)
        self._events.emit("presence", presence)
        if kind == "subscribe":
            self._events.emit("subscription_request", presence)
        elif kind in ("subscribed", "unsubscribed", "unsubscribe"):
            self._events.emit(kind, presence)

    # ------------------------------------------------------------------------------------
    # Messages for the caller

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Incoming messages as they arrive; ends when the client disconnects for good.

        With `timeout` the iteration also ends after that many seconds without a message;
        without it, it waits for as long as the client is connected. Messages the server
        kept while we were offline come first (with `.delay` set, XEP-0203).
        """
        self._inbox_used = True
        if timeout is not None:  # None: no limit
            timeout = timeout_seconds(timeout)
        yield from self._inbox.iterate(timeout)

    def next_message(self, timeout: float | None = None) -> Message:
        """The next incoming message; raises TimeoutError or DisconnectedError."""
        self._inbox_used = True
        timeout = self._timeout(timeout)
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise errors.TimeoutError(f"no message within {timeout:g} s") from None
        if item is CLOSED:
            raise self._disconnected_error()
        return item

    @property
    def max_inbox(self) -> int | None:
        """The most received messages kept waiting for
        [messages][simplexmpp.Client.messages]/[next_message][simplexmpp.Client.next_message]
        (None: no bound). When one more arrives, the oldest is given up and counted in
        [inbox_dropped][simplexmpp.Client.inbox_dropped]; may be changed at any time."""
        return self._inbox.maxsize

    @max_inbox.setter
    def max_inbox(self, value: int | None) -> None:
        self._inbox.maxsize = value

    @property
    def inbox_dropped(self) -> int:
        """How many received messages were given up because the inbox was full (see
        [max_inbox][simplexmpp.Client.max_inbox]). The server had them (and acknowledged
        them, XEP-0198); an archive (XEP-0313) may still hold them."""
        return self._inbox.dropped

    @property
    def last_stanza_id(self) -> str | None:
        """The stanza-id our own archive gave the last message received (XEP-0359)."""
        return self._core.last_stanza_id

    @property
    def duplicates_dropped(self) -> int:
        """How many received messages were dropped as repeats (XEP-0359)."""
        return self._core.duplicates_dropped

    @property
    def duplicate_window(self) -> int:
        """How many recent messages are remembered to drop repeats (XEP-0359; 10,000)."""
        return self._core.duplicate_window

    @duplicate_window.setter
    def duplicate_window(self, value: int) -> None:
        self._core.duplicate_window = value

    @property
    def inbox_size(self) -> int:
        """How many received messages wait to be read."""
        return len(self._inbox)

    # ------------------------------------------------------------------------------------
    # Events

    def on(self, event: str, callback: Callable[..., object]) -> int:
        """Call `callback` on the dispatcher thread whenever `event` happens; returns a handle for
        [`off()`][simplexmpp.Client.off]. See [`EVENTS`][simplexmpp.EVENTS] for the names and
        arguments. Safe from any thread, also while the event is being emitted (that emit
        goes to the callbacks registered before it began)."""
        return self._events.on(event, callback)

    def off(self, handle: int) -> None:
        """Stop the callback registered under `handle`."""
        self._events.off(handle)

    def declare_event(self, name: str) -> None:
        """Extensions add their event names here before users can `on()` them."""
        self._events.declare(name)

    def has_callbacks(self, event: str) -> bool:
        """Whether any callback is registered for `event` (queues that only callbacks
        drain, like the inbox, are skipped when nobody reads them otherwise)."""
        return bool(self._events.handlers.get(event))

    def emit(self, event: str, *args: object) -> None:
        """For extensions: run the callbacks of a declared `event` with `args` on the
        dispatcher thread (safe to call from the I/O thread)."""
        if event not in self._events.event_names:
            raise ValueError(f"unknown event {event!r}; declare_event() it first")
        self._events.emit(event, *args)

    # ------------------------------------------------------------------------------------
    # Roster (RFC 6121 §2)

    @property
    def roster(self) -> Roster:
        """The cached roster (after `get_roster()`), kept current by roster pushes."""
        return self._core.roster

    def get_roster(self, timeout: float | None = None) -> Roster:
        """Fetch the roster (with versioning when the server supports it, RFC 6121 §2.6)."""
        query = ET.Element("{%s}query" % ROSTER_NS)
        features = self.features
        if features is not None and features.find("{%s}ver" % ROSTERVER_NS) is not None:
            roster = self._core.roster
            query.set("ver", roster.version or "" if self._core.roster_loaded else "")
        result = self.iq(Iq.get(None, query), timeout)
        payload = result.payload
        with self._lock:
            return self._core.roster_fetched(payload)

    def add_contact(self, jid: JID | str, name: str | None = None,
                    groups: tuple[str, ...] | list[str] | frozenset[str] = (),
                    timeout: float | None = None) -> None:
        """Add or update a roster item (RFC 6121 §2.3); the server pushes the change."""
        self.iq(Iq.set(None, item_element(JID(str(jid)), name, tuple(groups))), timeout)

    def remove_contact(self, jid: JID | str, timeout: float | None = None) -> None:
        """Remove a roster item, cancelling subscriptions both ways (RFC 6121 §2.5)."""
        self.iq(Iq.set(None, item_element(JID(str(jid)), remove=True)), timeout)

    @property
    def state(self) -> str:
        """`disconnected`, `connecting`, `ready`, `reconnecting` or `closing`."""
        return self._state

    def __repr__(self) -> str:
        return f"<Client {self.jid or self.account} {self._state}>"
