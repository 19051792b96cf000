"""Hostile or careless input to the client's API (issue 14): a typed error, nothing left behind."""

from __future__ import annotations

import pytest

from simplexmpp import Client, errors


def test_send_message_to_a_lone_surrogate_is_a_jid_error() -> None:
    client = Client("alice@localhost", "pw")
    with pytest.raises(errors.JIDError):
        client.send_message("bob\ud800@localhost", "hi")
    with pytest.raises(errors.JIDError):
        client.new_message("bob@localhost/\udfff", "hi")
