"""An in-process loopback XMPP server for the unit tests of your bots, plus pytest fixtures.

**For tests only, never for production**: it keeps everything in memory, trusts every client on
loopback, has no rate limits, no persistence, no server-to-server links and no offline storage. It
speaks just enough XMPP (RFC 6120, RFC 6121) for a real [`simplexmpp.Client`][simplexmpp.Client] to
connect and exchange stanzas with other local accounts, so that a bot can be tested in milliseconds
without installing a server. Features are proven against a real server (Prosody) by simplexmpp's own
integration tests; this one is a stand-in.

```python
from simplexmpp.testing import FakeServer
with FakeServer(users={"alice": "pw", "bob": "pw"}) as server:
    with server.client("alice") as alice, server.client("bob") as bob:
        alice.send_message("bob@localhost", "hi")
        assert bob.next_message(timeout=5).body == "hi"
```

What it does: the stream (RFC 6120 §4), STARTTLS with a throwaway self-signed certificate
(`tls=True`, §5), SASL PLAIN and SCRAM-SHA-1/-256 (§6, RFC 5802), resource binding (§7), the roster
with pushes (RFC 6121 §2), a simplified subscription state machine (§3), presence broadcast to
subscribed contacts (§4), message and IQ routing between local accounts (§8), `service-unavailable`
for targets it does not know, XEP-0199 ping, a minimal XEP-0030 disco#info, scripted IQ replies
([`FakeServer.script()`][simplexmpp.testing.FakeServer.script]), injected stanzas
([`FakeServer.inject()`][simplexmpp.testing.FakeServer.inject]) and logs of what it received and
delivered for assertions.

What it does not do: stream management (XEP-0198), offline messages, MAM, MUC, carbons,
roster versioning, pre-approved subscriptions, federation, direct TLS, channel binding
(`-PLUS` mechanisms), privacy lists, blocking. Register scripted replies to stand in for
services it lacks.

Threads: one accept thread, plus one thread per connection that owns its socket (reads, feeds a
sans-IO [`simplexmpp.serverstream.ServerStream`][simplexmpp.serverstream.ServerStream], which
negotiates, and writes what other threads queued).
Routing happens on the sender's connection thread under one server lock. `stop()` closes every
connection and joins every thread; an unexpected exception in a server thread (or in a scripted
reply) is kept in [`FakeServer.errors`][simplexmpp.testing.FakeServer.errors] and raised again by
`stop()`.

Modules: `server.py` (the [`FakeServer`][simplexmpp.testing.FakeServer] class, scripts, inspection),
`routing.py` (RFC 6120/6121 routing, rosters, subscriptions, presence), `session.py` (one
connection: socket, TLS, the [`ServerStream`][simplexmpp.serverstream.ServerStream]), `plugin.py`
(the pytest fixtures and helpers). Import everything from `simplexmpp.testing`.
"""

from __future__ import annotations

from .plugin import DEFAULT_USERS, ClientFactory, running_server
from .server import NO_REPLY, FakeServer, FakeServerError, Script, ScriptReply

__all__ = ["FakeServer", "FakeServerError", "Script", "NO_REPLY", "ScriptReply",
           "running_server", "ClientFactory", "DEFAULT_USERS"]

try:
    from .plugin import xmpp_client, xmpp_server
except ImportError:  # pragma: no cover - the fixtures need pytest; the server does not
    pass
else:
    # `pytest_plugins = ["simplexmpp.testing"]` registers the fixtures found here.
    __all__ += ["xmpp_server", "xmpp_client"]
