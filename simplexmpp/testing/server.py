"""The FakeServer itself: life cycle, accounts, clients, inspection, scripted replies and
injection. Negotiation is [`ServerStream`][simplexmpp.serverstream.ServerStream]'s (driven by
`session.py`), routing is in `routing.py`."""

from __future__ import annotations

import enum
import hmac
import itertools
import logging
import os
import selectors
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from .. import errors
from ..client import Client, timeout_seconds
from ..errors import IqError, StreamError, XMPPError
from ..jid import JID
from ..roster import RosterItem
from ..sasl import MIN_ITERATIONS, ScramCredentials, saslprep
from ..stanza import Iq, Stanza
from ..xml import CLIENT_NS
from .routing import DISCO_INFO_NS, DISCO_ITEMS_NS, PING_NS, Router, _Contact
from ..transport import is_loopback
from .session import Session, throwaway_cert

__all__ = ["FakeServer", "FakeServerError", "Script", "NO_REPLY", "ScriptReply"]

log = logging.getLogger(__name__)

_STANZA_TAGS = frozenset("{%s}%s" % (CLIENT_NS, n) for n in ("message", "presence", "iq"))
_SCRAM_ITERATIONS = MIN_ITERATIONS   # RFC 7677 §4: the minimum, and what the client accepts
_T = TypeVar("_T")


class FakeServerError(XMPPError):
    """Raised by [`FakeServer.stop()`][simplexmpp.testing.FakeServer.stop] when something failed
    inside the server (a bug in it or an exception in a scripted reply); `errors` lists every
    exception caught."""

    def __init__(self, message: str, caught: list[BaseException]) -> None:
        super().__init__(message)
        self.errors = caught


class _NoReply(enum.Enum):
    NO_REPLY = "no reply"


NO_REPLY = _NoReply.NO_REPLY
"""A scripted reply that answers nothing (to test how a bot handles an IQ timeout)."""

_Answer = Union[ET.Element, Stanza, IqError, _NoReply, None]
ScriptReply = Union[_Answer, Callable[[Iq], _Answer]]
"""What [`FakeServer.script()`][simplexmpp.testing.FakeServer.script] accepts as `reply`: a payload
element for a `result`, a complete `Iq`, an `IqError` to answer with, `None` for an empty result,
[`NO_REPLY`][simplexmpp.testing.NO_REPLY], or a callable taking the request `Iq` and returning one
of those (it may also raise `IqError`)."""


@dataclass
class Script:
    """A scripted IQ reply registered with
    [`FakeServer.script()`][simplexmpp.testing.FakeServer.script].

    `requests` holds every request it answered, oldest first; `remaining` is how many more
    times it answers (None: without limit).
    """

    match: str | Callable[[Iq], bool]
    reply: ScriptReply
    to: JID | None = None
    type: str | None = None
    remaining: int | None = None
    requests: list[Iq] = field(default_factory=list)
    _server: FakeServer | None = field(default=None, repr=False)

    def matches(self, iq: Iq) -> bool:
        """True if this script answers `iq` (ignoring how often it has been used)."""
        if self.type is not None and iq.xml.get("type") != self.type:
            return False
        if self.to is not None:
            target = iq.xml.get("to")
            if target is None:
                return False
            target_jid = JID(target)
            if target_jid != self.to and not (self.to.is_bare and target_jid.bare == self.to):
                return False
        if isinstance(self.match, str):
            payload = iq.payload
            return payload is not None and payload.tag == self.match
        return bool(self.match(iq))

    def remove(self) -> None:
        """Stop using this script."""
        if self._server is not None:
            self._server._remove_script(self)

class _Accounts:
    """The server's accounts as [`ServerStream`][simplexmpp.serverstream.ServerStream]
    authenticates them ([`ServerAccounts`][simplexmpp.sasl.ServerAccounts]): names are localparts
    normalised as in a JID; each account keeps one salt, so clients can cache their keys."""

    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def scram_credentials(self, username: str,
                          mechanism: str) -> tuple[str, ScramCredentials] | None:
        user = self._server._user_key(username)
        if user is None:
            return None
        password, salt = self._server._credentials(user)
        return user, ScramCredentials.from_password(mechanism, password, salt, _SCRAM_ITERATIONS)

    def check_password(self, username: str, password: str) -> str | None:
        user = self._server._user_key(username)
        if user is None:
            return None
        known = self._server._credentials(user)[0]
        return user if _same_password(password, known) else None


