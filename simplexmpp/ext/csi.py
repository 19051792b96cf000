"""XEP-0352 Client State Indication: tell the server whether a person is looking.

>>> client.csi.inactive()     # the server may now hold back unimportant traffic
>>> client.csi.active()

Only sent when the server offers it (``available``); the state is re-sent after a new
session (a resumed session keeps it, §5).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..errors import XMPPError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client
    from ..jid import JID

__all__ = ["CSI", "CSI_NS"]

CSI_NS = "urn:xmpp:csi:0"


class CSI:
    """``client.csi``."""

    def __init__(self, client: Client) -> None:
        self._client = client
        #: "active", "inactive", or None before either was sent.
        self.state: str | None = None
        # "connected" is watched once a state was sent (see Client._on_early).

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
        self._client._on_early("connected", self._on_connected)

    def _on_connected(self, jid: JID) -> None:
        if self.state is not None and self.available:
            try:
                self._client.send(ET.Element("{%s}%s" % (CSI_NS, self.state)), 0)
            except XMPPError:
                pass
