"""simplexmpp: a blocking XMPP client library for Python code that does not want asyncio."""

import logging

from . import errors
from .client import EVENTS, Client
from .component import Component
from .extension import Extension, Session
from .jid import JID
from .pool import Pool
from .roster import Roster, RosterItem
from .stanza import Iq, Message, Presence

__version__ = "0.1.0"

# A library does not decide where its log goes: without logging configured by the application,
# nothing is printed (not even warnings, which Python would otherwise write to stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["Client", "Component", "Pool", "JID", "Message", "Presence", "Iq", "Roster",
           "RosterItem", "Extension", "Session", "errors", "EVENTS", "__version__"]
