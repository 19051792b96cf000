"""XEP-0313 archives with XEP-0059 paging against the real servers (Prosody and ejabberd), and
the catch-up after a session that could not be resumed (Prosody)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import islice

import pytest

from simplexmpp import Client, Extension, Iq, Session, errors

from .conftest import Server
from .proxy import FaultProxy


def count_iqs(client: Client) -> list[Iq]:
    """Record the IQs ``client`` sends through ``client.iq`` (how many pages were asked)."""
    sent: list[Iq] = []
    original = client.iq

    def recording(iq: Iq, timeout: float | None = None) -> Iq:
        sent.append(iq)
        return original(iq, timeout)

    client.iq = recording  # type: ignore[method-assign]
    return sent


@pytest.fixture
def conversation(connect_any) -> tuple[Client, Client, list[str], datetime]:
    alice, bob = connect_any(), connect_any()
    bodies = [f"archived {i}" for i in range(25)]
    for body in bodies[:10]:
        alice.send_message(bob.jid, body)
    for _ in range(10):
        bob.next_message(timeout=10)
    time.sleep(1.1)  # archive timestamps have one-second resolution
    middle = datetime.now(timezone.utc)
    time.sleep(1.1)
    for body in bodies[10:]:
        alice.send_message(bob.jid, body)
    for _ in range(15):
        bob.next_message(timeout=10)
    return alice, bob, bodies, middle


def test_query_pages_lazily_and_in_order(conversation) -> None:
    alice, bob, bodies, _ = conversation
    pages = count_iqs(bob)
    results = bob.mam.query(with_=alice.account.bare, page_size=10)
    first = list(islice(results, 5))
    assert [m.body for m in first] == bodies[:5]
    assert len(pages) == 1                       # one page asked, not all three
    rest = list(results)
    assert [m.body for m in first + rest] == bodies
    assert len(pages) == 3
    assert all(m.delay is not None and m.from_.bare == alice.account.bare for m in first)
    assert all(m.stanza_id(bob.account.bare) for m in first)


def test_max_start_end_and_after_id(conversation) -> None:
    alice, bob, bodies, middle = conversation
    assert [m.body for m in bob.mam.query(with_=alice.account.bare, max=7, page_size=3)] == \
        bodies[:7]
    later = [m.body for m in bob.mam.query(with_=alice.account.bare, start=middle)]
    assert later == bodies[10:]
    earlier = [m.body for m in bob.mam.query(with_=alice.account.bare, end=middle)]
    assert earlier == bodies[:10]
    tenth = list(bob.mam.query(with_=alice.account.bare, max=10))[-1]
    after = bob.mam.query(after_id=tenth.stanza_id(bob.account.bare))
    assert [m.body for m in after if m.from_.bare == alice.account.bare] == bodies[10:]
    # The sender's own archive has them too (XEP-0313 archives both directions).
    assert len(list(alice.mam.query(with_=bob.account.bare))) == 25


def test_bad_arguments_and_unknown_ids_are_typed_errors(connect) -> None:
    # Prosody only: ejabberd 23.01 answers an unknown after-id, and a query of another
    # (nonexistent) user's archive, with an empty result instead of an error.
    client = connect()
    with pytest.raises(ValueError):
        client.mam.query(page_size=0)
    with pytest.raises(errors.IqError) as failure:
        list(client.mam.query(after_id="no-such-id"))
    assert failure.value.condition == "item-not-found"
    with pytest.raises(errors.IqError):
        list(client.mam.query(archive="nobody@localhost"))


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.port)
    yield fault_proxy
    fault_proxy.close()


def test_catch_up_fills_what_a_lost_session_dropped(server: Server, connect,
                                                    proxy: FaultProxy) -> None:
    """Prosody 0.12 destroys a hibernated session whose queue passes 500 stanzas, so the
    resumption fails and what was queued is gone from the stream: only the archive has it."""
    bob = server.client(server.new_account(), port=proxy.port, reconnect_max_delay=0.5)
    bob.connect()
    try:
        alice = connect()
        lost = []
        bob.on("resumption_failed", lambda last: lost.append(last))
        # The extensions' session_started hooks (rooms, carbons) run before the catch-up,
        # which can take long: what it had caught up when the hook ran must be nothing.
        caught_up_at_restore: list[int] = []

        class Watcher(Extension):
            name = "catch_up_watcher"

            def session_started(self, session: Session) -> None:
                if not session.first:
                    caught_up_at_restore.append(bob.mam.caught_up)

        bob.extension(Watcher)
        alice.send_message(bob.jid, "before")
        assert bob.next_message(timeout=10).body == "before"
        proxy.stall()
        proxy.cut_all()
        sent = [f"while away {i}" for i in range(700)]
        for body in sent:
            alice.send_message(bob.jid, body)
        alice.ping()   # all 700 are with the server
        time.sleep(1)
        proxy.unstall()
        received = []
        for msg in bob.messages(timeout=30):
            received.append(msg.body)
            if len(received) == len(sent):
                break
        with pytest.raises(errors.TimeoutError):
            extra = bob.next_message(timeout=1)
            received.append(extra.body)
        counts = Counter(received)
        assert lost, "the session was resumed; the test did not exercise the catch-up"
        assert set(counts) == set(sent), f"{len(set(sent) - set(counts))} lost"
        assert max(counts.values()) == 1, "a message was delivered twice"
        assert bob.mam.caught_up > 0
        assert caught_up_at_restore == [0], "the catch-up ran before the extensions' restore"
    finally:
        bob.disconnect(timeout=5)
