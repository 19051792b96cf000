"""XEP-0444 Message Reactions: `client.reactions`.

```python
client.reactions.react(msg, ["👍"])          # react to a received message (1:1 or in a room)
client.reactions.react(msg, [])              # take our reactions back
for msg in client.messages():
    if msg.reactions:                        # simplexmpp.stanza.Reactions(id, emojis)
        print(msg.from_, "now reacts", msg.reactions.emojis, "to", msg.reactions.id)
```

A reaction message carries the sender's whole current set of reactions to one message: each
one replaces the previous (§3), and an empty set removes them. It is delivered like any other
message (`messages()`, "message" callbacks) with [Message.reactions][simplexmpp.stanza.Message.reactions]
set and usually no body. In a room the reacted-to message is named by the stanza-id the room
gave it (XEP-0359; §3.2), and who reacted is best told by the sender's occupant id (XEP-0421,
[Message.occupant_id][simplexmpp.stanza.Message.occupant_id]) where the room supports it, else its nick.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import HINTS_NS, REACTIONS_NS, Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["MessageReactions", "REACTIONS_NS", "reference"]


def reference(msg: Message) -> tuple[JID, str, str]:
    """Where and by which id to refer to a received `msg` (for reactions, replies,
    retractions, markers): `(to, id, type)`.

    In a room (type groupchat) that is the room, the stanza-id the room gave the message
    (XEP-0359 §3.1: only the room's own counts) and "groupchat"; else the sender, the
    message's id and its type. Raises ValueError when `msg` has no usable id.
    """
    sender = msg.from_
    if sender is None:
        raise ValueError("the message has no sender to refer to")
    if msg.type == "groupchat":
        room = sender.bare
        stanza_id = msg.stanza_id(room)
        if not stanza_id:
            raise ValueError(f"the room {room} gave this message no stanza-id (XEP-0359), "
                             "so it cannot be referred to")
        return room, stanza_id, "groupchat"
    if not msg.id:
        raise ValueError("the message has no id to refer to")
    return sender, msg.id, msg.type if msg.type in ("chat", "normal") else "chat"


class MessageReactions(Extension):
    """`client.reactions`: send XEP-0444 reactions."""

    name = "reactions"
    features = (REACTIONS_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def send(self, to: JID | str, message_id: str, emojis: Iterable[str], type: str = "chat",
             timeout: float | None = None) -> str:
        """Send our reactions `emojis` (all of them: they replace our earlier ones, §3; none
        removes them) to message `message_id` of `to`; return the new message's id.

        Raises:
            ValueError: No message id, or a reaction that is empty or not a single line.
        """
        if not message_id:
            raise ValueError("message_id: the id of the message reacted to is required")
        reactions = list(dict.fromkeys(emojis))
        for emoji in reactions:
            if not isinstance(emoji, str) or not emoji.strip() or "\n" in emoji:
                raise ValueError(f"a reaction is a short non-empty text (an emoji), not "
                                 f"{emoji!r}")
        msg = self.client.new_message(to, None, type)
        el = ET.SubElement(msg.xml, "{%s}reactions" % REACTIONS_NS, id=message_id)
        for emoji in reactions:
            ET.SubElement(el, "{%s}reaction" % REACTIONS_NS).text = emoji
        # §3: without a body a server might not store it; ask it to (XEP-0334)
        ET.SubElement(msg.xml, "{%s}store" % HINTS_NS)
        self.client.send(msg, timeout)
        return msg.id or ""

    def react(self, msg: Message, emojis: Iterable[str], timeout: float | None = None) -> str:
        """React to a received `msg` (in a room by its stanza-id; see
        [reference][simplexmpp.ext.reactions.reference]); return the new message's id."""
        to, message_id, type = reference(msg)
        return self.send(to, message_id, emojis, type, timeout)
