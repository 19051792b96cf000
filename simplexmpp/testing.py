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

Threads: one accept thread, plus one thread per connection that owns its socket (reads, parses with
[`simplexmpp.xml.StreamParser`][simplexmpp.xml.StreamParser], writes what other threads queued).
Routing happens on the sender's connection thread under one server lock. `stop()` closes every
connection and joins every thread; an unexpected exception in a server thread (or in a scripted
reply) is kept in [`FakeServer.errors`][simplexmpp.testing.FakeServer.errors] and raised again by
`stop()`.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import enum
import hashlib
import hmac
import itertools
import logging
import os
import secrets
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from . import errors
from .client import Client, timeout_seconds
from .errors import IqError, JIDError, StreamError, XMPPError
from .jid import JID
from .roster import ROSTER_NS, RosterItem
from .sasl import SCRAM_HASHES, _salted_password, parse_attributes, saslprep
from .stanza import Iq, Stanza, error_element, new_id, wrap
from .stream import BIND_NS, SASL_NS, STREAM_ERRORS_NS, TLS_NS
from .transport import Wire, is_loopback
from .xml import (CLIENT_NS, STREAM_FOOTER, STREAM_NS, StreamEnd, StreamHeader, StreamParser,
                  tostring)

__all__ = ["FakeServer", "FakeServerError", "Script", "NO_REPLY", "ScriptReply",
           "running_server", "ClientFactory", "DEFAULT_USERS"]

log = logging.getLogger(__name__)

PING_NS = "urn:xmpp:ping"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
_IQ = "{%s}iq" % CLIENT_NS
_MESSAGE = "{%s}message" % CLIENT_NS
_PRESENCE = "{%s}presence" % CLIENT_NS
_STANZA_TAGS = frozenset((_IQ, _MESSAGE, _PRESENCE))
_ROSTER_QUERY = "{%s}query" % ROSTER_NS
_ROSTER_ITEM = "{%s}item" % ROSTER_NS
_SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))
_SCRAM_ITERATIONS = 4096   # RFC 7677 §4: the minimum, and what the client accepts at least
_SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")

DEFAULT_USERS: dict[str, str] = {"alice": "password", "bob": "password", "carol": "password"}
"""The accounts of the `xmpp_server` fixture and of
[`running_server()`][simplexmpp.testing.running_server]."""


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


@dataclass
class _Contact:
    """One roster item as the server stores it (RFC 6121 §2.1.2)."""

    name: str | None = None
    groups: tuple[str, ...] = ()
    subscription: str = "none"   # none, to, from, both
    ask: bool = False            # our subscription request is pending

    def has_to(self) -> bool:
        return self.subscription in ("to", "both")

    def has_from(self) -> bool:
        return self.subscription in ("from", "both")

    def set_to(self, on: bool) -> None:
        self.subscription = _subscription(on, self.has_from())

    def set_from(self, on: bool) -> None:
        self.subscription = _subscription(self.has_to(), on)


def _subscription(to: bool, from_: bool) -> str:
    return {(False, False): "none", (True, False): "to", (False, True): "from",
            (True, True): "both"}[(to, from_)]


class _SaslFailure(Exception):
    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition)
        self.condition = condition
        self.text = text


def _unescape_saslname(name: str) -> str:
    # RFC 5802 §5.1: "," and "=" in names are sent as "=2C" and "=3D"; any other "=" is bad.
    out = name.replace("=2C", ",").replace("=3D", "=")
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise _SaslFailure("malformed-request", "bad escape in SCRAM username")
    return out


