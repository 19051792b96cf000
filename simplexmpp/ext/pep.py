"""XEP-0163 Personal Eventing Protocol: pubsub on every account's bare JID.

```python
tune = ET.Element("{http://jabber.org/protocol/tune}tune")
client.pep.publish("http://jabber.org/protocol/tune", tune)
client.pep.subscribe_notify("http://jabber.org/protocol/tune")
client.on("pep_event", lambda jid, node, items: print(jid, node, items))
```

Publishing goes to our own account (nodes are created on first publish, XEP-0163 §3).
Contacts receive notifications for the nodes they are *interested* in, which they say by
advertising `<node>+notify` in their XEP-0115 capabilities (§4): `subscribe_notify(node)`
adds that feature and re-announces our presence. Notifications need a presence subscription
to the publisher (the default access model is `presence`, §5) and an available presence of
ours (`client.send_presence()`).

Events: `"pep_event"`: `callback(jid: JID, node: str, items: list[Item])` for items
published to an account's PEP node (`jid` is the bare JID of the publisher).
Retractions come with the general `"pubsub_event"` event of [`pubsub`][simplexmpp.ext.pubsub].
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..extension import Extension
from ..jid import JID
from .pubsub import Item, Options, PubSub

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["PEP", "NOTIFY_SUFFIX"]

NOTIFY_SUFFIX = "+notify"
"""XEP-0163 §4: the disco feature `<node>+notify` says "send me this node's events"."""


class PEP(Extension):
    """`client.pep`: publish to our own PEP service, read others', choose notifications."""

    name = "pep"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._lock = threading.Lock()
        pubsub = getattr(client, "pubsub", None)
        self._pubsub: PubSub = pubsub if isinstance(pubsub, PubSub) else PubSub(client)
        client.declare_event("pep_event")
        client.on("pubsub_event", self._on_pubsub_event)

    @property
    def notify_nodes(self) -> set[str]:
        """The nodes we currently ask notifications for."""
        return {f[:-len(NOTIFY_SUFFIX)] for f in self._client.local_features
                if f.endswith(NOTIFY_SUFFIX)}

    def publish(self, node: str, payload: ET.Element | None, id: str | None = None,
                options: Options | None = None, timeout: float | None = None) -> str:
        """Publish `payload` to our own `node`; return the item id. `options` are
        publish-options (e.g. `{"pubsub#access_model": "open"}`, XEP-0060 §7.1.5), which
        also configure a node created by this publish (XEP-0163 §3)."""
        return self._pubsub.publish(None, node, payload, id, options, timeout)

    def retract(self, node: str, id: str, notify: bool = True,
                timeout: float | None = None) -> None:
        """Retract item `id` from our own `node`."""
        self._pubsub.retract(None, node, id, notify, timeout)

    def items(self, jid: JID | str | None, node: str, max_items: int | None = None,
              item_ids: Iterable[str] | None = None,
              timeout: float | None = None) -> list[Item]:
        """Items of `jid`'s `node` (None: ours). Raises
        [`PubSubError`][simplexmpp.ext.pubsub.PubSubError] (`item-not-found` when the node does
        not exist or is not visible to us — Prosody hides nodes we may not access)."""
        service = JID(jid).bare if jid is not None else None
        return self._pubsub.items(service, node, max_items, item_ids, timeout)

    def delete(self, node: str, timeout: float | None = None) -> None:
        """Delete our own `node`."""
        self._pubsub.delete(None, node, timeout)

    def subscribe_notify(self, node: str, timeout: float | None = None) -> None:
        """Ask contacts' servers to send us `node` events: advertise `<node>+notify`
        (XEP-0163 §4) and re-send our presence so the new capabilities are seen."""
        self._set_interest(node, True, timeout)

    def unsubscribe_notify(self, node: str, timeout: float | None = None) -> None:
        """Stop advertising `<node>+notify`."""
        self._set_interest(node, False, timeout)

    def _set_interest(self, node: str, wanted: bool, timeout: float | None) -> None:
        if not isinstance(node, str) or not node:
            raise ValueError("a PEP node name must be a non-empty string")
        feature = node + NOTIFY_SUFFIX
        features = self._client.local_features
        with self._lock:
            if (feature in features) == wanted:
                return
            if wanted:
                features.add(feature)
            else:
                features.discard(feature)
        disco = getattr(self._client, "disco", None)
        update = getattr(disco, "update_caps", None)
        if callable(update):
            update(timeout=timeout)

    def _on_pubsub_event(self, service: JID, node: str, items: list[Item],
                         retracted: list[str]) -> None:
        # XEP-0163: a PEP service is an account's bare JID; a pubsub component has no
        # localpart. Notifications with items only (retractions stay on "pubsub_event").
        if service.local is None or not service.is_bare or not items:
            return
        self._client.emit("pep_event", service, node, items)
