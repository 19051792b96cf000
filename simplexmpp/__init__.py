"""simplexmpp: a blocking XMPP client library for Python code that does not want asyncio."""

from . import errors
from .client import EVENTS, Client
from .component import Component
from .jid import JID
from .pool import Pool
from .roster import Roster, RosterItem
from .stanza import Iq, Message, Presence

__version__ = "0.1.0"

__all__ = ["Client", "Component", "Pool", "JID", "Message", "Presence", "Iq", "Roster",
           "RosterItem", "errors", "EVENTS", "__version__"]
