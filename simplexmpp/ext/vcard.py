"""XEP-0054 vcard-temp: read anyone's vCard, publish our own.

```python
card = client.vcard.get("bob@example.org")
card.fn, card.email  # -> ('Bob Example', 'bob@example.org')
client.vcard.set(fn="Alice Example", nickname="alice")
```

A JID without a vCard gives an empty [`VCardData`][simplexmpp.ext.vcard.VCardData] (`bool(card)` is
False): servers answer either with an empty `<vCard/>` (Prosody 0.12 does so, also for accounts that
do not exist) or with `item-not-found` (XEP-0054 §3.1), and both mean "nothing published". Other
errors (`service-unavailable`, `forbidden` …) raise [`IqError`][simplexmpp.errors.IqError].
"""

from __future__ import annotations

import base64
import binascii
import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ..extension import Extension
from ..errors import IqError
from ..jid import JID
from ..stanza import Iq

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["VCard", "VCardData", "VCARD_NS"]

VCARD_NS = "vcard-temp"
_V = "{%s}" % VCARD_NS

# (attribute, path of the element holding the text) for the plain text fields, XEP-0054 §5.
_TEXT_FIELDS: list[tuple[str, tuple[str, ...]]] = [
    ("fn", ("FN",)),
    ("nickname", ("NICKNAME",)),
    ("given", ("N", "GIVEN")),
    ("family", ("N", "FAMILY")),
    ("email", ("EMAIL", "USERID")),
    ("url", ("URL",)),
    ("note", ("DESC",)),
    ("birthday", ("BDAY",)),
]


@dataclass
class VCardData:
    """The common fields of a vcard-temp vCard; any other field stays in `raw` (the
    `<vCard/>` element received) and is kept when the card is published again.

    `note` is the free-text `DESC` field ("about me"); `birthday` the `BDAY` text
    (ISO 8601, `YYYY-MM-DD`); `photo` the decoded `PHOTO/BINVAL` bytes with its MIME
    type in `photo_type`."""

    fn: str | None = None
    nickname: str | None = None
    given: str | None = None
    family: str | None = None
    email: str | None = None
    url: str | None = None
    note: str | None = None
    birthday: str | None = None
    photo: bytes | None = None
    photo_type: str | None = None
    raw: ET.Element | None = None

    def __bool__(self) -> bool:
        """False for a card with none of the fields above (nothing published)."""
        return any(getattr(self, f.name) for f in fields(self) if f.name != "raw") or (
            self.raw is not None and len(self.raw) > 0)

    @classmethod
    def from_element(cls, vcard: ET.Element) -> VCardData:
        """Parse a `<vCard xmlns='vcard-temp'/>`; a PHOTO whose BINVAL is not base64 is
        left out (`photo` None) rather than failing the whole card."""
        card = cls(raw=vcard)
        for attr, path in _TEXT_FIELDS:
            element = vcard.find("/".join(_V + p for p in path))
            if attr == "email" and element is None:
                # XEP-0054 §5 DTD: USERID is the address; some clients put it as EMAIL text.
                bare = vcard.find(_V + "EMAIL")
                text = (bare.text or "").strip() if bare is not None else ""
                setattr(card, attr, text or None)
                continue
            if attr == "note" and element is None:
                element = vcard.find(_V + "NOTE")
            if element is not None and element.text and element.text.strip():
                setattr(card, attr, element.text.strip())
        photo = vcard.find(_V + "PHOTO")
        if photo is not None:
            binval = photo.findtext(_V + "BINVAL")
            if binval:
                try:
                    card.photo = base64.b64decode("".join(binval.split()), validate=True)
                except (binascii.Error, ValueError):
                    card.photo = None
                card.photo_type = (photo.findtext(_V + "TYPE") or "").strip() or None
        return card

    def to_element(self) -> ET.Element:
        """The `<vCard/>` to publish: `raw` (if any) with the fields above replaced."""
        vcard = copy.deepcopy(self.raw) if self.raw is not None else ET.Element(_V + "vCard")
        vcard.tag = _V + "vCard"
        for attr, path in _TEXT_FIELDS:
            value = getattr(self, attr)
            parent = vcard
            for name in path[:-1]:
                child = parent.find(_V + name)
                if child is None:
                    if value is None:
                        break
                    child = ET.SubElement(parent, _V + name)
                parent = child
            else:
                old = parent.find(_V + path[-1])
                if attr == "email" and value is not None and old is None:
                    ET.SubElement(parent, _V + "INTERNET")  # EMAIL's type flag
                if value is None:
                    if old is not None:
                        parent.remove(old)
                    continue
                if old is None:
                    old = ET.SubElement(parent, _V + path[-1])
                old.text = value
        # Drop containers left empty (an EMAIL with only INTERNET, an N without parts).
        for name, keep in (("N", None), ("EMAIL", "USERID")):
            for child in vcard.findall(_V + name):
                if (keep and child.find(_V + keep) is None) or (not keep and len(child) == 0):
                    vcard.remove(child)
        for old_photo in vcard.findall(_V + "PHOTO"):
            vcard.remove(old_photo)
        if self.photo is not None:
            photo = ET.SubElement(vcard, _V + "PHOTO")
            ET.SubElement(photo, _V + "TYPE").text = self.photo_type or "image/png"
            ET.SubElement(photo, _V + "BINVAL").text = base64.b64encode(self.photo).decode()
        return vcard


class VCard(Extension):
    """`client.vcard`: XEP-0054 vcard-temp."""

    name = "vcard"

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def get(self, jid: JID | str | None = None, timeout: float | None = None) -> VCardData:
        """The vCard of `jid` (a bare JID; None: our own). Empty when none is published;
        [`IqError`][simplexmpp.errors.IqError] for other errors."""
        # XEP-0054 §3.2: a vCard is asked of the bare JID (a full JID would reach a client).
        target = JID(jid).bare if jid is not None else None
        try:
            reply = self._client.iq(Iq.get(target, ET.Element(_V + "vCard")), timeout)
        except IqError as exc:
            if exc.condition == "item-not-found":  # XEP-0054 §3.1: no vCard exists
                return VCardData()
            raise
        payload = reply.payload
        if payload is None or payload.tag != _V + "vCard":
            return VCardData()  # an empty result: nothing published
        return VCardData.from_element(payload)

    def set(self, vcard: VCardData | None = None, *, timeout: float | None = None,
            **fields_: str | bytes | None) -> None:
        """Publish our own vCard (XEP-0054 §3.3), replacing the previous one: either a
        [`VCardData`][simplexmpp.ext.vcard.VCardData] or its fields as keywords (`set(fn="Alice",
        email=...)`).

        The whole card is replaced, so to change one field start from `get()`:
        `card = client.vcard.get(); card.nickname = "ali"; client.vcard.set(card)`."""
        if vcard is not None and fields_:
            raise TypeError("give either a VCardData or keyword fields, not both")
        if vcard is None:
            known = {f.name for f in fields(VCardData)} - {"raw"}
            unknown = set(fields_) - known
            if unknown:
                raise TypeError(f"unknown vCard field(s): {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}")
            photo = fields_.get("photo")
            if photo is not None and not isinstance(photo, bytes):
                raise TypeError("photo must be bytes")
            for name, value in fields_.items():
                if name != "photo" and value is not None and not isinstance(value, str):
                    raise TypeError(f"vCard field {name} must be a str")
            vcard = VCardData(**fields_)  # type: ignore[arg-type]
        elif not isinstance(vcard, VCardData):
            raise TypeError("set() takes a VCardData (or keyword fields)")
        self._client.iq(Iq.set(None, vcard.to_element()), timeout)
