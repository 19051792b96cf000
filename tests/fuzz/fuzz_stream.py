"""Fuzzing the sans-IO core: the parser and the negotiation machines (the client's and the
server's) must only ever raise the library's own errors, whatever bytes arrive, split however.

Run under pytest (a bounded number of examples, part of the suite), or standalone for longer:
    python -m tests.fuzz.fuzz_stream --seconds 60
"""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simplexmpp.errors import XMPPError
from simplexmpp.jid import JID
from simplexmpp.sasl import PasswordAccounts
from simplexmpp.serverstream import BindRequested, ServerStream
from simplexmpp.stream import ClientStream
from simplexmpp.xml import StreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
FRAGMENTS = [
    b"<message>", b"</message>", b"<body>", b"</body>", b"&amp;", b"&lt;", b"&#x1F4AC;",
    b"&#0;", b"&bogus;", b"<!--", b"-->", b"<?pi?>", b"<![CDATA[", b"]]>", b"<!DOCTYPE x>",
    b"<iq type='result' id='x'>", b"</iq>", b"<stream:features>", b"</stream:features>",
    b"<stream:error>", b"<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
    b"</stream:error>", b"</stream:stream>", b"<a xmlns='urn:xmpp:sm:3' h='9'/>",
    b"<r xmlns='urn:xmpp:sm:3'/>", b"\xc3", b"\xa9", b"\xff", b"\x00", b" ", b"'", b'"',
    b"<x y='1' y='2'/>", b"<p:q xmlns:p='urn:p'/>", b"<unclosed", b">",
]
CLIENT_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='localhost' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
SASL = b"urn:ietf:params:xml:ns:xmpp-sasl"
CLIENT_FRAGMENTS = FRAGMENTS + [
    CLIENT_HEADER, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    b"<auth xmlns='%s' mechanism='PLAIN'>AGFsaWNlAHB3</auth>" % SASL,
    b"<auth xmlns='%s' mechanism='SCRAM-SHA-1'>biwsbj1hbGljZSxyPWFiYw==</auth>" % SASL,
    b"<auth xmlns='%s' mechanism='PLAIN'/>" % SASL, b"<response xmlns='%s'>" % SASL,
    b"</response>", b"<abort xmlns='%s'/>" % SASL, b"Yz1iaXdzLHI9YWJj", b",p=AAAA",
    b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>",
    b"<resource>r</resource>", b"</bind></iq>", b"<presence/>",
]
client_documents = st.lists(st.one_of(st.sampled_from(CLIENT_FRAGMENTS), st.binary(max_size=40)),
                            max_size=40).map(lambda parts: CLIENT_HEADER + b"".join(parts))
documents = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)),
                     max_size=40).map(lambda parts: HEADER + b"".join(parts))
splits = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20)


def feed_parser(document: bytes, cuts: list[int]) -> None:
    parser = StreamParser(max_stanza_size=4096, max_depth=16)
    pos = 0
    try:
        for size in cuts * (len(document) // max(1, sum(cuts)) + 1):
            if pos >= len(document):
                break
            parser.feed(document[pos:pos + size])
            pos += size
    except XMPPError:
        pass


def feed_stream(document: bytes, cuts: list[int]) -> None:
    stream = ClientStream(JID("alice@localhost"), "pw", tls="direct", mechanisms=["PLAIN"])
    stream.start()
    pos = 0
    try:
        for size in cuts * (len(document) // max(1, sum(cuts)) + 1):
            if pos >= len(document):
                break
            stream.receive_data(document[pos:pos + size])
            stream.data_to_send()
            pos += size
    except XMPPError:
        pass


def feed_server(document: bytes, cuts: list[int]) -> None:
    stream = ServerStream("localhost", PasswordAccounts({"alice": "pw"}))
    pos = 0
    try:
        for size in cuts * (len(document) // max(1, sum(cuts)) + 1):
            if pos >= len(document):
                break
            for event in stream.receive_data(document[pos:pos + size]):
                if isinstance(event, BindRequested):
                    stream.bind(JID("alice@localhost/r"))
            stream.data_to_send()
            pos += size
    except XMPPError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents, splits)
def test_parser_raises_only_library_errors(document: bytes, cuts: list[int]) -> None:
    feed_parser(document, cuts)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents, splits)
def test_stream_machine_raises_only_library_errors(document: bytes, cuts: list[int]) -> None:
    feed_stream(document, cuts)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(client_documents, splits)
def test_server_stream_raises_only_library_errors(document: bytes, cuts: list[int]) -> None:
    feed_server(document, cuts)


def _feed_both(document: bytes, cuts: list[int]) -> None:
    feed_parser(document, cuts)
    feed_stream(document, cuts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline:
        settings(max_examples=500, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))(
            given(documents, splits)(_feed_both))()
        settings(max_examples=500, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))(
            given(client_documents, splits)(feed_server))()
        rounds += 1
    print(f"fuzzed {rounds * 500} documents for {args.seconds:g} s: only library errors")


if __name__ == "__main__":
    main()
