"""Modern login (sans-IO): XEP-0388 SASL2 with XEP-0386 Bind2, XEP-0198 inline, XEP-0484 FAST.

[`Sasl2Negotiator`][simplexmpp.sasl2.Sasl2Negotiator] is a
[`Negotiator`][simplexmpp.stream.Negotiator] for
[`ClientStream`][simplexmpp.stream.ClientStream]. Where the server offers SASL2 it
authenticates, binds a resource, enables stream management and carbons, and asks for a FAST
token, all in one `<authenticate/>`:

```text
header -> features -> STARTTLS -> restart -> features(SASL2)
       -> <authenticate> [challenge/response] <success> features -> Ready   (no restart)
```

Where the server does not offer SASL2 it is exactly the RFC 6120
[`LoginNegotiator`][simplexmpp.stream.LoginNegotiator] it extends.

FAST: with a [`FastToken`][simplexmpp.tokens.FastToken] the negotiator logs in with its
Hashed Token mechanism (one round trip, no password); it reports a token the server issued
or rotated as [`TokenIssued`][simplexmpp.sasl2.TokenIssued], and a token the server refused as
[`FastTokenRejected`][simplexmpp.sasl2.FastTokenRejected] (an
[`AuthenticationError`][simplexmpp.errors.AuthenticationError]; the owner discards the token
and, when it has the password, logs in again with it).

Stream resumption inside `<authenticate/>` (XEP-0198 with SASL2) is asked for without a Bind2
request, so that a server which cannot resume inline (Prosody 0.12 with the 2023 community
modules answers `feature-not-implemented`) leaves the stream authenticated and unbound: the
negotiator then resumes the RFC 6120 way (`<resume/>` after the features), and binds a new
session only when resumption really failed.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import cast

from . import sasl
from .errors import AuthenticationError, StreamError
from .jid import JID
from .stream import (SM_NS, ClientStream, Event, LoginNegotiator, LoginStep, check_bound_jid,
                     sasl_failure)
from .tokens import FastToken, _expiry
from .xml import STREAM_NS, tostring

__all__ = ["Sasl2Negotiator", "Sasl2Offer", "Sasl2Step", "TokenIssued", "FastTokenRejected",
           "bind_requests_for",
           "SASL2_NS", "BIND2_NS", "FAST_NS", "SASL_CB_NS", "CARBONS_NS", "CSI_NS"]

SASL2_NS = "urn:xmpp:sasl:2"
BIND2_NS = "urn:xmpp:bind:0"
FAST_NS = "urn:xmpp:fast:0"
SASL_CB_NS = "urn:xmpp:sasl-cb:0"
CARBONS_NS = "urn:xmpp:carbons:2"
CSI_NS = "urn:xmpp:csi:0"
_SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
_FEATURES = "{%s}features" % STREAM_NS

DEFAULT_TAG = "simplexmpp"
"""The Bind2 tag (XEP-0386 §3.2.1): the resource the server makes starts with it."""


@dataclass
class TokenIssued:
    """The server issued a FAST token (asked for, or a rotation, XEP-0484 §4.2, §4.4): keep
    it for the next login."""
    token: FastToken


class FastTokenRejected(AuthenticationError):
    """The server refused the FAST token (XEP-0484 §5: discard it). `password_available`
    says whether the owner can log in again with the password at once."""

    def __init__(self, message: str, condition: str, text: str | None,
                 password_available: bool) -> None:
        super().__init__(message, condition, text)
        self.password_available = password_available


@dataclass
class Sasl2Offer:
    """What a server's `<authentication xmlns='urn:xmpp:sasl:2'>` feature offers."""
    mechanisms: list[str]
    fast_mechanisms: list[str] = field(default_factory=list)
    bind2: bool = False
    bind2_features: frozenset[str] = frozenset()
    inline_sm: bool = False
    channel_binding_types: list[str] | None = None
    """XEP-0440 `<sasl-channel-binding/>` types, None when the server did not say."""

    @classmethod
    def from_features(cls, features: ET.Element) -> Sasl2Offer | None:
        """The offer in `features`, or None when the server does not offer SASL2."""
        auth = features.find("{%s}authentication" % SASL2_NS)
        if auth is None:
            return None
        offer = cls([(m.text or "").strip() for m in auth.findall("{%s}mechanism" % SASL2_NS)])
        inline = auth.find("{%s}inline" % SASL2_NS)
        if inline is not None:
            fast = inline.find("{%s}fast" % FAST_NS)
            if fast is not None:
                offer.fast_mechanisms = [(m.text or "").strip()
                                         for m in fast.findall("{%s}mechanism" % FAST_NS)]
            bind = inline.find("{%s}bind" % BIND2_NS)
            if bind is not None:
                offer.bind2 = True
                offer.bind2_features = frozenset(
                    f.get("var", "") for f in bind.iterfind(
                        "{%s}inline/{%s}feature" % (BIND2_NS, BIND2_NS)))
            offer.inline_sm = inline.find("{%s}sm" % SM_NS) is not None
        cb = features.find("{%s}sasl-channel-binding" % SASL_CB_NS)
        if cb is not None:
            offer.channel_binding_types = [
                c.get("type", "") for c in cb.findall("{%s}channel-binding" % SASL_CB_NS)]
        return offer


