"""One client connection of the FakeServer: the socket glue around a sans-IO
[`ServerStream`][simplexmpp.serverstream.ServerStream], and the throwaway TLS certificate."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import JIDError, StreamError
from ..jid import JID
from ..serverstream import BindRequested, ServerState, ServerStream, UserAuthenticated
from ..stream import NonzaReceived, StartTLS
from ..transport import Wire
from ..xml import tostring

if TYPE_CHECKING:
    import socket

    from .server import FakeServer

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Certificates

_cert_lock = threading.Lock()
_certs: dict[str, tuple[str, str]] = {}
_cert_dir: str | None = None


def _cleanup_certs() -> None:
    if _cert_dir is not None:
        shutil.rmtree(_cert_dir, ignore_errors=True)


def throwaway_cert(domain: str) -> tuple[str, str]:
    """(certificate file, key file) of a self-signed certificate for `domain`, made once per
    process with the `openssl` command line tool and removed at exit."""
    global _cert_dir
    with _cert_lock:
        if domain in _certs:
            return _certs[domain]
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError(
                "FakeServer(tls=True) needs the 'openssl' command line tool to make a "
                "throwaway certificate; install it, or pass cert_file= and key_file=")
        if _cert_dir is None:
            _cert_dir = tempfile.mkdtemp(prefix="simplexmpp-fakeserver-")
            atexit.register(_cleanup_certs)
        base = os.path.join(_cert_dir, f"{len(_certs)}")
        cert, key = base + ".crt", base + ".key"
        san = f"DNS:{domain},DNS:*.{domain},IP:127.0.0.1,IP:::1"
        try:
            subprocess.run(
                [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                 "-days", "7", "-subj", f"/CN={domain}", "-addext", f"subjectAltName={san}",
                 "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                 "-addext", "extendedKeyUsage=serverAuth"],
                check=True, capture_output=True, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(f"openssl could not make a test certificate: {exc} "
                               f"{detail.decode(errors='replace')}") from None
        _certs[domain] = (cert, key)
        return cert, key


# ---------------------------------------------------------------------------------------------
# One client connection

class Session:
    """One client connection, driven by its own thread, which alone reads and writes the
    socket. Negotiation is the [`ServerStream`][simplexmpp.serverstream.ServerStream]'s; routing is
    the server's.

    Locks: `lock` guards the stream, `outbuf` and `closing`, and is never held while routing;
    other threads queue stanzas (`deliver`) and close the connection (`close`) under it. Where both
    are taken, the server's lock comes first (bind: registering the JID and queueing the answer
    happen as one step, so nothing is delivered before the client learns its JID)."""

    def __init__(self, server: FakeServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.wire = Wire(sock)
        self.number = number
        self.lock = threading.Lock()
        self.outbuf = bytearray()
        self.closing = False
        self.stream = ServerStream(server.domain, server._accounts, tls=server.tls)
        self.tls_pending = False
        self.user: str | None = None       # the authenticated account (localpart)
        self.jid: JID | None = None        # the bound full JID
        self.available = False             # sent initial presence, not unavailable since
        self.presence: ET.Element | None = None
        self.priority = 0
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name=f"simplexmpp-fakeserver-{server.port}-{number}")

    def __repr__(self) -> str:
        return f"<FakeServer session {self.jid or self.user or self.number}>"

    @property
    def encrypted(self) -> bool:
        return self.stream.encrypted

    # -- output (any thread) -------------------------------------------------------------------
    def _take_output(self) -> None:
        """Move what the stream queued to the socket's buffer (`lock` held)."""
        self.outbuf += self.stream.data_to_send()
        if self.stream.state is ServerState.CLOSED:
            self.closing = True

    def deliver(self, element: ET.Element) -> None:
        """Queue a stanza for the bound client."""
        text = tostring(element).encode("utf-8")
        with self.lock:
            if self.closing:
                return
            self.outbuf += text
        self.wire.wake()

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Queue a stream error (if any) and our footer, then end the connection."""
        with self.lock:
            if self.closing:
                return
            self.stream.close(condition, text)
            self._take_output()
            self.closing = True
        self.wire.wake()

    # -- the connection thread -----------------------------------------------------------------
    def run(self) -> None:
        sending = bytearray()
        try:
            while True:
                with self.lock:
                    sending += self.outbuf
                    self.outbuf.clear()
                    closing = self.closing
                if closing and not sending:
                    return
                readable = self.wire.pending()  # decrypted bytes OpenSSL holds already
                if not readable:
                    readable, _ = self.wire.wait(None, bool(sending))
                if readable and not closing:
                    data = self.wire.recv()
                    if data == b"":
                        return   # the client went away
                    if data:
                        self.receive(data)
                        continue   # pick up what handling the data queued
                while sending:
                    sent = self.wire.send(sending)
                    if not sent:
                        break
                    del sending[:sent]
                if self.tls_pending and not sending:
                    with self.lock:
                        pending = bool(self.outbuf)
                    if not pending:
                        self.start_tls()
        except (OSError, ssl.SSLError):
            pass   # the client reset the connection: an ordinary end
        except Exception as exc:  # noqa: BLE001 - a bug in the fake server: never lost
            self.server._record_error(exc)
        finally:
            self.wire.close()
            self.server._connection_ended(self)

    def start_tls(self) -> None:
        """RFC 6120 §5.4.3.3: the TLS handshake after <proceed/> went out, then a fresh stream."""
        self.tls_pending = False
        assert self.server._ssl is not None
        sock = self.wire.detach_for_blocking(10.0)
        try:
            tls = self.server._ssl.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with a client failed: %s", exc)
            with self.lock:
                self.closing = True
            return
        self.wire.replace_socket(tls)
        with self.lock:
            self.stream.tls_established()

    def receive(self, data: bytes) -> None:
        failure: StreamError | None = None
        with self.lock:
            try:
                events = self.stream.receive_data(data)
            except StreamError as exc:
                events, failure = self.stream.events_before_error, exc
            self._take_output()
        try:
            self.handle(events)
        except StreamError as exc:
            failure = failure or exc
            self.close(exc.condition, exc.text)
        if failure is not None and not failure.by_peer:
            self.server._note_stream_error(self, failure)

    def handle(self, events: Sequence[object]) -> None:
        """Act on the stream's events (this thread, no lock held)."""
        for event in events:
            if isinstance(event, ET.Element):
                self.server._route(self, event)
            elif isinstance(event, StartTLS):
                self.tls_pending = True
            elif isinstance(event, UserAuthenticated):
                self.user = event.account
            elif isinstance(event, BindRequested):
                self.handle(self.bind(event))
            elif isinstance(event, NonzaReceived):
                raise StreamError("unsupported-stanza-type",
                                  f"<{event.element.tag}> is not supported here "
                                  f"(no stream management)")

    def bind(self, request: BindRequested) -> Sequence[object]:
        """RFC 6120 §7: pick and register the full JID, then answer (see the class's locks)."""
        assert self.user is not None
        with self.server._changed:
            try:
                jid = self.server._bind(self, self.user, request.resource)
            except JIDError:
                with self.lock:
                    try:
                        return self.stream.refuse_bind(
                            "bad-request", "that resource is not a valid JID resourcepart",
                            "modify")
                    finally:
                        self._take_output()
            with self.lock:
                try:
                    return self.stream.bind(jid)
                finally:
                    self._take_output()
