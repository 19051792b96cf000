"""SASL2 / Bind2 / FAST login (XEP-0388, XEP-0386, XEP-0484) replayed from transcripts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET

import pytest

from simplexmpp.errors import AuthenticationError, StreamError
from simplexmpp.jid import JID
from simplexmpp.sasl2 import (FastTokenRejected, Sasl2Negotiator, Sasl2Offer, TokenIssued,
                              bind_requests_for)
from simplexmpp.stream import Authenticated, ClientStream, Ready, Resumed, SMState
from simplexmpp.tokens import FastToken

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' "
          "version='1.0' xml:lang='en'>")
UA = "6d9a6a3e-8d2b-4f5e-9c1e-2b7b8f0b1c2d"
EXPORTER = b"E" * 32


def sasl2_features(mechanisms: str = "PLAIN", fast: str = "HT-SHA-256-EXPR HT-SHA-256-NONE",
                   bind_inline: str = "urn:xmpp:sm:3 urn:xmpp:carbons:2 urn:xmpp:csi:0",
                   sm: bool = True, legacy: str = "PLAIN") -> str:
    mechs = "".join(f"<mechanism>{m}</mechanism>" for m in mechanisms.split())
    fast_el = ("<fast xmlns='urn:xmpp:fast:0'>"
               + "".join(f"<mechanism>{m}</mechanism>" for m in fast.split()) + "</fast>"
               if fast else "")
    inline = "".join(f"<feature var='{v}'/>" for v in bind_inline.split())
    return ("<stream:features><authentication xmlns='urn:xmpp:sasl:2'>" + mechs
            + "<inline><bind xmlns='urn:xmpp:bind:0'><inline>" + inline + "</inline></bind>"
            + fast_el + ("<sm xmlns='urn:xmpp:sm:3'/>" if sm else "")
            + "</inline></authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            + "".join(f"<mechanism>{m}</mechanism>" for m in legacy.split())
            + "</mechanisms></stream:features>")


AFTER_FEATURES = ("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                  "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/></stream:features>")


class Transcript:
    def __init__(self, negotiator: Sasl2Negotiator, *, sm_state: SMState | None = None,
                 bindings: dict[str, bytes] | None = None, features: str | None = None) -> None:
        self.stream = ClientStream(JID("alice@localhost"), tls="direct", negotiator=negotiator,
                                   sm_state=sm_state,
                                   channel_bindings=bindings if bindings is not None
                                   else {"tls-exporter": EXPORTER})
        self.negotiator = negotiator
        self.stream.start()
        self.stream.data_to_send()
        self.sent = ""
        if features is not None:
            self.server(HEADER + features)

    def server(self, text: str) -> list[object]:
        events = list(self.stream.receive_data(text.encode()))
        self.sent = self.stream.data_to_send().decode()
        return events

    def authenticate(self) -> ET.Element:
        match = re.search(r"<authenticate .*</authenticate>", self.sent)
        assert match, self.sent
        return ET.fromstring(match.group(0))


def negotiator(password: str | None = "secret", **kwargs: object) -> Sasl2Negotiator:
    kwargs.setdefault("mechanisms", ["PLAIN"])
    return Sasl2Negotiator(password, user_agent_id=UA, **kwargs)  # type: ignore[arg-type]


def ht(token: str, label: bytes, cb: bytes = b"") -> bytes:
    return hmac.new(token.encode(), label + cb, hashlib.sha256).digest()


S2 = "{urn:xmpp:sasl:2}"
B2 = "{urn:xmpp:bind:0}"
FAST = "{urn:xmpp:fast:0}"
SM = "{urn:xmpp:sm:3}"


def test_password_login_binds_inline_enables_sm_and_asks_for_a_token_in_one_element() -> None:
    t = Transcript(negotiator(request_token=True,
                              bind_requests=bind_requests_for(carbons=True)),
                   features=sasl2_features())
    auth = t.authenticate()
    assert auth.get("mechanism") == "PLAIN"
    assert base64.b64decode(auth.findtext(S2 + "initial-response") or "") == \
        b"\0alice\0secret"
    assert auth.find(S2 + "user-agent").get("id") == UA  # type: ignore[union-attr]
    # tls-exporter is the strongest binding this connection has (XEP-0484 §7)
    assert auth.find(FAST + "request-token").get("mechanism") == "HT-SHA-256-EXPR"  # type: ignore[union-attr]
    bind = auth.find(B2 + "bind")
    assert bind is not None and bind.findtext(B2 + "tag") == "simplexmpp"
    assert bind.find("{urn:xmpp:carbons:2}enable") is not None
    assert bind.find(SM + "enable") is not None
    events = t.server(
        "<success xmlns='urn:xmpp:sasl:2'><bound xmlns='urn:xmpp:bind:0'>"
        "<enabled xmlns='urn:xmpp:sm:3' id='sm-9' resume='1' max='120'/></bound>"
        "<token xmlns='urn:xmpp:fast:0' expiry='2030-01-01T00:00:00Z' token='tok-1'/>"
        "<authorization-identifier>alice@localhost/simplexmpp~abc</authorization-identifier>"
        "</success>")
    assert t.sent == ""  # XEP-0388 §2.6.1: no stream restart, so no new header
    issued = [e for e in events if isinstance(e, TokenIssued)]
    assert len(issued) == 1 and issued[0].token.token == "tok-1"
    assert issued[0].token.mechanism == "HT-SHA-256-EXPR"
    assert issued[0].token.expiry is not None and issued[0].token.expiry.year == 2030
    assert Authenticated("PLAIN") in events
    events = t.server(AFTER_FEATURES)
    assert len(events) == 1 and isinstance(events[0], Ready)
    assert events[0].jid == "alice@localhost/simplexmpp~abc" and events[0].sm_enabled
    assert t.stream.sm is not None and t.stream.sm.id == "sm-9"
    assert t.negotiator.inline == {"urn:xmpp:sm:3", "urn:xmpp:carbons:2"}
    assert t.sent == ""  # nothing more to negotiate: no bind IQ, no <enable/>


def test_carbons_are_not_requested_inline_where_the_server_does_not_list_them() -> None:
    t = Transcript(negotiator(bind_requests=bind_requests_for(carbons=True)),
                   features=sasl2_features(bind_inline="urn:xmpp:sm:3"))
    bind = t.authenticate().find(B2 + "bind")
    assert bind is not None and bind.find("{urn:xmpp:carbons:2}enable") is None


def test_fast_login_sends_the_hashed_token_and_checks_the_servers_proof() -> None:
    token = FastToken("HT-SHA-256-EXPR", "secret-token:abc")
    t = Transcript(negotiator(None, token=token), features=sasl2_features())
    auth = t.authenticate()
    assert auth.get("mechanism") == "HT-SHA-256-EXPR"
    assert auth.find(FAST + "fast") is not None and auth.find(FAST + "request-token") is None
    initial = base64.b64decode(auth.findtext(S2 + "initial-response") or "")
    # draft-schmaus-kitten-sasl-ht §4: authcid NUL HMAC(token, "Initiator" || cb-data)
    assert initial == b"alice\0" + ht(token.token, b"Initiator", EXPORTER)
    proof = base64.b64encode(ht(token.token, b"Responder", EXPORTER)).decode()
    events = t.server(
        f"<success xmlns='urn:xmpp:sasl:2'><additional-data>{proof}</additional-data>"
        "<bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='s' resume='1'/>"
        "</bound>"
        "<authorization-identifier>alice@localhost/simplexmpp~abc</authorization-identifier>"
        "</success>" + AFTER_FEATURES)
    assert Authenticated("HT-SHA-256-EXPR") in events
    assert any(isinstance(e, Ready) for e in events)
    assert t.negotiator.used_token and t.negotiator.used_sasl2


def test_fast_success_without_the_servers_proof_is_refused() -> None:
    token = FastToken("HT-SHA-256-NONE", "secret-token:abc")
    t = Transcript(negotiator(None, token=token), features=sasl2_features())
    wrong = base64.b64encode(ht("another", b"Responder")).decode()
    with pytest.raises(AuthenticationError) as info:
        t.server(f"<success xmlns='urn:xmpp:sasl:2'><additional-data>{wrong}</additional-data>"
                 "<authorization-identifier>alice@localhost</authorization-identifier>"
                 "</success>")
    assert info.value.condition == "server-signature-mismatch"


def test_rotated_token_is_reported_for_the_mechanism_in_use() -> None:
    token = FastToken("HT-SHA-256-NONE", "old")
    t = Transcript(negotiator(None, token=token), features=sasl2_features())
    proof = base64.b64encode(ht("old", b"Responder")).decode()
    events = t.server(
        f"<success xmlns='urn:xmpp:sasl:2'><additional-data>{proof}</additional-data>"
        "<token xmlns='urn:xmpp:fast:0' expiry='2030-01-01T00:00:00Z' token='new'/>"
        "<authorization-identifier>alice@localhost</authorization-identifier></success>")
    issued = [e for e in events if isinstance(e, TokenIssued)]
    assert [(i.token.mechanism, i.token.token) for i in issued] == [("HT-SHA-256-NONE", "new")]


@pytest.mark.parametrize("password", [None, "secret"])
def test_rejected_token_is_reported_with_whether_the_password_can_take_over(
        password: str | None) -> None:
    t = Transcript(negotiator(password, token=FastToken("HT-SHA-256-NONE", "stale")),
                   features=sasl2_features())
    with pytest.raises(FastTokenRejected) as info:
        t.server("<failure xmlns='urn:xmpp:sasl:2'><not-authorized "
                 "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>")
    assert info.value.condition == "not-authorized"
    assert info.value.password_available is (password is not None)
    assert isinstance(info.value, AuthenticationError)


def test_token_needing_a_binding_this_connection_lacks_falls_back_to_the_password() -> None:
    t = Transcript(negotiator(token=FastToken("HT-SHA-256-EXPR", "x")), bindings={},
                   features=sasl2_features(fast="HT-SHA-256-EXPR HT-SHA-256-NONE"))
    assert t.authenticate().get("mechanism") == "PLAIN"


def test_token_without_password_and_without_fast_is_a_clear_error() -> None:
    with pytest.raises(AuthenticationError, match="FAST"):
        Transcript(negotiator(None, token=FastToken("HT-SHA-256-NONE", "x")),
                   features=sasl2_features(fast=""))


def test_server_without_sasl2_gets_the_rfc6120_login() -> None:
    t = Transcript(negotiator(request_token=True),
                   features="<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:"
                            "xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
                            "</stream:features>")
    assert t.sent.startswith('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">')
    assert not t.negotiator.used_sasl2


def test_explicit_resource_is_bound_the_rfc6120_way_after_sasl2() -> None:
    t = Transcript(negotiator(resource="phone"), features=sasl2_features())
    assert t.authenticate().find(B2 + "bind") is None
    t.server("<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@localhost"
             "</authorization-identifier></success>" + AFTER_FEATURES)
    assert "<resource>phone</resource>" in t.sent


def test_inline_resume_not_implemented_falls_back_to_rfc6120_resumption() -> None:
    old = SMState(id="prev-1", jid=JID("alice@localhost/r"), resumable=True, inbound=7)
    old.record_sent("<message to='bob@localhost'><body>hi</body></message>")
    t = Transcript(negotiator(), sm_state=old, features=sasl2_features())
    auth = t.authenticate()
    resume = auth.find(SM + "resume")
    assert resume is not None and resume.get("previd") == "prev-1" and resume.get("h") == "7"
    assert auth.find(B2 + "bind") is None  # a failed inline resume must leave us unbound
    t.server("<success xmlns='urn:xmpp:sasl:2'><failed xmlns='urn:xmpp:sm:3'>"
             "<error type='cancel'><feature-not-implemented "
             "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></failed>"
             "<authorization-identifier>alice@localhost</authorization-identifier></success>"
             + AFTER_FEATURES)
    assert t.sent == '<resume xmlns="urn:xmpp:sm:3" h="7" previd="prev-1"/>'
    events = t.server("<resumed xmlns='urn:xmpp:sm:3' h='0' previd='prev-1'/>")
    assert len(events) == 1 and isinstance(events[0], Resumed)
    assert events[0].jid == "alice@localhost/r" and len(events[0].resend) == 1


def test_inline_resume_of_an_expired_session_binds_anew_without_retrying() -> None:
    old = SMState(id="prev-1", jid=JID("alice@localhost/r"), resumable=True)
    t = Transcript(negotiator(), sm_state=old, features=sasl2_features())
    t.server("<success xmlns='urn:xmpp:sasl:2'><failed xmlns='urn:xmpp:sm:3' h='0'>"
             "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
             "<authorization-identifier>alice@localhost</authorization-identifier></success>"
             + AFTER_FEATURES)
    assert "<resume" not in t.sent and 'xmlns="urn:ietf:params:xml:ns:xmpp-bind"' in t.sent


def test_inline_resume_that_succeeds_is_resumed_at_once() -> None:
    old = SMState(id="prev-1", jid=JID("alice@localhost/r"), resumable=True)
    t = Transcript(negotiator(), sm_state=old, features=sasl2_features())
    events = t.server("<success xmlns='urn:xmpp:sasl:2'>"
                      "<resumed xmlns='urn:xmpp:sm:3' h='0' previd='prev-1'/>"
                      "<authorization-identifier>alice@localhost</authorization-identifier>"
                      "</success>" + AFTER_FEATURES)
    assert any(isinstance(e, Resumed) for e in events)
    assert t.stream.state == "ready"


def test_success_for_another_account_is_refused() -> None:
    t = Transcript(negotiator(), features=sasl2_features())
    with pytest.raises(StreamError, match="foreign"):
        t.server("<success xmlns='urn:xmpp:sasl:2'><bound xmlns='urn:xmpp:bind:0'/>"
                 "<authorization-identifier>mallory@localhost/x</authorization-identifier>"
                 "</success>")


def test_continue_with_tasks_is_aborted_with_a_clear_error() -> None:
    t = Transcript(negotiator(), features=sasl2_features())
    with pytest.raises(AuthenticationError, match="TOTP"):
        t.server("<continue xmlns='urn:xmpp:sasl:2'><tasks><task>TOTP-EXAMPLE</task></tasks>"
                 "</continue>")
    assert '<abort xmlns="urn:xmpp:sasl:2"/>' in t.stream.data_to_send().decode()


def test_anything_but_sasl2_elements_during_authentication_is_a_stream_error() -> None:
    t = Transcript(negotiator(), features=sasl2_features())
    with pytest.raises(StreamError):
        t.server("<message xmlns='jabber:client'><body>early</body></message>")


def test_scram_over_sasl2_with_a_challenge() -> None:
    t = Transcript(negotiator(mechanisms=["SCRAM-SHA-256"]),
                   features=sasl2_features(mechanisms="SCRAM-SHA-256"))
    auth = t.authenticate()
    first = base64.b64decode(auth.findtext(S2 + "initial-response") or "").decode()
    # no -PLUS offered while we could bind: "y" (RFC 5802 §6)
    assert first.startswith("y,,n=alice,r=")
    nonce = first.rpartition("r=")[2]
    challenge = base64.b64encode(
        f"r={nonce}srv,s={base64.b64encode(b'salt').decode()},i=4096".encode()).decode()
    t.server(f"<challenge xmlns='urn:xmpp:sasl:2'>{challenge}</challenge>")
    assert t.sent.startswith('<response xmlns="urn:xmpp:sasl:2">')


def test_offer_parses_the_inline_features_and_xep0440() -> None:
    features = ET.fromstring(
        "<f xmlns:stream='http://etherx.jabber.org/streams'>"
        + sasl2_features().replace("</stream:features>",
                                   "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                                   "<channel-binding type='tls-exporter'/>"
                                   "</sasl-channel-binding></stream:features>")
        + "</f>")[0]
    offer = Sasl2Offer.from_features(features)
    assert offer is not None
    assert offer.mechanisms == ["PLAIN"] and offer.bind2 and offer.inline_sm
    assert offer.fast_mechanisms == ["HT-SHA-256-EXPR", "HT-SHA-256-NONE"]
    assert "urn:xmpp:carbons:2" in offer.bind2_features
    assert offer.channel_binding_types == ["tls-exporter"]
