"""The stream's negotiators: chosen by a parameter of one stream class, each a state machine
with its transition table; and a negotiator written outside simplexmpp.stream plugs in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from enum import Enum

import pytest

from simplexmpp.component import ComponentNegotiator, ComponentStream, HandshakeStep
from simplexmpp.errors import TLSError
from simplexmpp.jid import JID
from simplexmpp.stream import (TRANSITIONS, Authenticated, ClientStream, Event, LoginNegotiator,
                               LoginStep, Negotiator, PreAuthNegotiator, Ready, StartTLS,
                               StreamState, negotiate_tls, tls_answer)

from .test_stream import (BIND_FEATURES, HEADER, SASL_FEATURES, TLS_FEATURES, Transcript,
                          finish, negotiate_to_bind)

SM_FEATURES = "<stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features>"


def test_without_a_negotiator_the_stream_logs_in_with_the_password() -> None:
    stream = ClientStream(JID("alice@localhost/phone"), "secret", mechanisms=["PLAIN"])
    assert isinstance(stream.negotiator, LoginNegotiator)
    assert stream.negotiator.resource == "phone" and stream.negotiator.mechanisms == ["PLAIN"]
    assert not stream.pre_auth


def test_pre_auth_selects_the_registration_negotiator() -> None:
    stream = ClientStream(JID("newbie@localhost"), "secret", pre_auth=True)
    assert isinstance(stream.negotiator, PreAuthNegotiator) and stream.pre_auth


def test_pre_auth_can_still_be_switched_on_before_start_but_not_after() -> None:
    # simplexmpp's pre-authentication client sets it on a stream made for a login.
    stream = ClientStream(JID("newbie@localhost"), "secret")
    stream.pre_auth = True
    assert isinstance(stream.negotiator, PreAuthNegotiator)
    late = ClientStream(JID("newbie@localhost"), "secret")
    late.start()
    with pytest.raises(RuntimeError):
        late.pre_auth = True


def test_an_explicit_negotiator_is_used_and_credentials_go_to_it() -> None:
    negotiator = LoginNegotiator("secret", resource="desk")
    stream = ClientStream(JID("alice@localhost"), negotiator=negotiator)
    assert stream.negotiator is negotiator
    with pytest.raises(ValueError, match="negotiator"):
        ClientStream(JID("alice@localhost"), "secret", negotiator=LoginNegotiator("secret"))
    with pytest.raises(ValueError, match="negotiator"):
        ClientStream(JID("alice@localhost"), pre_auth=True, negotiator=PreAuthNegotiator())


def test_login_through_an_explicit_negotiator_equals_the_default() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), negotiator=LoginNegotiator(
        "secret", resource="phone", mechanisms=["PLAIN"])))
    t.server(HEADER + TLS_FEATURES)
    t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    t.server(HEADER + SASL_FEATURES)
    assert [type(e) for e in t.server("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")] \
        == [Authenticated]
    t.server(HEADER + BIND_FEATURES)
    events = finish(t)
    assert isinstance(events[0], Ready) and events[0].jid == "alice@localhost/phone"


def test_the_component_stream_is_the_stream_with_the_component_negotiator() -> None:
    stream = ComponentStream(JID("echo.localhost"), "secret")
    assert type(stream).__mro__[1] is ClientStream
    assert isinstance(stream.negotiator, ComponentNegotiator)
    plain = ClientStream(JID("echo.localhost"), tls="none", sm=False,
                         negotiator=ComponentNegotiator("secret"))
    plain.start()
    stream.start()
    assert plain.data_to_send() == stream.data_to_send()
    header = ("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
              " xmlns='jabber:component:accept' from='echo.localhost' id='3BF96D32'>")
    for s in (plain, stream):
        s.receive_data(header.encode())
        assert s.data_to_send().startswith(b"<handshake>")
        events = s.receive_data(b"<handshake/>")
        assert [type(e) for e in events] == [Authenticated, Ready]
    assert stream.negotiator.step is HandshakeStep.DONE


def test_stream_states_compare_and_hash_as_their_names() -> None:
    assert StreamState.READY == "ready" and "ready" == StreamState.READY
    assert {"ready": 1}[StreamState.READY] == 1 and {StreamState.READY: 1}["ready"] == 1
    assert f"{StreamState.TLS_HANDSHAKE}" == str(StreamState.TLS_HANDSHAKE) == "tls-handshake"
    assert str(LoginStep.SASL) == "sasl"


def test_every_stream_state_has_its_rules_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(StreamState)
    assert TRANSITIONS[StreamState.CLOSED] == frozenset()
    for state, targets in TRANSITIONS.items():
        if state is not StreamState.CLOSED:
            assert StreamState.CLOSED in targets, state
    for negotiator in (LoginNegotiator("pw"), PreAuthNegotiator(),
                       ComponentNegotiator("secret")):
        assert set(negotiator.TRANSITIONS) == set(type(negotiator.step)), negotiator


def test_a_move_the_table_does_not_list_is_refused() -> None:
    stream = ClientStream(JID("alice@localhost"), "secret")
    with pytest.raises(RuntimeError, match="without a pending StartTLS"):
        stream.tls_established()
    stream.start()
    with pytest.raises(RuntimeError, match="no transition from wait-header to ready"):
        stream.ready([], sm_enabled=False)
    negotiator = LoginNegotiator("secret")
    with pytest.raises(RuntimeError, match="no transition from wait-features to done"):
        negotiator.go(LoginStep.DONE)
    assert negotiator.step is LoginStep.FEATURES


def test_phase_names_the_negotiator_step_while_negotiating() -> None:
    t = negotiate_to_bind()
    assert t.stream.negotiating and t.stream.phase == "negotiating (binding)"
    finish(t)
    assert not t.stream.negotiating and t.stream.phase == "ready"


# -- a negotiator written elsewhere, through the documented interface only ----------------------

class _QuickStep(str, Enum):
    FEATURES = "features"
    PROCEED = "proceed"
    WAITING = "waiting"
    DONE = "done"


class QuickLogin(Negotiator):
    """A made-up inline login in the shape of SASL2 + Bind2: one request after TLS, one answer
    that authenticates, binds and enables stream management, no restart."""

    name = "quick"
    TRANSITIONS = {
        _QuickStep.FEATURES: frozenset({_QuickStep.PROCEED, _QuickStep.WAITING}),
        _QuickStep.PROCEED: frozenset({_QuickStep.FEATURES}),
        _QuickStep.WAITING: frozenset({_QuickStep.DONE}),
        _QuickStep.DONE: frozenset(),
    }

    def __init__(self) -> None:
        self.step = _QuickStep.FEATURES

    def header(self, stream: ClientStream) -> str:
        self.go(_QuickStep.FEATURES)
        return super().header(stream)

    def element(self, stream: ClientStream, element: ET.Element, events: list[Event]) -> None:
        if self.step is _QuickStep.PROCEED:
            tls_answer(stream, element, events)
        elif self.step is _QuickStep.FEATURES:
            stream.features = element
            if negotiate_tls(stream, element):
                self.go(_QuickStep.PROCEED)
            else:
                stream.send_raw("<quick xmlns='urn:example:quick'/>")
                self.go(_QuickStep.WAITING)
        else:
            stream.authenticated_with("QUICK", events)
            stream.jid = JID(element.get("jid", ""))
            stream.enable_sm(ET.Element("{urn:xmpp:sm:3}enabled", id="q1", resume="true"))
            self.go(_QuickStep.DONE)
            stream.ready(events, sm_enabled=True)


def test_a_negotiator_from_another_module_plugs_into_the_stream() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), negotiator=QuickLogin()))
    events = t.server(HEADER + TLS_FEATURES)
    assert t.sent == '<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>'
    events = t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert events == [StartTLS()] and t.stream.encrypted
    t.server(HEADER + SM_FEATURES)
    assert t.sent == "<quick xmlns='urn:example:quick'/>"
    events = t.server("<ok xmlns='urn:example:quick' jid='alice@localhost/q'/>")
    assert [type(e) for e in events] == [Authenticated, Ready]
    assert t.stream.jid == "alice@localhost/q" and t.stream.authenticated
    # Stanzas and XEP-0198 work as on any stream.
    events = t.server("<message from='bob@localhost/x'><body>hi</body></message>"
                      "<r xmlns='urn:xmpp:sm:3'/>")
    assert [e.tag for e in events if isinstance(e, ET.Element)] == ["{jabber:client}message"]
    t.stream.send_ack()
    assert t.stream.data_to_send() == b'<a xmlns="urn:xmpp:sm:3" h="1"/>'


def test_the_shared_tls_rule_refuses_a_downgrade_for_any_negotiator() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), negotiator=QuickLogin()))
    with pytest.raises(TLSError, match="downgrade"):
        t.server(HEADER + SM_FEATURES)
    assert t.stream.state == "closed"
