"""The pre-authentication client of XEP-0077 in-band registration (package-private).

Not an extension: a variant of the client's connection that stops negotiating once TLS is
up, before SASL. It overrides the client's connection internals, which is why it lives
beside the client and not in `simplexmpp/ext` (whose modules use only the public extension
interface); the negotiator step of issue 15 replaces it.
"""

from __future__ import annotations

from .client import Client
from .stream import ClientStream
from .transport import Target

__all__ = ["PreAuthClient"]


class PreAuthClient(Client):
    """A client whose stream stops once TLS is up (before SASL), for XEP-0077 §3.1. It has no
    extensions, no stream management and does not reconnect."""

    def _load_extensions(self) -> None:
        pass  # nothing to attach: this client only sends registration IQs

    def _new_stream(self, target: Target, bindings: dict[str, bytes]) -> ClientStream:
        stream = super()._new_stream(target, bindings)
        stream.pre_auth = True
        return stream

    def _ask_confirmation(self) -> None:
        return None  # every request was answered; a ping before authentication is pointless

    def _flush(self, deadline: float, ping: object = None) -> tuple[bool, list[str]]:
        return True, []  # (see _ask_confirmation)
