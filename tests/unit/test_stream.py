"""Stream negotiation replayed from transcripts: bytes in, events and bytes out."""

from __future__ import annotations

import base64
import re

import pytest

from simplexmpp.errors import AuthenticationError, StreamError, TLSError
from simplexmpp.jid import JID
from simplexmpp.stream import (AckReceived, Authenticated, ClientStream, Ready, Resumed,
                               SMState, StartTLS, StreamClosed, stanza_from_text)
from simplexmpp.xml import tostring

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' "
          "version='1.0' xml:lang='en'>")
TLS_FEATURES = ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                "<required/></starttls></stream:features>")
SASL_FEATURES = ("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                 "<mechanism>PLAIN</mechanism></mechanisms></stream:features>")
BIND_FEATURES = ("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                 "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"
                 "<sm xmlns='urn:xmpp:sm:3'/></stream:features>")
SUCCESS = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"


class Transcript:
    """Drives a ClientStream the way the I/O layer would, recording what it sends."""

    def __init__(self, stream: ClientStream) -> None:
        self.stream = stream
        stream.start()
        self.sent = stream.data_to_send().decode()

    def server(self, text: str, one_byte_at_a_time: bool = False) -> list[object]:
        data = text.encode()
        events: list[object] = []
        if one_byte_at_a_time:
            for i in range(len(data)):
                events += self.stream.receive_data(data[i:i + 1])
        else:
            events = list(self.stream.receive_data(data))
        self.sent = self.stream.data_to_send().decode()
        for event in events:
            if isinstance(event, StartTLS):
                self.stream.tls_established({"tls-unique": b"cb"})
                self.sent += self.stream.data_to_send().decode()
        return events

    def pending_iq_id(self) -> str:
        match = re.search(r'<iq type="set" id="([^"]+)"', self.sent)
        assert match, self.sent
        return match.group(1)


def negotiate_to_bind(byte_by_byte: bool = False, **kwargs: object) -> Transcript:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret", resource="phone",
                                mechanisms=["PLAIN"], **kwargs))  # type: ignore[arg-type]
    assert t.sent.startswith("<?xml version='1.0'?><stream:stream to=\"localhost\"")
    t.server(HEADER + TLS_FEATURES, byte_by_byte)
    assert t.sent == '<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>'
    events = t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", byte_by_byte)
    assert events == [StartTLS()]
    assert 'from="alice@localhost"' in t.sent  # RFC 6120 §4.7.2: from once encrypted
    t.server(HEADER + SASL_FEATURES, byte_by_byte)
    expected = base64.b64encode(b"\0alice\0secret").decode()
    assert t.sent == ('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">'
                      f"{expected}</auth>")
    events = t.server(SUCCESS, byte_by_byte)
    assert events == [Authenticated("PLAIN")]
    assert t.sent.startswith("<?xml version='1.0'?><stream:stream")
    t.server(HEADER + BIND_FEATURES, byte_by_byte)
    if "sm_state" not in kwargs:  # with one, the stream tries resumption first
        assert "<resource>phone</resource>" in t.sent
    return t


def finish(t: Transcript) -> list[object]:
    t.server(f"<iq type='result' id='{t.pending_iq_id()}'><bind "
             "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/phone</jid>"
             "</bind></iq>")
    assert '<session xmlns="urn:ietf:params:xml:ns:xmpp-session"/>' in t.sent
    t.server(f"<iq type='result' id='{t.pending_iq_id()}'/>")
    assert t.sent == '<enable xmlns="urn:xmpp:sm:3" resume="true"/>'
    return t.server("<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true' max='120'/>")


def test_full_negotiation_reaches_ready_with_bound_jid_and_stream_management() -> None:
    t = negotiate_to_bind()
    events = finish(t)
    assert len(events) == 1 and isinstance(events[0], Ready)
    assert events[0].jid == "alice@localhost/phone" and events[0].sm_enabled
    assert t.stream.sm is not None and t.stream.sm.id == "sm-1" and t.stream.sm.max == 120


def test_negotiation_fed_one_byte_at_a_time_equals_fed_whole() -> None:
    t = negotiate_to_bind(byte_by_byte=True)
    assert isinstance(finish(t)[0], Ready)


def test_missing_starttls_is_a_downgrade_and_raises_tls_error() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret"))
    with pytest.raises(TLSError, match="downgrade"):
        t.server(HEADER + SASL_FEATURES)
    assert t.stream.data_to_send().endswith(b"</stream:stream>")


def test_plain_is_never_offered_over_an_unencrypted_stream() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret", tls="none"))
    with pytest.raises(AuthenticationError) as info:
        t.server(HEADER + SASL_FEATURES)
    assert info.value.condition == "no-mechanism"


def test_sasl_failure_raises_authentication_error_with_condition() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "wrong", tls="direct",
                                mechanisms=["PLAIN"]))
    t.server(HEADER + SASL_FEATURES)
    with pytest.raises(AuthenticationError) as info:
        t.server("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
                 "<text>Unable to authorize you</text></failure>")
    assert info.value.condition == "not-authorized"
    assert "alice@localhost" in str(info.value) and "Unable to authorize" in str(info.value)


