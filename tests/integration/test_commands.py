"""XEP-0050 ad-hoc commands against the real Prosody: a simplexmpp bot offering commands
(one stage and multi-stage with data forms) to another simplexmpp account through the server,
and Prosody's own commands (mod_uptime's for everyone, mod_admin_adhoc's for its admin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simplexmpp import Client
from simplexmpp.ext.commands import CommandError, CommandFailed, Note, Stage
from simplexmpp.ext.forms import Field, Form

from .conftest import Server
from .test_avatar import befriend

ADMIN_NS = "http://jabber.org/protocol/admin"


def offer(bot: Client) -> None:
    @bot.commands.command("status", "Status", allow="all")
    def status(request):  # type: ignore[no-untyped-def]
        return f"fine, {request.requester.bare}"

    @bot.commands.command("greet", "Greet", allow="all")
    def greet(request):  # type: ignore[no-untyped-def]
        first = yield Form(title="Greeting", fields=[
            Field("name", type="text-single", label="Whom?", required=True)])
        second = yield Stage(Form(fields=[Field("loud", type="boolean")]), ["almost done"],
                             last=True)
        if not first.value("name"):
            raise CommandFailed("a name is needed")
        table = Form(type="result", items=[{"name": [first.value("name")]}])
        return [f"Hello, {first.value('name')}{'!' if second.value('loud') else '.'}", table]

    @bot.commands.command("secret", "Friends only")
    def secret(request):  # type: ignore[no-untyped-def]
        return Note("warn", "psst")


def test_a_bot_lists_and_runs_one_stage_commands(connect: Callable[..., Client]) -> None:
    bot, user = connect(), connect()
    offer(bot)
    listed = {c.node: c for c in user.commands.list(bot.jid)}
    # "secret" is for contacts only (allow="subscribed"): a stranger does not see it.
    assert set(listed) == {"status", "greet"}
    assert listed["status"].name == "Status" and listed["status"].jid == bot.jid
    session = user.commands.execute(bot.jid, "status")
    assert session.status == "completed" and session.done and not session.failed
    assert session.notes == [Note("info", f"fine, {user.account.bare}")]
    info = user.disco.info(bot.jid, "status")
    assert info.has_identity("automation", "command-node")
    assert "http://jabber.org/protocol/commands" in user.disco.info(bot.jid).features


def test_a_multi_stage_command_with_forms(connect: Callable[..., Client]) -> None:
    bot, user = connect(), connect()
    offer(bot)
    session = user.commands.execute(bot.jid, "greet")
    assert session.status == "executing" and session.session_id
    assert session.actions == {"next", "complete"} and session.default_action == "next"
    assert session.form is not None and session.form.get("name").required  # type: ignore[union-attr]
    session.next(name="Alice")
    assert session.status == "executing" and session.actions == {"complete"}
    assert session.notes == [Note("info", "almost done")]
    session.complete(loud=True)
    assert session.status == "completed"
    assert session.notes == [Note("info", "Hello, Alice!")]
    assert session.form is not None and session.form.items == [{"name": ["Alice"]}]
    with pytest.raises(ValueError):
        session.next()  # the session is over


def test_cancel_bad_action_failure_and_unknown_session(connect: Callable[..., Client]) -> None:
    bot, user = connect(), connect()
    offer(bot)
    session = user.commands.execute(bot.jid, "greet")
    assert session.cancel().status == "canceled"
    session = user.commands.execute(bot.jid, "greet")
    with pytest.raises(CommandError) as refused:
        session.prev()  # not offered at this stage
    assert refused.value.condition == "bad-request"
    assert refused.value.command_condition == "bad-action"
    session.next(name="")
    session.complete()
    assert session.failed and session.notes == [Note("error", "a name is needed")]
    # A finished session's id is no longer valid (XEP-0050 §4.2).
    stale = user.commands.execute(bot.jid, "greet")
    stale.cancel()
    stale.status = "executing"
    with pytest.raises(CommandError) as gone:
        stale.next(name="x")
    assert gone.value.command_condition == "bad-sessionid"


def test_commands_are_for_contacts_by_default(connect: Callable[..., Client]) -> None:
    bot, user = connect(), connect()
    offer(bot)
    with pytest.raises(CommandError) as refused:
        user.commands.execute(bot.jid, "secret")
    assert refused.value.condition == "forbidden"
    befriend(bot, user)
    assert "secret" in {c.node for c in user.commands.list(bot.jid)}
    assert user.commands.execute(bot.jid, "secret").notes == [Note("warn", "psst")]
    with pytest.raises(CommandError) as missing:
        user.commands.execute(bot.jid, "nothing-here")
    assert missing.value.condition == "item-not-found"


def test_prosody_commands_for_users_and_admins(server: Server,
                                               connect: Callable[..., Client]) -> None:
    user = connect()
    assert "uptime" in {c.node for c in user.commands.list()}
    uptime = user.commands.execute(None, "uptime")
    assert uptime.status == "completed" and "running" in uptime.notes[0].text
    with pytest.raises(CommandError) as refused:
        user.commands.execute(None, f"{ADMIN_NS}#get-online-users-list")
    assert refused.value.condition == "forbidden"

    admin = connect(server.register("admin"))
    assert f"{ADMIN_NS}#get-online-users-list" in {c.node for c in admin.commands.list()}
    session = admin.commands.execute(None, f"{ADMIN_NS}#get-online-users-list")
    assert session.status == "executing" and session.form is not None
    session.complete(max_items="all")
    assert session.status == "completed" and session.form is not None
    online = session.form.value("onlineuserjids")
    assert isinstance(online, list)
    assert str(user.account.bare) in online and str(admin.account.bare) in online
