"""XEP-0077 In-Band Registration against the real Prosody (allow_registration = true)."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from simplexmpp import Client
from simplexmpp.errors import AuthenticationError, IqError
from simplexmpp.ext.register import (AccountExistsError, RegistrationError,
                                     RegistrationNotSupportedError)

from .conftest import Server
from .hostile import Conn, HostileServer
from .samples import run_sample

_names = itertools.count(1)


def fresh_jid(server: Server) -> str:
    """A JID nobody has registered yet."""
    return f"reg{os.getpid()}n{next(_names)}@{server.domain}"


def settings(server: Server) -> dict[str, Any]:
    return dict(host=server.host, port=server.port, ca_file=server.ca, timeout=15)


def test_register_then_log_in(any_server: Server) -> None:
    jid = fresh_jid(any_server)
    Client.register(jid, "first secret", **settings(any_server))
    with Client(jid, "first secret", **settings(any_server)) as client:
        assert client.jid is not None and client.jid.bare == jid
        client.ping()


def test_register_over_direct_tls(any_server: Server) -> None:
    jid = fresh_jid(any_server)
    Client.register(jid, "pw", **{**settings(any_server), "port": any_server.tls_port, "tls": "direct"})
    with Client(jid, "pw", **settings(any_server)) as client:
        assert client.is_connected


def test_registering_an_existing_account_fails_typed(any_server: Server) -> None:
    existing = any_server.new_account()
    with pytest.raises(AccountExistsError) as caught:
        Client.register(existing, "whatever", **settings(any_server))
    assert isinstance(caught.value, IqError) and caught.value.condition == "conflict"
    # The existing account keeps its password.
    with Client(existing, any_server.password, **settings(any_server)) as client:
        assert client.is_connected


def test_bad_arguments_are_refused_before_connecting(server: Server) -> None:
    with pytest.raises(ValueError):
        Client.register(server.domain, "pw", **settings(server))  # no localpart
    with pytest.raises(ValueError):
        Client.register(fresh_jid(server), "", **settings(server))


def test_change_password_then_only_the_new_one_works(any_server: Server,
                                                     connect_any: Callable[..., Client]) -> None:
    jid = any_server.new_account()
    client = connect_any(jid)
    client.registration.change_password("brand new secret")  # type: ignore[attr-defined]
    with Client(jid, "brand new secret", **settings(any_server)) as again:
        assert again.is_connected
    with pytest.raises(AuthenticationError):
        Client(jid, any_server.password, **settings(any_server)).connect()


def test_empty_new_password_is_refused_locally(connect: Callable[..., Client]) -> None:
    client = connect()
    with pytest.raises(ValueError):
        client.registration.change_password("")  # type: ignore[attr-defined]


def test_cancel_removes_the_account_and_ends_the_client_cleanly(any_server: Server) -> None:
    jid = fresh_jid(any_server)
    Client.register(jid, "pw", **settings(any_server))
    client = Client(jid, "pw", **settings(any_server))
    client.connect()
    ended: list[object] = []
    done = threading.Event()

    def on_disconnected(error: object) -> None:
        ended.append(error)
        done.set()

    reconnecting: list[object] = []
    client.on("disconnected", on_disconnected)
    client.on("reconnecting", reconnecting.append)
    client.registration.cancel()  # type: ignore[attr-defined]
    assert done.wait(15)
    assert ended == [None]          # the any_server's close was expected: no error
    assert reconnecting == []       # and no attempt to come back
    assert client.state == "disconnected" and not client.is_connected
    with pytest.raises(AuthenticationError):
        Client(jid, "pw", **settings(any_server)).connect()
    # The name is free again.
    Client.register(jid, "pw2", **settings(any_server))


def test_registration_error_is_an_iq_error() -> None:
    assert issubclass(AccountExistsError, RegistrationError)
    assert issubclass(RegistrationError, IqError)


def test_register_sample_creates_an_account_that_logs_in(server: Server) -> None:
    jid = fresh_jid(server)
    out = run_sample(server, "register.py", jid=jid, XMPP_PASSWORD="sample secret")
    assert out.returncode == 0, out.stderr
    assert f"registered {jid}" in out.stdout and f"logged in as {jid}/" in out.stdout
    again = run_sample(server, "register.py", jid=jid, XMPP_PASSWORD="sample secret")
    assert again.returncode != 0 and "already exists" in again.stderr
    ok = run_sample(server, "register.py", "--exist-ok", jid=jid,
                    XMPP_PASSWORD="sample secret")
    assert ok.returncode == 0, ok.stderr


# -- servers that do not register in-band (scripted fakes, plain text on loopback) --------------

REGISTER_FEATURE = "<register xmlns='http://jabber.org/features/iq-register'/>"
MECHANISMS = ("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN"
              "</mechanism></mechanisms>")


def fake(script: Callable[[Conn], None]) -> tuple[HostileServer, dict[str, Any]]:
    server = HostileServer(script)
    return server, dict(host="127.0.0.1", port=server.port, tls="none", timeout=5)


def answer_get(conn: Conn, query: str) -> None:
    conn.open_stream(MECHANISMS + REGISTER_FEATURE)
    iq_id = conn.read_until(r"<iq type=\"get\" id=\"([^\"]+)\"").group(1).decode()
    conn.send(f"<iq type='result' id='{iq_id}'>{query}</iq>")
    conn.read_until(r"</stream:stream>")


def test_server_without_the_feature_is_reported() -> None:
    def script(conn: Conn) -> None:
        conn.open_stream(MECHANISMS)
        conn.read_until(r"</stream:stream>")  # we only close, we send nothing
    server, options = fake(script)
    try:
        with pytest.raises(RegistrationNotSupportedError, match="does not offer"):
            Client.register("newbie@localhost", "pw", **options)
        assert server.done.wait(5)
    finally:
        server.close()
    assert server.error is None


def test_web_only_registration_is_reported_with_its_url() -> None:
    query = ("<query xmlns='jabber:iq:register'><instructions>Go to the web site"
             "</instructions><x xmlns='jabber:x:oob'><url>https://example.org/signup</url>"
             "</x></query>")
    server, options = fake(lambda conn: answer_get(conn, query))
    try:
        with pytest.raises(RegistrationNotSupportedError) as caught:
            Client.register("newbie@localhost", "pw", **options)
    finally:
        server.close()
    assert caught.value.url == "https://example.org/signup"
    assert caught.value.instructions == "Go to the web site"


def test_required_field_we_lack_is_reported_before_submitting() -> None:
    query = ("<query xmlns='jabber:iq:register'><username/><password/><email/></query>")
    server, options = fake(lambda conn: answer_get(conn, query))
    try:
        with pytest.raises(RegistrationError, match="email"):
            Client.register("newbie@localhost", "pw", **options)
    finally:
        server.close()
    assert server.error is None
