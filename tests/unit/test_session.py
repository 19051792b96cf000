"""The sans-IO session layer (simplexmpp.session): stanzas and times in, decisions out. No
socket, no thread, no clock: every time is a number the test chooses."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from simplexmpp.errors import ConnectionError, StreamError
from simplexmpp.jid import JID
from simplexmpp.session import SessionCore, from_own_account
from simplexmpp.stanza import Iq
from simplexmpp.stream import ClientStream, Ready
from simplexmpp.xml import StreamParser

ACCOUNT = JID("bob@localhost/phone")
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='b1' "
          b"version='1.0' xml:lang='en'>")


def stanza(xml: str) -> ET.Element:
    """One stanza as the stream hands it over (jabber:client namespace)."""
    parser = StreamParser()
    events = parser.feed(b"<stream:stream xmlns='jabber:client' "
                         b"xmlns:stream='http://etherx.jabber.org/streams'>" + xml.encode())
    element = events[-1]
    assert isinstance(element, ET.Element)
    return element


def iq(xml: str) -> Iq:
    return Iq(stanza(xml))


@pytest.fixture
def core() -> SessionCore[str]:
    return SessionCore(ACCOUNT, keepalive=60.0, timeout=30.0, ack_delay=0.05, ack_every=4)


# ----------------------------------------------------------------------------------------
# Replies and who may send them (RFC 6120 §8.1.2.1)

def test_a_reply_from_the_entity_asked_resolves_the_request(core: SessionCore[str]) -> None:
    core.expect_reply("q1", "carol@localhost/pc", "waiter-1")
    route = core.route_iq(iq("<iq type='result' id='q1' from='Carol@LOCALHOST/pc'/>"))
    assert route.kind == "reply" and route.waiter == "waiter-1"
    assert core.pending == {}


def test_a_reply_from_anyone_else_is_ignored_and_the_request_still_waits(
        core: SessionCore[str]) -> None:
    core.expect_reply("q1", "carol@localhost/pc", "waiter-1")
    for sender in ("mallory@localhost/pc", "carol@localhost/other", "localhost", None):
        attr = f" from='{sender}'" if sender else ""
        route = core.route_iq(iq(f"<iq type='result' id='q1'{attr}/>"))
        assert route.kind == "ignore", sender
    assert list(core.pending) == ["q1"]
    assert core.forget("q1") == "waiter-1" and core.pending == {}


def test_a_request_to_our_account_is_answered_by_the_server_on_its_behalf(
        core: SessionCore[str]) -> None:
    ok = [None, "bob@localhost", "BOB@localhost/laptop", "localhost"]
    for n, sender in enumerate(ok):
        core.expect_reply(f"q{n}", None if n % 2 else "bob@localhost", f"w{n}")
        attr = f" from='{sender}'" if sender else ""
        route = core.route_iq(iq(f"<iq type='error' id='q{n}'{attr}/>"))
        assert route.kind == "reply" and route.waiter == f"w{n}", sender
    core.expect_reply("q9", None, "w9")
    assert core.route_iq(iq("<iq type='result' id='q9' from='other.localhost'/>")).kind \
        == "ignore"
    assert core.take_pending() == ["w9"] and core.pending == {}


def test_requests_go_to_the_handlers_and_typeless_iqs_are_ignored(
        core: SessionCore[str]) -> None:
    assert core.route_iq(iq("<iq type='get' id='r1' from='carol@localhost/pc'>"
                            "<query xmlns='urn:example'/></iq>")).kind == "request"
    assert core.route_iq(iq("<iq type='bogus' id='r2'/>")).kind == "ignore"


# ----------------------------------------------------------------------------------------
# Roster pushes and the own-account rule (RFC 6121 §2.1.6)

PUSH = ("<iq type='set' id='p1'{attr}><query xmlns='jabber:iq:roster' ver='v2'>"
        "<item jid='carol@localhost' name='Carol' subscription='both'/></query></iq>")


@pytest.mark.parametrize("sender", [None, "bob@localhost", "BOB@LOCALHOST"])
def test_a_roster_push_from_the_server_changes_the_roster(core: SessionCore[str],
                                                          sender: str | None) -> None:
    before = core.roster
    route = core.route_iq(iq(PUSH.format(attr=f" from='{sender}'" if sender else "")))
    assert route.kind == "roster" and route.item is not None and not route.removed
    assert route.reply is not None and route.reply.type == "result"
    assert core.roster is not before and core.roster.version == "v2"
    assert core.roster[JID("carol@localhost")].name == "Carol"
    assert len(before) == 0  # readers of the old roster never see it change


@pytest.mark.parametrize("sender", ["bob@localhost/laptop", "localhost", "eve@localhost"])
def test_a_roster_push_from_anyone_but_our_bare_jid_is_refused(core: SessionCore[str],
                                                               sender: str) -> None:
    route = core.route_iq(iq(PUSH.format(attr=f" from='{sender}'")))
    assert route.kind == "answer" and route.reply is not None
    assert route.reply.error is not None and \
        route.reply.error.condition == "service-unavailable"
    assert len(core.roster) == 0


def test_a_push_with_two_items_is_a_bad_request(core: SessionCore[str]) -> None:
    route = core.route_iq(iq("<iq type='set' id='p2'><query xmlns='jabber:iq:roster'>"
                             "<item jid='a@localhost'/><item jid='b@localhost'/></query></iq>"))
    assert route.kind == "answer" and route.reply is not None
    assert route.reply.error is not None and route.reply.error.condition == "bad-request"


def test_without_roster_pushes_a_roster_set_is_an_ordinary_request() -> None:
    component = SessionCore[str](JID("echo.localhost"), roster_pushes=False)
    assert component.route_iq(iq(PUSH.format(attr=""))).kind == "request"


def test_from_own_account() -> None:
    assert from_own_account(None, ACCOUNT)
    assert from_own_account("bob@localhost", ACCOUNT)
    assert from_own_account("Bob@Localhost", ACCOUNT)
    assert not from_own_account("bob@localhost/laptop", ACCOUNT)
    assert not from_own_account("localhost", ACCOUNT)
    assert not from_own_account("bob@@bad", ACCOUNT)


# ----------------------------------------------------------------------------------------
# Addresses (RFC 7622, RFC 6120 §8.3.3.8)

def test_a_malformed_address_is_dropped_and_a_request_answered_jid_malformed(
        core: SessionCore[str]) -> None:
    bad, reply = core.misaddressed(stanza("<iq type='get' id='x1' from='a@b@c'/>"))
    assert bad and reply is not None and reply.get("to") == "a@b@c"
    assert reply.find("{jabber:client}error") is not None
    bad, reply = core.misaddressed(stanza("<message from='a@b@c'/>"))
    assert bad and reply is None
    assert core.misaddressed(stanza("<message from='alice@localhost/x' to=''/>")) == \
        (False, None)
    assert "alice@localhost/x" in core.valid_addresses


# ----------------------------------------------------------------------------------------
# XEP-0359 duplicate window

def message(n: int, sender: str = "alice@localhost/laptop", extra: str = "") -> ET.Element:
    return stanza(f"<message from='{sender}' type='chat' id='m{n}'><body>{n}</body>"
                  f"<origin-id xmlns='urn:xmpp:sid:0' id='o{n}'/>{extra}</message>")


def test_the_window_knows_a_message_by_sender_and_origin_id(core: SessionCore[str]) -> None:
    def dup(element: ET.Element) -> bool:
        return core.is_duplicate(element, element.find("{urn:xmpp:sid:0}origin-id"))

    assert not dup(message(1))
    assert dup(message(1, sender="ALICE@localhost/phone"))
    assert not dup(message(1, sender="carol@localhost/pc"))
    ours = "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='A7'/>"
    assert not dup(message(2, extra=ours)) and core.last_stanza_id == "A7"
    assert core.duplicates_dropped == 1
    core.duplicate_window = 1
    assert not core.remember("k")
    assert list(core.seen_order) == ["k"] and core.seen_ids == {"k"}


# ----------------------------------------------------------------------------------------
# The clock: XEP-0198 acknowledgements, keepalive, slow stanzas

def sm_ready_core(keepalive: float = 60.0, sm: bool = True
                  ) -> tuple[SessionCore[str], ClientStream]:
    stream = ClientStream(ACCOUNT, "password", resource="phone", sm=sm)
    stream.start()

    def server(data: bytes) -> list[object]:
        events = list(stream.receive_data(data))
        stream.data_to_send()
        return events

    server(HEADER + b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                    b"<required/></starttls></stream:features>")
    server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    stream.tls_established({})
    stream.data_to_send()
    server(HEADER + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>")
    server(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    server(HEADER + b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                    b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>")
    events = server(b"<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    b"<jid>bob@localhost/phone</jid></bind></iq>"
                    % str(getattr(stream.negotiator, "pending_id")).encode())
    if sm:
        events = server(b"<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")
    assert any(isinstance(e, Ready) for e in events)
    core = SessionCore[str](ACCOUNT, keepalive=keepalive, timeout=30.0, ack_delay=0.05,
                            ack_every=4)
    core.connection_made(stream, 1000.0)
    return core, stream


def test_an_idle_connection_sleeps_until_its_keepalive_then_pings() -> None:
    core, stream = sm_ready_core(keepalive=60.0, sm=False)
    assert core.next_deadline(1000.0) == pytest.approx(1060.0)
    assert not core.handle_timer(1030.0) and stream.data_to_send() == b""
    assert core.handle_timer(1060.5)
    assert b"urn:xmpp:ping" in stream.data_to_send()
    # Unanswered within min(timeout, keepalive): the connection is dead.
    assert core.next_deadline(1061.0) == pytest.approx(1090.5)
    with pytest.raises(ConnectionError):
        core.handle_timer(1091.0)


def test_any_data_received_answers_the_keepalive() -> None:
    core, stream = sm_ready_core(keepalive=60.0, sm=False)
    assert core.handle_timer(1061.0)
    stream.data_to_send()
    core.data_received(1062.0)
    assert not core.handle_timer(1100.0)  # no error: the server spoke
    assert core.next_deadline(1100.0) == pytest.approx(1122.0)


def test_unacknowledged_stanzas_ask_for_an_ack_one_request_at_a_time() -> None:
    core, stream = sm_ready_core()
    stream.send(stanza("<message to='alice@localhost' id='s1'><body>x</body></message>"))
    stream.data_to_send()
    core.data_sent(1000.0)
    assert core.next_deadline(1000.0) == pytest.approx(1001.0)
    assert not core.handle_timer(1000.5)      # sent only just now
    assert core.handle_timer(1001.5)
    assert stream.data_to_send() == b'<r xmlns="urn:xmpp:sm:3"/>'
    assert not core.handle_timer(1010.0)      # one <r/> is still unanswered
    assert not core.request_ack()
    core.ack_received()
    assert core.request_ack() and stream.data_to_send() == b'<r xmlns="urn:xmpp:sm:3"/>'
    assert list(core.unacked_ids()) == ["s1"]


def test_a_burst_asks_for_an_ack_after_ack_every_stanzas() -> None:
    core, stream = sm_ready_core()
    for n in range(4):
        stream.send(stanza(f"<message to='alice@localhost' id='s{n}'/>"))
    stream.data_to_send()
    core.data_sent(1000.0)
    assert core.handle_timer(1000.0)  # ack_every=4 reached: no need to wait a second
    assert stream.data_to_send() == b'<r xmlns="urn:xmpp:sm:3"/>'


def test_an_ack_the_server_asked_for_waits_ack_delay_for_company() -> None:
    core, stream = sm_ready_core()
    stream.receive_data(b"<r xmlns='urn:xmpp:sm:3'/>")
    assert stream.ack_pending
    assert not core.handle_timer(1000.0)           # starts the ack's clock
    assert core.next_deadline(1000.0) == pytest.approx(1000.05)
    assert not core.handle_timer(1000.01)
    assert core.handle_timer(1000.06)
    assert stream.data_to_send() == b'<a xmlns="urn:xmpp:sm:3" h="0"/>'


def test_one_stanza_trickled_for_longer_than_the_timeout_is_a_policy_violation() -> None:
    core, stream = sm_ready_core()
    stream.receive_data(b"<message from='alice@localhost/x'><body>slow")
    assert stream.in_stanza
    assert core.next_deadline(1000.0) == pytest.approx(1001.0)  # checked every second
    core.handle_timer(1000.0)
    stream.receive_data(b" still")
    core.handle_timer(1020.0)   # no element completed: the same stanza's clock runs on
    with pytest.raises(StreamError) as info:
        core.handle_timer(1031.0)
    assert info.value.condition == "policy-violation"


def test_steady_traffic_ending_inside_a_stanza_is_not_a_slow_stanza() -> None:
    core, stream = sm_ready_core()
    for n in range(5):
        stream.receive_data(b"<message from='alice@localhost/x'/><message><body>"
                            if n == 0 else b"</body></message><message><body>")
        core.handle_timer(1000.0 + 20 * n)  # an element completed since the last check
    assert stream.in_stanza


@pytest.mark.parametrize("module", ["session", "stream", "stanza", "xml", "jid", "sasl", "sasl2",
                                    "errors", "serverstream"])
def test_the_sans_io_layers_import_no_socket_ssl_or_threads(module: str) -> None:
    import ast
    import importlib

    source = importlib.import_module(f"simplexmpp.{module}").__file__
    assert source is not None
    with open(source, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "ssl", "threading", "selectors", "asyncio"}
