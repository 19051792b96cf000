"""XEP-0077 In-Band Registration: create an account, change its password, remove it.

```python
Client.register("newbie@example.org", "s3cret", host="127.0.0.1", ca_file="ca.crt")
with Client("newbie@example.org", "s3cret", host="127.0.0.1", ca_file="ca.crt") as c:
    c.registration.change_password("b3tter")
    c.registration.cancel()          # the account is gone; the server ends the stream
```

Creating an account happens before authentication (§3.1):
[`register_account()`][simplexmpp.ext.register.register_account] (behind the classmethod
`Client.register`) opens a stream that stops once TLS is up (`ClientStream(pre_auth=True)`), asks
the server which fields it wants (`iq get`), answers them (the data form when the server sends one,
§4, else the plain fields) and closes the stream. Changing the password (§3.3) and removing the
account (§3.2) happen on a logged-in client, as `client.registration`.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from .._preauth import PreAuthRole
from ..client import Client
from ..extension import Extension
from ..errors import DisconnectedError, IqError, XMPPError
from ..jid import JID
from ..stanza import Iq
from .forms import DATA_NS, Form

__all__ = ["Registration", "register_account", "RegistrationError", "AccountExistsError",
           "RegistrationNotSupportedError", "REGISTER_NS", "REGISTER_FEATURE_NS"]

log = logging.getLogger(__name__)

REGISTER_NS = "jabber:iq:register"
REGISTER_FEATURE_NS = "http://jabber.org/features/iq-register"
"""XEP-0077 §8: the stream feature a server offers when it allows in-band registration."""
OOB_NS = "jabber:x:oob"
_QUERY = "{%s}query" % REGISTER_NS
# Children of the query that are not fields to fill in (§3.1, §4, §6).
_NOT_FIELDS = {"instructions", "registered", "remove", "key"}


class RegistrationError(IqError):
    """The server refused a registration request (`condition` says why, e.g.
    `not-acceptable` for missing or invalid fields), or it asks for fields we lack."""

    def __init__(self, message: str, condition: str = "not-acceptable", type: str = "modify",
                 text: str | None = None, stanza: object = None) -> None:
        super().__init__(condition, type, text, stanza)
        self.args = (message,)


class AccountExistsError(RegistrationError):
    """XEP-0077 §3.1: the username is already registered (`conflict`)."""


class RegistrationNotSupportedError(XMPPError):
    """The server does not offer in-band registration (no stream feature, or it refuses the
    request outright); `instructions` and `url` say where to register instead, if given."""

    def __init__(self, message: str, instructions: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.instructions = instructions
        self.url = url


def _query(*children: ET.Element) -> ET.Element:
    query = ET.Element(_QUERY)
    query.extend(children)
    return query


def _field(name: str, value: str | None = None) -> ET.Element:
    element = ET.Element("{%s}%s" % (REGISTER_NS, name))
    if value is not None:
        element.text = value
    return element


def _refused(exc: IqError, what: str) -> IqError:
    """The typed exception for an error reply to a registration request."""
    detail = f" ({exc.text})" if exc.text else ""
    if exc.condition == "conflict":
        return AccountExistsError(f"{what}: the account already exists{detail}", exc.condition,
                                  exc.type, exc.text, exc.stanza)
    if exc.condition == "not-acceptable":
        return RegistrationError(f"{what}: the server did not accept the data (missing or "
                                 f"invalid fields, or a weak password){detail}", exc.condition,
                                 exc.type, exc.text, exc.stanza)
    return RegistrationError(f"{what}: the server answered {exc.condition}{detail}",
                             exc.condition, exc.type, exc.text, exc.stanza)


def build_submission(form_query: ET.Element, username: str, password: str,
                     fields: Mapping[str, str]) -> ET.Element:
    """The `iq set` payload answering the registration fields in `form_query` (the `iq get` result):
    the data form when there is one (XEP-0077 §4: it takes precedence and only one of the two is
    sent), else the plain fields. Raises
    [`RegistrationError`][simplexmpp.ext.register.RegistrationError] when the server asks for a
    field that neither the account nor `fields` fills."""
    values = {"username": username, "password": password, **fields}
    x = form_query.find("{%s}x" % DATA_NS)
    if x is not None and x.get("type", "form") == "form":
        form = Form.from_element(x)
        answer = Form(type="submit")
        missing = []
        for field in form.fields:
            if field.var is None or field.type == "fixed":
                continue
            if field.var == "FORM_TYPE":
                answer.set("FORM_TYPE", field.values, type="hidden")
            elif field.var in values:
                answer.set(field.var, values[field.var])
            elif field.required:
                missing.append(field.var)
            elif field.values:
                answer.set(field.var, field.values)
        if missing:
            raise RegistrationError(f"the server requires the registration field(s) "
                                    f"{', '.join(missing)}; pass fields={{...}} with them")
        return _query(answer.to_element())
    children = []
    missing = []
    for child in form_query:
        ns, _, name = child.tag[1:].partition("}")
        if ns != REGISTER_NS or name in _NOT_FIELDS:
            continue
        if name in values:
            children.append(_field(name, values[name]))
        else:
            missing.append(name)
    if missing:
        # §3.1: the entity MUST provide all the elements the host asked for.
        raise RegistrationError(f"the server requires the registration field(s) "
                                f"{', '.join(missing)}; pass fields={{...}} with them")
    if not any(c.tag.endswith("}username") for c in children):
        children.insert(0, _field("username", username))
    if not any(c.tag.endswith("}password") for c in children):
        children.insert(1, _field("password", password))
    return _query(*children)


def register_account(jid: JID | str, password: str, *, fields: Mapping[str, str] | None = None,
                     **connection_kwargs: Any) -> None:
    """Register `jid` with `password` (XEP-0077 §3.1); see `Client.register`.

    Raises [`AccountExistsError`][simplexmpp.ext.register.AccountExistsError] (the name is taken),
    [`RegistrationError`][simplexmpp.ext.register.RegistrationError] (the server refused the data,
    or wants fields not given in `fields`),
    [`RegistrationNotSupportedError`][simplexmpp.ext.register.RegistrationNotSupportedError], or the
    connection errors of `Client.connect`.
    """
    if not isinstance(password, str) or not password:
        raise ValueError("registering needs a non-empty password")
    account = JID(jid)
    if account.local is None:
        raise ValueError(f"{account} has no localpart; an account JID looks like "
                         "user@example.org")
    connection_kwargs.update(stream_management=False, reconnect=False)
    connection_kwargs.pop("resource", None)
    connection_kwargs.pop("load_extensions", None)  # this client only sends registration IQs
    client = Client(account.bare, password, load_extensions=False, role=PreAuthRole(),
                    **connection_kwargs)
    timeout = client.timeout
    client.connect()
    try:
        features = client.features
        if features is None or features.find("{%s}register" % REGISTER_FEATURE_NS) is None:
            raise RegistrationNotSupportedError(
                f"{account.domain} does not offer in-band registration (XEP-0077); create "
                "the account another way (the server's web site or its admin)")
        # §3.1: ask which fields the server wants rather than guessing them.
        try:
            reply = client.iq(Iq.get(None, _query()), timeout)
        except IqError as exc:
            if exc.condition in ("service-unavailable", "feature-not-implemented",
                                 "not-allowed", "forbidden"):
                raise RegistrationNotSupportedError(
                    f"{account.domain} refuses in-band registration ({exc.condition})") from None
            raise _refused(exc, f"registering {account}") from None
        form_query = reply.payload
        if form_query is None or form_query.tag != _QUERY:
            raise RegistrationError(f"registering {account}: the server sent no registration "
                                    "fields", "undefined-condition", "cancel")
        if form_query.find("{%s}registered" % REGISTER_NS) is not None:
            raise AccountExistsError(f"registering {account}: the account already exists",
                                     "conflict", "cancel")
        fillable = [c for c in form_query if c.tag.startswith("{%s}" % REGISTER_NS)
                    and c.tag.rpartition("}")[2] not in _NOT_FIELDS]
        if not fillable and form_query.find("{%s}x" % DATA_NS) is None:
            # §5 (alternative medium): only instructions and perhaps a web address.
            url = form_query.findtext("{%s}x/{%s}url" % (OOB_NS, OOB_NS))
            instructions = form_query.findtext("{%s}instructions" % REGISTER_NS)
            raise RegistrationNotSupportedError(
                f"{account.domain} does not register accounts in-band"
                + (f": {instructions}" if instructions else "")
                + (f" (see {url})" if url else ""), instructions, url)
        submission = build_submission(form_query, account.local, password, fields or {})
        try:
            client.iq(Iq.set(None, submission), timeout)
        except IqError as exc:
            raise _refused(exc, f"registering {account}") from None
        log.info("registered %s", account)
    finally:
        try:
            client.disconnect(timeout=min(timeout, 5.0))
        except XMPPError as exc:  # the account exists or not already; closing is a detail
            log.debug("closing the registration stream: %s", exc)


class Registration(Extension):
    """`client.registration`: change the password of, or remove, the logged-in account
    (XEP-0077 §3.3, §3.2). Creating accounts is `Client.register(...)`."""

    name = "registration"

    def __init__(self, client: Client) -> None:
        super().__init__(client)

    def change_password(self, new_password: str, timeout: float | None = None) -> None:
        """Change the account's password (§3.3); the client uses the new one when it has to log in
        again (reconnects). Raises [`RegistrationError`][simplexmpp.ext.register.RegistrationError]
        when the server refuses (`not-allowed`, `not-authorized`, `bad-request`)."""
        if not isinstance(new_password, str) or not new_password:
            # §3.3: an empty password would be ignored by the server; say so instead.
            raise ValueError("the new password must be a non-empty string")
        client = self._client
        username = client.account.local
        if username is None:
            raise ValueError(f"{client.account} is not an account JID")
        query = _query(_field("username", username), _field("password", new_password))
        try:
            client.iq(Iq.set(None, query), timeout)
        except IqError as exc:
            raise _refused(exc, f"changing the password of {client.account.bare}") from None
        # Reconnecting (a lost session that cannot be resumed) must log in with the new one.
        client.set_password(new_password)

    def cancel(self, timeout: float | None = None) -> None:
        """Remove the account from the server (§3.2). The server then ends the stream; the
        client ends with it cleanly (state `disconnected`, no reconnect, no error).

        Raises [`RegistrationError`][simplexmpp.ext.register.RegistrationError] when the server
        refuses, or [`DisconnectedError`][simplexmpp.errors.DisconnectedError] when the connection
        ended before the server confirmed (then the account may or may not be gone)."""
        client = self._client
        deadline = time.monotonic() + self.timeout(timeout)
        # The server SHOULD close the stream right after its answer (§3.2): say so before
        # asking, or the client would take the close for a failure and reconnect.
        client.expect_server_close()
        try:
            client.iq(Iq.set(None, _query(ET.Element("{%s}remove" % REGISTER_NS))),
                      max(0.01, deadline - time.monotonic()))
        except IqError as exc:
            client.expect_server_close(False)
            raise _refused(exc, f"removing {client.account.bare}") from None
        except DisconnectedError as exc:
            raise DisconnectedError(f"the connection ended before the server confirmed "
                                    f"removing {client.account.bare}; it may or may not be "
                                    f"removed: {exc}") from None
        except BaseException:
            client.expect_server_close(False)
            raise
        # Wait (briefly) for the server to end the stream, then make sure the client is down.
        grace_end = min(deadline, time.monotonic() + 5.0)
        while client.state not in ("disconnected", "closing") and \
                time.monotonic() < grace_end:
            time.sleep(0.02)
        if client.state != "disconnected":
            try:
                client.disconnect(max(0.1, deadline - time.monotonic()))
            except XMPPError as exc:  # the account is gone: nothing left to confirm
                log.debug("closing after removing the account: %s", exc)
