"""The server side of a client-to-server XMPP stream, sans-IO (bytes in, events and bytes out).

[`ServerStream`][simplexmpp.serverstream.ServerStream] is the mirror of
[`ClientStream`][simplexmpp.stream.ClientStream]: it answers a client's stream header, offers
STARTTLS, authenticates with SASL PLAIN or SCRAM-SHA-1/-256 (the server side lives in
[`simplexmpp.sasl`][simplexmpp.sasl]: [`ScramServer`][simplexmpp.sasl.ScramServer],
[`check_plain()`][simplexmpp.sasl.check_plain]), lets its owner bind a resource, and then hands
over the stanzas. The owner (a test server, a proxy, a fuzzer) routes stanzas, chooses the bound
JID and moves the bytes; [`simplexmpp.testing.FakeServer`][simplexmpp.testing.FakeServer] is one.

```python
stream = ServerStream("localhost", PasswordAccounts({"alice": "secret"}))
stream.receive_data(b"<?xml version='1.0'?><stream:stream to='localhost' ...>")
sock.sendall(stream.data_to_send())       # our header and the stream features
...
for event in stream.receive_data(data):
    if isinstance(event, BindRequested):
        stream.bind(JID(f"{stream.account}@localhost/{event.resource or 'x'}"))
    elif isinstance(event, ET.Element):   # a stanza from the bound client
        route(event)
```

States, and every move between them (RFC 6120 §4.3 from the receiving side):

```text
WAIT_HEADER -client header-> SECURING      -<starttls/>-> TLS_HANDSHAKE -tls_established()-> WAIT_HEADER
                             AUTHENTICATING -<success/>-> WAIT_HEADER (the client restarts, §6.4.6)
                             BINDING        -bind()-----> READY
(any state) --stream error, footer, close()--> CLOSED
```

What it does not do: stream management (XEP-0198), channel binding (-PLUS), SASL2, legacy
sessions, compression; an element it does not expect while negotiating is a stream error.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Union

from .errors import (STREAM_ERROR_CONDITIONS, AuthenticationError, InvalidStanzaError,
                     JIDError, StreamError)
from .jid import JID
from .sasl import SCRAM_HASHES, ScramServer, ServerAccounts, check_plain
from .stanza import error_element, new_id
from .stream import (BIND_NS, SASL_NS, STREAM_ERRORS_NS, TLS_NS, NonzaReceived, StartTLS,
                     StreamClosed)
from .xml import (CLIENT_NS, STREAM_FOOTER, STREAM_NS, StreamEnd, StreamHeader, StreamParser,
                  tostring)

__all__ = ["ServerStream", "ServerState", "SERVER_TRANSITIONS", "UserAuthenticated",
           "BindRequested", "ServerEvent", "DEFAULT_MECHANISMS"]

DEFAULT_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
"""What a [`ServerStream`][simplexmpp.serverstream.ServerStream] offers unless told otherwise."""

_STANZA_TAGS = frozenset("{%s}%s" % (CLIENT_NS, n) for n in ("message", "presence", "iq"))
_IQ = "{%s}iq" % CLIENT_NS
_STARTTLS = "{%s}starttls" % TLS_NS
_STREAM_ERROR = "{%s}error" % STREAM_NS
_SASL_PREFIX = "{%s}" % SASL_NS


class ServerState(str, Enum):
    """Where a [`ServerStream`][simplexmpp.serverstream.ServerStream] is."""

    WAIT_HEADER = "wait-header"        # the client's (next) header is awaited
    SECURING = "securing"              # STARTTLS offered and required
    TLS_HANDSHAKE = "tls-handshake"    # <proceed/> queued: the owner does TLS once it is out
    AUTHENTICATING = "authenticating"  # SASL mechanisms offered
    BINDING = "binding"                # authenticated, resource binding offered
    READY = "ready"                    # a bound session: stanzas flow
    CLOSED = "closed"                  # our footer is queued; nothing more is read

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


SERVER_TRANSITIONS: Mapping[ServerState, frozenset[ServerState]] = {
    ServerState.WAIT_HEADER: frozenset({ServerState.SECURING, ServerState.AUTHENTICATING,
                                        ServerState.BINDING, ServerState.CLOSED}),
    ServerState.SECURING: frozenset({ServerState.TLS_HANDSHAKE, ServerState.CLOSED}),
    ServerState.TLS_HANDSHAKE: frozenset({ServerState.WAIT_HEADER, ServerState.CLOSED}),
    ServerState.AUTHENTICATING: frozenset({ServerState.WAIT_HEADER, ServerState.CLOSED}),
    ServerState.BINDING: frozenset({ServerState.READY, ServerState.CLOSED}),
    ServerState.READY: frozenset({ServerState.CLOSED}),
    ServerState.CLOSED: frozenset(),
}
"""Every move a [`ServerStream`][simplexmpp.serverstream.ServerStream] may make (staying is always
allowed); any other is a bug and raises RuntimeError."""

_STOP_READING = frozenset({ServerState.TLS_HANDSHAKE, ServerState.CLOSED})


@dataclass
class UserAuthenticated:
    """SASL succeeded: the client is `account` (the name
    [`ServerAccounts`][simplexmpp.sasl.ServerAccounts] returned); the client restarts the stream."""
    account: str
    mechanism: str


@dataclass
class BindRequested:
    """The client asks to bind `resource` (None: the server picks one, RFC 6120 §7.6). Answer with
    [`ServerStream.bind()`][simplexmpp.serverstream.ServerStream.bind] or
    [`ServerStream.refuse_bind()`][simplexmpp.serverstream.ServerStream.refuse_bind]."""
    resource: str | None
    request: ET.Element


ServerEvent = Union[StartTLS, UserAuthenticated, BindRequested, ET.Element, NonzaReceived,
                    StreamClosed]
"""A stanza of the bound client is reported as its element (`from` as the client sent it: the
owner stamps the full JID, RFC 6120 §8.1.2.1)."""


def _b64decode(text: str) -> bytes:
    # RFC 6120 §6.4.2: "=" is an empty response.
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationError("SASL data is not base64", "incorrect-encoding") from None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


class ServerStream:
    """The server side of one client connection (sans-IO).

    `domain` is the server's domain; `accounts` who may log in. With `tls` the stream offers
    STARTTLS and requires it before anything else (the owner does the handshake after
    [`StartTLS`][simplexmpp.stream.StartTLS], once the queued `<proceed/>` is out, then calls
    [`tls_established()`][simplexmpp.serverstream.ServerStream.tls_established]). `mechanisms` are
    offered in that order (of `SCRAM-SHA-256`, `SCRAM-SHA-1`, `SCRAM-SHA-512`, `PLAIN`).

    [`receive_data()`][simplexmpp.serverstream.ServerStream.receive_data] raises
    [`StreamError`][simplexmpp.errors.StreamError] when the client broke the protocol, with our
    stream error and footer already queued; a SASL failure is answered with `<failure/>` and the
    client may try again (RFC 6120 §6.4.5).
    """

    def __init__(self, domain: str, accounts: ServerAccounts, *, tls: bool = False,
                 mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
                 max_stanza_size: int = 1 << 20, lang: str = "en") -> None:
        self.domain = JID(domain)
        if not self.domain.is_bare or self.domain.local is not None:
            raise ValueError(f"domain must be a bare domain like 'localhost', not {domain!r}")
        for mechanism in mechanisms:
            if mechanism != "PLAIN" and mechanism not in SCRAM_HASHES:
                raise ValueError(f"a ServerStream cannot offer {mechanism!r}")
        self.accounts = accounts
        self.tls = tls
        self.mechanisms = tuple(mechanisms)
        self.max_stanza_size = max_stanza_size
        self.lang = lang
        self.state = ServerState.WAIT_HEADER
        self.encrypted = False
        self.account: str | None = None
        """The authenticated account (the name [`ServerAccounts`][simplexmpp.sasl.ServerAccounts]
        returned)."""
        self.mechanism: str | None = None
        self.jid: JID | None = None
        """The bound full JID."""
        self.header: StreamHeader | None = None
        """The client's last stream header."""
        self.stream_id: str | None = None
        self.events_before_error: list[ServerEvent] = []
        """Events of the last `receive_data()` that raised, from the bytes before the error."""
        self._parser = StreamParser(max_stanza_size=max_stanza_size)
        self._out: list[str] = []
        self._header_sent = False
        self._scram: ScramServer | None = None
        self._waiting_initial: str | None = None   # SASL mechanism awaiting its first response
        self._bind_request: ET.Element | None = None
        self._held: list[ET.Element | StreamEnd] = []   # arrived while a bind was pending

    # -- state -----------------------------------------------------------------------------
    def _enter(self, state: ServerState) -> None:
        if state is not self.state and state not in SERVER_TRANSITIONS[self.state]:
            raise RuntimeError(f"server stream: no transition from {self.state} to {state}")
        self.state = state

    # -- driving ---------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Everything queued for the client, as bytes; empties the queue."""
        if not self._out:
            return b""
        data = "".join(self._out).encode("utf-8")
        self._out.clear()
        return data

    def receive_data(self, data: bytes) -> list[ServerEvent]:
        """Feed bytes from the client; return what happened (see
        [`ServerEvent`][simplexmpp.serverstream.ServerEvent])."""
        events: list[ServerEvent] = []
        if self.state is ServerState.CLOSED:
            return events
        try:
            parser = self._parser
            for item in parser.feed(data):
                self._item(item, events)
                if self.state in _STOP_READING or self._parser is not parser:
                    break  # after <proceed/> the bytes are TLS; after a restart, a new stream
        except StreamError as exc:
            self.events_before_error = events
            if not exc.by_peer:
                self.close(exc.condition, exc.text)
            self._enter(ServerState.CLOSED)
            raise
        return events

    def tls_established(self) -> None:
        """The owner finished the TLS handshake after [`StartTLS`][simplexmpp.stream.StartTLS]:
        the client opens a fresh stream (RFC 6120 §5.4.3.3)."""
        if self.state is not ServerState.TLS_HANDSHAKE:
            raise RuntimeError("tls_established() called without a pending StartTLS")
        self.encrypted = True
        self._restart()

    def bind(self, jid: JID) -> list[ServerEvent]:
        """Answer the pending [`BindRequested`][simplexmpp.serverstream.BindRequested] with `jid`
        (a full JID of the account); the session is ready. Returns the events of what the client
        sent meanwhile (it may pipeline stanzas behind its request)."""
        request = self._bind_request
        if request is None or self.state is not ServerState.BINDING:
            raise RuntimeError("bind() without a pending BindRequested")
        if jid.is_bare:
            raise ValueError(f"bind() needs a full JID, not {jid}")
        self._bind_request = None
        self.jid = jid
        bind = ET.Element("{%s}bind" % BIND_NS)
        ET.SubElement(bind, "{%s}jid" % BIND_NS).text = str(jid)
        self._reply(request, bind)
        self._enter(ServerState.READY)
        return self._release()

    def refuse_bind(self, condition: str, text: str | None = None,
                    type: str = "cancel") -> list[ServerEvent]:
        """Answer the pending bind request with a stanza error (RFC 6120 §7.6.2); the client may
        ask again. Returns the events of what the client sent meanwhile."""
        request = self._bind_request
        if request is None:
            raise RuntimeError("refuse_bind() without a pending BindRequested")
        self._bind_request = None
        reply = ET.Element(_IQ, type="error")
        if request.get("id") is not None:
            reply.set("id", request.get("id", ""))
        reply.append(error_element(condition, type, text))
        self._out.append(tostring(reply))
        return self._release()

    def send(self, element: ET.Element) -> None:
        """Queue a stanza for the bound client."""
        self.send_text(tostring(element))

    def send_text(self, text: str) -> None:
        """Queue a serialised stanza for the bound client."""
        if self.state is not ServerState.READY:
            raise InvalidStanzaError(f"cannot send while the server stream is {self.state}")
        self._out.append(text)

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Queue a stream error (RFC 6120 §4.9; none without `condition`) and our footer; nothing
        more is read or sent. Our header goes first if it has not yet (§4.9.1.1)."""
        if self.state is ServerState.CLOSED:
            return
        if not self._header_sent:
            self._send_header(None)
        if condition is not None:
            body = '<%s xmlns="%s"/>' % (condition, STREAM_ERRORS_NS)
            if text:
                body += '<text xmlns="%s">%s</text>' % (STREAM_ERRORS_NS, _escape(text))
            self._out.append("<stream:error>%s</stream:error>" % body)
        self._out.append(STREAM_FOOTER)
        self._enter(ServerState.CLOSED)

    # -- internals -------------------------------------------------------------------------
    def _restart(self) -> None:
        self._parser = StreamParser(max_stanza_size=self.max_stanza_size)
        self._header_sent = False
        self._enter(ServerState.WAIT_HEADER)

    def _release(self) -> list[ServerEvent]:
        events: list[ServerEvent] = []
        held, self._held = self._held, []
        try:
            for item in held:
                self._item(item, events)
                if self.state is ServerState.CLOSED:
                    break
        except StreamError as exc:
            self.events_before_error = events
            if not exc.by_peer:
                self.close(exc.condition, exc.text)
            self._enter(ServerState.CLOSED)
            raise
        return events

    def _send_header(self, to: str | None) -> None:
        self.stream_id = new_id()
        attrs = f'from="{self.domain}" id="{self.stream_id}" version="1.0" xml:lang="{self.lang}"'
        if to:
            try:
                attrs += f' to="{_escape(str(JID(to)))}"'
            except JIDError:
                pass
        self._out.append("<?xml version='1.0'?><stream:stream %s xmlns=\"%s\" "
                         "xmlns:stream=\"%s\">" % (attrs, CLIENT_NS, STREAM_NS))
        self._header_sent = True

    def _item(self, item: ET.Element | StreamHeader | StreamEnd,
              events: list[ServerEvent]) -> None:
        if self._bind_request is not None and not isinstance(item, StreamHeader):
            self._held.append(item)   # answered by bind()/refuse_bind()
        elif isinstance(item, StreamHeader):
            self._header(item)
        elif isinstance(item, StreamEnd):
            self.close()
            events.append(StreamClosed())
        else:
            self._element(item, events)

    def _header(self, header: StreamHeader) -> None:
        if self.state is not ServerState.WAIT_HEADER:
            raise StreamError("invalid-xml", "unexpected stream header")
        self.header = header
        self._send_header(header.from_ if self.encrypted else None)
        # RFC 6120 §4.9.3: the error for a bad header comes after our own header.
        if header.default_ns != CLIENT_NS:
            raise StreamError("invalid-namespace", "the stream must be jabber:client")
        if (header.version or "0.9").split(".")[0] != "1":
            raise StreamError("unsupported-version", "only XMPP 1.0 is spoken here")
        to = header.attrs.get("to")
        if to is None or not self._is_domain(to):
            raise StreamError("host-unknown", f"this server only serves {self.domain}")
        if self.tls and not self.encrypted:
            self._out.append('<stream:features><starttls xmlns="%s"><required/></starttls>'
                             '</stream:features>' % TLS_NS)
            self._enter(ServerState.SECURING)
        elif self.account is None:
            mechs = "".join("<mechanism>%s</mechanism>" % m for m in self.mechanisms)
            self._out.append('<stream:features><mechanisms xmlns="%s">%s</mechanisms>'
                             '</stream:features>' % (SASL_NS, mechs))
            self._enter(ServerState.AUTHENTICATING)
        else:
            self._out.append('<stream:features><bind xmlns="%s"/></stream:features>' % BIND_NS)
            self._enter(ServerState.BINDING)

    def _is_domain(self, text: str) -> bool:
        try:
            return JID(text) == self.domain
        except JIDError:
            return False

    def _element(self, el: ET.Element, events: list[ServerEvent]) -> None:
        tag = el.tag
        state = self.state
        if tag == _STREAM_ERROR:
            # RFC 6120 §4.9.1.2: the client ends the stream; we close our side.
            self.close()
            condition = next((child.tag.rpartition("}")[2] for child in el
                              if child.tag.startswith("{%s}" % STREAM_ERRORS_NS)
                              and child.tag.rpartition("}")[2] in STREAM_ERROR_CONDITIONS),
                             "undefined-condition")
            raise StreamError(condition, "the client ended the stream with an error",
                              by_peer=True)
        if state is ServerState.READY:
            events.append(el if tag in _STANZA_TAGS else NonzaReceived(el))
            return
        if tag == _STARTTLS:
            if state is ServerState.SECURING:
                self._out.append('<proceed xmlns="%s"/>' % TLS_NS)
                self._enter(ServerState.TLS_HANDSHAKE)
                events.append(StartTLS())
            else:
                # RFC 6120 §5.4.2.2: refuse, then close the stream (no stream error).
                self._out.append('<failure xmlns="%s"/>' % TLS_NS)
                self.close()
            return
        if state is ServerState.SECURING:
            raise StreamError("policy-violation", "STARTTLS is required first")
        if state is ServerState.AUTHENTICATING:
            if not tag.startswith(_SASL_PREFIX):
                raise StreamError("not-authorized", "authenticate first")
            self._sasl(el, events)
            return
        if state is ServerState.BINDING:
            payload = el.find("{%s}bind" % BIND_NS)
            if tag == _IQ and el.get("type") == "set" and payload is not None:
                resource = (payload.findtext("{%s}resource" % BIND_NS) or "").strip() or None
                self._bind_request = el
                events.append(BindRequested(resource, el))
                return
            raise StreamError("not-authorized", "bind a resource first")
        raise StreamError("invalid-xml", f"unexpected <{tag}> while {state}")

    # -- SASL (RFC 6120 §6) ------------------------------------------------------------------
    def _sasl(self, el: ET.Element, events: list[ServerEvent]) -> None:
        name = el.tag[len(_SASL_PREFIX):]
        try:
            if name == "auth":
                self._scram = None
                mechanism = el.get("mechanism", "")
                if mechanism not in self.mechanisms:
                    raise AuthenticationError(f"{mechanism} is not offered",
                                              "invalid-mechanism")
                text = (el.text or "").strip()
                if not text:
                    # No initial response: an empty challenge asks for it (§6.4.2).
                    self._waiting_initial = mechanism
                    self._out.append('<challenge xmlns="%s"/>' % SASL_NS)
                    return
                self._sasl_step(mechanism, _b64decode(text), events)
            elif name == "response":
                data = _b64decode((el.text or "").strip())
                if self._waiting_initial is not None:
                    mechanism, self._waiting_initial = self._waiting_initial, None
                    self._sasl_step(mechanism, data, events)
                elif self._scram is not None:
                    scram, self._scram = self._scram, None
                    final = scram.final(data)
                    assert scram.account is not None
                    self._sasl_success(scram.account, scram.mechanism, final, events)
                else:
                    raise AuthenticationError("no SASL exchange in progress", "malformed-request",
                                              "no exchange in progress")
            elif name == "abort":
                self._waiting_initial = None
                raise AuthenticationError("the client aborted", "aborted")
            else:
                raise StreamError("invalid-xml", f"unexpected <{name}> during SASL")
        except AuthenticationError as failure:
            self._scram = None
            body = "<%s/>" % failure.condition
            if failure.text:
                body += '<text xml:lang="en">%s</text>' % _escape(failure.text)
            self._out.append('<failure xmlns="%s">%s</failure>' % (SASL_NS, body))

    def _sasl_step(self, mechanism: str, data: bytes, events: list[ServerEvent]) -> None:
        if mechanism == "PLAIN":
            account, authzid = check_plain(data, self.accounts)
            self._check_authzid(account, authzid)
            self._sasl_success(account, mechanism, None, events)
            return
        scram = ScramServer(mechanism, self.accounts)
        first = scram.first(data)
        assert scram.claimed is not None
        self._check_authzid(scram.claimed, scram.authzid)
        self._scram = scram
        self._out.append('<challenge xmlns="%s">%s</challenge>'
                         % (SASL_NS, base64.b64encode(first).decode()))

    def _check_authzid(self, account: str, authzid: str | None) -> None:
        if not authzid:
            return
        try:
            wanted = JID(authzid)
        except JIDError:
            raise AuthenticationError("the authzid is not a JID", "invalid-authzid") from None
        if wanted.bare != JID(local=account, domain=self.domain.domain):
            raise AuthenticationError("you may only act as yourself here", "invalid-authzid",
                                      "you may only act as yourself here")

    def _sasl_success(self, account: str, mechanism: str, data: bytes | None,
                      events: list[ServerEvent]) -> None:
        self.account = account
        self.mechanism = mechanism
        text = base64.b64encode(data).decode() if data else ""
        self._out.append('<success xmlns="%s">%s</success>' % (SASL_NS, text))
        events.append(UserAuthenticated(account, mechanism))
        self._restart()   # §6.4.6: the client restarts the stream

    def _reply(self, request: ET.Element, payload: ET.Element | None) -> None:
        reply = ET.Element(_IQ, type="result")
        if request.get("id") is not None:
            reply.set("id", request.get("id", ""))
        if payload is not None:
            reply.append(payload)
        self._out.append(tostring(reply))
