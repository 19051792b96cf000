"""Fuzzing the whole client: mutated server traffic into a connected ``Client``, over a socket.

Each case is one connection to a scripted loopback server: ANONYMOUS login, bind (and, in
half the cases, XEP-0198 stream management), then bytes derived from a recorded Prosody
session (transcripts/prosody.json, see record_transcript.py) by seeded mutations, cut into
random reads, then the end of the stream. The client has callbacks that read every property
of what they get, and an IQ of its own waiting for an answer the mutations may forge.

Every case must end the same way: the client stops in bounded time with nothing but library
errors (``simplexmpp.errors``), its IQ future resolved, no ERROR logged by the library (which
is where a traceback from a background thread would go), no thread left behind, and the
Client object collectable. Over a run, memory must not grow with the number of cases.

In the suite it runs for a few seconds (SIMPLEXMPP_FUZZ_SECONDS, default 3; seeds from
SIMPLEXMPP_FUZZ_SEED, default 0, so a run is repeatable). Longer, on demand:

    python -m tests.fuzz.fuzz_client --seconds 600            # random base seed, printed
    python -m tests.fuzz.fuzz_client --replay 12345 -v        # one failing case again
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
import tracemalloc
import weakref
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from simplexmpp import Client, Iq, errors
from simplexmpp.roster import ROSTER_NS
from simplexmpp.stanza import Message, Presence

TRANSCRIPT = Path(__file__).with_name("transcripts") / "prosody.json"
ME = "fuzz@localhost/r1"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='{id}' "
          "version='1.0' xml:lang='en'>")
#: Seconds the client may take to stop once the server has ended the stream (generous: a
#: slow, loaded machine; a hang is what this catches, not slowness).
STOP_WITHIN = 15.0

#: Pieces mutations insert: markup that is nearly right, addresses that are not JIDs,
#: numbers out of range, what the parser and the stanza handlers must refuse or survive.
FRAGMENTS = [
    "<", ">", "/>", "'", '"', "&amp;", "&lt;", "&#0;", "&#x1F4AC;", "&bogus;", "<!--", "-->",
    "<?pi?>", "<![CDATA[x]]>", "<!DOCTYPE x>", "</message>", "</iq>", "</presence>",
    "<message>", "<iq>", "<presence>", "<body>", "</body>", "\u00e9", "\U0001F600", "\u202e",
    "<r xmlns='urn:xmpp:sm:3'/>", "<a xmlns='urn:xmpp:sm:3' h='4294967295'/>",
    "<a xmlns='urn:xmpp:sm:3' h='-1'/>", "<a xmlns='urn:xmpp:sm:3' h='99999999999999'/>",
    "<a xmlns='urn:xmpp:sm:3'/>", "<enabled xmlns='urn:xmpp:sm:3' id='again'/>",
    "<failed xmlns='urn:xmpp:sm:3'/>",
    "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
    "127.0.0.1:1</see-other-host></stream:error>",
    "<stream:features/>", "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    "<iq type='result' id='{iq_id}'/>", "<iq type='error' id='{iq_id}'/>",
    "<iq type='error' id='{iq_id}'><error type='bogus'><nothing/></error></iq>",
    "<iq type='result' id='{iq_id}' from='fuzz@localhost'><query xmlns='jabber:iq:roster' "
    "ver='1'><item jid='a@localhost' subscription='both'/><item jid='/'/></query></iq>",
    "<iq type='set' id='push'><query xmlns='jabber:iq:roster'><item jid='b@localhost' "
    "subscription='remove'/></query></iq>",
    "<iq type='set' id='push2' from='fuzz@localhost/evil'><query xmlns='jabber:iq:roster'>"
    "<item jid='c@localhost'/></query></iq>",
    "<iq type='get' id='g1' from='x@localhost/y'><query "
    "xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    "<iq type='get' id='g2' from='x@localhost/y'><query xmlns='jabber:iq:version'/></iq>",
    "<iq type='get' id='g3' from='x@localhost/y'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='set' id='g4' from='x@localhost/y'/>", "<iq type='weird' id='g5'/>",
    "<message from='x@localhost/y' type='chat'><body>hi</body><delay "
    "xmlns='urn:xmpp:delay' stamp='not a date'/></message>",
    "<message from='x@localhost/y'><received xmlns='urn:xmpp:receipts'/></message>",
    "<message from='x@localhost/y' type='error'><error type='cancel'>"
    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    "<message from='fuzz@localhost' type='chat'><received xmlns='urn:xmpp:carbons:2'>"
    "<forwarded xmlns='urn:xmpp:forward:0'><message from='/' type='chat'><body>x</body>"
    "</message></forwarded></received></message>",
    "<presence from='x@localhost/y'><priority>many</priority><show>dancing</show></presence>",
    "<presence from='x@localhost/y'><priority>99999999999</priority></presence>",
    "<presence from='x@localhost' type='unavailable'/>",
    "<presence from='room@conference.localhost/nick'><x "
    "xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>",
    "<message from='room@conference.localhost/nick' type='groupchat'><subject/></message>",
]
#: Values an attribute mutation puts in place of ``from``, ``to``, ``id``, ``type``, ``h``…
VALUES = ["", "/", "@localhost", "a@b@localhost", "\u202e@localhost", "\u2603@localhost",
          "fuzz@localhost", "fuzz@localhost/evil", ME, "localhost", "x" * 3000, "{iq_id}",
          "result", "error", "set", "get", "groupchat", "unavailable", "subscribe", "-1",
          "4294967296", "1e9", "NaN", " ", "&amp;", "&#x10FFFF;"]
_ATTRIBUTE = re.compile(r"""(\b[\w:.-]+=)(['"])([^'"]*)\2""")


def load_transcript() -> list[str]:
    return json.loads(TRANSCRIPT.read_text(encoding="utf-8"))


@dataclass
class Case:
    """One fuzz case, made from its seed alone (so a failure can be replayed)."""

    seed: int
    sm: bool
    reads: list[bytes]
    mutations: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, seed: int, transcript: list[str]) -> Case:
        rng = random.Random(seed)
        start = rng.randrange(len(transcript))
        text = "".join(transcript[start:start + rng.randint(1, 4)])
        case = cls(seed, rng.random() < 0.5, [])
        for _ in range(rng.choice((0, 1, 1, 2, 3, 5, 8))):
            text = case._mutate(rng, text, transcript)
        data = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.1:  # raw byte damage: invalid UTF-8, NULs
            pos = rng.randrange(len(data) + 1)
            data = data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) \
                + data[pos:]
            case.mutations.append(f"bytes@{pos}")
        pos = 0
        while pos < len(data):
            size = rng.choice((1, 2, 7, 64, 512, 4096, len(data)))
            case.reads.append(data[pos:pos + size])
            pos += size
        return case

    def _mutate(self, rng: random.Random, text: str, transcript: list[str]) -> str:
        kind = rng.choice(("insert", "insert", "delete", "duplicate", "attribute",
                           "attribute", "splice", "char"))
        pos = rng.randrange(len(text) + 1)
        self.mutations.append(f"{kind}@{pos}")
        if kind == "insert":
            return text[:pos] + rng.choice(FRAGMENTS) + text[pos:]
        if kind == "delete":
            return text[:pos] + text[pos + rng.randint(1, 40):]
        if kind == "duplicate":
            end = min(len(text), pos + rng.randint(1, 400))
            return text[:end] + text[pos:end] * rng.randint(1, 3) + text[end:]
        if kind == "attribute":
            found = list(_ATTRIBUTE.finditer(text))
            if not found:
                return text
            match = rng.choice(found)
            value = rng.choice(VALUES).replace("'", "&apos;").replace('"', "&quot;")
            return text[:match.start(3)] + value + text[match.end(3):]
        if kind == "splice":
            other = rng.choice(transcript)
            at = rng.randrange(len(other) + 1)
            return text[:pos] + other[at:at + rng.randint(1, 300)] + text[pos:]
        return text[:pos] + chr(rng.choice((0, 1, 0x0B, 0xFFFE, 0xD800, 0x10FFFF,
                                            rng.randrange(0x20, 0x3000)))) + text[pos + 1:]


