"""The connection layer: the socket, TLS, the I/O thread (or a pool's hub), reconnecting.

[Connection][simplexmpp.connection.Connection] owns everything of a client that touches the
network or waits for it:

* finding and reaching the server (DNS SRV, direct TLS or STARTTLS), the
  [Wire][simplexmpp.transport.Wire] and the upgrade to TLS;
* the I/O thread (`simplexmpp-io-<jid>`): it reads and feeds the stream, writes what other
  threads queued (one lock guards the stream and the outgoing buffer; a burst of sends
  costs one wake-up), and runs the session's timers. A [Pool][simplexmpp.Pool]'s
  [Hub][simplexmpp.transport.Hub] drives ready connections through the same turn (the public
  protocol [HubConnection][simplexmpp.transport.HubConnection]: `hub_step` / `hub_ended`);
* the reconnect policy (first retry at once, then exponential backoff with jitter; no retry
  after an authentication or TLS failure, nor after a resource conflict);
* the client's state ([ClientState][simplexmpp.connection.ClientState], every transition in
  [TRANSITIONS][simplexmpp.connection.TRANSITIONS], moved through `_move`);
* flushing and closing: confirmation of what was sent (XEP-0198 or a ping), the closing
  handshake, and the flush of every client still connected at interpreter exit.

What the connection is for is its [Role][simplexmpp.connection.Role]: an account's login
(the default), an XEP-0114 component's handshake ([simplexmpp.component][]) or the XEP-0077
pre-authentication stream ([simplexmpp.ext.register][]). The role chooses the stream's
[Negotiator][simplexmpp.stream.Negotiator] for each new connection; nothing of the connection
is overridden.

What arrives goes to the session layer ([simplexmpp.session][]) and, through the client, to
the dispatcher ([simplexmpp.dispatcher][]); no user code ever runs here.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import random
import re
import ssl
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from enum import Enum
from typing import TYPE_CHECKING

from . import errors
from .errors import (AuthenticationError, DisconnectedError, InvalidStanzaError, IqError,
                     NotSentError, StreamError, TLSError, XMPPError)
from .jid import JID
from .sasl2 import FastTokenRejected, Sasl2Negotiator, TokenIssued, bind_requests_for
from .session import PING_NS
from .stanza import Iq
from .stream import (AckReceived, Authenticated, ClientStream, Negotiator,
                     NonzaReceived, Ready, Resumed, SMState, StartTLS, StreamClosed)
from .tokens import FastToken
from .transport import (Hub, Target, Wire, channel_bindings, is_loopback, open_socket, resolve,
                        ssl_context, start_tls)
from .xml import CLIENT_NS

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, IqFuture

__all__ = ["ClientState", "TRANSITIONS", "Role", "LoginRole", "Connection", "timeout_seconds"]

log = logging.getLogger(__name__)
wire_log = logging.getLogger("simplexmpp.wire")  # every byte sent/received, one switch

_ELEMENT = ET.Element
_IQ = "{%s}iq" % CLIENT_NS
_MESSAGE = "{%s}message" % CLIENT_NS
_RECONNECT_FATAL = (AuthenticationError, TLSError)
# SASL data and credentials never reach the wire log: the text of RFC 6120 SASL and XEP-0388
# elements, XEP-0077 passwords, and the secret of an XEP-0484 <token token='...'/>.
_REDACT = re.compile(r"(<(auth|response|challenge|success|initial-response|additional-data)"
                     r"\b[^>]*>)[^<]*|(<password\b[^>]*>)[^<]*|(\btoken=[\"'])[^\"']*")
# A lock that is none (see Connection._read).
_UNLOCKED = contextlib.nullcontext()
# Socket reads (of up to Wire.READ_SIZE) a hub-driven connection gets per turn of the hub.
_HUB_READS_PER_TURN = 16


def _in_sasl(stream: ClientStream) -> bool:
    """Whether `stream` is at its SASL step (the stream's state, or its negotiator's step
    where negotiation is a negotiator's)."""
    negotiator = getattr(stream, "negotiator", None)
    step = getattr(negotiator, "step", None) if negotiator is not None else stream.state
    return step in ("sasl", "sasl2")  # RFC 6120 SASL, or XEP-0388 SASL2 (simplexmpp.sasl2)


def timeout_seconds(timeout: float | None, default: float | None = None) -> float:
    """`timeout` (None: `default`, a client's `timeout`) as seconds every waiting primitive
    accepts: NaN or a negative number is a ValueError; infinity, or anything longer than
    `threading.TIMEOUT_MAX` (some 292 years), becomes `threading.TIMEOUT_MAX`: wait as long
    as it takes (issue 14: `float("inf")` used to raise OverflowError from deep inside a lock
    or a socket). Every blocking call of a client goes through here."""
    if timeout is None:
        if default is None:
            raise TypeError("timeout_seconds() needs a timeout or a default")
        timeout = default
    seconds = float(timeout)
    if not seconds >= 0:  # also catches NaN, which compares false with everything
        raise ValueError(f"timeout must be a number of seconds >= 0 (or None), not {timeout!r}")
    return seconds if seconds < threading.TIMEOUT_MAX else threading.TIMEOUT_MAX


# ----------------------------------------------------------------------------------------
# The client's state, and every transition between states

class ClientState(str, Enum):
    """Where a client is ([Client.state][simplexmpp.Client.state] gives the value, a str)."""

    DISCONNECTED = "disconnected"  # not started, or stopped for good
    CONNECTING = "connecting"      # connect() runs: the first session is being set up
    READY = "ready"                # a session is established
    RECONNECTING = "reconnecting"  # the connection was lost; a new one is being set up
    CLOSING = "closing"            # disconnect() runs: flushing, closing handshake

    def __str__(self) -> str:
        return self.value


_S = ClientState
TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    # connect()
    _S.DISCONNECTED: frozenset({_S.CONNECTING}),
    # the session is ready / the attempt failed for good / disconnect() meanwhile
    _S.CONNECTING: frozenset({_S.READY, _S.DISCONNECTED, _S.CLOSING}),
    # lost (reconnect) / disconnect() / stopped for good (reconnect=False, fatal error)
    _S.READY: frozenset({_S.RECONNECTING, _S.CLOSING, _S.DISCONNECTED}),
    # a new (or resumed) session / another attempt failed / disconnect() / given up
    _S.RECONNECTING: frozenset({_S.READY, _S.RECONNECTING, _S.CLOSING, _S.DISCONNECTED}),
    # the threads have stopped. (A session completing while disconnect() waits for the
    # connect it interrupted is READY again; the closing budget then cuts it.)
    _S.CLOSING: frozenset({_S.DISCONNECTED, _S.READY}),
}
"""Every move between [ClientState][simplexmpp.connection.ClientState]s the connection makes,
and what makes it (the comments); any other move is a bug and raises `RuntimeError`."""


