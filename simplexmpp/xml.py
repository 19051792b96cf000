"""Incremental, hardened XML stream parser and a namespace-clean serializer (sans-IO).

[`StreamParser`][simplexmpp.xml.StreamParser] takes bytes as they come off the wire, in chunks split
anywhere (even inside a UTF-8 character), and returns complete top-level elements of the XMPP stream
as `xml.etree.ElementTree.Element` objects with Clark-notation tags (`{jabber:client}message`).

It is built on the C-accelerated expat `XMLParser` + `TreeBuilder` of the standard library,
so elements are built in C. RFC 6120 §11.1 restrictions are enforced on top:

* a DTD can only stand in the prolog, before the stream header; the prolog is therefore checked
  byte for byte before expat sees it, and any `<!` (DOCTYPE, comment) or processing instruction
  there is refused with `restricted-xml`. Without a DTD no entity can be declared, so the
  billion-laughs and external-entity attacks have nothing to work with;
* a reference to any entity other than the five predefined ones is refused (`restricted-xml`);
* comments and processing instructions inside the stream are refused (`restricted-xml`);
* an encoding other than UTF-8 is refused (`unsupported-encoding`, RFC 6120 §11.6);
* invalid UTF-8 and any other well-formedness error give `not-well-formed`;
* a stanza larger than `max_stanza_size` bytes or nested deeper than `max_depth` gives
  `policy-violation`. Every byte counts, from the first byte of a stanza (an unclosed start
  tag too) and between stanzas, except whitespace between stanzas (RFC 6120 §11.7 keepalives),
  which is dropped before expat sees it. Bytes are fed to expat in slices of bounded size, so
  memory stays proportional to the limit, not to what the peer sends;
* expat and ElementTree keep every element, attribute and namespace name they have met, for
  the life of the parser. So that a peer inventing names cannot grow that table without end,
  the expat parser is replaced at a stanza boundary once `recycle_bytes` bytes have passed
  through it; the new one is given the stream header's namespace declarations again.

Every error is raised as [`simplexmpp.errors.StreamError`][simplexmpp.errors.StreamError] with the
condition to send back.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Union, cast

from .errors import InvalidStanzaError, StreamError

__all__ = [
    "STREAM_NS", "CLIENT_NS", "COMPONENT_NS", "XML_NS", "StreamParser", "StreamHeader",
    "StreamEnd", "StreamItem", "tostring", "stream_header", "STREAM_FOOTER", "check_text",
    "escape",
]

STREAM_NS = "http://etherx.jabber.org/streams"
CLIENT_NS = "jabber:client"
COMPONENT_NS = "jabber:component:accept"
XML_NS = "http://www.w3.org/XML/1998/namespace"
_STREAM_TAG = "{%s}stream" % STREAM_NS

# expat error code for "undefined entity": the only entities XMPP allows are the predefined five.
_EXPAT_UNDEFINED_ENTITY = 11


@dataclass(frozen=True)
class StreamHeader:
    """The peer's `<stream:stream>` open tag: its attributes and default namespace."""

    attrs: dict[str, str] = field(default_factory=dict)
    default_ns: str | None = None

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    @property
    def from_(self) -> str | None:
        return self.attrs.get("from")

    @property
    def version(self) -> str | None:
        return self.attrs.get("version")


@dataclass(frozen=True)
class StreamEnd:
    """The peer closed its stream with `</stream:stream>`."""


StreamItem = Union[StreamHeader, ET.Element, StreamEnd]

_XML_DECL = re.compile(rb"\s*<\?xml\s[^?>]*\?>", re.ASCII)
_SPACE = b" \t\r\n"   # XML 1.0 §2.3 S
# A complete tag from its '<': its '>' is outside the quoted attribute values, which may hold
# '>' but never '<' (XML 1.0 §3.1).
_TAG = re.compile(rb"""<[^'"<>]*(?:(?:'[^']*'|"[^"]*")[^'"<>]*)*>""")
_SPACE_TO_END = re.compile(rb"[ \t\r\n]*\Z")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PROLOG_LIMIT = 4096


