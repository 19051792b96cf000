"""The server's ceiling for the end-to-end benchmark: a raw socket (STARTTLS, SASL PLAIN, bind
by hand) that writes pre-serialised stanzas, and a raw reader that only counts them. No XML
library on either side, so what limits the rate is Prosody.

With ``"matched": true`` (issue 18) the writer sends what simplexmpp sends: every message with
an XEP-0359 origin-id equal to its id (16 characters, as ``new_id()``), XEP-0198 enabled, an
``<r/>`` after every ``ack_every`` (32) unacknowledged stanzas but only one unanswered at a
time (``Client._request_ack``), and the reader enables XEP-0198 too and answers each ``<r/>``
with its ``<a h=…/>`` ``ack_delay`` (50 ms) later, as a simplexmpp receiver with nothing else
to send does. That is the ceiling the e2e target is judged against.

    python bench/workers_raw.py {e2e-send,e2e-recv,ping} 'JSON-ARGS'
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import cpu_seconds, now, ready  # noqa: E402


class RawSession:
    """Just enough XMPP to log in: every reply is awaited by a byte pattern."""

    def __init__(self, a: dict[str, Any], jid: str) -> None:
        local, _, rest = jid.partition("@")
        self.domain, _, self.resource = rest.partition("/")
        sock = socket.create_connection((a["host"], a["port"]), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = sock
        self.buf = b""
        self.header()
        self.expect(rb"</stream:features>")
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.expect(rb"<proceed[^>]*/>")
        context = ssl.create_default_context(cafile=a["ca"])
        self.sock = context.wrap_socket(sock, server_hostname=self.domain)
        self.header()
        self.expect(rb"</stream:features>")
        token = base64.b64encode(f"\0{local}\0{a['password']}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}"
                  f"</auth>".encode())
        self.expect(rb"<success[^>]*(/>|</success>)")
        self.header()
        self.expect(rb"</stream:features>")
        self.send(f"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{self.resource}</resource></bind></iq>".encode())
        self.expect(rb"</iq>")
        self.sm = bool(a.get("matched"))
        if self.sm:  # XEP-0198 §3
            self.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
            self.expect(rb"<enabled[^>]*>")

    def header(self) -> None:
        self.buf = b""
        self.send(f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
                  f"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                  .encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, pattern: bytes) -> None:
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.buf)
            if match:
                self.buf = self.buf[match.end():]
                return
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(f"server closed the connection waiting for {pattern!r}: "
                                 f"{self.buf[-300:]!r}")
            if b"<failure" in data or b"<stream:error" in data:
                raise SystemExit(f"server refused: {data[:300]!r}")
            self.buf += data


def _ids(count: int) -> list[str]:
    """16-character ids like simplexmpp's new_id() (96 random bits)."""
    raw = base64.urlsafe_b64encode(os.urandom(12 * count)).decode()
    return [raw[i:i + 16] for i in range(0, 16 * count, 16)]


def _message(to: str, i: int, stanza_id: str, origin: bool) -> str:
    if not origin:
        return (f"<message to='{to}' type='chat' id='r{i}'><body>{benchlib.body(i)}</body>"
                f"</message>")
    # Byte for byte the form of simplexmpp's send_message().
    return (f'<message to="{to}" type="chat" id="{stanza_id}"><body>{benchlib.body(i)}</body>'
            f'<origin-id xmlns="urn:xmpp:sid:0" id="{stanza_id}"/></message>')


_ACK = re.compile(rb"<a [^>]*h=.(\d+)")


