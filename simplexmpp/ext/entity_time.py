"""XEP-0202 Entity Time: ask an entity for its clock, and answer for ourselves.

```python
t = client.time.get("localhost")
t.utc          # datetime in UTC, as the entity's clock says
t.offset       # its time zone offset (a timedelta)
t.local        # the same instant in the entity's own zone
```

Our own answer gives the current UTC time and, by default, the offset `+00:00`: the real
local offset tells others where we are (XEP-0202 §5 leaves revealing it to the
implementation), so it is sent only when `client.time.reveal_timezone` is True. Set
`client.time.answer = False` to refuse queries (`service-unavailable`, as if unsupported).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from ..errors import IqError
from ..extension import Extension
from ..jid import JID
from ..stanza import Iq, format_datetime, parse_datetime

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Time", "EntityTime", "TIME_NS", "parse_offset", "format_offset"]

TIME_NS = "urn:xmpp:time"
_TIME = "{%s}time" % TIME_NS
# XEP-0082 §3.2 TZD: "Z" or [+-]hh:mm
_TZD = re.compile(r"^(?:[Zz]|([+-])(\d{2}):(\d{2}))$")


class EntityTime(NamedTuple):
    """An entity's answer: `utc` (aware, UTC) and `offset` (its zone's offset from UTC)."""

    utc: datetime
    offset: timedelta

    @property
    def local(self) -> datetime:
        """The entity's clock in its own time zone."""
        return self.utc.astimezone(timezone(self.offset))


def parse_offset(text: str) -> timedelta:
    """An XEP-0082 time zone designator (`Z`, `+02:00`, `-05:30`) as a timedelta;
    ValueError when it is not one."""
    match = _TZD.match(text.strip())
    if match is None:
        raise ValueError(f"not an XEP-0082 time zone offset: {text!r}")
    if match.group(1) is None:
        return timedelta(0)
    hours, minutes = int(match.group(2)), int(match.group(3))
    if hours > 23 or minutes > 59:
        raise ValueError(f"not an XEP-0082 time zone offset: {text!r}")
    offset = timedelta(hours=hours, minutes=minutes)
    return -offset if match.group(1) == "-" else offset


def format_offset(offset: timedelta) -> str:
    """A timedelta as an XEP-0082 offset (`+hh:mm`)."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class Time(Extension):
    """`client.time`: XEP-0202 entity time, both sides."""

    name = "time"
    features = (TIME_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.answer: bool = True
        """Whether we answer others' time queries (False: `service-unavailable`)."""
        self.reveal_timezone: bool = False
        """Whether our answer carries our real local offset (default: `+00:00`)."""
        client.register_iq_handler("get", _TIME, self._answer)

    def get(self, jid: JID | str | None = None, timeout: float | None = None) -> EntityTime:
        """The time of `jid` (a full JID for a client; default: our server).

        Raises [IqError][simplexmpp.errors.IqError] when the entity refuses or does not
        support XEP-0202 (`service-unavailable`, `feature-not-implemented`), and also
        (`bad-request`) when its answer is not a valid time."""
        target = JID(jid) if jid is not None else JID(self.client.account.domain)
        reply = self.client.iq(Iq.get(target, ET.Element(_TIME)), timeout)
        payload = reply.payload
        if payload is None or payload.tag != _TIME:
            raise IqError("bad-request", "modify",
                          f"the entity time answer of {target} has no <time/>", reply)
        utc_text = payload.findtext("{%s}utc" % TIME_NS)
        tzo_text = payload.findtext("{%s}tzo" % TIME_NS)
        try:
            if utc_text is None or tzo_text is None:
                raise ValueError("<utc/> and <tzo/> are both required (XEP-0202 §4)")
            utc = parse_datetime(utc_text).astimezone(timezone.utc)
            offset = parse_offset(tzo_text)
        except ValueError as exc:
            raise IqError("bad-request", "modify",
                          f"the entity time answer of {target} is not valid: {exc}",
                          reply) from None
        return EntityTime(utc, offset)

    def _answer(self, iq: Iq) -> ET.Element:
        if not self.answer:
            raise IqError("service-unavailable", "cancel")
        now = datetime.now(timezone.utc)
        offset = timedelta(0)
        if self.reveal_timezone:
            offset = now.astimezone().utcoffset() or timedelta(0)
        time = ET.Element(_TIME)
        ET.SubElement(time, "{%s}tzo" % TIME_NS).text = format_offset(offset)
        # XEP-0202 §4: UTC, in the XEP-0082 DateTime profile.
        ET.SubElement(time, "{%s}utc" % TIME_NS).text = format_datetime(now)
        return time
