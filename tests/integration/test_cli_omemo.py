"""The `simplexmpp` command with OMEMO, as a subprocess against the real Prosody:
send --omemo, listen decrypting (JSON "encryption"), omemo devices|trust|distrust|fingerprint,
upload --omemo."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")

from simplexmpp import Client  # noqa: E402
from simplexmpp.cli import EXIT_ENCRYPTION, EXIT_USAGE  # noqa: E402
from simplexmpp.ext.omemo import OLDMEMO_NS, TWOMEMO_NS  # noqa: E402
from simplexmpp.ext.omemo_media import aesgcm_link_of  # noqa: E402

from .conftest import Server  # noqa: E402
from .test_cli import run  # noqa: E402
from .test_omemo_edges import omemo_client, secret_room  # noqa: E402

WAIT = 30.0


def store_env(path: Path) -> dict[str, str]:
    return {"XMPP_OMEMO_STORE": str(path)}


def test_help_lists_the_omemo_command_and_flags() -> None:
    out = run(None, "--help")
    assert out.returncode == 0 and "omemo" in out.stdout
    for command in ("send", "listen", "upload"):
        sub = run(None, command, "--help")
        assert sub.returncode == 0 and "--omemo" in sub.stdout
    sub = run(None, "omemo", "--help")
    for action in ("devices", "trust", "distrust", "fingerprint"):
        assert action in sub.stdout


def test_send_omemo_reaches_a_library_client_decrypted(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    bob = omemo_client(connect, tmp_path, "bob")
    alice = server.new_account()
    sent = run(server, "send", "--omemo", str(bob.account.bare), "-m", "hello from the shell",
               jid=alice, env_extra=store_env(tmp_path / "alice-cli.json"))
    assert sent.returncode == 0, sent.stderr
    msg = bob.next_message(timeout=WAIT)
    assert msg.body == "hello from the shell"
    assert msg.encryption in (TWOMEMO_NS, OLDMEMO_NS)
    # The same store gives the same device in the next process.
    again = run(server, "omemo", "fingerprint", "--json", jid=alice,
                env_extra=store_env(tmp_path / "alice-cli.json"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["device"] == msg.sender_device


def test_listen_decrypts_and_json_has_the_encryption_field(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    bob = server.new_account()
    store = tmp_path / "bob-cli.json"
    # First run: announce bob's device (the store is made); it exits on --idle.
    first = run(server, "omemo", "fingerprint", jid=bob, env_extra=store_env(store))
    assert first.returncode == 0, first.stderr
    listener = subprocess.Popen(
        [sys.executable, "-m", "simplexmpp", "listen", "--json", "--count", "2",
         "--idle", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("XMPP_")},
             "HOME": "/nonexistent", "XMPP_HOST": server.host,
             "XMPP_PORT": str(server.port), "XMPP_CA": server.ca, "XMPP_JID": bob,
             "XMPP_PASSWORD": server.password, "XMPP_OMEMO_STORE": str(store)})
    try:
        alice = omemo_client(connect, tmp_path, "alice")
        alice.omemo.send_message(bob, "secret for the listener", namespace=OLDMEMO_NS)
        alice.send_message(bob, "plain one")
        out, err = listener.communicate(timeout=90)
    finally:
        listener.kill()
    assert listener.returncode == 0, err
    # In the order sent, though decryption runs off the I/O thread (arrival order).
    printed = [json.loads(line) for line in out.splitlines()]
    assert [r["body"] for r in printed] == ["secret for the listener", "plain one"]
    records = {r["body"]: r for r in printed}
    secret: dict[str, Any] = records["secret for the listener"]
    assert secret["encryption"] == OLDMEMO_NS
    assert secret["sender_device"] == alice.omemo.device_id
    assert secret["decryption_error"] is None
    assert records["plain one"]["encryption"] is None
    assert "sender_device" not in records["plain one"]


def test_devices_trust_distrust_and_a_distrusted_device_is_not_sent_to(
        server: Server, connect: Callable[..., Client], tmp_path: Path) -> None:
    bob = omemo_client(connect, tmp_path, "bob")
    alice = server.new_account()
    env = store_env(tmp_path / "alice-cli.json")
    listed = run(server, "omemo", "devices", str(bob.account.bare), "--json", jid=alice,
                 env_extra=env)
    assert listed.returncode == 0, listed.stderr
    devices = json.loads(listed.stdout)
    assert [(d["id"], d["fingerprint"], d["trust"]) for d in devices] == [
        (bob.omemo.device_id, bob.omemo.fingerprint, "blind")]
    device = str(bob.omemo.device_id)
    trusted = run(server, "omemo", "trust", str(bob.account.bare), device, jid=alice,
                  env_extra=env)
    assert trusted.returncode == 0, trusted.stderr
    assert "trusted" in trusted.stdout
    shown = run(server, "omemo", "devices", str(bob.account.bare), jid=alice, env_extra=env)
    assert "trusted" in shown.stdout and bob.omemo.fingerprint[:8] in shown.stdout
    distrusted = run(server, "omemo", "distrust", str(bob.account.bare), device, jid=alice,
                     env_extra=env)
    assert distrusted.returncode == 0, distrusted.stderr
    refused = run(server, "send", "--omemo", str(bob.account.bare), "-m", "not for you",
                  jid=alice, env_extra=env)
    assert refused.returncode == EXIT_ENCRYPTION
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    # Our own devices (no JID): this device is listed and marked.
    own = run(server, "omemo", "devices", "--json", jid=alice, env_extra=env)
    assert any(d["this_device"] for d in json.loads(own.stdout))


def test_omemo_usage_errors_exit_1(server: Server, tmp_path: Path) -> None:
    alice = server.new_account()
    env = store_env(tmp_path / "alice-cli.json")
    for args in (["send", "--omemo", "bob@localhost", "--subject", "s", "-m", "x"],
                 ["send", "--omemo", "bob@localhost", "--oob", "https://x.example/", "-m", "x"],
                 ["omemo", "trust", "bob@localhost"],
                 ["omemo", "distrust", alice, "12345"],
                 ["omemo", "fingerprint", "bob@localhost"],
                 ["upload", "--omemo", str(tmp_path)]):
        out = run(server, *args, jid=alice, env_extra=env)
        assert out.returncode == EXIT_USAGE, (args, out.stderr)
        assert out.stderr.startswith(("simplexmpp:", "usage:")) and "Traceback" not in out.stderr


def test_send_omemo_to_a_room(server: Server, connect: Callable[..., Client],
                              tmp_path: Path) -> None:
    owner = omemo_client(connect, tmp_path, "owner")
    bob = omemo_client(connect, tmp_path, "bob")
    alice = server.new_account()
    env = store_env(tmp_path / "alice-cli.json")
    # alice's device must exist before the room's owner can make her a member and see it.
    assert run(server, "omemo", "fingerprint", jid=alice, env_extra=env).returncode == 0
    jid, _ = secret_room(server, owner, [bob])
    owner.muc.room(jid).set_affiliation(alice, "member")  # type: ignore[union-attr]
    b_room = bob.muc.join(jid, "bob")
    sent = run(server, "send", "--omemo", "--muc", jid, "--nick", "alice", "-m", "room secret",
               jid=alice, env_extra=env)
    assert sent.returncode == 0, sent.stderr
    for msg in b_room.messages(timeout=WAIT):
        if msg.from_.resource == "alice":
            assert msg.body == "room secret" and msg.encryption is not None
            break


def test_upload_omemo_sends_the_link_encrypted(server: Server, connect: Callable[..., Client],
                                               tmp_path: Path) -> None:
    bob = omemo_client(connect, tmp_path, "bob")
    alice = server.new_account()
    path = tmp_path / "notes.txt"
    path.write_text("encrypted notes\n")
    out = run(server, "upload", "--omemo", "--to", str(bob.account.bare), "--no-progress",
              str(path), jid=alice, env_extra=store_env(tmp_path / "alice-cli.json"))
    assert out.returncode == 0, out.stderr
    msg = bob.next_message(timeout=WAIT)
    link = aesgcm_link_of(msg)
    assert link is not None and msg.encryption is not None
    assert out.stdout.strip() == link.https_url  # the key is not printed
    target = bob.omemo.download(link, tmp_path / "got.txt")
    assert target.read_text() == "encrypted notes\n"


def test_a_restarted_process_keeps_its_device_and_its_sessions(
        server: Server, connect: Callable[..., Client], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Three processes of the command line, one after the other, with one store: the same
    device throughout, and the session made by the first is continued by the others (the
    third message carries no new key exchange)."""
    bob = omemo_client(connect, tmp_path, "bob")
    alice = server.new_account()
    env = store_env(tmp_path / "alice-cli.json")
    first = run(server, "send", "--omemo", str(bob.account.bare), "-m", "one", jid=alice,
                env_extra=env)
    assert first.returncode == 0, first.stderr
    one = bob.next_message(timeout=WAIT)
    assert (one.body, one.decryption_error) == ("one", None)
    bob.omemo.send_message(alice, "two")  # alice is offline: the server keeps it
    second = run(server, "listen", "--json", "--count", "1", "--idle", "60", jid=alice,
                 env_extra=env, timeout=120)
    assert second.returncode == 0, second.stderr
    [record] = [json.loads(line) for line in second.stdout.splitlines()]
    assert (record["body"], record["sender_device"], record["decryption_error"]) == (
        "two", bob.omemo.device_id, None)
    with caplog.at_level(logging.DEBUG, logger="simplexmpp.wire"):
        third = run(server, "send", "--omemo", str(bob.account.bare), "-m", "three",
                    jid=alice, env_extra=env)
        assert third.returncode == 0, third.stderr
        three = bob.next_message(timeout=WAIT)
    assert (three.body, three.sender_device) == ("three", one.sender_device)
    received = [r.getMessage() for r in caplog.records
                if " RECV" in r.getMessage()
                and "<encrypted" in r.getMessage()]
    assert received
    assert not any('kex="true"' in line or 'prekey="true"' in line for line in received)
