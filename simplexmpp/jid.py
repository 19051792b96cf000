"""Jabber identifiers (RFC 7622): parsing, validation and normalisation.

`JID("Alice@Example.COM/Phone")` normalises to `alice@example.com/Phone`: the localpart
through the PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), the resourcepart through
OpaqueString (RFC 8265 §4.2), the domainpart through IDNA2008 with UTS #46 mapping. Parses are
cached, so building the same JID again costs a dictionary lookup.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

import idna
from precis_i18n import get_profile

from .errors import JIDError

__all__ = ["JID", "parse_jid"]

MAX_PART = 1023  # octets, RFC 7622 §3.2, §3.3, §3.4

# RFC 7622 §3.3.1: on top of UsernameCaseMapped, these may not appear in a localpart.
_LOCAL_FORBIDDEN = frozenset('"&\'/:<>@')
_ASCII_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# An IPv4 address is written in ASCII decimal (RFC 3986 §3.2.2 IPv4address, which RFC 7622
# §3.2 names); str.isdigit() would also take superscripts and other scripts' digits.
_DOTTED_DIGITS = re.compile(r"[0-9.]*[0-9][0-9.]*\Z")
_LABEL_SEPARATORS = (".", "\u3002", "\uff0e", "\uff61")
# A label a resolver takes for a number (inet_aton(3): decimal, octal or 0x hexadecimal).
_NUMBER_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")


def _octets(part: str) -> int:
    """The UTF-8 length of `part`; a str that has no UTF-8 form (a lone surrogate, which
    no XML stream can carry either) is not a JID part."""
    try:
        return len(part.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise JIDError(f"invalid JID {part!r}: not Unicode text ({exc.reason} at position "
                       f"{exc.start})") from None


@functools.lru_cache(maxsize=4096)
def _local(raw: str) -> str:
    if raw.isascii() and raw.isalnum() and raw.islower():
        out = raw  # fast path: nothing for PRECIS to change
    else:
        try:
            out = _USERNAME.enforce(raw)
        except UnicodeError as exc:
            raise JIDError(f"invalid localpart {raw!r}: {exc}") from None
    bad = _LOCAL_FORBIDDEN.intersection(out)
    if bad:
        raise JIDError(f"invalid localpart {raw!r}: may not contain {''.join(sorted(bad))!r}")
    if _octets(out) > MAX_PART:
        raise JIDError(f"localpart longer than {MAX_PART} octets")
    return out


@functools.lru_cache(maxsize=4096)
def _resource(raw: str) -> str:
    if raw.isascii() and raw.isprintable() and " " not in raw:
        out = raw
    else:
        try:
            out = _OPAQUE.enforce(raw)
        except UnicodeError as exc:
            raise JIDError(f"invalid resourcepart {raw!r}: {exc}") from None
    if _octets(out) > MAX_PART:
        raise JIDError(f"resourcepart longer than {MAX_PART} octets")
    return out


@functools.lru_cache(maxsize=1024)
def _domain(raw: str) -> str:
    # RFC 7622 §3.2: a final label separator is stripped before any other canonicalisation.
    # The separators are those of IDNA (RFC 3490 §3.1): the full stop and its ideographic,
    # fullwidth and halfwidth forms, which UTS #46 maps to "." (stripping only "." left
    # "a\u3002" as "a.", which normalised again to "a").
    name = raw[:-1] if raw.endswith(_LABEL_SEPARATORS) and len(raw) > 1 else raw
    if not name:
        raise JIDError("empty domainpart")
    if name.startswith("[") and name.endswith("]"):  # IPv6 literal, RFC 7622 §3.2
        try:
            return "[%s]" % ipaddress.IPv6Address(name[1:-1]).compressed
        except ValueError:
            raise JIDError(f"invalid domainpart {raw!r}: not an IPv6 address") from None
    if _DOTTED_DIGITS.match(name):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise JIDError(f"invalid domainpart {raw!r}: not an IPv4 address") from None
    out = _domain_name(raw, name)
    # RFC 1123 §2.1: a host name never has the dotted-decimal form, since at least its
    # highest-level label is not all digits; a resolver reads a name whose last label is a
    # number as an address ("0" is 0.0.0.0, "127.1" and "0x7f.1" are 127.0.0.1). So a
    # domainpart whose last label is a number is an IPv4 address written out in full or
    # nothing. The test runs on the normalised name, so "0\xad" (soft hyphen, mapped away
    # by UTS #46) or a fullwidth "０" is refused like "0": normalisation stays idempotent.
    if _NUMBER_LABEL.match(out.rpartition(".")[2]):
        raise JIDError(f"invalid domainpart {raw!r}: its last label is a number, so it is "
                       "not a domain name, and it is not an IPv4 address (four decimal "
                       "octets, like 192.0.2.1)")
    return out


def _domain_name(raw: str, name: str) -> str:
    """`name` (the domainpart `raw` less its trailing dot) normalised as a DNS name."""
    if name.isascii():
        lower = name.lower()
        labels = lower.split(".")
        if all(_ASCII_LABEL.match(label) and not label.startswith("xn--") for label in labels):
            if len(lower) > 253:
                raise JIDError(f"invalid domainpart {raw!r}: longer than 253 characters")
            return lower
    try:
        ascii_form = idna.encode(name, uts46=True)
        out = idna.decode(ascii_form)
    except (idna.IDNAError, UnicodeError) as exc:
        raise JIDError(f"invalid domainpart {raw!r}: {exc}") from None
    if out.endswith("."):
        # idna takes a final dot for the DNS root, but only one was stripped above: "a.." or
        # "a.\u200b" (a dot, then a character UTS #46 maps to nothing) ends in an empty label.
        raise JIDError(f"invalid domainpart {raw!r}: it ends in an empty label")
    if _octets(out) > MAX_PART:
        raise JIDError(f"domainpart longer than {MAX_PART} octets")
    return out


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[str | None, str, str | None]:
    # RFC 7622 §3.1: the resource is everything after the first "/", then the local is
    # everything before the first "@" of what is left.
    rest, slash, resource = text.partition("/")
    local_raw, at, domain_raw = rest.rpartition("@") if "@" in rest else ("", "", rest)
    if at and "@" in local_raw:
        raise JIDError(f"invalid JID {text!r}: more than one '@' before the resource")
    if at and not local_raw:
        raise JIDError(f"invalid JID {text!r}: empty localpart before '@'")
    if slash and not resource:
        raise JIDError(f"invalid JID {text!r}: empty resourcepart after '/'")
    return (_local(local_raw) if at else None, _domain(domain_raw),
            _resource(resource) if slash else None)


class JID:
    """An immutable, normalised Jabber ID; compares equal to its string form.

    ```python
    JID("Alice@Example.com/phone")  # -> JID('alice@example.com/phone')
    JID(local="bob", domain="example.com").with_resource("pc").full  # -> 'bob@example.com/pc'
    ```
    """

    __slots__ = ("local", "domain", "resource", "_str")

    local: str | None
    domain: str
    resource: str | None
    _str: str

    def __init__(self, jid: str | JID = "", *, local: str | None = None,
                 domain: str | None = None, resource: str | None = None) -> None:
        if isinstance(jid, JID):
            parts: tuple[str | None, str, str | None] = (jid.local, jid.domain, jid.resource)
        elif not isinstance(jid, str):
            raise JIDError(f"a JID must be a str, not {type(jid).__name__}")
        elif jid:
            if _octets(jid) > 3 * MAX_PART + 2:
                raise JIDError("JID longer than 3071 octets")
            parts = _parse(jid)
        elif domain is None:
            raise JIDError("empty JID: the domainpart is required")
        else:
            parts = (None, "", None)
        if local is not None:
            if not local:
                raise JIDError("empty localpart")
            parts = (_local(local), parts[1], parts[2])
        if domain is not None:
            parts = (parts[0], _domain(domain), parts[2])
        if resource is not None:
            if not resource:
                raise JIDError("empty resourcepart")
            parts = (parts[0], parts[1], _resource(resource))
        set_ = object.__setattr__
        set_(self, "local", parts[0])
        set_(self, "domain", parts[1])
        set_(self, "resource", parts[2])
        text = parts[1] if parts[0] is None else f"{parts[0]}@{parts[1]}"
        set_(self, "_str", text if parts[2] is None else f"{text}/{parts[2]}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("JID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("JID is immutable")

    @property
    def bare(self) -> JID:
        """This JID without its resource."""
        if self.resource is None:
            return self
        new = object.__new__(JID)
        set_ = object.__setattr__
        set_(new, "local", self.local)
        set_(new, "domain", self.domain)
        set_(new, "resource", None)
        set_(new, "_str", self._str.partition("/")[0])
        return new

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def full(self) -> str:
        return self._str

    def with_resource(self, resource: str) -> JID:
        return JID(self, resource=resource)

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID({self._str!r})"

    def __hash__(self) -> int:
        return hash(self._str)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JID):
            return self._str == other._str
        if isinstance(other, str):
            if other == self._str:
                return True
            try:
                return JID(other)._str == self._str
            except JIDError:
                return False
        return NotImplemented

    def __reduce__(self) -> tuple[Any, ...]:
        return (JID, (self._str,))


def parse_jid(value: str | JID | None) -> JID | None:
    """`JID(value)`, or None for None or an empty string (an absent `to`/`from`)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, JID) else JID(value)
