"""`Component`: an XEP-0114 external component, on the same two threads as `Client`.

An external component connects to a server's component port, claims a whole domain
(`echo.example.org`) and authenticates with a shared secret: it sends the hex SHA-1 of the
stream id followed by the secret (XEP-0114 §3). Every stanza addressed to that domain, or to any
JID at it (`user@echo.example.org/x`), is routed to the component, which answers from those
addresses.

Two layers, as for the client:

* [`ComponentStream`][simplexmpp.component.ComponentStream] is the sans-IO stream machine (bytes in,
  events and bytes out), a [`ClientStream`][simplexmpp.stream.ClientStream] whose negotiator,
  [`ComponentNegotiator`][simplexmpp.component.ComponentNegotiator], does the handshake instead of
  STARTTLS/SASL/bind. The stream's namespace is `jabber:component:accept`; the
  rest of the library works with `{jabber:client}` stanzas, so the machine renames received elements
  to `jabber:client` and, on the way out, lets the serializer write `jabber:client` elements without
  an `xmlns` (they inherit the stream's `jabber:component:accept`).
* [`Component`][simplexmpp.Component] is a [`Client`][simplexmpp.Client] driving that machine: the
  I/O thread owns the socket, callbacks and IQ handlers run on the dispatcher thread, any thread may
  send. It overrides none of the client's connection: it plugs a
  [`ComponentRole`][simplexmpp.component.ComponentRole] into it (the stream to negotiate, the
  handshake's errors, the wire log's redaction, replies from the address asked).

```python
with Component("echo.localhost", "secret", "127.0.0.1", 5347) as component:
    for msg in component.messages():
        component.send_message(msg.from_, msg.body, from_=msg.to)
```
"""

from __future__ import annotations

import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from enum import Enum
from typing import Any

from . import errors
from .client import Client
from .connection import Role
from .session import PING_NS
from .errors import AuthenticationError, InvalidStanzaError, StreamError
from .jid import JID
from .roster import Roster
from .stanza import Iq, Presence, Stanza
from .stream import ClientStream, Event, Negotiator, SMState
from .transport import Target, is_loopback
from .xml import COMPONENT_NS, STREAM_NS, StreamHeader, stream_header

__all__ = ["Component", "ComponentRole", "ComponentStream", "ComponentNegotiator",
           "HandshakeStep", "handshake_digest", "COMPONENT_NS",
           "COMPONENT_SKIPPED_EXTENSIONS"]

log = logging.getLogger(__name__)

_CLIENT_PREFIX = "{jabber:client}"
_COMPONENT_PREFIX = "{%s}" % COMPONENT_NS
_STANZA_NAMES = ("message", "presence", "iq")
_STANZA_TAGS = frozenset(prefix + name for prefix in (_CLIENT_PREFIX, _COMPONENT_PREFIX)
                         for name in _STANZA_NAMES)
_IQ_TAGS = frozenset({_CLIENT_PREFIX + "iq", _COMPONENT_PREFIX + "iq"})
_HANDSHAKE = _COMPONENT_PREFIX + "handshake"
_FEATURES = "{%s}features" % STREAM_NS
_PING = "{%s}ping" % PING_NS
_REDACT_HANDSHAKE = re.compile(r"(<handshake>)[^<]+")

COMPONENT_SKIPPED_EXTENSIONS = frozenset({
    "carbons", "csi", "blocking", "mam", "registration", "pep", "avatar", "omemo",
    "bookmarks", "last_activity"})
"""Extensions that act on a user account the server keeps (its carbons, archive, blocklist, PEP,
registration, client state) and so mean nothing for a component: not attached."""