# ----------------------------------------------------------------------------------------
# Roles: what a connection negotiates as

class Role:
    """What a [Connection][simplexmpp.connection.Connection] is for (h11's "our role"): it
    decides the stream's negotiation for every new connection, and the few things that
    differ with it. The default, [LoginRole][simplexmpp.connection.LoginRole], logs an
    account in; [simplexmpp.component][] and the XEP-0077 registration plug in their own.
    """

    name = "role"
    roster_pushes = True
    """Whether a roster set from our account is a push (see
    [SessionCore][simplexmpp.session.SessionCore])."""
    confirms_output = True
    """Whether disconnect() asks the server to confirm what was sent (XEP-0198 or a ping)."""

    def check_account(self, client: Client, password: str | None) -> None:
        """Refuse an account this role cannot connect as (the constructor calls it)."""

    def attach_extensions(self, client: Client) -> None:
        """Attach the built-in extensions this role uses (the constructor calls it)."""

    def new_stream(self, client: Client, target: Target, bindings: dict[str, bytes],
                   sm_state: SMState | None) -> ClientStream:
        """The sans-IO stream for one new connection to `target`."""
        raise NotImplementedError

    def connection_failed(self, client: Client, error: BaseException,
                          stream: ClientStream | None, reconnecting: bool) -> BaseException:
        """What a failure of `stream` is reported as (`reconnecting`: after the first
        session since `connect()`)."""
        return error

    def redact(self, text: str) -> str:
        """`text` as the wire log shows it: secrets replaced."""
        return _REDACT.sub(lambda m: (m.group(1) or m.group(3) or m.group(4)) + "[redacted]",
                           text)

    def incoming_request(self, client: Client, iq: Iq) -> bool:
        """I/O thread, before an IQ get/set goes to the handlers: True when the role has
        answered it itself. Must be quick and never block."""
        return False

    def token_issued(self, client: Client, token: FastToken) -> None:
        """I/O thread: the server issued (or rotated) an XEP-0484 FAST token at login."""

    def token_rejected(self, client: Client, error: FastTokenRejected,
                       stream: ClientStream | None) -> bool:
        """I/O thread: the server refused the FAST token; True to connect again at once."""
        return False


class LoginRole(Role):
    """An account's login: STARTTLS or direct TLS, SASL, resource binding, XEP-0198; with
    XEP-0388 SASL2, XEP-0386 Bind2 and XEP-0484 FAST where the server offers them
    ([Sasl2Negotiator][simplexmpp.sasl2.Sasl2Negotiator])."""

    name = "login"

    def __init__(self) -> None:
        self.user_agent_id: str | None = None
        """The SASL2 user-agent id: the token store's, else one per client."""
        self.refused_token: str | None = None  # a FAST token the server refused

    def check_account(self, client: Client, password: str | None) -> None:
        account = client.account
        if account.local is None and password is not None and client.mechanisms is None:
            raise errors.JIDError(f"{account} has no localpart; an account JID looks "
                                  "like user@example.org")

    def attach_extensions(self, client: Client) -> None:
        from . import ext
        ext.attach(client)

    def new_stream(self, client: Client, target: Target, bindings: dict[str, bytes],
                   sm_state: SMState | None) -> ClientStream:
        return ClientStream(
            client.account, tls=self.tls_mode(client, target),
            sm=client.stream_management, sm_state=sm_state,
            max_stanza_size=client.max_stanza_size, lang=client.lang,
            channel_bindings=bindings, negotiator=self.negotiator(client))

    def negotiator(self, client: Client) -> Negotiator:
        """The stream's negotiator for one new connection: SASL2, Bind2 and FAST where the
        server offers them, else RFC 6120 SASL, bind and XEP-0198."""
        store = client.token_store
        if self.user_agent_id is None:
            self.user_agent_id = store.user_agent_id if store is not None else \
                str(uuid.uuid4())
        token = store.get(client.account) if store is not None else None
        if token is not None and token.token == self.refused_token:
            token = None  # refused before, and the store could not be updated
        extensions = client.extensions
        carbons, csi = extensions.get("carbons"), extensions.get("csi")
        return Sasl2Negotiator(
            client._password, user_agent_id=self.user_agent_id,
            resource=client.account.resource, mechanisms=client.mechanisms, token=token,
            request_token=store is not None and token is None,
            bind_requests=bind_requests_for(
                carbons=bool(getattr(carbons, "enabled", False)),
                csi_state=getattr(csi, "state", None)))

    def token_issued(self, client: Client, token: FastToken) -> None:
        """XEP-0484 §4.2, §4.4: keep the token the server issued (or rotated)."""
        store = client.token_store
        if store is None:
            return
        try:
            store.put(client.account, token)
            log.debug("stored a FAST token (%s) for %s in %s", token.mechanism,
                      client.account.bare, store.path)
        except XMPPError as exc:
            log.warning("could not store the FAST token: %s", exc)

    def token_rejected(self, client: Client, error: FastTokenRejected,
                       stream: ClientStream | None) -> bool:
        """XEP-0484 §5: forget a token the server refused; True when the password can log in
        at once instead."""
        log.warning("%s", error)
        token = getattr(getattr(stream, "negotiator", None), "token", None)
        if token is not None:
            self.refused_token = token.token
        if client.token_store is not None:
            try:
                client.token_store.discard(client.account, token)
            except XMPPError as exc:
                log.warning("could not update the token store: %s", exc)
        return error.password_available and client._password is not None

    @staticmethod
    def tls_mode(client: Client, target: Target) -> str:
        """How a connection to `target` is secured: `direct`, `starttls` or `none`."""
        return "direct" if target.direct_tls else ("none" if client.tls == "none" else "starttls")


