"""Pubsub/PEP/avatar parsing without a server: events, errors, metadata, interception."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from simplexmpp import Client
from simplexmpp.errors import IqError
from simplexmpp.ext.avatar import AvatarInfo, _infos
from simplexmpp.ext.pubsub import EVENT_NS, Item, PubSubError, parse_event
from simplexmpp.stanza import Iq, Message
from simplexmpp.xml import StreamParser

HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams'>")


def received(text: str) -> ET.Element:
    element = StreamParser().feed(HEADER + text.encode())[1]
    assert isinstance(element, ET.Element)
    return element


def test_items_event_with_publish_and_retract() -> None:
    msg = received(
        "<message from='alice@localhost' to='bob@localhost'>"
        f"<event xmlns='{EVENT_NS}'><items node='urn:n'>"
        "<item id='1' publisher='alice@localhost'><entry xmlns='urn:x'>hi</entry></item>"
        "<item id='2'/><retract id='0'/></items></event></message>")
    event = msg.find("{%s}event" % EVENT_NS)
    assert event is not None
    node, kind, items, retracted = parse_event(event)
    assert (node, kind, retracted) == ("urn:n", "items", ["0"])
    assert [(i.id, i.publisher) for i in items] == [("1", "alice@localhost"), ("2", None)]
    assert items[0].payload is not None and items[0].payload.tag == "{urn:x}entry"
    assert items[1].payload is None


def test_delete_and_unknown_events() -> None:
    delete = ET.fromstring(f"<event xmlns='{EVENT_NS}'><delete node='n'/></event>")
    assert parse_event(delete) == ("n", "delete", [], [])
    assert parse_event(ET.fromstring(f"<event xmlns='{EVENT_NS}'/>")) == \
        (None, "unknown", [], [])
    other = ET.fromstring(f"<event xmlns='{EVENT_NS}'><x xmlns='urn:other'/></event>")
    assert parse_event(other)[1] == "unknown"


def test_pubsub_error_reads_the_application_condition() -> None:
    iq = Iq(received(
        "<iq type='error' id='1' from='pubsub.localhost'><error type='cancel'>"
        "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='purge-nodes'/>"
        "</error></iq>"))
    base = iq.error
    assert isinstance(base, IqError)
    err = PubSubError.from_iq_error(base)
    assert isinstance(err, IqError)
    assert err.condition == "feature-not-implemented" and err.type == "cancel"
    assert err.pubsub_condition == "unsupported" and err.feature == "purge-nodes"
    assert "unsupported purge-nodes" in str(err)
    plain = PubSubError.from_iq_error(IqError("item-not-found"))
    assert plain.pubsub_condition is None and plain.feature is None


def test_event_messages_are_claimed_others_are_not() -> None:
    client = Client("bob@localhost", "pw")
    event = Message(received(
        f"<message from='alice@localhost'><event xmlns='{EVENT_NS}'>"
        "<items node='n'/></event></message>"))
    chat = Message(received("<message from='alice@localhost'><body>hi</body></message>"))
    error = Message(received(f"<message type='error' from='x@localhost'><event xmlns='{EVENT_NS}'/>"
                             "<error type='cancel'/></message>"))
    assert client.pubsub._intercept(event) is True
    assert client.pubsub._intercept(chat) is False
    assert client.pubsub._intercept(error) is False


def test_avatar_metadata_parsing() -> None:
    meta = ET.fromstring(
        "<metadata xmlns='urn:xmpp:avatar:metadata'>"
        "<info id='ABC' type='image/png' bytes='12' width='64' height='x'/>"
        "<info id='def' type='image/gif' bytes='7' url='https://example.org/a.gif'/>"
        "</metadata>")
    infos = _infos([Item("abc", meta)])
    assert infos == [AvatarInfo("abc", "image/png", 12, 64, None, None),
                     AvatarInfo("def", "image/gif", 7, None, None,
                                "https://example.org/a.gif")]
    disabled = ET.fromstring("<metadata xmlns='urn:xmpp:avatar:metadata'/>")
    assert _infos([Item("", disabled)]) == []
    assert _infos([Item("x", ET.fromstring("<other xmlns='urn:x'/>"))]) is None
    assert _infos([]) is None


def test_notify_nodes_follow_local_features() -> None:
    client = Client("bob@localhost", "pw")
    client.pep.subscribe_notify("urn:n")  # not connected: no presence to re-send
    assert "urn:n+notify" in client.local_features
    assert client.pep.notify_nodes == {"urn:n"}
    client.pep.unsubscribe_notify("urn:n")
    assert client.pep.notify_nodes == set()
