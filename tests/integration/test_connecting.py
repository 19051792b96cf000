"""Finding and securing the connection against the real Prosody: DNS SRV through a DNS
server on loopback (tests/integration/dnsserver.py), and the caller's own ssl.SSLContext."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp import Client, errors

from .conftest import Server
from .dnsserver import DNSServer

XMPP = "_xmpp-client._tcp.localhost"
XMPPS = "_xmpps-client._tcp.localhost"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def srv_client(server: Server, dns: DNSServer, **kwargs: object) -> Client:
    """A client of a fresh account on `server`'s domain ("localhost") with no host=, so it
    finds the server through `dns`."""
    options: dict[str, object] = dict(ca_file=server.ca, timeout=15, reconnect=False,
                                      resolver=dns.resolver())
    options.update(kwargs)
    return Client(server.new_account(), server.password, **options)  # type: ignore[arg-type]


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        try:
            client.disconnect(timeout=5)
        except errors.XMPPError:
            pass


# -- DNS SRV (RFC 6120 §3.2, RFC 2782, XEP-0368) ---------------------------------------------

def test_srv_records_are_tried_by_priority_until_one_answers(
        server: Server, closed_port: int, clients: list[Client]) -> None:
    with DNSServer({XMPP: [(0, 0, closed_port, "localhost."),
                           (10, 0, server.port, "localhost.")]}) as dns:
        client = srv_client(server, dns)
        clients.append(client)
        client.connect()
        assert client.is_connected
        assert f"{XMPP}." in dns.questions and f"{XMPPS}." in dns.questions


def test_xmpps_client_record_is_used_for_direct_tls(
        server: Server, closed_port: int, clients: list[Client]) -> None:
    with DNSServer({XMPPS: [(0, 0, server.tls_port, "localhost.")],
                    XMPP: [(0, 0, closed_port, "localhost.")]}) as dns:
        client = srv_client(server, dns)
        clients.append(client)
        client.connect()  # only the direct-TLS record leads anywhere
        assert client.is_connected


def test_srv_target_dot_stops_with_a_clear_error_instead_of_the_fallback(
        server: Server) -> None:
    # RFC 2782: one record with target "." says the service is decidedly not available.
    # port= is where the RFC 6120 §3.2.2 fallback would go, and a server listens there:
    # reaching it would prove the record was ignored.
    with DNSServer({XMPP: [(0, 0, 0, ".")]}) as dns:
        client = srv_client(server, dns, port=server.port)
        with pytest.raises(errors.NoXMPPServiceError) as caught:
            client.connect()
    assert isinstance(caught.value, errors.ConnectionError)
    message = str(caught.value)
    assert XMPP in message and '"."' in message and "5222" not in message
    assert not client.is_connected


def test_srv_target_dot_for_direct_tls_alone_leaves_starttls(
        server: Server, clients: list[Client]) -> None:
    # XEP-0368 §3: "." under _xmpps-client only says there is no direct TLS.
    with DNSServer({XMPPS: [(0, 0, 0, ".")],
                    XMPP: [(0, 0, server.port, "localhost.")]}) as dns:
        client = srv_client(server, dns)
        clients.append(client)
        client.connect()
        assert client.is_connected
        with pytest.raises(errors.NoXMPPServiceError):
            srv_client(server, dns, tls="direct").connect()


def test_a_silent_resolver_leaves_time_for_the_fallback_to_the_domain(
        server: Server, clients: list[Client]) -> None:
    # Both SRV lookups time out; the fallback (the domain itself, on port=) must still be
    # tried within the same connect timeout. Before, each lookup took the whole timeout.
    with DNSServer(silent=True) as dns:
        client = srv_client(server, dns, port=server.port, timeout=10)
        clients.append(client)
        client.connect()
        assert client.is_connected
        assert f"{XMPPS}." in dns.questions and f"{XMPP}." in dns.questions


# -- the caller's own TLS context -------------------------------------------------------------

def harness_context(server: Server) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


@pytest.mark.parametrize("keyword", ["ssl_context", "verify"])
def test_own_ssl_context_trusting_the_harness_ca_connects(
        server: Server, clients: list[Client], keyword: str) -> None:
    context = harness_context(server)
    client = Client(server.new_account(), server.password, host=server.host, port=server.port,
                    timeout=15, reconnect=False, **{keyword: context})
    clients.append(client)
    client.connect()
    assert client.is_connected and client.ssl_context is context and client.verify


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_own_ssl_context_without_the_ca_fails_before_authentication(
        server: Server, tls: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but trusts nobody
    port = server.port if tls == "starttls" else server.tls_port
    client = Client(server.new_account(), server.password, host=server.host, port=port,
                    tls=tls, timeout=15, reconnect=False, ssl_context=context)
    with pytest.raises(errors.TLSError) as caught:
        client.connect()
    assert "could not be verified" in str(caught.value)
    assert client.mechanism is None  # no SASL exchange took place  # type: ignore[attr-defined]


def test_own_ssl_context_is_used_for_http_upload(server: Server, clients: list[Client],
                                                 tmp_path: Path) -> None:
    from simplexmpp.ext.upload import http_session
    context = harness_context(server)
    client = Client(server.new_account(), server.password, host=server.host, port=server.port,
                    timeout=15, reconnect=False, ssl_context=context)
    clients.append(client)
    client.connect()
    path = tmp_path / "ctx.txt"
    path.write_bytes(b"through the caller's context\n")
    url = client.upload.file(str(path))  # type: ignore[attr-defined]
    with http_session(client) as session:
        assert session.get(url, timeout=15).content == path.read_bytes()
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED  # untouched


def test_contradictory_tls_settings_are_refused(server: Server) -> None:
    context = harness_context(server)
    jid = f"nobody@{server.domain}"
    with pytest.raises(ValueError, match="ca_file"):
        Client(jid, "x", ssl_context=context, ca_file=server.ca)
    with pytest.raises(ValueError, match="verify=False"):
        Client(jid, "x", ssl_context=context, verify=False)
    with pytest.raises(ValueError, match="two TLS contexts"):
        Client(jid, "x", ssl_context=context, verify=harness_context(server))
    with pytest.raises(ValueError, match="ssl.SSLContext"):
        Client(jid, "x", verify="/etc/ssl/certs")  # type: ignore[arg-type]
    # The same context twice is no contradiction.
    assert Client(jid, "x", ssl_context=context, verify=context).ssl_context is context