class _Server:
    """The scripted server of one case: logs the client in, sends the case, ends the stream,
    and waits for the client to hang up. Its failures are kept in ``error``."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.sending = False  # the fuzzed part has begun
        self.thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(STOP_WITHIN)
            sock, _ = self.listener.accept()
        except OSError as exc:
            self.error = exc
            return
        finally:
            self.listener.close()
        sock.settimeout(STOP_WITHIN)
        self.received = b""
        try:
            self._script(sock)
        except socket.timeout as exc:
            self.error = exc  # the client neither answered nor hung up
        except OSError as exc:  # ConnectionError included
            # Once the fuzzed bytes flow, the client may hang up at any moment (a stream
            # error, say): a failed send or shutdown then is the expected end.
            if not self.sending:
                self.error = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            sock.close()

    def _read_until(self, sock: socket.socket, pattern: str) -> re.Match[bytes]:
        regex = re.compile(pattern.encode(), re.S)
        while True:
            match = regex.search(self.received)
            if match:
                self.received = self.received[match.end():]
                return match
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the client closed the connection")
            self.received += data

    def _script(self, sock: socket.socket) -> None:
        send = sock.sendall
        self._read_until(sock, r"<stream:stream[^>]*>")
        send((HEADER.format(id="s1") + f"<stream:features><mechanisms xmlns='{SASL}'>"
              "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>").encode())
        self._read_until(sock, r"<auth [^>]*(/>|>.*?</auth>)")
        send(f"<success xmlns='{SASL}'/>".encode())
        self._read_until(sock, r"<stream:stream[^>]*>")
        sm = "<sm xmlns='urn:xmpp:sm:3'/>" if self.case.sm else ""
        send((HEADER.format(id="s2") + "<stream:features><bind "
              f"xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>{sm}</stream:features>").encode())
        bind = self._read_until(sock, r'<iq type="set" id="([^"]+)".*?</iq>')
        send(f"<iq type='result' id='{bind.group(1).decode()}'><bind xmlns='urn:ietf:params:"
             f"xml:ns:xmpp-bind'><jid>{ME}</jid></bind></iq>".encode())
        if self.case.sm:
            self._read_until(sock, r"<enable [^>]*/>")
            send(b"<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>")
        # The client's own IQ (a roster get, see run_case): mutations may forge its answer.
        iq = self._read_until(sock, r'<iq [^>]*id="([^"]+)"[^>]*><query xmlns="jabber:iq:roster"')
        iq_id = iq.group(1)
        self.sending = True
        for data in self.case.reads:
            send(data.replace(b"{iq_id}", iq_id).replace(b"{me}", ME.encode()))
        send(b"</stream:stream>")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):  # until the client hangs up
            pass


class _Watch(logging.Handler):
    """Collects the library's ERROR records (where a background thread's traceback goes)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


