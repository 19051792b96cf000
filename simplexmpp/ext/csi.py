"""XEP-0352 Client State Indication: tell the server whether a person is looking.

```python
client.csi.inactive()     # the server may now hold back unimportant traffic
client.csi.active()
```

Only sent when the server offers it (`available`); the state is re-sent after a new
session (a resumed session keeps it, §5).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..extension import Extension, Session
from ..errors import XMPPError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["CSI", "CSI_NS"]

CSI_NS = "urn:xmpp:csi:0"


class CSI(Extension):
    """`client.csi`."""

    name = "csi"
    follow_sessions_from_start = False  # see follow_sessions(): from first use

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.state: str | None = None
        """"active", "inactive", or None before either was sent."""
        # New sessions are followed once a state was sent (see session_started).

    @property
    def available(self) -> bool:
        """Whether the server announced CSI in its stream features."""
        features = self._client.features
        return features is not None and features.find("{%s}csi" % CSI_NS) is not None

    def active(self, timeout: float | None = None) -> None:
        self._set("active", timeout)

    def inactive(self, timeout: float | None = None) -> None:
        self._set("inactive", timeout)

    def _set(self, state: str, timeout: float | None) -> None:
        if not self.available:
            raise XMPPError("the server does not support client state indication "
                            "(XEP-0352)")
        # A nonza: not a stanza, not counted by stream management.
        self._client.send(ET.Element("{%s}%s" % (CSI_NS, state)), timeout)
        self.state = state
        self.follow_sessions()

    def session_started(self, session: Session) -> None:
        """Dispatcher thread: a new session starts active (XEP-0352 §5); send the state
        again (a resumed session keeps it)."""
        # (Sent inside the login already when the server does XEP-0386 Bind2.)
        if self.state is not None and self.available and \
                CSI_NS not in self._client.inline_features:
            try:
                self._client.send(ET.Element("{%s}%s" % (CSI_NS, self.state)), 0)
            except XMPPError:
                pass
