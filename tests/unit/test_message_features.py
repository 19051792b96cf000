"""Parsing XEP-0444 reactions, XEP-0461 replies, XEP-0424 retractions and XEP-0428 fallbacks on
received messages, including malformed ones (ignored, never raised from an accessor)."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring

import pytest

from simplexmpp import JID, Message
from simplexmpp.ext.reactions import reference
from simplexmpp.ext.replies import quote
from simplexmpp.ext.retraction import MessageRetraction
from simplexmpp.stanza import RETRACT_NS, REPLY_NS, Fallback, Reactions, Reply, Retraction


def message(inner: str, **attrs: str) -> Message:
    attributes = "".join(f" {k.rstrip('_')}='{v}'" for k, v in attrs.items())
    return Message(fromstring(f"<message xmlns='jabber:client'{attributes}>{inner}</message>"))


def test_reactions_are_parsed_in_order_without_repeats() -> None:
    msg = message("<reactions xmlns='urn:xmpp:reactions:0' id='744f'>"
                  "<reaction>👋</reaction><reaction>🐢</reaction><reaction>👋</reaction>"
                  "<reaction/></reactions>")
    assert msg.reactions == Reactions("744f", ("👋", "🐢"))
    assert message("<reactions xmlns='urn:xmpp:reactions:0' id='x'/>").reactions == \
        Reactions("x", ())
    assert message("<reactions xmlns='urn:xmpp:reactions:0'/>").reactions is None  # no id
    assert message("<body>hi</body>").reactions is None


def test_reply_with_a_malformed_author_keeps_the_id() -> None:
    msg = message("<reply xmlns='urn:xmpp:reply:0' id='m1' to='anna@example.com/tablet'/>")
    assert msg.reply_to == Reply("m1", JID("anna@example.com/tablet"))
    assert message("<reply xmlns='urn:xmpp:reply:0' id='m1' to='@@bad'/>").reply_to == \
        Reply("m1", None)
    assert message("<reply xmlns='urn:xmpp:reply:0'/>").reply_to is None


def test_retraction_version_1_0_and_moderated() -> None:
    assert message("<retract xmlns='urn:xmpp:message-retract:1' id='o1'/>").retraction == \
        Retraction("o1")
    v0 = message("<apply-to xmlns='urn:xmpp:fasten:0' id='o0'>"
                 "<retract xmlns='urn:xmpp:message-retract:0'/></apply-to>")
    assert v0.retraction == Retraction("o0")
    moderated = message("<retract xmlns='urn:xmpp:message-retract:1' id='s1'>"
                        "<moderated xmlns='urn:xmpp:message-moderate:1' by='r@muc/mod'/>"
                        "<reason>spam</reason></retract>")
    assert moderated.retraction == Retraction("s1", JID("r@muc/mod"), "spam")


def test_fallback_ranges_and_body_without_fallback() -> None:
    msg = message("<body>&gt; quoted\nanswer</body>"
                  "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>"
                  "<body start='0' end='9'/></fallback>"
                  "<fallback xmlns='urn:xmpp:fallback:0' for='urn:example:other'>"
                  "<body start='9' end='99'/><body start='x' end='1'/></fallback>")
    assert msg.fallbacks == [Fallback(REPLY_NS, ((0, 9),), False),
                             Fallback("urn:example:other", (), False)]  # bad ranges ignored
    assert msg.body_without_fallback(REPLY_NS) == "answer"
    assert msg.body_without_fallback("urn:none") == "> quoted\nanswer"
    whole = message("<body>/me retracted</body>"
                    f"<fallback xmlns='urn:xmpp:fallback:0' for='{RETRACT_NS}'/>")
    assert whole.fallbacks == [Fallback(RETRACT_NS, (), True)]
    assert whole.body_without_fallback() == ""
    assert message("<fallback xmlns='urn:xmpp:fallback:0'/>").body_without_fallback() is None


def test_offsets_count_code_points() -> None:
    msg = message("<body>&gt; 🎂\nyes</body><fallback xmlns='urn:xmpp:fallback:0' "
                  "for='urn:xmpp:reply:0'><body start='0' end='4'/></fallback>")
    assert msg.body_without_fallback() == "yes"


def test_reference_of_chat_and_room_messages() -> None:
    chat = message("<body>x</body>", from_="a@x/p", id="m1", type="chat")
    assert reference(chat) == (JID("a@x/p"), "m1", "chat")
    room = message("<body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='r@muc' id='s9'/>"
                   "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@x' id='forged'/>",
                   from_="r@muc/nick", id="m2", type="groupchat")
    assert reference(room) == (JID("r@muc"), "s9", "groupchat")
    with pytest.raises(ValueError, match="no stanza-id"):
        reference(message("<body>x</body>", from_="r@muc/nick", id="m", type="groupchat"))
    with pytest.raises(ValueError, match="no sender"):
        reference(message("<body>x</body>", id="m"))


def test_quote_prefixes_every_line() -> None:
    assert quote("a\nb") == "> a\n> b\n"


def test_retraction_in_a_room_is_matched_by_occupant_id() -> None:
    sid = "<stanza-id xmlns='urn:xmpp:sid:0' by='r@muc' id='s1'/>"
    original = message(f"<body>x</body>{sid}<occupant-id xmlns='urn:xmpp:occupant-id:0' "
                       "id='occ-a'/>", from_="r@muc/alice", type="groupchat")
    retract = "<retract xmlns='urn:xmpp:message-retract:1' id='s1'/>"
    # same occupant id under a new nick: applies; another occupant id under the same nick: not
    renamed = message(f"{retract}<occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ-a'/>",
                      from_="r@muc/alice2", type="groupchat")
    impostor = message(f"{retract}<occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ-b'/>",
                       from_="r@muc/alice", type="groupchat")
    assert MessageRetraction.applies_to(original, renamed)
    assert not MessageRetraction.applies_to(original, impostor)


def test_reply_is_still_the_method_that_builds_an_answer() -> None:
    # the XEP-0461 accessor is reply_to: Stanza.reply() keeps building answer stanzas
    msg = message("<body>x</body><reply xmlns='urn:xmpp:reply:0' id='m1'/>",
                  from_="a@x/p", to="b@x/q", id="i1", type="chat")
    answer = msg.reply()
    assert isinstance(answer, Message) and answer.to == JID("a@x/p") and msg.reply_to is not None