# ----------------------------------------------------------------------------------------
# Closing several clients at once, and at interpreter exit

def close_connections(connections: list[tuple[Connection, float]]) -> list[NotSentError | None]:
    """Flush and close `connections`, each by its deadline (`time.monotonic()`), side by
    side: every confirmation is asked for before any is waited for, so several clients take
    as long as the slowest, not the sum. Starts no thread (at interpreter exit Python 3.12
    refuses new ones). Returns, per connection, what it could not confirm (None: all)."""
    flushing = [conn.state in (_S.READY, _S.RECONNECTING) for conn, _ in connections]
    pings = [conn._ask_confirmation() if busy else None
             for (conn, _), busy in zip(connections, flushing)]
    outcomes: list[tuple[bool, list[str]]] = []
    for (conn, deadline), busy, ping in zip(connections, flushing, pings):
        outcomes.append(conn._flush_until(deadline, ping) if busy else (True, []))
    for conn, _ in connections:
        conn._begin_close()
    for conn, deadline in connections:
        conn._end_close(deadline)
    results: list[NotSentError | None] = []
    for (conn, _), (confirmed, ids) in zip(connections, outcomes):
        if confirmed and not ids:
            results.append(None)
        elif ids:
            results.append(NotSentError(
                f"the server did not confirm {len(ids)} stanza(s) before the connection "
                f"closed: {', '.join(ids[:10])}" + (" …" if len(ids) > 10 else ""), ids))
        else:
            results.append(NotSentError(
                "the server did not confirm the last stanzas sent before the timeout (no "
                "answer to a ping sent after them; without stream management they cannot be "
                "named)", ids))
    return results


# Connections of clients connected (or reconnecting), flushed and closed at interpreter exit.
_live: set[Connection] = set()
_live_lock = threading.Lock()
_exit_hook = False


def _track(conn: Connection) -> None:
    """connect(): flush and close `conn` at interpreter exit unless it stops before."""
    global _exit_hook
    with _live_lock:
        _live.add(conn)
        if not _exit_hook:
            # atexit, not threading._register_atexit: atexit functions run after the
            # interpreter has joined every non-daemon thread (a thread of yours still
            # sending, or reading messages(), keeps its client until it ends), while the
            # daemon I/O threads still run. Those hooks run before that join, and would
            # close a client under a thread still using it.
            atexit.register(_close_at_exit)
            _exit_hook = True


def _untrack(conn: Connection) -> None:
    with _live_lock:
        _live.discard(conn)


