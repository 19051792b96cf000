"""The ``upload``, ``send --oob`` and ``register`` sub-commands, end to end."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from simplexmpp import Client
from simplexmpp.ext.oob import OOBData, oob_of
from simplexmpp.ext.upload import http_session

from .conftest import Server
from .test_cli import run

_names = itertools.count(1)


def test_upload_prints_a_url_serving_the_file(server: Server, connect: Callable[..., Client],
                                              tmp_path: Path) -> None:
    data = os.urandom(50_000)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    out = run(server, "upload", str(path), jid=server.new_account())
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith("https://") and url.endswith("/report.pdf")
    with http_session(connect()) as session:
        response = session.get(url, timeout=15)
    assert response.content == data
    assert response.headers["Content-Type"] == "application/pdf"


def test_upload_to_a_contact_sends_an_oob_link(server: Server, connect: Callable[..., Client],
                                               tmp_path: Path) -> None:
    bob = connect()
    bob.send_presence()
    path = tmp_path / "notes.txt"
    path.write_text("for bob\n")
    out = run(server, "upload", str(path), "--to", str(bob.jid), "--content-type",
              "text/plain", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    msg = bob.next_message(timeout=15)
    assert oob_of(msg) == OOBData(url, "notes.txt")


def test_upload_of_a_file_over_the_limit_fails_cleanly(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(16 * 1024 * 1024 + 1)
    out = run(server, "upload", str(path), jid=server.new_account())
    assert out.returncode == 3, out.stderr
    assert "at most 16777216" in out.stderr and "Traceback" not in out.stderr


def test_send_with_oob_attaches_the_link(server: Server, connect: Callable[..., Client]) -> None:
    bob = connect()
    bob.send_presence()
    out = run(server, "send", str(bob.jid.bare), "--oob", "https://example.org/a.png",  # type: ignore[union-attr]
              "-m", "look at this", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    msg = bob.next_message(timeout=15)
    assert msg.body == "look at this"
    assert oob_of(msg) == OOBData("https://example.org/a.png")


def test_register_creates_an_account_that_can_log_in(server: Server) -> None:
    jid = f"cli{os.getpid()}n{next(_names)}@{server.domain}"
    env = {"XMPP_PASSWORD": "cli secret"}
    out = run(server, "register", jid=jid, env_extra=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"registered {jid}"
    ping = run(server, "ping", jid=jid, env_extra=env)
    assert ping.returncode == 0, ping.stderr
    wrong = run(server, "ping", jid=jid)  # the fixture's password is not this account's
    assert wrong.returncode == 2
    again = run(server, "register", jid=jid, env_extra=env)
    assert again.returncode != 0
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert "cli secret" not in again.stderr + again.stdout


# -- flags on a par with go-sendxmpp (issue 13 item 8) and CLI conventions (issue 12 item 6) --

def env_without_ca(server: Server, jid: str) -> dict[str, str]:
    """What `run` sets, minus XMPP_CA: the harness certificate is then not trusted."""
    return {"XMPP_HOST": server.host, "XMPP_PORT": str(server.port), "XMPP_JID": jid,
            "XMPP_PASSWORD": server.password}


def test_send_subject_resource_and_message_file(server: Server, connect: Callable[..., Client],
                                               tmp_path: Path) -> None:
    bob = connect()
    bob.send_presence()
    text = tmp_path / "report.txt"
    text.write_text("line one\nline two\n", encoding="utf-8")
    out = run(server, "send", str(bob.jid), "--file", str(text), "--subject", "Nightly",
              "--resource", "cron-job", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    msg = bob.next_message(timeout=15)
    assert msg.body == "line one\nline two" and msg.subject == "Nightly"
    assert msg.from_ is not None and msg.from_.resource == "cron-job"
    out = run(server, "send", str(bob.jid), "--file", "-", jid=server.new_account(),
              stdin="from stdin\n")
    assert out.returncode == 0, out.stderr
    assert bob.next_message(timeout=15).body == "from stdin"
    missing = run(server, "send", str(bob.jid), "--file", str(tmp_path / "nope.txt"),
                  jid=server.new_account())
    assert missing.returncode == 1 and "nope.txt" in missing.stderr


def test_send_raw_sends_one_checked_stanza(server: Server,
                                           connect: Callable[..., Client]) -> None:
    bob = connect()
    bob.send_presence()
    stanza = (f"<message to='{bob.jid}' type='chat'><body>raw hello</body>"
              "<x xmlns='urn:example:raw'>kept</x></message>")
    out = run(server, "send", "--raw", jid=server.new_account(), stdin=stanza)
    assert out.returncode == 0, out.stderr
    msg = bob.next_message(timeout=15)
    assert msg.body == "raw hello" and msg.xml.findtext("{urn:example:raw}x") == "kept"
    # An iq get waits for its answer and prints it.
    out = run(server, "send", "--raw", "-m",
              f"<iq type='get' to='{server.domain}'><query xmlns='jabber:iq:version'/></iq>",
              jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert "<iq" in out.stdout and 'type="result"' in out.stdout and "<name>" in out.stdout


@pytest.mark.parametrize("text, complaint", [
    ("<message><body>open</body>", "not closed"),
    ("<message/><message/>", "exactly one stanza"),
    ("<foo xmlns='jabber:client'/>", "not a stanza"),
    ("<message xmlns='jabber:server'/>", "not a stanza"),
    ("<message><!-- no --></message>", "well-formed"),
    ("<message><body>a & b</body></message>", "well-formed"),
    ("just text", "exactly one stanza"),
    ("</stream:stream>", "stream framing"),
])
def test_send_raw_refuses_what_is_not_one_stanza_before_connecting(text: str,
                                                                   complaint: str) -> None:
    # No server at all: the check comes before any connection.
    out = run(None, "send", "--raw", "-m", text, "--jid", "a@localhost", "--host",
              "127.0.0.1", "--port", "1", env_extra={"XMPP_PASSWORD": "x"})
    assert out.returncode == 1, out.stderr
    assert complaint in out.stderr and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr and "connect" not in out.stderr


def test_send_raw_refuses_flags_it_would_ignore() -> None:
    out = run(None, "send", "--raw", "bob@localhost", "-m", "<message/>", "--jid",
              "a@localhost", env_extra={"XMPP_PASSWORD": "x"})
    assert out.returncode == 1 and "recipient JIDs" in out.stderr


def test_muc_password_enters_a_protected_room(server: Server,
                                              connect: Callable[..., Client]) -> None:
    watcher = connect()
    room_jid = f"clipw{os.getpid()}n{next(_names)}@{server.muc}"
    room = watcher.muc.join(room_jid, "watcher", config={
        "muc#roomconfig_passwordprotectedroom": True,
        "muc#roomconfig_roomsecret": "open sesame"})
    refused = run(server, "send", "--muc", room_jid, "-m", "no key", jid=server.new_account())
    assert refused.returncode == 3 and "password" in refused.stderr
    out = run(server, "send", "--muc", room_jid, "--muc-password", "open sesame", "-m",
              "with the key", jid=server.new_account())
    assert out.returncode == 0, out.stderr
    assert room.next_message(timeout=15).body == "with the key"
    out = run(server, "send", "--muc", room_jid, "-m", "key from env",
              jid=server.new_account(), env_extra={"XMPP_MUC_PASSWORD": "open sesame"})
    assert out.returncode == 0, out.stderr
    assert room.next_message(timeout=15).body == "key from env"


def test_listen_in_a_room_prints_its_messages(server: Server,
                                              connect: Callable[..., Client]) -> None:
    watcher = connect()
    room_jid = f"clilisten{os.getpid()}n{next(_names)}@{server.muc}"
    room = watcher.muc.join(room_jid, "watcher")
    listener_jid = server.new_account()
    entered = threading.Event()
    watcher.on("muc_presence", lambda r, occupant: entered.set()
               if occupant.nick == "ear" and occupant.available else None)
    listener = subprocess.Popen(
        [sys.executable, "-m", "simplexmpp", "listen", "--muc", room_jid, "--nick", "ear",
         "--json", "--count", "2", "--idle", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("XMPP_")},
             "HOME": "/nonexistent", "XMPP_HOST": server.host, "XMPP_PORT": str(server.port),
             "XMPP_CA": server.ca, "XMPP_JID": listener_jid,
             "XMPP_PASSWORD": server.password})
    try:
        assert entered.wait(30), listener.stderr.read() if listener.poll() is not None else ""
        room.send("first in the room")
        room.send("second in the room")
        out, err = listener.communicate(timeout=60)
    finally:
        listener.kill()
    assert listener.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["body"] for r in records] == ["first in the room", "second in the room"]
    assert all(r["from"] == f"{room_jid}/watcher" and r["type"] == "groupchat"
               for r in records)


def test_tls_version_sets_the_lowest_version(server: Server, server_sha256: Server) -> None:
    # server_sha256 speaks TLS 1.2 only.
    refused = run(server_sha256, "ping", "--tls-version", "1.3", jid=server_sha256.new_account())
    assert refused.returncode == 3, refused.stderr
    assert "TLS" in refused.stderr and "Traceback" not in refused.stderr
    ok = run(server_sha256, "ping", "--tls-version", "1.2", jid=server_sha256.new_account())
    assert ok.returncode == 0, ok.stderr
    ok = run(server, "ping", "--tls-version", "1.3", jid=server.new_account())
    assert ok.returncode == 0, ok.stderr
    bad = run(server, "ping", "--tls-version", "1.0", jid=server.new_account())
    assert bad.returncode == 1 and "invalid choice" in bad.stderr


def test_untrusted_certificate_names_the_flag_and_no_verify_warns(server: Server) -> None:
    jid = server.new_account()
    out = run(None, "ping", env_extra=env_without_ca(server, jid))
    assert out.returncode == 3, out.stderr
    assert "--ca-file" in out.stderr and "ca_file" not in out.stderr  # issue 12 item 6
    out = run(None, "ping", "--no-verify", env_extra=env_without_ca(server, jid))
    assert out.returncode == 0, out.stderr
    assert "WARNING" in out.stderr and "--no-verify" in out.stderr


def test_password_is_never_taken_from_the_command_line(server: Server) -> None:
    secret = "Qx9-not-for-ps"
    out = run(server, "ping", "--password", secret, jid=server.new_account())
    assert out.returncode == 1
    assert "--password-file" in out.stderr and secret not in out.stderr + out.stdout
    # No abbreviations: --password-f is not --password-file, --ca not --ca-file.
    out = run(server, "ping", "--password-f", "/dev/null", jid=server.new_account())
    assert out.returncode == 1 and "unrecognized arguments" in out.stderr
    out = run(server, "ping", "--ca", server.ca, jid=server.new_account())
    assert out.returncode == 1 and "unrecognized arguments" in out.stderr


def test_library_keywords_become_flags_in_cli_messages() -> None:
    from simplexmpp.cli import cli_message
    assert cli_message("pass ca_file= with the certificate or CA to trust (or an ssl_context "
                       "that trusts it)") == "pass --ca-file with the certificate or CA to trust"
    assert cli_message("TLS failed (x); pass ca_file= to the Client if the server uses a "
                       "private CA") == "TLS failed (x); pass --ca-file if the server uses a " \
                                        "private CA"
    assert cli_message("try a bigger timeout= or host=") == "try a bigger --timeout or --host"
    assert cli_message("verify=False is dangerous") == "--no-verify is dangerous"


def test_disco_shows_each_extension_form_by_its_form_type(any_server: Server) -> None:
    # ejabberd's upload service sends two forms (XEP-0128): both are shown, by FORM_TYPE.
    out = run(any_server, "disco", any_server.upload, "--json", jid=any_server.new_account())
    assert out.returncode == 0, out.stderr
    forms = json.loads(out.stdout)["forms"]
    assert forms["urn:xmpp:http:upload:0"]["max-file-size"] == str(16 * 1024 * 1024)
    text = run(any_server, "disco", any_server.upload, jid=any_server.new_account())
    assert "  form     urn:xmpp:http:upload:0" in text.stdout
    assert "    max-file-size = 16777216" in text.stdout
