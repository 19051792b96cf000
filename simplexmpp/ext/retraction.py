"""XEP-0424 Message Retraction: `client.retraction`.

```python
msg_id = client.send_message("bob@localhost", "Oops, wrong window")
client.retraction.retract("bob@localhost", msg_id)
for msg in client.messages():
    if msg.retraction:                       # simplexmpp.stanza.Retraction(id, ...)
        print(msg.from_, "retracted", msg.retraction.id)
```

Only the author may retract a message: a receiver applies a retraction only when it comes
from the same bare JID as the original (in a room: the same occupant id, XEP-0421, where the
room gives one, else the same nick); [MessageRetraction.applies_to][simplexmpp.ext.retraction.MessageRetraction.applies_to]
checks it. In a room the retracted message is named by the stanza-id the room gave it. The
retraction carries a fallback body (marked with XEP-0428 so supporting clients do not show
it) for clients that do not know retractions, and a store hint so archives keep it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import FALLBACK_NS, HINTS_NS, RETRACT_NS, Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["MessageRetraction", "RETRACT_NS", "FALLBACK_BODY"]

FALLBACK_BODY = "/me retracted a previous message, but it's unsupported by your client."
"""The body clients without XEP-0424 show for a retraction."""


class MessageRetraction(Extension):
    """`client.retraction`: retract our own messages (XEP-0424)."""

    name = "retraction"
    features = (RETRACT_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def retract(self, to: JID | str, message_id: str, type: str = "chat", *,
                fallback_body: str | None = FALLBACK_BODY,
                timeout: float | None = None) -> str:
        """Retract our message `message_id` sent to `to` (its id, which simplexmpp makes
        equal to its origin-id; in a room the stanza-id the room gave it, with
        `type="groupchat"`); return the retraction's id."""
        if not message_id:
            raise ValueError("message_id: the id of the message to retract is required")
        msg = self.client.new_message(to, fallback_body, type)
        ET.SubElement(msg.xml, "{%s}retract" % RETRACT_NS, id=message_id)
        if fallback_body is not None:
            ET.SubElement(msg.xml, "{%s}fallback" % FALLBACK_NS, {"for": RETRACT_NS})
        ET.SubElement(msg.xml, "{%s}store" % HINTS_NS)
        self.client.send(msg, timeout)
        return msg.id or ""

    def retract_in_room(self, reflected: Message, timeout: float | None = None) -> str:
        """Retract our own room message, given the copy the room reflected to us (it carries
        the room's stanza-id); return the retraction's id."""
        sender = reflected.from_
        if reflected.type != "groupchat" or sender is None:
            raise ValueError("retract_in_room() takes a groupchat message reflected by a room")
        room = sender.bare
        stanza_id = reflected.stanza_id(room)
        if not stanza_id:
            raise ValueError(f"the room {room} gave this message no stanza-id (XEP-0359)")
        return self.retract(room, stanza_id, "groupchat", timeout=timeout)

    @staticmethod
    def applies_to(original: Message, retraction: Message) -> bool:
        """Whether `retraction` may retract `original`: it names it, and comes from its
        author (the same bare JID; in a room the same occupant id when both carry one, else
        the same occupant JID). XEP-0424 §6: a receiver must not let anyone else retract."""
        info = retraction.retraction
        if info is None or original.from_ is None or retraction.from_ is None:
            return False
        if original.type == "groupchat":
            room = original.from_.bare
            if info.id != original.stanza_id(room) or retraction.from_.bare != room:
                return False
            if original.occupant_id and retraction.occupant_id:
                return original.occupant_id == retraction.occupant_id
            return original.from_ == retraction.from_
        return info.id in (original.id, original.origin_id) \
            and original.from_.bare == retraction.from_.bare
