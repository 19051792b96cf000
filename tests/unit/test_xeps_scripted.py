"""Issue 17 part 2a without a real server: the data conversions (XEP-0202 offsets, XEP-0048 and
XEP-0402 bookmark elements, XEP-0004 result tables) and, with simplexmpp.testing's scripted
peer, the answers a real server would not give (malformed times and last activity, stale or
foreign command sessions, expiry and the session bound of XEP-0050 responders)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from simplexmpp import JID
from simplexmpp.errors import IqError
from simplexmpp.ext.bookmarks import Bookmark, LEGACY_NS
from simplexmpp.ext.commands import CommandError, Note
from simplexmpp.ext.entity_time import format_offset, parse_offset
from simplexmpp.ext.forms import Form
from simplexmpp.testing import ClientFactory, FakeServer
from simplexmpp.testing import xmpp_client, xmpp_server  # noqa: F401  (the fixtures)

TIME = "{urn:xmpp:time}time"
LAST = "{jabber:iq:last}query"


def test_time_zone_offsets_parse_and_format() -> None:
    assert parse_offset("Z") == timedelta(0)
    assert parse_offset("+02:00") == timedelta(hours=2)
    assert parse_offset("-05:30") == -timedelta(hours=5, minutes=30)
    assert format_offset(-timedelta(hours=5, minutes=30)) == "-05:30"
    assert format_offset(timedelta(hours=9)) == "+09:00"
    for bad in ("", "+2:00", "+24:00", "UTC", "+02:60"):
        with pytest.raises(ValueError):
            parse_offset(bad)


@pytest.mark.parametrize("answer", [
    "<time xmlns='urn:xmpp:time'><tzo>+01:00</tzo></time>",
    "<time xmlns='urn:xmpp:time'><tzo>nope</tzo><utc>2026-01-01T00:00:00Z</utc></time>",
    "<time xmlns='urn:xmpp:time'><tzo>Z</tzo><utc>yesterday</utc></time>",
    "<other xmlns='urn:example'/>",
])
def test_a_malformed_time_answer_is_a_clear_error(xmpp_server: FakeServer,
                                                  xmpp_client: ClientFactory,
                                                  answer: str) -> None:
    alice = xmpp_client("alice")
    xmpp_server.script(TIME, ET.fromstring(answer))
    with pytest.raises(IqError) as bad:
        alice.time.get()
    assert bad.value.condition == "bad-request"


def test_a_time_answer_in_another_zone(xmpp_server: FakeServer,
                                       xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    xmpp_server.script(TIME, ET.fromstring(
        "<time xmlns='urn:xmpp:time'><tzo>-06:00</tzo>"
        "<utc>2006-12-19T17:58:35Z</utc></time>"))
    answer = alice.time.get()
    assert answer.offset == -timedelta(hours=6)
    assert answer.local.isoformat() == "2006-12-19T11:58:35-06:00"


@pytest.mark.parametrize("seconds", [None, "-3", "many"])
def test_last_activity_without_valid_seconds_is_a_clear_error(
        xmpp_server: FakeServer, xmpp_client: ClientFactory, seconds: str | None) -> None:
    alice = xmpp_client("alice")
    query = ET.Element(LAST)
    if seconds is not None:
        query.set("seconds", seconds)
    xmpp_server.script(LAST, query)
    with pytest.raises(IqError) as bad:
        alice.last_activity.get()
    assert bad.value.condition == "bad-request"


def test_last_activity_status_text(xmpp_server: FakeServer,
                                   xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    xmpp_server.script(LAST, ET.fromstring(
        "<query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>"))
    answer = alice.last_activity.get("bob@localhost")
    assert (answer.seconds, answer.status) == (903, "Heading Home")
    assert answer.received - answer.when == timedelta(seconds=903)


def test_bookmark_elements_round_trip_and_keep_unknown_children() -> None:
    legacy = ET.fromstring(
        f"<conference xmlns='{LEGACY_NS}' jid='Lobby@Conference.Example.org' name='L' "
        "autojoin='1'><nick>ali</nick><password>pw</password>"
        "<x xmlns='urn:example:client'/></conference>")
    bookmark = Bookmark.from_legacy(legacy)
    assert bookmark.jid == "lobby@conference.example.org" and bookmark.autojoin
    assert (bookmark.nick, bookmark.password) == ("ali", "pw")
    assert [e.tag for e in bookmark.extensions] == ["{urn:example:client}x"]
    again = Bookmark.from_conference(bookmark.jid, bookmark.to_conference())
    assert again == bookmark
    assert Bookmark.from_legacy(bookmark.to_legacy()) == bookmark
    with pytest.raises(ValueError):
        Bookmark(JID("lobby@conference.example.org/nick"))


def test_private_storage_rewrite_keeps_other_bookmarks_and_urls(
        xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    alice.bookmarks.prefer = "private"
    stored = ET.fromstring(
        f"<query xmlns='jabber:iq:private'><storage xmlns='{LEGACY_NS}'>"
        "<url name='Site' url='https://example.org/'/>"
        "<conference jid='a@conference.localhost' autojoin='true'/>"
        "<conference jid='b@conference.localhost'><nick>x</nick></conference>"
        "</storage></query>")
    written: list[ET.Element] = []
    xmpp_server.script("{jabber:iq:private}query", stored, type="get")
    xmpp_server.script("{jabber:iq:private}query",
                       lambda iq: written.append(iq.payload) or None, type="set")
    assert alice.bookmarks.remove("a@conference.localhost")
    storage = written[-1].find(f"{{{LEGACY_NS}}}storage")
    assert storage is not None
    assert [c.tag.split("}")[1] for c in storage] == ["url", "conference"]
    assert storage[1].get("jid") == "b@conference.localhost"


def test_a_result_table_is_written_with_reported_columns() -> None:
    form = Form(type="result", items=[{"jid": ["a@x"], "n": ["1"]}, {"jid": ["b@x"]}])
    x = form.to_element()
    reported = x.find("{jabber:x:data}reported")
    assert reported is not None and [f.get("var") for f in reported] == ["jid", "n"]
    assert Form.from_element(x).items == form.items


def test_command_sessions_are_per_requester_and_expire(xmpp_client: ClientFactory) -> None:
    bot, alice, bob = xmpp_client("alice"), xmpp_client("bob"), xmpp_client("carol")

    @bot.commands.command("ask", "Ask", allow="all")
    def ask(request):  # type: ignore[no-untyped-def]
        answer = yield Form(fields=[])
        return f"got {answer.type}"

    session = alice.commands.execute(bot.jid, "ask")
    # Another requester cannot take over alice's session (XEP-0050 §4.2).
    stolen = bob.commands.execute(bot.jid, "ask")
    stolen.session_id = session.session_id
    with pytest.raises(CommandError) as refused:
        stolen.next()
    assert refused.value.command_condition == "bad-sessionid"
    assert session.next().notes == [Note("info", "got submit")]
    # An idle session expires: session-expired, not a hang or a silent restart.
    late = alice.commands.execute(bot.jid, "ask")
    bot.commands.session_timeout = 0
    with pytest.raises(CommandError) as expired:
        late.next()
    assert expired.value.condition == "not-allowed"
    assert expired.value.command_condition == "session-expired"


def test_command_sessions_are_bounded(xmpp_client: ClientFactory) -> None:
    bot, alice = xmpp_client("alice"), xmpp_client("bob")
    bot.commands.max_sessions = 2

    @bot.commands.command("ask", "Ask", allow="all")
    def ask(request):  # type: ignore[no-untyped-def]
        yield Form(fields=[])

    open_sessions = [alice.commands.execute(bot.jid, "ask") for _ in range(2)]
    with pytest.raises(CommandError) as full:
        alice.commands.execute(bot.jid, "ask")
    assert full.value.condition == "resource-constraint"
    open_sessions[0].cancel()
    assert alice.commands.execute(bot.jid, "ask").status == "executing"


def test_a_failing_command_handler_answers_an_error_and_keeps_the_bot(
        xmpp_client: ClientFactory) -> None:
    bot, alice = xmpp_client("alice"), xmpp_client("bob")

    @bot.commands.command("boom", "Boom", allow="all")
    def boom(request):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug")

    @bot.commands.command("odd", "Odd", allow="all")
    def odd(request):  # type: ignore[no-untyped-def]
        return 42

    for node in ("boom", "odd"):
        with pytest.raises(CommandError) as failed:
            alice.commands.execute(bot.jid, node)
        assert failed.value.condition == "internal-server-error"
    assert alice.commands.list(bot.jid)  # still answering


def test_vcard_photo_hashes_from_presence(xmpp_server: FakeServer,
                                          xmpp_client: ClientFactory) -> None:
    import queue
    alice = xmpp_client("alice")
    seen: queue.SimpleQueue[tuple[JID, str | None]] = queue.SimpleQueue()
    alice.on("vcard_avatar_changed", lambda jid, sha1: seen.put((jid, sha1)))
    digest = "A" * 40

    def announce(photo: str) -> None:
        xmpp_server.inject(f"<presence from='bob@localhost/pc' to='alice@localhost'>"
                           f"<x xmlns='vcard-temp:x:update'>{photo}</x></presence>")

    announce(f"<photo>{digest}</photo>")
    assert seen.get(timeout=5) == (JID("bob@localhost/pc"), digest.lower())
    announce(f"<photo>{digest}</photo>")      # the same hash again: no event
    announce("")                               # no <photo/>: not ready to say (§4.3)
    announce("<photo/>")                       # no avatar any more
    assert seen.get(timeout=5) == (JID("bob@localhost/pc"), None)
    assert alice.avatar.vcard_hash("bob@localhost/pc") == ""
    assert alice.avatar.vcard_hash("carol@localhost") is None
