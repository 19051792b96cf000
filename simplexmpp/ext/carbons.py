"""XEP-0280 Message Carbons: see the chats our other devices have.

```python
client.carbons.enable()
```

Once enabled, messages addressed to our other resources arrive as carbon copies: they are
unwrapped and delivered like any incoming message (`messages()`, the `"message"` event)
and also reported as the `"carbon_received"` event. Copies of messages our other resources
sent are the `"carbon_sent"` event (they are not put in `messages()`: we did not receive
them). Carbons are accepted only from our own bare JID (§11): anything else that looks like
one is a forgery and is dropped with a log line. Carbons stay enabled across reconnects.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension, Session
from ..session import from_own_account
from ..stanza import Iq, Message

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Carbons", "CARBONS_NS"]

log = logging.getLogger(__name__)

CARBONS_NS = "urn:xmpp:carbons:2"
_FORWARDED = "{urn:xmpp:forward:0}forwarded"
_MESSAGE = "{jabber:client}message"
_RECEIVED = "{%s}received" % CARBONS_NS
_SENT = "{%s}sent" % CARBONS_NS


class Carbons(Extension):
    """`client.carbons`."""

    name = "carbons"
    features = (CARBONS_NS,)
    follow_sessions_from_start = False  # see follow_sessions(): from first use

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.enabled = False
        self.forged = 0
        """Carbons refused because they did not come from our own account."""
        client.declare_event("carbon_received")
        client.declare_event("carbon_sent")
        self._intercept_stanzas("message", self._intercept, tags=(_RECEIVED, _SENT))
        # New sessions are followed from the first enable() on (see session_started).

    def enable(self, timeout: float | None = None) -> None:
        """Ask the server for carbon copies (§4)."""
        self._client.iq(Iq.set(None, ET.Element("{%s}enable" % CARBONS_NS)), timeout)
        self.enabled = True
        self.follow_sessions()

    def disable(self, timeout: float | None = None) -> None:
        """Stop carbon copies (§5)."""
        self._client.iq(Iq.set(None, ET.Element("{%s}disable" % CARBONS_NS)), timeout)
        self.enabled = False

    @staticmethod
    def private(msg: Message) -> Message:
        """Mark `msg` so the server makes no carbons of it (§6)."""
        ET.SubElement(msg.xml, "{%s}private" % CARBONS_NS)
        ET.SubElement(msg.xml, "{urn:xmpp:hints}no-copy")
        return msg

    def session_started(self, session: Session) -> None:
        """Dispatcher thread: a new session (not a resumed one) starts without carbons
        (XEP-0280 §4: enabling is per session); enable them again. Followed only from the
        first enable() on, so the session during which it was called is not one of these."""
        if self.enabled and CARBONS_NS not in self._client.inline_features:
            # (Enabled inside the login already when the server does XEP-0386 Bind2.)
            try:
                self.enable()
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                log.warning("could not re-enable carbons after reconnecting: %s", exc)

    def _intercept(self, msg: Message) -> bool:
        element = msg.xml
        for child in element:
            if child.tag == _RECEIVED or child.tag == _SENT:
                break
        else:
            return False
        sender = element.get("from")
        if not from_own_account(sender, self._client.account):
            self.forged += 1
            log.warning("dropping a forged carbon from %s (XEP-0280 §11)", sender)
            return True
        inner = child.find(_FORWARDED + "/" + _MESSAGE)
        if inner is None:
            log.info("dropping a carbon without a forwarded message")
            return True
        copy = Message(inner)
        if not self._client.well_addressed(copy):
            return True  # logged by the check; user code never meets a malformed address
        omemo = getattr(self._client, "omemo", None)
        if omemo is not None and omemo.is_encrypted(copy):
            # An OMEMO copy (of a message to us, or one our other device sent): decrypted off
            # the I/O thread, since that may wait for the network, then handed on as below,
            # in arrival order with the other messages of that conversation.
            kind = child.tag
            peer = inner.get("to") if kind == _SENT else inner.get("from")
            omemo.decrypt_in_turn(copy, peer,
                                  lambda plain: self._hand_on(kind, plain, True))
            return True
        self._hand_on(child.tag, copy, inner.find("{jabber:client}body") is not None)
        return True

    def _hand_on(self, kind: str, copy: Message, has_body: bool) -> None:
        if kind == _RECEIVED:
            if has_body:
                self._client.deliver(copy)  # chat states, receipts: the event only
            self._client.emit("carbon_received", copy)
        else:
            self._client.emit("carbon_sent", copy)