def test_server_stream_error_is_raised_with_condition_and_other_host() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret"))
    with pytest.raises(StreamError) as info:
        t.server(HEADER + "<stream:error><see-other-host "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[::1]:5222</see-other-host>"
                 "</stream:error>")
    assert info.value.by_peer and info.value.condition == "see-other-host"
    assert info.value.other_host == "[::1]:5222"


@pytest.mark.parametrize("condition", ["conflict", "host-unknown", "not-authorized",
                                       "policy-violation", "system-shutdown", "reset"])
def test_each_stream_error_condition_is_reported(condition: str) -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret"))
    with pytest.raises(StreamError) as info:
        t.server(HEADER + f"<stream:error><{condition} "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
    assert info.value.condition == condition


def test_hostile_xml_from_server_queues_our_stream_error() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret"))
    with pytest.raises(StreamError) as info:
        t.server(HEADER + "<message>&xxe;</message>")
    assert info.value.condition == "restricted-xml" and not info.value.by_peer
    sent = t.stream.data_to_send().decode()
    assert "<restricted-xml" in sent and sent.endswith("</stream:stream>")


def test_old_stream_version_is_refused() -> None:
    t = Transcript(ClientStream(JID("alice@localhost"), "secret"))
    with pytest.raises(StreamError) as info:
        t.server(HEADER.replace("version='1.0'", "version='0.9'"))
    assert info.value.condition == "unsupported-version"


def test_bind_to_a_foreign_jid_is_refused() -> None:
    t = negotiate_to_bind()
    with pytest.raises(StreamError, match="foreign"):
        t.server(f"<iq type='result' id='{t.pending_iq_id()}'><bind "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>mallory@localhost/x</jid>"
                 "</bind></iq>")


def test_bind_error_is_reported() -> None:
    t = negotiate_to_bind()
    with pytest.raises(StreamError, match="resource binding: not-allowed"):
        t.server(f"<iq type='error' id='{t.pending_iq_id()}'><error type='cancel'>"
                 "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")


def ready_stream() -> Transcript:
    t = negotiate_to_bind()
    finish(t)
    return t


def test_stanzas_are_counted_and_acknowledged_per_xep_0198() -> None:
    t = ready_stream()
    events = t.server("<message from='bob@localhost/x'><body>1</body></message>"
                      "<presence from='bob@localhost/x'/><r xmlns='urn:xmpp:sm:3'/>")
    assert [e.tag for e in events] == ["{jabber:client}message", "{jabber:client}presence"]
    assert t.sent == ""          # the answer waits for other output, or for send_ack()
    assert t.stream.ack_pending
    t.stream.send_ack()
    assert t.stream.data_to_send().decode() == '<a xmlns="urn:xmpp:sm:3" h="2"/>'
    assert not t.stream.ack_pending
    import xml.etree.ElementTree as ET
    for i in range(3):
        t.stream.send(ET.Element("{jabber:client}message", id=f"m{i}"))
    assert len(t.stream.unacked) == 3
    events = t.server("<a xmlns='urn:xmpp:sm:3' h='2'/>")
    assert isinstance(events[0], AckReceived)
    assert events[0].acked == ['<message id="m0"/>', '<message id="m1"/>']
    assert [e.get("id") for e in t.stream.unacked] == ["m2"]
    assert t.stream.unacked[0].tag == "{jabber:client}message"


def test_a_pending_ack_waits_for_the_owner_not_for_our_next_output() -> None:
    """Issue 18: answering the server's <r/> with our next stanza made Prosody ask again
    after its next reply, an <r/> and an <a/> on every request and reply (ping p50 0.157 ->
    0.123 ms without it, bench/README.md); the owner answers after ack_delay instead."""
    import xml.etree.ElementTree as ET
    t = ready_stream()
    t.server("<message from='bob@localhost/x'><body>1</body></message><r xmlns='urn:xmpp:sm:3'/>")
    t.stream.send(ET.Element("{jabber:client}message", id="m0"))
    assert t.stream.data_to_send().decode() == '<message id="m0"/>'
    assert t.stream.ack_pending
    t.stream.send_ack()
    assert t.stream.data_to_send().decode() == '<a xmlns="urn:xmpp:sm:3" h="1"/>'


def test_a_pending_ack_rides_along_with_the_next_output_when_asked() -> None:
    import xml.etree.ElementTree as ET
    t = ready_stream()
    t.stream.ack_rides_along = True
    t.server("<message from='bob@localhost/x'><body>1</body></message><r xmlns='urn:xmpp:sm:3'/>"
             "<message from='bob@localhost/x'><body>2</body></message>")
    assert t.sent == ""
    t.stream.send(ET.Element("{jabber:client}message", id="m0"))
    # h counts every stanza handled by the time it is sent (2), not only those before <r/>.
    assert t.stream.data_to_send().decode() == (
        '<message id="m0"/><a xmlns="urn:xmpp:sm:3" h="2"/>')
    assert t.stream.data_to_send() == b""   # answered once


def test_a_pending_ack_goes_out_before_our_closing_footer() -> None:
    t = ready_stream()
    t.server("<message from='bob@localhost/x'><body>1</body></message><r xmlns='urn:xmpp:sm:3'/>")
    t.stream.close()
    assert t.stream.data_to_send().decode() == '<a xmlns="urn:xmpp:sm:3" h="1"/></stream:stream>'


def test_nothing_is_sent_after_our_closing_footer_not_even_an_ack() -> None:
    t = ready_stream()
    t.stream.close()
    assert t.stream.data_to_send() == b"</stream:stream>"
    t.server("<r xmlns='urn:xmpp:sm:3'/>")
    assert t.sent == ""
    t.stream.send_ack()
    assert t.stream.data_to_send() == b""


def test_ack_for_more_than_was_sent_is_a_stream_error() -> None:
    t = ready_stream()
    with pytest.raises(StreamError):
        t.server("<a xmlns='urn:xmpp:sm:3' h='5'/>")


def sm_state_with_unacked() -> SMState:
    import xml.etree.ElementTree as ET
    state = SMState(id="sm-1", jid=JID("alice@localhost/phone"), resumable=True, inbound=7)
    for i in range(3):
        state.record_sent(tostring(ET.Element("{jabber:client}message", id=f"m{i}")))
    return state


def test_resumption_resends_exactly_what_the_server_did_not_acknowledge() -> None:
    state = sm_state_with_unacked()
    t = negotiate_to_bind(sm_state=state)
    assert t.sent == '<resume xmlns="urn:xmpp:sm:3" h="7" previd="sm-1"/>'
    events = t.server("<resumed xmlns='urn:xmpp:sm:3' h='1' previd='sm-1'/>")
    assert isinstance(events[0], Resumed) and events[0].jid == "alice@localhost/phone"
    assert [stanza_from_text(text).get("id") for text in events[0].resend] == ["m1", "m2"]
    assert 'id="m1"' in t.sent and 'id="m2"' in t.sent and 'id="m0"' not in t.sent
    assert t.stream.state == "ready"


def test_failed_resumption_binds_anew_and_resends_unacknowledged_stanzas() -> None:
    state = sm_state_with_unacked()
    t = negotiate_to_bind(sm_state=state)
    t.server("<failed xmlns='urn:xmpp:sm:3' h='2'><item-not-found "
             "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
    assert "<bind" in t.sent
    events = finish(t)
    assert isinstance(events[0], Ready)
    assert 'id="m2"' in t.sent and 'id="m1"' not in t.sent


def test_a_resend_repeats_what_was_sent_not_what_the_element_became() -> None:
    import xml.etree.ElementTree as ET
    t = ready_stream()
    message = ET.Element("{jabber:client}message", id="m0", to="bob@localhost")
    ET.SubElement(message, "{jabber:client}body").text = "first"
    t.stream.send(message)
    message.find("{jabber:client}body").text = "changed after sending"  # type: ignore
    state = t.stream.sm
    assert state is not None
    state.resumable, state.id = True, "sm-9"
    t.stream.connection_lost()
    again = negotiate_to_bind(sm_state=state)
    again.server("<resumed xmlns='urn:xmpp:sm:3' h='0' previd='sm-9'/>")
    assert "<body>first</body>" in again.sent and "changed" not in again.sent


def test_failed_resumption_resends_directed_presence_but_not_broadcast_presence() -> None:
    import xml.etree.ElementTree as ET
    state = SMState(id="sm-1", jid=JID("alice@localhost/phone"), resumable=True)
    for attrs in ({"id": "p-broadcast"}, {"id": "p-directed", "to": "room@muc.localhost/me"},
                  {"id": "p-sub", "to": "bob@localhost", "type": "subscribe"}):
        state.record_sent(tostring(ET.Element("{jabber:client}presence", attrs)))
    t = negotiate_to_bind(sm_state=state)
    t.server("<failed xmlns='urn:xmpp:sm:3'/>")
    finish(t)
    assert 'id="p-directed"' in t.sent and 'id="p-sub"' in t.sent
    assert "p-broadcast" not in t.sent


def test_stanza_from_text_puts_back_the_stream_namespace() -> None:
    import xml.etree.ElementTree as ET
    message = ET.Element("{jabber:client}message", id="x")
    ET.SubElement(message, "{urn:xmpp:sid:0}origin-id", id="x")
    back = stanza_from_text(tostring(message))
    assert back.tag == "{jabber:client}message"
    assert back[0].tag == "{urn:xmpp:sid:0}origin-id" and back[0].get("id") == "x"


def test_peer_closing_the_stream_is_answered_with_our_footer() -> None:
    t = ready_stream()
    events = t.server("</stream:stream>")
    assert events == [StreamClosed()]
    assert t.sent == "</stream:stream>"


def test_our_close_then_peer_footer_ends_cleanly() -> None:
    t = ready_stream()
    t.stream.close()
    assert t.stream.data_to_send() == b"</stream:stream>"
    assert t.server("</stream:stream>") == [StreamClosed()]
    assert t.sent == ""  # no second footer
