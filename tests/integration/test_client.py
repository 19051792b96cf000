"""The blocking Client against real servers on loopback (`any_server`: Prosody and ejabberd)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from simplexmpp import JID, Client, Iq, RosterItem, errors

from .conftest import Server


def wait_for(condition: threading.Event, what: str, timeout: float = 10) -> None:
    assert condition.wait(timeout), f"timed out waiting for {what}"


# -- connecting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN"])
def test_each_mechanism_of_the_default_server_authenticates(any_server: Server,
                                                             mechanism: str) -> None:
    with any_server.client(any_server.new_account(), mechanisms=[mechanism]) as client:
        assert client.mechanism == mechanism
        assert client.jid is not None and client.jid.bare == client.account.bare
        assert client.jid.resource


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"])
def test_each_mechanism_of_the_sha256_server_authenticates(server_sha256: Server,
                                                            mechanism: str) -> None:
    with server_sha256.client(server_sha256.new_account(), mechanisms=[mechanism]) as client:
        assert client.mechanism == mechanism


def test_strongest_mechanism_is_chosen_by_default(server_sha256: Server) -> None:
    with server_sha256.client(server_sha256.new_account()) as client:
        assert client.mechanism == "SCRAM-SHA-256-PLUS"


def test_direct_tls_connects(any_server: Server) -> None:
    with any_server.client(any_server.new_account(), port=any_server.tls_port,
                           tls="direct") as client:
        assert client.is_connected
        assert client.ping() > 0


def test_requested_resource_is_bound(any_server: Server) -> None:
    with any_server.client(any_server.new_account(), resource="laptop") as client:
        assert client.jid is not None and client.jid.resource == "laptop"


def test_wrong_password_raises_authentication_error(any_server: Server) -> None:
    client = any_server.client(any_server.new_account(), password="not-the-password")
    with pytest.raises(errors.AuthenticationError) as info:
        client.connect()
    assert info.value.condition == "not-authorized"
    assert not client.is_connected
    assert not any(t.name.startswith(f"simplexmpp-io-{client.account}")
                   for t in threading.enumerate())


def test_untrusted_certificate_raises_tls_error(any_server: Server) -> None:
    client = any_server.client(any_server.new_account(), ca_file=None)
    with pytest.raises(errors.TLSError, match="could not be verified"):
        client.connect()


def test_connection_refused_raises_connection_error(server: Server) -> None:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    client = server.client(server.new_account(), port=free_port, reconnect=False)
    with pytest.raises(errors.ConnectionError, match="cannot connect"):
        client.connect(timeout=5)


def test_disconnect_stops_every_thread(any_server: Server) -> None:
    client = any_server.client(any_server.new_account())
    called = threading.Event()
    client.on("connected", lambda jid: called.set())  # so the dispatcher thread starts too
    client.connect()
    assert called.wait(10)
    names = [t.name for t in threading.enumerate() if str(client.account) in t.name]
    assert len(names) == 2, names  # the I/O thread and the dispatcher thread
    client.disconnect()
    assert not client.is_connected
    assert not [t for t in threading.enumerate() if str(client.account) in t.name]


def test_a_client_without_callbacks_runs_one_thread(any_server: Server) -> None:
    # The extensions follow the session's events only once they have state to keep, so a
    # plain client starts no dispatcher thread for them.
    client = any_server.client(any_server.new_account())
    client.connect()
    try:
        client.send_message(client.jid, "to myself")  # our full JID: we sent no presence
        assert client.next_message(timeout=10).body == "to myself"
        names = [t.name for t in threading.enumerate() if str(client.account) in t.name]
        assert names == [f"simplexmpp-io-{client.account}"]
    finally:
        client.disconnect()


def test_calls_after_disconnect_raise_disconnected_error(any_server: Server) -> None:
    client = any_server.client(any_server.new_account())
    client.connect()
    client.disconnect()
    with pytest.raises(errors.DisconnectedError):
        client.send_message("bob@localhost", "hi")
    with pytest.raises(errors.DisconnectedError):
        client.next_message(timeout=1)


# -- IQ -------------------------------------------------------------------------------------------

def test_ping_measures_a_round_trip(connect_any) -> None:
    client = connect_any()
    rtt = client.ping()
    assert 0 < rtt < 5


def test_iq_to_a_nonexistent_entity_raises_iq_error_with_condition(connect) -> None:
    client = connect()
    query = ET.Element("{http://jabber.org/protocol/disco#info}query")
    with pytest.raises(errors.IqError) as info:
        client.iq(Iq.get("nobody-here@localhost", query))
    assert info.value.condition == "service-unavailable"
    with pytest.raises(errors.IqError) as info:
        client.iq(Iq.get("no-such-host.example", query))
    # prosody-up runs without s2s, so Prosody refuses remote domains outright.
    assert info.value.condition == "not-allowed" and info.value.type == "cancel"
    assert "remote domains" in (info.value.text or "")


def test_send_iq_returns_a_future(connect_any) -> None:
    client = connect_any()
    future = client.send_iq(Iq.get(None, ET.Element("{jabber:iq:roster}query")))
    assert isinstance(future, concurrent.futures.Future)
    result = future.result(10)
    assert result.type == "result"


def test_unanswered_iq_request_gets_service_unavailable(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    query = ET.Element("{urn:example:unknown}query")
    with pytest.raises(errors.IqError) as info:
        alice.iq(Iq.get(bob.jid, query))
    assert info.value.condition == "service-unavailable"


def test_iq_event_lets_a_callback_answer(connect_any) -> None:
    alice, bob = connect_any(), connect_any()

    def answer(iq: Iq) -> None:
        reply = iq.result(ET.Element("{urn:example:echo}query", said="yes"))
        bob.send(reply)

    bob.on("iq", answer)
    result = alice.iq(Iq.get(bob.jid, ET.Element("{urn:example:echo}query")))
    assert result.payload is not None and result.payload.get("said") == "yes"


# -- messages -------------------------------------------------------------------------------------

def test_thousand_messages_arrive_complete_and_in_order(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    bob.send_presence()
    ids = [alice.send_message(bob.jid, f"message {i}") for i in range(1000)]
    received = []
    for msg in bob.messages(timeout=20):
        received.append(msg)
        if len(received) == 1000:
            break
    assert [m.body for m in received] == [f"message {i}" for i in range(1000)]
    assert [m.id for m in received] == ids
    assert all(m.from_ == alice.jid for m in received)


def test_ack_request_is_answered_while_the_client_sends_nothing(connect) -> None:
    """XEP-0198: the <a/> for the server's <r/> goes out on its own after Client.ack_delay,
    so no request stays unanswered."""
    import logging

    alice, bob = connect(), connect()
    sent: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.args and record.args[0] == bob.account.bare and record.args[1] == "SEND":
                sent.append(str(record.args[2]))

    wire = logging.getLogger("simplexmpp.wire")
    handler, level = Capture(), wire.level
    wire.addHandler(handler)
    wire.setLevel(logging.DEBUG)
    try:
        alice.send_message(bob.jid, "ack me")
        assert bob.next_message(timeout=10).body == "ack me"
        deadline = time.monotonic() + 10
        while not any("<a xmlns" in text for text in sent) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        wire.removeHandler(handler)
        wire.setLevel(level)
    acks = [text for text in sent if "<a xmlns" in text]
    assert acks and 'h="1"' in acks[0], sent
    assert bob._conn.stream is not None and not bob._conn.stream.ack_pending


def test_message_fields_survive_the_trip(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    alice.send_message(bob.jid, "body & <markup> é 💬", type="normal", subject="subj",
                       thread="t-1")
    msg = bob.next_message(timeout=10)
    assert (msg.body, msg.subject, msg.thread, msg.type) == (
        "body & <markup> é 💬", "subj", "t-1", "normal")


def test_message_to_unknown_user_comes_back_as_message_error(connect_any) -> None:
    alice = connect_any()
    got = []
    done = threading.Event()
    alice.on("message_error", lambda m: (got.append(m), done.set()))
    msg_id = alice.send_message("nobody-at-all@localhost", "hello?")
    wait_for(done, "the bounce")
    assert got[0].id == msg_id
    assert isinstance(got[0].error, errors.MessageError)
    assert got[0].error.condition == "service-unavailable"


def test_invalid_input_is_refused_before_sending(connect_any) -> None:
    alice = connect_any()
    with pytest.raises(errors.JIDError):
        alice.send_message("not a jid@@", "x")
    with pytest.raises(ValueError):
        alice.send_message("bob@localhost", "bad \x00 char")
    with pytest.raises(errors.InvalidStanzaError):
        alice.send_message("bob@localhost", "x" * (2 << 20))
    assert alice.ping() > 0  # the session is unharmed


# -- roster and presence --------------------------------------------------------------------------

def test_roster_add_and_remove_are_pushed_to_a_second_resource(any_server: Server) -> None:
    account = any_server.new_account()
    contact = JID(any_server.new_account())
    with any_server.client(account, resource="one") as one, \
            any_server.client(account, resource="two") as two:
        two.get_roster()
        pushes: list[tuple[RosterItem, bool]] = []
        seen = threading.Event()

        def on_push(item: RosterItem, removed: bool) -> None:
            pushes.append((item, removed))
            seen.set()

        two.on("roster_push", on_push)
        one.add_contact(contact, name="Contact", groups=["Friends", "Work"])
        wait_for(seen, "the add push")
        item, removed = pushes[-1]
        assert not removed and item.jid == contact and item.name == "Contact"
        assert item.groups == frozenset({"Friends", "Work"})
        assert two.roster[contact].name == "Contact"
        assert one.get_roster()[contact].subscription == "none"
        seen.clear()
        one.remove_contact(contact)
        wait_for(seen, "the remove push")
        assert pushes[-1][1] is True
        assert contact not in two.roster


def test_roster_versioning_reuses_the_cache(connect_any, any_server: Server) -> None:
    client = connect_any()
    client.add_contact(any_server.new_account(), name="x")
    first = client.get_roster()
    assert first.version
    second = client.get_roster()
    assert second.version == first.version and dict(second) == dict(first)


def test_subscription_handshake_ends_in_both_on_both_sides(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    alice.get_roster()
    bob.get_roster()
    bob.on("subscription_request", lambda p: (bob.approve(p.from_), bob.subscribe(p.from_)))
    alice.on("subscription_request", lambda p: alice.approve(p.from_))
    both = threading.Event()

    def check(_item: RosterItem, _removed: bool) -> None:
        a = alice.roster.get(bob.jid.bare)
        b = bob.roster.get(alice.jid.bare)
        if a and b and a.subscription == "both" and b.subscription == "both":
            both.set()

    alice.on("roster_push", check)
    bob.on("roster_push", check)
    alice.send_presence()
    bob.send_presence()
    alice.subscribe(bob.jid)
    wait_for(both, "subscription both on both sides", 15)
    # with mutual subscription, presence flows: alice sees bob's resource
    bob.send_presence(show="away", status="coffee")
    for _ in range(50):
        presences = alice.presence_of(bob.jid)
        if presences and next(iter(presences.values())).show == "away":
            break
        threading.Event().wait(0.1)
    presence = alice.presence_of(bob.jid)[bob.jid.resource]
    assert (presence.show, presence.status) == ("away", "coffee")


def test_a_callback_may_call_get_roster_without_deadlock(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    results = []
    done = threading.Event()

    def on_message(msg) -> None:
        results.append(bob.get_roster(timeout=5))
        done.set()

    bob.on("message", on_message)
    alice.send_message(bob.jid, "trigger")
    wait_for(done, "the callback")
    assert results and results[0] is not None


def test_exception_in_callback_is_logged_and_client_carries_on(connect_any, caplog) -> None:
    alice, bob = connect_any(), connect_any()
    done = threading.Event()
    bob.on("message", lambda m: 1 / 0)
    bob.on("message", lambda m: done.set())
    alice.send_message(bob.jid, "boom")
    wait_for(done, "the second callback")
    assert bob.ping() > 0
    assert any("ZeroDivisionError" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_callbacks_never_run_on_the_io_thread(connect_any) -> None:
    alice, bob = connect_any(), connect_any()
    names = []
    done = threading.Event()
    bob.on("message", lambda m: (names.append(threading.current_thread().name), done.set()))
    alice.send_message(bob.jid, "which thread?")
    wait_for(done, "the callback")
    assert names[0].startswith("simplexmpp-dispatch-")


def test_future_callbacks_run_on_the_dispatcher(connect_any) -> None:
    client = connect_any()
    names = []
    done = threading.Event()
    future = client.send_iq(Iq.get(None, ET.Element("{jabber:iq:roster}query")))
    future.add_done_callback(lambda f: (names.append(threading.current_thread().name),
                                        done.set()))
    wait_for(done, "the done-callback")
    assert not names[0].startswith("simplexmpp-io-")


def test_client_is_usable_as_context_manager(any_server: Server) -> None:
    with any_server.client(any_server.new_account()) as client:
        assert isinstance(client, Client) and client.is_connected
    assert not client.is_connected
