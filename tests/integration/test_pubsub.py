"""XEP-0060 Publish-Subscribe against the real Prosody.

Prosody 0.12 here has no pubsub component (checked with disco in the first test), so the
XEP-0060 operations run against an account's own PEP service (XEP-0163), which speaks the
same protocol.
"""

from __future__ import annotations

import queue
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from simplexmpp import Client
from simplexmpp.ext.forms import Form
from simplexmpp.ext.pubsub import Item, PubSubError
from simplexmpp.jid import JID

from .conftest import Server

WAIT = 20.0
NS = "urn:example:simplexmpp:test"


def entry(text: str) -> ET.Element:
    element = ET.Element("{%s}entry" % NS)
    element.text = text
    return element


def texts(items: list[Item]) -> list[str | None]:
    return [item.payload.text if item.payload is not None else None for item in items]


def test_the_server_offers_pep_but_no_pubsub_component(server: Server,
                                                       connect: Callable[..., Client]) -> None:
    alice = connect()
    # No pubsub component (find() skips items that do not answer, like the unconnected
    # echo component), hence the tests below use the account's PEP service.
    assert alice.disco.find("pubsub", "service") == []
    own = alice.disco.info(alice.account.bare)
    assert own.has_identity("pubsub", "pep")
    assert "http://jabber.org/protocol/pubsub#publish" in own.features


