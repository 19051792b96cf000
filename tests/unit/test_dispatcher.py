"""The dispatcher layer (simplexmpp.dispatcher): the event bus and its thread."""

from __future__ import annotations

import threading
from typing import Any

from simplexmpp import Client
from simplexmpp.dispatcher import Dispatcher


def _patch_dispatch(client: Client, fake: Any) -> None:
    client._events.dispatch = fake  # type: ignore[method-assign]


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
