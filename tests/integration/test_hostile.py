"""A misbehaving server gets a typed error, in bounded time, with no leaked thread or socket."""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import pytest

from simplexmpp import Client, Iq, errors, sasl

from .hostile import HEADER, Conn, HostileServer

STREAM_ERRORS = ["bad-format", "conflict", "connection-timeout", "host-gone", "host-unknown",
                 "improper-addressing", "internal-server-error", "invalid-from",
                 "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed",
                 "policy-violation", "remote-connection-failed", "reset",
                 "resource-constraint", "restricted-xml", "see-other-host", "system-shutdown",
                 "undefined-condition", "unsupported-encoding", "unsupported-feature",
                 "unsupported-stanza-type", "unsupported-version", "bad-namespace-prefix"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def library_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("simplexmpp-")]


@pytest.fixture
def hostile() -> Iterator[Callable[..., tuple[HostileServer, Client]]]:
    """hostile(script, **client_kwargs) -> (server, client not yet connected)."""
    servers: list[HostileServer] = []
    fds_before = open_fds()

    def make(script: Callable[[Conn], None], jid: str = "localhost",
             password: str | None = None, **kwargs: object) -> tuple[HostileServer, Client]:
        server = HostileServer(script)
        servers.append(server)
        options: dict[str, object] = dict(host="127.0.0.1", port=server.port, tls="none",
                                          timeout=2, reconnect=False)
        if password is None:
            options["mechanisms"] = ["ANONYMOUS"]
        options.update(kwargs)
        return server, Client(jid, password, **options)  # type: ignore[arg-type]

    yield make
    for server in servers:
        server.close()
        assert server.error is None, f"the fake server's script failed: {server.error!r}"
    deadline = time.monotonic() + 5
    while library_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert library_threads() == [], "a client thread outlived its client"
    assert open_fds() <= fds_before, "a socket or pipe was leaked"


def connect_fails(client: Client, exc_type: type[BaseException]) -> BaseException:
    started = time.monotonic()
    with pytest.raises(exc_type) as info:
        client.connect()
    assert time.monotonic() - started < client.timeout + 5, "the failure took far too long"
    assert not client.is_connected
    return info.value


def header_then(payload: bytes) -> Callable[[Conn], None]:
    def script(conn: Conn) -> None:
        conn.read_until(r"<stream:stream[^>]*>")
        conn.send(HEADER.format(id="h").encode() + payload)
        conn.read_until(r"</stream:stream>")
    return script


def test_billion_laughs_is_refused_as_restricted_xml(hostile) -> None:
    laughs = (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
              + b"".join(b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i else b"&lol;") * 10)
                         for i in range(1, 10))
              + b"]><stream:stream xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>&lol9;")

    def script(conn: Conn) -> None:
        conn.read_until(r"<stream:stream[^>]*>")
        conn.send(laughs)
        conn.read_until(r"restricted-xml")

    _, client = hostile(script)
    assert connect_fails(client, errors.StreamError).condition == "restricted-xml"