def _same_password(given: str, known: str) -> bool:
    return hmac.compare_digest(saslprep(given).encode(), saslprep(known).encode())


class FakeServer(Router):
    """An in-process loopback XMPP server for tests. **Not for production use.**

    `users` maps account names (localparts) to passwords. With `tls=True` the server requires
    STARTTLS with a throwaway self-signed certificate whose path is
    [`ca_file`][simplexmpp.testing.FakeServer.ca_file] (made with the `openssl` tool unless
    `cert_file`/`key_file` are given); [`client()`][simplexmpp.testing.FakeServer.client] passes it
    to the clients it makes. `port=0` picks a free port; the port in use is `port` once started.

    ```python
    with FakeServer(users={"alice": "secret"}) as server:
        with server.client("alice") as alice:
            alice.ping()
    ```
    """

    def __init__(self, domain: str = "localhost", users: Mapping[str, str] | None = None, *,
                 tls: bool = False, host: str = "127.0.0.1", port: int = 0,
                 cert_file: str | None = None, key_file: str | None = None) -> None:
        self.domain = JID(domain).domain
        if JID(domain) != self.domain:
            raise ValueError(f"domain must be a bare domain like 'localhost', not {domain!r}")
        if not is_loopback(host):
            # It trusts every client and has no limits: never expose it to a network.
            raise ValueError(f"FakeServer only listens on loopback addresses, not {host!r}")
        self.host = host
        self.port = port
        self.tls = bool(tls)
        self._cert_file = cert_file
        self._key_file = key_file
        self.ca_file: str | None = None
        """The certificate clients must trust when `tls=True` (None otherwise)."""
        self.errors: list[BaseException] = []
        """Exceptions caught in server threads or scripted replies; `stop()` raises them."""
        self.stream_errors: list[tuple[str, StreamError]] = []
        """Stream errors the server sent because a client broke the protocol (for inspection; they
        are not server failures and `stop()` does not raise them)."""
        self.disco_features: set[str] = {DISCO_INFO_NS, DISCO_ITEMS_NS, PING_NS}
        """Features the server lists in its disco#info (XEP-0030); add yours."""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._users: dict[str, tuple[str, bytes]] = {}
        self._rosters: dict[str, dict[JID, _Contact]] = {}
        self._connections: set[Session] = set()
        self._sessions: dict[JID, Session] = {}
        self._scripts: list[Script] = []
        self._received: list[Stanza] = []
        self._delivered: list[tuple[JID, Stanza]] = []
        self._ssl: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._accounts = _Accounts(self)
        self._numbers = itertools.count(1)
        self._running = False
        self._stopped = False
        for name, password in (users or {}).items():
            self.add_user(name, password)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> FakeServer:
        """Listen and serve in background threads; returns self."""
        with self._lock:
            if self._running:
                return self
            if self._stopped:
                raise RuntimeError("a FakeServer cannot be restarted; make a new one")
        if self.tls:
            if self._cert_file is None:
                self._cert_file, self._key_file = throwaway_cert(self.domain)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self._cert_file, self._key_file)
            self._ssl = ctx
            self.ca_file = self._cert_file
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, self.port))
            listener.listen(64)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._running = True
        self._accept_thread = threading.Thread(
            target=self._accept_main, name=f"simplexmpp-fakeserver-{self.port}-accept",
            daemon=True)
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (clients see a `system-shutdown` stream error), join every thread,
        and raise [`FakeServerError`][simplexmpp.testing.FakeServerError] if anything failed inside
        the server."""
        timeout = timeout_seconds(timeout)
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stopped = True
        assert self._wake_w is not None and self._accept_thread is not None
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        self._accept_thread.join(timeout)
        with self._lock:
            sessions = list(self._connections)
        for session in sessions:
            session.close("system-shutdown", "the test server is stopping")
        deadline = time.monotonic() + timeout
        for session in sessions:
            session.thread.join(max(0.0, deadline - time.monotonic()))
            if session.thread.is_alive():
                session.wire.shutdown()
                session.thread.join(1.0)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        stuck = [t.name for t in [self._accept_thread, *(s.thread for s in sessions)]
                 if t.is_alive()]
        if stuck:
            self._record_error(RuntimeError(f"threads did not stop: {', '.join(stuck)}"))
        with self._changed:
            self._changed.notify_all()
        if self.errors:
            raise FakeServerError(
                f"{len(self.errors)} error(s) inside the FakeServer; the first: "
                f"{self.errors[0]!r}", list(self.errors)) from self.errors[0]

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.stop()
        except FakeServerError:
            if exc_type is None:
                raise
            log.exception("FakeServer failed while the test failed too")

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._running

    def _accept_main(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._listener, selectors.EVENT_READ, "accept")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while self._running:
                for key, _ in selector.select():
                    if key.data == "wake":
                        return
                    try:
                        sock, _ = self._listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    session = Session(self, sock, next(self._numbers))
                    with self._lock:
                        if not self._running:
                            session.wire.close()
                            return
                        self._connections.add(session)
                    session.thread.start()
        except Exception as exc:  # noqa: BLE001 - never lost
            self._record_error(exc)
        finally:
            selector.close()

    def _record_error(self, exc: BaseException) -> None:
        log.error("FakeServer: %r", exc, exc_info=exc)
        with self._changed:
            self.errors.append(exc)
            self._changed.notify_all()

    def _note_stream_error(self, session: Session, exc: StreamError) -> None:
        log.info("FakeServer: stream error for %s: %s", session, exc)
        with self._changed:
            self.stream_errors.append((str(session.jid or session.user or "?"), exc))
            self._changed.notify_all()

    # -- accounts ------------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> JID:
        """Create (or reset the password of) an account; returns its bare JID."""
        jid = JID(local=name, domain=self.domain)
        assert jid.local is not None
        with self._lock:
            self._users[jid.local] = (password, os.urandom(16))
            self._rosters.setdefault(jid.local, {})
        return jid

    @property
    def users(self) -> list[str]:
        """The account names (localparts)."""
        with self._lock:
            return sorted(self._users)

    # -- clients -------------------------------------------------------------------------------
    def client(self, user: str, **kwargs: Any) -> Client:
        """A [`simplexmpp.Client`][simplexmpp.Client] for `user` set up for this server (not
        connected).

        Defaults: the password given for the user, `tls="none"` to loopback (or STARTTLS trusting
        [`ca_file`][simplexmpp.testing.FakeServer.ca_file] when the server has `tls=True`),
        `reconnect=False` (so a stopped server ends the client instead of retrying), `timeout=10`.
        Any keyword overrides them (`password=`, `resource=`, `reconnect=True` …).
        """
        if not self._running:
            raise RuntimeError("start the FakeServer before making clients for it")
        jid = JID(user) if "@" in user else JID(local=user, domain=self.domain)
        options: dict[str, Any] = dict(host=self.host, port=self.port, reconnect=False,
                                       timeout=10.0)
        if self.tls:
            options.update(tls="starttls", ca_file=self.ca_file)
        else:
            options.update(tls="none")
        options.update(kwargs)
        if "password" in options:
            password = options.pop("password")
        else:
            key = self._user_key(jid.local or "")
            if key is None:
                raise KeyError(f"no account {jid.local!r} on this FakeServer; add_user() first")
            password = self._credentials(key)[0]
        return Client(jid, password, **options)

    # -- rosters -------------------------------------------------------------------------------
    def roster_of(self, user: str) -> dict[JID, RosterItem]:
        """The roster of `user` as the server stores it."""
        key = self._existing(user)
        with self._lock:
            return {jid: self._roster_item(jid, c) for jid, c in self._rosters[key].items()}

    def set_roster(self, user: str, items: Mapping[str | JID, str | RosterItem]) -> None:
        """Add or change roster items of `user`: `{contact: subscription}` (`"none"`,
        `"to"`, `"from"`, `"both"`) or `{contact: RosterItem(...)}`. Connected
        sessions get roster pushes, and presence now flows along new subscriptions.

        Only `user`'s side changes; [`make_contacts()`][simplexmpp.testing.FakeServer.make_contacts]
        sets up both sides.
        """
        key = self._existing(user)
        with self._lock:
            for contact, value in items.items():
                jid = JID(str(contact)).bare
                old = self._rosters[key].get(jid)
                if isinstance(value, RosterItem):
                    new = _Contact(value.name, tuple(sorted(value.groups)), value.subscription,
                                   value.ask)
                else:
                    new = _Contact(old.name if old else None, old.groups if old else (),
                                   value, False)
                if new.subscription not in ("none", "to", "from", "both"):
                    raise ValueError(f"subscription must be none, to, from or both, "
                                     f"not {new.subscription!r}")
                had_to, had_from = (old.has_to(), old.has_from()) if old else (False, False)
                self._rosters[key][jid] = new
                self._push(key, jid)
                if new.has_from() and not had_from:
                    self._share_presence(key, jid)
                if new.has_to() and not had_to and jid.domain == self.domain and \
                        jid.local in self._users:
                    self._share_presence(jid.local, self._bare(key))

    def make_contacts(self, user_a: str, user_b: str) -> None:
        """Make two local accounts mutual contacts (subscription `both` on each side)."""
        a, b = self._existing(user_a), self._existing(user_b)
        self.set_roster(a, {self._bare(b): "both"})
        self.set_roster(b, {self._bare(a): "both"})

    # -- inspection ----------------------------------------------------------------------------
    @property
    def received_log(self) -> list[Stanza]:
        """Every stanza the server received from a client (with `from` stamped), in order."""
        with self._lock:
            return list(self._received)

    def sent_to(self, jid: str | JID) -> list[Stanza]:
        """The stanzas the server delivered to `jid` (a full JID: that session; a bare JID:
        any session of the account), in order, including its own replies and pushes."""
        target = JID(str(jid))
        with self._lock:
            if target.is_bare:
                return [s for to, s in self._delivered if to.bare == target]
            return [s for to, s in self._delivered if to == target]

    def sessions(self, user: str | None = None) -> list[JID]:
        """Full JIDs of the bound sessions (of `user`, or of everybody)."""
        with self._lock:
            if user is None:
                return sorted(self._sessions, key=str)
            key = self._existing(user)
            return sorted((s.jid for s in self._sessions_of(key) if s.jid is not None), key=str)

    def wait_for(self, condition: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Wait until `condition()` is truthy and return its value; raise
        [`simplexmpp.errors.TimeoutError`][simplexmpp.errors.TimeoutError] after `timeout` seconds.

        The condition is checked again each time the server receives or delivers a stanza or
        a session starts or ends, and at least every 20 ms, so it may look at clients' state
        too (`lambda: bot.roster`): a client handles what it receives a moment after the
        server delivered it.

        ```python
        server.wait_for(lambda: server.sent_to("bob@localhost"))
        ```
        """
        deadline = time.monotonic() + timeout_seconds(timeout)
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.TimeoutError(f"condition not met within {timeout:g} s")
                self._changed.wait(min(left, 0.02))

    # -- scripted replies and injection --------------------------------------------------------
    def script(self, match: str | Callable[[Iq], bool], reply: ScriptReply = None, *,
               to: str | JID | None = None, type: str | None = None,
               times: int | None = None) -> Script:
        """Answer IQ requests from clients that match, instead of routing them.

        `match` is the Clark name of the payload (`"{urn:xmpp:time}time"`) or a callable taking the
        request [`Iq`][simplexmpp.Iq]. `to` limits it to requests addressed to that JID (a bare JID
        also matches its full JIDs); `type` to `"get"` or `"set"`; `times` to that many answers.
        `reply` is a payload element (sent in a `result`), `None` (an empty result), an `Iq` (sent
        as is; `to`, `from`, `id` filled in when missing), an [`IqError`][simplexmpp.errors.IqError]
        (an error reply), [`NO_REPLY`][simplexmpp.testing.NO_REPLY], or a callable taking the
        request and returning one of those. An exception other than `IqError` from the callable is
        answered with `internal-server-error` and raised again by
        [`stop()`][simplexmpp.testing.FakeServer.stop]. Scripts are tried in the order they were
        added.
        """
        if type not in (None, "get", "set"):
            raise ValueError("type must be None, 'get' or 'set'")
        script = Script(match, reply, JID(str(to)) if to is not None else None, type, times,
                        _server=self)
        with self._lock:
            self._scripts.append(script)
        return script

    def _remove_script(self, script: Script) -> None:
        with self._lock:
            if script in self._scripts:
                self._scripts.remove(script)

    def inject(self, stanza: Stanza | ET.Element | str) -> None:
        """Deliver `stanza` as is to the session its `to` names (a bare JID: every session
        of that account), as if the server had routed it; `from` is left as given, so it
        can pretend to come from anybody. A string is parsed as XML in `jabber:client`.
        Raises LookupError when no such session is connected."""
        if isinstance(stanza, str):
            element = ET.fromstring(f'<wrapper xmlns="{CLIENT_NS}">{stanza}</wrapper>')[0]
        else:
            element = stanza.xml if isinstance(stanza, Stanza) else stanza
        if element.tag not in _STANZA_TAGS:
            raise ValueError(f"only message, presence and iq stanzas can be injected, not "
                             f"<{element.tag}>")
        target_text = element.get("to")
        if not target_text:
            raise ValueError("an injected stanza needs a 'to' naming a connected session")
        target = JID(target_text)
        with self._lock:
            if target.is_bare:
                key = self._user_key(target.local or "") if target.domain == self.domain \
                    else None
                sessions = self._sessions_of(key) if key is not None else []
            else:
                found = self._sessions.get(target)
                sessions = [found] if found is not None else []
            if not sessions:
                raise LookupError(f"no connected session for {target}")
            for session in sessions:
                self._deliver(session, element)

    def _run_script(self, session: Session, iq: Iq) -> bool:
        answer: Any
        with self._lock:
            try:
                script = next((s for s in self._scripts
                               if (s.remaining is None or s.remaining > 0) and s.matches(iq)),
                              None)
            except Exception as exc:  # noqa: BLE001 - a bug in the test's match function
                self._record_error(exc)
                script, answer = None, IqError("internal-server-error", "wait",
                                               f"script match failed: {exc!r}")
            else:
                if script is None:
                    return False
                if script.remaining is not None:
                    script.remaining -= 1
                script.requests.append(iq)
                answer = script.reply
        try:
            if callable(answer) and not isinstance(answer, (ET.Element, Stanza)):
                answer = answer(iq)
        except IqError as exc:
            answer = exc
        except Exception as exc:  # noqa: BLE001 - a bug in the test's script: raise it in stop()
            self._record_error(exc)
            answer = IqError("internal-server-error", "wait", f"scripted reply failed: {exc!r}")
        if answer is NO_REPLY:
            return True
        assert session.jid is not None
        if isinstance(answer, IqError):
            reply = iq.error_reply(answer.condition, answer.type, answer.text)
        elif isinstance(answer, Stanza) or (isinstance(answer, ET.Element)
                                            and answer.tag in _STANZA_TAGS):
            reply = Iq(answer.xml if isinstance(answer, Stanza) else answer)
            reply.xml.attrib.setdefault("type", "result")
            reply.xml.attrib.setdefault("id", iq.id or "")
        elif answer is None or isinstance(answer, ET.Element):
            reply = iq.result(answer)
        else:
            self._record_error(TypeError(f"a scripted reply returned {answer!r}; expected an "
                                         "Element, Iq, IqError, None or NO_REPLY"))
            reply = iq.error_reply("internal-server-error", "wait")
        reply.xml.set("to", str(session.jid))
        if iq.xml.get("to") and reply.xml.get("from") is None:
            reply.xml.set("from", iq.xml.get("to", ""))
        self._deliver(session, reply.xml)
        return True

    def __repr__(self) -> str:
        state = f"port {self.port}" if self._running else "stopped"
        return f"<FakeServer {self.domain} {state} {len(self._sessions)} sessions>"
