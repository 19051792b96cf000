"""The in-process FakeServer (simplexmpp.testing), driven by the real simplexmpp.Client."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp import Client, Iq, JID, Message, errors
from simplexmpp.stanza import Presence
from simplexmpp.testing import (NO_REPLY, ClientFactory, FakeServer, FakeServerError,
                                running_server)
from simplexmpp.testing import xmpp_client, xmpp_server  # noqa: F401  (the fixtures)

ROOT = Path(__file__).resolve().parents[2]

ECHO_NS = "urn:example:echo"
TIME = "{urn:xmpp:time}time"
DISCO_INFO = "{http://jabber.org/protocol/disco#info}query"


def _server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("simplexmpp-")]


@pytest.fixture(autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    before = set(_server_threads())
    yield
    assert set(_server_threads()) <= before


@pytest.fixture
def tls_server() -> Iterator[FakeServer]:
    with running_server(tls=True) as server:
        yield server


# -- connecting and authenticating ---------------------------------------------------------------

def test_scram_sha_256_login_over_plain_text_loopback(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    assert alice.mechanism == "SCRAM-SHA-256"
    assert alice.jid is not None and alice.jid.bare == "alice@localhost"
    assert alice.jid.resource


def test_scram_sha_1_login(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice", mechanisms=["SCRAM-SHA-1"])
    assert alice.mechanism == "SCRAM-SHA-1"


def test_starttls_with_the_throwaway_certificate(tls_server: FakeServer) -> None:
    assert tls_server.ca_file is not None
    with tls_server.client("bob") as bob:
        assert bob.mechanism == "SCRAM-SHA-256"
        assert bob.ping() >= 0
    with tls_server.client("carol", mechanisms=["PLAIN"]) as carol:
        assert carol.mechanism == "PLAIN"


def test_tls_server_refuses_a_client_that_does_not_trust_its_certificate(
        tls_server: FakeServer) -> None:
    client = tls_server.client("alice", ca_file=None)
    with pytest.raises(errors.TLSError):
        client.connect()


def test_plain_text_client_cannot_use_plain(xmpp_server: FakeServer) -> None:
    client = xmpp_server.client("alice", mechanisms=["PLAIN"])
    with pytest.raises(errors.AuthenticationError):
        client.connect()


@pytest.mark.parametrize("mechanisms", [None, ["SCRAM-SHA-1"]])
def test_wrong_password_is_not_authorized(xmpp_server: FakeServer,
                                          mechanisms: list[str] | None) -> None:
    client = xmpp_server.client("alice", password="wrong", mechanisms=mechanisms)
    with pytest.raises(errors.AuthenticationError) as caught:
        client.connect()
    assert caught.value.condition == "not-authorized"


def test_wrong_password_with_plain_over_tls_is_not_authorized(tls_server: FakeServer) -> None:
    client = tls_server.client("alice", password="wrong", mechanisms=["PLAIN"])
    with pytest.raises(errors.AuthenticationError) as caught:
        client.connect()
    assert caught.value.condition == "not-authorized"


def test_unknown_account_is_not_authorized(xmpp_server: FakeServer) -> None:
    client = xmpp_server.client("mallory", password="password")
    with pytest.raises(errors.AuthenticationError):
        client.connect()


def test_added_user_can_log_in(xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    xmpp_server.add_user("dave", "s3cret")
    assert "dave" in xmpp_server.users
    dave = xmpp_client("dave")
    assert dave.jid is not None and dave.jid.bare == "dave@localhost"


def test_requested_resource_is_bound_and_a_taken_one_is_changed(
        xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    first = xmpp_client("alice", resource="bot")
    second = xmpp_client("alice", resource="bot")
    assert first.jid == "alice@localhost/bot"
    assert second.jid is not None and second.jid != first.jid
    assert xmpp_server.sessions("alice") == sorted([first.jid, second.jid], key=str)


# -- messages ------------------------------------------------------------------------------------

def test_message_from_alice_reaches_bob(xmpp_server: FakeServer,
                                        xmpp_client: ClientFactory) -> None:
    alice, bob = xmpp_client("alice"), xmpp_client("bob")
    message_id = alice.send_message("bob@localhost", "Hello, Bob")
    received = bob.next_message(timeout=5)
    assert received.body == "Hello, Bob"
    assert received.from_ == alice.jid           # the server stamps the sender's full JID
    assert received.id == message_id
    logged = [s for s in xmpp_server.received_log if isinstance(s, Message)]
    assert [m.body for m in logged] == ["Hello, Bob"]
    assert [m.body for m in xmpp_server.sent_to("bob@localhost")
            if isinstance(m, Message)] == ["Hello, Bob"]


def test_message_to_full_jid_goes_only_to_that_session(xmpp_server: FakeServer,
                                                       xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    phone, laptop = xmpp_client("bob", resource="phone"), xmpp_client("bob", resource="laptop")
    assert laptop.jid is not None
    alice.send_message(laptop.jid, "to the laptop")
    assert laptop.next_message(timeout=5).body == "to the laptop"
    alice.ping()   # the server handles alice's stanzas in order: the message is routed by now
    assert not [s for s in xmpp_server.sent_to("bob@localhost/phone") if isinstance(s, Message)]


def test_bare_jid_message_goes_to_the_highest_priority_resource(
        xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    low, high = xmpp_client("bob", resource="low"), xmpp_client("bob", resource="high")
    low.send_presence(priority=1)
    high.send_presence(priority=5)
    low.ping()
    high.ping()
    alice.send_message("bob@localhost", "for the best resource")
    assert high.next_message(timeout=5).body == "for the best resource"
    alice.ping()
    assert not [s for s in xmpp_server.sent_to("bob@localhost/low") if isinstance(s, Message)]


def test_message_to_unknown_account_bounces_with_service_unavailable(
        xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    bounced: list[Message] = []
    done = threading.Event()
    alice.on("message_error", lambda msg: (bounced.append(msg), done.set()))
    alice.send_message("nobody@localhost", "anyone there?")
    assert done.wait(5)
    error = bounced[0].error
    assert error is not None and error.condition == "service-unavailable"
    assert bounced[0].from_ == "nobody@localhost"


def test_message_to_offline_account_bounces(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    bounced: list[Message] = []
    done = threading.Event()
    alice.on("message_error", lambda msg: (bounced.append(msg), done.set()))
    alice.send_message("carol@localhost", "are you there?")
    assert done.wait(5)
    assert bounced[0].error is not None
    assert bounced[0].error.condition == "service-unavailable"


def test_message_to_another_domain_bounces(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    bounced: list[Message] = []
    done = threading.Event()
    alice.on("message_error", lambda msg: (bounced.append(msg), done.set()))
    alice.send_message("someone@example.org", "hello?")
    assert done.wait(5)
    assert bounced[0].error is not None
    assert bounced[0].error.condition == "remote-server-not-found"


# -- roster and presence -------------------------------------------------------------------------

def test_roster_get_add_and_remove(xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    assert len(alice.get_roster()) == 0
    alice.add_contact("bob@localhost", name="Bob", groups=["Friends"])
    # The push arrives before the result, so the cached roster is current already.
    item = alice.roster["bob@localhost"]
    assert (item.name, item.groups, item.subscription) == ("Bob", frozenset({"Friends"}), "none")
    fetched = alice.get_roster()["bob@localhost"]
    assert fetched.name == "Bob"
    assert xmpp_server.roster_of("alice")[JID("bob@localhost")].name == "Bob"
    alice.remove_contact("bob@localhost")
    assert "bob@localhost" not in alice.roster
    assert xmpp_server.roster_of("alice") == {}


def test_roster_push_reaches_every_session(xmpp_client: ClientFactory) -> None:
    first, second = xmpp_client("alice"), xmpp_client("alice")
    second.get_roster()
    pushed = threading.Event()
    second.on("roster_push", lambda item, removed: pushed.set())
    first.add_contact("carol@localhost")
    assert pushed.wait(5)
    assert "carol@localhost" in second.roster


def test_set_roster_is_seen_by_get_roster(xmpp_server: FakeServer,
                                          xmpp_client: ClientFactory) -> None:
    xmpp_server.set_roster("alice", {"bob@localhost": "both", "carol@localhost": "to"})
    roster = xmpp_client("alice").get_roster()
    assert roster["bob@localhost"].subscription == "both"
    assert roster["carol@localhost"].subscription == "to"


def test_presence_flows_between_subscribed_contacts(xmpp_server: FakeServer,
                                                    xmpp_client: ClientFactory) -> None:
    xmpp_server.make_contacts("alice", "bob")
    alice, bob, carol = xmpp_client("alice"), xmpp_client("bob"), xmpp_client("carol")
    carol.send_presence()
    alice.send_presence(status="here")
    assert alice.jid is not None and bob.jid is not None
    bob_sees: list[Presence] = []
    seen = threading.Event()

    def on_presence(presence: Presence) -> None:
        if presence.from_ == alice.jid:
            bob_sees.append(presence)
            seen.set()

    bob.on("presence", on_presence)
    bob.send_presence(show="away")
    # bob's initial presence brings alice's current presence (RFC 6121 §4.2.2) …
    assert seen.wait(5)
    assert bob_sees[0].status == "here"
    # … and alice, subscribed to bob, gets his.
    bob_presences = xmpp_server.wait_for(lambda: alice.presence_of("bob@localhost"))
    assert bob_presences[bob.jid.resource or ""].show == "away"
    # carol is no contact: she gets neither.
    alice.ping()
    bob.ping()
    assert not [s for s in xmpp_server.sent_to(carol.jid or "")
                if isinstance(s, Presence) and s.from_ != carol.jid]
    # Going offline is broadcast too.
    seen.clear()
    alice.send_presence(type="unavailable")
    assert seen.wait(5)
    assert bob_sees[-1].type == "unavailable"


def test_disconnect_broadcasts_unavailable(xmpp_server: FakeServer,
                                           xmpp_client: ClientFactory) -> None:
    xmpp_server.make_contacts("alice", "bob")
    alice, bob = xmpp_client("alice"), xmpp_client("bob")
    bob.send_presence()
    bob.ping()
    alice.send_presence()
    xmpp_server.wait_for(lambda: alice.presence_of("bob@localhost") and
                         bob.presence_of("alice@localhost"))
    alice.disconnect()
    xmpp_server.wait_for(lambda: not bob.presence_of("alice@localhost"))


def test_subscription_request_and_approval(xmpp_server: FakeServer,
                                           xmpp_client: ClientFactory) -> None:
    alice, bob = xmpp_client("alice"), xmpp_client("bob")
    bob.send_presence(status="bob is in")
    bob.ping()
    alice.send_presence()
    requests: list[Presence] = []
    asked = threading.Event()
    bob.on("subscription_request", lambda p: (requests.append(p), asked.set()))
    alice.get_roster()
    alice.subscribe("bob@localhost")
    assert asked.wait(5)
    assert requests[0].from_ == "alice@localhost"   # subscriptions carry the bare JID
    assert xmpp_server.roster_of("alice")[JID("bob@localhost")].ask
    bob.approve(requests[0].from_ or "")
    xmpp_server.wait_for(lambda: "bob@localhost" in alice.roster and
                         alice.roster["bob@localhost"].subscription == "to")
    assert xmpp_server.roster_of("bob")[JID("alice@localhost")].subscription == "from"
    # Now alice sees bob's presence.
    xmpp_server.wait_for(lambda: alice.presence_of("bob@localhost"))
    # Bob cancels: alice's subscription ends and bob's presence is gone for her.
    bob.deny("alice@localhost")
    xmpp_server.wait_for(lambda: alice.roster["bob@localhost"].subscription == "none")
    xmpp_server.wait_for(lambda: not alice.presence_of("bob@localhost"))


# -- IQ --------------------------------------------------------------------------------------

def test_iq_is_routed_between_clients(xmpp_client: ClientFactory) -> None:
    alice, bob = xmpp_client("alice"), xmpp_client("bob")

    def echo(iq: Iq) -> ET.Element:
        answer = ET.Element("{%s}echo" % ECHO_NS)
        answer.text = (iq.payload.text if iq.payload is not None else "") or ""
        answer.set("asker", str(iq.from_))
        return answer

    bob.register_iq_handler("get", "{%s}echo" % ECHO_NS, echo)
    request = ET.Element("{%s}echo" % ECHO_NS)
    request.text = "ping-pong"
    assert bob.jid is not None
    result = alice.iq(Iq.get(bob.jid, request), timeout=5)
    assert result.payload is not None
    assert result.payload.text == "ping-pong"
    assert result.payload.get("asker") == str(alice.jid)
    assert result.from_ == bob.jid


def test_iq_to_a_resource_that_is_not_connected_is_service_unavailable(
        xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    with pytest.raises(errors.IqError) as caught:
        alice.iq(Iq.get("bob@localhost/nowhere", ET.Element("{%s}echo" % ECHO_NS)), timeout=5)
    assert caught.value.condition == "service-unavailable"


def test_unknown_iq_to_the_server_is_service_unavailable(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    with pytest.raises(errors.IqError) as caught:
        alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
    assert caught.value.condition == "service-unavailable"


def test_ping_the_server_a_bare_jid_and_a_client(xmpp_client: ClientFactory) -> None:
    alice, bob = xmpp_client("alice"), xmpp_client("bob")
    assert alice.ping() >= 0
    assert alice.ping("bob@localhost") >= 0      # answered by the server for the account
    assert bob.jid is not None
    assert alice.ping(bob.jid) >= 0              # answered by bob's client


def test_server_disco_info(xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    xmpp_server.disco_features.add("urn:example:feature")
    alice = xmpp_client("alice")
    result = alice.iq(Iq.get("localhost", ET.Element(DISCO_INFO)), timeout=5)
    assert result.payload is not None
    identity = result.payload.find("{http://jabber.org/protocol/disco#info}identity")
    assert identity is not None and identity.get("category") == "server"
    features = {f.get("var") for f in result.payload}
    assert {"urn:xmpp:ping", "urn:example:feature"} <= features


# -- scripts and injection -----------------------------------------------------------------

def test_scripted_reply_with_an_element(xmpp_server: FakeServer,
                                        xmpp_client: ClientFactory) -> None:
    answer = ET.Element(TIME)
    ET.SubElement(answer, "{urn:xmpp:time}utc").text = "2020-01-01T00:00:00Z"
    script = xmpp_server.script(TIME, answer, to="localhost", type="get")
    alice = xmpp_client("alice")
    result = alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
    assert result.payload is not None
    assert result.payload.findtext("{urn:xmpp:time}utc") == "2020-01-01T00:00:00Z"
    assert result.from_ == "localhost"
    assert len(script.requests) == 1 and script.requests[0].from_ == alice.jid


def test_scripted_reply_matches_to_and_runs_callables(xmpp_server: FakeServer,
                                                      xmpp_client: ClientFactory) -> None:
    def upload_slot(iq: Iq) -> ET.Element:
        slot = ET.Element("{urn:xmpp:http:upload:0}slot")
        assert iq.payload is not None
        slot.set("for", iq.payload.get("filename", ""))
        return slot

    xmpp_server.script("{urn:xmpp:http:upload:0}request", upload_slot, to="upload.localhost")
    alice = xmpp_client("alice")
    request = ET.Element("{urn:xmpp:http:upload:0}request", filename="cat.jpg")
    result = alice.iq(Iq.get("upload.localhost", request), timeout=5)
    assert result.payload is not None and result.payload.get("for") == "cat.jpg"
    # Another target is not scripted: no server-to-server links, so it fails.
    with pytest.raises(errors.IqError) as caught:
        alice.iq(Iq.get("upload.example.org", request), timeout=5)
    assert caught.value.condition == "remote-server-not-found"


def test_scripted_error_times_and_removal(xmpp_server: FakeServer,
                                          xmpp_client: ClientFactory) -> None:
    xmpp_server.script(TIME, errors.IqError("forbidden", "auth"), times=1)
    later = xmpp_server.script(lambda iq: iq.payload is not None and iq.payload.tag == TIME,
                               lambda iq: Iq(type="result"))
    alice = xmpp_client("alice")
    with pytest.raises(errors.IqError) as caught:
        alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
    assert (caught.value.condition, caught.value.type) == ("forbidden", "auth")
    assert alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5).type == "result"
    later.remove()
    with pytest.raises(errors.IqError) as caught:
        alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
    assert caught.value.condition == "service-unavailable"


def test_scripted_no_reply_lets_the_client_time_out(xmpp_server: FakeServer,
                                                    xmpp_client: ClientFactory) -> None:
    script = xmpp_server.script(TIME, NO_REPLY)
    alice = xmpp_client("alice")
    with pytest.raises(errors.TimeoutError):
        alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=0.2)
    assert len(script.requests) == 1


def test_failing_script_answers_internal_server_error_and_stop_raises() -> None:
    server = FakeServer(users={"alice": "pw"}).start()
    try:
        server.script(TIME, lambda iq: 1 / 0)  # type: ignore[arg-type,return-value]
        with server.client("alice") as alice:
            with pytest.raises(errors.IqError) as caught:
                alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
            assert caught.value.condition == "internal-server-error"
    finally:
        with pytest.raises(FakeServerError) as failed:
            server.stop()
    assert isinstance(failed.value.errors[0], ZeroDivisionError)
    assert server.errors == failed.value.errors


def test_failing_match_function_is_reported_too() -> None:
    server = FakeServer(users={"alice": "pw"}).start()
    try:
        server.script(lambda iq: iq.payload.tag.missing, None)  # type: ignore[union-attr]
        with server.client("alice") as alice:
            with pytest.raises(errors.IqError) as caught:
                alice.iq(Iq.get("localhost", ET.Element(TIME)), timeout=5)
            assert caught.value.condition == "internal-server-error"
    finally:
        with pytest.raises(FakeServerError) as failed:
            server.stop()
    assert isinstance(failed.value.errors[0], AttributeError)


def test_server_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ValueError):
        FakeServer(host="0.0.0.0")


def test_inject_delivers_a_stanza_from_anybody(xmpp_server: FakeServer,
                                               xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    xmpp_server.inject(Message(to="alice@localhost", from_="stranger@example.org",
                               body="psst", type="chat"))
    received = alice.next_message(timeout=5)
    assert (received.from_, received.body) == ("stranger@example.org", "psst")
    xmpp_server.inject(f"<message to='{alice.jid}' from='x@example.net'><body>raw</body>"
                       "</message>")
    assert alice.next_message(timeout=5).body == "raw"
    with pytest.raises(LookupError):
        xmpp_server.inject(Message(to="bob@localhost", body="bob is not connected"))


def test_injected_roster_push_from_a_stranger_is_ignored_by_the_client(
        xmpp_server: FakeServer, xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    alice.get_roster()
    query = ET.Element("{jabber:iq:roster}query")
    ET.SubElement(query, "{jabber:iq:roster}item", jid="evil@example.org")
    assert alice.jid is not None
    xmpp_server.inject(Iq(type="set", id="push1", to=alice.jid, from_="evil@example.org",
                          payload=query))
    alice.ping()
    assert "evil@example.org" not in alice.roster


# -- protocol errors and shutdown ------------------------------------------------------------

def test_client_breaking_the_protocol_gets_a_stream_error(xmpp_server: FakeServer) -> None:
    with socket.create_connection((xmpp_server.host, xmpp_server.port), timeout=5) as sock:
        sock.sendall(b"<stream:stream xmlns='jabber:server' to='localhost' version='1.0' "
                     b"xmlns:stream='http://etherx.jabber.org/streams'>")
        data = b""
        while b"</stream:stream>" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert b"invalid-namespace" in data
    assert xmpp_server.stream_errors[0][1].condition == "invalid-namespace"
    assert xmpp_server.errors == []   # a misbehaving client is not a server failure


def test_stop_disconnects_clients_and_leaves_no_threads() -> None:
    before = set(_server_threads())
    server = FakeServer(users={"alice": "pw", "bob": "pw"}).start()
    alice, bob = server.client("alice").connect(), server.client("bob").connect()
    gone = threading.Event()
    reasons: list[object] = []
    alice.on("disconnected", lambda error: (reasons.append(error), gone.set()))
    server.stop()
    assert gone.wait(5)
    assert isinstance(reasons[0], errors.StreamError)
    assert reasons[0].condition == "system-shutdown"
    with pytest.raises(errors.DisconnectedError):
        bob.next_message(timeout=5)
    for client in (alice, bob):
        client.disconnect(timeout=5)
        assert not client.is_connected
    assert set(_server_threads()) <= before
    with pytest.raises(RuntimeError):
        server.start()


def test_wait_for_times_out_with_a_clear_error(xmpp_server: FakeServer) -> None:
    with pytest.raises(errors.TimeoutError):
        xmpp_server.wait_for(lambda: xmpp_server.sent_to("alice@localhost"), timeout=0.05)


def test_client_factory_and_server_without_pytest_fixtures() -> None:
    with running_server(users={"erin": "pw"}) as server:
        factory = ClientFactory(server)
        erin = factory("erin")
        assert isinstance(erin, Client) and erin.is_connected
        factory.close()
        assert not erin.is_connected
    assert not server.running


def test_stanzas_queued_from_many_threads_all_arrive(xmpp_server: FakeServer,
                                                     xmpp_client: ClientFactory) -> None:
    # Many threads waking one connection thread at once: a lost wake-up (transport.Wire)
    # would leave stanzas stuck in the server's buffer.
    alice = xmpp_client("alice")
    assert alice.jid is not None

    def blast(sender: int) -> None:
        for number in range(300):
            xmpp_server.inject(Message(to=alice.jid, body=f"{sender}-{number}", type="chat"))

    threads = [threading.Thread(target=blast, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bodies = {alice.next_message(timeout=5).body for _ in range(1200)}
    assert len(bodies) == 1200


def test_the_documented_example_passes(tmp_path: Path) -> None:
    # docs/testing.md shows a conftest.py, a bot and its tests: they must work as shown,
    # loading the fixtures with pytest_plugins = ["simplexmpp.testing"].
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            files[first[2:]] = block
    assert set(files) == {"conftest.py", "echo_bot.py", "test_echo_bot.py",
                          "test_echo_unittest.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 passed" in out.stdout


def test_a_client_that_uses_no_extension_starts_no_dispatcher_thread(
        xmpp_client: ClientFactory) -> None:
    # Extensions watch the session's events only once they have state to keep (rooms,
    # carbons, a CSI state): a pool of plain clients connects without a thread each for
    # callbacks that would do nothing.
    alice = xmpp_client("alice")
    assert not alice.has_callbacks("connected") and not alice.has_callbacks("reconnecting")
    assert alice._events.thread is None
    alice.on("connected", lambda jid: None)
    alice.muc.follow_sessions()  # what the first join() does
    alice.muc.follow_sessions()  # once only
    assert len(alice._events.handlers["connected"]) == 1  # hooks are not event callbacks
    for hook in ("session_started", "session_resumed", "session_lost", "client_stopped"):
        assert alice._router.hooks[hook] == [alice.muc]