def handshake_digest(stream_id: str, secret: str) -> str:
    """The XEP-0114 §3 handshake: lower-case hex SHA-1 of the stream id followed by the
    secret (both as UTF-8)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def to_client_namespace(element: ET.Element) -> ET.Element:
    """Rename, in place, every element of `element` (itself included) that is in
    `jabber:component:accept` to `jabber:client`; return `element`.

    Inside a component stream that namespace plays the part `jabber:client` plays on a
    client stream (stanzas, `<body/>`, `<error/>` …); payloads in other namespaces keep
    theirs."""
    prefix, size = _COMPONENT_PREFIX, len(_COMPONENT_PREFIX)
    for node in element.iter():
        tag = node.tag
        if isinstance(tag, str) and tag.startswith(prefix):
            node.tag = _CLIENT_PREFIX + tag[size:]
    return element


def _domain_of(jid: str) -> str:
    try:
        return JID(jid).domain
    except errors.JIDError as exc:
        raise InvalidStanzaError(f"invalid 'from' address {jid!r}: {exc}") from None


class HandshakeStep(str, Enum):
    """The steps of [`ComponentNegotiator`][simplexmpp.component.ComponentNegotiator]."""

    HEADER = "wait-header"
    NO_STREAM_ID = "no-stream-id"   # the server's header had no id: its stream error follows
    HANDSHAKE = "handshake"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


class ComponentNegotiator(Negotiator):
    """XEP-0114 §3: the component's handshake, on a stream in `jabber:component:accept`.

    ```text
    header (jabber:component:accept, to=domain) -> server header with an id
           -> <handshake>hex(SHA-1(id + secret))</handshake> -> <handshake/> -> Ready
    ```

    No TLS, no SASL, no stream management. Received stanzas are renamed into `jabber:client` (the
    rest of the library works with those); sent ones get the component's domain as `from` and `to`
    when they have none, and a `from` outside the domain raises
    [`InvalidStanzaError`][simplexmpp.errors.InvalidStanzaError]. A rejected secret raises
    [`AuthenticationError`][simplexmpp.errors.AuthenticationError]; an unknown domain raises
    [`StreamError`][simplexmpp.errors.StreamError] `host-unknown`."""

    name = "component"
    namespace = COMPONENT_NS
    rewrites_stanzas = True
    TRANSITIONS = {
        HandshakeStep.HEADER: frozenset({HandshakeStep.HANDSHAKE, HandshakeStep.NO_STREAM_ID}),
        HandshakeStep.HANDSHAKE: frozenset({HandshakeStep.DONE}),
        HandshakeStep.NO_STREAM_ID: frozenset(),
        HandshakeStep.DONE: frozenset(),
    }

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the component secret is empty")
        self._secret: str | None = secret
        self.stream_id: str | None = None
        """The id of the server's stream header (what the handshake hashes)."""
        self.step = HandshakeStep.HEADER

    def header(self, stream: ClientStream) -> str:
        # XEP-0114 §3 example 1: no 'from' and no 'version' (no stream features follow).
        return stream_header(stream.jid.domain, lang=stream.lang, default_ns=COMPONENT_NS,
                             version=None)

    def header_received(self, stream: ClientStream, header: StreamHeader) -> None:
        if header.default_ns != COMPONENT_NS:
            raise StreamError("invalid-namespace",
                              f"stream default namespace is {header.default_ns!r}, expected "
                              f"{COMPONENT_NS!r} (is this the server's component port?)")
        if not header.id:
            # Prosody answers an unknown domain with an empty id and a stream error right
            # behind it: wait for that error, it says more than the missing id would.
            self.go(HandshakeStep.NO_STREAM_ID)
            return
        self.stream_id = header.id
        stream.send_raw("<handshake>%s</handshake>"
                        % handshake_digest(header.id, self._secret or ""))
        self.go(HandshakeStep.HANDSHAKE)

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        if self.step is HandshakeStep.HANDSHAKE and element.tag == _HANDSHAKE:
            # XEP-0114 §3: an empty <handshake/> from the server means the secret was right.
            self._secret = None
            self.go(HandshakeStep.DONE)
            stream.authenticated_with("handshake", events)
            stream.features = ET.Element(_FEATURES)   # a component stream has no features
            stream.ready(events, sm_enabled=False)
            return
        if self.step is HandshakeStep.NO_STREAM_ID:
            raise StreamError("invalid-xml", "the server's stream header has no id, which the "
                                             "handshake needs (XEP-0114 §3)")
        raise StreamError("invalid-xml", f"unexpected <{element.tag}> while {self.step}")

    def stream_error(self, stream: ClientStream, error: StreamError) -> Exception:
        domain = stream.jid.domain
        detail = f": {error.text}" if error.text else ""
        if not stream.authenticated and error.condition == "not-authorized":
            return AuthenticationError(
                f"the server rejected the secret of component {domain} "
                f"(not-authorized){detail}; check the component_secret configured for it",
                "not-authorized", error.text)
        if error.condition == "host-unknown":
            return StreamError("host-unknown",
                               f"the server has no external component named {domain}"
                               + (f" ({error.text})" if error.text else ""), by_peer=True)
        if error.condition == "conflict" and not stream.authenticated:
            return StreamError("conflict",
                               f"another connection already serves the component "
                               f"{domain}{detail}", by_peer=True)
        return error

    def incoming_stanza(self, element: ET.Element) -> ET.Element:
        return to_client_namespace(element)

    def outgoing_stanza(self, stream: ClientStream, element: ET.Element) -> None:
        # tostring() writes {jabber:client} elements without an xmlns, so on the wire they
        # inherit the stream's default namespace, jabber:component:accept.
        if element.tag not in _STANZA_TAGS:
            return
        domain = stream.jid.domain
        sender = element.get("from")
        if not sender:
            element.set("from", domain)   # the server routes nothing without one
        elif _domain_of(sender) != domain:
            raise InvalidStanzaError(
                f"a component can only send from its own domain {domain} or a JID at "
                f"it, not from {sender}")
        if not element.get("to"):
            # Only the library's own keepalive ping omits it; the server rejects stanzas
            # without one.
            element.set("to", domain)


