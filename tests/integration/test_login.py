"""Modern login against a real Prosody (scripts/prosody-up --sasl2): SASL2, Bind2, FAST tokens
kept in a token store, inline stream management, channel binding; and the RFC 6120 login
unchanged where the server has no SASL2."""

from __future__ import annotations

import json
import logging
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp.errors import AuthenticationError
from simplexmpp.tokens import FastToken, TokenStore

from .conftest import Server
from .proxy import FaultProxy


class Wire(logging.Handler):
    """What the clients sent, from the wire log (SASL data redacted, tags and attributes
    kept)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " SEND: " in message:
            self.sent.append(message.partition(" SEND: ")[2])

    def text(self) -> str:
        return "".join(self.sent)


@pytest.fixture
def wire() -> Iterator[Wire]:
    handler = Wire()
    logger = logging.getLogger("simplexmpp.wire")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def authenticate_of(text: str) -> str:
    match = re.search(r"<authenticate [^>]*>", text)
    assert match, text
    return match.group(0)


def test_second_connect_with_a_token_store_logs_in_with_fast(server_sasl2: Server,
                                                             tmp_path: Path,
                                                             wire: Wire) -> None:
    jid = server_sasl2.new_account()
    store_path = tmp_path / "tokens"
    with server_sasl2.client(jid, token_store=store_path) as first:
        assert first.mechanism == "SCRAM-SHA-256"
        assert first.jid is not None and first.jid.resource.startswith("simplexmpp")
        first_resource = first.jid.resource
    first_wire = wire.text()
    # one <authenticate/> (SASL2), asking for a token bound to TLS 1.3's exporter; no <auth/>
    assert 'mechanism="SCRAM-SHA-256"' in authenticate_of(first_wire)
    assert '<request-token xmlns="urn:xmpp:fast:0" mechanism="HT-SHA-256-EXPR"' in first_wire
    assert "<auth " not in first_wire and "urn:ietf:params:xml:ns:xmpp-bind" not in first_wire
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    stored = TokenStore(store_path).get(jid)
    assert stored is not None and stored.mechanism == "HT-SHA-256-EXPR"
    assert stored.token not in first_wire  # the wire log redacts it

    wire.sent.clear()
    with server_sasl2.client(jid, password=None, token_store=store_path) as second:
        assert second.mechanism == "HT-SHA-256-EXPR"
        assert second.jid is not None and second.jid.resource == first_resource  # stable
        assert second.ping(timeout=10) >= 0
    second_wire = wire.text()
    auth = authenticate_of(second_wire)
    assert 'mechanism="HT-SHA-256-EXPR"' in auth
    assert '<fast xmlns="urn:xmpp:fast:0"' in second_wire
    assert "SCRAM" not in second_wire and "<response" not in second_wire  # one round trip

    # The server rotated the token at that login (XEP-0484 §4.4): the new one is kept, and works.
    rotated = TokenStore(store_path).get(jid)
    assert rotated is not None and rotated.token != stored.token
    with server_sasl2.client(jid, password=None, token_store=store_path) as third:
        assert third.mechanism == "HT-SHA-256-EXPR"


def test_rejected_token_falls_back_to_the_password_and_stores_a_new_one(
        server_sasl2: Server, tmp_path: Path, wire: Wire) -> None:
    jid = server_sasl2.new_account()
    store = TokenStore(tmp_path / "tokens")
    store.put(jid, FastToken("HT-SHA-256-NONE", "secret-token:not-issued-by-this-server"))
    with server_sasl2.client(jid, token_store=store) as client:
        assert client.mechanism == "SCRAM-SHA-256"
    assert 'mechanism="HT-SHA-256-NONE"' in wire.text()  # the token was tried first
    fresh = store.get(jid)
    assert fresh is not None and fresh.token != "secret-token:not-issued-by-this-server"


def test_rejected_token_without_password_is_an_authentication_error(server_sasl2: Server,
                                                                    tmp_path: Path) -> None:
    jid = server_sasl2.new_account()
    store = TokenStore(tmp_path / "tokens")
    store.put(jid, FastToken("HT-SHA-256-NONE", "secret-token:bogus"))
    client = server_sasl2.client(jid, password=None, token_store=store)
    with pytest.raises(AuthenticationError) as info:
        client.connect()
    assert info.value.condition == "not-authorized"
    assert "FAST token" in str(info.value) and "simplexmpp login" in str(info.value)
    assert store.get(jid) is None  # XEP-0484 §5: discarded


def test_token_store_without_password_and_without_token_says_what_to_do(
        server_sasl2: Server, tmp_path: Path) -> None:
    client = server_sasl2.client(server_sasl2.new_account(), password=None,
                                 token_store=tmp_path / "empty")
    with pytest.raises(AuthenticationError) as info:
        client.connect()
    assert info.value.condition == "no-mechanism"


def test_inline_stream_management_resumes_the_rfc6120_way_after_a_cut(
        server_sasl2: Server, tmp_path: Path, wire: Wire) -> None:
    proxy = FaultProxy(server_sasl2.port)
    jid = server_sasl2.new_account()
    client = server_sasl2.client(jid, port=proxy.port, token_store=tmp_path / "t")
    try:
        client.connect()
        assert client.inline_features >= {"urn:xmpp:sm:3"}
        assert '<enable xmlns="urn:xmpp:sm:3" resume="true"' in authenticate_block(wire.text())
        resumed = threading.Event()
        client.on("resumed", lambda jid: resumed.set())
        wire.sent.clear()
        proxy.cut_all()
        assert resumed.wait(20), "the session was not resumed"
        again = wire.text()
        # asked inline first (Prosody 0.12 answers feature-not-implemented), then <resume/>
        assert '<resume xmlns="urn:xmpp:sm:3"' in authenticate_block(again)
        assert re.search(r'</authenticate>.*<resume xmlns="urn:xmpp:sm:3"', again, re.S)
        assert client.ping(timeout=10) >= 0
    finally:
        client.disconnect()
        proxy.close()


def authenticate_block(text: str) -> str:
    match = re.search(r"<authenticate .*?</authenticate>", text, re.S)
    assert match, text
    return match.group(0)


def test_explicit_resource_is_kept_over_sasl2(server_sasl2: Server, wire: Wire) -> None:
    with server_sasl2.client(server_sasl2.new_account(), resource="desk") as client:
        assert client.jid is not None and client.jid.resource == "desk"
    assert "urn:xmpp:bind:0" not in authenticate_block(wire.text())


def test_tls12_uses_tls_unique_for_scram_plus_and_the_token(server_sasl2_tls12: Server,
                                                           tmp_path: Path) -> None:
    jid = server_sasl2_tls12.new_account()
    with server_sasl2_tls12.client(jid, token_store=tmp_path / "t") as first:
        assert first.mechanism == "SCRAM-SHA-256-PLUS"
    token = TokenStore(tmp_path / "t").get(jid)
    assert token is not None and token.mechanism == "HT-SHA-256-UNIQ"
    with server_sasl2_tls12.client(jid, password=None, token_store=tmp_path / "t") as second:
        assert second.mechanism == "HT-SHA-256-UNIQ"


def test_server_without_sasl2_keeps_the_rfc6120_login(any_server: Server, tmp_path: Path,
                                                      wire: Wire) -> None:
    store = tmp_path / "t"
    with any_server.client(any_server.new_account(), token_store=store) as client:
        assert client.mechanism is not None and client.mechanism.startswith("SCRAM-")
    text = wire.text()
    assert "<authenticate" not in text and '<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl"' \
        in text and "urn:ietf:params:xml:ns:xmpp-bind" in text
    data = json.loads(store.read_text()) if store.exists() else {"accounts": {}}
    assert data["accounts"] == {}


def test_cli_login_once_then_commands_run_without_the_password(server_sasl2: Server,
                                                               tmp_path: Path) -> None:
    from .test_cli import run
    jid = server_sasl2.new_account()
    store = tmp_path / "cli-tokens"
    out = run(server_sasl2, "login", "--token-store", str(store), jid=jid)
    assert out.returncode == 0, out.stderr
    assert "stored a FAST token (HT-SHA-256-EXPR" in out.stdout and str(store) in out.stdout
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    # no XMPP_PASSWORD, and stdin is no terminal to ask on: only the token can log in
    ping = run(server_sasl2, "ping", "--debug", "--token-store", str(store), jid=jid,
               env_extra={"XMPP_PASSWORD": ""})
    assert ping.returncode == 0, ping.stderr
    assert 'mechanism="HT-SHA-256-EXPR"' in ping.stderr
    token = TokenStore(store).get(jid)
    assert token is not None and token.token not in ping.stderr


def test_cli_login_where_the_server_has_no_fast_exits_2(server: Server,
                                                        tmp_path: Path) -> None:
    from .test_cli import run
    out = run(server, "login", "--token-store", str(tmp_path / "t"),
              jid=server.new_account())
    assert out.returncode == 2 and "issued no FAST token" in out.stderr


def test_carbons_and_csi_come_back_inside_the_login_of_a_new_session(
        server_sasl2: Server, wire: Wire) -> None:
    proxy = FaultProxy(server_sasl2.port)
    client = server_sasl2.client(server_sasl2.new_account(), port=proxy.port,
                                 stream_management=False)  # a cut means a new session
    try:
        client.connect()
        client.carbons.enable()
        client.csi.inactive()
        back = threading.Event()
        client.on("connected", lambda jid: back.set())
        wire.sent.clear()
        proxy.cut_all()
        assert back.wait(20), "no new session"
        assert client.inline_features >= {"urn:xmpp:carbons:2", "urn:xmpp:csi:0"}
        text = wire.text()
        bind = re.search(r'<bind xmlns="urn:xmpp:bind:0">.*?</bind>', text, re.S)
        assert bind and '<enable xmlns="urn:xmpp:carbons:2"' in bind.group(0)
        assert '<inactive xmlns="urn:xmpp:csi:0"' in bind.group(0)
        client.ping(timeout=10)  # anything the session_started hooks sent is out by now
        after = wire.text().partition("</authenticate>")[2]
        assert "urn:xmpp:carbons:2" not in after and "urn:xmpp:csi:0" not in after
    finally:
        client.disconnect()
        proxy.close()


def test_cli_login_with_a_wrong_password_keeps_the_stored_token(server_sasl2: Server,
                                                                tmp_path: Path) -> None:
    from .test_cli import run
    jid = server_sasl2.new_account()
    store = tmp_path / "cli-tokens"
    assert run(server_sasl2, "login", "--token-store", str(store), jid=jid).returncode == 0
    token = TokenStore(store).get(jid)
    failed = run(server_sasl2, "login", "--token-store", str(store), jid=jid,
                 env_extra={"XMPP_PASSWORD": "wrong"})
    assert failed.returncode == 2
    assert TokenStore(store).get(jid) == token
