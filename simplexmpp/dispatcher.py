"""The dispatcher: the event bus of a client and the thread its callbacks run on.

[Dispatcher][simplexmpp.dispatcher.Dispatcher] owns

* the event callbacks (`on()`/`off()`): registered and removed under a lock, read without one
  (each event's callbacks are an immutable tuple, replaced, never changed in place, so an
  event being emitted on the I/O thread while another thread registers a callback sees
  either the old tuple or the new one, never a list changing under its loop);
* the dispatcher thread (`simplexmpp-dispatch-<jid>`), started when there is work and ended
  after `idle` seconds without any, which runs event callbacks, IQ request handlers, stanza
  handlers and `Future` done-callbacks one at a time: never on the I/O thread, so a callback
  may call any blocking client method.

The inbox that `messages()` reads is an [Inbox][simplexmpp.inbox.Inbox] (one closable queue
for every reader: the client's, a pool's, a room's).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

_Callbacks = tuple[tuple[int, Callable[..., object]], ...]


class Dispatcher:
    """The event bus and the dispatcher thread of one client (see the module docstring).

    Args:
        name: The thread's name (`simplexmpp-dispatch-alice@example.org`).
        events: The event names `on()` accepts (more with `declare()`).
        idle: Returns the seconds the thread waits for work before it ends (read each
            time, so a client's `dispatcher_idle` may change at any time).
    """

    def __init__(self, name: str, events: Iterable[str], idle: Callable[[], float]) -> None:
        self.name = name
        self.idle = idle
        self.handlers: dict[str, _Callbacks] = {}
        """Callbacks by event: read without a lock, replaced (never changed) under one."""
        self.event_names = set(events)
        self.handle_ids = itertools.count(1)
        """Handles for `on()`, and for whatever else the client hands out (stanza handlers)."""
        self._handlers_lock = threading.Lock()
        self._lock = threading.Lock()  # the thread's start and end, and the task queue
        self._tasks: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None]
        self._tasks = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------
    # Events

    def on(self, event: str, callback: Callable[..., object]) -> int:
        if event not in self.event_names:
            raise ValueError(f"unknown event {event!r}; known: "
                             f"{', '.join(sorted(self.event_names))}")
        handle = next(self.handle_ids)
        with self._handlers_lock:
            self.handlers[event] = self.handlers.get(event, ()) + ((handle, callback),)
        return handle

    def off(self, handle: int) -> None:
        with self._handlers_lock:
            for name, callbacks in list(self.handlers.items()):
                kept = tuple(entry for entry in callbacks if entry[0] != handle)
                if len(kept) != len(callbacks):
                    self.handlers[name] = kept

    def declare(self, name: str) -> None:
        self.event_names.add(name)

    def emit(self, event: str, *args: object) -> None:
        """Queue every callback of `event` (any thread; no check of the name)."""
        for _, callback in self.handlers.get(event, ()):
            self.dispatch(callback, *args)

    # ------------------------------------------------------------------------------------
    # The thread

    def dispatch(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the dispatcher thread (started when there is work)."""
        with self._lock:
            self._tasks.put((fn, args))
            if self.thread is None:
                thread = threading.Thread(target=self._main, name=self.name, daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:
                    # Python 3.12+ at interpreter exit: "can't create new thread at
                    # interpreter shutdown" (a client closed at exit).
                    log.debug("callback %r not run: %s", fn, exc)
                    return
                self.thread = thread

    def _main(self) -> None:
        current = threading.current_thread()
        while True:
            try:
                task = self._tasks.get(timeout=self.idle())
            except queue.Empty:
                with self._lock:
                    if self._tasks.empty():  # nothing was queued meanwhile (same lock)
                        if self.thread is current:
                            self.thread = None
                        return
                continue
            if task is None:
                with self._lock:
                    if self._tasks.empty():
                        if self.thread is current:
                            self.thread = None
                        return
                    self._tasks.put(None)  # work arrived after the stop: run it first
                continue
            fn, args = task
            try:
                fn(*args)
            except Exception:
                log.exception("callback %r raised; the client carries on", fn)

    def stop(self) -> None:
        """The thread ends once it has run what is queued."""
        with self._lock:
            if self.thread is not None:
                self._tasks.put(None)

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the thread to end (not from the thread itself)."""
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        with self._lock:
            if not thread.is_alive() and self.thread is thread:
                self.thread = None
