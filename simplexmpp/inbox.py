"""A closable, bounded queue of received items waiting to be read.

One class for every queue a reader iterates until it ends: the client's inbox
([Client.messages][simplexmpp.Client.messages]), a [Pool][simplexmpp.Pool]'s merged stream and a
chat room's messages. It never blocks the thread that puts (the I/O thread must go on reading:
an IQ answer behind a full inbox would otherwise never arrive), so a bound is kept by giving up
the **oldest** waiting item, which is counted in [Inbox.dropped][simplexmpp.inbox.Inbox.dropped]
and logged once per episode.

Closing marks the end for readers (an iterator ends, [Inbox.get][simplexmpp.inbox.Inbox.get]
returns [CLOSED][simplexmpp.inbox.CLOSED] once everything put before was read); reopening
starts afresh, so the same inbox serves a client that is connected again after
`disconnect()`: items still waiting stay readable, the old end is forgotten.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["CLOSED", "DEFAULT_MAX_INBOX", "Inbox"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_INBOX = 10_000
"""The default bound of a client's inbox (and of a pool's and a room's): messages waiting to be
read. About 1-2 KiB of memory each for a short chat message."""


class _Closed:
    """What [Inbox.get][simplexmpp.inbox.Inbox.get] returns once the inbox is closed and read."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CLOSED"


CLOSED: Any = _Closed()
"""Returned by [Inbox.get][simplexmpp.inbox.Inbox.get] once the inbox is closed and empty."""


class _End:
    """The end marker put by close(): it belongs to one generation (one open-close cycle), so
    a marker left over from before a reopen() is recognised and skipped."""

    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation


class Inbox(Generic[T]):
    """A FIFO queue that one or more threads put into and readers take from, until it is closed.

    Args:
        maxsize: The most items kept waiting; putting one more gives up the oldest (counted
            in `dropped`). None or 0: no bound.
        convert: Applied to each item as it is taken (the client keeps bare XML elements and
            makes the `Message` wrapper late).
        name: Names the inbox in the log (`"alice@example.org's inbox"`).
        hint: Appended to the warning logged when items are given up (what to do about it).
    """

    __slots__ = ("put", "qsize", "dropped", "name", "hint", "_queue", "_get", "_maxsize",
                 "_convert", "_closed", "_generation", "_lock", "_warned", "_markers")

    def __init__(self, maxsize: int | None = None, *, convert: Callable[[Any], T] | None = None,
                 name: str = "inbox", hint: str = "") -> None:
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queue = q
        self._get = q.get
        self.qsize: Callable[[], int] = q.qsize
        self.dropped = 0
        """How many items were given up because the inbox was full (oldest first)."""
        self.name = name
        self.hint = hint
        self._convert = convert
        self._closed = False
        self._generation = 0
        self._lock = threading.Lock()
        self._warned = False
        self._markers = 0  # end markers in the queue (not items: see __len__)
        self._maxsize = 0
        self.put: Callable[[Any], None] = q.put
        self.maxsize = maxsize

    # -- the bound ---------------------------------------------------------------------------
    @property
    def maxsize(self) -> int | None:
        """The most items kept waiting (None: no bound); may be changed at any time."""
        return self._maxsize or None

    @maxsize.setter
    def maxsize(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"maxsize must be None or a number >= 0, not {value!r}")
        self._maxsize = value or 0
        # Unbounded: the queue's own (C) put, no Python frame per item (the hot path).
        self.put = self._put_bounded if self._maxsize else self._queue.put

    def _put_bounded(self, item: Any) -> None:
        """Put `item`; if the inbox is full, give up the oldest item first. Never blocks."""
        q = self._queue
        if q.qsize() >= self._maxsize:
            self._make_room()
        q.put(item)

    def _make_room(self) -> None:
        with self._lock:
            q = self._queue
            # The bound as it is now, read once: the user may lift it meanwhile (0, no bound),
            # and a loop re-reading 0 would give up everything waiting.
            bound = self._maxsize
            while bound and q.qsize() >= bound:
                try:
                    oldest = q.get_nowait()
                except queue.Empty:  # a reader took it meanwhile: there is room now
                    return
                if type(oldest) is _End:
                    if oldest.generation == self._generation and self._closed:
                        q.put(oldest)  # still the end of what is readable: keep it
                        return
                    self._markers -= 1
                    continue           # a stale end marker: nothing lost
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    log.warning("%s is full (%d waiting): giving up the oldest; nothing is "
                                "reading it fast enough.%s This is logged once until it "
                                "has been read empty; the count is in .dropped",
                                self.name, bound, self.hint and " " + self.hint)

    # -- closing -----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Mark the end: readers get what is waiting, then the end (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._markers += 1
            self._queue.put(_End(self._generation))

    def reopen(self) -> None:
        """Undo [close][simplexmpp.inbox.Inbox.close] for a new start: what still waits stays
        readable, the old end marker is skipped by readers."""
        with self._lock:
            if not self._closed:
                return
            self._closed = False
            self._generation += 1

    # -- reading -----------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """The oldest item, waiting up to `timeout` seconds (None: for ever) for one.

        Returns [CLOSED][simplexmpp.inbox.CLOSED] once the inbox is closed and everything put
        before was taken (and again to every later call, until reopened); raises
        `queue.Empty` when nothing came in time.
        """
        deadline = None
        while True:
            item = self._get(block, timeout)
            if type(item) is _End:
                if item.generation == self._generation and self._closed:
                    self._queue.put(item)  # every other reader ends as well
                    return CLOSED  # type: ignore[no-any-return]
                # Left over from before a reopen(): skip it (waiting no longer than asked).
                with self._lock:
                    self._markers -= 1
                if timeout is not None:
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    timeout = max(0.0, deadline - time.monotonic())
                continue
            if self._warned and not self._queue.qsize():
                self._caught_up()
            convert = self._convert
            return item if convert is None else convert(item)

    def _caught_up(self) -> None:
        with self._lock:
            if self._warned:
                self._warned = False
                log.info("%s was read empty; %d item(s) were given up so far", self.name,
                         self.dropped)

    def iterate(self, timeout: float | None = None) -> Iterator[T]:
        """Items as they come; ends when the inbox is closed and read, or after `timeout`
        seconds without an item."""
        while True:
            try:
                item = self.get(timeout=timeout)
            except queue.Empty:
                return
            if item is CLOSED:
                return
            yield item

    def empty(self) -> bool:
        """Whether no item waits."""
        return not len(self)

    def __len__(self) -> int:
        """How many items wait (end markers not counted)."""
        return max(0, self._queue.qsize() - self._markers)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<Inbox {self.name} {state} waiting={self._queue.qsize()} "
                f"maxsize={self.maxsize} dropped={self.dropped}>")
