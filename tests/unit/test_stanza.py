"""Stanza wrappers, ids, stanza errors (RFC 6120 §8), delay and stanza-ids; roster parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplexmpp.errors import InvalidStanzaError, IqError, JIDError, MessageError
from simplexmpp.jid import JID
from simplexmpp.roster import PresenceBook, Roster, item_element, parse_item
from simplexmpp.stanza import (Iq, Message, Presence, format_datetime, new_id, parse_datetime,
                               wrap)
from simplexmpp.xml import StreamParser, tostring

HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams'>")


def received(text: str) -> ET.Element:
    items = StreamParser().feed(HEADER + text.encode())
    element = items[1]
    assert isinstance(element, ET.Element)
    return element


def test_message_accessors_build_and_read() -> None:
    msg = Message(to="Bob@Example.com/pc", body="hi", type="chat", subject="s", thread="t",
                  id="m1")
    assert str(msg) == ('<message to="bob@example.com/pc" type="chat" id="m1"><subject>s'
                        '</subject><body>hi</body><thread>t</thread></message>')
    back = Message(received(str(msg)))
    assert (back.to, back.body, back.type, back.subject, back.thread, back.id) == (
        JID("bob@example.com/pc"), "hi", "chat", "s", "t", "m1")
    assert Message().type == "normal"  # RFC 6121 §5.2.2
    msg.body = None
    assert msg.body is None and "<body" not in str(msg)


def test_presence_accessors() -> None:
    p = Presence(received("<presence from='a@b/c'><show>dnd</show><status>busy</status>"
                          "<priority>-5</priority></presence>"))
    assert p.available and p.show == "dnd" and p.status == "busy" and p.priority == -5
    assert p.from_ == "a@b/c"
    assert not Presence(type="unavailable").available
    assert Presence(received("<presence><priority>junk</priority></presence>")).priority == 0


def test_iq_builders_and_replies() -> None:
    query = ET.Element("{jabber:iq:roster}query")
    iq = Iq.get("example.com", query)
    assert iq.type == "get" and iq.id and iq.payload is query
    reply = Iq(received(f"<iq type='get' id='{iq.id}' from='a@b/c'><query "
                        "xmlns='jabber:iq:roster'/></iq>")).result()
    assert reply.type == "result" and reply.to == "a@b/c" and reply.id == iq.id
    err = Iq(received("<iq type='set' id='x' from='a@b/c'/>")).error_reply("bad-request",
                                                                           "modify", "why")
    text = str(err)
    assert 'type="error"' in text and "<bad-request" in text and "why" in text


def test_error_stanzas_become_typed_errors() -> None:
    iq = Iq(received("<iq type='error' id='1' from='x@y'><error type='cancel' by='y'>"
                     "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                     "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text>"
                     "<app xmlns='urn:example'/></error></iq>"))
    error = iq.error
    assert isinstance(error, IqError)
    assert (error.condition, error.type, error.text, error.by) == (
        "item-not-found", "cancel", "gone", "y")
    assert "item-not-found" in str(error) and "gone" in str(error)
    msg = Message(received("<message type='error' from='x@y'><error type='wait'>"
                           "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                           "</error></message>"))
    assert isinstance(msg.error, MessageError) and msg.error.condition == "resource-constraint"


def test_unknown_or_missing_condition_is_undefined_condition() -> None:
    iq = Iq(received("<iq type='error' id='1'><error type='bogus'><made-up "
                     "xmlns='urn:example'/></error></iq>"))
    assert iq.error is not None and iq.error.condition == "undefined-condition"
    assert Iq(received("<iq type='error' id='1'/>")).error is not None


def test_ids_are_unique_and_unpredictable() -> None:
    ids = {new_id() for _ in range(10000)}
    assert len(ids) == 10000 and all(len(i) >= 16 for i in ids)


def test_wrap_picks_the_class_and_refuses_wrong_tags() -> None:
    assert isinstance(wrap(received("<message/>")), Message)
    assert isinstance(wrap(received("<presence/>")), Presence)
    assert isinstance(wrap(received("<iq type='get' id='1'/>")), Iq)
    assert wrap(ET.Element("{urn:x}other")) is None
    with pytest.raises(InvalidStanzaError):
        Message(ET.Element("{jabber:client}presence"))


def test_bad_jid_in_attribute_is_a_jid_error_before_sending() -> None:
    with pytest.raises(JIDError):
        Message(to="not a jid@@", body="x")


def test_delay_stanza_id_origin_id() -> None:
    msg = Message(received(
        "<message from='a@b/c'><body>x</body><delay xmlns='urn:xmpp:delay' "
        "stamp='2002-09-10T23:08:25Z'/><stanza-id xmlns='urn:xmpp:sid:0' by='me@b' id='S1'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@b' id='S2'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='O1'/></message>"))
    assert msg.delay == datetime(2002, 9, 10, 23, 8, 25, tzinfo=timezone.utc)
    assert msg.stanza_id("me@b") == "S1" and msg.stanza_id("nobody@b") is None
    assert msg.origin_id == "O1"
    assert Message(received("<message/>")).delay is None


@pytest.mark.parametrize("text, expected", [
    ("2002-09-10T23:08:25Z", datetime(2002, 9, 10, 23, 8, 25, tzinfo=timezone.utc)),
    ("2002-09-10T23:08:25.5Z", datetime(2002, 9, 10, 23, 8, 25, 500000, tzinfo=timezone.utc)),
    ("2002-09-10T23:08:25.123456789Z",
     datetime(2002, 9, 10, 23, 8, 25, 123456, tzinfo=timezone.utc)),
    ("2002-09-10T18:08:25-05:00", datetime(2002, 9, 10, 23, 8, 25, tzinfo=timezone.utc)),
])
def test_xep_0082_datetimes(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected
    assert parse_datetime(format_datetime(expected)) == expected


@pytest.mark.parametrize("text", ["", "2002-09-10", "2002-09-10T23:08:25", "yesterday"])
def test_bad_datetimes_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_any_text_body_round_trips_or_is_refused(body: str) -> None:
    msg = Message(to="a@b", body=body)
    try:
        text = tostring(msg.xml)
    except InvalidStanzaError:
        return  # characters XML 1.0 cannot carry
    back = Message(received(text))
    # XML normalises a lone CR only when unescaped; we escape it, so it survives.
    assert back.body == body


# -- roster ------------------------------------------------------------------------------------

def test_roster_query_parsing_and_items() -> None:
    query = received("<iq type='result' id='1'><query xmlns='jabber:iq:roster' ver='v1'>"
                     "<item jid='Bob@Example.com' name='Bob' subscription='both'>"
                     "<group>Friends</group><group>Work</group></item>"
                     "<item jid='carol@example.com' subscription='none' ask='subscribe'/>"
                     "</query></iq>")[0]
    roster = Roster.from_query(query)
    assert roster.version == "v1" and len(roster) == 2
    bob = roster["bob@example.com"]
    assert bob.name == "Bob" and bob.subscription == "both"
    assert set(bob.groups) == {"Friends", "Work"}
    assert roster["carol@example.com"].ask is True
    assert "dave@example.com" not in roster
    assert "<table" in roster._repr_html_()


def test_roster_item_removal_and_building() -> None:
    el = received("<iq><query xmlns='jabber:iq:roster'><item jid='a@b' "
                  "subscription='remove'/></query></iq>")[0][0]
    item, removed = parse_item(el)
    assert removed and item.jid == "a@b"
    built = item_element(JID("a@b"), "A", ("g",))
    assert tostring(built, None).startswith('<query xmlns="jabber:iq:roster"><item jid="a@b"')


def test_presence_book_tracks_resources() -> None:
    book = PresenceBook()
    book.update(Presence(received("<presence from='a@b/one'/>")))
    book.update(Presence(received("<presence from='a@b/two'><show>away</show></presence>")))
    assert set(book.of(JID("a@b"))) == {"one", "two"}
    book.update(Presence(received("<presence from='a@b/one' type='unavailable'/>")))
    assert set(book.of(JID("a@b"))) == {"two"}
    book.clear()
    assert book.of(JID("a@b")) == {}


class _Printer:
    def __init__(self) -> None:
        self.out = ""

    def text(self, text: str) -> None:
        self.out += text


def test_rich_reprs_for_notebooks() -> None:
    msg = Message(received("<message from='a@b/c' to='d@e' type='chat'><body>&lt;hi&gt;</body>"
                           "</message>"))
    html = msg._repr_html_()
    assert "a@b/c" in html and "&lt;hi&gt;" in html and "<hi>" not in html
    printer = _Printer()
    msg._repr_pretty_(printer, False)
    assert printer.out == "a@b/c \u2192 d@e [chat]: <hi>"
    roster = Roster.from_query(received(
        "<iq><query xmlns='jabber:iq:roster'><item jid='x@y' name='X' subscription='to'>"
        "<group>G</group></item></query></iq>")[0])
    printer = _Printer()
    roster._repr_pretty_(printer, False)
    assert printer.out == "x@y (X) [to] G"


# Characters XML can carry, the escaped ones and "]]>" included.
_XML_TEXT = st.text(st.characters(blacklist_categories=("Cs",),
                                  blacklist_characters="\x00\ufffe\uffff"
                                  + "".join(map(chr, range(1, 32)))) | st.sampled_from(
                                      "&<>\"'\r\n\t]"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(resource=_XML_TEXT.filter(lambda r: r.strip() != "" and r == r.strip()),
       body=st.none() | _XML_TEXT, subject=st.none() | _XML_TEXT,
       thread=st.none() | _XML_TEXT,
       type=st.sampled_from(["chat", "normal", "headline", "groupchat"]))
def test_send_message_writes_exactly_what_new_message_serialises_to(
        resource: str, body: str | None, subject: str | None, thread: str | None,
        type: str) -> None:
    # send_message() writes its XML directly instead of building and serialising the element
    # (the hot path); the bytes must be the same.
    import simplexmpp.client as client_module
    from simplexmpp import Client
    try:
        to = JID("bob@localhost/" + resource)
    except JIDError:
        return
    client = Client("alice@localhost", "secret")
    sent: list[tuple[str, object]] = []
    client._send_text = (  # type: ignore[method-assign]
        lambda text, timeout, element=None: sent.append((text, element)))
    original = client_module.new_id
    client_module.new_id = lambda: "fixed-id"  # type: ignore[assignment]
    try:
        assert client.send_message(to, body, type, subject=subject, thread=thread) == \
            "fixed-id"
        expected = tostring(client.new_message(to, body, type, subject=subject,
                                               thread=thread).xml)
    finally:
        client_module.new_id = original
    assert sent == [(expected, None)]  # written directly: no element


def test_send_message_checks_what_new_message_checks() -> None:
    from simplexmpp import Client
    client = Client("alice@localhost", "secret")
    with pytest.raises(ValueError):
        client.send_message("bob@localhost", "hi", "error")
    with pytest.raises(InvalidStanzaError):
        client.send_message("bob@localhost", "bell \x07")
    with pytest.raises(JIDError):
        client.send_message("@localhost", "hi")
