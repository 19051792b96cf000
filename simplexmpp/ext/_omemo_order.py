"""Arrival order for conversations with OMEMO messages in them (used by simplexmpp.ext.omemo).

An OMEMO message is decrypted away from the I/O thread (that may wait for the network), so
without care a plain message that arrives later from the same peer would reach the user
first. The [Sequencer][simplexmpp.ext._omemo_order.Sequencer] keeps a queue per conversation
(the peer's bare JID, or a room's): the I/O thread reserves a place for each encrypted message
as it arrives, and holds back any other message of a conversation that has one waiting; when a
decryption is done, whatever is ready at the head of that queue is handed out, in order.

Nothing waits for ever and nothing is lost: every reserved place is filled (the decryption
is bounded by the OMEMO timeouts and a failure fills it with the undecrypted message), and
past `limit` messages held at once the next ones are handed out at once, unordered, with a
warning, rather than kept without bound.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["Sequencer", "Slot", "HELD_LIMIT", "conversation_of"]

log = logging.getLogger(__name__)

HELD_LIMIT = 10_000
"""The most messages one client holds back at once (waiting for a decryption or behind one)."""


def conversation_of(jid: str | None) -> str:
    """The conversation a message from (or to) `jid` belongs to: its bare JID, lower case
    ("" for none: the server or our own account). Cheap: it runs on the I/O thread."""
    if not jid:
        return ""
    return jid.partition("/")[0].lower()


class Slot:
    """A place in a conversation's queue: filled with what to call when its turn comes."""

    __slots__ = ("conversation", "ready", "action", "args")

    def __init__(self, conversation: str) -> None:
        self.conversation = conversation
        self.ready = False
        self.action: Callable[..., object] | None = None
        self.args: tuple[object, ...] = ()


class Sequencer:
    """Per-conversation arrival order while some messages are being decrypted (see the
    module's description). `reserve` and `hold` run on the thread that reads the stanzas;
    `fill` on any thread."""

    def __init__(self, limit: int = HELD_LIMIT,
                 on_busy: Callable[[bool], object] | None = None) -> None:
        self.limit = limit
        # Called (under the lock) with True when a first message starts waiting and with False
        # when none waits any more: the client's gate is installed only meanwhile, so that
        # the receive path costs nothing while no decryption is pending.
        self._on_busy = on_busy
        self.unordered = 0
        """Messages handed out out of order because `limit` were held already."""
        self._lock = threading.RLock()
        self._queues: dict[str, deque[Slot]] = {}
        self._held = 0
        self._releasing = False
        self._warned = False

    @property
    def held(self) -> int:
        """Messages held back now (waiting for their decryption, or behind one)."""
        return self._held

    def reserve(self, conversation: str) -> Slot | None:
        """A place for a message about to be decrypted; None past the limit (then it is
        handed out when decrypted, unordered)."""
        with self._lock:
            if not self._room():
                return None
            slot = Slot(conversation)
            if not self._queues and self._on_busy is not None:
                self._on_busy(True)
            self._queues.setdefault(conversation, deque()).append(slot)
            self._held += 1
            return slot

    def hold(self, conversation: str, action: Callable[..., object], *args: object) -> bool:
        """Whether a message that needs no decryption is held back (`action(*args)` is called
        in its turn): True when `conversation` has a message waiting before it."""
        if not self._queues:  # the common case, without the lock: nothing is waiting
            return False
        with self._lock:
            # While a turn is handed out, what it delivers passes (same thread: the lock is
            # re-entrant, other threads wait for the end of the turn).
            if self._releasing or conversation not in self._queues:
                return False
            if not self._room():
                return False
            slot = Slot(conversation)
            slot.ready, slot.action, slot.args = True, action, args
            self._queues[conversation].append(slot)
            self._held += 1
            return True

    def fill(self, slot: Slot, action: Callable[..., object] | None, *args: object) -> None:
        """The message of `slot` is ready: `action(*args)` hands it out in its turn (None:
        nothing to hand out, an empty or repeated message). Hands out every message of the
        conversation that is ready, in order, on this thread."""
        with self._lock:
            slot.ready, slot.action, slot.args = True, action, args
            queue = self._queues.get(slot.conversation)
            if queue is None:  # pragma: no cover - every reserved slot is in its queue
                return
            self._releasing = True
            try:
                while queue and queue[0].ready:
                    head = queue.popleft()
                    self._held -= 1
                    if head.action is None:
                        continue
                    try:
                        head.action(*head.args)
                    except Exception:  # a failing hand-out must not stop the queue
                        log.exception("handing out a message of %s failed", head.conversation)
                if not queue:
                    del self._queues[slot.conversation]
                if not self._queues:
                    self._warned = False
                    if self._on_busy is not None:
                        self._on_busy(False)
            finally:
                self._releasing = False

    def _room(self) -> bool:
        if self._held < self.limit:
            return True
        self.unordered += 1
        if not self._warned:
            self._warned = True
            log.warning("OMEMO: %d messages are waiting for decryptions; until they are "
                        "done, more messages are handed out as they come, out of order",
                        self._held)
        return False
