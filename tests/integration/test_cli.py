"""The ``simplexmpp`` command, run as a subprocess against the real Prosody."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server

next_room = itertools.count(1).__next__


def run(server: Server | None, *args: str, jid: str | None = None, stdin: str = "",
        env_extra: dict[str, str] | None = None, timeout: float = 60) -> \
        subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env["HOME"] = env.get("SIMPLEXMPP_TEST_HOME", "/nonexistent")  # no user config file
    if server is not None:
        env.update(XMPP_HOST=server.host, XMPP_PORT=str(server.port), XMPP_CA=server.ca,
                   XMPP_PASSWORD=server.password)
        if jid:
            env["XMPP_JID"] = jid
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "simplexmpp", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_help_lists_every_command() -> None:
    out = run(None, "--help")
    assert out.returncode == 0
    for command in ("send", "listen", "roster", "ping", "disco", "upload", "muc", "register"):
        assert command in out.stdout
    sub = run(None, "send", "--help")
    assert sub.returncode == 0 and "--lines" in sub.stdout


def test_send_from_arguments_and_stdin_lines_reaches_a_listener(server: Server) -> None:
    alice, bob = server.new_account(), server.new_account()
    listener = subprocess.Popen(
        [sys.executable, "-m", "simplexmpp", "listen", "--json", "--count", "3",
         "--idle", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("XMPP_")},
             "HOME": "/nonexistent", "XMPP_HOST": server.host,
             "XMPP_PORT": str(server.port), "XMPP_CA": server.ca, "XMPP_JID": bob,
             "XMPP_PASSWORD": server.password})
    try:
        # Sent before bob's presence or after, they reach him (offline storage delivers).
        sent = run(server, "send", bob, "-m", "first one", jid=alice)
        assert sent.returncode == 0, sent.stderr
        sent = run(server, "send", bob, "--lines", jid=alice, stdin="second\n\nthird\n")
        assert sent.returncode == 0, sent.stderr
        out, err = listener.communicate(timeout=60)
    finally:
        listener.kill()
    assert listener.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["body"] for r in records] == ["first one", "second", "third"]
    assert all(r["from"].startswith(alice) for r in records)


def test_roster_add_list_remove(server: Server) -> None:
    alice, bob = server.new_account(), server.new_account()
    added = run(server, "roster", "add", bob, "--name", "Bob", "--group", "Friends", jid=alice)
    assert added.returncode == 0, added.stderr
    listed = run(server, "roster", "--json", jid=alice)
    assert listed.returncode == 0, listed.stderr
    items: list[dict[str, Any]] = json.loads(listed.stdout)
    assert items == [{"jid": bob, "name": "Bob", "groups": ["Friends"], "subscription": "none"}]
    assert run(server, "roster", "remove", bob, jid=alice).returncode == 0
    assert json.loads(run(server, "roster", "--json", jid=alice).stdout) == []


def test_ping_the_server(server: Server) -> None:
    out = run(server, "ping", "--count", "2", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pong from localhost") == 2


def test_disco_prints_and_emits_json(server: Server) -> None:
    out = run(server, "disco", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert "identity server/im" in out.stdout and f"item     {server.muc}" in out.stdout
    out = run(server, "disco", server.muc, "--json", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["jid"] == server.muc
    assert "http://jabber.org/protocol/muc" in data["features"]
    assert ["conference", "text"] == data["identities"][0][:2]


def test_disco_of_a_missing_entity_is_one_line_error(server: Server) -> None:
    out = run(server, "disco", "nobody.invalid", jid=server.new_account())
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_config_file_supplies_credentials(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'jid = "{server.new_account()}"\npassword = "{server.password}"\n'
                      f'host = "{server.host}"\nport = {server.port}\n'
                      f'ca_file = "{server.ca}"\n')
    out = run(None, "ping", "--config", str(config))
    assert out.returncode == 0, out.stderr


def test_wrong_password_exits_2_with_one_line_and_no_password(server: Server) -> None:
    out = run(server, "ping", jid=server.new_account(),
              env_extra={"XMPP_PASSWORD": "wrong-secret-123"})
    assert out.returncode == 2
    assert out.stderr.startswith("simplexmpp: ") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr and "wrong-secret-123" not in out.stderr


def test_usage_errors_exit_1() -> None:
    assert run(None, "ping").returncode == 1  # no account at all
    out = run(None, "ping", "--jid", "not a jid@@", env_extra={"XMPP_PASSWORD": "x"})
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_unreachable_server_exits_3() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = run(None, "ping", "--jid", "a@localhost", "--host", "127.0.0.1", "--port", str(port),
              env_extra={"XMPP_PASSWORD": "x"})
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("simplexmpp: ") and "Traceback" not in out.stderr


def test_silent_server_exits_4() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        out = run(None, "ping", "--jid", "a@localhost", "--host", "127.0.0.1", "--port",
                  str(listener.getsockname()[1]), "--timeout", "1",
                  env_extra={"XMPP_PASSWORD": "x"})
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert out.returncode == 4, out.stderr


def test_debug_shows_the_stream_but_not_the_password(server: Server) -> None:
    secret = "Zq7-unlikely-anywhere"
    jid = server.register(f"cli{os.getpid()}debug", secret)
    out = run(server, "ping", "--debug", jid=jid, env_extra={"XMPP_PASSWORD": secret})
    assert out.returncode == 0, out.stderr
    assert "<iq" in out.stderr and "[redacted]" in out.stderr and secret not in out.stderr


def test_send_to_a_room_and_list_rooms_with_occupants(server: Server, connect) -> None:
    watcher = connect()
    room_jid = f"cli{next_room()}@{server.muc}"
    room = watcher.muc.join(room_jid, "watcher", config={"muc#roomconfig_publicroom": True})
    out = run(server, "send", "--muc", room_jid, "-m", "hello room", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert room.next_message(timeout=10).body == "hello room"
    out = run(server, "muc", "--occupants", "--json", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    rooms = {entry["jid"]: entry for entry in json.loads(out.stdout)}
    assert room_jid in rooms and "watcher" in rooms[room_jid]["occupants"]
    out = run(server, "muc", "--occupants", jid=server.new_account())
    assert room_jid in out.stdout and "  watcher" in out.stdout
