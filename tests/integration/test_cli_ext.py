"""The ``upload``, ``send --oob`` and ``register`` sub-commands, end to end."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

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
