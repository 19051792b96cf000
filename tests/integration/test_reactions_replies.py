"""XEP-0444 reactions, XEP-0461 replies, XEP-0424 retraction, XEP-0428 fallbacks and XEP-0393
styling between two simplexmpp accounts and in a room on the real Prosody."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

from simplexmpp import JID, Client, Message
from simplexmpp.ext.retraction import FALLBACK_BODY, MessageRetraction
from simplexmpp.stanza import REPLY_NS, RETRACT_NS
from simplexmpp.styling import STRONG

from .conftest import Server

WAIT = 15
_rooms = itertools.count(1)


def room_jid(server: Server) -> str:
    return f"replies{os.getpid()}x{next(_rooms)}@{server.muc}"


def next_with(client: Client, what: Callable[[Message], object]) -> Message:
    """The next inbox message for which `what` is true (the others are skipped)."""
    while True:
        msg = client.next_message(timeout=WAIT)
        if what(msg):
            return msg


def test_reaction_reply_and_retraction_between_two_accounts(
        connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    first = alice.send_message(bob.jid, "We should bake a *cake*")
    got = next_with(bob, lambda m: m.body is not None)
    assert got.id == first and [s.text for s in got.styling if STRONG in s.styles] == \
        ["*", "cake", "*"]

    bob.reactions.react(got, ["👍", "🎂", "👍"])
    reaction = next_with(alice, lambda m: m.reactions is not None)
    assert reaction.reactions is not None and reaction.reactions.id == first
    assert reaction.reactions.emojis == ("👍", "🎂") and reaction.body is None
    bob.reactions.react(got, [])                       # all reactions taken back
    cleared = next_with(alice, lambda m: m.reactions is not None)
    assert cleared.reactions is not None and cleared.reactions.emojis == ()

    bob.replies.reply(got, "Great idea!")
    answer = next_with(alice, lambda m: m.reply_to is not None)
    assert answer.reply_to is not None and answer.reply_to.id == first
    assert answer.reply_to.to == alice.jid
    assert answer.body == "> We should bake a *cake*\nGreat idea!"   # the fallback quote
    assert answer.body_without_fallback(REPLY_NS) == "Great idea!"
    assert [s.text for s in answer.styling] == ["Great idea!"]          # quote not styled

    oops = alice.send_message(bob.jid, "wrong window")
    original = next_with(bob, lambda m: m.body == "wrong window")
    alice.retraction.retract(bob.jid, oops)
    retraction = next_with(bob, lambda m: m.retraction is not None)
    assert retraction.retraction is not None and retraction.retraction.id == oops
    assert retraction.body == FALLBACK_BODY
    assert retraction.body_without_fallback(RETRACT_NS) == ""
    assert MessageRetraction.applies_to(original, retraction)
    # bob cannot retract alice's message (XEP-0424 §6): a copy of the retraction from bob
    bob.retraction.retract(alice.jid, oops)
    forged = next_with(alice, lambda m: m.retraction is not None)
    assert not MessageRetraction.applies_to(original, forged)


def test_reactions_replies_and_retraction_in_a_room_use_the_rooms_stanza_id(
        connect: Callable[..., Client], server: Server) -> None:
    alice, bob = connect(), connect()
    jid = room_jid(server)
    a_room = alice.muc.join(jid, "alice")
    b_room = bob.muc.join(jid, "bob")
    a_room.send("room news")
    news = b_room.next_message(timeout=WAIT)
    reflected = a_room.next_message(timeout=WAIT)
    room_id = news.stanza_id(JID(jid))
    assert room_id and room_id == reflected.stanza_id(JID(jid)) and room_id != news.id

    bob.reactions.react(news, ["🎉"])
    reaction = next(m for m in a_room.messages(timeout=WAIT) if m.reactions is not None)
    assert reaction.reactions is not None and reaction.reactions.id == room_id
    assert reaction.reactions.emojis == ("🎉",)
    assert reaction.from_ == JID(jid).with_resource("bob")   # who reacted: the occupant

    bob.replies.reply(news, "noted")
    answer = next(m for m in a_room.messages(timeout=WAIT) if m.reply_to is not None)
    assert answer.reply_to is not None and answer.reply_to.id == room_id
    assert answer.reply_to.to == JID(jid).with_resource("alice")
    assert answer.body_without_fallback(REPLY_NS) == "noted"

    alice.retraction.retract_in_room(reflected)
    retraction = next(m for m in b_room.messages(timeout=WAIT) if m.retraction is not None)
    assert retraction.retraction is not None and retraction.retraction.id == room_id
    assert MessageRetraction.applies_to(news, retraction)
    # a retraction by another occupant does not apply to alice's message
    b_room.send("spoiler")  # noise in between
    bob.retraction.retract(JID(jid), room_id, "groupchat")
    forged = next(m for m in b_room.messages(timeout=WAIT) if m.retraction is not None)
    assert not MessageRetraction.applies_to(news, forged)