#: Events the callbacks got, over the run (a run whose cases never get this far finds little).
SEEN: Counter[str] = Counter()


def _touch(stanza: object, *more: object) -> None:
    """A callback that reads everything a user might (on the dispatcher thread): only
    library errors may come out."""
    try:
        if isinstance(stanza, Message):
            (stanza.from_, stanza.to, stanza.id, stanza.type, stanza.body, stanza.subject,
             stanza.thread, stanza.delay, stanza.origin_id, stanza.error, str(stanza))
        elif isinstance(stanza, Presence):
            (stanza.from_, stanza.type, stanza.show, stanza.status, stanza.priority,
             stanza.available, stanza.error, str(stanza))
        elif isinstance(stanza, Iq):
            (stanza.from_, stanza.type, stanza.payload, stanza.error, str(stanza))
    except errors.XMPPError:
        pass


def _library_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("simplexmpp-") and "fuzz@localhost" in t.name]


def run_case(case: Case, verbose: bool = False) -> str:
    """Run one case; returns how the client ended; AssertionError names the seed."""
    where = f"fuzz case seed={case.seed} (replay: python -m tests.fuzz.fuzz_client " \
            f"--replay {case.seed} -v)"
    refs: list[weakref.ref[Client]] = []
    outcome = _run_client(case, where, verbose, refs)
    gc.collect()
    client = refs[0]()
    assert client is None, f"{where}: the Client outlived the case: " \
        f"{[type(r).__name__ for r in gc.get_referrers(client)]}"
    return outcome


