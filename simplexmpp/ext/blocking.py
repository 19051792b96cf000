"""XEP-0191 Blocking Command.

```python
client.blocking.block("spammer@example.net")
client.blocking.list()  # -> {JID('spammer@example.net')}
```

The server tells every session of the account that has fetched the list (`list()`) when it
changes (§3.3, §3.4); those pushes keep `blocked` current and fire the
`"blocklist_changed"` event with the new set.
"""

from __future__ import annotations

import builtins
import logging
import threading
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension
from ..errors import IqError
from ..jid import JID
from ..session import from_own_account
from ..stanza import Iq

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Blocking", "BLOCKING_NS"]

log = logging.getLogger(__name__)

BLOCKING_NS = "urn:xmpp:blocking"
_ITEM = "{%s}item" % BLOCKING_NS


class Blocking(Extension):
    """`client.blocking`."""

    name = "blocking"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._lock = threading.Lock()
        self._blocked: set[JID] = set()
        client.declare_event("blocklist_changed")
        client.register_iq_handler("set", "{%s}block" % BLOCKING_NS, self._push)
        client.register_iq_handler("set", "{%s}unblock" % BLOCKING_NS, self._push)

    @property
    def blocked(self) -> frozenset[JID]:
        """The block list as last fetched or pushed."""
        with self._lock:
            return frozenset(self._blocked)

    def list(self, timeout: float | None = None) -> set[JID]:
        """Fetch the block list (§3.2)."""
        reply = self._client.iq(Iq.get(None, ET.Element("{%s}blocklist" % BLOCKING_NS)),
                                timeout)
        jids = self._jids(reply.payload)
        with self._lock:
            self._blocked = set(jids)
        return set(jids)

    def block(self, *jids: JID | str, timeout: float | None = None) -> None:
        """Block `jids` (§3.3): no stanzas from them, our presence hidden from them."""
        if not jids:
            raise ValueError("block() needs at least one JID (§3.3)")
        self._client.iq(Iq.set(None, self._request("block", jids)), timeout)
        with self._lock:
            self._blocked.update(JID(str(j)) for j in jids)

    def unblock(self, *jids: JID | str, timeout: float | None = None) -> None:
        """Unblock `jids`; with none given, unblock everybody (§3.5)."""
        self._client.iq(Iq.set(None, self._request("unblock", jids)), timeout)
        with self._lock:
            if jids:
                self._blocked.difference_update(JID(str(j)) for j in jids)
            else:
                self._blocked.clear()

    def _request(self, tag: str, jids: tuple[JID | str, ...]) -> ET.Element:
        element = ET.Element("{%s}%s" % (BLOCKING_NS, tag))
        for jid in jids:
            ET.SubElement(element, _ITEM, jid=str(JID(str(jid))))
        return element

    @staticmethod
    def _jids(element: ET.Element | None) -> "builtins.list[JID]":
        found = []
        for item in (element.iterfind(_ITEM) if element is not None else ()):
            try:
                found.append(JID(item.get("jid", "")))
            except ValueError as exc:
                log.info("ignoring a bad JID in the block list: %s", exc)
        return found

    def _push(self, iq: Iq) -> None:
        # Only our own account may push (as with roster pushes, RFC 6121 §2.1.6).
        if not from_own_account(iq.xml.get("from"), self._client.account):
            raise IqError("service-unavailable", "cancel")
        payload = iq.payload
        assert payload is not None
        jids = self._jids(payload)
        with self._lock:
            if payload.tag.endswith("}block"):
                self._blocked.update(jids)
            elif jids:
                self._blocked.difference_update(jids)
            else:
                self._blocked.clear()
            current = set(self._blocked)
        self._client.emit("blocklist_changed", current)
