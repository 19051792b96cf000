"""The hardened incremental stream parser and the serializer (RFC 6120 §4, §11)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplexmpp.errors import InvalidStanzaError, StreamError
from simplexmpp.xml import (COMPONENT_NS, STREAM_FOOTER, StreamEnd, StreamHeader, StreamParser,
                            check_text, stream_header, tostring)

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' "
          "version='1.0' xml:lang='en'>").encode()
STANZAS = ("<message to='a@b' type='chat' id='1'><body>h\u00e9llo \u2603 &amp; &lt;x&gt; "
           "&#x1F600;</body><x xmlns='urn:example'><y/></x></message>"
           "<presence><show>away</show></presence>"
           "<iq type='get' id='2'><query xmlns='jabber:iq:roster'/></iq>").encode()


def parse_all(data: bytes, **kwargs: int) -> list[object]:
    return StreamParser(**kwargs).feed(data)


def describe(items: list[object]) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, ET.Element):
            out.append(tostring(item))
        else:
            out.append(repr(item))
    return out


def test_header_stanzas_and_end() -> None:
    items = parse_all(HEADER + STANZAS + STREAM_FOOTER.encode())
    assert isinstance(items[0], StreamHeader)
    assert items[0].id == "s1" and items[0].from_ == "localhost" and items[0].version == "1.0"
    assert items[0].default_ns == "jabber:client"
    tags = [i.tag for i in items[1:4]]  # type: ignore[union-attr]
    assert tags == ["{jabber:client}message", "{jabber:client}presence", "{jabber:client}iq"]
    body = items[1].find("{jabber:client}body")  # type: ignore[union-attr]
    assert body is not None and body.text == "h\u00e9llo \u2603 & <x> \U0001F600"
    assert items[1].find("{urn:example}x/{urn:example}y") is not None  # type: ignore[union-attr]
    assert isinstance(items[4], StreamEnd)


def test_component_namespace_is_reported() -> None:
    header = HEADER.replace(b"jabber:client", COMPONENT_NS.encode())
    items = parse_all(header + b"<message/>")
    assert items[0].default_ns == COMPONENT_NS  # type: ignore[union-attr]
    assert items[1].tag == "{%s}message" % COMPONENT_NS  # type: ignore[union-attr]


def test_one_byte_at_a_time_equals_whole() -> None:
    data = HEADER + STANZAS + STREAM_FOOTER.encode()
    parser = StreamParser()
    items: list[object] = []
    for i in range(len(data)):
        items += parser.feed(data[i:i + 1])
    assert describe(items) == describe(parse_all(data))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(HEADER + STANZAS)), max_size=12))
def test_any_split_equals_whole(cuts: list[int]) -> None:
    data = HEADER + STANZAS
    points = sorted(set(cuts)) + [len(data)]
    parser = StreamParser()
    items: list[object] = []
    start = 0
    for point in points:
        items += parser.feed(data[start:point])
        start = point
    assert describe(items) == describe(parse_all(data))


def test_split_inside_a_multibyte_character() -> None:
    data = HEADER + "<message><body>\u2603</body></message>".encode()
    snowman = data.index("\u2603".encode())
    parser = StreamParser()
    items = parser.feed(data[:snowman + 1]) + parser.feed(data[snowman + 1:snowman + 2]) + \
        parser.feed(data[snowman + 2:])
    assert items[1].findtext("{jabber:client}body") == "\u2603"  # type: ignore[union-attr]


@pytest.mark.parametrize("name, data, condition", [
    ("doctype", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER[21:],
     "restricted-xml"),
    ("billion laughs", b"<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 "
                       b"'&lol;&lol;&lol;&lol;'>]><stream:stream>", "restricted-xml"),
    ("external entity", b"<!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>",
     "restricted-xml"),
    ("comment in prolog", b"<!-- hi -->" + HEADER, "restricted-xml"),
    ("pi in prolog", b"<?evil stuff?>" + HEADER[21:], "restricted-xml"),
    ("undefined entity", HEADER + b"<message>&xxe;</message>", "restricted-xml"),
    ("comment in stream", HEADER + b"<message><!-- c --></message>", "restricted-xml"),
    ("pi in stream", HEADER + b"<message><?php x?></message>", "restricted-xml"),
    ("invalid utf-8", HEADER + b"<message><body>\xff\xfe</body></message>", "not-well-formed"),
    ("truncated utf-8", HEADER + b"<message><body>\xe2\x98</body></message>",
     "not-well-formed"),
    ("mismatched tags", HEADER + b"<message></presence>", "not-well-formed"),
    ("utf-16 declaration", b"<?xml version='1.0' encoding='UTF-16'?><stream:stream>",
     "unsupported-encoding"),
    ("wrong stream namespace", b"<stream:stream xmlns:stream='urn:wrong' "
                               b"xmlns='jabber:client'>", "invalid-namespace"),
])
def test_hostile_xml_is_refused(name: str, data: bytes, condition: str) -> None:
    with pytest.raises(StreamError) as info:
        parse_all(data)
    assert info.value.condition == condition, name
    assert not info.value.by_peer


def test_hostile_xml_is_refused_even_byte_by_byte() -> None:
    data = b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER[21:]
    parser = StreamParser()
    with pytest.raises(StreamError) as info:
        for i in range(len(data)):
            parser.feed(data[i:i + 1])
    assert info.value.condition == "restricted-xml"


def test_oversized_stanza_is_a_policy_violation_and_memory_stays_bounded() -> None:
    parser = StreamParser(max_stanza_size=10_000)
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(StreamError) as info:
        for _ in range(1000):  # 10 MB offered, refused after about 10 kB
            parser.feed(b"x" * 10_000)
    assert info.value.condition == "policy-violation"


def test_stanzas_under_the_limit_pass_even_when_the_stream_is_long() -> None:
    parser = StreamParser(max_stanza_size=2000)
    parser.feed(HEADER)
    stanza = b"<message><body>" + b"y" * 1000 + b"</body></message>"
    count = sum(len(parser.feed(stanza)) for _ in range(200))
    assert count == 200


def test_deep_nesting_is_a_policy_violation() -> None:
    with pytest.raises(StreamError) as info:
        parse_all(HEADER + b"<a>" * 100, max_depth=20)
    assert info.value.condition == "policy-violation"


def test_deep_nesting_fed_byte_by_byte_is_refused_before_it_closes() -> None:
    parser = StreamParser(max_depth=20)
    parser.feed(HEADER)
    with pytest.raises(StreamError) as info:
        for _ in range(100):
            parser.feed(b"<a>")
    assert info.value.condition == "policy-violation"


def test_a_closed_stanza_too_deep_is_refused_and_a_wide_one_is_not() -> None:
    deep = HEADER + b"<message>" + b"<a>" * 30 + b"</a>" * 30 + b"</message>"
    with pytest.raises(StreamError) as info:
        parse_all(deep, max_depth=20)
    assert info.value.condition == "policy-violation"
    wide = HEADER + b"<iq type='result' id='r'><query xmlns='jabber:iq:roster'>" + \
        b"<item jid='a@b'><group>g</group></item>" * 500 + b"</query></iq>"
    items = parse_all(wide, max_depth=20)
    assert len(items[1]) == 1 and len(items[1][0]) == 500  # type: ignore[arg-type]


def test_parser_stays_failed() -> None:
    parser = StreamParser()
    with pytest.raises(StreamError):
        parser.feed(HEADER + b"<a>&bad;</a>")
    with pytest.raises(StreamError):
        parser.feed(b"<message/>")


def test_in_stanza_tracks_top_level_elements() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    assert not parser.in_stanza
    parser.feed(b"<message><bo")
    assert parser.in_stanza
    parser.feed(b"dy/></message>")
    assert not parser.in_stanza


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_stream_error(garbage: bytes) -> None:
    parser = StreamParser(max_stanza_size=1000)
    try:
        parser.feed(HEADER)
        parser.feed(garbage)
    except StreamError:
        pass


# -- serializer --------------------------------------------------------------------------------

def test_serializer_has_no_namespace_noise() -> None:
    msg = ET.Element("{jabber:client}message", to="b@c")
    ET.SubElement(msg, "{jabber:client}body").text = "a < b & c > \"d\""
    x = ET.SubElement(msg, "{urn:example}x")
    ET.SubElement(x, "{urn:example}y", {"{http://www.w3.org/XML/1998/namespace}lang": "en"})
    assert tostring(msg) == ('<message to="b@c"><body>a &lt; b &amp; c &gt; &quot;d&quot;</body>'
                             '<x xmlns="urn:example"><y xml:lang="en"/></x></message>')
    assert "ns0" not in tostring(msg)
    assert tostring(msg, default_ns=None).startswith('<message xmlns="jabber:client"')


def test_attribute_values_are_escaped_and_round_trip() -> None:
    msg = ET.Element("{jabber:client}message", id="a\"b<c>&d\re")
    parser = StreamParser()
    parser.feed(HEADER)
    back = parser.feed(tostring(msg).encode())[0]
    assert back.get("id") == "a\"b<c>&d\re"  # type: ignore[union-attr]


def test_namespaced_attributes_get_a_prefix() -> None:
    el = ET.Element("{jabber:client}message", {"{urn:a}flag": "1"})
    text = tostring(el)
    assert 'xmlns:ns0="urn:a"' in text and 'ns0:flag="1"' in text


def test_characters_xml_cannot_carry_are_refused() -> None:
    with pytest.raises(InvalidStanzaError):
        check_text("bell \x07")
    msg = ET.Element("{jabber:client}message")
    ET.SubElement(msg, "{jabber:client}body").text = "nul \x00"
    with pytest.raises(InvalidStanzaError):
        tostring(msg)


def test_stream_header_is_what_a_server_expects() -> None:
    text = stream_header("example.com", from_="a@example.com")
    assert text.startswith("<?xml version='1.0'?><stream:stream to=\"example.com\"")
    items = StreamParser().feed(text.encode())
    assert isinstance(items[0], StreamHeader) and items[0].default_ns == "jabber:client"
