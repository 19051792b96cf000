"""XEP-0308 Last Message Correction.

```python
first = client.send_message("bob@localhost", "Helo")
client.correction.send("bob@localhost", "Hello", replaces=first)
```

A correction is an ordinary message (it lands in `messages()`); `replaced_id(msg)` tells
which earlier message it replaces. XEP-0308 §5: only the LAST message may be corrected, and a
receiver must check that the correction comes from the same full JID as the original.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Correction", "CORRECTION_NS", "replaced_id"]

CORRECTION_NS = "urn:xmpp:message-correct:0"
_REPLACE = "{%s}replace" % CORRECTION_NS


def replaced_id(msg: Message) -> str | None:
    """The id of the message `msg` corrects, or None."""
    replace = msg.xml.find(_REPLACE)
    return replace.get("id") if replace is not None else None


class Correction(Extension):
    """`client.correction`."""

    name = "correction"
    features = (CORRECTION_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def send(self, to: JID | str, body: str, replaces: str, type: str = "chat",
             timeout: float | None = None) -> str:
        """Send `body` as the corrected text of our message `replaces` (its id, §4);
        return the new message's id."""
        if not replaces:
            raise ValueError("replaces: the id of the message to correct is required")
        msg = self._client.new_message(to, body, type)
        ET.SubElement(msg.xml, _REPLACE, id=replaces)
        self._client.send(msg, timeout)
        return msg.id or ""

    @staticmethod
    def is_valid(original: Message, correction: Message) -> bool:
        """§5: a correction is only to be trusted from the sender of the original, and it
        must name the original's id."""
        return (replaced_id(correction) == original.id and original.from_ is not None
                and correction.from_ == original.from_)