class ComponentStream(ClientStream):
    """The component side of one XEP-0114 stream (sans-IO): a
    [`ClientStream`][simplexmpp.stream.ClientStream] with a
    [`ComponentNegotiator`][simplexmpp.component.ComponentNegotiator] (see it for the rules), for
    `jid`, the component's domain.

    The same interface as [`ClientStream`][simplexmpp.stream.ClientStream]: `start()`,
    `receive_data()` returning events ([`Authenticated`][simplexmpp.stream.Authenticated] with
    mechanism `"handshake"`, [`Ready`][simplexmpp.stream.Ready],
    and the received stanzas' elements …), `data_to_send()`, `send()`, `close()`.

    ```python
    stream = ComponentStream(JID("echo.example.org"), "secret")
    # the same as
    stream = ClientStream(JID("echo.example.org"), tls="none", sm=False,
                          negotiator=ComponentNegotiator("secret"))
    ```
    """

    negotiator: ComponentNegotiator

    def __init__(self, jid: JID, secret: str, *, max_stanza_size: int = 1 << 20,
                 lang: str = "en") -> None:
        if jid.local is not None or jid.resource is not None:
            raise errors.JIDError(f"a component's address is a bare domain such as "
                                  f"'echo.example.org', not {jid}")
        super().__init__(jid, tls="none", sm=False, max_stanza_size=max_stanza_size, lang=lang,
                         negotiator=ComponentNegotiator(secret))

    @property
    def domain(self) -> str:
        """The component's domain."""
        return self.jid.domain

    @property
    def stream_id(self) -> str | None:
        """The id of the server's stream header (what the handshake hashes)."""
        return self.negotiator.stream_id


class ComponentRole(Role):
    """What a [Component][simplexmpp.Component]'s connection is for (see
    [Role][simplexmpp.connection.Role]): the XEP-0114 handshake
    ([ComponentNegotiator][simplexmpp.component.ComponentNegotiator], on a
    [ComponentStream][simplexmpp.component.ComponentStream]), no roster pushes, no flush
    ping of our own, IQ requests remembered so that replies go from the address asked, and
    pings answered at once on the I/O thread."""

    name = "component"
    roster_pushes = False  # a component has no roster: a roster set is an ordinary request

    def __init__(self, request_window: int) -> None:
        self.request_window = request_window
        # (requester, request id) -> the address the request was sent to, oldest first.
        self.answer_from: OrderedDict[tuple[str, str], str] = OrderedDict()

    def check_account(self, client: Client, password: str | None) -> None:
        account = client.account
        if account.local is not None or account.resource is not None:
            raise errors.JIDError(f"a component's address is a bare domain such as "
                                  f"'echo.example.org', not {account}")

    def attach_extensions(self, client: Client) -> None:
        # XEP-0030 / Service Discovery Identities registry: category "component".
        client.local_identities = {("component", "generic", "simplexmpp")}
        from . import ext
        ext.attach(client, skip=COMPONENT_SKIPPED_EXTENSIONS)

    def new_stream(self, client: Client, target: Target, bindings: dict[str, bytes],
                   sm_state: SMState | None) -> ClientStream:
        # A ClientStream with a ComponentNegotiator: the XEP-0114 handshake.
        return ComponentStream(client.account, client._password or "",
                               max_stanza_size=client.max_stanza_size, lang=client.lang)

    def connection_failed(self, client: Client, error: BaseException,
                          stream: ClientStream | None, reconnecting: bool) -> BaseException:
        if isinstance(error, StreamError) and error.condition == "conflict" and \
                reconnecting and stream is not None and not stream.authenticated:
            # Refused at the handshake while reconnecting: the server most likely still
            # holds our previous, dead connection until it notices; keep trying (a
            # conflict on an established stream means a newer connection took over, and
            # ends the component as it ends a client).
            failure = errors.ConnectionError(
                f"{error}; the server may still hold the previous connection")
            failure.__cause__ = error
            return failure
        return error

    def redact(self, text: str) -> str:
        return _REDACT_HANDSHAKE.sub(r"\1[redacted]", text)

    def incoming_request(self, client: Client, iq: Iq) -> bool:
        element = iq.xml
        to, sender = element.get("to"), element.get("from")
        if to and sender and to != client.account.domain:
            with client._lock:
                answer_from = self.answer_from
                answer_from[(sender, element.get("id", ""))] = to
                while len(answer_from) > self.request_window:
                    answer_from.popitem(last=False)
        payload = iq.payload
        if element.get("type") == "get" and payload is not None and payload.tag == _PING and \
                client._router.iq_handlers.get(("get", _PING)) is _answer_ping:
            # XEP-0199: answered at once, on the I/O thread, so a ping round trip never
            # waits for a busy dispatcher (disconnect() may run on it).
            client._router.send_reply(iq.result())
            return True
        return False


