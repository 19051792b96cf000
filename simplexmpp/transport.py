"""The only module that does network I/O: DNS SRV, TCP, TLS, and the non-blocking socket that
the client's single I/O thread drives.

Why one thread for both directions: OpenSSL does not allow an `SSL` object to be read and
written from two threads at once, so the I/O thread owns the socket entirely; other threads
queue bytes and wake it. That also coalesces many small stanzas into few large writes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from .errors import ConnectionError, NoXMPPServiceError, TLSError, TimeoutError
from ._tlsexporter import tls_exporter
from .sasl import tls_server_end_point

__all__ = ["Target", "resolve", "open_socket", "ssl_context", "start_tls", "channel_bindings",
           "Wire", "Hub", "HubConnection", "is_loopback", "quickack"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 5222
DEFAULT_TLS_PORT = 5223


@dataclass(frozen=True)
class Target:
    """Where to connect: host, port, and whether TLS starts at once (XEP-0368)."""
    host: str
    port: int
    direct_tls: bool


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (the only hosts plain text is allowed to)."""
    if host in ("localhost", "localhost."):
        return True
    import ipaddress
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _srv_order(records: list[tuple[int, int, int, str]]) -> list[tuple[str, int]]:
    """RFC 2782 ordering: by priority, and within a priority weighted-random by weight."""
    ordered: list[tuple[str, int]] = []
    for priority in sorted({r[0] for r in records}):
        group = [r for r in records if r[0] == priority]
        while group:
            total = sum(r[1] for r in group)
            pick = random.uniform(0, total) if total else 0
            acc = 0
            chosen = group[0]
            for record in group:
                acc += record[1]
                if acc >= pick and (record[1] or total == 0):
                    chosen = record
                    break
            group.remove(chosen)
            ordered.append((chosen[3], chosen[2]))
    return ordered


class _ServiceRefused(Exception):
    """An SRV answer of one record with target "." (RFC 2782: decidedly not available)."""


