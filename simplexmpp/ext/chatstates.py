"""XEP-0085 Chat State Notifications.

```python
client.chatstates.send("bob@localhost", "composing")
```

Incoming states are reported as the `"chat_state"` event `(sender JID, state, message)`.
A message that carries only a chat state (no body) is not put in `messages()`;
`chat_state_of(msg)` reads the state of any message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["ChatStates", "CHATSTATES_NS", "STATES", "chat_state_of"]

CHATSTATES_NS = "http://jabber.org/protocol/chatstates"
STATES = ("active", "composing", "paused", "inactive", "gone")
_TAGS = {"{%s}%s" % (CHATSTATES_NS, s): s for s in STATES}


def chat_state_of(msg: Message) -> str | None:
    for child in msg.xml:
        state = _TAGS.get(child.tag)
        if state is not None:
            return state
    return None


class ChatStates(Extension):
    """`client.chatstates`."""

    name = "chatstates"
    features = (CHATSTATES_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        client.declare_event("chat_state")
        self._intercept_stanzas("message", self._intercept, tags=_TAGS)

    def send(self, to: JID | str, state: str, type: str = "chat",
             timeout: float | None = None) -> None:
        """Send a standalone notification (§5.1: no body). `state` is one of STATES."""
        if state not in STATES:
            raise ValueError(f"chat state must be one of {', '.join(STATES)}, not {state!r}")
        msg = Message(to=to, type=type)
        ET.SubElement(msg.xml, "{%s}%s" % (CHATSTATES_NS, state))
        # XEP-0334 hint: a standalone state is not worth archiving or storing offline.
        ET.SubElement(msg.xml, "{urn:xmpp:hints}no-store")
        self._client.send(msg, timeout)

    def _intercept(self, msg: Message) -> bool:
        state = chat_state_of(msg)
        if state is None or msg.xml.get("type") == "error":
            return False
        self._client.emit("chat_state", msg.from_, state, msg)
        return msg.xml.find("{jabber:client}body") is None