class Sasl2Step(str, Enum):
    """The steps [`Sasl2Negotiator`][simplexmpp.sasl2.Sasl2Negotiator] adds to
    [`LoginStep`][simplexmpp.stream.LoginStep]."""

    AUTHENTICATING = "sasl2"          # <authenticate/> is out; challenges, then the outcome
    FEATURES = "sasl2-features"       # <success/> came; the features that follow it (§2.6.1)

    def __str__(self) -> str:
        return self.value


def _unb64(text: str | None) -> bytes | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationError("server sent SASL2 data that is not valid base64",
                                  "malformed-request") from None


class Sasl2Negotiator(LoginNegotiator):
    """The client login with SASL2, Bind2 and FAST where the server offers them; the RFC 6120
    login otherwise.

    `user_agent_id` is the SASL2 user-agent id (a UUID v4, stable per installation: the
    token store keeps one); `software` its `<software/>`. `token` is a FAST token to log in
    with; `request_token` asks the server for one at a password login (the owner stores what
    [`TokenIssued`][simplexmpp.sasl2.TokenIssued] brings). `tag` is the Bind2 tag; an explicit
    `resource` cannot be asked for with Bind2, so it turns inline binding off (the RFC 6120
    bind asks for it after SASL2). `bind_requests` are extra elements for the Bind2 request
    (`<enable xmlns='urn:xmpp:carbons:2'/>`, `<inactive xmlns='urn:xmpp:csi:0'/>`): each goes
    in only when the server lists its namespace as a Bind2 inline feature.
    """

    name = "login (SASL2)"
    TRANSITIONS = {
        **LoginNegotiator.TRANSITIONS,
        LoginStep.FEATURES: LoginNegotiator.TRANSITIONS[LoginStep.FEATURES]
        | {Sasl2Step.AUTHENTICATING},
        Sasl2Step.AUTHENTICATING: frozenset({Sasl2Step.FEATURES}),
        # bound inline -> DONE or ENABLING (SM not inline); not bound -> the RFC 6120 steps
        Sasl2Step.FEATURES: frozenset({LoginStep.FEATURES, LoginStep.DONE, LoginStep.ENABLING}),
    }
    def __init__(self, password: str | None, *, user_agent_id: str,
                 software: str = "simplexmpp", resource: str | None = None,
                 mechanisms: list[str] | None = None, token: FastToken | None = None,
                 request_token: bool = False, tag: str = DEFAULT_TAG,
                 bind_requests: Sequence[ET.Element] = ()) -> None:
        super().__init__(password, resource=resource, mechanisms=mechanisms)
        self._sasl2_password = password
        self.user_agent_id = user_agent_id
        self.software = software
        self.token = token
        self.request_token = request_token
        self.tag = tag
        self.bind_requests = list(bind_requests)
        self.offer: Sasl2Offer | None = None
        self.used_sasl2 = False
        """Whether this stream logged in with SASL2 (False: the RFC 6120 login)."""
        self.used_token = False
        """Whether the login used the FAST token."""
        self.requested_token: str | None = None
        """The mechanism a token was asked for, if one was."""
        self.inline: frozenset[str] = frozenset()
        """Namespaces enabled inside the Bind2 request and confirmed by the server's success
        (carbons, CSI, stream management)."""
        self._outcome: ET.Element | None = None

    # -- the SASL2 branch ------------------------------------------------------------------
    def _start_sasl(self, stream: ClientStream, features: ET.Element) -> None:
        offer = Sasl2Offer.from_features(features)
        # XEP-0388 §3: SASL2 only on an encrypted stream.
        if offer is None or not stream.encrypted or not offer.mechanisms:
            if self.token is not None and self._sasl2_password is None:
                raise AuthenticationError(
                    f"the server does not offer FAST (SASL2) to {stream.jid.bare}, and there "
                    "is no password to log in with", "no-mechanism")
            super()._start_sasl(stream, features)
            return
        self.offer = offer
        self.used_sasl2 = True
        mechanism, fast = self._choose(stream, offer)
        self.mechanism = mechanism
        stream.mechanism = mechanism.name
        auth = ET.Element("{%s}authenticate" % SASL2_NS, mechanism=mechanism.name)
        initial = mechanism.initial_response()
        if initial is not None:
            # §2.2: an empty initial response is an empty element; none is no element.
            ET.SubElement(auth, "{%s}initial-response" % SASL2_NS).text = \
                base64.b64encode(initial).decode("ascii")
        agent = ET.SubElement(auth, "{%s}user-agent" % SASL2_NS, id=self.user_agent_id)
        ET.SubElement(agent, "{%s}software" % SASL2_NS).text = self.software
        if fast:
            ET.SubElement(auth, "{%s}fast" % FAST_NS)
        elif self.request_token and offer.fast_mechanisms:
            wanted = sasl.choose_token_mechanism(offer.fast_mechanisms, stream.channel_bindings)
            if wanted is not None:
                ET.SubElement(auth, "{%s}request-token" % FAST_NS, mechanism=wanted)
                self.requested_token = wanted
        resume = stream.sm_resume
        if resume is not None and offer.inline_sm:
            # XEP-0198 inline, without Bind2 (see the module documentation).
            ET.SubElement(auth, "{%s}resume" % SM_NS, previd=resume.id or "",
                          h=str(resume.inbound))
        elif offer.bind2 and not self.resource:
            auth.append(self._bind_request(stream, offer))
        stream.send_raw(tostring(auth))
        self.go(Sasl2Step.AUTHENTICATING)

    def _choose(self, stream: ClientStream,
                offer: Sasl2Offer) -> tuple[sasl.Mechanism, bool]:
        """The mechanism to authenticate with, and whether it is the FAST token."""
        username = stream.jid.local or ""
        token = self.token
        if token is not None:
            reason = None
            try:
                _, cb_type = sasl.parse_token_mechanism(token.mechanism)
            except ValueError:
                reason, cb_type = f"{token.mechanism} is not a token mechanism", None
            if reason is None and token.mechanism.upper() not in \
                    {m.upper() for m in offer.fast_mechanisms}:
                reason = f"the server does not offer FAST with {token.mechanism} here"
            elif reason is None and cb_type is not None and \
                    not stream.channel_bindings.get(cb_type):
                reason = f"this connection has no {cb_type} channel binding"
            if reason is None:
                cb_data = stream.channel_bindings.get(cb_type, b"") if cb_type else b""
                self.used_token = True
                return sasl.HashedToken(token.mechanism, username, token.token, cb_data), True
            if self._sasl2_password is None:
                raise AuthenticationError(
                    f"cannot log in {stream.jid.bare} with the stored FAST token ({reason}) "
                    "and there is no password to fall back to", "no-mechanism")
        # XEP-0440 §4 would have a SASL2 client abort when -PLUS is offered without a list of
        # channel-binding types; Prosody 0.12 offers SCRAM-*-PLUS under TLS 1.2 and announces no
        # types, so (as with RFC 6120 SASL) no list means tls-unique, the RFC 5802 default.
        mechanism = sasl.choose_mechanism(
            offer.mechanisms, username=username, password=self._sasl2_password,
            encrypted=stream.encrypted, channel_bindings=stream.channel_bindings,
            server_cb_types=offer.channel_binding_types, allowed=self.mechanisms)
        return mechanism, False

    def _bind_request(self, stream: ClientStream, offer: Sasl2Offer) -> ET.Element:
        bind = ET.Element("{%s}bind" % BIND2_NS)
        ET.SubElement(bind, "{%s}tag" % BIND2_NS).text = self.tag
        for request in self.bind_requests:
            namespace = request.tag[1:].partition("}")[0]
            if namespace in offer.bind2_features and namespace != SM_NS:
                bind.append(request)
        if stream.want_sm and SM_NS in offer.bind2_features:
            ET.SubElement(bind, "{%s}enable" % SM_NS, resume="true")
        return bind

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        step = self.step
        if step is Sasl2Step.AUTHENTICATING:
            self._authenticating(stream, element, events)
        elif step is Sasl2Step.FEATURES:
            self._features_after_success(stream, element, events)
        else:
            super().element(stream, element, events)

    def _authenticating(self, stream: ClientStream, el: ET.Element,
                        events: list[Event]) -> None:
        mechanism = self.mechanism
        assert mechanism is not None
        ns, _, name = el.tag[1:].partition("}")
        if ns != SASL2_NS:
            # XEP-0388 §2.4: nothing but SASL2 elements while authenticating.
            raise StreamError("invalid-xml", f"unexpected <{el.tag}> during SASL2")
        if name == "challenge":
            response = mechanism.challenge(_unb64(el.text) or b"")
            reply = ET.Element("{%s}response" % SASL2_NS)
            reply.text = base64.b64encode(response).decode("ascii")
            stream.send_raw(tostring(reply))
        elif name == "success":
            self._success(stream, el, events)
        elif name == "failure":
            error = sasl_failure(el, stream.jid)
            if self.used_token:
                # XEP-0484 §5: a refused token is discarded; the password may still work.
                raise FastTokenRejected(
                    f"server rejected the FAST token for {stream.jid.bare} ({error.condition})"
                    + ("; logging in with the password" if self._sasl2_password is not None
                       else "; log in with the password again (simplexmpp login)"),
                    error.condition, error.text, self._sasl2_password is not None)
            raise error
        elif name == "continue":
            tasks = [t.text or "" for t in el.iterfind(
                "{%s}tasks/{%s}task" % (SASL2_NS, SASL2_NS))]
            stream.send_raw('<abort xmlns="%s"/>' % SASL2_NS)
            raise AuthenticationError(
                f"the server asks {stream.jid.bare} for further steps ({', '.join(tasks)}), "
                "which simplexmpp does not support (XEP-0388 tasks)", "aborted")
        else:
            raise StreamError("invalid-xml", f"unexpected <{name}> during SASL2")

    def _success(self, stream: ClientStream, el: ET.Element, events: list[Event]) -> None:
        mechanism = self.mechanism
        assert mechanism is not None
        mechanism.success(_unb64(el.findtext("{%s}additional-data" % SASL2_NS)))
        self._sasl2_password = self._password = None  # no longer needed in this session
        identity = (el.findtext("{%s}authorization-identifier" % SASL2_NS) or "").strip()
        if identity:
            bound = el.find("{%s}bound" % BIND2_NS)
            if bound is not None:
                stream.jid = check_bound_jid(stream.jid, identity)
            elif not _same_account(stream, identity):
                raise StreamError("invalid-xml",
                                  f"server authenticated a foreign identity {identity}")
        token = el.find("{%s}token" % FAST_NS)
        if token is not None and token.get("token"):
            # A new token (asked for) or a rotation (§4.4): for the mechanism asked for, else
            # the one just used.
            issued_for = self.requested_token or mechanism.name
            # An event of this module's own, beside the stream's (its owner knows it).
            events.append(cast("Event", TokenIssued(FastToken(
                issued_for, token.get("token", ""), _expiry(token.get("expiry"))))))
        stream.authenticated_with(mechanism.name, events)
        self._outcome = el
        self.go(Sasl2Step.FEATURES)

    def _features_after_success(self, stream: ClientStream, features: ET.Element,
                                events: list[Event]) -> None:
        # XEP-0388 §2.6.1: <success/> "is immediately followed by a <features/> element ...
        # no stream restart occurs".
        if features.tag != _FEATURES:
            raise StreamError("invalid-xml",
                              f"expected stream features after SASL2 success, got "
                              f"<{features.tag}>")
        stream.features = features
        outcome = self._outcome
        assert outcome is not None
        resumed = outcome.find("{%s}resumed" % SM_NS)
        if resumed is not None:
            old = stream.sm_resume
            if old is None or resumed.get("previd") not in (None, old.id):
                raise StreamError("invalid-xml", "the server resumed a session we did not ask "
                                  "to resume")
            self.go(LoginStep.DONE)
            stream.resumed(_h(resumed), events)
            return
        failed = outcome.find("{%s}failed" % SM_NS)
        bound = outcome.find("{%s}bound" % BIND2_NS)
        if bound is None:
            self.go(LoginStep.FEATURES)
            if failed is not None and _sm_condition(failed) != "feature-not-implemented":
                # The old session is gone: a new one, and what it never confirmed again.
                h = failed.get("h")
                stream.resume_failed(int(h) if h is not None and h.isdigit() else None)
                self._bind(stream, features)
                return
            # Not bound inline (no Bind2, an explicit resource, or a resumption the server
            # cannot do inside SASL2): the RFC 6120 steps on these features.
            self._features(stream, features)
            return
        enabled = bound.find("{%s}enabled" % SM_NS)
        if enabled is not None:
            stream.enable_sm(enabled)
        requested = {r.tag[1:].partition("}")[0] for r in self.bind_requests}
        # XEP-0386 §3.2: carbons and CSI need no answer; what the server listed and we asked
        # for is on.
        assert self.offer is not None
        self.inline = frozenset((requested & self.offer.bind2_features)
                                | ({SM_NS} if enabled is not None else set()))
        if enabled is None and bound.find("{%s}failed" % SM_NS) is None and stream.want_sm \
                and features.find("{%s}sm" % SM_NS) is not None:
            stream.send_raw('<enable xmlns="%s" resume="true"/>' % SM_NS)
            self.go(LoginStep.ENABLING)
            return
        self.go(LoginStep.DONE)
        stream.ready(events, sm_enabled=stream.sm is not None)


