"""The pre-authentication connection of XEP-0077 in-band registration (package-private).

Not an extension: a [Client][simplexmpp.Client] whose connection plugs in
[PreAuthRole][simplexmpp._preauth.PreAuthRole], whose streams negotiate with the stream
layer's `PreAuthNegotiator`: they stop once TLS is up, before SASL (XEP-0077 §3.1). Nothing
of the client is overridden.
"""

from __future__ import annotations

from .client import Client
from .connection import LoginRole
from .stream import ClientStream, PreAuthNegotiator, SMState
from .transport import Target

__all__ = ["PreAuthRole"]


class PreAuthRole(LoginRole):
    """An account's stream up to TLS only: no SASL, no extensions, and nothing to confirm at
    disconnect() (every request it sends is answered; a ping before authentication is
    pointless)."""

    name = "pre-auth"
    confirms_output = False

    def attach_extensions(self, client: Client) -> None:
        pass  # nothing to attach: this client only sends registration IQs

    def new_stream(self, client: Client, target: Target, bindings: dict[str, bytes],
                   sm_state: SMState | None) -> ClientStream:
        return ClientStream(client.account, tls=self.tls_mode(client, target), sm=False,
                            max_stanza_size=client.max_stanza_size, lang=client.lang,
                            channel_bindings=bindings, negotiator=PreAuthNegotiator())

