"""Archive catch-up after a lost session (XEP-0313) and hostile archive contents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

from simplexmpp import Client, Message


def _archived(sender: str, body: str) -> Message:
    element = ET.fromstring(f"<message xmlns='jabber:client' from='{sender}' "
                            f"to='alice@localhost' type='chat' id='{body}'>"
                            f"<body>{body}</body></message>")
    return Message(element)


def test_one_archived_message_with_a_malformed_sender_does_not_stop_the_catch_up() -> None:
    client = Client("alice@localhost", "secret")
    archive = [_archived("a@b@localhost", "forged"), _archived("bob@localhost/x", "kept")]

    def results(last_stanza_id: str | None) -> Iterator[Message]:
        return iter(archive)

    client.mam._catch_up_results = results  # type: ignore[method-assign]
    client.mam._on_resumption_failed(None)
    assert client.inbox_size == 1
    assert client.next_message(timeout=1).body == "kept"
