"""The dispatcher layer (simplexmpp.dispatcher): the event bus and its thread."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from simplexmpp import Client, Iq, Message
from simplexmpp.dispatcher import Dispatcher

from .test_receive import message, read, ready_client


def _patch_dispatch(client: Client, fake: Any) -> None:
    client._events.dispatch = fake  # type: ignore[method-assign]
    client._events.queue_bounded = lambda fn, args: fake(fn, *args)  # type: ignore


def test_a_callback_registered_while_an_event_is_emitted_waits_for_the_next_one() -> None:
    # on() on another thread at the moment the I/O thread emits: here, deterministically,
    # from inside the emit. The emit in progress must see the callbacks as they were (it
    # used to loop over the very list on() appended to, and ran the new callback too).
    client = Client("alice@localhost", "secret", load_extensions=False)
    ran: list[str] = []

    def dispatch(fn: Any, *args: object) -> None:
        ran.append(fn.__name__)
        if len(ran) == 1:
            client.on("presence", late)

    def first(*args: object) -> None: ...
    def late(*args: object) -> None: ...

    _patch_dispatch(client, dispatch)
    client.on("presence", first)
    client.emit("presence", None)
    assert ran == ["first"]
    client.emit("presence", None)
    assert ran == ["first", "first", "late"]


def test_off_while_emitting_and_has_callbacks() -> None:
    client = Client("alice@localhost", "secret", load_extensions=False)
    ran: list[str] = []
    handles: list[int] = []

    def dispatch(fn: Any, *args: object) -> None:
        ran.append(fn.__name__)
        client.off(handles[1])

    def first(*args: object) -> None: ...
    def second(*args: object) -> None: ...

    _patch_dispatch(client, dispatch)
    handles += [client.on("presence", first), client.on("presence", second)]
    assert client.has_callbacks("presence")
    client.emit("presence", None)   # the emit in progress still had `second` when it began
    client.emit("presence", None)
    assert ran == ["first", "second", "first"]
    client.off(handles[0])
    assert not client.has_callbacks("presence")


def test_the_thread_starts_with_work_and_ends_when_idle() -> None:
    done = threading.Event()
    dispatcher = Dispatcher("simplexmpp-dispatch-test", {"x"}, idle=lambda: 0.05)
    assert dispatcher.thread is None
    dispatcher.dispatch(done.set)
    assert done.wait(5)
    thread = dispatcher.thread
    if thread is not None:
        thread.join(5)
    assert dispatcher.thread is None


def test_stop_runs_what_is_queued_first() -> None:
    gate = threading.Event()
    ran: list[int] = []
    dispatcher = Dispatcher("simplexmpp-dispatch-test", {"x"}, idle=lambda: 10.0)
    dispatcher.dispatch(gate.wait, 5)
    dispatcher.dispatch(ran.append, 1)
    dispatcher.stop()
    dispatcher.dispatch(ran.append, 2)  # after the stop: still run
    gate.set()
    thread = dispatcher.thread
    assert thread is not None
    thread.join(5)
    assert ran == [1, 2] and dispatcher.thread is None


def test_callbacks_slower_than_a_flood_keep_a_bounded_queue(
        caplog: pytest.LogCaptureFixture) -> None:
    # A "message" callback blocked while bound + extra messages arrive (the test thread
    # plays the I/O thread: read() routes every stanza before it returns). The waiting
    # calls stay within the bound, the extra ones are counted and logged once, protocol
    # work (an IQ request's handler) is still queued, and after the release the callback
    # gets the messages it was given in order. Before the bound, every call was queued.
    bound, extra = 20, 7
    client, stream = ready_client()
    client.max_pending_callbacks = bound
    gate, entered, done = threading.Event(), threading.Event(), threading.Event()
    got: list[str | None] = []

    def slow(msg: Message) -> None:
        got.append(msg.body)
        if len(got) == 1:
            entered.set()
            gate.wait(30)
        if msg.body == f"message {bound}":
            done.set()

    answered = threading.Event()

    def on_query(iq: Iq) -> None:
        answered.set()

    client.on("message", slow)
    client.register_iq_handler("get", "{urn:example:q}query", on_query)
    caplog.set_level(logging.WARNING, logger="simplexmpp.dispatcher")
    try:
        read(client, stream, message(0))
        assert entered.wait(10)   # message 0's call is running: nothing waits
        read(client, stream, b"".join(message(i) for i in range(1, bound + extra + 1)))
        waiting = client._events._tasks.qsize()
        read(client, stream, b"<iq type='get' id='q1' from='alice@localhost/laptop' "
                             b"to='bob@localhost/phone'><query xmlns='urn:example:q'/></iq>")
        assert waiting <= bound
        assert client.callbacks_dropped == extra
        warnings = [r for r in caplog.records if r.name == "simplexmpp.dispatcher"
                    and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "callbacks_dropped" in warnings[0].getMessage()
    finally:
        gate.set()
    assert done.wait(10) and answered.wait(10)
    assert got == [f"message {i}" for i in range(bound + 1)]
    assert client._events.pending == 0 and not client._events._warned
    with pytest.raises(AttributeError, match="read-only"):
        client.callbacks_dropped = 0  # type: ignore[misc]


def test_the_bound_refuses_only_bounded_calls() -> None:
    dispatcher = Dispatcher("simplexmpp-dispatch-test", {"message", "connected"},
                            idle=lambda: 10.0)
    gate = threading.Event()
    ran: list[str] = []
    dispatcher.max_pending = 2
    assert dispatcher.max_pending == 2
    dispatcher.on("message", lambda: ran.append("message"))
    dispatcher.on("connected", lambda: ran.append("connected"))
    dispatcher.dispatch(gate.wait, 30)            # holds the thread: everything else waits
    for _ in range(4):
        dispatcher.emit("message")                # 2 queued, 2 refused
        dispatcher.emit("connected")              # never refused
    dispatcher.dispatch(ran.append, "protocol")   # never refused
    assert dispatcher.pending == 2 and dispatcher.dropped == 2
    dispatcher.stop()
    gate.set()
    thread = dispatcher.thread
    assert thread is not None
    thread.join(10)
    assert ran == ["message", "connected", "message", "connected", "connected",
                   "connected", "protocol"]
    dispatcher.max_pending = None
    assert dispatcher.max_pending is None
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            dispatcher.max_pending = bad  # type: ignore[assignment]
