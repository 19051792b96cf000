"""The public extension interface: [Extension][simplexmpp.extension.Extension] and
[Session][simplexmpp.extension.Session].

Built-in extensions (`client.muc`, `client.carbons` …) and third-party ones use the same
interface; none reaches into the client's private attributes (a test checks every module of
`simplexmpp/ext`). See docs/extensions/writing.md.

```python
import simplexmpp

class Weather(simplexmpp.Extension):
    name = "weather"                          # becomes client.weather
    features = ("urn:example:weather",)       # advertised in disco#info and the caps hash

    def session_started(self, session):       # a new session: restore state here
        ...

client.extension(Weather)                     # attach once; later calls return the same object
```
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .jid import JID

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Extension", "Session", "ENTRY_POINT_GROUP", "HOOKS"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "simplexmpp.extensions"
"""The importlib.metadata entry-point group third-party packages register extensions in."""

HOOKS = ("session_started", "session_resumed", "session_lost", "client_stopped")
"""The lifecycle hooks an extension may override; each is called on the dispatcher thread."""


@dataclass(frozen=True)
class Session:
    """One XMPP session of a client, as told to
    [Extension.session_started][simplexmpp.extension.Extension.session_started] and
    [Extension.session_resumed][simplexmpp.extension.Extension.session_resumed].

    Attributes:
        number: 1 for the first session this client object ever had, 2 for the next new
            session (after a reconnect that could not resume, or after `disconnect()` and
            `connect()`), and so on. A resumption (XEP-0198) keeps the number.
        first: Whether this is the first session since the latest `connect()`.
        jid: The full JID the server bound for this session.
        resumed: Whether the session was resumed (XEP-0198) rather than started anew.
        started: When this session (or, for a resumption, the resumed one) became ready, UTC.
        connected: When the first session since the latest `connect()` became ready, UTC.
    """

    number: int
    first: bool
    jid: JID
    resumed: bool
    started: datetime
    connected: datetime


class Extension:
    """Base of every client extension, built-in or third-party.

    A subclass sets [name][simplexmpp.extension.Extension.name] (the attribute it becomes on
    the client) and [features][simplexmpp.extension.Extension.features] (added to the
    client's disco#info and XEP-0115 caps hash), and overrides the lifecycle hooks it needs.
    Hooks it does not override are not registered, so a client whose extensions override
    none starts no dispatcher thread when it connects.

    Attach one with [Client.extension][simplexmpp.client.Client.extension]; a package can have it
    attached to every new client through an entry point in the group
    `simplexmpp.extensions` (see docs/extensions/writing.md).

    Threads: the constructor runs on the thread that attaches the extension (the one
    creating the client, for built-ins and entry points). Every hook runs on the client's
    dispatcher thread, in order and before the user's callbacks for the same event, and may
    call blocking client methods. Nothing of an extension written against this interface
    runs on the I/O thread.

    Example:
        ```python
        class Weather(simplexmpp.Extension):
            name = "weather"
            features = ("urn:example:weather",)

            def __init__(self, client):
                super().__init__(client)
                client.register_iq_handler("get", "{urn:example:weather}query", self.answer)

            def answer(self, iq):
                ...
        ```
    """

    name: ClassVar[str] = ""
    """The attribute the extension becomes on the client (`client.<name>`); a valid Python
    identifier that is not already a client attribute."""
    features: ClassVar[tuple[str, ...]] = ()
    """Feature namespaces this extension adds to the client's disco#info (XEP-0030) and so to its
    XEP-0115 capabilities hash."""
    follow_sessions_from_start: ClassVar[bool] = True
    """When True (the default) the overridden hooks are called from the moment the extension is
    attached. An extension that has nothing to restore until it is used sets False and calls
    [follow_sessions][simplexmpp.extension.Extension.follow_sessions] once it has state to keep (the
    built-in MUC does so on the first join), so that an unused extension starts no dispatcher
    thread."""

    def __init__(self, client: Client) -> None:
        """Attach to `client`: called by [Client.extension][simplexmpp.client.Client.extension].

        A subclass that overrides this calls `super().__init__(client)` first.
        """
        self.client = client
        """The client this extension is attached to."""
        # The same, under the name the built-in extensions have always used.
        self._client = client

    # -- lifecycle hooks (dispatcher thread) ----------------------------------------------------
    def session_started(self, session: Session) -> None:
        """A new session is ready (the first one, or one that replaced a lost session that
        could not be resumed): what the server held for the old one (rooms joined, carbons
        enabled, …) is gone; restore it here. Runs on the dispatcher thread before the
        "connected" callbacks."""

    def session_resumed(self, session: Session) -> None:
        """A lost connection was resumed (XEP-0198): the server kept the session and
        nothing was lost. Runs on the dispatcher thread before the "resumed" callbacks."""

    def session_lost(self, error: BaseException | None) -> None:
        """The connection carrying the session is gone: `error` is why (None for a clean
        `disconnect()`). Next comes
        [session_resumed][simplexmpp.extension.Extension.session_resumed] or
        [session_started][simplexmpp.extension.Extension.session_started] after a
        reconnect, or [client_stopped][simplexmpp.extension.Extension.client_stopped]."""

    def client_stopped(self, error: BaseException | None) -> None:
        """The client stopped for good (`disconnect()`, or a failure it does not reconnect
        after): `error` is the failure, or None. Runs before the "disconnected" callbacks."""

    # -- helpers -------------------------------------------------------------------------------
    def follow_sessions(self) -> None:
        """Have the overridden hooks called from now on (for an extension whose
        `follow_sessions_from_start` is False). Calling it again does nothing."""
        self.client._router.follow_sessions(self)  # noqa: SLF001 - the client's side of this class

    def timeout(self, timeout: float | None) -> float:
        """`timeout`, or the client's default timeout when it is None, in seconds the
        waiting primitives take: infinite or huge means as long as it takes, NaN or a
        negative number is a ValueError (the client's own rule for every blocking call)."""
        from .connection import timeout_seconds  # (not at the top: connection needs us)
        return timeout_seconds(timeout, self.client.timeout)

    def _intercept_stanzas(self, kind: str, interceptor: Callable[[Any], bool], *,
                   tags: Any = None, types: Any = None) -> int:
        """Package-private fast path for simplexmpp's own extensions: `interceptor` runs
        on the I/O thread for each received `kind` ("message" or "presence") stanza it
        asks for and returns True to claim it. Not part of the public interface: it must be
        quick and never block, and user code never runs on the I/O thread; third-party
        extensions use [Client.add_stanza_handler][simplexmpp.client.Client.add_stanza_handler]."""
        return self.client._router.add_interceptor(kind, interceptor, tags=tags, types=types)

    def _order_messages(self, gate: Callable[[Any, Any], bool] | None) -> Callable[..., None]:
        """Package-private, for OMEMO's ordering: `gate(element, msg)` runs for each message
        about to reach the inbox and the "message" callbacks, after the interceptors, the
        error and the repeat checks (on the I/O thread, or the thread of a `deliver()`), and
        returns True to hold it back; the function returned hands such a message out later
        (`hand_out(element, msg)`, no checks again). One gate per client; None removes it
        (no cost on the receive path)."""
        router = self.client._router  # noqa: SLF001 - the client's side of this class
        router.gate = gate
        return router.hand_out

    @classmethod
    def overridden_hooks(cls) -> tuple[str, ...]:
        """The lifecycle hooks this class overrides (the only ones the client calls)."""
        return tuple(hook for hook in HOOKS
                     if getattr(cls, hook) is not getattr(Extension, hook))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} extension {type(self).name!r} of {self.client!r}>"


_installed: list[type[Extension]] | None = None


def installed_extensions(refresh: bool = False) -> list[type[Extension]]:
    """The extension classes installed packages register in the entry-point group
    `simplexmpp.extensions`, sorted by entry-point name.

    Every new [Client][simplexmpp.client.Client] attaches them (unless created with
    `load_extensions=False`). They are looked up once per process, on the first call (the
    first client created); `refresh=True` looks again, for packages installed since. An
    entry point that cannot be loaded, or that names something other than an
    [Extension][simplexmpp.extension.Extension] subclass, is logged (ERROR) and left out.
    """
    global _installed
    if _installed is not None and not refresh:
        return list(_installed)
    from importlib.metadata import entry_points
    found: list[type[Extension]] = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            cls = entry.load()
        except Exception:  # noqa: BLE001 - a broken plug-in must not stop every client
            log.exception("cannot load the simplexmpp extension %r (%s)", entry.name,
                          entry.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Extension)):
            log.error("the entry point %r (%s) in %s is not a simplexmpp.Extension "
                      "subclass; ignored", entry.name, entry.value, ENTRY_POINT_GROUP)
            continue
        found.append(cls)
    _installed = found
    return list(found)


def attach_installed(client: Client) -> None:
    """Attach to `client` the extensions installed packages register (see
    [installed_extensions][simplexmpp.extension.installed_extensions]); what a
    [Client][simplexmpp.client.Client] created with `load_extensions=True` (the default)
    does. One that cannot be attached is logged and skipped: a broken plug-in does not stop
    the client."""
    for cls in installed_extensions():
        try:
            client.extension(cls)
        except Exception:  # noqa: BLE001 - reported, the client works without it
            log.exception("could not attach the installed extension %s.%s",
                          cls.__module__, cls.__qualname__)