def _srv_lookup(name: str, timeout: float,
                resolver: Any | None = None) -> list[tuple[int, int, int, str]] | None:
    """SRV records of `name` as (priority, weight, port, target); None if there are none
    (no such name, no answer, resolver failed or silent for `timeout` seconds). Raises
    `_ServiceRefused` when the domain says the service is not offered at all."""
    try:
        import dns.exception
        import dns.resolver
    except ImportError:  # pragma: no cover - dnspython is a dependency
        return None
    if timeout <= 0:
        return None
    try:
        if resolver is None:
            answer = dns.resolver.resolve(name, "SRV", lifetime=timeout)
        else:
            answer = resolver.resolve(name, "SRV", lifetime=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        log.debug("no SRV records for %s: %s", name, exc)
        return None
    records = [(r.priority, r.weight, r.port, str(r.target).rstrip(".")) for r in answer]
    # RFC 2782: a single record with target "." means the service is decidedly not available
    # at this domain (XEP-0368 §3 uses it for "no direct TLS here").
    if len(records) == 1 and records[0][3] in ("", "."):
        raise _ServiceRefused(name)
    # A "." among other records is meaningless: drop it rather than connect to "".
    return [r for r in records if r[3] not in ("", ".")] or None


def resolve(domain: str, host: str | None, port: int | None, tls: str,
            timeout: float = 5.0, *, resolver: Any | None = None) -> list[Target]:
    """Targets to try in order (RFC 6120 §3.2, XEP-0368).

    `timeout` is the budget of all SRV lookups together: each of the (at most two) lookups
    gets its share of what is left, so a resolver that never answers returns after
    `timeout` in all, and the caller keeps the rest of its own budget for connecting
    (to the domain itself when no record came back: RFC 6120 §3.2.2). `resolver` is a
    `dns.resolver.Resolver` (or anything with its `resolve(name, rdtype, lifetime=)`);
    None means dnspython's default, configured from the system (`/etc/resolv.conf`).

    Raises [NoXMPPServiceError][simplexmpp.errors.NoXMPPServiceError] when DNS says the
    domain offers no XMPP client service of the kind `tls` allows (an SRV record with
    target "."): then no fallback to the domain is tried.
    """
    if host is not None:
        direct = tls == "direct"
        return [Target(host, port or (DEFAULT_TLS_PORT if direct else DEFAULT_PORT), direct)]
    deadline = time.monotonic() + max(0.0, timeout)
    names: list[tuple[str, bool]] = []
    if tls != "none":
        names.append((f"_xmpps-client._tcp.{domain}", True))
    if tls != "direct":
        names.append((f"_xmpp-client._tcp.{domain}", False))
    targets: list[Target] = []
    refused: list[str] = []
    for index, (name, direct) in enumerate(names):
        share = (deadline - time.monotonic()) / (len(names) - index)
        try:
            records = _srv_lookup(name, share, resolver)
        except _ServiceRefused:
            refused.append(name)
            continue
        for target_host, target_port in _srv_order(records or []):
            targets.append(Target(target_host, target_port, direct))
    if targets:
        return targets
    # RFC 6120 §3.2.1 / RFC 2782: "." for the service the fallback would use (plain
    # _xmpp-client for STARTTLS, _xmpps-client for direct TLS) means there is none: stop
    # here instead of trying the domain on the default port. A "." for direct TLS alone
    # (XEP-0368 §3) does not rule out STARTTLS.
    fallback_name = names[-1][0]
    if fallback_name in refused:
        raise NoXMPPServiceError(
            f"{domain} offers no XMPP client service: its DNS record {fallback_name} "
            "has the target \".\" (RFC 2782: decidedly not available); pass host= to "
            "connect somewhere else")
    direct = tls == "direct"
    return [Target(domain, port or (DEFAULT_TLS_PORT if direct else DEFAULT_PORT), direct)]


def open_socket(target: Target, timeout: float) -> socket.socket:
    """TCP connection to `target` (IPv6 and IPv4, every address in turn)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except socket.timeout:
        raise TimeoutError(f"connecting to {target.host}:{target.port} timed out "
                           f"after {timeout:g} s") from None
    except OSError as exc:
        raise ConnectionError(f"cannot connect to {target.host}:{target.port}: "
                              f"{exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


@lru_cache(maxsize=32)
def ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One shared context per (ca_file, verify): building one costs milliseconds."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load CA file {ca_file!r}: {exc}") from None
    # XEP-0368 §3: ALPN "xmpp-client" (harmless after STARTTLS too).
    ctx.set_alpn_protocols(["xmpp-client"])
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def start_tls(sock: socket.socket, ctx: ssl.SSLContext, server_name: str,
              timeout: float) -> ssl.SSLSocket:
    """TLS handshake on `sock`, checking the certificate against `server_name` (RFC 7590,
    RFC 6125: the JID's domain, not the host we connected to)."""
    sock.settimeout(timeout)
    try:
        tls_sock = ctx.wrap_socket(sock, server_hostname=server_name,
                                   do_handshake_on_connect=False)
        tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise TLSError(
            f"the server's certificate for {server_name} could not be verified "
            f"({exc.verify_message}); pass ca_file= with the certificate or CA to trust "
            "(or an ssl_context that trusts it)") from None
    except socket.timeout:
        sock.close()
        raise TimeoutError(f"TLS handshake with {server_name} timed out after {timeout:g} s") \
            from None
    except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError) as exc:
        # The link died mid-handshake: a network failure to retry, not a verdict on TLS.
        sock.close()
        raise ConnectionError(f"connection to {server_name} lost during the TLS handshake: "
                              f"{exc}") from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise TLSError(f"TLS handshake with {server_name} failed: {exc}") from None
    # After a TLS 1.3 handshake the server writes its session tickets and then its reply; a
    # server with Nagle on holds the reply until we ACK the tickets, which the kernel delays
    # (~40 ms). Acknowledge at once (Linux; measured by bench/run's "connect": 55 -> 12 ms;
    # Wire re-arms it after every read until the stream is ready).
    quickack(tls_sock)
    return tls_sock


def quickack(sock: socket.socket) -> bool:
    """Set TCP_QUICKACK (Linux): ACK received data at once, and send now an ACK the kernel
    was delaying. Linux clears the option by itself, so it must be set again after reads.
    False where the option is missing or refused."""
    if not hasattr(socket, "TCP_QUICKACK"):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError:
        return False
    return True


def channel_bindings(sock: socket.socket) -> dict[str, bytes]:
    """Channel-binding data the TLS layer can give SCRAM-PLUS.

    `tls-unique` only under TLS 1.2 (RFC 9266 §3 forbids it with 1.3); `tls-exporter`
    (RFC 9266) under TLS 1.3, through OpenSSL's exporter (see `simplexmpp._tlsexporter`);
    `tls-server-end-point` (RFC 5929 §4) from the server certificate.
    """
    if not isinstance(sock, ssl.SSLSocket):
        return {}
    out: dict[str, bytes] = {}
    if sock.version() == "TLSv1.2":
        unique = sock.get_channel_binding("tls-unique")
        if unique:
            out["tls-unique"] = unique
    else:
        exporter = tls_exporter(sock)
        if exporter:
            out["tls-exporter"] = exporter
    cert = sock.getpeercert(binary_form=True)
    end_point = tls_server_end_point(cert) if cert else None
    if end_point:
        out["tls-server-end-point"] = end_point
    return out


class _Waker:
    """A socket pair another thread writes to, to end a `selectors` wait (`r` is what
    the waiting thread registers). At most one byte is ever in flight: `wake()` sends
    only while no earlier wake-up is pending, and `clear()` drains the byte first and
    then marks none pending. In the other order a wake() in between would send a byte that
    the drain swallows while leaving the mark set, and every later wake() would then be
    skipped (a lost wake-up)."""

    def __init__(self) -> None:
        self.r, self._w = socket.socketpair()
        self.r.setblocking(False)
        self._w.setblocking(False)
        self._lock = threading.Lock()
        self._pending = False

    def wake(self) -> None:
        """Any thread: make the waiting thread's select() return."""
        with self._lock:
            if self._pending:
                return
            self._pending = True
        try:
            self._w.send(b"\0")
        except OSError:
            pass  # closed: nobody waits any more

    def clear(self) -> None:
        """The waiting thread, when `r` was readable."""
        try:
            self.r.recv(4096)
        except OSError:
            pass
        with self._lock:
            self._pending = False

    def close(self) -> None:
        for sock in (self.r, self._w):
            try:
                sock.close()
            except OSError:
                pass


class Wire:
    """A connected socket in non-blocking mode plus a wake-up channel, for one I/O thread.

    Other threads call [`wake()`][simplexmpp.transport.Wire.wake]; only the I/O thread calls
    anything else, or a thread that holds the connection's turn lock while the I/O thread
    waits (the client writes a request from the caller's thread that way).
    """

    READ_SIZE = 65536
    SSL_WRITE_CHUNK = 65536

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._waker = _Waker()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._waker.r, selectors.EVENT_READ, "wake")
        self._registered_write = False
        self._blocked = False         # the last write would have blocked: wait for writable
        self._inflight: bytes = b""   # an SSL write must be retried with the same bytes
        self.closed = False
        self.quickack = True
        """Acknowledge received data at once (see recv()); the client turns it off once the stream
        is ready."""
        self._hub: Hub | None = None  # once a hub drives this wire, wake() goes to the hub
        self._hub_conn: HubConnection | None = None
        self._use(sock)

    def _use(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._selector.register(sock, selectors.EVENT_READ, "sock")
        self._registered_write = False
        self._blocked = False

    def replace_socket(self, sock: socket.socket) -> None:
        """After a TLS upgrade, the wrapped socket takes the old one's place."""
        try:
            self._selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self._use(sock)

    def detach_for_blocking(self, timeout: float) -> socket.socket:
        """Hand the socket over for a blocking operation (the TLS handshake)."""
        try:
            self._selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.settimeout(timeout)
        return self.sock

    @property
    def blocked(self) -> bool:
        """The last write would have blocked: wait until the socket is writable."""
        return self._blocked

    def release_own_wakeup(self) -> None:
        """Close the wire's own selector and wake-up pair: a hub waits for it from now on
        (three file descriptors fewer per connection)."""
        try:
            self._selector.close()
        except OSError:
            pass
        self._waker.close()

    def wake(self) -> None:
        """Make [`wait()`][simplexmpp.transport.Wire.wait] return soon (or the hub look at this
        connection); callable from any thread."""
        hub, conn = self._hub, self._hub_conn
        if hub is not None and conn is not None:
            hub.wake(conn)
            return
        if not self.closed:
            self._waker.wake()

    def pending(self) -> bool:
        """Whether OpenSSL holds decrypted bytes not read yet (select() cannot see them):
        ask before [`wait()`][simplexmpp.transport.Wire.wait], which makes no SSL call."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def wait(self, timeout: float | None, want_write: bool) -> tuple[bool, bool]:
        """Block until readable/writable/woken; returns (readable, writable). Decrypted
        bytes OpenSSL holds are not seen here: check [`pending()`][simplexmpp.transport.Wire.pending]
        first."""
        writable = False
        if want_write and not self._blocked:
            # Output is ready and the socket took the last write: only look for input (no
            # sleep, and no switching the registration to EVENT_WRITE and back each time).
            timeout = 0
            want_write = False
            writable = True
        if want_write != self._registered_write:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self._selector.modify(self.sock, events, "sock")
            self._registered_write = want_write
        readable = False
        for key, mask in self._selector.select(timeout):
            if key.data == "wake":
                self._waker.clear()
            else:
                readable = readable or bool(mask & selectors.EVENT_READ)
                writable = writable or bool(mask & selectors.EVENT_WRITE)
        return readable, writable

    def recv(self) -> bytes | None:
        """Bytes available now; b"" at end of stream; None if nothing is ready."""
        try:
            return self.sock.recv(self.READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
            return None
        except ssl.SSLZeroReturnError:
            return b""
        finally:
            # While the stream is negotiated every exchange is a small write answered by a
            # small write: a server with Nagle on (Prosody) holds its next reply until our
            # ACK of the previous segment (its TLS 1.3 session tickets, say), which Linux
            # delays ~40 ms when we have nothing to send back at that moment.
            if self.quickack:
                self.quickack = quickack(self.sock)

    def send(self, buffer: bytearray) -> int:
        """Write what the socket takes now from the front of `buffer`; the count sent."""
        if isinstance(self.sock, ssl.SSLSocket):
            if not self._inflight:
                self._inflight = bytes(buffer[:self.SSL_WRITE_CHUNK])
            try:
                sent = self.sock.send(self._inflight)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError,
                    InterruptedError):
                self._blocked = True
                return 0
            self._blocked = False
            self._inflight = self._inflight[sent:]
            return sent
        try:
            sent = self.sock.send(buffer)
        except (BlockingIOError, InterruptedError):
            self._blocked = True
            return 0
        self._blocked = sent < len(buffer)
        return sent

    def close(self) -> None:
        """Close socket and wake channel; idempotent."""
        if self.closed:
            return
        self.closed = True
        for closer in (self._selector.close, self.sock.close, self._waker.close):
            try:
                closer()
            except OSError:
                pass

    def shutdown(self) -> None:
        """Abort the TCP connection (any thread): the I/O thread then sees end of stream."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.wake()


class HubConnection(Protocol):
    """What a [`Hub`][simplexmpp.transport.Hub] drives: one ready connection, handed over with
    [`Hub.adopt()`][simplexmpp.transport.Hub.adopt] together with its
    [`Wire`][simplexmpp.transport.Wire].

    Every client's [`Connection`][simplexmpp.connection.Connection] implements it (a
    [`Pool`][simplexmpp.Pool] passes its hub to each account with `Client(..., hub=)`); a test
    or another driver may implement it too. Both methods run on the hub's thread, which owns
    the wire from `adopt()` until `hub_ended()`: they must not block on anything but that
    wire, and never run user code. Other threads ask for a turn with
    [`Hub.wake()`][simplexmpp.transport.Hub.wake] (a wire's `wake()` does it).
    """

    def hub_step(self, readable: bool) -> tuple[float, bool] | None:
        """One turn: read if `readable`, write what is queued, run the timers. Returns
        (seconds until the next timer is due, whether it has more to write), or None once the
        connection has ended cleanly; raises when the connection failed (the hub then lets go
        of it and calls `hub_ended(exc)`)."""

    def hub_ended(self, exc: BaseException | None) -> None:
        """The hub has let go of the connection (`exc` None: it ended cleanly): the wire is
        the connection's again, to close, or to reconnect on a thread of its own."""


class Hub:
    """One thread driving the ready connections of many clients (a `Pool`'s), with one
    selector, instead of a thread per connection.

    A client connects and negotiates on its own I/O thread as usual (blocking TLS handshake, SASL,
    bind, XEP-0198), then hands the ready connection over with
    [`adopt()`][simplexmpp.transport.Hub.adopt] and that thread ends; when the connection is lost
    the client starts a thread again to reconnect. The hub runs no user code either: callbacks still
    go to each client's dispatcher. Its thread starts with the first connection and ends when the
    last one has gone.
    """

    def __init__(self, name: str = "simplexmpp-hub") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._adopting: list[tuple[HubConnection, Wire]] = []
        self._dirty: set[HubConnection] = set()
        self._waker: _Waker | None = None  # while the thread runs
        # Owned by the hub's thread:
        self._conns: dict[HubConnection, _HubEntry] = {}
        # When each connection's timers are due: a heap of (due, n, conn), so a turn costs
        # O(log N) per due connection instead of a scan of all N connections (with 10,000
        # idle ones the scans took ~20 % of a core, bench/README.md). An entry is live while
        # it is its connection's `scheduled` time; later ones are dropped when they surface.
        self._timers: list[tuple[float, int, HubConnection]] = []
        self._timer_ids = itertools.count()
        self._again: set[HubConnection] = set()  # OpenSSL holds decrypted bytes for these
        self._soon: set[HubConnection] = set()   # queued more output while writing

    def __len__(self) -> int:
        """Connections the hub drives now."""
        return len(self._conns)

    def is_hub_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def adopt(self, conn: HubConnection, wire: Wire) -> None:
        """Take over `wire` (connected, ready); from now on only the hub's thread uses it."""
        wire.release_own_wakeup()
        with self._lock:
            wire._hub_conn = conn
            wire._hub = self
            self._adopting.append((conn, wire))
            if self._waker is None:
                self._waker = _Waker()
                self._thread = threading.Thread(target=self._main, args=(self._waker,),
                                                name=self.name, daemon=True)
                self._thread.start()
            else:
                self._waker.wake()

    def wake(self, conn: HubConnection) -> None:
        """`conn` has something to write (any thread)."""
        with self._lock:
            self._dirty.add(conn)
            if self._waker is not None and threading.current_thread() is not self._thread:
                self._waker.wake()

    def _main(self, waker: _Waker) -> None:
        selector = selectors.DefaultSelector()
        selector.register(waker.r, selectors.EVENT_READ, None)
        try:
            self._loop(selector, waker)
        except BaseException:  # noqa: BLE001 - a bug here must not pass silently
            log.exception("the I/O hub failed; its connections are closed")
            for conn in list(self._conns):
                self._release(selector, conn, ConnectionError("the I/O hub failed"))
        finally:
            selector.close()

    def _loop(self, selector: selectors.BaseSelector, waker: _Waker) -> None:
        while True:
            with self._lock:
                adopting, self._adopting = self._adopting, []
                dirty, self._dirty = self._dirty, set()
                if not adopting and not dirty and not self._conns:
                    # The last connection has gone: the thread ends (adopt() starts another).
                    self._thread = self._waker = None
                    waker.close()
                    return
            for conn, wire in adopting:
                selector.register(wire.sock, selectors.EVENT_READ, conn)
                self._conns[conn] = _HubEntry(wire)
                dirty.add(conn)
            now = time.monotonic()
            readable, self._again = self._again, set()
            dirty |= self._soon
            self._soon = set()
            timers = self._timers
            next_due = timers[0][0] if timers else float("inf")
            timeout = 0.0 if dirty or readable else min(max(next_due - now, 0.0), 60.0)
            for key, mask in selector.select(timeout):
                if key.data is None:
                    waker.clear()  # then take what the wake-ups were for
                    with self._lock:
                        dirty |= self._dirty
                        self._dirty = set()
                elif mask & selectors.EVENT_READ:
                    readable.add(key.data)
                else:
                    dirty.add(key.data)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                due, _, conn = heapq.heappop(timers)
                entry = self._conns.get(conn)
                if entry is not None and entry.scheduled == due:
                    entry.scheduled = float("inf")
                    dirty.add(conn)
            for conn in readable | dirty:
                if conn in self._conns:
                    self._step(selector, conn, conn in readable)

    def _step(self, selector: selectors.BaseSelector, conn: HubConnection,
              readable: bool) -> None:
        entry = self._conns[conn]
        try:
            result = conn.hub_step(readable)
        except BaseException as exc:  # noqa: BLE001 - handed to the client, which reports it
            self._release(selector, conn, exc)
            return
        if result is None:
            self._release(selector, conn, None)
            return
        sleep, want_write = result
        if want_write and not entry.wire.blocked:
            # Output was queued while we wrote and the socket took everything so far: write
            # it on the next turn (after a look at the others) instead of waiting for
            # writability, which a socket with room reports at once anyway.
            self._soon.add(conn)
            want_write = False
        due = time.monotonic() + sleep
        if due < entry.scheduled:  # else: the earlier wake-up steps it, which is harmless
            entry.scheduled = due
            heapq.heappush(self._timers, (due, next(self._timer_ids), conn))
        if want_write != entry.want_write:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            selector.modify(entry.wire.sock, events, conn)
            entry.want_write = want_write
        sock = entry.wire.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._again.add(conn)  # decrypted bytes wait in OpenSSL: read them next turn

    def _release(self, selector: selectors.BaseSelector, conn: HubConnection,
                 exc: BaseException | None) -> None:
        entry = self._conns.pop(conn)
        try:
            selector.unregister(entry.wire.sock)
        except (KeyError, ValueError, OSError):
            pass
        entry.wire._hub = None
        entry.wire._hub_conn = None
        try:
            conn.hub_ended(exc)
        except Exception:  # noqa: BLE001 - the hub carries on with the others
            log.exception("ending a connection failed")


class _HubEntry:
    __slots__ = ("wire", "want_write", "scheduled")

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.want_write = False
        self.scheduled = float("inf")  # its live entry in Hub._timers