def bench_e2e_send(a: dict[str, Any]) -> dict[str, Any]:
    session = RawSession(a, a["jid"])
    to, count = a["to"], a["count"]
    matched = session.sm
    ids = _ids(count)
    stanzas = [_message(to, i, ids[i], matched).encode() for i in range(count)]
    cpu0 = cpu_seconds()
    t_first = now()
    if not matched:
        session.send(b"".join(stanzas))
    else:
        every = a.get("ack_every", 32)
        outstanding = False
        for start in range(0, count, every):
            block = b"".join(stanzas[start:start + every])
            if not outstanding and start + every <= count:  # >= ack_every unacknowledged
                block += b"<r xmlns='urn:xmpp:sm:3'/>"
                outstanding = True
            session.send(block)
            if outstanding and select.select([session.sock], [], [], 0)[0]:
                data = session.sock.recv(65536)
                session.buf += data
                if _ACK.search(session.buf):  # the answer: the next <r/> may go
                    outstanding = False
                    session.buf = b""
    t_queued = now()
    if matched:  # the flush: everything acknowledged (XEP-0198 §4), as disconnect() waits
        session.send(b"<r xmlns='urn:xmpp:sm:3'/>")
        while True:
            acks = [int(h) for h in _ACK.findall(session.buf)]
            if acks and acks[-1] >= count:
                break
            session.buf = session.buf[-64:]
            data = session.sock.recv(65536)
            if not data:
                raise SystemExit("server closed the connection before acknowledging")
            session.buf += data
            if b"<r " in data:
                session.send(b"<a xmlns='urn:xmpp:sm:3' h='0'/>")
    else:
        # A ping answered after the messages proves the server handled them all.
        session.send(b"<iq type='get' id='flush' to='localhost'>"
                     b"<ping xmlns='urn:xmpp:ping'/></iq>")
        session.expect(rb"id=.flush.")
    t_flushed = now()
    session.send(b"</stream:stream>")
    session.sock.close()
    return {"t_first": t_first, "t_queued": t_queued, "t_flushed": t_flushed,
            "cpu": cpu_seconds() - cpu0}


def bench_e2e_recv(a: dict[str, Any]) -> dict[str, Any]:
    session = RawSession(a, a["jid"])
    count = a["count"]
    marker = b"</message>"
    received = session.buf.count(marker)
    tail = session.buf[-(len(marker) - 1):]
    t_first = now() if received else None
    t_last = None
    idle = a.get("idle_timeout", 60)
    session.sock.settimeout(idle)
    matched = session.sm
    request = b"<r xmlns='urn:xmpp:sm:3'/>"
    r_tail = b""
    ack_due: float | None = None  # when the pending <r/> gets its <a/> (ack_delay after it)
    ack_delay = a.get("ack_delay", 0.05)
    cpu0 = cpu_seconds()
    ready()
    try:
        while received < count:
            if matched:
                if ack_due is not None and now() >= ack_due:
                    # Stanzas received: only messages come to this session (no presence).
                    session.send(f"<a xmlns='urn:xmpp:sm:3' h='{received}'/>".encode())
                    ack_due = None
                session.sock.settimeout(idle if ack_due is None
                                        else max(0.0005, ack_due - now()))
            try:
                data = session.sock.recv(262144)
            except socket.timeout:
                if ack_due is not None:
                    continue
                raise
            if not data:
                break
            if t_first is None:
                t_first = now()
            joined = tail + data
            received += joined.count(marker)
            tail = joined[-(len(marker) - 1):]
            if matched:
                joined_r = r_tail + data
                if request in joined_r and ack_due is None:
                    ack_due = now() + ack_delay
                r_tail = joined_r[-(len(request) - 1):]
    except socket.timeout:
        pass
    if received >= count:
        t_last = now()
    cpu = cpu_seconds() - cpu0
    session.send(b"</stream:stream>")
    session.sock.close()
    return {"received": received, "t_first": t_first, "t_last": t_last, "cpu": cpu}


def bench_ping(a: dict[str, Any]) -> dict[str, Any]:
    """Sequential XEP-0199 pings written and awaited by hand on one thread: the floor that
    the server, the kernel and the machine's scheduling put under any library's round trip."""
    session = RawSession(a, a["jid"])
    rtts = []
    for i in range(a.get("warmup", 20) + a["count"]):
        pattern = f"id=.p{i}.".encode()
        start = now()
        session.send(f"<iq type='get' id='p{i}' to='{session.domain}'>"
                     f"<ping xmlns='urn:xmpp:ping'/></iq>".encode())
        session.expect(pattern)
        if i >= a.get("warmup", 20):
            rtts.append(now() - start)
    session.send(b"</stream:stream>")
    session.sock.close()
    return benchlib.latency_summary(rtts)


if __name__ == "__main__":
    benchlib.main({"e2e-send": bench_e2e_send, "e2e-recv": bench_e2e_recv, "ping": bench_ping})
