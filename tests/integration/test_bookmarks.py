"""XEP-0402 bookmarks (and the XEP-0048/0049 fallback) and MUC autojoin against the real
Prosody, whose mod_bookmarks advertises urn:xmpp:bookmarks:1#compat and keeps both stores in
step."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

from simplexmpp import Client, JID
from simplexmpp.ext.bookmarks import Bookmark

from .conftest import Server
from .test_muc import Events

_rooms = itertools.count(1)


def room(server: Server) -> JID:
    return JID(f"bm{os.getpid()}x{next(_rooms)}@{server.muc}")


def test_pep_bookmarks_add_list_remove(server: Server,
                                       connect: Callable[..., Client]) -> None:
    client = connect()
    assert client.bookmarks.backend == "pep"
    assert client.bookmarks.list() == []
    lobby, other = room(server), room(server)
    client.bookmarks.add(lobby, "Lobby", nick="ali", password="pw", autojoin=True)
    client.bookmarks.add(other)
    found = {b.jid: b for b in client.bookmarks.list()}
    assert found[lobby] == Bookmark(lobby, "Lobby", True, "ali", "pw")
    assert found[other] == Bookmark(other)
    # The same room again replaces its bookmark.
    client.bookmarks.add(lobby, "Lobby 2")
    assert client.bookmarks.get(lobby) == Bookmark(lobby, "Lobby 2")
    assert client.bookmarks.remove(other) and not client.bookmarks.remove(other)
    assert [b.jid for b in client.bookmarks.list()] == [lobby]


def test_private_storage_fallback_sees_the_same_bookmarks(server: Server,
                                                          connect: Callable[..., Client]) -> None:
    client = connect()
    lobby, legacy = room(server), room(server)
    client.bookmarks.add(lobby, "Lobby", autojoin=True)          # XEP-0402
    client.bookmarks.prefer = "private"                            # XEP-0048 in XEP-0049
    assert client.bookmarks.backend == "private"
    assert client.bookmarks.get(lobby) == Bookmark(lobby, "Lobby", True)
    client.bookmarks.add(legacy, "Old style", nick="n")
    client.bookmarks.prefer = None
    assert client.bookmarks.get(legacy) == Bookmark(legacy, "Old style", False, "n")
    client.bookmarks.prefer = "private"
    assert client.bookmarks.remove(lobby)
    assert [b.jid for b in client.bookmarks.list()] == [legacy]


def test_muc_enters_autojoin_bookmarks_on_connect(server: Server,
                                                  connect: Callable[..., Client]) -> None:
    setup = connect()
    auto, manual = room(server), room(server)
    setup.bookmarks.add(auto, "Auto", nick="botty", autojoin=True)
    setup.bookmarks.add(manual, "Manual")
    client = server.client(str(setup.account.bare), resource="second")
    client.muc.autojoin_bookmarks = True
    joined = Events(client, "muc_autojoined")
    client.connect()
    try:
        (results,) = joined.next()
        assert set(results) == {auto}
        assert client.muc.room(auto) is results[auto]
        assert results[auto].nick == "botty"
        assert client.muc.room(manual) is None
    finally:
        client.disconnect()


def test_without_the_opt_in_nothing_is_joined(server: Server,
                                              connect: Callable[..., Client]) -> None:
    client = connect()
    auto = room(server)
    client.bookmarks.add(auto, autojoin=True)
    assert client.muc.joined == {}
    results = client.muc.join_bookmarks(nick="me")
    assert client.muc.room(auto) is results[auto] and results[auto].nick == "me"
