"""XEP-0054 vcard-temp against the real Prosody (mod_vcard_legacy, which stores vCards as
vCard4 in PEP and serves the photo from the XEP-0084 avatar nodes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simplexmpp import Client
from simplexmpp.ext.vcard import VCardData

from .conftest import Server
from .test_avatar import befriend, tiny_png


def test_account_without_vcard_gives_an_empty_one(server: Server,
                                                  connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    own = alice.vcard.get()
    assert isinstance(own, VCardData) and not own
    assert own.fn is None and own.photo is None
    assert not bob.vcard.get(alice.account.bare)
    # Prosody answers an empty vCard even for an account that does not exist.
    assert not bob.vcard.get(f"nobody-{id(bob)}@{server.domain}")


def test_set_from_keywords_and_read_back(connect_any: Callable[..., Client]) -> None:
    alice, bob = connect_any(), connect_any()
    alice.vcard.set(fn="Alice Example", nickname="ali", given="Alice", family="Example",
                    email="alice@example.org", url="https://example.org/alice",
                    note="Hello, I am Alice.", birthday="1990-01-02")
    card = alice.vcard.get()
    assert card
    assert (card.fn, card.nickname, card.given, card.family) == \
        ("Alice Example", "ali", "Alice", "Example")
    assert (card.email, card.url, card.note, card.birthday) == \
        ("alice@example.org", "https://example.org/alice", "Hello, I am Alice.", "1990-01-02")
    assert card.raw is not None and card.raw.tag == "{vcard-temp}vCard"
    # A stranger sees the text fields (Prosody's vCard node is open) …
    seen = bob.vcard.get(alice.jid)  # asked of the bare JID even if given a full one
    assert (seen.fn, seen.nickname, seen.email) == ("Alice Example", "ali",
                                                    "alice@example.org")


def test_change_one_field_keeps_the_others(connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    alice.vcard.set(fn="Alice", nickname="ali", email="a@example.org")
    card = alice.vcard.get()
    card.nickname = "alicia"
    card.email = None
    alice.vcard.set(card)
    again = alice.vcard.get()
    assert (again.fn, again.nickname, again.email) == ("Alice", "alicia", None)


def test_photo_round_trip_and_contacts_see_it(connect_any: Callable[..., Client]) -> None:
    alice, bob = connect_any(), connect_any()
    png = tiny_png(2, 3)
    alice.vcard.set(fn="Alice", photo=png, photo_type="image/png")
    card = alice.vcard.get()
    assert card.photo == png and card.photo_type == "image/png"
    befriend(alice, bob)
    seen = bob.vcard.get(alice.account.bare)
    assert seen.fn == "Alice" and seen.photo == png


def test_bad_arguments_are_refused_before_sending(connect_any: Callable[..., Client]) -> None:
    alice = connect_any()
    with pytest.raises(TypeError, match="unknown vCard field"):
        alice.vcard.set(fullname="Alice")
    with pytest.raises(TypeError):
        alice.vcard.set(VCardData(fn="x"), nickname="y")
    with pytest.raises(TypeError):
        alice.vcard.set(photo="not bytes")
    with pytest.raises(TypeError):
        alice.vcard.set(fn=42)  # type: ignore[arg-type]
