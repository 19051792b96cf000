"""XEP-0461 Message Replies, with the XEP-0428 quote fallback: `client.replies`.

```python
client.replies.reply(msg, "Great idea!")     # quotes msg for clients without XEP-0461
for msg in client.messages():
    if msg.reply_to:                          # simplexmpp.stanza.Reply(id, to)
        text = msg.body_without_fallback(REPLY_NS)   # the answer without the quote
```

A reply names the message it answers (in a room by the room's stanza-id, XEP-0359, and its
author's occupant JID) and may start with a quotation of it (`> ` lines) for clients that do
not support replies; an XEP-0428 `<fallback for="urn:xmpp:reply:0">` marks that quotation so
clients that do support them can drop it
([Message.body_without_fallback][simplexmpp.stanza.Message.body_without_fallback]).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from ..stanza import FALLBACK_NS, REPLY_NS, Message
from .reactions import reference

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["MessageReplies", "REPLY_NS", "quote"]


def quote(text: str) -> str:
    """`text` as an XEP-0393 quotation: each line prefixed with `> `, ending in a newline."""
    return "".join(f"> {line}\n" for line in text.split("\n"))


class MessageReplies(Extension):
    """`client.replies`: send XEP-0461 replies."""

    name = "replies"
    features = (REPLY_NS, FALLBACK_NS)

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def send(self, to: JID | str, body: str, reply_to: str, *, author: JID | str | None = None,
             quoted: str | None = None, type: str = "chat",
             timeout: float | None = None) -> str:
        """Send `body` as a reply to message `reply_to` (its id; in a room its stanza-id);
        return the new message's id.

        Args:
            to: The recipient (the room, for a groupchat reply).
            body: The answer.
            reply_to: The id of the message answered.
            author: Who wrote it (full JID; in a room the occupant JID), if known.
            quoted: Text of the original to quote ahead of `body` as a fallback (XEP-0428
                marks it, §4 of XEP-0461), or None for no quotation.
            type: The message type.
            timeout: How long to wait for a reconnecting session.
        """
        if not reply_to:
            raise ValueError("reply_to: the id of the message answered is required")
        fallback = quote(quoted) if quoted else ""
        msg = self.client.new_message(to, fallback + body, type)
        attrs = {"id": reply_to}
        if author is not None:
            attrs["to"] = str(JID(author) if isinstance(author, str) else author)
        ET.SubElement(msg.xml, "{%s}reply" % REPLY_NS, attrs)
        if fallback:
            # XEP-0428 offsets count code points (XEP-0426), as Python strings do
            el = ET.SubElement(msg.xml, "{%s}fallback" % FALLBACK_NS, {"for": REPLY_NS})
            ET.SubElement(el, "{%s}body" % FALLBACK_NS, start="0", end=str(len(fallback)))
        self.client.send(msg, timeout)
        return msg.id or ""

    def reply(self, msg: Message, body: str, *, quote: bool = True,
              timeout: float | None = None) -> str:
        """Answer a received `msg` (to its sender, or to the room for a room message),
        quoting it unless `quote` is False; return the new message's id."""
        to, message_id, type = reference(msg)
        quoted = msg.body_without_fallback(REPLY_NS) if quote else None
        return self.send(to, body, message_id, author=msg.from_, quoted=quoted, type=type,
                         timeout=timeout)
