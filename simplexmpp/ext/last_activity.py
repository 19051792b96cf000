"""XEP-0012 Last Activity: how long ago an entity was last active, both sides.

```python
client.last_activity.get("alice@example.org")        # offline user: since last logout
client.last_activity.get("alice@example.org/phone")  # online resource: idle time
client.last_activity.get("example.org")              # a server: its uptime
# -> LastActivity(seconds=42, status='Gone fishing')
```

What the number means depends on whom we ask (XEP-0012 §2): a bare JID is answered by the
user's server (seconds since the account's last logout, and its last unavailable status; 0
or an error while online), a full JID by that client (seconds since its user was last
active), a server or service by itself (its uptime). A server refuses a bare-JID query
(`forbidden`) from someone without a presence subscription (§3.1).

Our own answer (queries to our full JID, §4) is the time since our user's last activity:
the connect, an available presence we sent, or [mark_active][simplexmpp.ext.last_activity.LastActivityExtension.mark_active]
(call it when your user does something). Like our presence, it is given only to whom
`client.last_activity.answer_to` allows: `"subscribed"` (the default: our own account
and contacts in [client.roster][simplexmpp.Client.roster] with a `from` or `both`
subscription), `"all"`, or `"none"`; others get `forbidden`.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

from ..errors import IqError
from ..extension import Extension
from ..jid import JID
from ..stanza import Iq, Presence

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["LastActivityExtension", "LastActivity", "LAST_NS"]

LAST_NS = "jabber:iq:last"
_QUERY = "{%s}query" % LAST_NS
_ANSWER_TO = ("subscribed", "all", "none")


class LastActivity(NamedTuple):
    """An answer: `seconds` (see the module text for what they count) and the `status`
    text the entity gave, if any; `when` is the moment it stands for."""

    seconds: int
    status: str | None = None
    received: datetime = datetime.min.replace(tzinfo=timezone.utc)

    @property
    def when(self) -> datetime:
        """`received` minus `seconds`: when the entity was last active (or came up)."""
        return self.received - timedelta(seconds=self.seconds)


class LastActivityExtension(Extension):
    """`client.last_activity`: XEP-0012 queries, and answers about our own idle time."""

    name = "last_activity"
    features = (LAST_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._lock = threading.Lock()
        self._active: datetime | None = None
        self.answer_to: str = "subscribed"
        """Who may learn our idle time: `"subscribed"`, `"all"` or `"none"`."""
        client.register_iq_handler("get", _QUERY, self._answer)
        client.presence_decorators.append(self._on_presence_sent)

    def get(self, jid: JID | str | None = None, timeout: float | None = None) -> LastActivity:
        """Ask `jid` (default: our server) for its last activity.

        Raises [IqError][simplexmpp.errors.IqError]: `forbidden` without the right to know,
        `service-unavailable` or `feature-not-implemented` without support, and
        `bad-request` when the answer has no valid `seconds`."""
        target = JID(jid) if jid is not None else JID(self.client.account.domain)
        reply = self.client.iq(Iq.get(target, ET.Element(_QUERY)), timeout)
        received = datetime.now(timezone.utc)
        payload = reply.payload
        if payload is None or payload.tag != _QUERY:
            raise IqError("bad-request", "modify",
                          f"the last activity answer of {target} has no query", reply)
        try:
            seconds = int(payload.get("seconds", ""))
        except ValueError:
            seconds = -1
        if seconds < 0:  # XEP-0012 §5: a non-negative integer, required
            raise IqError("bad-request", "modify",
                          f"the last activity answer of {target} has no valid seconds "
                          f"({payload.get('seconds')!r})", reply)
        return LastActivity(seconds, payload.text or None, received)

    def mark_active(self) -> None:
        """Our user did something now: our idle time starts again from zero."""
        with self._lock:
            self._active = datetime.now(timezone.utc)

    @property
    def idle(self) -> float:
        """Seconds since our user's last activity (or the latest `connect()`), as we
        answer them."""
        with self._lock:
            active = self._active
        session = self.client.session
        if session is not None and (active is None or session.connected > active):
            active = session.connected
        if active is None:
            return 0.0
        return max(0.0, (datetime.now(timezone.utc) - active).total_seconds())

    def _on_presence_sent(self, presence: Presence) -> None:
        if presence.xml.get("type") is None and presence.xml.get("to") is None:
            self.mark_active()

    def _may_answer(self, sender: JID | None) -> bool:
        if self.answer_to not in _ANSWER_TO:
            raise ValueError(f"answer_to must be one of {_ANSWER_TO}, not {self.answer_to!r}")
        if self.answer_to == "all":
            return True
        if self.answer_to == "none":
            return False
        if sender is None or sender.bare == self.client.account.bare:
            return True
        item = self.client.roster.get(sender.bare)
        return item is not None and item.subscription in ("from", "both")

    def _answer(self, iq: Iq) -> ET.Element:
        # XEP-0012 §4: a client answers with its user's idle time, only to whom it would
        # show its presence (§8: the information is as sensitive as presence).
        if not self._may_answer(iq.from_):
            raise IqError("forbidden", "auth")
        return ET.Element(_QUERY, seconds=str(int(self.idle)))
