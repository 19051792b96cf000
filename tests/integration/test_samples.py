"""The programs in samples/ run as a user would run them, against the real Prosody."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Server
from .samples import run_sample, start_sample, wait_ready


def test_simple_example_talks_to_the_echo_bot(server: Server) -> None:
    bot_jid, user = server.new_account("bot"), server.new_account()
    bot = start_sample(server, "echo_bot.py", "--max", "2", "--idle", "30", jid=bot_jid)
    try:
        wait_ready(bot)
        out = run_sample(server, "simple_example.py", "--to", bot_jid, "one", "two", jid=user)
        assert out.returncode == 0, out.stderr
        assert f"{bot_jid} -> {user}: one" in out.stdout
        assert f"{bot_jid} -> {user}: two" in out.stdout
        assert bot.wait(timeout=30) == 0
    finally:
        bot.kill()
        bot.communicate()


def test_retrieve_roster_lists_contacts(server: Server, connect) -> None:
    owner = server.new_account()
    with server.client(owner) as client:
        client.add_contact("friend@localhost", name="Friend", groups=["Pals"])
    out = run_sample(server, "retrieve_roster.py", jid=owner)
    assert out.returncode == 0, out.stderr
    assert "1 contact(s)" in out.stdout
    assert "friend@localhost  name=Friend  subscription=none" in out.stdout
    assert "groups=Pals" in out.stdout


def test_disco_info_prints_identities_features_and_items(server: Server) -> None:
    out = run_sample(server, "disco_info.py", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert "identity server/im" in out.stdout
    assert f"item     {server.muc}" in out.stdout
    out = run_sample(server, "disco_info.py", server.muc, jid=server.new_account())
    assert "feature  http://jabber.org/protocol/muc" in out.stdout
    out = run_sample(server, "disco_info.py", "nobody.invalid", jid=server.new_account())
    assert out.returncode == 1 and out.stdout.startswith("error:")


def test_talkbot_recites_and_accepts_subscriptions(server: Server, connect,
                                                   tmp_path: Path) -> None:
    poem = tmp_path / "poem.txt"
    poem.write_text("first line\nsecond line\n\n", encoding="utf-8")
    bot_jid = server.new_account("talkbot")
    bot = start_sample(server, "talkbot.py", str(poem), "--count", "3", jid=bot_jid)
    try:
        wait_ready(bot)
        user = connect()
        subscribed = []
        user.on("subscribed", lambda p: subscribed.append(p.from_))
        user.on("subscription_request", lambda p: user.approve(p.from_))
        user.subscribe(bot_jid)
        answers = []
        for text in ("hello", "again", "and again"):
            user.send_message(bot_jid, text)
            answers.append(user.next_message(timeout=15).body)
        assert answers == ["first line", "second line", "first line"]
        assert bot.wait(timeout=30) == 0
        roster = user.get_roster()
        assert roster[bot_jid].subscription in ("to", "both")
    finally:
        bot.kill()
        bot.communicate()


def test_samples_refuse_missing_credentials(server: Server) -> None:
    out = run_sample(server, "disco_info.py", jid="", XMPP_PASSWORD="")
    assert out.returncode != 0 and "XMPP_JID" in out.stderr and "Traceback" not in out.stderr


def test_file_bot_receives_files_and_declines_strangers(server: Server, connect,
                                                       tmp_path: Path) -> None:
    import pytest

    from simplexmpp.ext.files import FileDeclinedError, FileTooLargeError
    bot_jid, alice_jid = server.new_account("filebot"), server.new_account()
    inbox = tmp_path / "inbox"
    bot = start_sample(server, "file_bot.py", "--dir", str(inbox), "--allow", alice_jid,
                       "--max-size", "100000", "--max", "1", "--idle", "60", jid=bot_jid)
    try:
        ready = wait_ready(bot)
        bot_full = ready.split()[2]                      # "file bot JID ready"
        alice, stranger = connect(alice_jid), connect()
        source = tmp_path / "notes.txt"
        source.write_bytes(b"line\n" * 1000)
        with pytest.raises(FileDeclinedError):
            stranger.files.send(bot_full, source)
        with pytest.raises(FileTooLargeError):
            big = tmp_path / "big.bin"
            big.write_bytes(b"\0" * 100_001)
            alice.files.send(bot_full, big)
        alice.files.send(bot_full, source)
        answer = alice.next_message(timeout=30)
        assert answer.body == "Got notes.txt: 5000 bytes, checked."
        assert (inbox / "notes.txt").read_bytes() == source.read_bytes()
        assert bot.wait(timeout=30) == 0
        out = bot.stdout.read() if bot.stdout else ""
        assert "received 1 file(s)" in out
    finally:
        bot.kill()
        bot.communicate()


def test_command_bot_runs_commands_from_another_client(server: Server, connect) -> None:
    bot_jid, user = server.new_account("cmdbot"), connect()
    bot = start_sample(server, "command_bot.py", "--allow", "all", "--owner",
                       str(user.account.bare), "--lifetime", "60", jid=bot_jid)
    try:
        line = wait_ready(bot)
        bot_full = line.split()[2].rstrip(":")
        nodes = {c.node: c.name for c in user.commands.list(bot_full)}
        assert nodes == {"status": "Bot status", "note": "Write a note",
                         "notes": "List the notes", "stop": "Stop the bot"}
        assert "0 note(s)" in user.commands.execute(bot_full, "status").notes[0].text
        session = user.commands.execute(bot_full, "note")
        session.next(title="Milk", text=["buy", "two"])
        assert session.actions == {"complete"}
        session.complete(keep=True)
        assert session.notes[0].text == "Kept note 1: Milk"
        table = user.commands.execute(bot_full, "notes").form
        assert table is not None and table.items == [
            {"title": ["Milk"], "text": ["buy\ntwo"], "by": [str(user.account.bare)]}]
        assert user.commands.execute(bot_full, "stop").notes[0].text == "Bye."
        assert bot.wait(timeout=30) == 0
        assert "stopped with 1 note(s)" in (bot.stdout.read() if bot.stdout else "")
    finally:
        bot.kill()
        bot.communicate()


def test_wait_ready_finds_a_line_that_came_in_one_read_with_the_one_before() -> None:
    # Both lines in one write: one read brings both into the text stream's buffer, so the
    # pipe has nothing more to select on (the old wait_ready waited out its timeout here).
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write('starting\\nbot ready\\n'); "
         "sys.stdout.flush(); sys.stdin.read(); print('after')"],
        text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_ready(proc, timeout=60) == "bot ready\n"
        out, _ = proc.communicate("", timeout=60)  # what follows is still there to read
        assert out == "after\n"
    finally:
        proc.kill()
        proc.communicate()