class _ScramServer:
    """The server side of one SCRAM exchange (RFC 5802 §3, §5), without channel binding."""

    def __init__(self, mechanism: str, server: FakeServer) -> None:
        self.hash = SCRAM_HASHES[mechanism]
        self.server = server
        self.user: str | None = None
        self._gs2 = b""
        self._client_first_bare = b""
        self._server_first = b""
        self._nonce = ""
        self._salt = b""
        self._password = ""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def first(self, message: bytes) -> bytes:
        """client-first-message in, server-first-message out."""
        flag, comma, rest = message.partition(b",")
        authzid, comma2, bare = rest.partition(b",")
        if not comma or not comma2:
            raise _SaslFailure("malformed-request", "no GS2 header")
        if flag.startswith(b"p="):
            # RFC 5802 §6: we offered no -PLUS mechanism, so a binding client is confused.
            raise _SaslFailure("not-authorized", "channel binding is not supported here")
        if flag not in (b"n", b"y"):
            raise _SaslFailure("malformed-request", "bad GS2 channel-binding flag")
        attrs = self._attributes(bare)
        if "m" in attrs:
            raise _SaslFailure("malformed-request", "mandatory SCRAM extension not supported")
        if "n" not in attrs or "r" not in attrs or not attrs["r"]:
            raise _SaslFailure("malformed-request", "client-first-message lacks n= or r=")
        user = self.server._user_key(_unescape_saslname(attrs["n"]))
        if user is None:
            raise _SaslFailure("not-authorized")
        if authzid:
            self._check_authzid(authzid, user)
        self.user = user
        self._password, self._salt = self.server._credentials(user)
        self._gs2 = flag + b"," + authzid + b","
        self._client_first_bare = bare
        self._nonce = attrs["r"] + secrets.token_urlsafe(18)
        self._server_first = ("r=%s,s=%s,i=%d" % (
            self._nonce, base64.b64encode(self._salt).decode(), _SCRAM_ITERATIONS)).encode()
        return self._server_first

    def _check_authzid(self, authzid: bytes, user: str) -> None:
        text = authzid.decode("utf-8", "replace")
        if not text.startswith("a="):
            raise _SaslFailure("malformed-request", "bad authzid")
        try:
            wanted = JID(_unescape_saslname(text[2:]))
        except JIDError:
            raise _SaslFailure("invalid-authzid") from None
        if wanted.bare != self.server._bare(user):
            raise _SaslFailure("invalid-authzid", "you may only act as yourself here")

    @staticmethod
    def _attributes(data: bytes) -> dict[str, str]:
        try:
            return parse_attributes(data)
        except errors.AuthenticationError as exc:
            raise _SaslFailure("malformed-request", str(exc)) from None

    def final(self, message: bytes) -> bytes:
        """client-final-message in, server-final-message out; not-authorized on a bad proof."""
        without_proof, sep, proof_b64 = message.rpartition(b",p=")
        if not sep:
            raise _SaslFailure("malformed-request", "client-final-message lacks a proof")
        attrs = self._attributes(without_proof)
        if attrs.get("c") != base64.b64encode(self._gs2).decode():
            raise _SaslFailure("not-authorized", "channel-binding data does not match")
        if attrs.get("r") != self._nonce:
            raise _SaslFailure("not-authorized", "nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _SaslFailure("incorrect-encoding") from None
        salted = _salted_password(self.hash, saslprep(self._password), self._salt,
                                  _SCRAM_ITERATIONS)
        stored_key = hashlib.new(self.hash, self._hmac(salted, b"Client Key")).digest()
        auth_message = self._client_first_bare + b"," + self._server_first + b"," + without_proof
        signature = self._hmac(stored_key, auth_message)
        if len(proof) != len(signature):
            raise _SaslFailure("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        # RFC 5802 §3: the proof is right when H(ClientProof XOR ClientSignature) == StoredKey.
        if not hmac.compare_digest(hashlib.new(self.hash, client_key).digest(), stored_key):
            raise _SaslFailure("not-authorized")
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature)


# ---------------------------------------------------------------------------------------------
# Certificates

_cert_lock = threading.Lock()
_certs: dict[str, tuple[str, str]] = {}
_cert_dir: str | None = None


def _cleanup_certs() -> None:
    if _cert_dir is not None:
        shutil.rmtree(_cert_dir, ignore_errors=True)


def _throwaway_cert(domain: str) -> tuple[str, str]:
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

_T = TypeVar("_T")


class _Session:
    """One client connection, driven by its own thread, which alone touches the socket."""

    def __init__(self, server: FakeServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.wire = Wire(sock)
        self.number = number
        self.lock = threading.Lock()       # outbuf and closing; never held while routing
        self.outbuf = bytearray()
        self.closing = False
        self.parser = StreamParser()
        self.header_sent = False
        self.encrypted = False
        self.tls_pending = False
        self.user: str | None = None       # the authenticated account (localpart)
        self.jid: JID | None = None        # the bound full JID
        self.available = False             # sent initial presence, not unavailable since
        self.presence: ET.Element | None = None
        self.priority = 0
        self.scram: _ScramServer | None = None
        self.waiting_initial: str | None = None   # SASL mechanism awaiting its first response
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name=f"simplexmpp-fakeserver-{server.port}-{number}")

    def __repr__(self) -> str:
        return f"<FakeServer session {self.jid or self.user or self.number}>"

    # -- output (any thread) -------------------------------------------------------------------
    def send_text(self, text: str) -> None:
        with self.lock:
            if self.closing:
                return
            self.outbuf += text.encode("utf-8")
        self.wire.wake()

    def deliver(self, element: ET.Element) -> None:
        self.send_text(tostring(element))

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Queue a stream error (if any) and our footer, then end the connection."""
        out = ""
        if not self.header_sent:
            out += self.server._header(None)
            self.header_sent = True
        if condition is not None:
            body = '<%s xmlns="%s"/>' % (condition, STREAM_ERRORS_NS)
            if text:
                body += '<text xmlns="%s">%s</text>' % (
                    STREAM_ERRORS_NS, text.replace("&", "&amp;").replace("<", "&lt;"))
            out += "<stream:error>%s</stream:error>" % body
        out += STREAM_FOOTER
        with self.lock:
            if self.closing:
                return
            self.outbuf += out.encode("utf-8")
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
        """RFC 6120 §5.4.3.3: the TLS handshake after <proceed/>, then a fresh stream."""
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
        self.encrypted = True
        self.parser = StreamParser()
        self.header_sent = False

    def receive(self, data: bytes) -> None:
        try:
            items = self.parser.feed(data)
        except StreamError as exc:
            self.server._note_stream_error(self, exc)
            self.close(exc.condition, exc.text)
            return
        parser = self.parser
        for item in items:
            if self.closing or self.tls_pending or self.parser is not parser:
                break   # after <proceed/> the bytes are TLS; after a restart, a new stream
            if isinstance(item, StreamHeader):
                self.on_header(item)
            elif isinstance(item, StreamEnd):
                self.close()
            else:
                try:
                    self.on_element(item)
                except StreamError as exc:
                    self.server._note_stream_error(self, exc)
                    self.close(exc.condition, exc.text)

    def on_header(self, header: StreamHeader) -> None:
        self.send_text(self.server._header(header.from_ if self.encrypted else None))
        self.header_sent = True
        if header.default_ns != CLIENT_NS:
            raise_error = StreamError("invalid-namespace", "the stream must be jabber:client")
        elif (header.version or "0.9").split(".")[0] != "1":
            raise_error = StreamError("unsupported-version", "only XMPP 1.0 is spoken here")
        elif header.attrs.get("to") is None or not self.server._is_domain(header.attrs["to"]):
            raise_error = StreamError("host-unknown",
                                      f"this server only serves {self.server.domain}")
        else:
            self.send_text(self.features())
            return
        self.server._note_stream_error(self, raise_error)
        self.close(raise_error.condition, raise_error.text)

    def features(self) -> str:
        if self.server.tls and not self.encrypted:
            return ('<stream:features><starttls xmlns="%s"><required/></starttls>'
                    '</stream:features>' % TLS_NS)
        if self.user is None:
            mechs = "".join("<mechanism>%s</mechanism>" % m
                            for m in (*_SCRAM_MECHANISMS, "PLAIN"))
            return ('<stream:features><mechanisms xmlns="%s">%s</mechanisms>'
                    '</stream:features>' % (SASL_NS, mechs))
        return '<stream:features><bind xmlns="%s"/></stream:features>' % BIND_NS

    def on_element(self, el: ET.Element) -> None:
        tag = el.tag
        if tag == "{%s}starttls" % TLS_NS:
            if self.server.tls and not self.encrypted:
                self.send_text('<proceed xmlns="%s"/>' % TLS_NS)
                self.tls_pending = True
            else:
                # RFC 6120 §5.4.2.2: refuse, then close the stream.
                self.send_text('<failure xmlns="%s"/>' % TLS_NS)
                self.close()
            return
        if self.server.tls and not self.encrypted:
            raise StreamError("policy-violation", "STARTTLS is required first")
        if self.user is None:
            if tag.startswith("{%s}" % SASL_NS):
                self.on_sasl(el)
                return
            raise StreamError("not-authorized", "authenticate first")
        if self.jid is None:
            payload = el.find("{%s}bind" % BIND_NS)
            if tag == _IQ and el.get("type") == "set" and payload is not None:
                self.on_bind(el, payload)
                return
            raise StreamError("not-authorized", "bind a resource first")
        if tag in _STANZA_TAGS:
            self.server._route(self, el)
            return
        raise StreamError("unsupported-stanza-type",
                          f"<{tag}> is not supported here (no stream management)")

    # -- SASL (RFC 6120 §6) --------------------------------------------------------------------
    def on_sasl(self, el: ET.Element) -> None:
        name = el.tag.rpartition("}")[2]
        try:
            if name == "auth":
                self.scram = None
                mechanism = el.get("mechanism", "")
                if mechanism not in (*_SCRAM_MECHANISMS, "PLAIN"):
                    raise _SaslFailure("invalid-mechanism")
                text = (el.text or "").strip()
                if not text:
                    # No initial response: an empty challenge asks for it (RFC 6120 §6.4.2).
                    self.waiting_initial = mechanism
                    self.send_text('<challenge xmlns="%s"/>' % SASL_NS)
                    return
                self.sasl_step(mechanism, _b64decode(text))
            elif name == "response":
                data = _b64decode((el.text or "").strip())
                if self.waiting_initial is not None:
                    mechanism, self.waiting_initial = self.waiting_initial, None
                    self.sasl_step(mechanism, data)
                elif self.scram is not None:
                    scram, self.scram = self.scram, None
                    final = scram.final(data)
                    assert scram.user is not None
                    self.sasl_success(scram.user, final)
                else:
                    raise _SaslFailure("malformed-request", "no exchange in progress")
            elif name == "abort":
                self.scram = None
                self.waiting_initial = None
                raise _SaslFailure("aborted")
            else:
                raise StreamError("invalid-xml", f"unexpected <{name}> during SASL")
        except _SaslFailure as failure:
            self.scram = None
            body = '<%s/>' % failure.condition
            if failure.text:
                body += '<text xml:lang="en">%s</text>' % failure.text.replace(
                    "&", "&amp;").replace("<", "&lt;")
            self.send_text('<failure xmlns="%s">%s</failure>' % (SASL_NS, body))

    def sasl_step(self, mechanism: str, data: bytes) -> None:
        if mechanism == "PLAIN":
            self.sasl_success(self.server._check_plain(data), None)
            return
        self.scram = _ScramServer(mechanism, self.server)
        first = self.scram.first(data)
        self.send_text('<challenge xmlns="%s">%s</challenge>'
                       % (SASL_NS, base64.b64encode(first).decode()))

    def sasl_success(self, user: str, data: bytes | None) -> None:
        self.user = user
        text = base64.b64encode(data).decode() if data else ""
        self.send_text('<success xmlns="%s">%s</success>' % (SASL_NS, text))
        self.parser = StreamParser()   # RFC 6120 §6.4.6: the client restarts the stream
        self.header_sent = False

    # -- resource binding (RFC 6120 §7) --------------------------------------------------------
    def on_bind(self, el: ET.Element, payload: ET.Element) -> None:
        request = Iq(el)
        wanted = (payload.findtext("{%s}resource" % BIND_NS) or "").strip() or None
        assert self.user is not None
        try:
            jid = self.server._bind(self, self.user, wanted)
        except JIDError:
            self.deliver(request.error_reply("bad-request", "modify",
                                             "that resource is not a valid JID resourcepart").xml)
            return
        bind = ET.Element("{%s}bind" % BIND_NS)
        ET.SubElement(bind, "{%s}jid" % BIND_NS).text = str(jid)
        self.deliver(request.result(bind).xml)


def _b64decode(text: str) -> bytes:
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _SaslFailure("incorrect-encoding") from None


# ---------------------------------------------------------------------------------------------
# The server

class FakeServer:
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
        self._connections: set[_Session] = set()
        self._sessions: dict[JID, _Session] = {}
        self._scripts: list[Script] = []
        self._received: list[Stanza] = []
        self._delivered: list[tuple[JID, Stanza]] = []
        self._ssl: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
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
                self._cert_file, self._key_file = _throwaway_cert(self.domain)
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
                    session = _Session(self, sock, next(self._numbers))
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

    def _note_stream_error(self, session: _Session, exc: StreamError) -> None:
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

    def _user_key(self, name: str) -> str | None:
        """The normalised localpart of an existing account, or None."""
        try:
            local = JID(local=name, domain=self.domain).local
        except JIDError:
            return None
        with self._lock:
            return local if local in self._users else None

    def _credentials(self, user: str) -> tuple[str, bytes]:
        with self._lock:
            return self._users[user]

    def _bare(self, user: str) -> JID:
        return JID(local=user, domain=self.domain)

    def _is_domain(self, text: str) -> bool:
        try:
            return JID(text) == self.domain
        except JIDError:
            return False

    def _check_plain(self, data: bytes) -> str:
        # RFC 4616 §2: [authzid] NUL authcid NUL passwd
        parts = data.split(b"\0")
        if len(parts) != 3:
            raise _SaslFailure("malformed-request", "PLAIN message is not authzid\\0user\\0pass")
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise _SaslFailure("malformed-request", "PLAIN message is not UTF-8") from None
        user = self._user_key(authcid)
        if user is None or not hmac.compare_digest(
                saslprep(password).encode(), saslprep(self._credentials(user)[0]).encode()):
            raise _SaslFailure("not-authorized")
        if authzid:
            try:
                wanted = JID(authzid)
            except JIDError:
                raise _SaslFailure("invalid-authzid") from None
            if wanted.bare != self._bare(user):
                raise _SaslFailure("invalid-authzid", "you may only act as yourself here")
        return user

    def _header(self, to: str | None) -> str:
        attrs = f'from="{self.domain}" id="{new_id()}" version="1.0" xml:lang="en"'
        if to:
            try:
                attrs += f' to="{JID(to)}"'
            except JIDError:
                pass
        return ("<?xml version='1.0'?><stream:stream %s xmlns=\"%s\" xmlns:stream=\"%s\">"
                % (attrs, CLIENT_NS, STREAM_NS))

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

    def _existing(self, user: str) -> str:
        name = JID(user).local if "@" in user else user
        key = self._user_key(name or "")
        if key is None:
            raise KeyError(f"no account {user!r} on this FakeServer")
        return key

    @staticmethod
    def _roster_item(jid: JID, contact: _Contact) -> RosterItem:
        return RosterItem(jid=jid, name=contact.name, groups=frozenset(contact.groups),
                          subscription=contact.subscription, ask=contact.ask)

    @staticmethod
    def _item_element(jid: JID, contact: _Contact | None) -> ET.Element:
        item = ET.Element(_ROSTER_ITEM, jid=str(jid))
        if contact is None:
            item.set("subscription", "remove")
            return item
        item.set("subscription", contact.subscription)
        if contact.name:
            item.set("name", contact.name)
        if contact.ask:
            item.set("ask", "subscribe")
        for group in contact.groups:
            ET.SubElement(item, "{%s}group" % ROSTER_NS).text = group
        return item

    def _push(self, user: str, jid: JID) -> None:
        """RFC 6121 §2.1.6: a roster push of one item to every session of `user`."""
        contact = self._rosters[user].get(jid)
        for session in self._sessions_of(user):
            query = ET.Element(_ROSTER_QUERY)
            query.append(self._item_element(jid, contact))
            assert session.jid is not None
            push = Iq(type="set", id=new_id(), to=session.jid, payload=query)
            self._deliver(session, push.xml)

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

    # -- routing (connection threads) ----------------------------------------------------------
    def _bind(self, session: _Session, user: str, wanted: str | None) -> JID:
        bare = self._bare(user)
        with self._changed:
            jid = bare.with_resource(wanted) if wanted else \
                bare.with_resource("fake-" + secrets.token_hex(4))
            # RFC 6120 §7.7.2.2: a resource already in use gets a different one here (the
            # server's choice among the allowed policies; the older session is kept).
            while jid in self._sessions:
                jid = bare.with_resource(f"{jid.resource}-{secrets.token_hex(2)}")
            session.jid = jid
            self._sessions[jid] = session
            self._changed.notify_all()
        return jid

    def _connection_ended(self, session: _Session) -> None:
        with self._changed:
            self._connections.discard(session)
            jid = session.jid
            if jid is not None and self._sessions.get(jid) is session:
                del self._sessions[jid]
                if session.available:
                    # RFC 6121 §4.6: the server sends unavailable presence on the user's behalf.
                    unavailable = ET.Element(_PRESENCE, {"from": str(jid), "type": "unavailable"})
                    session.available = False
                    session.presence = None
                    self._broadcast(session, unavailable)
            self._changed.notify_all()

    def _sessions_of(self, user: str) -> list[_Session]:
        prefix = self._bare(user)
        return [s for jid, s in self._sessions.items() if jid.bare == prefix]

    def _deliver(self, session: _Session, element: ET.Element) -> None:
        """Send to one session and log it (server lock held or not: it is re-entrant)."""
        with self._changed:
            assert session.jid is not None
            self._delivered.append((session.jid, wrap(element) or Iq(element)))
            session.deliver(element)
            self._changed.notify_all()

    def _bounce(self, session: _Session, el: ET.Element, condition: str,
                text: str | None = None) -> None:
        """An error reply to a stanza (RFC 6120 §8.3.1); never an error for an error."""
        if el.get("type") == "error" or (el.tag == _IQ and el.get("type") in ("result",)):
            return
        reply = ET.Element(el.tag, type="error")
        if el.get("id") is not None:
            reply.set("id", el.get("id", ""))
        if el.get("to"):
            reply.set("from", el.get("to", ""))
        assert session.jid is not None
        reply.set("to", str(session.jid))
        reply.append(error_element(condition, "cancel", text))
        self._deliver(session, reply)

    def _recipients(self, user: str) -> list[_Session]:
        """Sessions that get a stanza sent to `user`'s bare JID (RFC 6121 §8.5.2.1.1): the
        available ones of highest non-negative priority. A departure from the RFC for
        convenience in tests: an account that is connected but has sent no presence gets it
        on all its sessions rather than not at all."""
        sessions = self._sessions_of(user)
        available = [s for s in sessions if s.available and s.priority >= 0]
        if available:
            top = max(s.priority for s in available)
            return [s for s in available if s.priority == top]
        return [s for s in sessions if not s.available]

    def _route(self, session: _Session, el: ET.Element) -> None:
        assert session.jid is not None
        # RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
        el.set("from", str(session.jid))
        stanza = wrap(el)
        assert stanza is not None
        with self._changed:
            self._received.append(stanza)
            self._changed.notify_all()
        target: JID | None = None
        to_text = el.get("to")
        if to_text:
            try:
                target = JID(to_text)
            except JIDError:
                with self._lock:
                    if el.tag != _PRESENCE:
                        self._bounce(session, el, "jid-malformed")
                return
            el.set("to", str(target))
        if el.tag == _IQ:
            self._route_iq(session, Iq(el), target)
        else:
            with self._lock:
                if el.tag == _MESSAGE:
                    self._route_message(session, el, target)
                else:
                    self._route_presence(session, el, target)

    # IQ ---------------------------------------------------------------------------------------
    def _route_iq(self, session: _Session, iq: Iq, target: JID | None) -> None:
        kind = iq.xml.get("type")
        if kind in ("get", "set") and self._run_script(session, iq):
            return
        assert session.jid is not None
        own = session.jid.bare
        with self._lock:
            if kind not in ("get", "set", "result", "error"):
                self._bounce(session, iq.xml, "bad-request")
                return
            request = kind in ("get", "set")
            if target is None or target == own:
                if request:
                    self._account_iq(session, iq, own=True)
                return   # a reply to the server (a roster push): nothing to do
            if target.domain != self.domain:
                if request:
                    self._bounce(session, iq.xml, "remote-server-not-found",
                                 "this test server has no server-to-server links")
                return
            if target.local is None:
                if target.resource is None and request:
                    self._server_iq(session, iq)
                elif request:
                    self._bounce(session, iq.xml, "service-unavailable")
                return
            user = self._user_key(target.local)
            if user is None:
                if request:
                    self._bounce(session, iq.xml, "service-unavailable")
                return
            if target.resource is None:
                # RFC 6121 §8.5.2.1.3: an IQ to a bare JID is answered by the server.
                if request:
                    self._account_iq(session, iq, own=False)
                return
            recipient = self._sessions.get(target)
            if recipient is not None:
                self._deliver(recipient, iq.xml)
            elif request:
                self._bounce(session, iq.xml, "service-unavailable")

    def _run_script(self, session: _Session, iq: Iq) -> bool:
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

    def _account_iq(self, session: _Session, iq: Iq, own: bool) -> None:
        payload = iq.payload
        tag = payload.tag if payload is not None else ""
        kind = iq.xml.get("type")
        if own and tag == _ROSTER_QUERY:
            if kind == "get":
                self._roster_get(session, iq)
            else:
                self._roster_set(session, iq)
        elif tag == "{%s}ping" % PING_NS and kind == "get":
            self._reply(session, iq, None)
        elif tag == "{%s}query" % DISCO_INFO_NS and kind == "get" and payload is not None \
                and payload.get("node") is None:
            query = ET.Element("{%s}query" % DISCO_INFO_NS)
            ET.SubElement(query, "{%s}identity" % DISCO_INFO_NS, category="account",
                          type="registered")
            ET.SubElement(query, "{%s}feature" % DISCO_INFO_NS, var=DISCO_INFO_NS)
            self._reply(session, iq, query)
        else:
            self._bounce(session, iq.xml, "service-unavailable")

    def _server_iq(self, session: _Session, iq: Iq) -> None:
        payload = iq.payload
        tag = payload.tag if payload is not None else ""
        if iq.xml.get("type") != "get" or payload is None:
            self._bounce(session, iq.xml, "service-unavailable")
        elif tag == "{%s}ping" % PING_NS:
            self._reply(session, iq, None)
        elif tag == "{%s}query" % DISCO_INFO_NS and payload.get("node") is None:
            query = ET.Element("{%s}query" % DISCO_INFO_NS)
            ET.SubElement(query, "{%s}identity" % DISCO_INFO_NS, category="server", type="im",
                          name="simplexmpp FakeServer")
            for var in sorted(self.disco_features):
                ET.SubElement(query, "{%s}feature" % DISCO_INFO_NS, var=var)
            self._reply(session, iq, query)
        elif tag == "{%s}query" % DISCO_ITEMS_NS and payload.get("node") is None:
            self._reply(session, iq, ET.Element("{%s}query" % DISCO_ITEMS_NS))
        else:
            self._bounce(session, iq.xml, "service-unavailable")

    def _reply(self, session: _Session, iq: Iq, payload: ET.Element | None) -> None:
        reply = iq.result(payload)
        if iq.xml.get("to"):
            reply.xml.set("from", iq.xml.get("to", ""))
        self._deliver(session, reply.xml)

    def _roster_get(self, session: _Session, iq: Iq) -> None:
        assert session.user is not None
        query = ET.Element(_ROSTER_QUERY)
        for jid, contact in self._rosters[session.user].items():
            query.append(self._item_element(jid, contact))
        self._reply(session, iq, query)

    def _roster_set(self, session: _Session, iq: Iq) -> None:
        assert session.user is not None and iq.payload is not None
        user = session.user
        items = iq.payload.findall(_ROSTER_ITEM)
        # RFC 6121 §2.3.3: exactly one item, with a valid JID.
        if len(items) != 1:
            self._bounce(session, iq.xml, "bad-request", "a roster set carries one item")
            return
        item = items[0]
        try:
            jid = JID(item.get("jid", "")).bare
        except JIDError:
            self._bounce(session, iq.xml, "bad-request", "the item's jid is not a JID")
            return
        if jid == self._bare(user):
            self._bounce(session, iq.xml, "not-allowed", "you cannot add yourself")
            return
        roster = self._rosters[user]
        if item.get("subscription") == "remove":
            contact = roster.get(jid)
            if contact is None:
                self._bounce(session, iq.xml, "item-not-found")
                return
            # RFC 6121 §2.5.2: removing an item cancels the subscriptions both ways.
            if contact.has_to() or contact.ask:
                self._cancel_subscription(user, jid, outbound=True)
            if contact.has_from():
                self._cancel_subscription(user, jid, outbound=False)
            del roster[jid]
            self._push(user, jid)
            self._reply(session, iq, None)
            return
        groups = tuple(sorted({(g.text or "").strip() for g in item.findall(
            "{%s}group" % ROSTER_NS) if (g.text or "").strip()}))
        contact = roster.setdefault(jid, _Contact())
        contact.name = item.get("name") or None
        contact.groups = groups
        # RFC 6121 §2.3.2: push to every interested resource, then answer the requester.
        self._push(user, jid)
        self._reply(session, iq, None)

    # Message ----------------------------------------------------------------------------------
    def _route_message(self, session: _Session, el: ET.Element, target: JID | None) -> None:
        assert session.jid is not None
        kind = el.get("type") or "normal"
        if target is None:
            target = session.jid.bare   # RFC 6120 §10.3.1: no 'to' means the account itself
            el.set("to", str(target))
        if target.domain != self.domain:
            self._bounce(session, el, "remote-server-not-found",
                         "this test server has no server-to-server links")
            return
        if target.local is None:
            return   # messages to the server itself are ignored
        user = self._user_key(target.local)
        if user is None:
            # RFC 6121 §8.5.2.2.1 / §8.5.3.2.1: no such account.
            self._bounce(session, el, "service-unavailable")
            return
        if target.resource is not None:
            recipient = self._sessions.get(target)
            if recipient is not None:
                self._deliver(recipient, el)
                return
            # RFC 6121 §8.5.3.2.1: for a resource that is not connected, chat and normal go
            # to the bare JID, groupchat bounces, headline and error are dropped.
            if kind == "groupchat":
                self._bounce(session, el, "service-unavailable")
                return
            if kind not in ("chat", "normal"):
                return
        if kind == "groupchat":
            self._bounce(session, el, "service-unavailable")
            return
        if kind == "error":
            return
        recipients = self._recipients(user)
        if kind == "headline":
            recipients = [s for s in self._sessions_of(user)
                          if not s.available or s.priority >= 0]
        if not recipients:
            if kind in ("chat", "normal"):
                # No offline storage here: RFC 6121 §8.5.2.2.1 allows service-unavailable.
                self._bounce(session, el, "service-unavailable",
                             "the recipient is offline (this test server stores nothing)")
            return
        for recipient in recipients:
            self._deliver(recipient, el)

    # Presence ---------------------------------------------------------------------------------
    def _route_presence(self, session: _Session, el: ET.Element, target: JID | None) -> None:
        assert session.jid is not None and session.user is not None
        kind = el.get("type")
        if target is None:
            if kind is None:
                first = not session.available
                session.available = True
                session.presence = el
                session.priority = _priority(el)
                self._broadcast(session, el)
                if first:
                    self._probe_contacts(session)
            elif kind == "unavailable":
                session.available = False
                session.presence = None
                self._broadcast(session, el)
            return
        if kind in _SUBSCRIPTION_TYPES:
            # RFC 6121 §3.1.2: subscription stanzas carry the sender's bare JID.
            el.set("from", str(session.jid.bare))
            self._subscription(session.user, target.bare, kind, el)
            return
        if kind == "probe":
            user = self._local_user(target)
            if user is not None:
                contact = self._rosters[user].get(session.jid.bare)
                if contact is not None and contact.has_from():
                    self._send_presences_of(user, [session])
            return
        # Directed presence (RFC 6121 §4.6): to the session, or the available resources.
        if target.domain != self.domain or target.local is None:
            return
        user = self._user_key(target.local)
        if user is None:
            return
        if target.resource is not None:
            recipient = self._sessions.get(target)
            recipients = [recipient] if recipient is not None else []
        else:
            recipients = [s for s in self._sessions_of(user) if s.available] or \
                self._sessions_of(user)
        for recipient in recipients:
            self._deliver(recipient, el)

    def _local_user(self, jid: JID) -> str | None:
        if jid.domain != self.domain or jid.local is None:
            return None
        return self._user_key(jid.local)

    def _broadcast(self, session: _Session, el: ET.Element) -> None:
        """RFC 6121 §4.2.2, §4.4.2, §4.5.2: to contacts with a subscription `from` or
        `both` (their available resources) and to the user's own available resources."""
        assert session.user is not None and session.jid is not None
        recipients = [s for s in self._sessions_of(session.user)
                      if s.available or s is session]
        for jid, contact in self._rosters[session.user].items():
            contact_user = self._local_user(jid)
            if contact.has_from() and contact_user is not None:
                recipients += [s for s in self._sessions_of(contact_user) if s.available]
        for recipient in recipients:
            if recipient is session and el.get("type") == "unavailable" and \
                    session.jid not in self._sessions:
                continue   # the connection is gone
            assert recipient.jid is not None
            copy = ET.Element(el.tag, el.attrib)
            copy.text = el.text
            copy.extend(list(el))
            copy.set("to", str(recipient.jid))
            self._deliver(recipient, copy)

    def _probe_contacts(self, session: _Session) -> None:
        """RFC 6121 §4.2.2: after initial presence, the current presence of every contact the
        user is subscribed to (`to` or `both`)."""
        assert session.user is not None
        for jid, contact in self._rosters[session.user].items():
            contact_user = self._local_user(jid)
            if contact.has_to() and contact_user is not None:
                self._send_presences_of(contact_user, [session])

    def _send_presences_of(self, user: str, recipients: list[_Session],
                           unavailable: bool = False) -> None:
        for source in self._sessions_of(user):
            if not source.available or source.presence is None:
                continue
            for recipient in recipients:
                if not recipient.available or recipient.jid is None:
                    continue
                if unavailable:
                    copy = ET.Element(_PRESENCE, {"type": "unavailable"})
                else:
                    copy = ET.Element(_PRESENCE, source.presence.attrib)
                    copy.text = source.presence.text
                    copy.extend(list(source.presence))
                copy.set("from", str(source.jid))
                copy.set("to", str(recipient.jid))
                self._deliver(recipient, copy)

    def _share_presence(self, owner: str, viewer: JID) -> None:
        """`viewer` may now see `owner`'s presence: send the current one."""
        viewer_user = self._local_user(viewer)
        if viewer_user is not None:
            self._send_presences_of(owner, self._sessions_of(viewer_user))

    def _subscription(self, user: str, contact_jid: JID, kind: str, el: ET.Element) -> None:
        """A simplified RFC 6121 §3 between local accounts (no pre-approval, nothing kept for
        offline accounts)."""
        user_jid = self._bare(user)
        roster = self._rosters[user]
        contact_user = self._local_user(contact_jid)
        contact_roster = self._rosters[contact_user] if contact_user is not None else None
        if kind == "subscribe":
            theirs = contact_roster.get(user_jid) if contact_roster is not None else None
            if theirs is not None and theirs.has_from():
                # §3.1.3: already approved: the contact's server answers on its behalf.
                item = roster.setdefault(contact_jid, _Contact())
                item.set_to(True)
                item.ask = False
                self._push(user, contact_jid)
                answer = ET.Element(_PRESENCE, {"from": str(contact_jid), "type": "subscribed"})
                for session in self._recipients(user):
                    answer.set("to", str(session.jid))
                    self._deliver(session, answer)
                self._send_presences_of(contact_user or "", self._sessions_of(user))
                return
            item = roster.setdefault(contact_jid, _Contact())
            if not item.has_to():
                item.ask = True
                self._push(user, contact_jid)
            if contact_user is not None:
                for session in self._recipients(contact_user):
                    self._deliver(session, el)
            return
        if kind == "subscribed":
            # The user approves the contact's request to see the user's presence (§3.1.5).
            theirs = contact_roster.get(user_jid) if contact_roster is not None else None
            if contact_user is None or theirs is None or not theirs.ask:
                return   # no pending request: pre-approval is not supported here
            item = roster.setdefault(contact_jid, _Contact())
            item.set_from(True)
            self._push(user, contact_jid)
            theirs.set_to(True)
            theirs.ask = False
            self._push(contact_user, user_jid)
            for session in self._recipients(contact_user):
                self._deliver(session, el)
            self._send_presences_of(user, self._sessions_of(contact_user))
            return
        # unsubscribe (§3.3): the user stops seeing the contact; unsubscribed (§3.2): the
        # user stops the contact from seeing the user.
        self._cancel_subscription(user, contact_jid, outbound=kind == "unsubscribe", stanza=el)

    def _cancel_subscription(self, user: str, contact_jid: JID, outbound: bool,
                             stanza: ET.Element | None = None) -> None:
        user_jid = self._bare(user)
        item = self._rosters[user].get(contact_jid)
        if item is not None:
            if outbound:
                item.set_to(False)
                item.ask = False
            else:
                item.set_from(False)
            self._push(user, contact_jid)
        contact_user = self._local_user(contact_jid)
        if contact_user is None:
            return
        theirs = self._rosters[contact_user].get(user_jid)
        if theirs is not None:
            if outbound:
                theirs.set_from(False)
            else:
                theirs.set_to(False)
                theirs.ask = False
            self._push(contact_user, user_jid)
        if stanza is None:
            stanza = ET.Element(_PRESENCE, {
                "from": str(user_jid), "type": "unsubscribe" if outbound else "unsubscribed"})
        for session in self._recipients(contact_user):
            self._deliver(session, stanza)
        if outbound:
            # §3.3.3: the user no longer sees the contact: unavailable from each resource.
            self._send_presences_of(contact_user, self._sessions_of(user), unavailable=True)
        else:
            self._send_presences_of(user, self._sessions_of(contact_user), unavailable=True)

    def __repr__(self) -> str:
        state = f"port {self.port}" if self._running else "stopped"
        return f"<FakeServer {self.domain} {state} {len(self._sessions)} sessions>"


def _priority(el: ET.Element) -> int:
    text = el.findtext("{%s}priority" % CLIENT_NS)
    try:
        return max(-128, min(127, int(text))) if text else 0
    except ValueError:
        return 0


# ---------------------------------------------------------------------------------------------
# Test helpers and pytest fixtures

@contextmanager
def running_server(users: Mapping[str, str] | None = None, **kwargs: Any) -> Iterator[FakeServer]:
    """A started [`FakeServer`][simplexmpp.testing.FakeServer] (accounts alice, bob and carol with
    password `"password"` unless `users` is given), stopped at the end of the block."""
    with FakeServer(users=dict(DEFAULT_USERS if users is None else users), **kwargs) as server:
        yield server


class ClientFactory:
    """Makes connected clients for a [`FakeServer`][simplexmpp.testing.FakeServer] and disconnects
    them all in [`close()`][simplexmpp.testing.ClientFactory.close] (the `xmpp_client` fixture is
    one of these)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.clients: list[Client] = []

    def __call__(self, user: str = "alice", **kwargs: Any) -> Client:
        """A connected client for `user`; keywords go to
        [`FakeServer.client()`][simplexmpp.testing.FakeServer.client]."""
        client = self.server.client(user, **kwargs)
        self.clients.append(client)
        client.connect()
        return client

    def close(self) -> None:
        """Disconnect every client made (errors while disconnecting are logged)."""
        while self.clients:
            client = self.clients.pop()
            try:
                client.disconnect(timeout=5)
            except XMPPError as exc:
                log.debug("disconnecting %s after the test: %s", client, exc)


try:
    import pytest
except ImportError:  # pragma: no cover - the fixtures need pytest; the server does not
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True
    __all__ += ["xmpp_server", "xmpp_client"]

if _HAVE_PYTEST:
    @pytest.fixture
    def xmpp_server() -> Iterator[FakeServer]:
        """A started FakeServer on `localhost` with accounts alice, bob and carol (password
        `"password"`), stopped after the test (which fails if the server had errors)."""
        with running_server() as server:
            yield server

    @pytest.fixture
    def xmpp_client(xmpp_server: FakeServer) -> Iterator[ClientFactory]:
        """A factory: `xmpp_client("alice")` returns a connected Client; every client it
        made is disconnected after the test."""
        factory = ClientFactory(xmpp_server)
        try:
            yield factory
        finally:
            factory.close()