def _same_account(stream: ClientStream, identity: str) -> bool:
    try:
        jid = JID(identity)
    except ValueError:
        return False
    if stream.jid.local is None:
        return jid.domain == stream.jid.domain
    return jid.bare == stream.jid.bare


def _sm_condition(failed: ET.Element) -> str | None:
    """The stanza error condition of an XEP-0198 `<failed/>`: directly inside it (§5), or
    inside an `<error/>` child (what servers send inside SASL2; that element inherits the
    `urn:xmpp:sm:3` namespace)."""
    for element in failed.iter():
        ns, _, name = element.tag[1:].partition("}")
        if ns == "urn:ietf:params:xml:ns:xmpp-stanzas" and name != "text":
            return name
    return None


def _h(el: ET.Element) -> int:
    try:
        h = int(el.get("h", ""))
    except ValueError:
        raise StreamError("invalid-xml", "stream management h is not a number") from None
    if not 0 <= h < (1 << 32):
        raise StreamError("invalid-xml", "stream management h out of range")
    return h


def bind_requests_for(carbons: bool = False, csi_state: str | None = None) -> list[ET.Element]:
    """The Bind2 requests for carbons (XEP-0280) and a CSI state (XEP-0352)."""
    out = []
    if carbons:
        out.append(ET.Element("{%s}enable" % CARBONS_NS))
    if csi_state in ("active", "inactive"):
        out.append(ET.Element("{%s}%s" % (CSI_NS, csi_state)))
    return out
