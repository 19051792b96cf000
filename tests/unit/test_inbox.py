"""The one closable, bounded inbox behind Client.messages(), Pool.messages() and Room.messages()."""

from __future__ import annotations

import logging
import queue
import threading

import pytest

from simplexmpp.inbox import CLOSED, Inbox


def test_items_come_out_in_order_then_the_end() -> None:
    inbox: Inbox[int] = Inbox()
    for i in range(3):
        inbox.put(i)
    inbox.close()
    assert len(inbox) == 3
    assert list(inbox.iterate()) == [0, 1, 2]
    assert len(inbox) == 0 and inbox.empty()
    assert inbox.get() is CLOSED
    assert list(inbox.iterate()) == []  # every later reader ends too


def test_a_reader_waiting_is_woken_by_close() -> None:
    inbox: Inbox[int] = Inbox()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(inbox.get(timeout=30)))
    reader.start()
    inbox.close()
    reader.join(30)
    assert got == [CLOSED]


def test_reopen_forgets_the_old_end_and_keeps_what_waits() -> None:
    inbox: Inbox[str] = Inbox()
    inbox.put("unread from the first session")
    inbox.close()
    inbox.reopen()
    inbox.put("second session")
    assert inbox.get(timeout=0) == "unread from the first session"
    assert inbox.get(timeout=0) == "second session"  # the stale end is skipped
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)


def test_an_old_end_does_not_cut_the_next_session_short() -> None:
    # close, reopen, two items, close: a reader must get both before the (new) end.
    inbox: Inbox[str] = Inbox()
    inbox.close()
    inbox.reopen()
    inbox.put("a")
    inbox.put("b")
    inbox.close()
    assert list(inbox.iterate()) == ["a", "b"]


def test_convert_is_applied_as_items_are_taken() -> None:
    inbox: Inbox[str] = Inbox(convert=str.upper)
    inbox.put("x")
    inbox.close()
    assert list(inbox.iterate()) == ["X"]


def test_a_full_inbox_gives_up_the_oldest_counts_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    inbox: Inbox[int] = Inbox(3, name="test inbox")
    with caplog.at_level(logging.INFO, logger="simplexmpp.inbox"):
        for i in range(10):
            inbox.put(i)  # never blocks
        assert len(inbox) == 3 and inbox.dropped == 7
        assert [inbox.get(timeout=0) for _ in range(3)] == [7, 8, 9]
        for i in range(5):  # a second episode, after the inbox was read empty
            inbox.put(i)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in caplog.records]
    assert "test inbox is full" in warnings[0].getMessage()
    assert inbox.dropped == 9


def test_the_end_marker_is_never_given_up() -> None:
    inbox: Inbox[int] = Inbox(2)
    inbox.put(1)
    inbox.close()
    inbox.put(2)  # late (a callback still running): the end stays
    inbox.put(3)
    assert inbox.get(timeout=0) is not CLOSED
    assert CLOSED in [inbox.get(timeout=0) for _ in range(2)]


def test_maxsize_can_be_changed_and_none_is_unbounded() -> None:
    inbox: Inbox[int] = Inbox(None)
    for i in range(1000):
        inbox.put(i)
    assert inbox.dropped == 0 and inbox.maxsize is None
    inbox.maxsize = 10
    inbox.put(1000)
    assert len(inbox) == 10 and inbox.dropped == 991
    with pytest.raises(ValueError):
        inbox.maxsize = -1


def test_lifting_the_bound_while_a_put_makes_room_gives_up_nothing() -> None:
    """The I/O thread saw a full inbox and is about to make room when the user lifts the
    bound (maxsize None): the room-making must use one reading of the bound, not loop on 0."""
    inbox: Inbox[int] = Inbox(maxsize=3)
    for i in range(3):
        inbox.put(i)
    inbox.maxsize = None       # the user, between the I/O thread's check and its _make_room
    inbox._make_room()         # what the I/O thread does next
    inbox.put(3)
    assert inbox.dropped == 0
    assert [inbox.get(timeout=1) for _ in range(4)] == [0, 1, 2, 3]
