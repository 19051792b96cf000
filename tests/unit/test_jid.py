"""JID parsing and normalisation (RFC 7622)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simplexmpp.errors import JIDError
from simplexmpp.jid import JID, parse_jid

VALID = [
    # (input, normalised, local, domain, resource)
    ("juliet@example.com", "juliet@example.com", "juliet", "example.com", None),
    ("juliet@example.com/foo", "juliet@example.com/foo", "juliet", "example.com", "foo"),
    ("juliet@example.com/foo bar", "juliet@example.com/foo bar", "juliet", "example.com",
     "foo bar"),
    ("juliet@example.com/foo@bar", "juliet@example.com/foo@bar", "juliet", "example.com",
     "foo@bar"),
    ("juliet@example.com/a/b", "juliet@example.com/a/b", "juliet", "example.com", "a/b"),
    ("foo\\20bar@example.com", "foo\\20bar@example.com", "foo\\20bar", "example.com", None),
    ("fussball@example.com", "fussball@example.com", "fussball", "example.com", None),
    ("fu\u00dfball@example.com", "fu\u00dfball@example.com", "fu\u00dfball", "example.com",
     None),
    ("\u03c0@example.com", "\u03c0@example.com", "\u03c0", "example.com", None),
    ("\u03a3@example.com/foo", "\u03c3@example.com/foo", "\u03c3", "example.com", "foo"),
    ("\u03c2@example.com", "\u03c2@example.com", "\u03c2", "example.com", None),
    ("king@example.com/\u265a", "king@example.com/\u265a", "king", "example.com", "\u265a"),
    ("example.com", "example.com", None, "example.com", None),
    ("example.com/foobar", "example.com/foobar", None, "example.com", "foobar"),
    ("a.example.com/b@example.net", "a.example.com/b@example.net", None, "a.example.com",
     "b@example.net"),
    ("Juliet@Example.COM/Balcony", "juliet@example.com/Balcony", "juliet", "example.com",
     "Balcony"),
    ("juliet@example.com.", "juliet@example.com", "juliet", "example.com", None),
    ("juliet@192.0.2.1", "juliet@192.0.2.1", "juliet", "192.0.2.1", None),
    ("juliet@[2001:DB8:0:0::1]/r", "juliet@[2001:db8::1]/r", "juliet", "[2001:db8::1]", "r"),
    ("juliet@B\u00fccher.example", "juliet@b\u00fccher.example", "juliet",
     "b\u00fccher.example", None),
    ("juliet@xn--bcher-kva.example", "juliet@b\u00fccher.example", "juliet",
     "b\u00fccher.example", None),
    ("\uff2a\uff35\uff2c\uff29\uff25\uff34@example.com", "juliet@example.com", "juliet",
     "example.com", None),  # fullwidth letters map to ASCII (UsernameCaseMapped width mapping)
]

#: Hypothesis gives each example 200 ms by default: a timed assertion, which a loaded machine
#: (or the first example, which loads the IDNA and PRECIS tables) fails now and then.
NO_DEADLINE = settings(deadline=None)

INVALID = [
    ("", "domainpart"),
    ('"juliet"@example.com', "localpart"),
    ("foo bar@example.com", "localpart"),
    ("juliet@example.com/", "resourcepart"),
    ("@example.com/", "localpart"),
    ("@example.com", "localpart"),
    ("a@b@example.com", "@"),
    ("henry\u2163@example.com", "localpart"),  # ROMAN NUMERAL FOUR is not allowed
    ("\u265a@example.com", "localpart"),  # symbols are not allowed in a localpart
    ("juliet@", "domainpart"),
    ("/foobar", "domainpart"),
    ("juliet@exa mple.com", "domainpart"),
    ("juliet@-example.com", "domainpart"),
    ("juliet@[2001:db8::zz]", "domainpart"),
    ("juliet@300.0.2.1", "domainpart"),
    ("juliet@example.com/\u0007", "resourcepart"),
    ("a" * 1024 + "@example.com", "localpart"),
    ("juliet@example.com/" + "r" * 1024, "resourcepart"),
]


@pytest.mark.parametrize("text, normal, local, domain, resource", VALID)
def test_valid_jids_normalise(text: str, normal: str, local: str | None, domain: str,
                              resource: str | None) -> None:
    jid = JID(text)
    assert (str(jid), jid.local, jid.domain, jid.resource) == (normal, local, domain, resource)
    assert JID(str(jid)) == jid  # idempotent


@pytest.mark.parametrize("text, part", INVALID)
def test_invalid_jids_raise_jid_error_naming_the_part(text: str, part: str) -> None:
    with pytest.raises(JIDError) as info:
        JID(text)
    assert part in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bare_full_and_with_resource() -> None:
    jid = JID("alice@example.com/phone")
    assert jid.bare == "alice@example.com" and jid.bare.is_bare and not jid.is_bare
    assert jid.full == "alice@example.com/phone"
    assert jid.bare.with_resource("pc") == JID("alice@example.com/pc")
    assert JID("alice@example.com").bare is not None


def test_keyword_construction_normalises_each_part() -> None:
    assert JID(local="Alice", domain="Example.com", resource="r") == "alice@example.com/r"
    assert JID("alice@example.com", resource="pc") == "alice@example.com/pc"
    with pytest.raises(JIDError):
        JID(local="", domain="example.com")
    with pytest.raises(JIDError):
        JID(local="alice")  # no domain


def test_equality_hash_and_comparison_with_strings() -> None:
    a, b = JID("Alice@Example.com"), JID("alice@example.com")
    assert a == b and hash(a) == hash(b) and hash(a) == hash("alice@example.com")
    assert a == "ALICE@example.com" and a != "bob@example.com" and a != "not a@jid"
    assert len({a, b, "alice@example.com"}) == 1
    assert a != 42


def test_immutable_and_picklable() -> None:
    jid = JID("alice@example.com/r")
    with pytest.raises(AttributeError):
        jid.local = "bob"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(jid)) == jid


def test_parse_jid_passes_absent_values_through() -> None:
    assert parse_jid(None) is None and parse_jid("") is None
    jid = JID("a@b")
    assert parse_jid(jid) is jid and parse_jid("a@b") == jid


def test_non_string_is_a_jid_error() -> None:
    with pytest.raises(JIDError):
        JID(42)  # type: ignore[arg-type]


# A domainpart whose last label is a number is an IPv4 address in full or no domainpart
# (RFC 1123 §2.1; a resolver would read "0" as 0.0.0.0). The rule is applied to the
# normalised name: "0\xad" (a soft hyphen, which UTS #46 maps to nothing) was accepted as
# JID("0"), which itself raised, so normalising was not idempotent.
NUMERIC_DOMAINS = ["0", "0\xad", "\uff10", "0.", "a@0\xad/r", "300.0.2.1", "1.2.3.04",
                   "127.1", "a.1", "example.0x1", "0x7f", "a.0X1", "1.2.3.4\xad",
                   "\uff11.\uff12.\uff13.\uff14", "juliet@example.\uff11"]


@pytest.mark.parametrize("text", NUMERIC_DOMAINS)
def test_domainpart_ending_in_a_number_is_a_jid_error(text: str) -> None:
    with pytest.raises(JIDError, match="domainpart"):
        JID(text)
    with pytest.raises(JIDError, match="domainpart"):
        JID(local="a", domain=text.rpartition("@")[2].partition("/")[0])


@pytest.mark.parametrize("text, normal", [
    ("192.0.2.1", "192.0.2.1"), ("192.0.2.1.", "192.0.2.1"), ("a@123.example", "a@123.example"),
    ("1.2.3.example/r", "1.2.3.example/r"), ("0x.example", "0x.example"),
    ("0a", "0a"), ("4chan.org", "4chan.org"), ("a@x0", "a@x0")])
def test_numeric_labels_below_the_top_are_a_domain_name(text: str, normal: str) -> None:
    jid = JID(text)
    assert str(jid) == normal and JID(str(jid)) == jid


# RFC 7622 §3.2: one final label separator is stripped before anything else; IDNA's
# separators include the ideographic, fullwidth and halfwidth full stops. Only "." was
# stripped, so "a\u3002" became "a." (and that "a"); a dot that ends the name only after
# mapping ("a.\u200b", a zero-width space mapped to nothing) leaves an empty label.
@pytest.mark.parametrize("text, normal", [
    ("a\u3002", "a"), ("juliet@example.com\uff0e", "juliet@example.com"),
    ("example.com\uff61/r", "example.com/r"), ("b\u00fccher.example\u3002", "b\u00fccher.example")])
def test_a_final_ideographic_or_fullwidth_dot_is_stripped(text: str, normal: str) -> None:
    jid = JID(text)
    assert str(jid) == normal and str(JID(str(jid))) == normal


@pytest.mark.parametrize("text", ["a..", "a.\u3002", "a.\u200b", "juliet@example.com.\u00ad",
                                  "b\u00fccher.example.."])
def test_a_domainpart_ending_in_an_empty_label_is_a_jid_error(text: str) -> None:
    with pytest.raises(JIDError, match="domainpart"):
        JID(text)


@NO_DEADLINE
@given(st.text(min_size=1, max_size=40))
@example("0\xad")
@example("a\u3002")
@example("a.\u200b")
def test_normalisation_is_idempotent_and_never_crashes(text: str) -> None:
    try:
        jid = JID(text)
    except JIDError:
        return
    again = JID(str(jid))
    assert str(again) == str(jid) and again == jid


#: Characters where normalisation has edges: separators and what IDNA/PRECIS map to them or to
#: nothing, digits of other widths and scripts, case and compatibility mappings, joiners,
#: combining marks, right-to-left letters. Plain text rarely draws them.
TRICKY = ("0129abnxz.-@/ \u00ad\u200b\u200d\u2060\uff10\uff11\uff0e\u3002\uff61\uff20\uff0f"
          "\u2024\u2488\u00b2\u0660\u00df\u03c2\u03a3\u0130\u212a\u2163\u00c5\u0301"
          "\u1e9e\ufb01\u00a0\u3000\u05d0\u0627\u202e")


@settings(max_examples=500, deadline=None)
@given(st.text(TRICKY, min_size=1, max_size=12), st.text(TRICKY, min_size=1, max_size=12))
def test_normalisation_is_idempotent_on_tricky_text(head: str, tail: str) -> None:
    for text in (head + tail, f"{head}@{tail}", f"a@{head}/{tail}"):
        try:
            jid = JID(text)
        except JIDError:
            continue
        again = JID(str(jid))
        assert (again.local, again.domain, again.resource) == (jid.local, jid.domain,
                                                               jid.resource), text


# Any code point, lone surrogates included (st.text() leaves those out by default): a Python
# str can hold them, and one reaching JID() must be a JIDError like any other bad input.
# Surrogates are drawn on purpose as well: among all code points they would be rare.
ANY_CHAR = st.one_of(st.characters(exclude_categories=()),
                     st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
ANY_TEXT = st.text(ANY_CHAR, max_size=30)
#: Text shaped like a JID (local@domain/resource), each part arbitrary, so the examples get
#: past the first split into the PRECIS and IDNA code.
JID_SHAPED = st.builds(lambda local, domain, resource: f"{local}@{domain}/{resource}",
                       ANY_TEXT, st.one_of(ANY_TEXT, st.just("example.com")), ANY_TEXT)


@pytest.mark.parametrize("text", ["a\ud800@localhost", "alice@localhost/\udcff", "\ud83d",
                                  "alice@exa\udfffmple.com"])
def test_lone_surrogate_is_a_jid_error(text: str) -> None:
    with pytest.raises(JIDError, match="not Unicode text"):
        JID(text)


@NO_DEADLINE
@given(st.one_of(ANY_TEXT, JID_SHAPED))
def test_any_text_is_a_jid_or_a_jid_error(text: str) -> None:
    try:
        jid = JID(text)
    except JIDError:
        return
    assert JID(str(jid)) == jid


@NO_DEADLINE
@given(ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_any_keyword_parts_are_a_jid_or_a_jid_error(local: str, domain: str,
                                                    resource: str) -> None:
    for kwargs in (dict(local=local, domain=domain, resource=resource), dict(domain=domain),
                   dict(local=local, domain="example.com"),
                   dict(domain="example.com", resource=resource)):
        try:
            JID(**kwargs)
        except JIDError:
            pass
