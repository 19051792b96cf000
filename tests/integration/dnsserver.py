"""A tiny DNS server on loopback for the SRV tests: answers SRV questions from a table, built
on dnspython's message module (it parses the query and builds the reply; the sockets and the
table are ours). ``silent=True`` makes one that reads the queries and never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset


class DNSServer:
    """``records`` maps an SRV name ("_xmpp-client._tcp.localhost") to
    (priority, weight, port, target) tuples; other names get NXDOMAIN."""

    def __init__(self, records: dict[str, Iterable[tuple[int, int, int, str]]] | None = None,
                 *, silent: bool = False) -> None:
        self.records = {name.rstrip(".").lower() + ".": list(rrs)
                        for name, rrs in (records or {}).items()}
        self.silent = silent
        self._closing = False
        self.questions: list[str] = []   # every name asked, in order (repeats included)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    def resolver(self) -> dns.resolver.Resolver:
        """A resolver asking only this server (no /etc/resolv.conf, no search domains)."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return  # closed
            if self._closing:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - not DNS: ignore it as a server would
                continue
            question = query.question[0]
            name = question.name.to_text().lower()
            self.questions.append(name)
            if self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            found = self.records.get(name)
            if found is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.SRV:
                rrset = dns.rrset.from_text_list(
                    question.name, 60, dns.rdataclass.IN, dns.rdatatype.SRV,
                    [f"{p} {w} {port} {target}" for p, w, port, target in found])
                response.answer.append(rrset)
            try:
                self._sock.sendto(response.to_wire(), peer)
            except OSError:
                return

    def close(self) -> None:
        self._closing = True
        # A blocked recvfrom() does not notice close(): wake it with a datagram first.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"", ("127.0.0.1", self.port))
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> DNSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
