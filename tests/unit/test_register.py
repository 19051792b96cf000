"""XEP-0077 without a server: the pre-authentication stream and the registration answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from simplexmpp.errors import StreamError
from simplexmpp.ext.forms import DATA_NS, Form
from simplexmpp.ext.register import REGISTER_NS, RegistrationError, build_submission
from simplexmpp.jid import JID
from simplexmpp.stream import ClientStream, Ready

from .test_stream import HEADER, SASL_FEATURES, TLS_FEATURES, Transcript

REGISTER_FEATURES = ("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                     "<mechanism>PLAIN</mechanism></mechanisms>"
                     "<register xmlns='http://jabber.org/features/iq-register'/>"
                     "</stream:features>")


def test_pre_auth_stream_is_ready_after_tls_without_authenticating() -> None:
    t = Transcript(ClientStream(JID("newbie@localhost"), "secret", pre_auth=True))
    t.server(HEADER + TLS_FEATURES)
    t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    events = t.server(HEADER + REGISTER_FEATURES)
    assert len(events) == 1 and isinstance(events[0], Ready)
    ready = events[0]
    assert ready.authenticated is False and ready.jid == JID("newbie@localhost")
    assert ready.features.find("{http://jabber.org/features/iq-register}register") is not None
    assert "<auth" not in t.sent  # no SASL, no password on the wire
    t.stream.send(ET.Element("{jabber:client}iq", type="get", id="r1"))
    assert t.stream.data_to_send().decode().startswith('<iq type="get" id="r1"')
    events = t.server("<iq type='result' id='r1'/>")
    assert isinstance(events[0], ET.Element)  # a stanza is reported as its element


def test_pre_auth_stream_still_requires_tls() -> None:
    from simplexmpp.errors import TLSError
    t = Transcript(ClientStream(JID("newbie@localhost"), "secret", pre_auth=True))
    with pytest.raises(TLSError):
        t.server(HEADER + SASL_FEATURES)


def test_normal_stream_reports_ready_as_authenticated() -> None:
    from .test_stream import finish, negotiate_to_bind
    events = finish(negotiate_to_bind())
    ready = [e for e in events if isinstance(e, Ready)]
    assert ready and ready[0].authenticated is True


def test_stanzas_before_a_stream_error_in_one_read_are_kept() -> None:
    t = Transcript(ClientStream(JID("newbie@localhost"), "secret", pre_auth=True))
    t.server(HEADER + TLS_FEATURES)
    t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    t.server(HEADER + REGISTER_FEATURES)
    with pytest.raises(StreamError) as caught:
        t.server("<iq type='result' id='unreg1'/><stream:error><not-authorized "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
    assert caught.value.condition == "not-authorized"
    kept = t.stream.events_before_error
    assert len(kept) == 1 and isinstance(kept[0], ET.Element)
    assert kept[0].get("id") == "unreg1"


def _query(xml: str) -> ET.Element:
    return ET.fromstring(f"<query xmlns='{REGISTER_NS}'>{xml}</query>")


def test_plain_fields_are_filled_in() -> None:
    answer = build_submission(_query("<instructions>hi</instructions><username/><password/>"),
                              "bill", "Calliope", {})
    assert [(c.tag.rpartition("}")[2], c.text) for c in answer] == [
        ("username", "bill"), ("password", "Calliope")]


def test_extra_plain_field_needs_a_value() -> None:
    with pytest.raises(RegistrationError, match="email"):
        build_submission(_query("<username/><password/><email/>"), "bill", "pw", {})
    answer = build_submission(_query("<username/><password/><email/>"), "bill", "pw",
                              {"email": "bill@example.org"})
    assert answer.findtext("{%s}email" % REGISTER_NS) == "bill@example.org"


def test_data_form_takes_precedence_and_is_submitted_alone() -> None:
    form = ("<x xmlns='jabber:x:data' type='form'>"
            "<field type='hidden' var='FORM_TYPE'><value>jabber:iq:register</value></field>"
            "<field type='text-single' var='username'><required/></field>"
            "<field type='text-private' var='password'><required/></field>"
            "<field type='text-single' var='x-color'/></x>")
    answer = build_submission(_query("<username/><password/>" + form), "bill", "pw", {})
    # XEP-0077 §4: never both the form and the plain fields.
    assert answer.find("{%s}username" % REGISTER_NS) is None
    x = answer.find("{%s}x" % DATA_NS)
    assert x is not None
    submitted = Form.from_element(x)
    assert submitted.type == "submit"
    assert submitted.form_type == "jabber:iq:register"
    assert submitted.value("username") == "bill" and submitted.value("password") == "pw"


def test_required_form_field_missing_is_reported() -> None:
    form = ("<x xmlns='jabber:x:data' type='form'>"
            "<field type='text-single' var='username'><required/></field>"
            "<field type='text-single' var='ocr'><required/></field></x>")
    with pytest.raises(RegistrationError, match="ocr"):
        build_submission(_query(form), "bill", "pw", {})
