"""Client stream negotiation as a state machine (sans-IO, in the manner of h11).

The I/O layer feeds received bytes to
[`ClientStream.receive_data()`][simplexmpp.stream.ClientStream.receive_data], acts on the events it
returns, and writes out whatever
[`ClientStream.data_to_send()`][simplexmpp.stream.ClientStream.data_to_send] hands back. The machine
never touches a socket: when TLS must start it returns [`StartTLS`][simplexmpp.stream.StartTLS], the
I/O layer does the handshake and calls
[`ClientStream.tls_established()`][simplexmpp.stream.ClientStream.tls_established].

Negotiation order (RFC 6120 §4.3, §5, §6, §7; XEP-0198 §3, §5):

```text
header -> features -> [STARTTLS -> restart] -> SASL -> restart -> features
       -> [resume (XEP-0198) | bind -> [session] -> [enable SM]] -> Ready
```

Every rule lives in this file; every transition is unit-tested by replaying transcripts.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Union, cast

from . import sasl
from .errors import (STREAM_ERROR_CONDITIONS, AuthenticationError, InvalidStanzaError,
                     StreamError, TLSError)
from .jid import JID
from .stanza import new_id, parse_error
from .xml import (CLIENT_NS, STREAM_FOOTER, STREAM_NS, StreamEnd, StreamHeader, StreamParser,
                  stream_header, tostring)

__all__ = [
    "ClientStream", "StartTLS", "Authenticated", "Ready", "Resumed",
    "NonzaReceived", "AckReceived", "StreamClosed", "Event", "SMState", "stanza_from_text",
    "TLS_NS", "SASL_NS", "BIND_NS", "SESSION_NS", "SM_NS", "STREAM_ERRORS_NS",
]

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
SM_NS = "urn:xmpp:sm:3"
SASL_CB_NS = "urn:xmpp:sasl-cb:0"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"

_STANZA_TAGS = frozenset("{%s}%s" % (CLIENT_NS, n) for n in ("message", "presence", "iq"))
_TAG, _NO_TAG = itertools.repeat("tag"), itertools.repeat("")  # getattr(item, "tag", "")
_PRESENCE = "{%s}presence" % CLIENT_NS
_FEATURES = "{%s}features" % STREAM_NS
_STREAM_ERROR = "{%s}error" % STREAM_NS


# ---------------------------------------------------------------------------------------------
# Events

@dataclass
class StartTLS:
    """Do the TLS handshake on the socket now, then call `tls_established()`."""


@dataclass
class Authenticated:
    """SASL succeeded with `mechanism`; the stream restarts."""
    mechanism: str


@dataclass
class Ready:
    """The session is established: `jid` is bound; `sm_enabled` says whether XEP-0198 is
    on; `features` are the stream features offered after authentication.

    With `ClientStream(pre_auth=True)` it comes before authentication instead
    (`authenticated` False, `jid` the account's, `features` those of the secured stream):
    the stream is ready for pre-authentication IQs such as XEP-0077 registration."""
    jid: JID
    features: ET.Element
    sm_enabled: bool
    authenticated: bool = True


@dataclass
class Resumed:
    """XEP-0198 §5: the previous session was resumed. `resend` are the stanzas the server had not
    acknowledged, serialised as they first went out, to be sent again (the machine has already
    queued them; [`stanza_from_text()`][simplexmpp.stream.stanza_from_text] turns one back into an
    element)."""
    jid: JID
    resend: list[str]


@dataclass
class NonzaReceived:
    """Any other top-level element once the session is ready (for extensions)."""
    element: ET.Element


@dataclass
class AckReceived:
    """XEP-0198 `<a h=.../>`: `acked` are the stanzas it confirmed, oldest first, as
    serialised when sent."""
    h: int
    acked: list[str]


@dataclass
class StreamClosed:
    """The peer closed the stream (and we have answered with our own footer)."""


Event = Union[StartTLS, Authenticated, Ready, Resumed, ET.Element, NonzaReceived,
              AckReceived, StreamClosed]
"""A `message`, `presence` or `iq` from the peer is reported as its element itself, without a
wrapper object: that is the hot path of a running session."""


# ---------------------------------------------------------------------------------------------
# Stream management book-keeping (XEP-0198)

@dataclass
class SMState:
    """Counters of XEP-0198 §4; survives a dropped connection so the session can be resumed."""
    id: str | None = None
    jid: JID | None = None     # the full JID bound in the session being managed
    resumable: bool = False
    location: str | None = None
    max: int | None = None
    inbound: int = 0           # stanzas received since enabling (our h)
    outbound: int = 0          # stanzas sent since enabling
    acked: int = 0             # the server's last h
    unacked: deque[str] = field(default_factory=deque)
    """Sent, not yet acknowledged: each stanza's text exactly as it went out, so a resend repeats
    what was sent even if the caller changed the element since (and text takes a fraction of the
    memory of the element trees a busy sender would keep)."""

    def record_sent(self, text: str) -> None:
        self.outbound += 1
        self.unacked.append(text)

    def ack(self, h: int) -> list[str]:
        """Drop the stanzas the server's `h` confirms (counted modulo 2**32, §4)."""
        count = (h - self.acked) % (1 << 32)
        if count > len(self.unacked):
            # §4: an h beyond what we sent is a protocol error on the server's side.
            raise StreamError("undefined-condition",
                              f"server acknowledged {count} stanzas but only "
                              f"{len(self.unacked)} were unacknowledged")
        self.acked = h
        return [self.unacked.popleft() for _ in range(count)]


# ---------------------------------------------------------------------------------------------

def stanza_from_text(text: str) -> ET.Element:
    """The element of a stanza serialised by [`tostring()`][simplexmpp.xml.tostring] (as kept for
    XEP-0198 resends): the stream's default namespace is put back around it. Only our own
    output comes here, never the peer's bytes."""
    return ET.fromstring('<s xmlns="%s">%s</s>' % (CLIENT_NS, text))[0]


def _b64(data: bytes | None) -> str:
    # RFC 6120 §6.4.2: an empty initial response is sent as "=".
    if data is None:
        return ""
    return base64.b64encode(data).decode("ascii") if data else "="


def _unb64(text: str | None) -> bytes:
    text = (text or "").strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationError("server sent SASL data that is not valid base64",
                                  "malformed-request") from None


def _el(tag: str, ns: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.Element("{%s}%s" % (ns, tag), attrs)
    if text:
        element.text = text
    return element


class ClientStream:
    """The client side of one XMPP session, from the first stream header to the last footer.

    `tls` is `"starttls"` (required), `"direct"` (the socket is already TLS, XEP-0368) or
    `"none"` (plain text; PLAIN is then never used). `sm` asks for XEP-0198, and
    `sm_state` (from a previous session) asks to resume it. `pre_auth` stops negotiation
    once the stream is secured (before SASL) and reports [`Ready`][simplexmpp.stream.Ready] with
    `authenticated=False`, for XEP-0077 in-band registration (§3.1).
    """

    # Whether received stanzas are reported exactly as parsed, which lets
    # `receive_data` skip `_element` for them (a subclass that rewrites
    # stanzas in `_element` sets it False).
    _stanzas_as_parsed: ClassVar[bool] = True

    def __init__(self, jid: JID, password: str | None, *, tls: str = "starttls",
                 resource: str | None = None, sm: bool = True, sm_state: SMState | None = None,
                 mechanisms: list[str] | None = None, max_stanza_size: int = 1 << 20,
                 lang: str = "en", channel_bindings: Mapping[str, bytes] | None = None,
                 pre_auth: bool = False) -> None:
        if tls not in ("starttls", "direct", "none"):
            raise ValueError(f"tls must be 'starttls', 'direct' or 'none', not {tls!r}")
        self.jid = jid
        self._password = password
        self.tls = tls
        self.encrypted = tls == "direct"
        self.resource = resource if resource is not None else jid.resource
        self.want_sm = sm
        self.pre_auth = pre_auth
        self.sm: SMState | None = None
        self._resume = sm_state if sm_state and sm_state.resumable and sm_state.id else None
        self.mechanisms = mechanisms
        self.max_stanza_size = max_stanza_size
        self.lang = lang
        self.channel_bindings: dict[str, bytes] = dict(channel_bindings or {})
        self.state = "init"
        self.authenticated = False
        self.mechanism: str | None = None
        self.features: ET.Element | None = None
        self.header: StreamHeader | None = None
        self._sasl: sasl.Mechanism | None = None
        self._pending_id: str | None = None
        self._out: list[str] = []
        self._parser = StreamParser(max_stanza_size=max_stanza_size)
        self._earlier_replacements = 0  # parser replacements in streams before a restart
        self._earlier_elements = 0
        self._closing = False
        self.ack_pending = False
        """The server asked for an ack (XEP-0198 `<r/>`) that is not answered yet: the `<a/>` goes
        out with our next output, or when the owner calls
        [`send_ack()`][simplexmpp.stream.ClientStream.send_ack]."""
        self.events_before_error: list[Event] = []
        """Events of the last `receive_data` call that raised
        [`StreamError`][simplexmpp.errors.StreamError], parsed from the same bytes before the error
        (a reply, then a stream error, in one read)."""

    @property
    def in_stanza(self) -> bool:
        """True while the peer is part-way through sending a stanza."""
        return self._parser.in_stanza

    @property
    def parser_replacements(self) -> int:
        """How many times the XML parser was replaced to bound the names it keeps (see
        [StreamParser][simplexmpp.xml.StreamParser] `recycle_bytes`), restarts included."""
        return self._earlier_replacements + self._parser.replacements

    @property
    def elements_received(self) -> int:
        """Top-level elements (stanzas and nonzas) received so far, restarts included."""
        return self._earlier_elements + self._parser.completed

    # -- driving the machine ---------------------------------------------------------------
    def start(self) -> None:
        """Queue the initial stream header."""
        self._restart()

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, as bytes; empties the queue."""
        if not self._out:
            return b""
        if self.ack_pending:
            self.send_ack()   # rides along: no write of its own
        data = "".join(self._out).encode("utf-8")
        self._out.clear()
        return data

    def tls_established(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """The I/O layer finished the TLS handshake asked for by
        [`StartTLS`][simplexmpp.stream.StartTLS]."""
        if self.state != "tls-handshake":
            raise RuntimeError("tls_established() called without a pending StartTLS")
        self.encrypted = True
        self.channel_bindings = dict(channel_bindings or {})
        self._restart()  # RFC 6120 §5.4.3.3: a fresh stream over TLS, nothing carried over

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return what happened.

        Raises [`StreamError`][simplexmpp.errors.StreamError],
        [`AuthenticationError`][simplexmpp.errors.AuthenticationError] or
        [`TLSError`][simplexmpp.errors.TLSError] when the session cannot go on; a stream error for
        the peer is then already queued to send.
        """
        events: list[Event] = []
        try:
            items = self._parser.feed(data)
            if self.state == "ready" and self._stanzas_as_parsed and \
                    _STANZA_TAGS.issuperset(map(getattr, items, _TAG, _NO_TAG)):
                # Hot path of a running session: the parser's list holds only stanzas (as
                # checked in C above: only elements have a tag), so it is handed on as it
                # is, counted for XEP-0198. Acks, errors, the stream end go the general way.
                sm = self.sm
                if sm is not None:
                    sm.inbound = (sm.inbound + len(items)) % (1 << 32)
                return cast("list[Event]", items)
            for item in items:
                if isinstance(item, ET.Element):
                    self._element(item, events)
                elif isinstance(item, StreamHeader):
                    self._stream_header(item)
                elif isinstance(item, StreamEnd):
                    self._peer_closed(events)
                if self.state in ("tls-handshake", "closed"):
                    break  # bytes after <proceed/> belong to TLS; after the footer, nothing
        except StreamError as exc:
            # What was parsed before the error still happened; the owner handles it first.
            self.events_before_error = events
            if not exc.by_peer and self.state != "closed":
                self._send_stream_error(exc.condition, exc.text)
            self.state = "closed"
            raise
        except (AuthenticationError, TLSError):
            self._close_now()
            raise
        return events

    def connection_lost(self) -> None:
        """The transport is gone: nothing more can be sent on this stream. Stream-management
        state (`sm`, `unacked`) is kept for resumption."""
        self.state = "closed"
        self._out.clear()
        self.ack_pending = False

    def send(self, element: ET.Element, text: str | None = None) -> None:
        """Queue a stanza (or nonza) for sending; stanzas are counted for XEP-0198.
        `text` is `tostring(element)` when the caller has it already."""
        self.send_text(tostring(element) if text is None else text,
                       element.tag in _STANZA_TAGS)

    def send_text(self, text: str, stanza: bool = True) -> None:
        """Queue serialised XML: a stanza (counted and kept until acknowledged, XEP-0198) or, with
        `stanza` False, a nonza. The caller vouches that `text` is one well-formed element in the
        stream's default namespace, as [`tostring()`][simplexmpp.xml.tostring] writes it."""
        if self.state != "ready":
            raise InvalidStanzaError(f"cannot send while the stream is {self.state}")
        self._out.append(text)
        if stanza and self.sm is not None:
            self.sm.record_sent(text)

    def send_raw(self, text: str) -> None:
        """Queue already-serialised XML (whitespace keepalives, pre-built stanzas)."""
        self._out.append(text)

    def send_ack(self) -> None:
        """XEP-0198 §4: answer the server's pending `<r/>` now, with the number of stanzas
        handled so far (answering later is allowed; the owner bounds the delay). Never after
        our closing footer: [`close()`][simplexmpp.stream.ClientStream.close] answers first."""
        if self.ack_pending and self.sm is not None and self.state == "ready":
            self._out.append('<a xmlns="%s" h="%d"/>' % (SM_NS, self.sm.inbound))
        self.ack_pending = False

    def request_ack(self) -> None:
        """XEP-0198 §4: ask the server how many of our stanzas it has handled."""
        if self.sm is not None and self.state == "ready":
            self._out.append('<r xmlns="%s"/>' % SM_NS)

    def close(self) -> None:
        """Queue our closing footer (RFC 6120 §4.4); the peer answers with its own."""
        if self.state not in ("closing", "closed", "init"):
            self.send_ack()  # before the footer: the server must not think them unhandled
            self._out.append(STREAM_FOOTER)
            self.state = "closing"

    # -- internals -------------------------------------------------------------------------
    def _restart(self) -> None:
        self._earlier_replacements += self._parser.replacements
        self._earlier_elements += self._parser.completed
        self._parser = StreamParser(max_stanza_size=self.max_stanza_size)
        self._out.append(stream_header(self.jid.domain, from_=str(self.jid.bare)
                                       if self.encrypted else None, lang=self.lang))
        self.state = "wait-header"

    def _close_now(self) -> None:
        if self.state != "closed":
            self._out.append(STREAM_FOOTER)
        self.state = "closed"

    def _send_stream_error(self, condition: str, text: str | None = None) -> None:
        if self.state in ("init",):
            return
        body = '<%s xmlns="%s"/>' % (condition, STREAM_ERRORS_NS)
        if text:
            body += '<text xmlns="%s">%s</text>' % (
                STREAM_ERRORS_NS, text.replace("&", "&amp;").replace("<", "&lt;"))
        self._out.append("<stream:error>%s</stream:error>%s" % (body, STREAM_FOOTER))

    def _stream_header(self, header: StreamHeader) -> None:
        if self.state != "wait-header":
            raise StreamError("invalid-xml", "unexpected stream header")
        if header.default_ns != CLIENT_NS:
            raise StreamError("invalid-namespace",
                              f"stream default namespace is {header.default_ns!r}, "
                              f"expected {CLIENT_NS!r}")
        version = header.version or "0.9"
        if not version.startswith("1."):
            # RFC 6120 §4.7.5: without version 1.0 there are no stream features.
            raise StreamError("unsupported-version",
                              f"server speaks stream version {version}; XMPP 1.0 is required")
        self.header = header
        self.state = "wait-features"

    def _peer_closed(self, events: list[Event]) -> None:
        if self.state != "closing":
            self.send_ack()
            self._out.append(STREAM_FOOTER)
        self.state = "closed"
        events.append(StreamClosed())

    def _element(self, el: ET.Element, events: list[Event]) -> None:
        tag = el.tag
        if tag == _STREAM_ERROR:
            raise self._stream_error_from(el)
        state = self.state
        if state == "ready" or state == "closing":
            if tag in _STANZA_TAGS:
                if self.sm is not None:
                    self.sm.inbound = (self.sm.inbound + 1) % (1 << 32)
                events.append(el)
            elif tag == "{%s}r" % SM_NS and self.sm is not None:
                # Answered with our next output (see data_to_send), so a request after a
                # reply costs no write of its own; the owner sends it alone if nothing else
                # goes out soon (Client: ack_delay).
                self.ack_pending = True
            elif tag == "{%s}a" % SM_NS and self.sm is not None:
                h = self._h(el)
                events.append(AckReceived(h, self.sm.ack(h)))
            else:
                events.append(NonzaReceived(el))
            return
        handler = {
            "wait-features": self._features,
            "wait-proceed": self._tls_answer,
            "sasl": self._sasl_step,
            "resuming": self._resume_answer,
            "binding": self._bind_answer,
            "session": self._session_answer,
            "enabling": self._enable_answer,
        }.get(state)
        if handler is None:
            raise StreamError("invalid-xml", f"unexpected <{tag}> while {state}")
        handler(el, events)

    def _stream_error_from(self, el: ET.Element) -> StreamError:
        condition, text, other = "undefined-condition", None, None
        for child in el:
            ns, _, name = child.tag[1:].partition("}")
            if ns != STREAM_ERRORS_NS:
                continue
            if name == "text":
                text = child.text
            elif name in STREAM_ERROR_CONDITIONS:
                condition = name
                if name == "see-other-host":
                    other = (child.text or "").strip() or None
        self._close_now()
        return StreamError(condition, text, by_peer=True, other_host=other)

    # features ------------------------------------------------------------------------------
    def _features(self, el: ET.Element, events: list[Event]) -> None:
        if el.tag != _FEATURES:
            raise StreamError("invalid-xml", f"expected stream features, got <{el.tag}>")
        self.features = el
        starttls = el.find("{%s}starttls" % TLS_NS)
        if not self.encrypted:
            if starttls is not None and self.tls != "none":
                self._out.append('<starttls xmlns="%s"/>' % TLS_NS)
                self.state = "wait-proceed"
                return
            if self.tls == "starttls":
                # RFC 7590 §3.1: never fall back to plain text because the server says so.
                raise TLSError(
                    "server did not offer STARTTLS but TLS is required (possible downgrade "
                    "attack); pass tls='direct' if the server uses direct TLS, or tls='none' "
                    "for a plain-text connection to loopback")
        if not self.authenticated:
            if self.pre_auth:
                # XEP-0077 §3.1: registration happens on the secured stream before SASL; the
                # owner sends its IQs now and closes the stream afterwards.
                self.state = "ready"
                events.append(Ready(self.jid, el, False, authenticated=False))
                return
            self._start_sasl(el)
            return
        if self._resume is not None and el.find("{%s}sm" % SM_NS) is not None:
            sm = self._resume
            self._out.append('<resume xmlns="%s" h="%d" previd="%s"/>'
                             % (SM_NS, sm.inbound, sm.id))
            self.state = "resuming"
            return
        self._bind(el)

    def _tls_answer(self, el: ET.Element, events: list[Event]) -> None:
        if el.tag == "{%s}proceed" % TLS_NS:
            self.state = "tls-handshake"
            events.append(StartTLS())
        elif el.tag == "{%s}failure" % TLS_NS:
            raise TLSError("server refused to start TLS (STARTTLS failure)")
        else:
            raise StreamError("invalid-xml", f"expected <proceed/>, got <{el.tag}>")

    # SASL (RFC 6120 §6) ----------------------------------------------------------------------
    def _start_sasl(self, features: ET.Element) -> None:
        mechs_el = features.find("{%s}mechanisms" % SASL_NS)
        if mechs_el is None:
            raise AuthenticationError("server offers no SASL authentication", "no-mechanism")
        offered = [(m.text or "").strip() for m in mechs_el.findall("{%s}mechanism" % SASL_NS)]
        cb_el = features.find("{%s}sasl-channel-binding" % SASL_CB_NS)
        server_cb = None if cb_el is None else [
            c.get("type", "") for c in cb_el.findall("{%s}channel-binding" % SASL_CB_NS)]
        self._sasl = sasl.choose_mechanism(
            offered, username=self.jid.local or "", password=self._password,
            encrypted=self.encrypted, channel_bindings=self.channel_bindings,
            server_cb_types=server_cb, allowed=self.mechanisms)
        self.mechanism = self._sasl.name
        initial = self._sasl.initial_response()
        self._out.append('<auth xmlns="%s" mechanism="%s">%s</auth>'
                         % (SASL_NS, self._sasl.name, _b64(initial)))
        self.state = "sasl"

    def _sasl_step(self, el: ET.Element, events: list[Event]) -> None:
        assert self._sasl is not None
        name = el.tag.rpartition("}")[2]
        if not el.tag.startswith("{%s}" % SASL_NS):
            raise StreamError("invalid-xml", f"unexpected <{el.tag}> during SASL")
        if name == "challenge":
            response = self._sasl.challenge(_unb64(el.text))
            encoded = base64.b64encode(response).decode("ascii")  # empty stays empty (§6.4.3)
            self._out.append('<response xmlns="%s">%s</response>' % (SASL_NS, encoded))
        elif name == "success":
            self._sasl.success(_unb64(el.text) if el.text else None)
            self.authenticated = True
            self._password = None  # no longer needed in this session
            events.append(Authenticated(self._sasl.name))
            self._restart()  # RFC 6120 §6.4.6
        elif name == "failure":
            condition = "not-authorized"
            text = None
            for child in el:
                local = child.tag.rpartition("}")[2]
                if local == "text":
                    text = child.text
                else:
                    condition = local
            message = f"server rejected the credentials for {self.jid.bare} ({condition})"
            if text:
                message += f": {text}"
            if condition == "not-authorized":
                message += "; check the JID and password"
            raise AuthenticationError(message, condition, text)
        else:
            raise StreamError("invalid-xml", f"unexpected <{name}> during SASL")

    # bind, session, stream management -----------------------------------------------------
    def _bind(self, features: ET.Element) -> None:
        if features.find("{%s}bind" % BIND_NS) is None:
            raise StreamError("unsupported-feature", "server does not offer resource binding")
        bind = ET.Element("{%s}bind" % BIND_NS)
        if self.resource:
            ET.SubElement(bind, "{%s}resource" % BIND_NS).text = self.resource
        self._iq("set", bind)
        self.state = "binding"

    def _iq(self, type: str, payload: ET.Element) -> None:
        self._pending_id = new_id()
        iq = ET.Element("{%s}iq" % CLIENT_NS, type=type, id=self._pending_id)
        iq.append(payload)
        self._out.append(tostring(iq))

    def _iq_answer(self, el: ET.Element, what: str) -> ET.Element | None:
        """The result payload of our pending negotiation IQ; raises on error replies."""
        if el.tag != "{%s}iq" % CLIENT_NS or el.get("id") != self._pending_id:
            raise StreamError("invalid-xml", f"unexpected <{el.tag}> while waiting for {what}")
        if el.get("type") == "error":
            condition, _, text, _ = parse_error(el.find("{%s}error" % CLIENT_NS))
            raise StreamError("undefined-condition",
                              f"server refused {what}: {condition}" + (f" ({text})" if text else ""))
        if el.get("type") != "result":
            raise StreamError("invalid-xml", f"bad reply to {what}")
        return el.find("*")

    def _bind_answer(self, el: ET.Element, events: list[Event]) -> None:
        payload = self._iq_answer(el, "resource binding")
        jid_el = None if payload is None else payload.find("{%s}jid" % BIND_NS)
        if jid_el is None or not jid_el.text:
            raise StreamError("invalid-xml", "resource binding result carries no JID")
        bound = JID(jid_el.text.strip())
        expected = bound.domain == self.jid.domain if self.jid.local is None else \
            bound.bare == self.jid.bare   # ANONYMOUS (RFC 4505): the server picks the local
        if not expected or bound.is_bare:
            # RFC 6120 §7.6.1: the server binds a full JID for *our* account.
            raise StreamError("invalid-xml", f"server bound a foreign JID {bound}")
        self.jid = bound
        assert self.features is not None
        session = self.features.find("{%s}session" % SESSION_NS)
        # RFC 6121 §A (legacy session): only when offered without <optional/>.
        if session is not None and session.find("{%s}optional" % SESSION_NS) is None:
            self._iq("set", ET.Element("{%s}session" % SESSION_NS))
            self.state = "session"
            return
        self._after_session(events)

    def _session_answer(self, el: ET.Element, events: list[Event]) -> None:
        self._iq_answer(el, "session establishment")
        self._after_session(events)

    def _after_session(self, events: list[Event]) -> None:
        assert self.features is not None
        if self.want_sm and self.features.find("{%s}sm" % SM_NS) is not None:
            self._out.append('<enable xmlns="%s" resume="true"/>' % SM_NS)
            self.state = "enabling"
            return
        self._ready(events, sm_enabled=False)

    def _enable_answer(self, el: ET.Element, events: list[Event]) -> None:
        if el.tag == "{%s}enabled" % SM_NS:
            try:
                max_ = int(el.get("max", "0") or 0) or None
            except ValueError:
                max_ = None
            self.sm = SMState(id=el.get("id"), jid=self.jid,
                              resumable=el.get("resume") in ("true", "1"),
                              location=el.get("location"), max=max_)
            self._ready(events, sm_enabled=True)
            return
        if el.tag == "{%s}failed" % SM_NS:
            self._ready(events, sm_enabled=False)
            return
        raise StreamError("invalid-xml", f"unexpected <{el.tag}> while enabling stream management")

    def _resume_answer(self, el: ET.Element, events: list[Event]) -> None:
        old = self._resume
        assert old is not None
        if el.tag == "{%s}resumed" % SM_NS:
            old.ack(self._h(el))
            self.sm = old
            self._resume = None
            if old.jid is not None:
                self.jid = old.jid
            self.state = "ready"
            resend = list(old.unacked)
            old.unacked.clear()
            old.outbound = old.acked  # the resent ones are counted again as they go out
            for text in resend:
                self.send_text(text)
            events.append(Resumed(self.jid, resend))
            return
        if el.tag == "{%s}failed" % SM_NS:
            # XEP-0198 §5: resumption failed; bind a new session. Unacked stanzas are kept in
            # self._resume and re-sent once the new session is ready (see _ready).
            h = el.get("h")
            if h is not None:
                try:
                    old.ack(int(h))
                except (ValueError, StreamError):
                    pass
            assert self.features is not None
            self._bind(self.features)
            return
        raise StreamError("invalid-xml", f"unexpected <{el.tag}> while resuming")

    def _ready(self, events: list[Event], sm_enabled: bool) -> None:
        self.state = "ready"
        assert self.features is not None
        events.append(Ready(self.jid, self.features, sm_enabled))
        old, self._resume = self._resume, None
        if old is not None:
            # A new session after a failed resumption: what the old one never confirmed is sent
            # again; it may have been delivered already, so receivers drop repeats by the
            # XEP-0359 origin-id.
            # Broadcast presence is session state, not a message: the owner of the stream
            # sends the current one on the new session, so old copies are not repeated.
            for text in old.unacked:
                if text.startswith("<presence"):
                    stanza = stanza_from_text(text)
                    if stanza.tag == _PRESENCE and stanza.get("to") is None:
                        continue
                self.send_text(text)

    @staticmethod
    def _h(el: ET.Element) -> int:
        try:
            h = int(el.get("h", ""))
        except ValueError:
            raise StreamError("invalid-xml", "stream management h is not a number") from None
        if not 0 <= h < (1 << 32):
            raise StreamError("invalid-xml", "stream management h out of range")
        return h

    @property
    def unacked(self) -> list[ET.Element]:
        """Stanzas sent but not yet acknowledged by the server (XEP-0198), oldest first, as
        elements parsed again from what was sent (each call parses them all)."""
        sm = self.sm if self.sm is not None else self._resume
        return [stanza_from_text(text) for text in sm.unacked] if sm is not None else []