def _close_at_exit() -> None:
    """At interpreter exit: flush every client still connected (each within its own
    `timeout`, all side by side), close its stream, and name on stderr what the server
    could not confirm. See docs/reliability.md, "A script that just ends"."""
    with _live_lock:
        connections = list(_live)
    if not connections:
        return
    now = time.monotonic()
    try:
        outcomes = close_connections([(conn, now + conn.client.timeout)
                                      for conn in connections])
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C during the flush, for one
        sys.stderr.write(f"simplexmpp: closing {len(connections)} client(s) at exit was "
                         f"interrupted ({exc!r}); what they sent last may not have arrived\n")
        return
    for conn, outcome in zip(connections, outcomes):
        if outcome is not None:
            # The API contract asks for stderr here: logging may not be configured at all
            # in the script that just ended.
            sys.stderr.write(f"simplexmpp: {conn.client.account.bare} at exit: {outcome}\n")
            if outcome.ids:
                sys.stderr.write("simplexmpp: not confirmed: " + " ".join(outcome.ids)
                                 + "\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------
# The connection

class Connection:
    """The network side of one [Client][simplexmpp.Client] (see the module docstring): one
    object for the client's life, across connections, reconnects and `connect()` again.

    Every attribute below is guarded by `lock` where another thread reads it; `changed` is
    notified on every change of `state`, of the stream's readiness, of the outgoing buffer
    draining and of an acknowledgement.
    """

    def __init__(self, client: Client, role: Role) -> None:
        self.client = client
        self.role = role
        self.core = client._core
        self.lock = threading.RLock()                  # stream state + outgoing buffer
        self.changed = threading.Condition(self.lock)  # ready/drained/acked notifications
        self.state = _S.DISCONNECTED
        self.stream: ClientStream | None = None
        self.wire: Wire | None = None
        self.error: BaseException | None = None        # why the client stopped for good
        self.closing = False
        self.close_expected = False  # see Client.expect_server_close()
        self.sm_state: SMState | None = None  # XEP-0198 state a reconnect resumes
        self.hub: Hub | None = None
        """The [Hub][simplexmpp.transport.Hub] that drives this connection once it is ready
        (`Client(..., hub=)`, a [Pool][simplexmpp.Pool]'s); None: the client's own I/O
        thread does."""
        self.io_thread: threading.Thread | None = None
        self.done: threading.Event | None = None  # set when the client has stopped
        self.outbuf = bytearray()
        # Messages and presences sent (IQs have their answers), and how many of them a
        # flush ping confirmed: what a flush without XEP-0198 can tell (see _flush).
        self.sent = 0
        self.confirmed = 0
        self._io_idle = True   # the I/O thread may be waiting: queued output must wake it
        # Held by the I/O thread for its whole turn, everything but its wait in select(): a
        # thread that acquires it without blocking knows no SSL call is under way on the
        # socket and may write a request itself (see _write_now). OpenSSL forbids an SSL
        # object in SSL_read on one thread and SSL_write on another.
        self._io_turn = threading.Lock()
        self._direct = False   # under _io_turn: the ready stream may be written by callers
        self._wait_until = 0.0  # when the I/O thread's timers are due next (set by a turn)
        self._ready_future: concurrent.futures.Future[JID] | None = None
        self._in_hub = False           # the hub drives the current connection
        self._attempt = 0              # reconnect attempts since the last session
        self._lost_at: float | None = None  # when the connection was lost (None: not lost)
        self._failed_attempts = 0      # reconnect attempts failed since then
        self._sessions_before = 0
        self._io_timeout = client.timeout
        self._sending = bytearray()    # taken from outbuf, being written (I/O side only)
        self._negotiation_deadline: float | None = None

    def _move(self, state: ClientState) -> None:
        """Under the lock: go to `state` (see TRANSITIONS) and tell the waiters."""
        if state is not self.state and state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"client state {self.state} cannot become {state}")
        self.state = state
        self.changed.notify_all()

    @property
    def ready(self) -> bool:
        """A session is established and its stream is ready (read under the lock)."""
        stream = self.stream
        return self.state is _S.READY and stream is not None and stream.state == "ready"

    # ------------------------------------------------------------------------------------
    # Starting and stopping

    def connect(self, timeout: float) -> None:
        """Start the I/O thread and wait up to `timeout` for the first session."""
        client = self.client
        with self.lock:
            if self.state in (_S.READY, _S.CONNECTING, _S.RECONNECTING):
                if self.state is _S.READY:
                    return
                raise XMPPError("connect() is already in progress")
            previous = self.done
        if previous is not None and not previous.is_set():
            # The last session is still stopping (its I/O thread runs _finish): let it end
            # before this one starts, or its end would close the new session's inbox.
            self.join(min(timeout, 5.0))
        with self.lock:
            if self.state is not _S.DISCONNECTED:
                raise XMPPError("connect() is already in progress")
            self._move(_S.CONNECTING)
            self.closing = False
            self.close_expected = False
            self.error = None
            ready = self._ready_future = concurrent.futures.Future()
            client._inbox.reopen()  # the end marker of the last session is forgotten
        self.join(0)
        self._attempt = 0
        self._lost_at = None
        self._sessions_before = self.core.sessions
        self.core.connect_pending = True
        self.done = threading.Event()
        _track(self)
        self._start_io_thread(timeout)
        try:
            ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.abort()
            raise errors.TimeoutError(f"connecting {client.account.bare} did not complete "
                                      f"within {timeout:g} s") from None
        except XMPPError as exc:
            self.join(5)
            raise exc.with_traceback(None) from None

    def abort(self) -> None:
        """Tear the connection down now (no flush)."""
        with self.lock:
            self.closing = True
            self.changed.notify_all()
        if self.wire is not None:
            self.wire.shutdown()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds in all for the client's threads to end."""
        end = time.monotonic() + timeout
        current = threading.current_thread()
        done = self.done
        hub = self.hub
        if done is not None and current is not self.io_thread and \
                not (hub is not None and hub.is_hub_thread()):
            done.wait(timeout)  # covers a connection the hub drives (no I/O thread then)
        io = self.io_thread
        if io is not None and io is not current:
            io.join(max(0.0, end - time.monotonic()))
            if not io.is_alive():
                self.io_thread = None
        if self.io_thread is None:
            self.client._events.join(max(0.0, end - time.monotonic()))

    # ------------------------------------------------------------------------------------
    # Sending (any thread)

    def send_text(self, text: str, timeout: float | None,
                  element: ET.Element | None = None) -> None:
        """Queue serialised XML: `element` serialised (the stream gets the element too: it
        tells stanzas from nonzas, and a component's stream completes the addresses), or,
        without it, a stanza written directly. Waits (up to `timeout`) while reconnecting."""
        client = self.client
        if len(text) > client.max_stanza_size:
            raise InvalidStanzaError(f"stanza of {len(text)} bytes exceeds max_stanza_size "
                                     f"({client.max_stanza_size})")
        if timeout is not None:  # checked even when the ready stream will not need it
            timeout = timeout_seconds(timeout)
        with self.lock:  # the lock of self.changed, so wait_ready may wait on it
            stream = self.wait_ready(timeout)
            if element is None:
                stream.send_text(text)
            else:
                stream.send(element, text)
            if element is None or element.tag != _IQ:
                self.sent += 1  # an IQ is confirmed by its answer; others need a flush
            self.take_output()
            if len(self.outbuf) > 8 << 20:
                # Back-pressure: a sender far ahead of the socket waits for it to drain.
                self.wake()
                wait = timeout_seconds(timeout, client.timeout)
                end = time.monotonic() + wait
                while len(self.outbuf) > 4 << 20 and self.state is _S.READY:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise errors.TimeoutError("the server is not reading; outgoing buffer "
                                                  "full")
                    self.changed.wait(left)
        if element is not None and element.tag == _IQ and self._direct:
            # A request: the caller is about to wait for its answer, so latency counts.
            # Other stanzas are left to the I/O thread, which writes a burst of them in a
            # few TLS records.
            self._write_now()
        else:
            self.wake()

    def _write_now(self) -> None:
        """Any thread but the I/O thread, after queueing output: write it from this thread
        if the I/O thread is between turns (waiting in select(), or about to), instead of
        waking it to write: one thread hand-off less per request (bench/README.md, "ping").
        Otherwise, or when the socket does not take it all, the I/O thread is woken as
        usual."""
        turn = self._io_turn
        if not turn.acquire(blocking=False):
            self.wake()  # the I/O thread is in a turn: it collects the output before it waits
            return
        try:
            wire = self.wire
            sending = self._sending
            if not self._direct or self.closing or wire is None or sending or wire.blocked:
                left = True  # not ready, or the I/O thread waits for the socket to drain
            else:
                core = self.core
                with self.lock:
                    if core.ack_wanted(None):
                        self._request_ack()  # as the I/O thread's timer would (handle_timer)
                    if self.outbuf:
                        sending += self.outbuf
                        self.outbuf.clear()
                        self.changed.notify_all()
                try:
                    self._send(wire, sending)
                except OSError as exc:  # ssl.SSLError too
                    # The connection failed under us: what is left stays queued, and the I/O
                    # thread meets the same failure on its next write and handles it (a
                    # reconnect, XEP-0198 resending what was not acknowledged); the caller
                    # never sees a socket's error.
                    log.debug("writing from %s failed (%s); the I/O thread takes over",
                              threading.current_thread().name, exc)
                now = time.monotonic()
                core.data_sent(now)
                # Left over (the socket is full, or failed), or a timer now due before the
                # I/O thread would look (the first unacknowledged stanza starts XEP-0198's
                # clock): the I/O thread must take over.
                with self.lock:
                    left = bool(sending) or core.next_deadline(now) < self._wait_until
        finally:
            turn.release()
        if left:
            self.wake()

    def wait_ready(self, timeout: float | None) -> ClientStream:
        """Under the lock: the ready session's stream, once there is one (waiting up to
        `timeout`, None: the client's); raise if there will not be one."""
        stream = self.stream
        if self.state is _S.READY and stream is not None and stream.state == "ready":
            return stream  # the usual case, without a clock reading
        timeout = timeout_seconds(timeout, self.client.timeout)
        end = time.monotonic() + timeout
        while not self.ready:
            if self.state in (_S.DISCONNECTED, _S.CLOSING) or self.closing:
                raise self.disconnected_error()
            left = end - time.monotonic()
            if left <= 0:
                raise errors.TimeoutError(f"not reconnected within {timeout:g} s")
            self.changed.wait(left)
        assert self.stream is not None
        return self.stream

    def disconnected_error(self) -> DisconnectedError:
        if self.error is not None:
            exc = DisconnectedError(f"the client is disconnected: {self.error}")
            exc.__cause__ = self.error
            return exc
        return DisconnectedError("the client is not connected; call connect() first")

    def take_output(self) -> None:
        """Under the lock: move the stream's pending output into the buffer the I/O thread
        writes."""
        stream = self.stream
        if stream is not None:
            data = stream.data_to_send()
            if data:
                self.outbuf += data

    def wake(self) -> None:
        """After queueing output (under the lock, before this call): wake the I/O thread if
        it may be waiting. While it is busy it collects everything queued before it next
        waits, so a burst of sends costs one wake-up, not one per stanza."""
        wire = self.wire
        if wire is not None and self._io_idle and \
                threading.current_thread() is not self.io_thread:
            self._io_idle = False
            wire.wake()

    def _request_ack(self) -> bool:
        """Under the lock: queue an XEP-0198 `<r/>` unless one is still unanswered (see
        [SessionCore.request_ack][simplexmpp.session.SessionCore.request_ack])."""
        if not self.core.request_ack():
            return False
        self.take_output()
        return True

    # ------------------------------------------------------------------------------------
    # Flushing and closing: the steps of disconnect(), run for several clients side by side
    # at interpreter exit (see close_connections): ask for confirmation, wait for it, close,
    # stop.

    def _ask_confirmation(self) -> tuple[IqFuture, int] | None:
        """Step 1 of a flush, not waiting: ask the server to confirm what it has handled, by
        an XEP-0198 `<r/>` (the answer counts what it handled), or else a ping, whose answer
        proves everything sent before it was handled (RFC 6120 §10.1: stanzas on one stream
        are handled in order). Returns the ping's future and what it confirms, or None."""
        if not self.role.confirms_output:
            return None  # (the pre-auth stream: every request was answered)
        with self.lock:
            stream = self.stream
            if not self.ready or stream is None:
                return None
            if stream.sm is not None:
                self._request_ack()
                ping = None
            else:
                ping = True
        if ping is None:
            self.wake()
            return None
        try:
            return self._send_flush_ping(0)
        except XMPPError:
            return None

    def _send_flush_ping(self, timeout: float) -> tuple[IqFuture, int]:
        """A ping whose answer confirms the stanzas sent before it: its future, and how many
        messages and presences were sent by then."""
        client = self.client
        with self.lock:
            mark = self.sent
            future = client.send_iq(Iq.get(client.account.domain,
                                           ET.Element("{%s}ping" % PING_NS)), timeout)
        return future, mark

    def _flush_until(self, deadline: float,
                     ping: tuple[IqFuture, int] | None = None) -> tuple[bool, list[str]]:
        """Flush, riding out reconnects, until everything is confirmed or the deadline.
        Returns (everything confirmed, ids of the stanzas not confirmed)."""
        if not self.role.confirms_output:
            return True, []
        while True:
            with self.changed:
                while not self.ready:
                    left = deadline - time.monotonic()
                    if self.state not in (_S.READY, _S.RECONNECTING) or left <= 0:
                        ids = self.unacked_ids()
                        return not ids and self._all_confirmed(), ids
                    self.changed.wait(min(left, 0.5))
            try:
                confirmed, unconfirmed = self._flush(deadline, ping)
            except XMPPError as exc:
                log.debug("flush before disconnect interrupted: %s", exc)
                unconfirmed = self.unacked_ids()
                confirmed = not unconfirmed and self._all_confirmed()
            ping = None
            if confirmed or time.monotonic() >= deadline:
                return confirmed, unconfirmed
            # The connection was lost during the flush: wait for the next session and retry.

    def _all_confirmed(self) -> bool:
        """With XEP-0198: nothing is unacknowledged (the caller checked); without: a flush
        ping confirmed every stanza sent."""
        stream = self.stream
        return (stream is not None and stream.sm is not None) or self.sent <= self.confirmed

    def _flush(self, deadline: float, ping: tuple[IqFuture, int] | None = None
               ) -> tuple[bool, list[str]]:
        """Wait until the server has handled everything we sent: (confirmed, the ids of the
        stanzas it did not confirm). `ping`: one already sent by _ask_confirmation."""
        stream = self.stream
        if stream is not None and stream.sm is not None:
            with self.lock:
                self._request_ack()
            self.wake()
            with self.changed:
                while (self.stream is stream and stream.sm is not None and stream.sm.unacked
                       and self.state is _S.READY):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.changed.wait(min(left, 0.5))
                    # Ask again once the last <r/> was answered (every wake-up here, an
                    # output taken included, used to send another).
                    if stream.sm.unacked and self.stream is stream and \
                            self.state is _S.READY and self._request_ack():
                        self.wake()
            ids = self.unacked_ids()
            return not ids, ids
        # Without stream management: the server handles stanzas in order, so the answer to a
        # ping sent last proves everything before it was handled (RFC 6120 §10.1). An error
        # answer (a server without XEP-0199) proves it just as well.
        if ping is None:
            ping = self._send_flush_ping(max(0.0, deadline - time.monotonic()))
        future, mark = ping
        try:
            future.result(max(0.0, deadline - time.monotonic()))
        except IqError:
            pass
        except concurrent.futures.TimeoutError:
            return self.sent <= self.confirmed, []  # confirmed if nothing was sent since
        with self.lock:
            self.confirmed = max(self.confirmed, mark)
        return self.sent <= self.confirmed, []

    def unacked_ids(self) -> list[str]:
        # Under the lock: the I/O thread trims the XEP-0198 queue as acks arrive, and a
        # copy taken without it can fail with "deque mutated during iteration".
        with self.lock:
            return list(self.core.unacked_ids())

    def _begin_close(self) -> None:
        """Step 3: queue our closing footer (RFC 6120 §4.4) and let the threads wind down."""
        with self.lock:
            self.closing = True
            if self.stream is not None and self.state is _S.READY:
                self.stream.close()
                self.take_output()
            running = self.done is not None and not self.done.is_set()
            if self.state is not _S.DISCONNECTED:
                self._move(_S.CLOSING if running else _S.DISCONNECTED)
            self.changed.notify_all()
        if self.wire is not None:
            self.wire.wake()

    # Seconds a connection cut at the end of the budget of disconnect() gets to stop.
    _stop_grace = 0.5

    def _end_close(self, deadline: float) -> None:
        """Step 4: wait until the deadline for the server's closing footer and the threads'
        end; past it, cut the connection (the I/O thread then ends at once)."""
        self.join(max(0.0, deadline - time.monotonic()))
        if self.done is not None and not self.done.is_set():
            self.abort()
            self.join(self._stop_grace)
        # The session was closed on purpose: the next connect() is a fresh start, like the
        # first one (no resumption of a session the server has ended, no presence of old).
        self.sm_state = None
        self.client._last_presence = None

    # ------------------------------------------------------------------------------------
    # The I/O thread

    def _start_io_thread(self, timeout: float, delay: float = 0.0) -> None:
        self.io_thread = threading.Thread(target=self._io_main, args=(timeout, delay),
                                          name=f"simplexmpp-io-{self.client.account.bare}",
                                          daemon=True)
        self.io_thread.start()

    def _io_main(self, timeout: float, delay: float = 0.0) -> None:
        """The I/O thread: connect, run, and reconnect until told to stop, or until a shared
        [`Hub`][simplexmpp.transport.Hub] takes the ready connection over."""
        while True:
            if delay and self._sleep_unless_closing(delay):
                self._finish(None)
                return
            try:
                if self._run_connection(timeout):
                    return  # the hub drives the connection from now on
                error: BaseException | None = None
            except FastTokenRejected as exc:
                if self.role.token_rejected(self.client, exc, self.stream):
                    # A new connection at once, logging in with the password.
                    with self.lock:
                        if self.stream is not None:
                            self.stream.connection_lost()
                    if self.wire is not None:
                        self.wire.close()
                    delay = 0.0
                    continue
                error = self._io_error(exc)
            except BaseException as exc:  # noqa: BLE001 - reported, never lost
                error = self._io_error(exc)
            next_delay = self._connection_ended(error)
            if next_delay is None:
                return
            delay = next_delay

    def _io_error(self, exc: BaseException) -> BaseException:
        """What a failure of the connection is reported as."""
        if isinstance(exc, XMPPError):
            ready = self._ready_future
            return self.role.connection_failed(self.client, exc, self.stream,
                                               ready is not None and ready.done())
        if isinstance(exc, OSError):  # resets, broken pipes, TLS records cut short
            return errors.ConnectionError(
                f"connection to {self.client.account.domain} lost: {exc}")
        log.exception("unexpected failure in the I/O thread", exc_info=exc)
        return errors.ConnectionError(f"connection failed: {exc!r}")

    def _connection_ended(self, error: BaseException | None) -> float | None:
        """The connection is gone (cleanly when `error` is None). Returns the delay before
        the next attempt, or None once the client has stopped for good (then it has run
        `_finish`). Runs on the I/O thread, or on the hub's thread for a hub connection."""
        client = self.client
        with self.lock:
            if self.stream is not None:
                self.stream.connection_lost()
            if self.state is _S.READY:
                self._move(_S.RECONNECTING)
            self._in_hub = False
            self.changed.notify_all()
        if self.wire is not None:
            self.wire.close()
        client._router.session_lost(error)
        if self.core.sessions != self._sessions_before:
            self._attempt = 0  # this connection worked: start the backoff afresh
        self._sessions_before = self.core.sessions
        ready = self._ready_future
        if ready is not None and not ready.done():
            ready.set_exception(error or DisconnectedError("server closed the stream"))
            self._finish(error if not self.closing else None)
            return None
        if self.close_expected:
            self.closing = True  # the server ended the stream as announced: no error
        if self.closing or not client.reconnect or isinstance(error, _RECONNECT_FATAL) or (
                # Another session took our resource: fighting back would loop forever.
                isinstance(error, StreamError) and error.condition == "conflict"):
            self._finish(error if not self.closing else None)
            return None
        with self.lock:
            self._move(_S.RECONNECTING)
        client._events.emit("reconnecting", error)
        if isinstance(error, StreamError) and error.other_host:
            client.host, _, port = error.other_host.rpartition(":") if \
                error.other_host.count(":") == 1 else (error.other_host, "", "")
            client.port = int(port) if port.isdigit() else client.port
        # First retry at once (a quick resumption keeps the session); then exponential
        # backoff with jitter, capped.
        delay = 0.0 if self._attempt == 0 else min(
            client.reconnect_max_delay, 0.25 * 2 ** (self._attempt - 1)) * random.uniform(0.5, 1)
        self._attempt = min(self._attempt + 1, 20)
        # One WARNING when the connection is lost and one INFO when it is back (session_ready);
        # the attempts in between at DEBUG, so an outage does not flood the log.
        domain = client.account.domain
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._failed_attempts = 0
            log.warning("connection to %s lost (%s); reconnecting", domain, error)
        else:
            self._failed_attempts += 1
            log.debug("reconnect attempt %d to %s failed (%s); next in %.1f s",
                      self._failed_attempts, domain, error, delay)
        return delay

    def _sleep_unless_closing(self, delay: float) -> bool:
        with self.changed:
            end = time.monotonic() + delay
            while not self.closing:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def _finish(self, error: BaseException | None) -> None:
        """The client has stopped for good (`error`: why, None: on purpose)."""
        client = self.client
        with self.lock:
            self._move(_S.DISCONNECTED)
            self.error = error
            pending = self.core.take_pending()
            # Under the lock, with the state: a connect() right after this reopens the
            # inbox, never before it was closed here.
            client._inbox.close()
            _untrack(self)
            done = self.done
        client._router.stopped(error, pending)
        if done is not None:
            done.set()

    def _run_connection(self, timeout: float) -> bool:
        """Connect and drive one connection on this thread until it ends (False), or until
        it is ready and handed to the client's hub (True)."""
        client = self.client
        account = client.account
        # One budget for finding and reaching the server: the SRV lookups get at most half
        # of it (a silent resolver must leave time for the RFC 6120 §3.2.2 fallback to the
        # domain), the connection attempts share what is left.
        deadline = time.monotonic() + timeout
        targets = resolve(account.domain, client.host, client.port, client.tls, timeout / 2,
                          resolver=client.resolver)
        sock = None
        target: Target | None = None
        failure: XMPPError | None = None
        for index, target in enumerate(targets):
            if client.tls == "none" and not is_loopback(target.host):
                failure = errors.ConnectionError(
                    f"refusing a plain-text connection to {target.host}: tls='none' is only "
                    "allowed to loopback")
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                failure = errors.TimeoutError(
                    f"no connection to {account.domain} within {timeout:g} s"
                    + (f" (last: {failure})" if failure else ""))
                break
            try:
                # Each remaining target gets an equal share, so one that never answers
                # cannot eat the time of the records after it (RFC 2782 order).
                sock = open_socket(target, left / (len(targets) - index))
                break
            except XMPPError as exc:
                failure = exc
        if sock is None or target is None:
            raise failure or errors.ConnectionError(f"no address to connect to for "
                                                    f"{account.domain}")
        bindings: dict[str, bytes] = {}
        if target.direct_tls:
            sock = start_tls(sock, self._tls_context(), account.domain, timeout)
            bindings = channel_bindings(sock)
        wire = Wire(sock)
        stream = self.role.new_stream(client, target, bindings, self.sm_state)
        with self.lock:
            if self.closing:
                wire.close()
                return False
            self.wire = wire
            self.stream = stream
            self.outbuf.clear()
            stream.start()
            self.take_output()
            core = self.core
            core.keepalive, core.timeout = client.keepalive, client.timeout
            core.ack_delay, core.ack_every = client.ack_delay, client.ack_every
            core.connection_made(stream, time.monotonic())
        self._io_timeout = timeout
        self._negotiation_deadline = time.monotonic() + timeout
        self._sending = bytearray()
        readable = False
        turn = self._io_turn
        turn.acquire()
        try:
            while True:
                step = self._io_step(wire, stream, readable)
                if step is None:
                    return False
                hub = self.hub
                if hub is not None and stream.state == "ready" and not self.closing:
                    self._direct = False
                    with self.lock:
                        self._in_hub = True
                    hub.adopt(self, wire)
                    return True
                if wire.pending():
                    readable = True  # decrypted bytes wait in OpenSSL: no wait, read them
                    continue
                # Between turns other threads may write requests themselves (_write_now).
                self._direct = stream.state == "ready" and not self.closing
                turn.release()
                try:
                    readable, _ = wire.wait(*step)
                finally:
                    turn.acquire()
        finally:
            self._direct = False
            turn.release()

    def _io_step(self, wire: Wire, stream: ClientStream,
                 readable: bool) -> tuple[float, bool] | None:
        """One turn of the I/O loop, after the socket was found readable (or not): read and
        handle what arrived, write what is queued, run the timers. Returns how long to sleep
        and whether to wait for the socket to take more, or None once the connection has
        ended cleanly; raises when it failed. Called by this client's I/O thread, or by the
        hub's thread once the hub drives the connection."""
        self._io_idle = False  # the wait is over (see _collect_output)
        if self._negotiation_deadline is not None and \
                time.monotonic() > self._negotiation_deadline:
            raise errors.TimeoutError(
                f"stream negotiation with {self.client.account.domain} did not finish "
                f"within {self._io_timeout:g} s (stuck while {stream.state})")
        sending = self._sending
        if readable:
            # On a hub, a connection the server floods must not starve the others: it reads
            # at most 1 MiB per turn (the selector reports the rest as readable next turn).
            if self._read(wire, stream, _HUB_READS_PER_TURN if self._in_hub else None):
                return None  # the stream closed cleanly
            if stream.state == "tls-handshake":
                self._upgrade(wire, stream, self._io_timeout)
            if stream.state == "ready":
                self._negotiation_deadline = None
                wire.quickack = False
        self._collect_output(sending, idle=False)  # what came while waiting or reading
        if self._send(wire, sending):
            self.core.data_sent(time.monotonic())
        if self.closing and stream.state == "closed" and not sending:
            return None
        now = time.monotonic()
        core = self.core
        if core.handle_timer(now, self.lock):
            with self.lock:
                self.take_output()
        # About to wait: output queued from now on must wake us (see wake); what was queued
        # meanwhile (the timers' <r/> or ping too) is written on the next turn.
        self._collect_output(sending, idle=True)
        deadline = self._wait_until = core.next_deadline(now)
        return deadline - now, bool(sending)

    # The protocol of transport.Hub ([HubConnection][simplexmpp.transport.HubConnection])

    def hub_step(self, readable: bool) -> tuple[float, bool] | None:
        """One turn of the I/O loop on the hub's thread (see
        [HubConnection.hub_step][simplexmpp.transport.HubConnection.hub_step])."""
        wire, stream = self.wire, self.stream
        assert wire is not None and stream is not None
        return self._io_step(wire, stream, readable)

    def hub_ended(self, exc: BaseException | None) -> None:
        """The hub let go of our connection: stop, or reconnect on an I/O thread again (see
        [HubConnection.hub_ended][simplexmpp.transport.HubConnection.hub_ended])."""
        delay = self._connection_ended(None if exc is None else self._io_error(exc))
        if delay is not None:
            self._start_io_thread(self._io_timeout, delay)

    def _read(self, wire: Wire, stream: ClientStream, max_reads: int | None = None) -> bool:
        """Read and handle everything available, or `max_reads` socket reads of it; True
        once the stream has closed."""
        client = self.client
        core = self.core
        reads = 0
        while max_reads is None or reads < max_reads:
            reads += 1
            data = wire.recv()
            if data is None:
                return False
            if not data:
                if stream.state in ("closing", "closed"):
                    return True
                raise errors.ConnectionError(
                    f"the server closed the connection ({stream.state})")
            core.data_received(time.monotonic())
            if wire_log.isEnabledFor(logging.DEBUG):
                self._log_wire("RECV", data)
            failure: StreamError | None = None
            # During SASL the stream computes SCRAM's salted password, as slow as the
            # server's iteration count makes it: not under the lock, which connect() and
            # disconnect() need to give up in time (issue 14). No other thread touches a
            # stream before its session is ready, so the lock guards nothing there.
            with self.lock if stream.state == "ready" or not _in_sasl(stream) else _UNLOCKED:
                try:
                    events = stream.receive_data(data)
                except StreamError as exc:
                    # What came before the error in the same read still counts (XEP-0077
                    # §3.2: the answer to <remove/> arrives right before the stream error).
                    events, failure = stream.events_before_error, exc
                finally:
                    with self.lock:
                        self.take_output()
            closed = False
            router = client._router
            incoming, message, misaddressed = router.stanza, router.message, router.misaddressed
            valid = core.valid_addresses
            for event in events:
                if type(event) is _ELEMENT:  # a stanza (see stream.Event)
                    sender, to = event.get("from"), event.get("to")
                    if ((sender is not None and sender not in valid)
                            or (to is not None and to not in valid)) \
                            and misaddressed(event):
                        continue
                    if event.tag == _MESSAGE:
                        message(event)
                    else:
                        incoming(event)
                elif isinstance(event, AckReceived):
                    with self.lock:
                        core.ack_received()
                        self.changed.notify_all()
                elif isinstance(event, Ready):
                    client.inline_features = getattr(stream.negotiator, "inline", frozenset())
                    self.session_ready(event.jid, event.features, resumed=False)
                elif isinstance(event, Resumed):
                    self.session_ready(event.jid, stream.features, resumed=True)
                elif isinstance(event, StartTLS):
                    return False
                elif isinstance(event, StreamClosed):
                    closed = True
                elif isinstance(event, TokenIssued):
                    self.role.token_issued(client, event.token)
                elif isinstance(event, Authenticated):
                    client.mechanism = event.mechanism
                    log.debug("authenticated %s with %s", client.account.bare, event.mechanism)
                elif isinstance(event, NonzaReceived):
                    log.debug("ignoring top-level <%s>", event.element.tag)
            if failure is not None:
                raise failure
            if closed:
                if not self.closing:
                    raise errors.ConnectionError("the server closed the stream")
                return True
        return False  # more may be waiting: the caller comes back (the hub, next turn)

    def session_ready(self, jid: JID, features: ET.Element | None, resumed: bool) -> None:
        """The stream is ready (a new session, or `resumed`): the connection's part, then
        the client's (session hooks and events)."""
        stream = self.stream
        client = self.client
        with self.lock:
            client.jid = jid
            client.features = features
            self._move(_S.READY)
            if stream is not None and stream.sm is not None and stream.sm.resumable:
                self.sm_state = stream.sm
            elif not resumed:
                self.sm_state = None
            session = self.core.session_established(jid, resumed)
            self.changed.notify_all()
        ready = self._ready_future
        reconnected = ready is not None and ready.done()
        if ready is not None and not ready.done():
            ready.set_result(jid)
        if self._lost_at is not None:
            log.info("connection to %s back after %.1f s and %d failed attempt(s) (%s)",
                     client.account.domain, time.monotonic() - self._lost_at,
                     self._failed_attempts, "stream resumed" if resumed else "new session")
            self._lost_at = None
        client._router.session_ready(session, reconnected)

    def _tls_context(self) -> ssl.SSLContext:
        client = self.client
        if client.ssl_context is not None:
            return client.ssl_context
        return ssl_context(client.ca_file, client.verify)

    def _upgrade(self, wire: Wire, stream: ClientStream, timeout: float) -> None:
        sock = wire.detach_for_blocking(timeout)
        tls_sock = start_tls(sock, self._tls_context(), self.client.account.domain, timeout)
        wire.replace_socket(tls_sock)
        with self.lock:
            stream.tls_established(channel_bindings(tls_sock))
            self.take_output()

    def _collect_output(self, sending: bytearray, idle: bool) -> None:
        """I/O thread: move what other threads queued into `sending`. With `idle` it is
        about to wait: output queued after this must wake it (see `wake()`)."""
        with self.lock:
            if self.outbuf:
                sending += self.outbuf
                self.outbuf.clear()
                self.changed.notify_all()
            self._io_idle = idle

    def _send(self, wire: Wire, sending: bytearray) -> bool:
        """Write what the socket takes of `sending` now, and cut it from `sending`
        (the I/O thread, or a caller holding the turn lock); whether anything was written.
        Raises OSError (ssl.SSLError too) when the connection fails."""
        wrote = False
        while sending:
            sent = wire.send(sending)
            if not sent:
                break
            if wire_log.isEnabledFor(logging.DEBUG):
                self._log_wire("SEND", bytes(sending[:sent]))
            del sending[:sent]
            wrote = True
        return wrote

    def _log_wire(self, direction: str, data: bytes) -> None:
        text = self.role.redact(data.decode("utf-8", "replace"))
        wire_log.debug("%s %s: %s", self.client.account.bare, direction, text)

    def __repr__(self) -> str:
        return f"<Connection {self.client.account} {self.role.name} {self.state}>"
