"""XEP-0333 Chat Markers: "received", "displayed", "acknowledged".

```python
msg_id = client.markers.send_markable("bob@localhost", "Read me")
client.markers.mark(msg)                     # tell its sender we displayed it
```

Incoming markers are the `"marker"` event `(sender JID, marker, id of the marked
message)`; a message that carries only a marker is not put in `messages()`. In a MUC the
id to mark is the room's stanza-id (XEP-0333 §4.3); `mark()` picks it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Markers", "MARKERS_NS", "MARKERS"]

MARKERS_NS = "urn:xmpp:chat-markers:0"
MARKERS = ("received", "displayed", "acknowledged")
_TAGS = {"{%s}%s" % (MARKERS_NS, m): m for m in MARKERS}


class Markers(Extension):
    """`client.markers`."""

    name = "markers"
    features = (MARKERS_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        client.declare_event("marker")
        self._intercept_stanzas("message", self._intercept, tags=_TAGS)

    def send_markable(self, to: JID | str, body: str, type: str = "chat",
                      timeout: float | None = None) -> str:
        """Send a message that invites markers (§3); return its id."""
        msg = self._client.new_message(to, body, type)
        ET.SubElement(msg.xml, "{%s}markable" % MARKERS_NS)
        self._client.send(msg, timeout)
        return msg.id or ""

    def send(self, to: JID | str, message_id: str, marker: str = "displayed",
             type: str = "chat", thread: str | None = None,
             timeout: float | None = None) -> None:
        """Send `marker` for message `message_id` to `to`."""
        if marker not in MARKERS:
            raise ValueError(f"marker must be one of {', '.join(MARKERS)}, not {marker!r}")
        msg = Message(to=to, type=type, thread=thread)
        ET.SubElement(msg.xml, "{%s}%s" % (MARKERS_NS, marker), id=message_id)
        self._client.send(msg, timeout)

    def mark(self, msg: Message, marker: str = "displayed",
             timeout: float | None = None) -> None:
        """Answer a received `msg` with `marker` (to a room: by its stanza-id)."""
        sender = msg.from_
        if sender is None:
            raise ValueError("cannot mark a message without a sender")
        if msg.type == "groupchat":
            target = sender.bare
            message_id = msg.stanza_id(target) or msg.id
        else:
            target, message_id = sender, msg.id
        if not message_id:
            raise ValueError("the message has no id to mark")
        self.send(target, message_id, marker, msg.type, msg.thread, timeout)

    def _intercept(self, msg: Message) -> bool:
        for child in msg.xml:
            marker = _TAGS.get(child.tag)
            if marker is not None and child.get("id"):
                self._client.emit("marker", msg.from_, marker, child.get("id"))
                return msg.xml.find("{jabber:client}body") is None
        return False
