"""vcard-temp parsing and building (XEP-0054) without a server."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from simplexmpp.ext.vcard import VCardData

V = "{vcard-temp}"


def test_parse_common_fields_and_photo() -> None:
    photo = b"\x89PNG\r\n"
    vcard = ET.fromstring(
        "<vCard xmlns='vcard-temp'><FN> Alice </FN><NICKNAME>ali</NICKNAME>"
        "<N><FAMILY>Example</FAMILY><GIVEN>Alice</GIVEN></N>"
        "<EMAIL><INTERNET/><USERID>a@example.org</USERID></EMAIL>"
        "<URL>https://a.example</URL><DESC>about</DESC><BDAY>1990-01-02</BDAY>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(photo).decode()[:4]}\n"
        f"{base64.b64encode(photo).decode()[4:]}</BINVAL></PHOTO></vCard>")
    card = VCardData.from_element(vcard)
    assert (card.fn, card.nickname, card.given, card.family, card.email, card.url,
            card.note, card.birthday) == ("Alice", "ali", "Alice", "Example",
                                          "a@example.org", "https://a.example", "about",
                                          "1990-01-02")
    assert card.photo == photo and card.photo_type == "image/png"
    assert card


def test_note_falls_back_to_NOTE_and_email_to_plain_text() -> None:
    card = VCardData.from_element(ET.fromstring(
        "<vCard xmlns='vcard-temp'><NOTE>n</NOTE><EMAIL>b@example.org</EMAIL></vCard>"))
    assert card.note == "n" and card.email == "b@example.org"


def test_bad_photo_is_left_out() -> None:
    card = VCardData.from_element(ET.fromstring(
        "<vCard xmlns='vcard-temp'><FN>x</FN><PHOTO><BINVAL>***</BINVAL></PHOTO></vCard>"))
    assert card.fn == "x" and card.photo is None


def test_empty_card_is_falsy() -> None:
    assert not VCardData()
    assert not VCardData.from_element(ET.Element(V + "vCard"))
    assert VCardData(nickname="x")


def test_build_keeps_unknown_fields_and_replaces_known_ones() -> None:
    raw = ET.fromstring(
        "<vCard xmlns='vcard-temp'><FN>Old</FN><TITLE>Boss</TITLE>"
        "<N><GIVEN>Al</GIVEN><MIDDLE>Q</MIDDLE></N>"
        "<EMAIL><INTERNET/><USERID>old@example.org</USERID></EMAIL></vCard>")
    card = VCardData.from_element(raw)
    card.fn = "New"
    card.email = None
    card.photo = b"img"
    built = card.to_element()
    assert built.findtext(V + "FN") == "New"
    assert built.findtext(V + "TITLE") == "Boss"
    assert built.findtext(f"{V}N/{V}MIDDLE") == "Q"
    assert built.find(V + "EMAIL") is None
    assert built.findtext(f"{V}PHOTO/{V}BINVAL") == base64.b64encode(b"img").decode()
    assert raw.findtext(V + "FN") == "Old"  # the received element is not changed
    assert VCardData.from_element(built).photo == b"img"


def test_build_from_scratch_round_trips() -> None:
    card = VCardData(fn="A", given="G", family="F", email="e@x.org", note="hi",
                     birthday="2000-01-01", url="u", nickname="n")
    again = VCardData.from_element(card.to_element())
    again.raw = None
    assert again == card
