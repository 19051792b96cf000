"""What a hostile peer can make the parser hold, and what the serializer refuses to write
(issue 14 items 1, 2 and 7): bytes in, items or a typed error out."""

from __future__ import annotations

import gc
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplexmpp.errors import InvalidStanzaError, StreamError
from simplexmpp.xml import STREAM_FOOTER, StreamEnd, StreamParser, tostring

from .test_stream import ready_stream

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' from='localhost' id='s1' "
          "version='1.0' xml:lang='en'>").encode()
MiB = 1 << 20


def invented_names(first: int, count: int = 40) -> bytes:
    """A message whose payload uses ``count`` element, attribute and namespace names nobody
    used before (numbered from ``first``)."""
    payload = "".join(f"<e{n} xmlns='urn:invented:{n}' a{n}='v'/>"
                      for n in range(first, first + count))
    return f"<message from='eve@localhost/x' type='chat'>{payload}</message>".encode()


def held_after(work, peak: bool = False) -> int:  # type: ignore[no-untyped-def]
    """Bytes still allocated once ``work()`` has run, while what it returns is kept (or, with
    ``peak``, the most allocated at any time during it). tracemalloc sees expat's and
    ElementTree's allocations too."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = work()
        gc.collect()
        current, highest = tracemalloc.get_traced_memory()
        del keep
        return (highest if peak else current) - before
    finally:
        tracemalloc.stop()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


# -- 14.1: names a peer invents ------------------------------------------------------------

def test_invented_names_do_not_grow_the_parser_without_bound() -> None:
    # 2 MiB of stanzas, every name new: the old parser kept them all (about 11x the input).
    def work() -> StreamParser:
        parser = StreamParser()
        parser.feed(HEADER)
        fed = stanzas = 0
        while fed < 2 * MiB:
            data = invented_names(stanzas * 40)
            items = parser.feed(data)
            assert len(items) == 1 and len(items[0]) == 40  # type: ignore[arg-type]
            fed += len(data)
            stanzas += 1
        return parser

    held = held_after(work)
    # recycle_bytes (256 KiB) of names at ~11x, plus the parser itself: far below 22 MiB.
    assert held < 6 * MiB, f"{held / MiB:.1f} MiB held after 2 MiB of invented names"


def test_parser_is_replaced_and_the_stream_goes_on_as_before() -> None:
    # Chunks of an odd size, so reads almost never end at a stanza boundary: the parser
    # must find one itself. The stream's namespace context (default namespace, the db:
    # prefix declared on the header) holds in the new parser, and so does the closing tag.
    stanza = (b"<message to='a@b' type='chat'><body>caf\xc3\xa9 &amp; &lt;x&gt;</body>"
              b"<db:result to='x'/><x xmlns='urn:x' xml:lang='de'><y/></x></message>")
    data = HEADER + b"".join(stanza + b" \n" for _ in range(3000)) + STREAM_FOOTER.encode()
    whole = StreamParser().feed(data)
    parser = StreamParser(recycle_bytes=20_000)
    items: list[object] = []
    for piece in chunked(data, 4093):
        items += parser.feed(piece)
    assert parser.replacements >= len(data) // 20_000 - 1
    assert isinstance(items[-1], StreamEnd) and len(items) == len(whole) == 3002
    assert [tostring(i) for i in items[1:-1]] == [tostring(i) for i in whole[1:-1]]  # type: ignore[arg-type]
    assert items[1].find("{jabber:server:dialback}result") is not None  # type: ignore[union-attr]


def test_replacement_at_a_boundary_found_byte_by_byte() -> None:
    parser = StreamParser(recycle_bytes=100)
    parser.feed(HEADER)
    data = invented_names(0, 5) * 4
    items: list[object] = []
    for i in range(len(data)):
        items += parser.feed(data[i:i + 1])
    assert len(items) == 4 and parser.replacements >= 3
    assert [len(i) for i in items] == [5, 5, 5, 5]  # type: ignore[arg-type]


def test_client_stream_counts_parser_replacements() -> None:
    t = ready_stream()
    assert t.stream.parser_replacements == 0
    received = t.stream.elements_received
    for n in range(200):
        t.stream.receive_data(invented_names(n * 40))
    assert t.stream.parser_replacements >= 1
    assert t.stream.elements_received == received + 200


# -- 14.2: every byte counts ---------------------------------------------------------------

@pytest.mark.parametrize("opening, filler", [
    (b"<message to='", b"x"),        # an attribute value that never closes
    (b"<message", b"x"),             # a tag name that never ends
    (b"<message a='1'", b" "),       # attributes that never end (whitespace)
])
def test_a_start_tag_that_never_closes_hits_the_stanza_limit(opening: bytes,
                                                             filler: bytes) -> None:
    parser = StreamParser()  # max_stanza_size 1 MiB
    parser.feed(HEADER + b"<presence/>")
    fed = 0
    with pytest.raises(StreamError) as info:
        parser.feed(opening)
        while fed < 4 * MiB:  # the old parser took all of it, without an error
            parser.feed(filler * 65536)
            fed += 65536
    assert info.value.condition == "policy-violation"
    assert fed <= MiB + 65536


def test_an_unclosed_stream_header_hits_the_limit() -> None:
    parser = StreamParser(max_stanza_size=100_000)
    with pytest.raises(StreamError) as info:
        parser.feed(b"<stream:stream xmlns='jabber:client' a='")
        for _ in range(100):
            parser.feed(b"y" * 10_000)
    assert info.value.condition == "policy-violation"


def test_text_between_stanzas_counts_toward_the_limit() -> None:
    parser = StreamParser(max_stanza_size=100_000)
    parser.feed(HEADER + b"<presence/>")
    with pytest.raises(StreamError) as info:
        for _ in range(100):
            parser.feed(b"junk " * 2000)
    assert info.value.condition == "policy-violation"


def test_an_open_start_tag_is_part_of_a_stanza() -> None:
    # The slow-drip guard watches in_stanza: it must see a start tag that has begun.
    parser = StreamParser()
    parser.feed(HEADER)
    assert not parser.in_stanza
    parser.feed(b"<message to='a")
    assert parser.in_stanza
    parser.feed(b"@b'/>")
    assert not parser.in_stanza


def test_whitespace_between_stanzas_is_not_held() -> None:
    # RFC 6120 §11.7 whitespace keepalives are fine however many; they must not pile up.
    def work() -> list[object]:
        parser = StreamParser()
        parser.feed(HEADER)
        assert len(parser.feed(b"<presence/>" + b" " * 4096)) == 1
        for _ in range(2048):  # 8 MiB: the old parser held all of it
            assert parser.feed(b"\n \t " * 1024) == []
        assert not parser.in_stanza
        items = parser.feed(b"<message><body>still here</body></message>\r\n")
        assert len(items) == 1 and items[0][0].text == "still here"  # type: ignore[index]
        return items

    held = held_after(work, peak=True)
    assert held < MiB // 2, f"{held / MiB:.1f} MiB held while 8 MiB of whitespace came"


def test_whitespace_inside_a_split_attribute_value_is_kept() -> None:
    # Dropping whitespace between stanzas must never drop it inside one.
    parser = StreamParser()
    parser.feed(HEADER)
    items = parser.feed(b"<message id='1'/><message id='a")
    items += parser.feed(b"   b'/>")
    assert [i.get("id") for i in items] == ["1", "a   b"]  # type: ignore[union-attr]
    items = parser.feed(b"<message><body>x</body></message>  <message id='")
    items += parser.feed(b"  '/>")
    assert [i.get("id") for i in items] == [None, "  "]  # type: ignore[union-attr]


# -- 14.7: names the serializer writes ---------------------------------------------------

@pytest.mark.parametrize("tag", [
    "{jabber:client}message><iq type='set'",
    "message><iq type='set'",
    "{jabber:client}",
    "{jabber:client}1st",
    "{jabber:client}a b",
    "{jabber:client}pre:fix",
    "{urn:x",
    "",
    "{http://www.w3.org/XML/1998/namespace}lang",
])
def test_a_bad_element_name_is_refused(tag: str) -> None:
    msg = ET.Element("{jabber:client}message")
    ET.SubElement(msg, tag)
    with pytest.raises(InvalidStanzaError):
        tostring(msg)


@pytest.mark.parametrize("key", [
    "to='x' evil", "a>b", "1a", "", "xmlns", "xmlns:p", "p:q", "{urn:x}a b", "{urn:x}",
    "{http://www.w3.org/2000/xmlns/}p",
])
def test_a_bad_attribute_name_is_refused(key: str) -> None:
    with pytest.raises(InvalidStanzaError):
        tostring(ET.Element("{jabber:client}message", {key: "v"}))


def test_good_names_pass_and_round_trip() -> None:
    msg = ET.Element("{jabber:client}message", {"to": "a@b", "xml:lang": "en",
                                                "{urn:x}flag": "1", "data-é.1": "2"})
    ET.SubElement(msg, "{urn:ünïcode}ελληνικά_1-2.3", {"_x": "y"})
    parser = StreamParser()
    parser.feed(HEADER)
    back = parser.feed(tostring(msg).encode())[0]
    assert back.get("{urn:x}flag") == "1" and back.get("data-é.1") == "2"  # type: ignore[union-attr]
    assert back[0].tag == "{urn:ünïcode}ελληνικά_1-2.3"  # type: ignore[index]


def test_a_bad_name_is_refused_before_anything_is_queued() -> None:
    t = ready_stream()
    bad = ET.Element("{jabber:client}message", to="bob@localhost")
    ET.SubElement(bad, "body><iq type='set'")
    unacked = len(t.stream.unacked)
    with pytest.raises(InvalidStanzaError):
        t.stream.send(bad)
    assert t.stream.data_to_send() == b"" and len(t.stream.unacked) == unacked


TRICKY = (b"<message id='a>b' to=\"c'>d\"><body>x &gt; y > z</body></message>  \n"
          b"<presence/>\t<iq type='get' id='q  >  '><db:result xmlns:p='urn:p' p:a='>'/>"
          b"</iq>\r\n<message id='   '><x xmlns='urn:x'><![CDATA[ <a> ]]></x></message>")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(HEADER + TRICKY * 3)), max_size=20),
       st.integers(min_value=0, max_value=400))
def test_any_split_with_replacements_parses_like_the_whole(cuts: list[int],
                                                           recycle: int) -> None:
    # '>' in attribute values and text, whitespace inside values and between stanzas,
    # CDATA: replacing the parser and dropping whitespace must change nothing.
    data = HEADER + TRICKY * 3 + STREAM_FOOTER.encode()
    whole = StreamParser().feed(data)
    parser = StreamParser(recycle_bytes=recycle)
    items: list[object] = []
    start = 0
    for point in sorted(set(cuts)) + [len(data)]:
        items += parser.feed(data[start:point])
        start = point
    assert len(items) == len(whole) == 14
    assert [tostring(i) for i in items[1:-1]] == [tostring(i) for i in whole[1:-1]]  # type: ignore[arg-type]
    assert isinstance(items[-1], StreamEnd)


def test_text_between_stanzas_is_not_a_stanza_begun() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    parser.feed(b"just text")
    assert not parser.in_stanza
    parser.feed(b" <mess")
    assert parser.in_stanza
    parser.feed(b"age/>more text")
    assert not parser.in_stanza
