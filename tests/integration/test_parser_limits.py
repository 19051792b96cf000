"""Parser limits against a live peer (issue 14 items 1 and 2): a stranger inventing names
through a real Prosody; steady traffic split inside stanzas is not a slow stanza. (A start
tag dripped for ever is a case of test_hostile's test_endless_trickled_stanza_ends_the_stream.)"""

from __future__ import annotations

import gc
import time
import tracemalloc

from .hostile import Conn
from .test_hostile import hostile  # noqa: F401  (the fixture)

MiB = 1 << 20


def test_names_a_stranger_invents_do_not_grow_the_victims_parser(connect) -> None:
    # Another account sends body-less messages full of element, attribute and namespace
    # names nobody used before; Prosody routes them as they are. Before the parser was
    # replaced at stanza boundaries, 0.8 MiB of them left the victim holding 12 MiB more.
    victim, eve = connect(), connect(stream_management=False)  # eve keeps no copies
    assert victim.jid is not None
    victim_jid = victim.jid  # the full JID: no presence needed for delivery
    stream = victim._conn.stream
    assert stream is not None
    replaced_before = stream.parser_replacements
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sent = n = 0
        while sent < 2 * MiB:
            message = eve.new_message(victim_jid, None, type="normal")
            for _ in range(60):
                message.xml.append(message.xml.makeelement(
                    f"{{urn:invented:{n}}}e{n}", {f"a{n}": "v"}))
                n += 1
            sent += len(str(message))
            eve.send(message)
        eve.send_message(victim_jid, "done", type="normal")
        for received in victim.messages(timeout=60):  # taken out: the inbox keeps none
            if received.body == "done":
                break
        else:
            raise AssertionError("the last message never arrived")
        del received
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Without replacement: ~11 bytes held per byte of names (about 20 MiB here).
    assert grown < 8 * MiB, f"the victim holds {grown / MiB:.1f} MiB more"
    assert stream.parser_replacements > replaced_before


def test_steady_traffic_split_inside_stanzas_is_not_a_slow_stanza(hostile) -> None:  # noqa: F811
    # Every write ends inside a stanza, for longer than the client's timeout: the slow
    # stanza guard must see the stanzas completing, not one stanza that never ends.
    opening = "<message from='a@localhost/x' type='chat'><bo"

    def script(conn: Conn) -> None:
        conn.anonymous_session()
        conn.send(opening)
        deadline = time.monotonic() + 3.5   # the pace of the traffic is the scenario
        i = 0
        while time.monotonic() < deadline:
            conn.send(f"dy>{i}</body></message>{opening}")
            time.sleep(0.01)
            i += 1
        conn.send("dy>end</body></message>")
        conn.read_until("</stream:stream>")

    server, client = hostile(script, timeout=1)
    client.connect()
    bodies = []
    for msg in client.messages(timeout=20):
        bodies.append(msg.body)
        if msg.body == "end":
            break
    assert bodies[-1] == "end" and client._conn.error is None
    assert bodies[:-1] == [str(i) for i in range(len(bodies) - 1)]
    client.disconnect()
