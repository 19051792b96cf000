"""A loopback fake XMPP server that misbehaves on purpose, for the hostile-input tests.

It speaks plain text (clients connect with ``tls="none"``, allowed to loopback only) and, where a
case needs a session first, authenticates with ANONYMOUS or a deliberately broken SCRAM.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import threading
from collections.abc import Callable

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='{id}' "
          "version='1.0'>")
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"


class Conn:
    """The server side of one client connection, with blocking helpers for scripts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self.received = b""
        self.streams = 0

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, pattern: str) -> re.Match[bytes]:
        """Read until ``pattern`` (a regex over everything received so far) matches."""
        regex = re.compile(pattern.encode(), re.S)
        while True:
            match = regex.search(self.received)
            if match:
                self.received = self.received[match.end():]
                return match
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("client closed")
            self.received += data

    def open_stream(self, features: str) -> None:
        self.read_until(r"<stream:stream[^>]*>")
        self.streams += 1
        self.send(HEADER.format(id=f"s{self.streams}") + f"<stream:features>{features}"
                  "</stream:features>")

    def anonymous_session(self, jid: str = "anon@localhost/r1") -> None:
        """Negotiate ANONYMOUS auth and bind, as a real server would."""
        self.open_stream(f"<mechanisms xmlns='{SASL_NS}'><mechanism>ANONYMOUS</mechanism>"
                         "</mechanisms>")
        self.read_until(r"<auth [^>]*>.*?</auth>|<auth [^>]*/>")
        self.send(f"<success xmlns='{SASL_NS}'/>")
        self.open_stream("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
        match = self.read_until(r'<iq type="set" id="([^"]+)"')
        self.read_until(r"</iq>")
        self.send(f"<iq type='result' id='{match.group(1).decode()}'><bind "
                  f"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>")

    def scram_with_wrong_signature(self, password: str = "password") -> None:
        """SCRAM-SHA-1 that computes everything right but the server signature."""
        self.open_stream(f"<mechanisms xmlns='{SASL_NS}'><mechanism>SCRAM-SHA-1</mechanism>"
                         "</mechanisms>")
        auth = self.read_until(r"<auth [^>]*>([^<]*)</auth>")
        client_first = base64.b64decode(auth.group(1)).decode()
        bare = client_first.split(",", 2)[2]
        nonce = dict(p.split("=", 1) for p in bare.split(","))["r"] + "srv"
        salt = b"0123456789ab"
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i=4096"
        self.send(f"<challenge xmlns='{SASL_NS}'>"
                  f"{base64.b64encode(server_first.encode()).decode()}</challenge>")
        self.read_until(r"<response [^>]*>([^<]*)</response>")
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, 4096)
        wrong = hmac.new(salted, b"not the server key", hashlib.sha1).digest()
        self.send(f"<success xmlns='{SASL_NS}'>"
                  f"{base64.b64encode(b'v=' + base64.b64encode(wrong)).decode()}</success>")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class HostileServer:
    """Runs ``script(conn)`` for the first client that connects; ``port`` to connect to."""

    def __init__(self, script: Callable[[Conn], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.script = script
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hostile-server")
        self._thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        conn = Conn(sock)
        try:
            self.script(conn)
        except (OSError, ConnectionError):
            pass  # the client hung up on us: expected in most cases
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            conn.close()     # before done: the fixtures count open descriptors after done
            self.done.set()

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass
        self.done.wait(5)


def raw_component(host: str, port: int, domain: str, secret: str) -> Conn:
    """A XEP-0114 component connection to a real server, as raw text: it may send what the
    library refuses to (any 'from' at its domain the server lets through)."""
    conn = Conn(socket.create_connection((host, port), timeout=10))
    conn.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
              f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>")
    stream_id = conn.read_until(r"<stream:stream [^>]*id=['\"]([^'\"]+)['\"]").group(1)
    digest = hashlib.sha1(stream_id + secret.encode()).hexdigest()
    conn.send(f"<handshake>{digest}</handshake>")
    conn.read_until(r"<handshake\s*/>|<handshake></handshake>")
    return conn