def test_create_configure_publish_items_retract_delete(connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    service = alice.account.bare
    node = "urn:example:simplexmpp:news"
    assert alice.pubsub.create(service, node, {"pubsub#max_items": "10",
                                              "pubsub#title": "News"}) == node
    config = alice.pubsub.get_configuration(service, node)
    assert isinstance(config, Form)
    assert config.value("pubsub#max_items") == "10"
    assert config.value("pubsub#title") == "News"
    alice.pubsub.set_configuration(service, node, {"pubsub#title": "Headlines"})
    assert alice.pubsub.get_configuration(service, node).value("pubsub#title") == "Headlines"

    assert alice.pubsub.publish(service, node, entry("one"), id="first") == "first"
    generated = alice.pubsub.publish(service, node, entry("two"))
    assert generated and generated != "first"
    alice.pubsub.publish(service, node, entry("three"), id="third")

    every = alice.pubsub.items(service, node)
    assert sorted(texts(every)) == ["one", "three", "two"]
    assert {item.id for item in every} == {"first", generated, "third"}
    assert all(item.payload is not None and item.payload.tag == "{%s}entry" % NS
               for item in every)
    assert len(alice.pubsub.items(service, node, max_items=2)) == 2
    picked = alice.pubsub.items(service, node, item_ids=["third"])
    assert [(i.id, i.payload.text if i.payload is not None else None)
            for i in picked] == [("third", "three")]

    alice.pubsub.retract(service, node, "first")
    assert {item.id for item in alice.pubsub.items(service, node)} == {generated, "third"}

    with pytest.raises(PubSubError) as exists:
        alice.pubsub.create(service, node)
    assert exists.value.condition == "conflict"

    alice.pubsub.purge(service, node)
    assert alice.pubsub.items(service, node) == []
    alice.pubsub.delete(service, node)
    with pytest.raises(PubSubError) as gone:
        alice.pubsub.items(service, node)
    assert gone.value.condition == "item-not-found"


def test_service_none_means_our_own_account(connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    alice.pubsub.publish(None, "urn:example:simplexmpp:own", entry("mine"), id="x")
    assert texts(alice.pubsub.items(alice.account.bare, "urn:example:simplexmpp:own")) == \
        ["mine"]
    assert texts(alice.pep.items(None, "urn:example:simplexmpp:own")) == ["mine"]


def test_publish_options_precondition_not_met_is_a_typed_error(
        connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    node = "urn:example:simplexmpp:pre"
    alice.pep.publish(node, entry("open"), options={"pubsub#access_model": "open"})
    with pytest.raises(PubSubError) as refused:
        alice.pep.publish(node, entry("x"), options={"pubsub#access_model": "whitelist"})
    assert refused.value.condition == "conflict"
    assert refused.value.pubsub_condition == "precondition-not-met"
    assert "precondition-not-met" in str(refused.value)


def test_others_cannot_publish_or_configure(connect_any: Callable[..., Client]) -> None:
    alice, mallory = connect_any(), connect_any()
    node = "urn:example:simplexmpp:owned"
    alice.pep.publish(node, entry("x"), options={"pubsub#access_model": "open"})
    with pytest.raises(PubSubError) as publish:
        mallory.pubsub.publish(alice.account.bare, node, entry("evil"), id="e")
    assert publish.value.condition in ("forbidden", "not-authorized")
    with pytest.raises(PubSubError) as configure:
        mallory.pubsub.get_configuration(alice.account.bare, node)
    assert configure.value.condition in ("forbidden", "not-authorized")
    assert texts(mallory.pubsub.items(alice.account.bare, node)) == ["x"]


def test_subscriber_gets_notifications_not_chat_messages(
        connect_any: Callable[..., Client], any_server: Server) -> None:
    alice, bob = connect_any(), connect_any()
    node = "urn:example:simplexmpp:feed"
    alice.pubsub.create(None, node, {"pubsub#access_model": "open",
                                     "pubsub#max_items": "10"})
    events: queue.Queue[tuple[JID, str, list[Item], list[str]]] = queue.Queue()
    changes: queue.Queue[tuple[JID, str, str]] = queue.Queue()
    bob.on("pubsub_event", lambda *args: events.put(args))
    bob.on("pubsub_node_changed", lambda *args: changes.put(args))
    bob.send_presence()  # notifications go to the bare JID: be available to receive them
    sub = bob.pubsub.subscribe(alice.account.bare, node)
    assert sub.subscription == "subscribed" and sub.node == node
    assert JID(sub.jid) == bob.account.bare

    alice.pubsub.publish(None, node, entry("hello"), id="h1")
    service, got_node, items, retracted = events.get(timeout=WAIT)
    assert (service, got_node, retracted) == (alice.account.bare, node, [])
    assert [(i.id, i.payload.text if i.payload is not None else None)
            for i in items] == [("h1", "hello")]

    alice.pubsub.retract(None, node, "h1")
    service, got_node, items, retracted = events.get(timeout=WAIT)
    assert (service, got_node, items, retracted) == (alice.account.bare, node, [], ["h1"])

    alice.pubsub.delete(None, node)
    if any_server.kind == "prosody":  # ejabberd 23.01 sends subscribers no delete notice
        assert changes.get(timeout=WAIT) == (alice.account.bare, node, "delete")

    # None of the notifications reached the inbox: the next message there is this one.
    alice.send_message(bob.account.bare, "plain chat")
    assert bob.next_message(timeout=WAIT).body == "plain chat"


def test_unsubscribe_then_again_is_an_error(connect_any: Callable[..., Client]) -> None:
    alice, bob = connect_any(), connect_any()
    node = "urn:example:simplexmpp:unsub"
    alice.pubsub.create(None, node, {"pubsub#access_model": "open"})
    bob.pubsub.subscribe(alice.account.bare, node)
    bob.pubsub.unsubscribe(alice.account.bare, node)
    with pytest.raises(PubSubError) as again:
        bob.pubsub.unsubscribe(alice.account.bare, node)
    assert again.value.condition == "unexpected-request"
    assert again.value.pubsub_condition == "not-subscribed"


def test_bad_arguments_are_refused_before_sending(connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    with pytest.raises(ValueError):
        alice.pubsub.publish(None, "", entry("x"))
    with pytest.raises(TypeError):
        alice.pubsub.publish(None, "n", "not an element")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        alice.pubsub.items(None, "n", max_items=0)
    with pytest.raises(TypeError):
        alice.pubsub.items(None, "n", item_ids="abc")
