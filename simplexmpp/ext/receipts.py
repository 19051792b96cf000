"""XEP-0184 Message Delivery Receipts.

```python
msg_id = client.receipts.send(to, "Did you get this?")
client.receipts.wait(msg_id, timeout=10)       # blocks until bob's client confirms
```

Requests we receive are answered automatically according to `reply_to`: `"subscribed"`
(the default; XEP-0184 §8: answering someone who may not see our presence leaks it), `"all"`
or `"none"`. A receipt is a message without a body; it is not put in `messages()` but
reported as the `"receipt"` event `(sender JID, id of the acknowledged message)`.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from .. import errors
from ..jid import JID
from ..stanza import Message, new_id

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Receipts", "RECEIPTS_NS"]

RECEIPTS_NS = "urn:xmpp:receipts"
_REQUEST = "{%s}request" % RECEIPTS_NS
_RECEIVED = "{%s}received" % RECEIPTS_NS


class Receipts(Extension):
    """`client.receipts`."""

    name = "receipts"
    features = (RECEIPTS_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.reply_to = "subscribed"
        self._acked: dict[str, JID | None] = {}
        self._changed = threading.Condition()
        client.declare_event("receipt")
        self._intercept_stanzas("message", self._intercept, tags=(_REQUEST, _RECEIVED))

    def send(self, to: JID | str, body: str, type: str = "chat", *,
             timeout: float | None = None) -> str:
        """Send a message asking for a receipt (§5.1); return its id."""
        msg = self._client.new_message(to, body, type)
        ET.SubElement(msg.xml, _REQUEST)
        self._client.send(msg, timeout)
        return msg.id or ""

    def received(self, msg_id: str) -> bool:
        with self._changed:
            return msg_id in self._acked

    def wait(self, msg_id: str, timeout: float | None = None) -> JID | None:
        """Block until the receipt for `msg_id` arrives; return who sent it."""
        limit = self.timeout(timeout)
        end = time.monotonic() + limit
        with self._changed:
            while msg_id not in self._acked:
                left = end - time.monotonic()
                if left <= 0:
                    raise errors.TimeoutError(f"no receipt for message {msg_id} within "
                                              f"{limit:g} s")
                self._changed.wait(left)
            return self._acked[msg_id]

    def _intercept(self, msg: Message) -> bool:
        element = msg.xml
        received = element.find(_RECEIVED)
        if received is not None:
            ack = received.get("id")
            if ack:
                sender = msg.from_
                with self._changed:
                    self._acked[ack] = sender
                    if len(self._acked) > 10000:
                        self._acked.pop(next(iter(self._acked)))
                    self._changed.notify_all()
                self._client.emit("receipt", sender, ack)
            return element.find("{jabber:client}body") is None
        if element.find(_REQUEST) is not None:
            # §5.4: no receipts for groupchat, nor for a request without an id, nor errors.
            if element.get("type") not in ("groupchat", "error") and msg.id and \
                    self._may_reply(msg.from_):
                reply = Message(to=msg.from_, type=element.get("type") or "normal",
                                id=new_id())
                ET.SubElement(reply.xml, _RECEIVED, id=msg.id)
                self._client.dispatch(self._send_quietly, reply)
        return False

    def _may_reply(self, sender: JID | None) -> bool:
        if sender is None or self.reply_to == "none":
            return False
        if self.reply_to == "all":
            return True
        item = self._client.roster.get(sender.bare)
        return item is not None and item.subscription in ("from", "both")

    def _send_quietly(self, msg: Message) -> None:
        try:
            self._client.send(msg)
        except errors.XMPPError:
            pass
