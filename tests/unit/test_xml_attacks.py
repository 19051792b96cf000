"""The classic XML attacks, in the spirit of defusedxml's attack corpus (its xmltestdata/:
billion laughs, quadratic blowup, external entities, external DTD retrieval, entity cycles),
fed to the stream parser wherever a peer could put them.

The documents are written here, not copied: each is checked first against defusedxml itself
(defusedxml, Christian Heimes, PSF licence), so a document that stopped being an attack its
authors recognise would fail the test instead of passing it vacuously."""

from __future__ import annotations

import tracemalloc

import defusedxml
import defusedxml.ElementTree
import pytest

from simplexmpp.errors import StreamError
from simplexmpp.xml import StreamParser

STREAM_OPEN = (b"<stream:stream xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def laughs(levels: int = 9) -> tuple[bytes, bytes]:
    """Billion laughs: each entity ten of the one before (10**levels copies of 'lol')."""
    decls = [b'<!ENTITY lol0 "lol">']
    for n in range(1, levels + 1):
        decls.append(b'<!ENTITY lol%d "%s">' % (n, b"&lol%d;" % (n - 1) * 10))
    return b"\n".join(decls), b"&lol%d;" % levels


def quadratic(size: int = 50_000, refs: int = 2_000) -> tuple[bytes, bytes]:
    """Quadratic blowup: one large entity referred to many times (no nesting to spot)."""
    return b'<!ENTITY big "' + b"B" * size + b'">', b"&big;" * refs


def external(url: bytes) -> tuple[bytes, bytes]:
    """An external entity (a file or URL read into the document)."""
    return b'<!ENTITY ext SYSTEM "' + url + b'">', b"&ext;"


def cycle() -> tuple[bytes, bytes]:
    return b'<!ENTITY a "x &b;">\n<!ENTITY b "&a;">', b"&a;"


def parameter_entity() -> tuple[bytes, bytes]:
    """A parameter entity pulling in an external DTD."""
    return b'<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd">\n%remote;', b"&remote;"


ATTACKS = {
    "billion laughs": laughs(),
    "quadratic blowup": quadratic(),
    "external entity (http)": external(b"http://127.0.0.1:9/secret.xml"),
    "external entity (file)": external(b"file:///etc/passwd"),
    "entity cycle": cycle(),
    "parameter entity, external DTD": parameter_entity(),
}


def document(subset: bytes, body: bytes, root: bytes = b"message") -> bytes:
    return b"<?xml version='1.0'?>\n<!DOCTYPE %s [\n%s\n]>\n<%s>%s</%s>" % (
        root, subset, root, body, root)


EXTERNAL_DTD = (b"<?xml version='1.0'?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 "
                b"Strict//EN\" \"http://127.0.0.1:9/xhtml1-strict.dtd\">\n<html><body/></html>")


def refused(data: bytes, *, one_byte_at_a_time: bool = False) -> StreamError:
    """Feed data to a fresh parser; the StreamError it raised (while memory stayed small)."""
    parser = StreamParser()
    tracemalloc.start()
    try:
        with pytest.raises(StreamError) as info:
            if one_byte_at_a_time:
                for i in range(len(data)):
                    parser.feed(data[i:i + 1])
            else:
                parser.feed(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + (1 << 20), f"{peak} bytes allocated for {len(data)} in"
    assert not info.value.by_peer
    return info.value


@pytest.mark.parametrize("name", list(ATTACKS))
def test_defusedxml_recognises_each_document_as_an_attack(name: str) -> None:
    with pytest.raises(defusedxml.DefusedXmlException):
        defusedxml.ElementTree.fromstring(document(*ATTACKS[name]), forbid_dtd=False)


def test_defusedxml_recognises_the_external_dtd() -> None:
    with pytest.raises(defusedxml.DTDForbidden):
        defusedxml.ElementTree.fromstring(EXTERNAL_DTD, forbid_dtd=True)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_in_the_prolog_is_restricted_xml(name: str) -> None:
    # The DOCTYPE where XML allows it: before the stream header (RFC 6120 §11.1: no DTD).
    subset, _ = ATTACKS[name]
    data = b"<?xml version='1.0'?><!DOCTYPE stream:stream [" + subset + b"]>" + STREAM_OPEN
    assert refused(data).condition == "restricted-xml"
    assert refused(data, one_byte_at_a_time=True).condition == "restricted-xml"


def test_an_external_dtd_in_the_prolog_is_restricted_xml() -> None:
    data = EXTERNAL_DTD.split(b"<html>")[0] + STREAM_OPEN
    assert refused(data).condition == "restricted-xml"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_inside_the_stream_is_refused(name: str) -> None:
    # A whole attack document after the stream header: a DTD there is not well-formed.
    data = STREAM_OPEN + document(*ATTACKS[name]).split(b"\n", 1)[1]
    assert refused(data).condition in ("not-well-formed", "restricted-xml")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_attacks_entity_references_in_a_stanza_are_restricted_xml(name: str) -> None:
    # Without a DTD the references name undeclared entities: only the predefined five pass.
    _, body = ATTACKS[name]
    data = STREAM_OPEN + b"<message><body>" + body + b"</body></message>"
    assert refused(data).condition == "restricted-xml"