def _run_client(case: Case, where: str, verbose: bool,
                refs: list[weakref.ref[Client]]) -> str:
    server = _Server(case)
    watch = _Watch()
    library_log = logging.getLogger("simplexmpp")
    library_log.addHandler(watch)
    # Records kept elsewhere (pytest's capture) would keep what they mention alive.
    propagate, library_log.propagate = library_log.propagate, verbose
    client = Client("fuzz@localhost", None, host="127.0.0.1", port=server.port, tls="none",
                    mechanisms=["ANONYMOUS"], reconnect=False, timeout=5)
    refs.append(weakref.ref(client))
    stopped = threading.Event()
    ended_with: list[BaseException | None] = []
    client.on("disconnected", lambda exc: (ended_with.append(exc), stopped.set()))
    for event in ("message", "message_error", "presence", "subscription_request", "iq",
                  "roster_push", "chat_state", "receipt"):
        client.on(event, lambda *args, event=event: (_touch(*args), SEEN.update((event,))))
    try:
        client.connect()
        future = client.send_iq(Iq.get(None, ET.Element("{%s}query" % ROSTER_NS)))
        assert stopped.wait(STOP_WITHIN), f"{where}: the client did not stop"
        server.thread.join(STOP_WITHIN)
        assert server.error is None, f"{where}: the scripted server failed: {server.error!r}"
        try:
            client.disconnect(timeout=5)
        except errors.XMPPError:
            pass
        assert future.done(), f"{where}: the client's IQ was left unresolved"
        failure = future.exception(0)
        assert failure is None or isinstance(failure, errors.XMPPError), \
            f"{where}: the IQ failed with {failure!r}"
        error = ended_with[0] if ended_with else None
        # The stream may end the session (bad XML, a stream error, the server's close), a
        # stanza may not: a bad one is dropped or refused, and the session lives on.
        assert isinstance(error, (errors.StreamError, errors.ConnectionError)), \
            f"{where}: the client ended with {error!r}"
        assert client._core.pending == {}, f"{where}: IQs left pending: {client._core.pending}"
        # Wait on the threads themselves (an idle dispatcher ends on its own a little later
        # on a loaded machine), all within one budget.
        deadline = time.monotonic() + STOP_WITHIN
        for thread in _library_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not _library_threads(), f"{where}: threads left behind: {_library_threads()}"
        assert not watch.records, f"{where}: the library logged an error: " + "; ".join(
            f"{r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in watch.records)
        outcome = type(error).__name__ if error is not None else "closed cleanly"
        if verbose:
            print(f"seed {case.seed}: sm={case.sm} {len(case.reads)} reads, "
                  f"mutations {case.mutations}: {outcome}: {error}")
    finally:
        library_log.removeHandler(watch)
        library_log.propagate = propagate
        if not stopped.is_set():
            client._conn.abort()
    return outcome


def fuzz(seconds: float, seed: int, verbose: bool = False,
         memory_every: int = 0, min_cases: int = 0) -> Iterator[tuple[int, str]]:
    """Run cases seed, seed+1, … for ``seconds``, and at least ``min_cases`` of them (a
    loaded machine runs fewer in the time); yields (seed, outcome)."""
    transcript = load_transcript()
    deadline = time.monotonic() + seconds
    current = seed
    while time.monotonic() < deadline or current - seed < min_cases:
        yield current, run_case(Case.make(current, transcript), verbose)
        current += 1


def test_client_survives_fuzzed_server_traffic() -> None:
    seconds = float(os.environ.get("SIMPLEXMPP_FUZZ_SECONDS", "3"))
    seed = int(os.environ.get("SIMPLEXMPP_FUZZ_SEED", "0"))
    outcomes: dict[str, int] = {}
    # The cases are the same for a seed whatever the machine; from seed 0 the first message
    # and presence get through by case 15, so the check holds even where few cases fit in
    # the time.
    for _, outcome in fuzz(seconds, seed, min_cases=20):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) >= 5, f"too few cases ran: {outcomes}"
    # The mutations must not all break the stream at once: stanzas get through.
    assert {"message", "presence"} <= set(SEEN), f"no stanza got through: {outcomes}"


def test_memory_stays_flat_over_many_cases() -> None:
    """The same cases again and again: what the client and its threads keep must not grow
    with the number of cases (a leak per connection would)."""
    transcript = load_transcript()
    cases = [Case.make(seed, transcript) for seed in range(1000, 1010)]
    for case in cases:  # warm up: caches (JIDs, names) fill once
        run_case(case)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            for case in cases:
                run_case(case)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 30 connections: a leak of one socket buffer or stanza per connection shows as far more.
    assert grown < 512 * 1024, f"{grown} bytes more after 30 more cases"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--replay", type=int, default=None, help="run this one seed")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="%(threadName)s %(message)s")
    if args.replay is not None:
        case = Case.make(args.replay, load_transcript())
        print(f"reads: {case.reads!r}")
        print(run_case(case, verbose=True))
        return
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"fuzzing the client for {args.seconds:g} s from seed {seed}")
    outcomes: dict[str, int] = {}
    tracemalloc.start()
    started = time.monotonic()
    baseline = None
    count = 0
    for _, outcome in fuzz(args.seconds, seed, args.verbose):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        count += 1
        if count % 500 == 0:
            gc.collect()
            current = tracemalloc.get_traced_memory()[0]
            baseline = current if baseline is None else baseline
            print(f"{count} cases, {time.monotonic() - started:.0f} s, traced memory "
                  f"{current / 1e6:.1f} MB (+{(current - baseline) / 1e6:.1f} MB since case "
                  f"500), threads {threading.active_count()}", flush=True)
            assert current - baseline < 16e6, "memory keeps growing with the cases"
    events = dict(sorted(SEEN.items()))
    print(f"{count} cases, no finding. Outcomes: {json.dumps(outcomes)}; events the "
          f"callbacks got: {json.dumps(events)}")


if __name__ == "__main__":
    sys.exit(main())
