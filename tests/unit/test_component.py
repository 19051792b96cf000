"""The XEP-0114 component stream replayed from transcripts: bytes in, events and bytes out."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

import pytest

from simplexmpp import Component, Iq, Message
from simplexmpp.component import ComponentStream, handshake_digest, to_client_namespace
from simplexmpp.errors import AuthenticationError, InvalidStanzaError, JIDError, StreamError
from simplexmpp.jid import JID
from simplexmpp.stanza import Presence
from simplexmpp.stream import Authenticated, Ready, StreamClosed
from simplexmpp.xml import StreamParser

HEADER = ("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns='jabber:component:accept' from='echo.localhost' id='3BF96D32'>")
ERROR = ("<stream:error><{0} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
         "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{1}</text></stream:error>"
         "</stream:stream>")


class Transcript:
    """Drives a ComponentStream the way the I/O layer would, recording what it sends."""

    def __init__(self, domain: str = "echo.localhost", secret: str = "secret") -> None:
        self.stream = ComponentStream(JID(domain), secret)
        self.stream.start()
        self.sent = self.stream.data_to_send().decode()

    def server(self, text: str, one_byte_at_a_time: bool = False) -> list[object]:
        data = text.encode()
        events: list[object] = []
        try:
            if one_byte_at_a_time:
                for i in range(len(data)):
                    events += self.stream.receive_data(data[i:i + 1])
            else:
                events = list(self.stream.receive_data(data))
        finally:
            self.sent = self.stream.data_to_send().decode()
        return events

    def sent_element(self) -> ET.Element:
        """What was sent, parsed inside a component stream (namespaces as the server sees
        them)."""
        self.sent += self.stream.data_to_send().decode()
        parser = StreamParser()
        items = parser.feed(HEADER.encode() + self.sent.encode())
        elements = [i for i in items if isinstance(i, ET.Element)]
        assert len(elements) == 1, self.sent
        return elements[0]


def ready(byte_by_byte: bool = False) -> Transcript:
    t = Transcript()
    t.server(HEADER + "<handshake/>", byte_by_byte)
    assert t.stream.state == "ready"
    t.sent = ""
    return t


def test_handshake_is_hex_sha1_of_stream_id_and_secret() -> None:
    # XEP-0114 §3: SHA-1 over the concatenation, as 40 lower-case hex digits.
    digest = handshake_digest("3BF96D32", "secret")
    assert digest == hashlib.sha1(b"3BF96D32secret").hexdigest()
    assert digest == "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
    assert handshake_digest("3BF96D32", "s\u00e9cret") == \
        hashlib.sha1("3BF96D32s\u00e9cret".encode()).hexdigest()


def test_header_opens_a_component_stream_to_the_domain() -> None:
    t = Transcript()
    assert t.sent.startswith("<?xml version='1.0'?><stream:stream to=\"echo.localhost\"")
    assert 'xmlns="jabber:component:accept"' in t.sent
    header = t.sent.split("?>", 1)[1]
    assert "version=" not in header and "from=" not in header  # XEP-0114 §3 example 1
    assert t.stream.state == "wait-header"


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_handshake_then_ready(byte_by_byte: bool) -> None:
    t = Transcript()
    assert t.server(HEADER, byte_by_byte) == []
    assert t.sent == "<handshake>%s</handshake>" % hashlib.sha1(b"3BF96D32secret").hexdigest()
    assert t.stream.stream_id == "3BF96D32"
    assert t.stream.state == "negotiating" and t.stream.negotiator.step == "handshake"
    events = t.server("<handshake/>", byte_by_byte)
    assert [type(e) for e in events] == [Authenticated, Ready]
    assert isinstance(events[0], Authenticated) and events[0].mechanism == "handshake"
    assert isinstance(events[1], Ready) and events[1].jid == JID("echo.localhost")
    assert events[1].sm_enabled is False
    assert t.stream.state == "ready" and t.stream.sm is None
    assert t.stream.negotiator._secret is None  # the secret is not kept after use


def test_wrong_secret_is_an_authentication_error() -> None:
    t = Transcript()
    t.server(HEADER)
    with pytest.raises(AuthenticationError) as info:
        t.server(ERROR.format("not-authorized", "Given token does not match calculated token"))
    assert info.value.condition == "not-authorized"
    assert "echo.localhost" in str(info.value) and "secret" in str(info.value)
    assert t.stream.state == "closed"


def test_unknown_domain_reports_host_unknown_not_the_missing_id() -> None:
    # What Prosody sends for a domain that is no component: an empty id, then the error.
    t = Transcript("nope.localhost")
    header = HEADER.replace("id='3BF96D32'", "id=''").replace(" from='echo.localhost'", "")
    with pytest.raises(StreamError) as info:
        t.server(header + ERROR.format("host-unknown", "no such component"))
    assert info.value.condition == "host-unknown" and info.value.by_peer
    assert "nope.localhost" in str(info.value)
    assert "<handshake" not in t.sent


def test_header_without_id_followed_by_anything_else_fails_clearly() -> None:
    t = Transcript()
    with pytest.raises(StreamError) as info:
        t.server(HEADER.replace("id='3BF96D32'", "") + "<handshake/>")
    assert info.value.condition == "invalid-xml" and "id" in str(info.value)


def test_client_namespace_stream_is_refused() -> None:
    t = Transcript()
    with pytest.raises(StreamError) as info:
        t.server(HEADER.replace("xmlns='jabber:component:accept'", "xmlns='jabber:client'"))
    assert info.value.condition == "invalid-namespace"
    assert "<stream:error><invalid-namespace" in t.sent


def test_conflict_during_handshake_explains_itself() -> None:
    t = Transcript()
    t.server(HEADER)
    with pytest.raises(StreamError) as info:
        t.server(ERROR.format("conflict", "Component already connected"))
    assert info.value.condition == "conflict" and "already" in str(info.value)


def test_unexpected_element_during_handshake_is_a_stream_error() -> None:
    t = Transcript()
    t.server(HEADER)
    with pytest.raises(StreamError) as info:
        t.server("<message to='x@echo.localhost'/>")
    assert info.value.condition == "invalid-xml"
    assert "<stream:error><invalid-xml" in t.sent


def test_received_stanzas_are_renamed_to_jabber_client() -> None:
    t = ready()
    events = t.server("<message from='alice@localhost/pc' to='bob@echo.localhost' type='chat'>"
                      "<body>hi</body><x xmlns='urn:example'><y/></x>"
                      "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                      "</error></message>")
    assert len(events) == 1 and isinstance(events[0], ET.Element)
    element = events[0]
    assert element.tag == "{jabber:client}message"
    assert [c.tag for c in element] == ["{jabber:client}body", "{urn:example}x",
                                        "{jabber:client}error"]
    assert element[1][0].tag == "{urn:example}y"  # other namespaces are left alone
    assert element[2][0].tag == "{urn:ietf:params:xml:ns:xmpp-stanzas}gone"
    msg = Message(element)
    assert msg.body == "hi" and str(msg.to) == "bob@echo.localhost"


def test_rename_leaves_explicit_jabber_client_and_nested_payloads() -> None:
    element = ET.fromstring("<iq xmlns='jabber:component:accept'><query xmlns='urn:q'>"
                            "<message xmlns='jabber:client'><body/></message></query></iq>")
    to_client_namespace(element)
    assert element.tag == "{jabber:client}iq"
    assert [e.tag for e in element.iter()] == [
        "{jabber:client}iq", "{urn:q}query", "{jabber:client}message", "{jabber:client}body"]


def test_sent_stanzas_inherit_the_component_namespace_and_get_a_from() -> None:
    t = ready()
    t.stream.send(Message(to="alice@localhost", body="hello", type="chat").xml)
    t.sent = t.stream.data_to_send().decode()
    assert t.sent.startswith("<message ") and "xmlns=" not in t.sent.split(">")[0]
    element = t.sent_element()
    assert element.tag == "{jabber:component:accept}message"
    assert element.get("from") == "echo.localhost"
    assert element.find("{jabber:component:accept}body") is not None


def test_nested_client_namespace_keeps_its_xmlns_when_sent() -> None:
    t = ready()
    forwarded = ET.Element("{urn:xmpp:forward:0}forwarded")
    ET.SubElement(forwarded, "{jabber:client}message").text = "x"
    msg = Message(to="alice@localhost")
    msg.append(forwarded)
    t.stream.send(msg.xml)
    element = t.sent_element()
    assert element[0][0].tag == "{jabber:client}message"


def test_from_at_the_domain_is_kept_and_a_foreign_from_refused() -> None:
    t = ready()
    t.stream.send(Message(to="alice@localhost", from_="bob@echo.localhost/x").xml)
    assert t.sent_element().get("from") == "bob@echo.localhost/x"
    t.sent = ""
    with pytest.raises(InvalidStanzaError, match="own domain"):
        t.stream.send(Message(to="alice@localhost", from_="mallory@localhost").xml)
    with pytest.raises(InvalidStanzaError, match="own domain"):
        t.stream.send(Message(to="alice@localhost", from_="other.echo.localhost").xml)
    assert t.stream.data_to_send() == b""


def test_stanza_without_to_is_addressed_to_our_own_domain() -> None:
    # Only the keepalive ping does this; the server refuses stanzas without 'to'.
    t = ready()
    t.stream.send(Iq(type="get", id="k1", payload=ET.Element("{urn:xmpp:ping}ping")).xml)
    element = t.sent_element()
    assert element.get("to") == "echo.localhost" and element.get("from") == "echo.localhost"


def test_sending_before_ready_is_refused() -> None:
    t = Transcript()
    with pytest.raises(InvalidStanzaError):
        t.stream.send(Message(to="alice@localhost").xml)


def test_stream_error_when_ready_is_raised_as_stream_error() -> None:
    t = ready()
    with pytest.raises(StreamError) as info:
        t.server(ERROR.format("invalid-from", "bad from"))
    assert info.value.condition == "invalid-from" and info.value.by_peer
    assert not isinstance(info.value, AuthenticationError)


def test_not_well_formed_input_sends_a_stream_error() -> None:
    t = ready()
    with pytest.raises(StreamError) as info:
        t.server("<message><body></message>")
    assert info.value.condition == "not-well-formed"
    assert "<stream:error><not-well-formed" in t.sent


def test_close_and_peer_close() -> None:
    t = ready()
    t.stream.close()
    assert t.stream.data_to_send() == b"</stream:stream>"
    assert [type(e) for e in t.server("</stream:stream>")] == [StreamClosed]
    assert t.stream.state == "closed"


def test_component_address_must_be_a_domain() -> None:
    with pytest.raises(JIDError):
        ComponentStream(JID("user@echo.localhost"), "secret")
    with pytest.raises(JIDError):
        Component("user@echo.localhost", "secret", "127.0.0.1")
    with pytest.raises(JIDError):
        Component("echo.localhost/res", "secret", "127.0.0.1")


def test_component_refuses_an_empty_secret_and_a_remote_host() -> None:
    with pytest.raises(ValueError, match="secret"):
        Component("echo.localhost", "", "127.0.0.1")
    with pytest.raises(ValueError, match="loopback"):
        Component("echo.localhost", "secret", "192.0.2.1")
    with pytest.raises(ValueError, match="loopback"):
        Component("echo.example.org", "secret", "example.org")


def test_component_send_checks_before_connecting() -> None:
    component = Component("echo.localhost", "secret", "127.0.0.1")
    with pytest.raises(InvalidStanzaError, match="'to'"):
        component.send(Message(body="x"))
    with pytest.raises(InvalidStanzaError, match="only message, presence and iq"):
        component.send(ET.Element("{urn:xmpp:csi:0}active"))
    with pytest.raises(InvalidStanzaError, match="own domain"):
        component.send_message("alice@localhost", "x", from_="bob@localhost")
    with pytest.raises(InvalidStanzaError, match="broadcast"):
        component.send_presence()
    with pytest.raises(NotImplementedError):
        component.get_roster()


def test_component_identity_and_extensions() -> None:
    component = Component("echo.localhost", "secret", "127.0.0.1")
    assert component.local_identities == {("component", "generic", "simplexmpp")}
    assert hasattr(component, "disco") and hasattr(component, "version")
    assert not hasattr(component, "carbons") and not hasattr(component, "csi")
    info = component.disco.local_info()
    assert info.has_identity("component", "generic")
    assert repr(component) == "<Component echo.localhost disconnected>"


def test_presence_from_a_user_at_the_domain_is_allowed() -> None:
    t = ready()
    t.stream.send(Presence(to="alice@localhost", type="subscribe",
                           from_="bob@echo.localhost").xml)
    element = t.sent_element()
    assert element.tag == "{jabber:component:accept}presence"
    assert element.get("from") == "bob@echo.localhost"


def test_components_cannot_register_accounts() -> None:
    from simplexmpp import Component
    with pytest.raises(NotImplementedError):
        Component.register("echo.localhost", "secret")
