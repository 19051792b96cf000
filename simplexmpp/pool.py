"""Many accounts in one object (the role of Perl's AnyEvent::XMPP::Client).

```python
with Pool(host="127.0.0.1", ca_file="ca.crt") as pool:
    pool.add("alice@example.org", "secret")
    pool.add("bob@example.org", "secret")
    pool.connect()
    pool.send_message("alice@example.org", "carol@example.org", "hi from alice")
    for account, msg in pool.messages(timeout=10):
        print(account, msg.from_, msg.body)
```

Every account is a full [`Client`][simplexmpp.Client] (`pool[jid]`) with the pool's shared
settings (host, TLS, timeouts, reconnect policy) unless `add()` overrides them. Incoming
messages of all accounts arrive in one stream, each tagged with the account that received it.
Once connected, all accounts share one I/O thread (a [`Hub`][simplexmpp.transport.Hub])
instead of one thread each, unless `shared_io=False`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

from . import errors
from .client import Client
from .connection import timeout_seconds
from .inbox import DEFAULT_MAX_INBOX, Inbox
from .jid import JID
from .stanza import Message
from .transport import Hub

__all__ = ["Pool"]


class Pool:
    """A set of accounts sharing settings, with a merged `messages()` stream."""

    def __init__(self, *, shared_io: bool = True, **client_defaults: Any) -> None:
        """`client_defaults` are [`Client`][simplexmpp.Client] keywords every account gets.
        With `shared_io` (the default) one thread drives all the ready connections instead
        of a thread per account (connecting and reconnecting still use a thread each, for as
        long as that takes)."""
        self.defaults = client_defaults
        self.hub: Hub | None = Hub("simplexmpp-pool-io") if shared_io else None
        self._clients: dict[JID, Client] = {}
        self._handles: dict[JID, int] = {}
        self._lock = threading.Lock()
        # Fed by each account's "message" callback (so the accounts' own inboxes stay
        # empty), bounded like a client's inbox: by max_inbox, when the pool is given one.
        self._inbox: Inbox[tuple[JID, Message]] = Inbox(
            client_defaults.get("max_inbox", DEFAULT_MAX_INBOX), name="the pool's inbox",
            hint="Read Pool.messages() or raise Pool(max_inbox=...).")

    # -- accounts ------------------------------------------------------------------------------
    def add(self, jid: JID | str, password: str | None, **overrides: Any) -> Client:
        """Add an account (not connected yet); returns its Client."""
        options = {**self.defaults, **overrides}
        client = Client(jid, password, **{"hub": self.hub, **options})
        key = client.account.bare
        with self._lock:
            if key in self._clients:
                raise ValueError(f"{key} is already in the pool")
            self._clients[key] = client
        self._handles[key] = client.on("message", lambda msg, key=key: self._inbox.put((key,
                                                                                      msg)))
        return client

    def remove(self, jid: JID | str, timeout: float | None = None) -> None:
        """Disconnect an account and forget it."""
        key = JID(jid).bare
        with self._lock:
            client = self._clients.pop(key)
        client.off(self._handles.pop(key))
        if client.state != "disconnected":
            client.disconnect(timeout)

    def __getitem__(self, jid: JID | str) -> Client:
        return self._clients[JID(jid).bare]

    def __contains__(self, jid: object) -> bool:
        try:
            return JID(str(jid)).bare in self._clients
        except ValueError:
            return False

    def __iter__(self) -> Iterator[JID]:
        return iter(list(self._clients))

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def clients(self) -> list[Client]:
        with self._lock:
            return list(self._clients.values())

    # -- connecting ----------------------------------------------------------------------------
    def connect(self, timeout: float | None = None, *, parallel: int = 16,
                raise_on_error: bool = True) -> dict[JID, BaseException]:
        """Connect every account not yet connected, `parallel` at a time.

        Returns the failures by account (empty when all connected); with `raise_on_error`
        the first failure is raised after all attempts finished, the others in its notes.
        """
        pending = [c for c in self.clients if c.state == "disconnected"]
        self._inbox.reopen()  # after disconnect(): a fresh start, like the first one
        failures: dict[JID, BaseException] = {}
        with concurrent.futures.ThreadPoolExecutor(max(1, parallel),
                                                   thread_name_prefix="simplexmpp-pool") as ex:
            futures = {ex.submit(c.connect, timeout): c for c in pending}
            for future in concurrent.futures.as_completed(futures):
                exc = future.exception()
                if exc is not None:
                    failures[futures[future].account.bare] = exc
        if failures and raise_on_error:
            first_jid, first = next(iter(failures.items()))
            if len(failures) > 1 and hasattr(first, "add_note"):  # Python 3.11+
                first.add_note(f"{len(failures) - 1} other account(s) failed too: "
                               + ", ".join(str(j) for j in list(failures)[1:11]))
            raise first
        return failures

    def disconnect(self, timeout: float | None = None) -> None:
        """Disconnect every account (each flushes first); raises the first failure after
        all were closed."""
        failures: list[BaseException] = []
        clients = [c for c in self.clients if c.state != "disconnected"]
        with concurrent.futures.ThreadPoolExecutor(
                max(1, min(32, len(clients))), thread_name_prefix="simplexmpp-pool") as ex:
            for future in [ex.submit(c.disconnect, timeout) for c in clients]:
                exc = future.exception()
                if exc is not None:
                    failures.append(exc)
        self._inbox.close()
        if failures:
            raise failures[0]

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.disconnect()
        except errors.XMPPError:
            if exc_info[0] is None:
                raise

    # -- using ---------------------------------------------------------------------------------
    def send_message(self, account: JID | str, to: JID | str, body: str | None,
                     **kwargs: Any) -> str:
        """Send from one account; returns the message id."""
        return self[account].send_message(to, body, **kwargs)

    def messages(self, timeout: float | None = None) -> Iterator[tuple[JID, Message]]:
        """Incoming messages of all accounts as `(account, message)`; ends after
        `timeout` seconds without one, or when the pool is disconnected."""
        if timeout is not None:  # None: no limit
            timeout = timeout_seconds(timeout)
        yield from self._inbox.iterate(timeout)

    @property
    def inbox_dropped(self) -> int:
        """Messages given up because nobody read [messages][simplexmpp.Pool.messages] and
        more than `max_inbox` (a client keyword, default 10,000) were waiting."""
        return self._inbox.dropped
