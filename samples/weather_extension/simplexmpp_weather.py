"""A sample third-party simplexmpp extension: ``client.weather``.

Installed (``pip install samples/weather_extension``), it is attached to every new Client
through the entry point it registers. It advertises ``urn:example:weather`` in our
disco#info (and so in our XEP-0115 caps hash), answers weather queries other entities send
us, and keeps its reports across reconnects: they live in the extension object, which the
client keeps, and the session hooks tell it whether a reconnect resumed the session or
started a new one.

```python
client = simplexmpp.Client("bot@example.org", "secret")
client.weather.report("Paris", "sunny, 21 °C")
client.connect()
# another entity asks:  <iq type='get'><query xmlns='urn:example:weather' city='Paris'/></iq>
#             answer:   <query xmlns='urn:example:weather' city='Paris'>sunny, 21 °C</query>
```
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET

import simplexmpp
from simplexmpp.errors import IqError

log = logging.getLogger(__name__)

WEATHER_NS = "urn:example:weather"
_QUERY = "{%s}query" % WEATHER_NS


class Weather(simplexmpp.Extension):
    """``client.weather``: the reports we answer queries with."""

    name = "weather"
    features = (WEATHER_NS,)

    def __init__(self, client: simplexmpp.Client) -> None:
        super().__init__(client)
        self._lock = threading.Lock()
        self._reports: dict[str, str] = {}
        #: Every session this extension was told about: ("started" | "resumed", Session).
        self.sessions: list[tuple[str, simplexmpp.Session]] = []
        #: Queries answered, and the name of the thread each ran on (the dispatcher).
        self.answered: list[tuple[str, str]] = []
        # Public interface: an IQ handler, run on the client's dispatcher thread.
        client.register_iq_handler("get", _QUERY, self._answer)

    def report(self, city: str, text: str) -> None:
        """Set what we answer for ``city``."""
        with self._lock:
            self._reports[city.lower()] = text

    def ask(self, jid: simplexmpp.JID | str, city: str, timeout: float | None = None) -> str:
        """Ask another entity for the weather in ``city``."""
        query = ET.Element(_QUERY, city=city)
        reply = self.client.iq(simplexmpp.Iq.get(jid, query), timeout).payload
        return "" if reply is None else reply.text or ""

    # -- hooks (dispatcher thread) -------------------------------------------------------------
    def session_started(self, session: simplexmpp.Session) -> None:
        self.sessions.append(("started", session))
        if not session.first:
            log.info("weather: new session %d as %s; %d report(s) kept", session.number,
                     session.jid, len(self._reports))

    def session_resumed(self, session: simplexmpp.Session) -> None:
        self.sessions.append(("resumed", session))

    # -- answering -----------------------------------------------------------------------------
    def _answer(self, iq: simplexmpp.Iq) -> ET.Element:
        query = iq.payload
        city = "" if query is None else query.get("city", "")
        with self._lock:
            text = self._reports.get(city.lower())
        if text is None:
            raise IqError("item-not-found", "cancel", f"no weather report for {city!r}")
        self.answered.append((city, threading.current_thread().name))
        answer = ET.Element(_QUERY, city=city)
        answer.text = text
        return answer