def _answer_ping(iq: Iq) -> None:
    return None


class Component(Client):
    """An XEP-0114 external component: serves every address at domain `jid`.

    It behaves like [`Client`][simplexmpp.Client] (same threads, `messages()`, `on()`,
    `iq()`/`send_iq()`, `register_iq_handler()`, `with` block, reconnects), with these
    differences:

    * the connection is plain TCP to a loopback `host` (XEP-0114 has no TLS; the secret and
      every stanza would cross the network in clear text), authenticated with `secret`;
    * every stanza needs a `to`; a missing `from` becomes the component's domain, and
      `send_message()`/`send_presence()` take `from_=` to send from another JID at the
      domain (`user@echo.example.org`). Replies to IQ requests go from the address the
      request was sent to;
    * there is no roster (`get_roster()` raises NotImplementedError), no broadcast
      presence, no stream management;
    * disco#info answers identity `component/generic`; extensions that act on a user's account
      ([`COMPONENT_SKIPPED_EXTENSIONS`][simplexmpp.component.COMPONENT_SKIPPED_EXTENSIONS]) are not
      attached, nor are installed third-party extensions (entry-point group
      `simplexmpp.extensions`, written for accounts) unless `load_extensions=True`;
      `component.extension(Cls)` attaches one explicitly.

    ```python
    with Component("echo.localhost", "secret", "127.0.0.1", 5347) as c:
        c.send_message("alice@localhost", "hello from a component")
    ```
    """

    request_window = 10000
    """How many IQ requests to JIDs at our domain are remembered, to answer from them."""

    def __init__(self, jid: JID | str, secret: str, host: str, port: int = 5347, *,
                 timeout: float = 30.0, reconnect: bool = True,
                 reconnect_max_delay: float = 30.0, keepalive: float = 60.0,
                 max_stanza_size: int = 1 << 20, lang: str = "en",
                 load_extensions: bool = False) -> None:
        if not isinstance(secret, str) or not secret:
            raise ValueError("the component secret must be a non-empty string")
        if not isinstance(host, str) or not is_loopback(host):
            raise ValueError(
                f"XEP-0114 component connections are plain text; simplexmpp makes them only "
                f"to a loopback address (run the component on the server's machine), and "
                f"{host!r} is not one")
        self._component_role = ComponentRole(self.request_window)
        super().__init__(jid, secret, host=host, port=port, tls="none", timeout=timeout,
                         stream_management=False, reconnect=reconnect,
                         reconnect_max_delay=reconnect_max_delay,
                         max_stanza_size=max_stanza_size, keepalive=keepalive, lang=lang,
                         load_extensions=load_extensions, role=self._component_role)
        self.domain: str = self.account.domain
        # Pings are answered on the I/O thread (see ComponentRole.incoming_request): the
        # keepalive and the flush in disconnect() ping our own domain, which the server
        # routes back to us.
        self.register_iq_handler("get", _PING, _answer_ping)

    def connect(self, timeout: float | None = None) -> Component:
        """Connect to the component port and do the handshake; return self once ready.

        Raises [`AuthenticationError`][simplexmpp.errors.AuthenticationError] (wrong secret),
        [`StreamError`][simplexmpp.errors.StreamError] (`host-unknown`: the server has no component
        of that name; `conflict`: another connection serves it),
        [`ConnectionError`][simplexmpp.errors.ConnectionError] or
        [`TimeoutError`][simplexmpp.errors.TimeoutError].
        """
        super().connect(timeout)
        return self

    def __enter__(self) -> Component:
        return self.connect()

    # ------------------------------------------------------------------------------------
    # Sending

    def send(self, stanza: Stanza | ET.Element, timeout: float | None = None) -> None:
        """Send a `Message`, `Presence` or `Iq` (or a raw stanza element).

        It must have a `to`; without a `from` it goes from the component's domain (an IQ
        reply without one goes from the address its request was sent to). Raises
        [`InvalidStanzaError`][simplexmpp.errors.InvalidStanzaError] for anything else."""
        element = stanza.xml if isinstance(stanza, Stanza) else stanza
        if element.tag not in _STANZA_TAGS:
            raise InvalidStanzaError(f"a component stream carries only message, presence and "
                                     f"iq stanzas, not <{element.tag}> (XEP-0114)")
        to = element.get("to")
        if not to:
            raise InvalidStanzaError(
                "a stanza from a component needs a 'to' address: there is no account for the "
                "server to handle it on behalf of")
        if element.tag in _IQ_TAGS and not element.get("from") and \
                element.get("type") in ("result", "error"):
            with self._lock:
                asked = self._component_role.answer_from.pop((to, element.get("id", "")),
                                                             None)
            if asked is not None:
                # RFC 6120 §8.1.2.1: the reply comes from the entity the request went to.
                element.set("from", asked)
        super().send(element, timeout)

    def _sender(self, from_: JID | str | None) -> JID | None:
        if from_ is None:
            return None
        sender = from_ if isinstance(from_, JID) else JID(from_)
        if sender.domain != self.domain:
            raise InvalidStanzaError(f"a component can only send from its own domain "
                                     f"{self.domain} or a JID at it, not from {sender}")
        return sender

    def send_message(self, to: JID | str, body: str | None, type: str = "chat", *,
                     subject: str | None = None, thread: str | None = None,
                     timeout: float | None = None, from_: JID | str | None = None) -> str:
        """Send a message from `from_` (default: the component's domain); return its id. Like
        [`Client.send_message()`][simplexmpp.Client.send_message], it carries an XEP-0359 origin-id
        equal to the id."""
        msg = self.new_message(to, body, type, subject=subject, thread=thread)
        msg.from_ = self._sender(from_)
        self.send(msg, timeout)
        return msg.id or ""

    def send_presence(self, show: str | None = None, status: str | None = None,
                      priority: int = 0, to: JID | str | None = None, *,
                      type: str | None = None, timeout: float | None = None,
                      from_: JID | str | None = None) -> None:
        """Send presence to `to` from `from_` (default: the component's domain).

        A component has no roster for the server to broadcast to, so `to` is required
        ([`InvalidStanzaError`][simplexmpp.errors.InvalidStanzaError] otherwise)."""
        if to is None:
            raise InvalidStanzaError("a component has no roster to broadcast presence to; "
                                     "send it to someone with to=")
        presence = Presence(to=to, type=type, show=show, status=status,
                            priority=priority if priority else None, from_=self._sender(from_))
        if type is None:
            for decorate in list(self.presence_decorators):
                decorate(presence)
        self.send(presence, timeout)

    # ------------------------------------------------------------------------------------
    # What a component does not have

    @classmethod
    def register(cls, jid: JID | str, password: str, **connection_kwargs: Any) -> None:
        """Not for components: XEP-0077 creates client accounts; a component's address and
        secret are configured on the server."""
        raise NotImplementedError("in-band registration (XEP-0077) creates client accounts; "
                                  "a component is configured on the server instead")

    def get_roster(self, timeout: float | None = None) -> Roster:
        """Not available: the server keeps no roster for a component."""
        raise NotImplementedError("a component has no roster (XEP-0114)")

    def add_contact(self, jid: JID | str, name: str | None = None,
                    groups: tuple[str, ...] | list[str] | frozenset[str] = (),
                    timeout: float | None = None) -> None:
        """Not available: the server keeps no roster for a component."""
        raise NotImplementedError("a component has no roster (XEP-0114)")

    def remove_contact(self, jid: JID | str, timeout: float | None = None) -> None:
        """Not available: the server keeps no roster for a component."""
        raise NotImplementedError("a component has no roster (XEP-0114)")

    def __repr__(self) -> str:
        return f"<Component {self.account} {self.state}>"
