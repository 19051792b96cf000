"""XEP-0092 Software Version: ask an entity what software it runs, and answer for ourselves.

```python
client.version.get("localhost")
# -> SoftwareVersion(name='Prosody', version='0.12.4', os=None)
```

We answer with `name` and `version` only; the operating system is left out unless
`client.version.os` is set, because XEP-0092 §5 notes that it helps attackers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, NamedTuple

from ..extension import Extension
from ..errors import IqError
from ..jid import JID
from ..stanza import Iq

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Version", "SoftwareVersion", "VERSION_NS"]

VERSION_NS = "jabber:iq:version"
_QUERY = "{%s}query" % VERSION_NS


class SoftwareVersion(NamedTuple):
    name: str | None
    version: str | None
    os: str | None = None


class Version(Extension):
    """`client.version`."""

    name = "version"
    features = (VERSION_NS,)

    def __init__(self, client: Client) -> None:
        from .. import __version__
        super().__init__(client)
        self.name = "simplexmpp"  # type: ignore[misc]  # the software name we answer
        """What we answer; set `os` (e.g. to `platform.platform()`) to reveal it."""
        self.version: str = __version__
        self.os: str | None = None
        client.register_iq_handler("get", _QUERY, self._answer)

    def get(self, jid: JID | str | None = None, timeout: float | None = None) -> SoftwareVersion:
        """The software `jid` (default: our server) runs."""
        target = jid if jid is not None else self._client.account.domain
        reply = self._client.iq(Iq.get(target, ET.Element(_QUERY)), timeout)
        query = reply.payload
        if query is None or query.tag != _QUERY:
            raise IqError("bad-request", "modify", "software version answer without a query")
        return SoftwareVersion(query.findtext("{%s}name" % VERSION_NS),
                               query.findtext("{%s}version" % VERSION_NS),
                               query.findtext("{%s}os" % VERSION_NS))

    def _answer(self, iq: Iq) -> ET.Element:
        query = ET.Element(_QUERY)
        ET.SubElement(query, "{%s}name" % VERSION_NS).text = self.name
        ET.SubElement(query, "{%s}version" % VERSION_NS).text = self.version
        if self.os:
            ET.SubElement(query, "{%s}os" % VERSION_NS).text = self.os
        return query
