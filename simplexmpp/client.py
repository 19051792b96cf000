"""`Client`: the blocking API, a facade over three layers.

`Client` checks its arguments, wires the layers together and offers the blocking methods of the
API contract; each method is a few lines over one layer:

* the **session layer** ([simplexmpp.session][]): sans-IO rules of one account's session
  (pending IQs and who may answer them, repeats, IQ routing, roster pushes, the XEP-0198 and
  keepalive timers);
* the **connection layer** ([simplexmpp.connection][]): the socket, TLS, the I/O thread (or a
  pool's hub), reconnects, flushing, the client's state, and the role it connects as;
* the **dispatcher layer** ([simplexmpp.dispatcher][]): where each received stanza goes, the
  event callbacks and the dispatcher thread they run on.

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

import concurrent.futures
import logging
import operator
import os
import queue
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors
from .connection import ClientState, Connection, LoginRole, Role, close_connections
from .connection import timeout_seconds as timeout_seconds  # (re-exported: pool, testing)
from .dispatcher import Dispatcher, Router, wrap_message
from .errors import InvalidStanzaError, XMPPError
from .extension import Extension, Session, attach_installed
from .inbox import CLOSED, DEFAULT_MAX_INBOX, Inbox
from .jid import JID
from .roster import ROSTER_NS, PresenceBook, Roster, item_element
from .session import PING_NS, SID_NS, SessionCore
from .stanza import Iq, Message, Presence, Stanza, new_id
from .tokens import TokenStore
from .transport import Hub, is_loopback
from .xml import CLIENT_NS, check_text, tostring
from .xml import escape as _escape

if TYPE_CHECKING:  # pragma: no cover - the extension classes, for type checkers and IDEs
    from .ext.avatar import Avatar
    from .ext.blocking import Blocking
    from .ext.bookmarks import Bookmarks
    from .ext.commands import Commands
    from .ext.entity_time import Time
    from .ext.last_activity import LastActivityExtension
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

_MESSAGE = "{%s}message" % CLIENT_NS
_ORIGIN_ID = "{%s}origin-id" % SID_NS
_ELEMENT = ET.Element
_SUB_ELEMENT = ET.SubElement
_BODY = "{%s}body" % CLIENT_NS
_SUBJECT = "{%s}subject" % CLIENT_NS
_THREAD = "{%s}thread" % CLIENT_NS
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

E = TypeVar("E", bound=Extension)


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


class _Forwarded:
    """A [Client][simplexmpp.Client] attribute that belongs to one of its layers:
    `client.max_inbox` is the inbox's `maxsize`, read (and, where `writable`, set) through
    the client, so the facade needs no property of its own for each figure and setting."""

    __slots__ = ("_get", "_owner", "_attr", "_writable", "_name")

    def __init__(self, path: str, writable: bool) -> None:
        self._get = operator.attrgetter(path)
        owner, _, self._attr = path.rpartition(".")
        self._owner = operator.attrgetter(owner) if owner else None
        self._writable = writable
        self._name = path

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, client: object, cls: type | None = None) -> Any:
        return self if client is None else self._get(client)

    def __set__(self, client: object, value: object) -> None:
        if not self._writable:
            raise AttributeError(f"client.{self._name} is read-only")
        setattr(client if self._owner is None else self._owner(client), self._attr, value)


def _forward(path: str, *, writable: bool = False) -> Any:
    """A [Client][simplexmpp.Client] attribute that is `client.<path>` (see `_Forwarded`);
    typed by its annotation in the class body."""
    return _Forwarded(path, writable)


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
        password: The account's password (None: log in with the `token_store`'s FAST token,
            or a TLS client certificate).
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
        load_extensions: Also attach the extensions installed packages register (entry-point
            group `simplexmpp.extensions`); the built-ins are always attached.
        omemo_store: The file of OMEMO end-to-end encryption's keys, sessions and trust
            (`client.omemo`, needs `simplexmpp[omemo]`); giving one turns OMEMO on from the
            first session. None: a file under the user's data directory, used from the
            first `client.omemo` call on (or at once when it exists).
        role: What the connection negotiates as ([Role][simplexmpp.connection.Role]); None:
            an account's login. [Component][simplexmpp.Component] and in-band registration
            pass their own.
        token_store: A file (or [TokenStore][simplexmpp.tokens.TokenStore]) keeping XEP-0484
            FAST tokens: where the server offers SASL2, the first password login asks for a
            token and later connects log in with it (one round trip fewer; the password may
            then be None). A rejected token is discarded and the password used, if given.
        hub: A [Hub][simplexmpp.transport.Hub] that drives the connection once it is ready,
            shared with other clients (a [Pool][simplexmpp.Pool] passes its own); None: the
            client's own I/O thread does. Connecting and reconnecting still run on a
            thread of the client's own.
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
    time: Time
    last_activity: LastActivityExtension
    bookmarks: Bookmarks
    commands: Commands

    def __init__(self, jid: JID | str, password: str | None = None, *,
                 host: str | None = None,
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
                 omemo_store: str | os.PathLike[str] | None = None,
                 role: Role | None = None,
                 token_store: str | os.PathLike[str] | TokenStore | None = None,
                 hub: Hub | None = None) -> None:
        self.account = JID(jid)
        self.token_store: TokenStore | None = token_store if isinstance(
            token_store, TokenStore) or token_store is None else TokenStore(token_store)
        """Where XEP-0484 FAST tokens are kept between runs (None: no token is asked for)."""
        self.inline_features: frozenset[str] = frozenset()
        """Namespaces the server enabled inside the login of the current session (XEP-0386
        Bind2: stream management, carbons, CSI), which therefore need no request of their
        own."""
        self.omemo_store = os.fspath(omemo_store) if omemo_store is not None else None
        """The OMEMO store file given to the constructor (None: the default, see
        [OMEMO][simplexmpp.ext.omemo.OMEMO])."""
        self.mechanisms = mechanisms
        self._role = role if role is not None else LoginRole()
        self._role.check_account(self, password)
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

        # The sans-IO session: pending IQs, duplicate window, IQ routing, roster, timers.
        self._core: SessionCore[IqFuture] = SessionCore(self.account,
                                                        roster_pushes=self._role.roster_pushes)
        # The network side: socket, TLS, the I/O thread, reconnects, flushing (its lock
        # guards the stream state and the outgoing buffer).
        self._conn = Connection(self, self._role)
        self._conn.hub = hub
        self._lock = self._conn.lock
        self._send_text = self._conn.send_text  # (the hot path of every send: one lookup)
        # The event bus and the dispatcher thread (callbacks, handlers, done-callbacks).
        self._events = Dispatcher(f"simplexmpp-dispatch-{self.account.bare}", EVENTS,
                                  lambda: self.dispatcher_idle)
        # Received messages waiting for messages()/next_message(): bare elements, wrapped
        # in a Message as they are taken (a wrapper made late costs nothing, and each
        # waiting message is one object fewer for the garbage collector to walk). Bounded:
        # the I/O thread never waits for a reader (see docs/reliability.md, "A reader that
        # falls behind").
        self._inbox: Inbox[Message] = Inbox(
            max_inbox, convert=wrap_message, name=f"the inbox of {self.account.bare}",
            hint="Read messages()/next_message(), register a \"message\" callback, or "
                 "raise Client(max_inbox=...).")
        self._presences = PresenceBook()
        # Where each received stanza goes (I/O thread), and the extensions' session hooks.
        self._router = Router(self)
        self.jid: JID | None = None
        self.mechanism: str | None = None   # the SASL mechanism of the current session
        self.features: ET.Element | None = None
        self._last_presence: Presence | None = None
        # Attached extensions by class, and per lifecycle hook the extensions that follow it.
        self._extensions: dict[type[Extension], Extension] = {}
        self._extension_lock = threading.RLock()
        self.local_features: set[str] = {PING_NS, "http://jabber.org/protocol/disco#info",
                                         SID_NS}
        """What this client advertises in XEP-0030 disco#info; extensions add theirs."""
        self.local_identities: set[tuple[str, str, str]] = {("client", "pc", "simplexmpp")}
        """(category, type, name) identities for disco#info (XEP-0030 §3.1)."""
        self.presence_decorators: list[Callable[[Presence], None]] = []
        """For extensions: callables that add children to every available presence this client sends
        with `send_presence()` (XEP-0115 caps, for one)."""
        self.register_iq_handler("get", "{%s}ping" % PING_NS, lambda iq: None)
        self._role.attach_extensions(self)  # the built-ins (client.disco, client.muc …)
        if load_extensions:
            attach_installed(self)  # (entry-point group simplexmpp.extensions)

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
                self._router.follow_sessions(instance)
        if cls.features and self.is_connected and self._last_presence is not None:
            disco = getattr(self, "disco", None)
            if disco is not None:  # XEP-0115 §4: announce the new hash
                self._events.dispatch(disco.update_caps)
        return instance

    @property
    def extensions(self) -> dict[str, Extension]:
        """The attached extensions by name (a copy)."""
        with self._extension_lock:
            return {type(e).name: e for e in self._extensions.values()}

    session: Session | None = _forward("_core.session")
    """The current session (the last one while reconnecting), or None before the first."""

    def set_password(self, password: str) -> None:
        """The password to log in with from now on (reconnects included), after the
        account's password was changed (XEP-0077 §3.3 does it for you)."""
        self._password = password

    # ------------------------------------------------------------------------------------
    # Connecting and disconnecting

    @property
    def is_connected(self) -> bool:
        """True while a session is established (False while reconnecting)."""
        return self._conn.state is ClientState.READY

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
        self._conn.connect(timeout_seconds(timeout, self.timeout))
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
        timeout = timeout_seconds(timeout, self.timeout)
        outcome = close_connections([(self._conn, time.monotonic() + timeout)])[0]
        if outcome is not None:
            raise outcome

    def expect_server_close(self, expected: bool = True) -> None:
        """For extensions: the server is about to end this stream on purpose (XEP-0077 §3.2
        closes it after removing the account), so its closing ends the client cleanly: no
        reconnect, and the "disconnected" event carries no error."""
        self._conn.close_expected = expected

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

    # ------------------------------------------------------------------------------------
    # Threads

    ack_delay = 0.05
    """How long the XEP-0198 `<a/>` answering the server's `<r/>` waits before it is sent
    (seconds; 0.05)."""

    dispatcher_idle = 10.0
    """Seconds the dispatcher thread waits for work before it ends (10); the next callback starts
    a new one. Idle clients (a Pool of them, say) then hold only their I/O thread."""

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
        return wrap_message(element)

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

    broadcast_presence: Presence | None = _forward("_last_presence")
    """The available presence last broadcast with `send_presence()`, or None."""

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
        timeout = timeout_seconds(timeout, self.timeout)
        future = self.send_iq(iq, timeout)
        try:
            result: Iq = future.result(timeout)
            return result
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._core.forget(iq.id or "")
            raise errors.TimeoutError(
                f"no answer to the IQ {iq.type} {'' if iq.payload is None else iq.payload.tag} sent to "
                f"{iq.to or self.account.domain} within {timeout:g} s") from None
        except XMPPError as exc:
            raise exc.with_traceback(None) from None
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt, say): nothing is left behind.
            with self._lock:
                self._core.forget(iq.id or "")
            raise

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
        self._router.iq_handlers[(type, tag)] = handler

    # ------------------------------------------------------------------------------------
    # Receiving (I/O thread: fast, no user code)

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
        queue_bounded = self._events.queue_bounded  # a flood may trigger it: bounded

        def claim(stanza: Stanza) -> bool:  # I/O thread: no user code, only a hand-over
            queue_bounded(handler, (stanza,))
            return True

        return self._router.add_interceptor(kind, claim, tags=tags, types=types)

    def remove_stanza_handler(self, handle: int) -> None:
        """Stop the stanza handler registered under `handle`."""
        self._router.remove_interceptor(handle)

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
        return not self._router.misaddressed(
            stanza if isinstance(stanza, ET.Element) else stanza.xml)

    def deliver(self, msg: Message) -> None:
        """Hand a message to the normal path (inbox and "message" events), for extensions
        that unwrap messages (carbons, archives). A message with a malformed address is
        dropped (see [well_addressed][simplexmpp.Client.well_addressed])."""
        if self._router.misaddressed(msg.xml):
            return
        self._router.message(msg.xml, msg, intercept=False)

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Incoming messages as they arrive; ends when the client disconnects for good.

        With `timeout` the iteration also ends after that many seconds without a message;
        without it, it waits for as long as the client is connected. Messages the server
        kept while we were offline come first (with `.delay` set, XEP-0203).
        """
        self._router.inbox_used = True
        if timeout is not None:  # None: no limit
            timeout = timeout_seconds(timeout)
        yield from self._inbox.iterate(timeout)

    def next_message(self, timeout: float | None = None) -> Message:
        """The next incoming message; raises TimeoutError or DisconnectedError."""
        self._router.inbox_used = True
        timeout = timeout_seconds(timeout, self.timeout)
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise errors.TimeoutError(f"no message within {timeout:g} s") from None
        if item is CLOSED:
            raise self._conn.disconnected_error()
        return item

    # Figures and settings of the layers, read (and where writable, set) through the client.
    max_inbox: int | None = _forward("_inbox.maxsize", writable=True)
    """The most received messages kept waiting for
    [messages][simplexmpp.Client.messages]/[next_message][simplexmpp.Client.next_message]
    (None: no bound). When one more arrives, the oldest is given up and counted in
    [inbox_dropped][simplexmpp.Client.inbox_dropped]; may be changed at any time."""

    inbox_dropped: int = _forward("_inbox.dropped")
    """How many received messages were given up because the inbox was full (see
    [max_inbox][simplexmpp.Client.max_inbox]). The server had them (and acknowledged
    them, XEP-0198); an archive (XEP-0313) may still hold them. Read-only."""

    max_pending_callbacks: int | None = _forward("_events.max_pending", writable=True)
    """The most callback calls of stanza events ("message", "presence", extensions'
    events, stanza handlers) kept waiting for the dispatcher thread (10,000; None: no
    bound). When callbacks fall that far behind, new calls are given up and counted in
    [callbacks_dropped][simplexmpp.Client.callbacks_dropped]; the session's events and IQ
    handlers are never given up. May be changed at any time."""

    callbacks_dropped: int = _forward("_events.dropped")
    """How many callback calls were given up because
    [max_pending_callbacks][simplexmpp.Client.max_pending_callbacks] were waiting (see
    docs/reliability.md, "A callback that falls behind"). Read-only."""

    last_stanza_id: str | None = _forward("_core.last_stanza_id")
    """The stanza-id our own archive gave the last message received (XEP-0359). Read-only."""

    duplicates_dropped: int = _forward("_core.duplicates_dropped")
    """How many received messages were dropped as repeats (XEP-0359). Read-only."""

    duplicate_window: int = _forward("_core.duplicate_window", writable=True)
    """How many recent messages are remembered to drop repeats (XEP-0359; 10,000); may be
    changed at any time."""

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

    roster: Roster = _forward("_core.roster")
    """The cached roster (after `get_roster()`), kept current by roster pushes. Read-only."""

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
        """`disconnected`, `connecting`, `ready`, `reconnecting` or `closing` (see
        [ClientState][simplexmpp.connection.ClientState])."""
        return self._conn.state.value

    def __repr__(self) -> str:
        return f"<Client {self.jid or self.account} {self._conn.state}>"
