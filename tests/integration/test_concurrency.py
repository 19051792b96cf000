"""Many threads through one client: every IQ answered, every message delivered, no deadlock."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

from simplexmpp import Iq

THREADS = 16
PER_THREAD = 150


def test_sixteen_threads_send_messages_and_iqs_concurrently(connect) -> None:
    alice, bob = connect(), connect()
    bob.send_presence()
    errors: list[BaseException] = []
    answered = []
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        try:
            start.wait(10)
            for i in range(PER_THREAD):
                alice.send_message(bob.jid, f"t{n}-{i}")
                if i % 5 == 0:
                    if i % 10 == 0:
                        result = alice.iq(Iq.get(None, ET.Element("{jabber:iq:roster}query")),
                                          timeout=30)
                        answered.append(result.type)
                    else:
                        answered.append(alice.ping(timeout=30))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,), name=f"worker-{n}")
               for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a sending thread deadlocked"
    assert errors == []
    assert len(answered) == THREADS * (PER_THREAD // 5)
    expected = {f"t{n}-{i}" for n in range(THREADS) for i in range(PER_THREAD)}
    got = []
    for msg in bob.messages(timeout=20):
        got.append(msg.body)
        if len(got) == len(expected):
            break
    assert sorted(got) == sorted(expected)
    # per sending thread, order is kept
    for n in range(THREADS):
        mine = [b for b in got if b.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{i}" for i in range(PER_THREAD)]


def test_idle_dispatcher_thread_ends_and_comes_back_when_needed(connect) -> None:
    alice, bob = connect(), connect()
    bob.dispatcher_idle = 0.2
    got: list[str] = []
    runners: list[threading.Thread] = []
    arrived = threading.Event()

    def on_message(msg) -> None:
        got.append(msg.body)
        runners.append(threading.current_thread())
        arrived.set()

    bob.on("message", on_message)

    def dispatchers() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t.name == f"simplexmpp-dispatch-{bob.account.bare}"]

    for round_ in range(2):
        arrived.clear()
        alice.send_message(bob.jid, f"round {round_}")
        assert arrived.wait(10)
        # The thread that ran the callback is the only dispatcher. (Counting live ones
        # here raced with the 0.2 s idle end on a loaded machine.)
        runner = runners[-1]
        assert runner.name == f"simplexmpp-dispatch-{bob.account.bare}"
        assert dispatchers() in ([runner], [])
        runner.join(10)                  # it ends once idle ...
        assert not runner.is_alive() and not dispatchers()
    assert got == ["round 0", "round 1"]   # ... and the next callback starts it again
    assert runners[0] is not runners[1]
