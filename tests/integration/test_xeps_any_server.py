"""Issue 17 part 2a on both real servers (Prosody and ejabberd): bookmarks in whichever store
the server offers, entity time and last activity of the server and of a client, and ad-hoc
commands between two simplexmpp accounts routed by the server."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from simplexmpp import Client, JID
from simplexmpp.errors import IqError
from simplexmpp.ext.bookmarks import Bookmark
from simplexmpp.ext.commands import Note
from simplexmpp.ext.forms import Field, Form

from .conftest import Server
from .test_avatar import befriend

_rooms = itertools.count(1)


def test_bookmarks_round_trip(any_server: Server, connect_any: Callable[..., Client]) -> None:
    client = connect_any()
    # Prosody advertises urn:xmpp:bookmarks:1#compat; ejabberd only the older XEP-0411
    # conversion, so XEP-0479 has us use XEP-0048 in private storage there.
    assert client.bookmarks.backend == ("pep" if any_server.kind == "prosody" else "private")
    lobby = JID(f"anybm{os.getpid()}x{next(_rooms)}@{any_server.muc}")
    client.bookmarks.add(lobby, "Lobby", nick="ali", autojoin=True)
    assert client.bookmarks.list() == [Bookmark(lobby, "Lobby", True, "ali")]
    # The other store sees it too where the server keeps them in step (#compat).
    if client.bookmarks.backend == "pep":
        client.bookmarks.prefer = "private"
        assert client.bookmarks.get(lobby) == Bookmark(lobby, "Lobby", True, "ali")
    assert client.bookmarks.remove(lobby)
    assert client.bookmarks.list() == []


def test_time_and_last_activity(any_server: Server,
                                connect_any: Callable[..., Client]) -> None:
    alice, bob = connect_any(), connect_any()
    now = datetime.now(timezone.utc)
    for answer in (alice.time.get(), alice.time.get(bob.jid)):
        assert abs(answer.utc - now) < timedelta(seconds=30)
    assert alice.last_activity.get().seconds >= 0
    # Without a presence subscription a client's idle time stays private: our client
    # refuses (forbidden) on Prosody; ejabberd's mod_last answers for the user's full JIDs
    # itself and refuses first (service-unavailable).
    with pytest.raises(IqError) as refused:
        alice.last_activity.get(bob.jid)
    expected = "forbidden" if any_server.kind == "prosody" else "service-unavailable"
    assert refused.value.condition == expected
    befriend(alice, bob)
    assert alice.last_activity.get(bob.jid).seconds >= 0


def test_commands_between_two_accounts(connect_any: Callable[..., Client]) -> None:
    bot, user = connect_any(), connect_any()

    @bot.commands.command("ask", "Ask", allow="all")
    def ask(request):  # type: ignore[no-untyped-def]
        answer = yield Form(fields=[Field("n", type="text-single")])
        return f"n={answer.value('n')}"

    assert [c.node for c in user.commands.list(bot.jid)] == ["ask"]
    session = user.commands.execute(bot.jid, "ask")
    assert session.complete(n="7").notes == [Note("info", "n=7")]
    assert isinstance(user.commands.list(), list)  # the server's own list, if any
