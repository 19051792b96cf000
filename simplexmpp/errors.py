"""Every exception simplexmpp raises, rooted at [`XMPPError`][simplexmpp.errors.XMPPError].

Subclasses also inherit the matching builtin (`TimeoutError`, `ConnectionError`,
`ValueError`) so that existing `except` clauses keep working.
"""

from __future__ import annotations

import builtins

__all__ = [
    "XMPPError", "ConnectionError", "TLSError", "AuthenticationError", "StreamError",
    "StanzaError", "IqError", "MessageError", "TimeoutError", "JIDError", "DisconnectedError",
    "NotSentError", "InvalidStanzaError", "NoXMPPServiceError", "OMEMOError",
    "OMEMOUnavailableError", "NoTrustedDevicesError",
]

# RFC 6120 §4.9.3: the defined stream error conditions.
STREAM_ERROR_CONDITIONS = frozenset({
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed", "policy-violation",
    "remote-connection-failed", "reset", "resource-constraint", "restricted-xml",
    "see-other-host", "system-shutdown", "undefined-condition", "unsupported-encoding",
    "unsupported-feature", "unsupported-stanza-type", "unsupported-version",
})

# RFC 6120 §8.3.3: the defined stanza error conditions.
STANZA_ERROR_CONDITIONS = frozenset({
    "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
    "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable", "not-allowed",
    "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
    "registration-required", "remote-server-not-found", "remote-server-timeout",
    "resource-constraint", "service-unavailable", "subscription-required",
    "undefined-condition", "unexpected-request",
})


class XMPPError(Exception):
    """Base class of every exception raised by simplexmpp."""


class ConnectionError(XMPPError, builtins.ConnectionError):
    """The TCP connection could not be made or was lost."""


class TLSError(ConnectionError):
    """TLS could not be negotiated: bad certificate, downgrade attempt, handshake failure."""


class NoXMPPServiceError(ConnectionError):
    """DNS says the domain offers no XMPP client service: its SRV record has the target "."
    (RFC 2782, RFC 6120 §3.2.1), so no connection is attempted."""


class AuthenticationError(XMPPError):
    """SASL authentication failed; `condition` is the SASL failure condition (RFC 6120 §6.5)."""

    def __init__(self, message: str, condition: str = "not-authorized", text: str | None = None):
        super().__init__(message)
        self.condition = condition
        self.text = text


class StreamError(XMPPError):
    """A stream-level error (RFC 6120 §4.9), sent by the peer or detected by us.

    `by_peer` says whether the server sent it (True) or we found the fault (False).
    `other_host` is set for `see-other-host`.
    """

    def __init__(self, condition: str, text: str | None = None, *, by_peer: bool = False,
                 other_host: str | None = None):
        who = "server reported" if by_peer else "stream failed with"
        message = f"{who} stream error {condition}"
        if text:
            message += f": {text}"
        if other_host:
            message += f" (server asks us to connect to {other_host})"
        super().__init__(message)
        self.condition = condition
        self.text = text
        self.by_peer = by_peer
        self.other_host = other_host


class StanzaError(XMPPError):
    """An error stanza (RFC 6120 §8.3): `condition`, `type` (cancel, continue, modify, auth,
    wait), `text`, and the original `stanza` wrapper."""

    kind = "stanza"

    def __init__(self, condition: str, type: str = "cancel", text: str | None = None,
                 stanza: object = None, by: str | None = None):
        sender = getattr(stanza, "from_", None)
        message = f"{self.kind} error {condition} ({type})"
        if sender is not None:
            message += f" from {sender}"
        if text:
            message += f": {text}"
        super().__init__(message)
        self.condition = condition
        self.type = type
        self.text = text
        self.stanza = stanza
        self.by = by


class IqError(StanzaError):
    """An IQ request was answered with an error."""

    kind = "iq"


class MessageError(StanzaError):
    """A message we sent bounced with an error."""

    kind = "message"


class TimeoutError(XMPPError, builtins.TimeoutError):
    """A blocking call did not complete within its timeout."""


class JIDError(XMPPError, ValueError):
    """A string is not a valid JID (RFC 7622)."""


class InvalidStanzaError(XMPPError, ValueError):
    """What the caller asked us to send cannot be sent: characters XML cannot carry, a body
    over the size limit, a malformed stanza. Raised before anything goes on the wire."""


class DisconnectedError(ConnectionError):
    """The operation cannot complete because the client is (or became) disconnected."""


class NotSentError(DisconnectedError):
    """`disconnect()` could not confirm delivery of some stanzas; `ids` lists them."""

    def __init__(self, message: str, ids: list[str]):
        super().__init__(message)
        self.ids = ids


class OMEMOError(XMPPError):
    """End-to-end encryption (OMEMO, XEP-0384) failed: the store cannot be read or written or
    is in use by another process, our keys could not be published, a device is unknown."""


class OMEMOUnavailableError(OMEMOError, ImportError):
    """OMEMO needs the optional packages `omemo`, `twomemo` and `oldmemo`:
    `pip install 'simplexmpp[omemo]'`."""


class NoTrustedDevicesError(OMEMOError):
    """An encrypted message cannot be sent: for the JIDs in `jids` no device publishes OMEMO
    keys we can use, or none of them is trusted (distrusted, or undecided under a manual trust
    policy). Nothing was sent."""

    def __init__(self, message: str, jids: list[str]):
        super().__init__(message)
        self.jids = jids
        """The bare JIDs without a device that could read the message."""