class _Refused(Exception):
    """A comment or processing instruction in the stream (raised inside expat's feed)."""


def _refuse_comment(text: str | None) -> ET.Element:
    raise _Refused


def _refuse_pi(target: str, text: str | None = None) -> ET.Element:
    raise _Refused


def _check_depth(elem: ET.Element, limit: int) -> None:
    """policy-violation when `elem` nests deeper than `limit` (iterative: no recursion)."""
    stack = [(elem, 2)]  # the stream is level 1, a stanza level 2
    while stack:
        node, level = stack.pop()
        if level > limit:
            raise StreamError("policy-violation", f"elements nested deeper than {limit}")
        stack.extend((child, level + 1) for child in node)


class StreamParser:
    """Sans-IO parser of one XMPP stream (one instance per stream; make a new one on restart).

    ```python
    p = StreamParser()
    items = p.feed(b"<stream:stream xmlns='jabber:client' "
                   b"xmlns:stream='http://etherx.jabber.org/streams'><message/>")
    [type(i).__name__ for i in items]  # -> ['StreamHeader', 'Element']
    ```
    """

    def __init__(self, *, max_stanza_size: int = 1 << 20, max_depth: int = 64,
                 chunk_size: int = 16384, recycle_bytes: int = 1 << 18) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.recycle_bytes = recycle_bytes
        """Bytes after which the expat parser is replaced at the next stanza boundary: the names it
        keeps (elements, attributes, namespaces) come only from these bytes."""
        self.replacements = 0
        """How many times the expat parser was replaced (see `recycle_bytes`)."""
        self.completed = 0
        """Top-level elements (stanzas and nonzas) completed so far."""
        # Slices fed to expat at once: limits how far past max_stanza_size one feed can reach.
        self._chunk = max(256, min(chunk_size, max_stanza_size // 4 or 256))
        self._events: list[tuple[str, object]] = []
        self._parser = self._new_parser(("start", "end", "start-ns"))
        self._prolog: bytes | None = b""   # bytes before the stream header; None once past it
        self._root: ET.Element | None = None
        self._default_ns: str | None = None
        self._header_ns: list[tuple[str, str]] = []  # the header's xmlns declarations
        self._restart_header = b""  # what a replacement parser is fed to stand where we are
        self._elements = 0   # elements completed in the current stanza
        # Bytes fed since the last top-level element (or the header) was completed: an open
        # start tag and text between stanzas count too (the whole of expat's buffer).
        self._stanza_bytes = 0
        self._fed = 0        # bytes fed to the current expat parser since its header
        # True when the last byte fed ended a stanza (or the header), possibly followed by
        # whitespace: expat holds no partial token, so whitespace that comes next can be
        # dropped and the parser replaced.
        self._boundary = False
        self._open_tag = False  # a start tag has begun, not closed (so in_stanza)
        self._ended = False
        self._failed: StreamError | None = None

    def _new_parser(self, events: tuple[str, ...]) -> ET.XMLParser:
        # RFC 6120 §11.1: comments and PIs are refused by their factories, which raise as
        # expat meets them (insert_* makes the TreeBuilder call them at all); so the events
        # list never has to be searched for them.
        builder = ET.TreeBuilder(comment_factory=_refuse_comment, pi_factory=_refuse_pi,
                                 insert_comments=True, insert_pis=True)
        parser = ET.XMLParser(target=builder, encoding="utf-8")
        parser._setevents(self._events, events)  # type: ignore[attr-defined]  # as XMLPullParser
        return parser

    @property
    def header_seen(self) -> bool:
        return self._root is not None

    @property
    def in_stanza(self) -> bool:
        """True while a top-level element has begun (its start tag too) but not ended."""
        root = self._root
        return root is not None and not self._ended and (len(root) > 0 or self._open_tag)

    def feed(self, data: bytes) -> list[StreamItem]:
        """Parse `data`; return the stream items it completed (header, elements, end).

        Raises:
            StreamError: (`by_peer=False`) naming the condition to report; after that the
                parser is dead and every further call raises the same error.
        """
        if self._failed is not None:
            raise self._failed
        out: list[StreamItem] = []
        if not data or self._ended:
            return out
        try:
            if self._prolog is not None:
                data = self._check_prolog(data)
                if not data:
                    return out
            elif self._boundary:
                if data[0] in _SPACE:
                    # RFC 6120 §11.7: whitespace between stanzas (keepalives) carries nothing;
                    # fed to expat it would pile up in the TreeBuilder until the next stanza.
                    data = data.lstrip(_SPACE)
                    if not data:
                        return out
                self._boundary = False
            if self._fed >= self.recycle_bytes and self._root is not None:
                data = data[self._feed_to_boundary(data, out):]
                if not data or self._ended:
                    return out
                self._boundary = False
            chunk = self._chunk
            if len(data) <= chunk:
                self._feed_slice(data, out)
            else:
                for start in range(0, len(data), chunk):
                    self._feed_slice(data[start:start + chunk], out)
                    if self._ended:
                        break
            if not self._ended and self._root is not None and not len(self._root):
                self._between_stanzas(data, bool(out))
        except StreamError as exc:
            self._fail(exc)
        return out

    def _between_stanzas(self, data: bytes, completed: bool) -> None:
        """After a feed that left no top-level element open: whether a start tag has begun
        (the last '<' fed opens a tag not yet closed) and, when an element was completed by
        this feed, whether it ended with that element's last tag and whitespace, so expat
        holds nothing partial (then the parser may be replaced)."""
        lt = data.rfind(b"<")
        if lt != -1:
            tag = _TAG.match(data, lt)
            self._open_tag = tag is None
            if completed:
                self._boundary = tag is not None and \
                    _SPACE_TO_END.match(data, tag.end()) is not None
        elif completed:
            # The '>' that ended the element is in data; after it comes text, no tag.
            self._open_tag = False
            self._boundary = _SPACE_TO_END.match(data, data.rfind(b">") + 1) is not None
        if self._boundary and self._fed >= self.recycle_bytes:
            self._replace_parser()

    def _feed_to_boundary(self, data: bytes, out: list[StreamItem]) -> int:
        """Feed `data` up to the '>' that ends the next top-level element and replace the
        parser there; return how many bytes were fed (all of them if no element ended)."""
        pos, size, chunk = 0, len(data), self._chunk
        while pos < size:
            gt = data.find(b">", pos, pos + chunk)
            stop = gt + 1 if gt != -1 else min(pos + chunk, size)
            before = len(out)
            self._feed_slice(data[pos:stop], out, flush=True)
            pos = stop
            if self._ended:
                break
            assert self._root is not None
            if gt != -1 and len(out) > before and not len(self._root):
                # An element ended with the last byte fed: the parser is between stanzas.
                self._replace_parser()
                break
        return pos

    def _replace_parser(self) -> None:
        """Drop the expat parser (and its name tables) for a new one that has been fed only
        a stream header declaring the same namespaces, so the stream goes on as before."""
        events = self._events
        parser = self._new_parser(("start",))
        parser.feed(self._restart_header)
        root = events[0][1]
        events.clear()
        parser._setevents(events, ("end",))  # type: ignore[attr-defined]
        self._parser = parser
        self._root = root  # type: ignore[assignment]
        self._fed = 0
        self._boundary = True
        self._open_tag = False
        self.replacements += 1

    def _fail(self, exc: StreamError) -> None:
        self._failed = exc
        self._events.clear()
        self._root = None
        raise exc

    def _check_prolog(self, data: bytes) -> bytes:
        """Hold bytes until the stream header begins; refuse anything but an XML declaration."""
        assert self._prolog is not None
        buf = self._prolog + data
        pos = 0
        decl = _XML_DECL.match(buf)
        if decl:
            enc = _ENCODING.search(decl.group())
            if enc and enc.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
                raise StreamError("unsupported-encoding",
                                  "XMPP streams must be UTF-8 (RFC 6120 §11.6)")
            pos = decl.end()
        else:
            stripped = buf.lstrip(b" \t\r\n")
            if stripped.startswith(b"<?xml") or b"<?xml".startswith(stripped):
                if len(buf) > _PROLOG_LIMIT:
                    raise StreamError("policy-violation", "XML declaration too long")
                self._prolog = buf       # the declaration (or the first '<') is still arriving
                return b""
        lt = buf.find(b"<", pos)
        if lt == -1 or lt + 1 >= len(buf):
            if len(buf) > _PROLOG_LIMIT:
                raise StreamError("policy-violation", "no stream header in the first 4 KiB")
            if buf[pos:lt if lt != -1 else None].strip(b" \t\r\n"):
                raise StreamError("not-well-formed", "text before the stream header")
            self._prolog = buf
            return b""
        if buf[pos:lt].strip(b" \t\r\n"):
            raise StreamError("not-well-formed", "text before the stream header")
        if buf[lt + 1] in b"!?":
            # RFC 6120 §11.1: no DTD (so no entity declarations), comments or PIs.
            raise StreamError("restricted-xml",
                              "DTDs, comments and processing instructions are not allowed")
        self._prolog = None
        return buf

    def _feed_slice(self, data: bytes, out: list[StreamItem], flush: bool = False) -> None:
        try:
            self._parser.feed(data)
            if flush and hasattr(self._parser, "flush"):
                # expat >= 2.6 may defer parsing a small feed that ends a partial token;
                # finding a boundary needs every byte fed to have been parsed.
                self._parser.flush()
        except _Refused:
            self._events.clear()
            raise StreamError("restricted-xml",
                              "comments and processing instructions are not allowed") from None
        except ET.ParseError as exc:
            self._events.clear()
            if exc.code == _EXPAT_UNDEFINED_ENTITY:
                raise StreamError("restricted-xml",
                                  "only the five predefined XML entities are allowed") from None
            raise StreamError("not-well-formed", str(exc)) from None
        finally:
            if self._events:
                self._take_events(out)
        root = self._root
        if root is not None and len(root):
            # The open elements are the chain of last children from root[0]: check its
            # length, so an endless nest is refused without waiting for it to close.
            node, level = root[0], 2
            while len(node):
                node, level = node[-1], level + 1
                if level > self.max_depth:
                    raise StreamError("policy-violation",
                                      f"elements nested deeper than {self.max_depth}")
        # Every byte counts from the one after the last complete element: an unclosed start
        # tag, or text between stanzas, sits whole in expat's buffer (and expat 2.5 scans it
        # again on every feed). Over-counts by at most one slice.
        self._fed += len(data)
        self._stanza_bytes += len(data)
        if self._stanza_bytes > self.max_stanza_size:
            raise StreamError("policy-violation",
                              f"stanza larger than {self.max_stanza_size} bytes")

    def _take_events(self, out: list[StreamItem]) -> None:
        events = self._events
        root = self._root
        try:
            if root is None:
                self._take_header_events(out)
                return
            # After the header only "end" events are asked for (see _start_stream; comments
            # and PIs raise in the TreeBuilder). Completed top-level elements are removed
            # from the root after every slice, and expat starts a top-level element only
            # after the one before it has ended: so all children of the root but the last
            # are complete stanzas, and the last one is complete if it ended last.
            last = events[-1][1]
            count = len(root)
            if last is root or not count:
                self._take_ends(out)  # the stream's end
                return
            done = count if last is root[-1] else count - 1
            if not done:
                self._elements += len(events)  # all inside the open stanza
                return
            # Depth limit: a stanza holds at most (its elements' end events) levels, and
            # each of the other completed stanzas took one event at least. When that bound
            # may exceed the limit, count exactly, event by event.
            if self._elements + len(events) - (done - 1) > self.max_depth:
                self._take_ends(out)
                return
            if done == count:
                self._elements = 0
            else:
                # End events after the last complete stanza's belong to the open one.
                previous = root[done - 1]
                index = len(events) - 1
                while events[index][1] is not previous:
                    index -= 1
                self._elements = len(events) - 1 - index
            stanzas = root[:done]
            del root[:done]  # bounded memory: the stream keeps nothing
            self._stanza_bytes = 0
            self.completed += done
            for elem in stanzas:
                if elem.tag[0] != "{":
                    raise StreamError("invalid-namespace", "top-level element in no namespace")
            out.extend(stanzas)
        finally:
            events.clear()

    def _take_ends(self, out: list[StreamItem]) -> None:
        """The "end" events of a slice one by one (when the stream ends, or a stanza may be
        nested too deeply)."""
        root = self._root
        assert root is not None
        elements = self._elements
        limit = self.max_depth
        tops = iter(root)
        top = next(tops, None)
        done = 0
        for _, elem in self._events:
            elements += 1
            if elem is top:
                done += 1
                if elements > limit:  # only then can it be too deep
                    _check_depth(elem, limit)  # type: ignore[arg-type]
                elements = 0
                if elem.tag[0] != "{":  # type: ignore[union-attr]
                    raise StreamError("invalid-namespace", "top-level element in no namespace")
                out.append(elem)  # type: ignore[arg-type]
                top = next(tops, None)
            elif elem is root:
                self._ended = True
                out.append(StreamEnd())
                break
        self._elements = elements
        if done:
            del root[:done]
            self._stanza_bytes = 0
            self.completed += done

    def _take_header_events(self, out: list[StreamItem]) -> None:
        # Until the header has been seen "start" and "start-ns" events come too; the events
        # after the header's in the same slice are handled here as well.
        root = self._root
        for kind, elem in self._events:
            if kind == "end":
                assert root is not None
                self._elements += 1
                if elem is root:
                    self._ended = True
                    out.append(StreamEnd())
                    break
                if root[0] is elem:
                    del root[0]
                    self._stanza_bytes = 0
                    self.completed += 1
                    count, self._elements = self._elements, 0
                    if count > self.max_depth:
                        _check_depth(elem, self.max_depth)
                    if elem.tag[0] != "{":
                        raise StreamError("invalid-namespace",
                                          "top-level element in no namespace")
                    out.append(elem)
            elif kind == "start":
                if root is None:
                    self._start_stream(elem, out)  # type: ignore[arg-type]
                    root = self._root
            elif kind == "start-ns":
                if root is None:
                    prefix, uri = cast("tuple[str, str]", elem)
                    self._header_ns.append((prefix, uri))
                    if prefix == "":
                        self._default_ns = uri

    def _start_stream(self, root: ET.Element, out: list[StreamItem]) -> None:
        if root.tag != _STREAM_TAG:
            raise StreamError("invalid-namespace",
                              f"expected <stream:stream> in {STREAM_NS}, got {root.tag}")
        self._root = root
        self._stanza_bytes = 0
        # Namespace declarations only matter on the header (the stream's default namespace);
        # stop reporting them, which saves an event per xmlns in every stanza.
        self._parser._setevents(  # type: ignore[attr-defined]
            self._events, ("end",))
        self._restart_header = self._header_like(self._header_ns)
        attrs = {("xml:lang" if k == "{%s}lang" % XML_NS else k): v for k, v in root.attrib.items()}
        out.append(StreamHeader(attrs, self._default_ns))

    @staticmethod
    def _header_like(declarations: list[tuple[str, str]]) -> bytes:
        """A start tag with the stream header's name and namespace declarations, for a
        replacement parser: the peer's stanzas (and its closing tag) mean the same to it."""
        stream_prefixes = [prefix for prefix, uri in declarations if uri == STREAM_NS]
        # The header's own prefix is one bound to the streams namespace ("stream" in
        # practice); the closing </stream:stream> must match it.
        prefix = next((p for p in stream_prefixes if p), "" if stream_prefixes else "stream")
        attrs = "".join(' xmlns%s="%s"' % (":" + p if p else "", escape(uri))
                        for p, uri in declarations)
        if not stream_prefixes:
            attrs += ' xmlns:stream="%s"' % STREAM_NS
        return ("<%s%s>" % (prefix + ":stream" if prefix else "stream", attrs)).encode()


# --------------------------------------------------------------------------------------------
# Serializer

# XML 1.0 §2.2: characters that may not appear in a document at all, even escaped.
_INVALID_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NEEDS_ESCAPE = re.compile("[&<>\"\r]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}


def check_text(text: str, what: str = "text") -> str:
    """Return `text` if it can be sent in XML; raise
    [`InvalidStanzaError`][simplexmpp.errors.InvalidStanzaError] if not."""
    bad = _INVALID_CHARS.search(text)
    if bad:
        raise InvalidStanzaError(
            f"{what} contains the character U+{ord(bad.group()):04X}, which XML cannot carry")
    return text


# One search finds both what must be escaped and what cannot be sent: most text has neither.
_SPECIAL = re.compile("[&<>\"\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_special = _SPECIAL.search


def escape(text: str) -> str:
    """`text` as [`tostring()`][simplexmpp.xml.tostring] writes it in character data or a
    double-quoted attribute value (unchanged when nothing needs escaping); raises
    [`InvalidStanzaError`][simplexmpp.errors.InvalidStanzaError] for a character XML cannot carry.
    For code that writes a stanza's XML directly."""
    if _special(text) is None:
        return text
    check_text(text)
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


def _split(tag: str) -> tuple[str | None, str]:
    if tag[0] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


# Namespaces in XML 1.0 §3 NCName: the XML 1.0 §2.3 Name production without ':'.
_NAME_START = ("A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d"
               "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd"
               "\U00010000-\U000effff")
_NCNAME = re.compile("[%s][%s.0-9\xb7\u0300-\u036f\u203f\u2040-]*" % (_NAME_START, _NAME_START))
_XMLNS_NS = "http://www.w3.org/2000/xmlns/"


def _check_name(name: str, ns: str | None, what: str) -> None:
    """Refuse a name [`tostring()`][simplexmpp.xml.tostring] cannot write as it is (it would corrupt
    the stream)."""
    if _NCNAME.fullmatch(name) is None:
        raise InvalidStanzaError(f"{what} name {name!r} is not an XML name")
    if ns is not None:
        escape(ns)  # characters XML cannot carry
        if ns == _XMLNS_NS:
            raise InvalidStanzaError(f"{what} {name!r} is in the reserved namespace {ns}")


# tag -> (namespace, "<local", '<local xmlns="ns"', "</local>"): the pieces of a tag,
# worked out (and the name checked) once per tag; bounded: a program sends few distinct tags.
_TagParts = tuple[Union[str, None], str, str, str]
_TAGS: dict[str, _TagParts] = {}
_TAGS_MAX = 2048
# Attribute names known to be writable as they are (checked once each, bounded likewise).
_ATTR_NAMES: set[str] = set()


def _tag_parts(tag: object) -> _TagParts:
    if not isinstance(tag, str):  # Comment/PI objects are never sent (RFC 6120 §11.1)
        raise InvalidStanzaError("comments and processing instructions cannot be sent")
    if not tag:
        raise InvalidStanzaError("an element needs a name")
    ns, local = _split(tag)
    _check_name(local, ns, "element")
    if ns == XML_NS:  # may not be a default namespace (Namespaces in XML 1.0 §3)
        raise InvalidStanzaError(f"element {local!r} cannot be in the namespace {ns}")
    parts = (ns, "<" + local, '<%s xmlns="%s"' % (local, escape(ns or "")), "</%s>" % local)
    if len(_TAGS) < _TAGS_MAX:
        _TAGS[tag] = parts
    return parts


def _check_attribute(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidStanzaError(f"attribute name {key!r} is not an XML name")
    if key[0] == "{":
        ns, local = _split(key)
        _check_name(local, ns, "attribute")
    elif key.startswith("xml:"):  # the xml prefix is bound without a declaration
        _check_name(key[4:], None, "attribute")
    else:
        _check_name(key, None, "attribute")
        if key == "xmlns":  # would redeclare the default namespace under the element
            raise InvalidStanzaError("an xmlns attribute cannot be set: the namespace is "
                                     "part of the tag, {namespace}name")
    if len(_ATTR_NAMES) < _TAGS_MAX:
        _ATTR_NAMES.add(key)


def tostring(elem: ET.Element, default_ns: str | None = CLIENT_NS) -> str:
    """Serialize `elem` as it goes on the wire inside a stream whose default namespace is
    `default_ns`: an `xmlns` wherever the namespace changes, never an `ns0:` prefix."""
    parts: list[str] = []
    _write(elem, default_ns, parts)
    return "".join(parts)


def _write(elem: ET.Element, parent_ns: str | None, parts: list[str]) -> None:
    append = parts.append
    tag = elem.tag
    try:
        ns, start, start_ns, end = _TAGS[tag]
    except (KeyError, TypeError):
        ns, start, start_ns, end = _tag_parts(tag)
    append(start if ns == parent_ns else start_ns)
    attrib = elem.attrib
    if attrib:
        prefixes: dict[str, str] | None = None
        for key, value in attrib.items():
            if key not in _ATTR_NAMES:
                _check_attribute(key)
            if key[0] == "{":
                ans, aname = _split(key)
                if ans == XML_NS:
                    key = "xml:" + aname
                else:
                    assert ans is not None
                    if prefixes is None:
                        prefixes = {}
                    prefix = prefixes.get(ans)
                    if prefix is None:
                        prefix = prefixes[ans] = "ns%d" % len(prefixes)
                        append(' xmlns:%s="%s"' % (prefix, escape(ans)))
                    key = prefix + ":" + aname
            append(' %s="%s"' % (key, value if _special(value) is None else escape(value)))
    text = elem.text
    if text or len(elem):
        if text:
            append(">" + (text if _special(text) is None else escape(text)))
        else:
            append(">")
        for child in elem:
            _write(child, ns, parts)
            tail = child.tail
            if tail:
                append(tail if _special(tail) is None else escape(tail))
        append(end)
    else:
        append("/>")


def stream_header(to: str, *, from_: str | None = None, lang: str | None = "en",
                  default_ns: str = CLIENT_NS, version: str | None = "1.0",
                  id: str | None = None) -> str:
    """The opening `<stream:stream>` tag (RFC 6120 §4.7), preceded by an XML declaration."""
    attrs = [f'to="{escape(to)}"']
    if from_:
        attrs.append(f'from="{escape(from_)}"')
    if id:
        attrs.append(f'id="{escape(id)}"')
    if version:
        attrs.append(f'version="{version}"')
    if lang:
        attrs.append(f'xml:lang="{escape(lang)}"')
    return ("<?xml version='1.0'?><stream:stream %s xmlns=\"%s\" xmlns:stream=\"%s\">"
            % (" ".join(attrs), default_ns, STREAM_NS))


STREAM_FOOTER = "</stream:stream>"