def test_external_entity_dtd_is_refused(hostile) -> None:
    xxe = (b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
           b"<stream:stream xmlns='jabber:client' "
           b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>&xxe;")

    def script(conn: Conn) -> None:
        conn.read_until(r"<stream:stream[^>]*>")
        conn.send(xxe)

    _, client = hostile(script)
    assert connect_fails(client, errors.StreamError).condition == "restricted-xml"


@pytest.mark.parametrize("payload, condition", [
    (b"<?evil processing instruction?>", "restricted-xml"),
    (b"<!-- a comment -->", "restricted-xml"),
    (b"<stream:features>&undefined;</stream:features>", "restricted-xml"),
    (b"<stream:features>\xff\xfe\xfd</stream:features>", "not-well-formed"),
    (b"<stream:features></wrong>", "not-well-formed"),
])
def test_forbidden_xml_after_the_header_is_refused(hostile, payload: bytes,
                                                   condition: str) -> None:
    _, client = hostile(header_then(payload))
    assert connect_fails(client, errors.StreamError).condition == condition


def test_wrong_stream_namespace_is_refused(hostile) -> None:
    def script(conn: Conn) -> None:
        conn.read_until(r"<stream:stream[^>]*>")
        conn.send("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' "
                  "version='1.0'>")

    _, client = hostile(script)
    assert connect_fails(client, errors.StreamError).condition == "invalid-namespace"


def test_hundred_megabyte_stanza_is_cut_off_at_the_size_limit(hostile) -> None:
    sent = []

    def script(conn: Conn) -> None:
        conn.anonymous_session()
        conn.send("<message><body>")
        chunk = b"x" * 65536
        for _ in range(100 * 16):  # 100 MiB, unless the client hangs up first
            conn.send(chunk)
            sent.append(len(chunk))

    server, client = hostile(script, timeout=10)
    client.connect()
    server.done.wait(20)
    assert sum(sent) < 10 << 20, "the client kept reading far past the stanza limit"
    assert isinstance(wait_disconnected(client), errors.StreamError)
    assert client._conn.error is not None and client._conn.error.condition == "policy-violation"


def wait_disconnected(client: Client) -> BaseException | None:
    done = threading.Event()
    seen: list[BaseException | None] = []
    client.on("disconnected", lambda exc: (seen.append(exc), done.set()))
    if client.state == "disconnected":
        return client._conn.error
    assert done.wait(15), "the client never reported the disconnection"
    return seen[0]


# Trickled inside an element, and inside a start tag that never closes (issue 14 item 2: the
# slow-stanza guard must run from the first byte of a stanza, not once its start tag closed).
@pytest.mark.parametrize("opening", ["<message><body>", "<message to='"],
                         ids=["inside-an-element", "inside-a-start-tag"])
def test_endless_trickled_stanza_ends_the_stream(hostile, opening: str) -> None:
    stop = threading.Event()

    def script(conn: Conn) -> None:
        conn.anonymous_session()
        conn.send(opening)
        while not stop.is_set():
            conn.send(b"x")
            time.sleep(0.01)

    server, client = hostile(script, timeout=1)
    client.connect()
    error = wait_disconnected(client)
    stop.set()
    assert isinstance(error, errors.StreamError) and error.condition == "policy-violation"


@pytest.mark.parametrize("condition", STREAM_ERRORS)
def test_each_stream_error_condition_is_raised_typed(hostile, condition: str) -> None:
    _, client = hostile(header_then(
        f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>go away</text>"
        "</stream:error></stream:stream>".encode()))
    error = connect_fails(client, errors.StreamError)
    assert error.condition == condition and error.by_peer and error.text == "go away"


def test_forged_iq_reply_from_another_jid_is_ignored(hostile) -> None:
    def script(conn: Conn) -> None:
        conn.anonymous_session()
        match = conn.read_until(r'<iq [^>]*to="bob@localhost/x"[^>]*>')
        iq_id = re.search(rb'id="([^"]+)"', match.group(0)).group(1).decode()
        conn.send(f"<iq type='result' id='{iq_id}' from='mallory@localhost/x'>"
                  "<query xmlns='urn:example' who='mallory'/></iq>")
        conn.send(f"<iq type='result' id='{iq_id}' from='bob@localhost/x'>"
                  "<query xmlns='urn:example' who='bob'/></iq>")
        conn.read_until(r"</stream:stream>")

    _, client = hostile(script)
    client.connect()
    result = client.iq(Iq.get("bob@localhost/x", ET.Element("{urn:example}query")))
    assert result.payload is not None and result.payload.get("who") == "bob"
    client.disconnect()


def test_forged_roster_push_is_ignored(hostile) -> None:
    def script(conn: Conn) -> None:
        conn.anonymous_session(jid="anon@localhost/r1")
        conn.send("<iq type='set' id='p1' from='mallory@localhost'><query "
                  "xmlns='jabber:iq:roster'><item jid='evil@localhost' name='Evil'/></query></iq>")
        conn.send("<iq type='set' id='p2'><query xmlns='jabber:iq:roster'>"
                  "<item jid='good@localhost' name='Good'/></query></iq>")
        conn.read_until(r"</stream:stream>")

    _, client = hostile(script, jid="anon@localhost")
    pushed = threading.Event()
    client.on("roster_push", lambda item, removed: pushed.set())
    client.connect()
    assert pushed.wait(5)
    assert "good@localhost" in client.roster
    assert "evil@localhost" not in client.roster
    client.disconnect()


def test_tls_downgrade_is_refused(hostile) -> None:
    def script(conn: Conn) -> None:
        conn.open_stream("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                         "<mechanism>PLAIN</mechanism></mechanisms>")
        conn.read_until(r"</stream:stream>")

    _, client = hostile(script, jid="alice@localhost", password="secret", tls="starttls")
    assert "downgrade" in str(connect_fails(client, errors.TLSError))


def test_scram_with_a_wrong_server_signature_is_refused(hostile) -> None:
    _, client = hostile(lambda conn: conn.scram_with_wrong_signature("password"),
                        jid="alice@localhost", password="password", mechanisms=["SCRAM-SHA-1"])
    error = connect_fails(client, errors.AuthenticationError)
    assert error.condition == "server-signature-mismatch"


def test_server_that_accepts_and_says_nothing_times_out(hostile) -> None:
    release = threading.Event()
    _, client = hostile(lambda conn: release.wait(10), timeout=1)
    connect_fails(client, errors.TimeoutError)
    release.set()


def test_server_that_hangs_up_at_once_gives_connection_error(hostile) -> None:
    _, client = hostile(lambda conn: conn.close())
    connect_fails(client, errors.ConnectionError)


def test_plain_text_to_a_non_loopback_host_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Client("alice@example.org", "pw", host="192.0.2.1", tls="none")


# Issue 14 item 3: a stanza whose 'from' is not a JID is dropped and logged in one line (an
# IQ request answered jid-malformed); the session lives. These froms are what Prosody itself
# refuses to route (see test_hostile_peers.py for those it passes), so a script sends them.
MALFORMED_FROMS = ["/", "a@b@localhost", "@localhost", "\u202e@localhost",
                   "x@localhost/\u202e", "\u2603@localhost"]


def answer_ping_then_close(conn: Conn) -> None:
    """Answer the ping by which disconnect() flushes, then wait for the client's close."""
    ping = conn.read_until(r'<iq [^>]*id="([^"]+)"[^>]*><ping ')
    conn.send(f"<iq type='result' from='localhost' id='{ping.group(1).decode()}'/>")
    conn.read_until(r"</stream:stream>")


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


@pytest.mark.parametrize("bad", MALFORMED_FROMS)
def test_stanzas_from_a_malformed_address_are_dropped_and_the_session_lives(
        hostile, caplog: pytest.LogCaptureFixture, bad: str) -> None:
    replies: list[str] = []
    frm = _xml_attr(bad)

    def script(conn: Conn) -> None:
        conn.anonymous_session(jid="anon@localhost/r1")
        conn.send(f"<presence from='{frm}'/>"
                  f"<presence from='{frm}' type='unavailable'/>"
                  f"<presence from='{frm}' type='subscribe'/>"
                  f"<message from='{frm}' type='chat' id='m1'><body>forged</body>"
                  "<request xmlns='urn:xmpp:receipts'/>"
                  "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
                  f"<message from='{frm}' type='chat' id='m2'>"
                  "<received xmlns='urn:xmpp:receipts' id='x'/></message>"
                  f"<message from='{frm}' type='chat' id='m3'>"
                  "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
                  f"<message from='good@localhost/x' to='{frm}' type='chat' id='m4'>"
                  "<body>forged too</body></message>"
                  f"<iq from='{frm}' type='get' id='q1'><query xmlns='urn:example'/></iq>"
                  f"<iq from='{frm}' type='set' id='q2'><query xmlns='jabber:iq:roster'>"
                  "<item jid='evil@localhost'/></query></iq>"
                  f"<iq from='{frm}' type='result' id='q3'/>")
        for _ in range(2):
            replies.append(conn.read_until(r"<iq [^>]*>.*?</iq>").group(0).decode())
        conn.send("<message from='good@localhost/x' type='chat' id='end'><body>end</body>"
                  "</message>")
        answer_ping_then_close(conn)

    _, client = hostile(script, jid="anon@localhost")
    events: list[object] = []
    for name in ("presence", "subscription_request", "receipt", "chat_state", "roster_push"):
        client.on(name, lambda *args, name=name: events.append((name, args)))
    with caplog.at_level(logging.WARNING, logger="simplexmpp"):
        client.connect()
        msg = client.next_message(timeout=10)
        assert msg.body == "end", "a message from a malformed address was delivered"
        assert client.is_connected and client._core.sessions == 1
        client.disconnect()
    assert events == []
    assert len(client.roster) == 0
    for reply, iq_id in zip(replies, ("q1", "q2")):
        assert f'id="{iq_id}"' in reply and 'type="error"' in reply and "jid-malformed" in reply
    dropped = [r for r in caplog.records if "with a malformed" in r.getMessage()]
    assert len(dropped) == 10 and all("\n" not in r.getMessage() for r in dropped)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_roster_push_from_our_other_resource_or_our_domain_is_refused(hostile) -> None:
    """Issue 14 item 4, RFC 6121 §2.1.6: only no 'from' or our bare JID may push."""
    replies: list[str] = []

    def push(iq_id: str, sender: str | None, contact: str) -> str:
        frm = f" from='{sender}'" if sender else ""
        return (f"<iq type='set' id='{iq_id}'{frm}><query xmlns='jabber:iq:roster'>"
                f"<item jid='{contact}'/></query></iq>")

    def script(conn: Conn) -> None:
        conn.anonymous_session(jid="anon@localhost/r1")
        conn.send(push("p1", "anon@localhost/evil", "evil1@localhost")
                  + push("p2", "localhost", "evil2@localhost")
                  + push("p3", "ANON@localhost", "good1@localhost")
                  + push("p4", None, "good2@localhost"))
        for _ in range(4):
            replies.append(conn.read_until(r"<iq [^>]*/>|<iq [^>]*[^/]>.*?</iq>")
                           .group(0).decode())
        answer_ping_then_close(conn)

    _, client = hostile(script, jid="anon@localhost")
    pushed = threading.Semaphore(0)
    client.on("roster_push", lambda item, removed: pushed.release())
    client.connect()
    assert pushed.acquire(timeout=5) and pushed.acquire(timeout=5)
    client.disconnect()
    assert sorted(str(jid) for jid in client.roster) == ["good1@localhost", "good2@localhost"]
    by_id = {re.search(r'id="([^"]+)"', r).group(1): r for r in replies}
    assert "service-unavailable" in by_id["p1"] and "service-unavailable" in by_id["p2"]
    assert 'type="result"' in by_id["p3"] and 'type="result"' in by_id["p4"]


def scram_challenge(mechanism: str, iterations: int) -> Callable[[Conn], None]:
    """A server that answers <auth/> with a SCRAM server-first asking for ``iterations``."""
    def script(conn: Conn) -> None:
        conn.open_stream("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                         f"<mechanism>{mechanism}</mechanism></mechanisms>")
        auth = conn.read_until(r"<auth [^>]*>([^<]*)</auth>")
        bare = base64.b64decode(auth.group(1)).decode().split(",", 2)[2]
        nonce = dict(p.split("=", 1) for p in bare.split(","))["r"] + "srv"
        first = f"r={nonce},s={base64.b64encode(b'salt-salt-salt').decode()},i={iterations}"
        conn.send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  f"{base64.b64encode(first.encode()).decode()}</challenge>")
        conn.read_until(r"</stream:stream>")
    return script


def test_huge_scram_iteration_count_is_refused_naming_it(hostile) -> None:
    """Issue 14 item 6: 10**7 iterations of SCRAM-SHA-512 (5.8 s of hashing) are refused."""
    _, client = hostile(scram_challenge("SCRAM-SHA-512", 10_000_000), jid="alice@localhost",
                        password="password", mechanisms=["SCRAM-SHA-512"])
    error = connect_fails(client, errors.AuthenticationError)
    assert "10000000" in str(error)


def test_connect_timeout_holds_while_scram_hashes(hostile, monkeypatch) -> None:
    """Issue 14 item 6: the I/O thread hashes without the client lock, so connect() gives up
    at its timeout however long the hashing takes. The hashing here waits until released
    (or 10 s) and the test asserts connect() raised before that."""
    hashing, release, hashed = threading.Event(), threading.Event(), threading.Event()
    real = sasl._salted_password

    def slow(*args: object) -> bytes:
        hashing.set()
        release.wait(10)
        hashed.set()
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sasl, "_salted_password", slow)
    _, client = hostile(scram_challenge("SCRAM-SHA-512", 4096), jid="alice@localhost",
                        password="password", mechanisms=["SCRAM-SHA-512"], timeout=1)
    try:
        with pytest.raises(errors.TimeoutError):
            client.connect()
        assert hashing.is_set(), "the client never got to the hashing"
        assert not hashed.is_set(), "connect() waited for the hashing to end"
    finally:
        release.set()
