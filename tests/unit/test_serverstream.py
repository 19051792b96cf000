"""The sans-IO server side: the SCRAM and PLAIN server of simplexmpp.sasl (RFC 5802/7677
vectors) and ServerStream, replayed from transcripts and negotiated against ClientStream in
memory (both machines, no socket)."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from simplexmpp.errors import AuthenticationError, StreamError
from simplexmpp.jid import JID
from simplexmpp.sasl import (PasswordAccounts, Scram, ScramCredentials, ScramServer,
                             check_plain)
from simplexmpp.serverstream import (SERVER_TRANSITIONS, BindRequested, ServerState,
                                     ServerStream, UserAuthenticated)
from simplexmpp.stream import Authenticated, ClientStream, Ready, StartTLS, StreamClosed

from .test_sasl import VECTORS

CLIENT_HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                 "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


class _VectorAccounts:
    """The account "user" with password "pencil" and the salt of the RFC examples."""

    def __init__(self, salt_b64: str) -> None:
        self.salt = base64.b64decode(salt_b64)

    def scram_credentials(self, username: str,
                          mechanism: str) -> tuple[str, ScramCredentials] | None:
        if username != "user":
            return None
        return "user", ScramCredentials.from_password(mechanism, "pencil", self.salt, 4096)

    def check_password(self, username: str, password: str) -> str | None:
        return "user" if (username, password) == ("user", "pencil") else None


def _vector_server(name: str) -> ScramServer:
    v = VECTORS[name]
    first = dict(part.split("=", 1) for part in v["server_first"].split(","))
    return ScramServer(name, _VectorAccounts(first["s"]),
                       nonce=first["r"][len(v["nonce"]):])


# -- the SASL server (simplexmpp.sasl) ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VECTORS))
def test_scram_server_reproduces_the_rfc_examples(name: str) -> None:
    # RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256): the server's two messages, byte for byte.
    v = VECTORS[name]
    server = _vector_server(name)
    assert server.first(f"n,,n=user,r={v['nonce']}".encode()) == v["server_first"].encode()
    assert server.account is None
    assert server.final(v["client_final"].encode()) == v["server_final"].encode()
    assert server.account == "user"


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_scram_server_and_client_agree(name: str) -> None:
    accounts = PasswordAccounts({"alice": "s\u00e9cret"})
    client = Scram(name, "alice", "s\u00e9cret")
    server = ScramServer(name, accounts)
    final = client.challenge(server.first(client.initial_response()))
    client.success(server.final(final))   # the client checks the server's signature
    assert server.account == "alice"


def test_scram_server_refuses_a_wrong_proof() -> None:
    v = VECTORS["SCRAM-SHA-256"]
    server = _vector_server("SCRAM-SHA-256")
    server.first(f"n,,n=user,r={v['nonce']}".encode())
    forged = v["client_final"].replace("p=dHzb", "p=dHzc")
    with pytest.raises(AuthenticationError) as info:
        server.final(forged.encode())
    assert info.value.condition == "not-authorized" and server.account is None


@pytest.mark.parametrize("first,condition", [
    (b"p=tls-unique,,n=user,r=abc", "not-authorized"),    # binds, but no -PLUS was offered
    (b"x,,n=user,r=abc", "malformed-request"),
    (b"n,,n=user", "malformed-request"),                  # no nonce
    (b"n,,n=us=3Xer,r=abc", "malformed-request"),         # bad escape (RFC 5802 §5.1)
    (b"n,,m=ext,n=user,r=abc", "malformed-request"),      # mandatory extension
    (b"n,,n=nobody,r=abc", "not-authorized"),
    (b"n", "malformed-request"),
])
def test_scram_server_refuses_bad_client_first(first: bytes, condition: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        _vector_server("SCRAM-SHA-1").first(first)
    assert info.value.condition == condition


def test_scram_server_refuses_a_final_message_out_of_turn() -> None:
    v = VECTORS["SCRAM-SHA-1"]
    server = _vector_server("SCRAM-SHA-1")
    with pytest.raises(AuthenticationError, match="no SCRAM exchange"):
        server.final(v["client_final"].encode())
    server.first(f"n,,n=user,r={v['nonce']}".encode())
    with pytest.raises(AuthenticationError) as info:
        server.final(v["client_final"].replace(",r=fyko", ",r=fykX").encode())
    assert info.value.condition == "not-authorized"


def test_check_plain() -> None:
    accounts = PasswordAccounts({"alice": "secret"})
    assert check_plain(b"\0alice\0secret", accounts) == ("alice", None)
    assert check_plain(b"alice@localhost\0alice\0secret", accounts) == ("alice",
                                                                         "alice@localhost")
    for message, condition in ((b"\0alice\0wrong", "not-authorized"),
                               (b"\0bob\0secret", "not-authorized"),
                               (b"alice\0secret", "malformed-request"),
                               (b"\0alice\0\xff", "malformed-request")):
        with pytest.raises(AuthenticationError) as info:
            check_plain(message, accounts)
        assert info.value.condition == condition


def test_password_accounts_keep_one_salt_per_account_and_normalise_names() -> None:
    accounts = PasswordAccounts({"alice": "pw"}, normalise=str.lower)
    first = accounts.scram_credentials("Alice", "SCRAM-SHA-1")
    again = accounts.scram_credentials("alice", "SCRAM-SHA-1")
    assert first is not None and again is not None and first == again
    assert first[0] == "alice" and first[1].iterations == 4096
    assert accounts.scram_credentials("bob", "SCRAM-SHA-1") is None
    assert accounts.check_password("ALICE", "pw") == "alice"


# -- ServerStream against ClientStream, in memory -----------------------------------------------

class Pair:
    """A ClientStream and a ServerStream wired back to back; binds what the client asks for."""

    def __init__(self, client: ClientStream, server: ServerStream) -> None:
        self.client, self.server = client, server
        self.client_events: list[object] = []
        self.server_events: list[object] = []
        client.start()

    def pump(self) -> None:
        for _ in range(100):
            data = self.client.data_to_send()
            if data:
                events = self.server.receive_data(data)
                self.server_events += events
                for event in events:
                    if isinstance(event, BindRequested):
                        account = self.server.account
                        self.server_events += self.server.bind(
                            JID(f"{account}@localhost/{event.resource or 'srv'}"))
            reply = self.server.data_to_send()
            if reply:
                events = self.client.receive_data(reply)
                self.client_events += events
                if any(isinstance(e, StartTLS) for e in events):
                    self.client.tls_established({})
            if self.server.state is ServerState.TLS_HANDSHAKE:
                self.server.tls_established()   # <proceed/> is out: the handshake
            if not data and not reply:
                return
        raise AssertionError("the streams never went quiet")


def _pair(password: str = "secret", *, mechanisms: list[str] | None = None,
          tls: bool = True, resource: str | None = "phone") -> Pair:
    server = ServerStream("localhost", PasswordAccounts({"alice": "secret"}), tls=tls)
    client = ClientStream(JID("alice@localhost"), password, tls="starttls" if tls else "none",
                          resource=resource, mechanisms=mechanisms, sm=False)
    return Pair(client, server)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_a_client_stream_logs_in_to_a_server_stream(mechanism: str) -> None:
    pair = _pair(mechanisms=[mechanism])
    pair.pump()
    assert pair.client.state == "ready" and pair.client.mechanism == mechanism
    assert pair.client.encrypted and pair.server.encrypted
    assert [type(e) for e in pair.client_events] == [StartTLS, Authenticated, Ready]
    assert UserAuthenticated("alice", mechanism) in pair.server_events
    assert pair.client.jid == JID("alice@localhost/phone") == pair.server.jid
    assert pair.server.state is ServerState.READY


def test_the_strongest_offered_mechanism_is_used_and_the_server_picks_a_resource() -> None:
    pair = _pair(resource=None)
    pair.pump()
    assert pair.client.mechanism == "SCRAM-SHA-256"
    assert pair.client.jid == JID("alice@localhost/srv")


def test_stanzas_flow_both_ways_and_the_close_is_answered() -> None:
    pair = _pair()
    pair.pump()
    pair.client.send(ET.Element("{jabber:client}message", to="bob@localhost", id="m1"))
    pair.pump()
    stanzas = [e for e in pair.server_events if isinstance(e, ET.Element)]
    assert [(s.tag, s.get("id")) for s in stanzas] == [("{jabber:client}message", "m1")]
    pair.server.send(ET.Element("{jabber:client}message", {"from": "bob@localhost/x"}, id="m2"))
    pair.pump()
    assert [e.get("id") for e in pair.client_events if isinstance(e, ET.Element)] == ["m2"]
    pair.client.close()
    pair.pump()
    assert isinstance(pair.server_events[-1], StreamClosed)
    assert pair.server.state is ServerState.CLOSED and pair.client.state == "closed"


def test_a_wrong_password_fails_and_the_server_lets_the_client_try_again() -> None:
    pair = _pair("wrong", mechanisms=["PLAIN"])
    with pytest.raises(AuthenticationError) as info:
        pair.pump()
    assert info.value.condition == "not-authorized"
    assert pair.server.state is ServerState.AUTHENTICATING and pair.server.account is None
    # RFC 6120 §6.4.5: the server waits for another attempt.
    right = base64.b64encode(b"\0alice\0secret").decode()
    pair.server.receive_data(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{right}</auth>".encode())
    assert pair.server.account == "alice"


def test_tls_is_required_when_offered() -> None:
    pair = _pair()
    pair.server.receive_data(CLIENT_HEADER.encode())
    pair.server.data_to_send()
    with pytest.raises(StreamError) as info:
        pair.server.receive_data(f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNl</auth>"
                                 .encode())
    assert info.value.condition == "policy-violation" and not info.value.by_peer
    sent = pair.server.data_to_send().decode()
    assert "<policy-violation" in sent and sent.endswith("</stream:stream>")


# -- ServerStream transcripts --------------------------------------------------------------------

def _server(**kwargs: object) -> ServerStream:
    return ServerStream("localhost", PasswordAccounts({"alice": "secret"}),
                        **kwargs)  # type: ignore[arg-type]


def _authenticated() -> ServerStream:
    server = _server()
    server.receive_data(CLIENT_HEADER.encode())
    plain = base64.b64encode(b"\0alice\0secret").decode()
    events = server.receive_data(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>"
                                 .encode())
    assert events == [UserAuthenticated("alice", "PLAIN")]
    server.receive_data(CLIENT_HEADER.encode())
    assert server.state is ServerState.BINDING
    server.data_to_send()
    return server


@pytest.mark.parametrize("header,condition", [
    (CLIENT_HEADER.replace("jabber:client", "jabber:server"), "invalid-namespace"),
    (CLIENT_HEADER.replace("version='1.0'", "version='0.9'"), "unsupported-version"),
    (CLIENT_HEADER.replace("to='localhost'", "to='elsewhere'"), "host-unknown"),
    (CLIENT_HEADER.replace("to='localhost' ", ""), "host-unknown"),
])
def test_a_bad_header_is_answered_with_our_header_then_the_stream_error(
        header: str, condition: str) -> None:
    server = _server()
    with pytest.raises(StreamError) as info:
        server.receive_data(header.encode())
    assert info.value.condition == condition
    sent = server.data_to_send().decode()
    # RFC 6120 §4.9.1.1: our header first, so the error has a stream to travel in.
    assert sent.startswith("<?xml version='1.0'?><stream:stream from=\"localhost\"")
    assert f"<{condition} " in sent and sent.endswith("</stream:stream>")
    assert server.state is ServerState.CLOSED


def test_features_offer_the_mechanisms_in_order() -> None:
    server = _server(mechanisms=["SCRAM-SHA-1", "PLAIN"])
    server.receive_data(CLIENT_HEADER.encode())
    sent = server.data_to_send().decode()
    assert "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>" in sent
    with pytest.raises(ValueError):
        _server(mechanisms=["DIGEST-MD5"])


def test_sasl_failures_are_answered_and_the_stream_goes_on() -> None:
    server = _server(mechanisms=["SCRAM-SHA-1"])
    server.receive_data(CLIENT_HEADER.encode())
    server.data_to_send()
    for request, condition in (
            (f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNl</auth>", "invalid-mechanism"),
            (f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>!!!</auth>", "incorrect-encoding"),
            (f"<response xmlns='{SASL}'>bj0=</response>", "malformed-request"),
            (f"<abort xmlns='{SASL}'/>", "aborted")):
        assert server.receive_data(request.encode()) == []
        assert server.data_to_send().decode().startswith(
            f'<failure xmlns="{SASL}"><{condition}/>'), request
        assert server.state is ServerState.AUTHENTICATING


def test_an_empty_initial_response_gets_an_empty_challenge() -> None:
    # RFC 6120 §6.4.2: no initial response in <auth/>: the server asks with an empty challenge.
    server = _server()
    server.receive_data(CLIENT_HEADER.encode())
    server.data_to_send()
    server.receive_data(f"<auth xmlns='{SASL}' mechanism='PLAIN'/>".encode())
    assert server.data_to_send() == f'<challenge xmlns="{SASL}"/>'.encode()
    plain = base64.b64encode(b"\0alice\0secret").decode()
    events = server.receive_data(f"<response xmlns='{SASL}'>{plain}</response>".encode())
    assert events == [UserAuthenticated("alice", "PLAIN")]


def test_acting_as_someone_else_is_refused() -> None:
    server = _server()
    server.receive_data(CLIENT_HEADER.encode())
    server.data_to_send()
    plain = base64.b64encode(b"bob@localhost\0alice\0secret").decode()
    server.receive_data(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>".encode())
    assert b"<invalid-authzid/>" in server.data_to_send() and server.account is None


def test_nothing_but_sasl_before_authentication() -> None:
    server = _server()
    server.receive_data(CLIENT_HEADER.encode())
    with pytest.raises(StreamError) as info:
        server.receive_data(b"<message to='bob@localhost'/>")
    assert info.value.condition == "not-authorized"


def test_starttls_that_was_not_offered_is_refused_and_the_stream_closed() -> None:
    server = _server()
    server.receive_data(CLIENT_HEADER.encode())
    server.data_to_send()
    server.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert server.data_to_send() == (b'<failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>'
                                     b"</stream:stream>")
    assert server.state is ServerState.CLOSED


def test_stanzas_behind_a_bind_request_wait_for_the_answer() -> None:
    server = _authenticated()
    events = server.receive_data(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>r</resource></bind></iq><message to='bob@localhost' id='m1'/>")
    assert len(events) == 1 and isinstance(events[0], BindRequested)
    assert events[0].resource == "r"
    later = server.bind(JID("alice@localhost/r"))
    assert [e.get("id") for e in later if isinstance(e, ET.Element)] == ["m1"]
    assert server.data_to_send().decode() == (
        '<iq type="result" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind">'
        "<jid>alice@localhost/r</jid></bind></iq>")


def test_a_refused_bind_can_be_asked_again() -> None:
    server = _authenticated()
    server.receive_data(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'"
                        b"/></iq>")
    server.refuse_bind("conflict")
    assert b'type="error"' in server.data_to_send()
    assert server.state is ServerState.BINDING
    with pytest.raises(RuntimeError):
        server.bind(JID("alice@localhost/x"))   # nothing pending
    with pytest.raises(StreamError) as info:
        server.receive_data(b"<message to='bob@localhost'/>")
    assert info.value.condition == "not-authorized"


def test_every_server_state_has_its_rules() -> None:
    assert set(SERVER_TRANSITIONS) == set(ServerState)
    assert SERVER_TRANSITIONS[ServerState.CLOSED] == frozenset()
    server = _server()
    with pytest.raises(RuntimeError, match="without a pending StartTLS"):
        server.tls_established()
    with pytest.raises(RuntimeError, match="no transition from wait-header to ready"):
        server._enter(ServerState.READY)


def test_the_server_stream_imports_no_socket_ssl_or_threads() -> None:
    import ast

    import simplexmpp.serverstream as module
    assert module.__file__ is not None
    with open(module.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "ssl", "threading", "selectors", "asyncio"}


def test_a_stream_error_from_the_client_closes_the_stream() -> None:
    server = _authenticated()
    server.receive_data(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'"
                        b"/></iq>")
    server.bind(JID("alice@localhost/r"))
    server.data_to_send()
    with pytest.raises(StreamError) as info:
        server.receive_data(b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'"
                            b"/></stream:error>")
    assert info.value.by_peer and info.value.condition == "conflict"
    assert server.data_to_send() == b"</stream:stream>" and server.state is ServerState.CLOSED
