"""Stream negotiation as a state machine (sans-IO, in the manner of h11).

The I/O layer feeds received bytes to
[`ClientStream.receive_data()`][simplexmpp.stream.ClientStream.receive_data], acts on the events it
returns, and writes out whatever
[`ClientStream.data_to_send()`][simplexmpp.stream.ClientStream.data_to_send] hands back. The machine
never touches a socket: when TLS must start it returns [`StartTLS`][simplexmpp.stream.StartTLS], the
I/O layer does the handshake and calls
[`ClientStream.tls_established()`][simplexmpp.stream.ClientStream.tls_established].

**One stream, several negotiators** (h11's `our_role`, applied to XMPP): the stream itself owns
the parts every XMPP stream shares — the parser and its restarts, the output queue, stream
errors, the closing handshake, and once ready the stanzas and XEP-0198 counting. How the stream
gets from its header to [`Ready`][simplexmpp.stream.Ready] is the job of a
[`Negotiator`][simplexmpp.stream.Negotiator] passed to the constructor:

| negotiator | what it negotiates | chosen by |
|---|---|---|
| [`LoginNegotiator`][simplexmpp.stream.LoginNegotiator] | RFC 6120: STARTTLS, SASL, bind, legacy session, XEP-0198 enable or resume | `ClientStream(jid, password)` (the default) |
| [`PreAuthNegotiator`][simplexmpp.stream.PreAuthNegotiator] | STARTTLS, then stops before SASL (XEP-0077 §3.1 registration) | `ClientStream(jid, pre_auth=True)` |
| [`ComponentNegotiator`][simplexmpp.component.ComponentNegotiator] | XEP-0114 handshake in `jabber:component:accept` | `ComponentStream(domain, secret)` |

```python
stream = ClientStream(JID("alice@example.org"), negotiator=LoginNegotiator("secret"))
```

Stream states, and every rule that moves between them, are in
[`StreamState`][simplexmpp.stream.StreamState] and `TRANSITIONS` below:

```text
INIT -start()-> WAIT_HEADER -peer header-> NEGOTIATING -negotiator-> READY -close()-> CLOSING
                    ^                           |  |                                     |
                    +------restart()------------+  +-start_tls()-> TLS_HANDSHAKE          |
                    +------------tls_established()--------------------+                  v
  (any state) --stream error, footer, connection lost, failed negotiation--------------> CLOSED
```

Negotiation order of the default login (RFC 6120 §4.3, §5, §6, §7; XEP-0198 §3, §5), the steps of
[`LoginStep`][simplexmpp.stream.LoginStep]:

```text
header -> features -> [STARTTLS -> restart] -> SASL -> restart -> features
       -> [resume (XEP-0198) | bind -> [session] -> [enable SM]] -> Ready
```

## Writing a negotiator

A negotiator is one object per stream (it keeps where it is) subclassing
[`Negotiator`][simplexmpp.stream.Negotiator]; the stream calls it, it never calls the I/O layer.
What the stream calls:

* `header(stream)` at the start and at each restart: the opening tag to send (default: an RFC 6120
  client header, `from` our bare JID once encrypted). Reset your own step here: a restart means
  fresh stream features follow.
* `header_received(stream, header)`: check the peer's header (default: `jabber:client` and version
  1.x, RFC 6120 §4.7.5); raise [`StreamError`][simplexmpp.errors.StreamError] to refuse it.
* `element(stream, element, events)` for every top-level element while the stream is
  `NEGOTIATING` (stream errors excepted, which the stream turns into
  [`StreamError`][simplexmpp.errors.StreamError] and passes through `stream_error()`). Append
  events to `events`; raise [`StreamError`][simplexmpp.errors.StreamError],
  [`AuthenticationError`][simplexmpp.errors.AuthenticationError] or
  [`TLSError`][simplexmpp.errors.TLSError] to end the stream (the stream sends the stream error or
  the footer).
* `stream_error(stream, error)`: return the exception to raise for a stream error the peer sent
  (default: `error` itself), to say more in the negotiator's terms.
* `rewrites_stanzas = True` with `incoming_stanza(element)` and `outgoing_stanza(stream,
  element)`: rename or check stanzas on a stream whose namespace is not `jabber:client` (the
  component's); leave it False to keep the hot path of received stanzas untouched.

What a negotiator may call on the stream (and nothing else): `send_raw(text)` (queue a nonza or
negotiation IQ), `restart()` (RFC 6120 §6.4.6: a fresh parser and our new header),
`start_tls(events)`, `authenticated_with(mechanism, events)`, `enable_sm(enabled_element)`,
`resumed(h, events)`, `resume_failed(h)`, `ready(events, sm_enabled, authenticated=True)`; and
read or set the attributes `jid`, `features`, `header`, `encrypted`, `tls`, `channel_bindings`,
`want_sm`, `sm_resume`, `lang`. The helpers
[`negotiate_tls()`][simplexmpp.stream.negotiate_tls], [`tls_answer()`][simplexmpp.stream.tls_answer],
[`sasl_failure()`][simplexmpp.stream.sasl_failure], [`iq_payload()`][simplexmpp.stream.iq_payload]
and [`check_bound_jid()`][simplexmpp.stream.check_bound_jid] hold rules several negotiators share.
A negotiator keeps its own steps as an enum with a `TRANSITIONS` table beside it and moves with
[`Negotiator.go()`][simplexmpp.stream.Negotiator.go], which refuses a move the table does not
list.

A new negotiator (SASL2 + Bind2 + FAST, XEP-0388/0386/0484, say) lives in its own module and is
passed as `ClientStream(jid, negotiator=...)`; nothing here changes for it.

Every rule of the standard negotiators lives in this file; every transition is unit-tested by
replaying transcripts.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Mapping, Union, cast

from . import sasl
from .errors import (STREAM_ERROR_CONDITIONS, AuthenticationError, InvalidStanzaError,
                     JIDError, StreamError, TLSError)
from .jid import JID
from .stanza import new_id, parse_error
from .xml import (CLIENT_NS, STREAM_FOOTER, STREAM_NS, StreamEnd, StreamHeader, StreamParser,
                  stream_header, tostring)

__all__ = [
    "ClientStream", "StartTLS", "Authenticated", "Ready", "Resumed",
    "NonzaReceived", "AckReceived", "StreamClosed", "Event", "SMState", "stanza_from_text",
    "TLS_NS", "SASL_NS", "BIND_NS", "SESSION_NS", "SM_NS", "STREAM_ERRORS_NS",
    "StreamState", "TRANSITIONS", "Negotiator", "LoginNegotiator", "LoginStep",
    "PreAuthNegotiator", "PreAuthStep", "negotiate_tls", "tls_answer", "sasl_failure",
    "iq_payload", "check_bound_jid",
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

    With [`PreAuthNegotiator`][simplexmpp.stream.PreAuthNegotiator] (`ClientStream(pre_auth=True)`)
    it comes before authentication instead
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


# ---------------------------------------------------------------------------------------------
# Stream states and every transition between them (the negotiator's own steps are in the
# negotiator, beside its own table)

class StreamState(str, Enum):
    """Where a stream is, as the stream itself sees it; what happens between the peer's header
    and readiness is the negotiator's (its `step`). The values are the names used in messages,
    and compare equal to those strings."""

    INIT = "init"                    # made, start() not called yet
    WAIT_HEADER = "wait-header"      # our header is out, the peer's is awaited
    NEGOTIATING = "negotiating"      # headers exchanged; the negotiator is at work
    TLS_HANDSHAKE = "tls-handshake"  # the I/O layer does TLS, then calls tls_established()
    READY = "ready"                  # stanzas flow
    CLOSING = "closing"              # our footer is out; the peer's is awaited
    CLOSED = "closed"                # nothing more is sent or read

    __hash__ = str.__hash__          # so "ready" and StreamState.READY are one key

    def __str__(self) -> str:
        return self.value


TRANSITIONS: Mapping[StreamState, frozenset[StreamState]] = {
    StreamState.INIT: frozenset({StreamState.WAIT_HEADER, StreamState.CLOSED}),
    StreamState.WAIT_HEADER: frozenset({StreamState.NEGOTIATING, StreamState.CLOSING,
                                        StreamState.CLOSED}),
    # restart() after SASL goes back to WAIT_HEADER (RFC 6120 §6.4.6).
    StreamState.NEGOTIATING: frozenset({StreamState.WAIT_HEADER, StreamState.TLS_HANDSHAKE,
                                        StreamState.READY, StreamState.CLOSING,
                                        StreamState.CLOSED}),
    # tls_established(): a fresh stream over TLS (RFC 6120 §5.4.3.3).
    StreamState.TLS_HANDSHAKE: frozenset({StreamState.WAIT_HEADER, StreamState.CLOSING,
                                          StreamState.CLOSED}),
    StreamState.READY: frozenset({StreamState.CLOSING, StreamState.CLOSED}),
    StreamState.CLOSING: frozenset({StreamState.CLOSED}),
    StreamState.CLOSED: frozenset(),
}
"""The moves [`ClientStream`][simplexmpp.stream.ClientStream] may make from each state (staying in
a state is always allowed); any other move is a bug and raises RuntimeError."""

_READY = StreamState.READY
_CLOSED = StreamState.CLOSED


class Negotiator:
    """How a stream gets from its header to [`Ready`][simplexmpp.stream.Ready] (see "Writing a
    negotiator" in the module documentation). One object per stream."""

    name: ClassVar[str] = ""
    """What the negotiator does, for messages (`"login"`, `"component"` …)."""
    namespace: ClassVar[str] = CLIENT_NS
    """The default namespace of the stream's stanzas."""
    rewrites_stanzas: ClassVar[bool] = False
    """True when `incoming_stanza()`/`outgoing_stanza()` change stanzas (costs the hot path)."""
    TRANSITIONS: ClassVar[Mapping[Any, frozenset[Any]]] = {}
    """The moves allowed between this negotiator's steps (see
    [`go()`][simplexmpp.stream.Negotiator.go])."""

    step: Any = None
    """Where this negotiator is: a member of its own step enum."""

    def go(self, step: Any) -> None:
        """Move to `step`, if `TRANSITIONS` allows it from the current step; RuntimeError (a bug in
        the negotiator, never the peer's doing) otherwise."""
        if step is not self.step and step not in self.TRANSITIONS.get(self.step, ()):
            raise RuntimeError(f"{type(self).__name__}: no transition from {self.step} "
                               f"to {step}")
        self.step = step

    def header(self, stream: ClientStream) -> str:
        """Our stream header, at the start and at each restart (RFC 6120 §4.7)."""
        return stream_header(stream.jid.domain, from_=str(stream.jid.bare)
                             if stream.encrypted else None, lang=stream.lang)

    def header_received(self, stream: ClientStream, header: StreamHeader) -> None:
        """Check the peer's header; raise StreamError to refuse it."""
        if header.default_ns != CLIENT_NS:
            raise StreamError("invalid-namespace",
                              f"stream default namespace is {header.default_ns!r}, "
                              f"expected {CLIENT_NS!r}")
        version = header.version or "0.9"
        if not version.startswith("1."):
            # RFC 6120 §4.7.5: without version 1.0 there are no stream features.
            raise StreamError("unsupported-version",
                              f"server speaks stream version {version}; XMPP 1.0 is required")

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        """A top-level element received while the stream is NEGOTIATING."""
        raise NotImplementedError(f"{type(self).__name__} does not handle elements")

    def stream_error(self, stream: ClientStream, error: StreamError) -> Exception:
        """The exception to raise for a stream error sent by the peer."""
        return error

    def incoming_stanza(self, element: ET.Element) -> ET.Element:
        """A received top-level element once ready, before the stream looks at it (only called
        when `rewrites_stanzas` is True)."""
        return element

    def outgoing_stanza(self, stream: ClientStream, element: ET.Element) -> None:
        """Check or complete, in place, an element about to be sent once ready (only called when
        `rewrites_stanzas` is True); raise InvalidStanzaError to refuse it."""


# -- rules several negotiators share ------------------------------------------------------------

def negotiate_tls(stream: ClientStream, features: ET.Element) -> bool:
    """RFC 6120 §5 on received `features`: True when `<starttls/>` went out (wait for
    [`tls_answer()`][simplexmpp.stream.tls_answer]); False when the stream may go on as it is.
    Raises [`TLSError`][simplexmpp.errors.TLSError] when TLS is required and not offered."""
    if stream.encrypted:
        return False
    starttls = features.find("{%s}starttls" % TLS_NS)
    if starttls is not None and stream.tls != "none":
        stream.send_raw('<starttls xmlns="%s"/>' % TLS_NS)
        return True
    if stream.tls == "starttls":
        # RFC 7590 §3.1: never fall back to plain text because the server says so.
        raise TLSError(
            "server did not offer STARTTLS but TLS is required (possible downgrade "
            "attack); pass tls='direct' if the server uses direct TLS, or tls='none' "
            "for a plain-text connection to loopback")
    return False


def tls_answer(stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
    """The server's answer to `<starttls/>` (RFC 6120 §5.4.2.3): `<proceed/>` starts TLS."""
    if element.tag == "{%s}proceed" % TLS_NS:
        stream.start_tls(events)
    elif element.tag == "{%s}failure" % TLS_NS:
        raise TLSError("server refused to start TLS (STARTTLS failure)")
    else:
        raise StreamError("invalid-xml", f"expected <proceed/>, got <{element.tag}>")


def sasl_failure(element: ET.Element, jid: JID) -> AuthenticationError:
    """The error for a SASL `<failure/>` (RFC 6120 §6.5), condition and text included."""
    condition = "not-authorized"
    text = None
    for child in element:
        local = child.tag.rpartition("}")[2]
        if local == "text":
            text = child.text
        else:
            condition = local
    message = f"server rejected the credentials for {jid.bare} ({condition})"
    if text:
        message += f": {text}"
    if condition == "not-authorized":
        message += "; check the JID and password"
    return AuthenticationError(message, condition, text)


def iq_payload(element: ET.Element, pending_id: str | None, what: str) -> ET.Element | None:
    """The payload of the `result` answering our negotiation IQ `pending_id`; StreamError for an
    error reply or anything else."""
    if element.tag != "{%s}iq" % CLIENT_NS or element.get("id") != pending_id:
        raise StreamError("invalid-xml", f"unexpected <{element.tag}> while waiting for {what}")
    if element.get("type") == "error":
        condition, _, text, _ = parse_error(element.find("{%s}error" % CLIENT_NS))
        raise StreamError("undefined-condition",
                          f"server refused {what}: {condition}" + (f" ({text})" if text else ""))
    if element.get("type") != "result":
        raise StreamError("invalid-xml", f"bad reply to {what}")
    return element.find("*")


def check_bound_jid(account: JID, text: str | None) -> JID:
    """The full JID the server bound, which must be one of `account`'s (RFC 6120 §7.6.1)."""
    if not text or not text.strip():
        raise StreamError("invalid-xml", "resource binding result carries no JID")
    try:
        bound = JID(text.strip())
    except JIDError:
        raise StreamError("invalid-xml", f"server bound an invalid JID {text!r}") from None
    expected = bound.domain == account.domain if account.local is None else \
        bound.bare == account.bare   # ANONYMOUS (RFC 4505): the server picks the local
    if not expected or bound.is_bare:
        raise StreamError("invalid-xml", f"server bound a foreign JID {bound}")
    return bound


# -- the standard negotiators -------------------------------------------------------------------

class LoginStep(str, Enum):
    """The steps of [`LoginNegotiator`][simplexmpp.stream.LoginNegotiator]."""

    FEATURES = "wait-features"
    PROCEED = "wait-proceed"
    SASL = "sasl"
    RESUMING = "resuming"
    BINDING = "binding"
    SESSION = "session"
    ENABLING = "enabling"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


_LOGIN_AFTER_FEATURES = frozenset({LoginStep.PROCEED, LoginStep.SASL, LoginStep.RESUMING,
                                   LoginStep.BINDING})
_LOGIN_AFTER_BIND = frozenset({LoginStep.SESSION, LoginStep.ENABLING, LoginStep.DONE})


class LoginNegotiator(Negotiator):
    """The RFC 6120 client login: STARTTLS, SASL (the strongest mechanism both sides have,
    [`choose_mechanism()`][simplexmpp.sasl.choose_mechanism]), resource binding, the legacy
    session when the server requires it, then XEP-0198: resume `stream.sm_resume` when given, else
    enable stream management when `stream.want_sm`.

    `resource` is asked for at binding (None: the server picks one); `mechanisms` limits the SASL
    mechanisms tried."""

    name = "login"
    TRANSITIONS = {
        LoginStep.FEATURES: _LOGIN_AFTER_FEATURES,
        LoginStep.PROCEED: frozenset({LoginStep.FEATURES}),      # restart over TLS
        LoginStep.SASL: frozenset({LoginStep.FEATURES}),         # restart once authenticated
        LoginStep.RESUMING: frozenset({LoginStep.DONE, LoginStep.BINDING}),  # failed: bind anew
        LoginStep.BINDING: _LOGIN_AFTER_BIND,
        LoginStep.SESSION: frozenset({LoginStep.ENABLING, LoginStep.DONE}),
        LoginStep.ENABLING: frozenset({LoginStep.DONE}),
        LoginStep.DONE: frozenset(),
    }

    def __init__(self, password: str | None, *, resource: str | None = None,
                 mechanisms: list[str] | None = None) -> None:
        self._password = password
        self.resource = resource
        self.mechanisms = mechanisms
        self.mechanism: sasl.Mechanism | None = None
        self.pending_id: str | None = None
        """The id of our negotiation IQ awaiting its answer (resource binding, session)."""
        self.step = LoginStep.FEATURES

    def header(self, stream: ClientStream) -> str:
        self.go(LoginStep.FEATURES)
        return super().header(stream)

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        step = self.step
        if step is LoginStep.FEATURES:
            self._features(stream, element)
        elif step is LoginStep.PROCEED:
            tls_answer(stream, element, events)
        elif step is LoginStep.SASL:
            self._sasl_step(stream, element, events)
        elif step is LoginStep.RESUMING:
            self._resume_answer(stream, element, events)
        elif step is LoginStep.BINDING:
            self._bind_answer(stream, element, events)
        elif step is LoginStep.SESSION:
            iq_payload(element, self.pending_id, "session establishment")
            self._after_session(stream, events)
        elif step is LoginStep.ENABLING:
            self._enable_answer(stream, element, events)
        else:
            raise StreamError("invalid-xml", f"unexpected <{element.tag}> while {step}")

    def _features(self, stream: ClientStream, features: ET.Element) -> None:
        if features.tag != _FEATURES:
            raise StreamError("invalid-xml", f"expected stream features, got <{features.tag}>")
        stream.features = features
        if negotiate_tls(stream, features):
            self.go(LoginStep.PROCEED)
        elif not stream.authenticated:
            self._start_sasl(stream, features)
        elif stream.sm_resume is not None and features.find("{%s}sm" % SM_NS) is not None:
            old = stream.sm_resume
            stream.send_raw('<resume xmlns="%s" h="%d" previd="%s"/>'
                            % (SM_NS, old.inbound, old.id))
            self.go(LoginStep.RESUMING)
        else:
            self._bind(stream, features)

    # SASL (RFC 6120 §6) ----------------------------------------------------------------------
    def _start_sasl(self, stream: ClientStream, features: ET.Element) -> None:
        mechs_el = features.find("{%s}mechanisms" % SASL_NS)
        if mechs_el is None:
            raise AuthenticationError("server offers no SASL authentication", "no-mechanism")
        offered = [(m.text or "").strip() for m in mechs_el.findall("{%s}mechanism" % SASL_NS)]
        cb_el = features.find("{%s}sasl-channel-binding" % SASL_CB_NS)
        server_cb = None if cb_el is None else [
            c.get("type", "") for c in cb_el.findall("{%s}channel-binding" % SASL_CB_NS)]
        mechanism = self.mechanism = sasl.choose_mechanism(
            offered, username=stream.jid.local or "", password=self._password,
            encrypted=stream.encrypted, channel_bindings=stream.channel_bindings,
            server_cb_types=server_cb, allowed=self.mechanisms)
        stream.mechanism = mechanism.name
        initial = mechanism.initial_response()
        stream.send_raw('<auth xmlns="%s" mechanism="%s">%s</auth>'
                        % (SASL_NS, mechanism.name, _b64(initial)))
        self.go(LoginStep.SASL)

    def _sasl_step(self, stream: ClientStream, el: ET.Element, events: list[Event]) -> None:
        mechanism = self.mechanism
        assert mechanism is not None
        name = el.tag.rpartition("}")[2]
        if not el.tag.startswith("{%s}" % SASL_NS):
            raise StreamError("invalid-xml", f"unexpected <{el.tag}> during SASL")
        if name == "challenge":
            response = mechanism.challenge(_unb64(el.text))
            encoded = base64.b64encode(response).decode("ascii")  # empty stays empty (§6.4.3)
            stream.send_raw('<response xmlns="%s">%s</response>' % (SASL_NS, encoded))
        elif name == "success":
            mechanism.success(_unb64(el.text) if el.text else None)
            self._password = None  # no longer needed in this session
            stream.authenticated_with(mechanism.name, events)
            stream.restart()  # RFC 6120 §6.4.6
        elif name == "failure":
            raise sasl_failure(el, stream.jid)
        else:
            raise StreamError("invalid-xml", f"unexpected <{name}> during SASL")

    # bind, session, stream management -----------------------------------------------------
    def _bind(self, stream: ClientStream, features: ET.Element) -> None:
        if features.find("{%s}bind" % BIND_NS) is None:
            raise StreamError("unsupported-feature", "server does not offer resource binding")
        bind = ET.Element("{%s}bind" % BIND_NS)
        if self.resource:
            ET.SubElement(bind, "{%s}resource" % BIND_NS).text = self.resource
        self._iq(stream, "set", bind)
        self.go(LoginStep.BINDING)

    def _iq(self, stream: ClientStream, type: str, payload: ET.Element) -> None:
        self.pending_id = new_id()
        iq = ET.Element("{%s}iq" % CLIENT_NS, type=type, id=self.pending_id)
        iq.append(payload)
        stream.send_raw(tostring(iq))

    def _bind_answer(self, stream: ClientStream, el: ET.Element, events: list[Event]) -> None:
        payload = iq_payload(el, self.pending_id, "resource binding")
        jid_el = None if payload is None else payload.find("{%s}jid" % BIND_NS)
        stream.jid = check_bound_jid(stream.jid, None if jid_el is None else jid_el.text)
        assert stream.features is not None
        session = stream.features.find("{%s}session" % SESSION_NS)
        # RFC 6121 §A (legacy session): only when offered without <optional/>.
        if session is not None and session.find("{%s}optional" % SESSION_NS) is None:
            self._iq(stream, "set", ET.Element("{%s}session" % SESSION_NS))
            self.go(LoginStep.SESSION)
            return
        self._after_session(stream, events)

    def _after_session(self, stream: ClientStream, events: list[Event]) -> None:
        assert stream.features is not None
        if stream.want_sm and stream.features.find("{%s}sm" % SM_NS) is not None:
            stream.send_raw('<enable xmlns="%s" resume="true"/>' % SM_NS)
            self.go(LoginStep.ENABLING)
            return
        self.go(LoginStep.DONE)
        stream.ready(events, sm_enabled=False)

    def _enable_answer(self, stream: ClientStream, el: ET.Element, events: list[Event]) -> None:
        if el.tag == "{%s}enabled" % SM_NS:
            stream.enable_sm(el)
        elif el.tag != "{%s}failed" % SM_NS:
            raise StreamError("invalid-xml",
                              f"unexpected <{el.tag}> while enabling stream management")
        self.go(LoginStep.DONE)
        stream.ready(events, sm_enabled=stream.sm is not None)

    def _resume_answer(self, stream: ClientStream, el: ET.Element, events: list[Event]) -> None:
        if el.tag == "{%s}resumed" % SM_NS:
            self.go(LoginStep.DONE)
            stream.resumed(_h(el), events)
            return
        if el.tag == "{%s}failed" % SM_NS:
            # XEP-0198 §5: resumption failed; bind a new session (what was not acknowledged is
            # sent again once it is ready, see ClientStream.ready).
            h = el.get("h")
            stream.resume_failed(int(h) if h is not None and h.isdigit() else None)
            assert stream.features is not None
            self._bind(stream, stream.features)
            return
        raise StreamError("invalid-xml", f"unexpected <{el.tag}> while resuming")


class PreAuthStep(str, Enum):
    """The steps of [`PreAuthNegotiator`][simplexmpp.stream.PreAuthNegotiator]."""

    FEATURES = "wait-features"
    PROCEED = "wait-proceed"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


class PreAuthNegotiator(Negotiator):
    """Stops negotiation once the stream is secured, before SASL, and reports
    [`Ready`][simplexmpp.stream.Ready] with `authenticated=False` and the features of the secured
    stream: XEP-0077 §3.1 in-band registration sends its IQs there. STARTTLS is required as for a
    login (`tls="none"` only to loopback)."""

    name = "pre-auth"
    TRANSITIONS = {
        PreAuthStep.FEATURES: frozenset({PreAuthStep.PROCEED, PreAuthStep.DONE}),
        PreAuthStep.PROCEED: frozenset({PreAuthStep.FEATURES}),
        PreAuthStep.DONE: frozenset(),
    }

    def __init__(self) -> None:
        self.step = PreAuthStep.FEATURES

    def header(self, stream: ClientStream) -> str:
        self.go(PreAuthStep.FEATURES)
        return super().header(stream)

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        if self.step is PreAuthStep.PROCEED:
            tls_answer(stream, element, events)
            return
        if element.tag != _FEATURES:
            raise StreamError("invalid-xml", f"expected stream features, got <{element.tag}>")
        stream.features = element
        if negotiate_tls(stream, element):
            self.go(PreAuthStep.PROCEED)
            return
        # XEP-0077 §3.1: registration happens on the secured stream before SASL; the owner
        # sends its IQs now and closes the stream afterwards.
        self.go(PreAuthStep.DONE)
        stream.ready(events, sm_enabled=False, authenticated=False)


# ---------------------------------------------------------------------------------------------
# The stream

class ClientStream:
    """The client side of one XMPP session, from the first stream header to the last footer.

    `negotiator` decides how the stream is negotiated (see the module documentation); without one,
    `password`, `resource` and `mechanisms` make a
    [`LoginNegotiator`][simplexmpp.stream.LoginNegotiator], or with `pre_auth` a
    [`PreAuthNegotiator`][simplexmpp.stream.PreAuthNegotiator] (negotiation stops once the stream is
    secured, before SASL, and [`Ready`][simplexmpp.stream.Ready] says `authenticated=False`, for
    XEP-0077 in-band registration §3.1).

    `tls` is `"starttls"` (required), `"direct"` (the socket is already TLS, XEP-0368) or
    `"none"` (plain text; PLAIN is then never used). `sm` asks for XEP-0198, and
    `sm_state` (from a previous session) asks to resume it.
    """

    ack_rides_along = False
    """Whether the `<a/>` for a pending XEP-0198 `<r/>` goes out with our next output. Off: a
    server such as Prosody asks again after each stanza it sends once the last request is
    answered, so on an exchange of requests and replies every reply would bring an `<r/>`
    and every request an `<a/>`, which costs the server more than the round trip itself
    (bench/README.md, issue 18 item 4). The owner answers after a short delay instead."""

    def __init__(self, jid: JID, password: str | None = None, *, tls: str = "starttls",
                 resource: str | None = None, sm: bool = True, sm_state: SMState | None = None,
                 mechanisms: list[str] | None = None, max_stanza_size: int = 1 << 20,
                 lang: str = "en", channel_bindings: Mapping[str, bytes] | None = None,
                 pre_auth: bool = False, negotiator: Negotiator | None = None) -> None:
        if tls not in ("starttls", "direct", "none"):
            raise ValueError(f"tls must be 'starttls', 'direct' or 'none', not {tls!r}")
        if negotiator is None:
            negotiator = PreAuthNegotiator() if pre_auth else LoginNegotiator(
                password, resource=resource if resource is not None else jid.resource,
                mechanisms=mechanisms)
        elif password is not None or pre_auth or mechanisms is not None or \
                resource is not None:
            raise ValueError("with a negotiator, pass the password, resource and mechanisms "
                             "to the negotiator, not to the stream")
        self.negotiator = negotiator
        self._rewrites = negotiator.rewrites_stanzas
        self.jid = jid
        self.tls = tls
        self.encrypted = tls == "direct"
        self.want_sm = sm
        self.sm: SMState | None = None
        self.sm_resume = sm_state if sm_state and sm_state.resumable and sm_state.id else None
        """The previous session's XEP-0198 state while asking to resume it."""
        self.max_stanza_size = max_stanza_size
        self.lang = lang
        self.channel_bindings: dict[str, bytes] = dict(channel_bindings or {})
        self.state = StreamState.INIT
        self.authenticated = False
        self.mechanism: str | None = None
        self.features: ET.Element | None = None
        self.header: StreamHeader | None = None
        self._out: list[str] = []
        self._parser = StreamParser(max_stanza_size=max_stanza_size)
        self._earlier_replacements = 0  # parser replacements in streams before a restart
        self._earlier_elements = 0
        self.ack_pending = False
        """The server asked for an ack (XEP-0198 `<r/>`) that is not answered yet: the `<a/>` goes
        out when the owner calls [`send_ack()`][simplexmpp.stream.ClientStream.send_ack] (or
        with our next output, see `ack_rides_along`)."""
        self.events_before_error: list[Event] = []
        """Events of the last `receive_data` call that raised
        [`StreamError`][simplexmpp.errors.StreamError], parsed from the same bytes before the error
        (a reply, then a stream error, in one read)."""

    # -- state -----------------------------------------------------------------------------
    def _enter(self, state: StreamState) -> None:
        """The one place the state changes, checked against TRANSITIONS."""
        if state is not self.state and state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"stream: no transition from {self.state} to {state}")
        self.state = state

    @property
    def negotiating(self) -> bool:
        """True from the peer's header until the stream is ready (the negotiator is at work)."""
        return self.state is StreamState.NEGOTIATING

    @property
    def phase(self) -> str:
        """The state for messages: `"negotiating (sasl)"`, `"ready"` …"""
        if self.state is StreamState.NEGOTIATING:
            return f"negotiating ({self.negotiator.step})"
        return str(self.state)

    @property
    def pre_auth(self) -> bool:
        """True when the stream stops before authentication (XEP-0077 registration)."""
        return isinstance(self.negotiator, PreAuthNegotiator)

    @pre_auth.setter
    def pre_auth(self, value: bool) -> None:
        # Kept for callers that set it after construction, before start().
        if value == self.pre_auth:
            return
        if self.state is not StreamState.INIT or not value:
            raise RuntimeError("pre_auth can only be switched on before start()")
        self.negotiator = PreAuthNegotiator()
        self._rewrites = False

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
        self.restart()

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, as bytes; empties the queue."""
        if not self._out:
            return b""
        if self.ack_pending and self.ack_rides_along:
            self.send_ack()   # rides along: no write of its own
        data = "".join(self._out).encode("utf-8")
        self._out.clear()
        return data

    def tls_established(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """The I/O layer finished the TLS handshake asked for by
        [`StartTLS`][simplexmpp.stream.StartTLS]."""
        if self.state is not StreamState.TLS_HANDSHAKE:
            raise RuntimeError("tls_established() called without a pending StartTLS")
        self.encrypted = True
        self.channel_bindings = dict(channel_bindings or {})
        self.restart()  # RFC 6120 §5.4.3.3: a fresh stream over TLS, nothing carried over

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
            if self.state is _READY and not self._rewrites and \
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
                if self.state is StreamState.TLS_HANDSHAKE or self.state is _CLOSED:
                    break  # bytes after <proceed/> belong to TLS; after the footer, nothing
        except StreamError as exc:
            # What was parsed before the error still happened; the owner handles it first.
            self.events_before_error = events
            if not exc.by_peer and self.state is not _CLOSED:
                self._send_stream_error(exc.condition, exc.text)
            self._enter(_CLOSED)
            raise
        except (AuthenticationError, TLSError):
            self._close_now()
            raise
        return events

    def connection_lost(self) -> None:
        """The transport is gone: nothing more can be sent on this stream. Stream-management
        state (`sm`, `unacked`) is kept for resumption."""
        self._enter(_CLOSED)
        self._out.clear()
        self.ack_pending = False

    def send(self, element: ET.Element, text: str | None = None) -> None:
        """Queue a stanza (or nonza) for sending; stanzas are counted for XEP-0198.
        `text` is `tostring(element)` when the caller has it already."""
        if self._rewrites:
            if self.state is not _READY:
                raise InvalidStanzaError(f"cannot send while the stream is {self.phase}")
            self.negotiator.outgoing_stanza(self, element)
            text = None   # the element may have changed
        self.send_text(tostring(element) if text is None else text,
                       element.tag in _STANZA_TAGS)

    def send_text(self, text: str, stanza: bool = True) -> None:
        """Queue serialised XML: a stanza (counted and kept until acknowledged, XEP-0198) or, with
        `stanza` False, a nonza. The caller vouches that `text` is one well-formed element in the
        stream's default namespace, as [`tostring()`][simplexmpp.xml.tostring] writes it."""
        if self.state is not _READY:
            raise InvalidStanzaError(f"cannot send while the stream is {self.phase}")
        self._out.append(text)
        if stanza and self.sm is not None:
            self.sm.record_sent(text)

    def send_raw(self, text: str) -> None:
        """Queue already-serialised XML (whitespace keepalives, pre-built stanzas, a
        negotiator's nonzas) whatever the state; nothing is counted."""
        self._out.append(text)

    def send_ack(self) -> None:
        """XEP-0198 §4: answer the server's pending `<r/>` now, with the number of stanzas
        handled so far (answering later is allowed; the owner bounds the delay). Never after
        our closing footer: [`close()`][simplexmpp.stream.ClientStream.close] answers first."""
        if self.ack_pending and self.sm is not None and self.state is _READY:
            self._out.append('<a xmlns="%s" h="%d"/>' % (SM_NS, self.sm.inbound))
        self.ack_pending = False

    def request_ack(self) -> None:
        """XEP-0198 §4: ask the server how many of our stanzas it has handled."""
        if self.sm is not None and self.state is _READY:
            self._out.append('<r xmlns="%s"/>' % SM_NS)

    def close(self) -> None:
        """Queue our closing footer (RFC 6120 §4.4); the peer answers with its own."""
        if self.state not in (StreamState.CLOSING, _CLOSED, StreamState.INIT):
            self.send_ack()  # before the footer: the server must not think them unhandled
            self._out.append(STREAM_FOOTER)
            self._enter(StreamState.CLOSING)

    # -- for negotiators ---------------------------------------------------------------------
    def restart(self) -> None:
        """Start a fresh stream: a new parser and our header (at the start, after TLS, after
        SASL: RFC 6120 §5.4.3.3, §6.4.6)."""
        self._earlier_replacements += self._parser.replacements
        self._earlier_elements += self._parser.completed
        self._parser = StreamParser(max_stanza_size=self.max_stanza_size)
        self._out.append(self.negotiator.header(self))
        self._enter(StreamState.WAIT_HEADER)

    def start_tls(self, events: list[Event]) -> None:
        """The server said `<proceed/>`: the I/O layer does TLS now (reported as
        [`StartTLS`][simplexmpp.stream.StartTLS]), then calls `tls_established()`."""
        self._enter(StreamState.TLS_HANDSHAKE)
        events.append(StartTLS())

    def authenticated_with(self, mechanism: str, events: list[Event]) -> None:
        """Authentication succeeded (reported as [`Authenticated`][simplexmpp.stream.Authenticated])."""
        self.authenticated = True
        self.mechanism = mechanism
        events.append(Authenticated(mechanism))

    def enable_sm(self, enabled: ET.Element) -> SMState:
        """XEP-0198 §3: the server's `<enabled/>` starts counting; returns the new state."""
        try:
            max_ = int(enabled.get("max", "0") or 0) or None
        except ValueError:
            max_ = None
        self.sm = SMState(id=enabled.get("id"), jid=self.jid,
                          resumable=enabled.get("resume") in ("true", "1"),
                          location=enabled.get("location"), max=max_)
        return self.sm

    def resumed(self, h: int, events: list[Event]) -> None:
        """XEP-0198 §5: the server resumed `sm_resume`, having handled `h` of our stanzas: the
        stream is ready again, and what it had not acknowledged is queued again (reported as
        [`Resumed`][simplexmpp.stream.Resumed])."""
        old = self.sm_resume
        if old is None:
            raise StreamError("invalid-xml", "the server resumed a session we did not ask for")
        old.ack(h)
        self.sm, self.sm_resume = old, None
        if old.jid is not None:
            self.jid = old.jid
        self._enter(_READY)
        resend = list(old.unacked)
        old.unacked.clear()
        old.outbound = old.acked  # the resent ones are counted again as they go out
        for text in resend:
            self.send_text(text)
        events.append(Resumed(self.jid, resend))

    def resume_failed(self, h: int | None) -> None:
        """XEP-0198 §5: the server cannot resume; it handled `h` of our stanzas if it says so.
        The rest is sent again once a new session is ready."""
        old = self.sm_resume
        if h is not None and old is not None:
            try:
                old.ack(h)
            except StreamError:
                pass

    def ready(self, events: list[Event], sm_enabled: bool, authenticated: bool = True) -> None:
        """Negotiation is over (reported as [`Ready`][simplexmpp.stream.Ready])."""
        self._enter(_READY)
        features = self.features if self.features is not None else ET.Element(_FEATURES)
        self.features = features
        events.append(Ready(self.jid, features, sm_enabled, authenticated=authenticated))
        old, self.sm_resume = self.sm_resume, None
        if old is not None and authenticated:
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

    # -- internals -------------------------------------------------------------------------
    def _close_now(self) -> None:
        if self.state is not _CLOSED:
            self._out.append(STREAM_FOOTER)
        self._enter(_CLOSED)

    def _send_stream_error(self, condition: str, text: str | None = None) -> None:
        if self.state is StreamState.INIT:
            return
        body = '<%s xmlns="%s"/>' % (condition, STREAM_ERRORS_NS)
        if text:
            body += '<text xmlns="%s">%s</text>' % (
                STREAM_ERRORS_NS, text.replace("&", "&amp;").replace("<", "&lt;"))
        self._out.append("<stream:error>%s</stream:error>%s" % (body, STREAM_FOOTER))

    def _stream_header(self, header: StreamHeader) -> None:
        if self.state is not StreamState.WAIT_HEADER:
            raise StreamError("invalid-xml", "unexpected stream header")
        self.negotiator.header_received(self, header)
        self.header = header
        self._enter(StreamState.NEGOTIATING)

    def _peer_closed(self, events: list[Event]) -> None:
        if self.state is not StreamState.CLOSING:
            self.send_ack()
            self._out.append(STREAM_FOOTER)
        self._enter(_CLOSED)
        events.append(StreamClosed())

    def _element(self, el: ET.Element, events: list[Event]) -> None:
        tag = el.tag
        if tag == _STREAM_ERROR:
            raise self.negotiator.stream_error(self, self._stream_error_from(el))
        state = self.state
        if state is _READY or state is StreamState.CLOSING:
            if self._rewrites:
                el = self.negotiator.incoming_stanza(el)
                tag = el.tag
            if tag in _STANZA_TAGS:
                if self.sm is not None:
                    self.sm.inbound = (self.sm.inbound + 1) % (1 << 32)
                events.append(el)
            elif tag == "{%s}r" % SM_NS and self.sm is not None:
                # XEP-0198 §4 sets no deadline for the answer: the owner sends it a little
                # later (Client: ack_delay), by then answering what else arrived meanwhile.
                self.ack_pending = True
            elif tag == "{%s}a" % SM_NS and self.sm is not None:
                h = _h(el)
                events.append(AckReceived(h, self.sm.ack(h)))
            else:
                events.append(NonzaReceived(el))
            return
        if state is StreamState.NEGOTIATING:
            self.negotiator.element(self, el, events)
            return
        raise StreamError("invalid-xml", f"unexpected <{tag}> while {self.phase}")

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

    @property
    def unacked(self) -> list[ET.Element]:
        """Stanzas sent but not yet acknowledged by the server (XEP-0198), oldest first, as
        elements parsed again from what was sent (each call parses them all)."""
        sm = self.sm if self.sm is not None else self.sm_resume
        return [stanza_from_text(text) for text in sm.unacked] if sm is not None else []


def _h(el: ET.Element) -> int:
    try:
        h = int(el.get("h", ""))
    except ValueError:
        raise StreamError("invalid-xml", "stream management h is not a number") from None
    if not 0 <= h < (1 << 32):
        raise StreamError("invalid-xml", "stream management h out of range")
    return h
