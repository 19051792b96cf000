"""The receive path without a server: bytes through Client._read (the I/O thread's own loop)
to the inbox, duplicate detection (XEP-0359) and interceptors, over a replayed transcript."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest

from simplexmpp import Client, Message
from simplexmpp.connection import ClientState
from simplexmpp.errors import StreamError
from simplexmpp.jid import JID
from simplexmpp.stream import ClientStream, Ready, StartTLS
from simplexmpp.transport import Target
from simplexmpp.xml import StreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='b1' "
          b"version='1.0' xml:lang='en'>")


class FeedWire:
    """Stands in for transport.Wire in Client._read: the given chunks, then None."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)

    def recv(self) -> bytes | None:
        return next(self._it, None)


def ready_client() -> tuple[Client, ClientStream]:
    """A Client whose stream was driven to the ready state (XEP-0198 on) by a transcript."""
    client = Client("bob@localhost/phone", "password")
    stream = client._conn.role.new_stream(client, Target("127.0.0.1", 5222, False), {}, None)
    client._conn.stream = client._core.stream = stream
    client._conn.state = ClientState.CONNECTING  # as connect() leaves it
    stream.start()

    sent = [b""]

    def server(data: bytes) -> list[object]:
        events = list(stream.receive_data(data))
        sent[0] = stream.data_to_send()
        return events

    def bind_id() -> bytes:   # the id of the bind request the stream just sent
        match = re.search(rb'<iq type="set" id="([^"]+)"', sent[0])
        assert match is not None, sent[0]
        return match.group(1)

    server(HEADER + b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                    b"<required/></starttls></stream:features>")
    assert server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") == [StartTLS()]
    stream.tls_established({})
    stream.data_to_send()
    server(HEADER + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>")
    server(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    server(HEADER + b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                    b"<sm xmlns='urn:xmpp:sm:3'/></stream:features>")
    server(b"<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           b"<jid>bob@localhost/phone</jid></bind></iq>" % bind_id())
    events = server(b"<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")
    assert any(isinstance(e, Ready) for e in events)
    client._conn.session_ready(JID("bob@localhost/phone"), stream.features, resumed=False)
    return client, stream


def message(n: int | str, *, sender: str = "alice@localhost/laptop", type: str = "chat",
            origin: str | None = "auto", extra: str = "") -> bytes:
    oid = f"o{n}" if origin == "auto" else origin
    origin_el = f"<origin-id xmlns='urn:xmpp:sid:0' id='{oid}'/>" if oid is not None else ""
    return (f"<message from='{sender}' to='bob@localhost/phone' type='{type}' id='m{n}'>"
            f"<body>message {n}</body>{origin_el}{extra}</message>").encode()


def read(client: Client, stream: ClientStream, data: bytes, size: int = 4096) -> None:
    client._conn._read(FeedWire(data[i:i + size] for i in range(0, len(data), size)),
                 stream)  # type: ignore[arg-type]


def bodies(client: Client) -> list[str | None]:
    out = []
    while client._inbox.qsize():
        item = client._inbox.get()
        assert isinstance(item, Message)
        out.append(item.body)
    return out


@pytest.mark.parametrize("size", [1, 7, 200, 4096])
def test_every_message_reaches_the_inbox_as_a_message(size: int) -> None:
    client, stream = ready_client()
    read(client, stream, b"".join(message(i) for i in range(50)), size)
    assert stream.sm is not None and stream.sm.inbound == 50
    first = client.next_message(timeout=0)
    assert isinstance(first, Message) and first.body == "message 0"
    assert first.from_ == JID("alice@localhost/laptop") and first.origin_id == "o0"
    assert bodies(client) == [f"message {i}" for i in range(1, 50)]


def test_stanzas_and_nonzas_in_one_read_keep_their_order() -> None:
    client, stream = ready_client()
    read(client, stream, message(1) + b"<r xmlns='urn:xmpp:sm:3'/>" + message(2) +
         b"<presence from='alice@localhost/laptop'/>" + message(3))
    assert bodies(client) == ["message 1", "message 2", "message 3"]
    assert stream.sm is not None and stream.sm.inbound == 4
    # The <r/> is answered with our next output (or alone after Client.ack_delay), counting
    # everything handled by then (XEP-0198 §4 allows a later, larger h).
    assert stream.ack_pending and not client._conn.outbuf
    stream.send_ack()
    assert stream.data_to_send() == b'<a xmlns="urn:xmpp:sm:3" h="4"/>'


def test_repeats_are_dropped_by_sender_and_origin_id() -> None:
    client, stream = ready_client()
    read(client, stream, message(1) + message(1, sender="ALICE@localhost/phone") +
         message(1, sender="carol@localhost/pc") + message(2, origin=None) +
         message(2, origin=None) + message(3, origin=""))
    # Same bare JID (any resource, any case) and origin-id: a repeat. Another sender, or no
    # origin-id at all, is not.
    assert bodies(client) == ["message 1", "message 1", "message 2", "message 2", "message 3"]
    assert client.duplicates_dropped == 1


def test_repeats_by_our_archive_stanza_id() -> None:
    client, stream = ready_client()
    ours = "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='A1'/>"
    theirs = "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@localhost' id='A2'/>"
    read(client, stream, message(1, origin=None, extra=ours) +
         message(2, origin=None, extra=ours) + message(3, origin=None, extra=theirs) +
         message(4, origin=None, extra=theirs))
    assert bodies(client) == ["message 1", "message 3", "message 4"]
    assert client.last_stanza_id == "A1" and client.duplicates_dropped == 1


def test_a_message_with_an_origin_id_is_known_by_it_whatever_its_stanza_id() -> None:
    # A re-send after a failed resumption gets a new stanza-id from the server and keeps its
    # origin-id; an archive copy keeps both. One key per message: the origin's.
    client, stream = ready_client()
    read(client, stream,
         message(1, extra="<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='A1'/>") +
         message(1, extra="<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='A2'/>") +
         message(1) +
         message(2, extra="<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='A3'/>"))
    assert bodies(client) == ["message 1", "message 2"]
    assert client.duplicates_dropped == 2 and client.last_stanza_id == "A3"
    assert len(client._core.seen_ids) == 2


def test_the_duplicate_window_forgets_the_oldest() -> None:
    client, stream = ready_client()
    client.duplicate_window = 3
    read(client, stream, b"".join(message(i) for i in range(5)) + message(0) + message(4))
    assert bodies(client) == [f"message {i}" for i in range(5)] + ["message 0"]
    assert len(client._core.seen_ids) == len(client._core.seen_order) == 3
    client.duplicate_window = 1  # made smaller: shrinks with the next message
    read(client, stream, message(9))
    assert list(client._core.seen_order) == ["alice@localhost\0o9"]


def test_interceptors_by_type_and_by_child_tag() -> None:
    client, stream = ready_client()
    seen: dict[str, list[str | None]] = {"headline": [], "normal": [], "tagged": []}

    def watch(name: str, claim: bool = False) -> Any:
        def interceptor(msg: Message) -> bool:
            seen[name].append(msg.id)
            return claim
        return interceptor

    # (a groupchat message from no joined room is claimed by client.muc: issue 14 item 5)
    client._router.add_interceptor("message", watch("headline", claim=True), types=("headline",))
    client._router.add_interceptor("message", watch("normal"), types=["normal"])
    client._router.add_interceptor("message", watch("tagged"), tags=("{urn:example}x",),
                           types=("chat",))
    x = "<x xmlns='urn:example'/>"
    read(client, stream, message(1) + message(2, type="groupchat") +
         message(3, type="normal") + message(4, type="bogus") + message(5, extra=x) +
         message(6, type="headline", extra=x))
    assert seen == {"headline": ["m6"], "normal": ["m3", "m4"], "tagged": ["m5"]}
    # The claimed messages never reach the inbox; the others do.
    assert bodies(client) == ["message 1", "message 3", "message 4", "message 5"]


def test_message_callbacks_get_messages_and_errors_stay_out_of_the_inbox() -> None:
    client, stream = ready_client()
    got: list[Any] = []
    client._events.queue_bounded = lambda fn, args: got.append(  # type: ignore
        (fn.__name__, args))
    client.on("message", lambda msg: None)
    client.on("message_error", lambda msg: None)
    read(client, stream, message(1) + message(2, type="error"))
    assert [type(args[0]) for _, args in got] == [Message, Message]
    assert [args[0].id for _, args in got] == ["m1", "m2"]
    assert client._inbox.qsize() == 0  # callbacks only, nobody iterates messages()


def test_hostile_input_after_good_stanzas_is_a_typed_error() -> None:
    client, stream = ready_client()
    with pytest.raises(StreamError) as info:
        read(client, stream, message(1) + b"<!-- no -->" + message(2))
    assert info.value.condition == "restricted-xml"


def test_a_deep_stanza_among_many_small_ones_in_one_read_is_refused() -> None:
    # The parser takes a read's complete stanzas at once unless one of them could be
    # deeper than the limit; this one can only be found by counting.
    small = b"<message><body>x</body></message>" * 30
    deep = b"<message>" + b"<a>" * 25 + b"</a>" * 25 + b"</message>"
    for data in (small + deep + small, deep + small, small + deep):
        parser = StreamParser(max_depth=20)
        parser.feed(HEADER)
        with pytest.raises(StreamError) as info:
            parser.feed(data)
        assert info.value.condition == "policy-violation"
    parser = StreamParser(max_depth=20)
    parser.feed(HEADER)
    nested = b"<message>" + b"<a>" * 18 + b"</a>" * 18 + b"</message>"  # depth 20: allowed
    assert len(parser.feed(small + nested * 3 + small)) == 63


def test_a_stanza_split_over_reads_keeps_its_element_count() -> None:
    parser = StreamParser(max_depth=20)
    parser.feed(HEADER)
    # Too deep, but closed again before the read ends (the open elements are not): the
    # end events of the first read count when the stanza completes in the second.
    deep = b"<message>" + b"<a>" * 25 + b"</a>" * 25 + b"<body>x</body></message>"
    assert len(parser.feed(b"<message><body>x</body></message>" + deep[:-10])) == 1
    with pytest.raises(StreamError) as info:
        parser.feed(deep[-10:] + b"<message/>")
    assert info.value.condition == "policy-violation"
