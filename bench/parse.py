"""Parse benchmark: bytes of N message stanzas -> stanzas per second.

Compares simplexmpp's hardened StreamParser with two baselines fed the same bytes in the same
4 KiB chunks:

* bare expat (``xml.parsers.expat`` with no handlers: the floor cost of tokenising), and
* ``ElementTree.XMLPullParser`` (builds the same Element trees, but without any of the
  RFC 6120 §11.1 hardening, size limits or stream handling), and
* defusedxml's ``DefusedXMLParser`` (when defusedxml is installed): to hook expat's DTD and
  entity handlers it must use the pure-Python ElementTree parser, so every element costs
  Python calls. This row is why simplexmpp does not use it on the receive path.

    python bench/parse.py [--count 100000] [--repeat 5]

Prints the median of ``--repeat`` runs for each. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Callable
from pathlib import Path

# SIMPLEXMPP_SRC: the source tree being measured (bench/run --baseline DIR sets it for the
# workers, which import this module: inserting this tree first would measure it instead).
sys.path.insert(0, os.environ.get("SIMPLEXMPP_SRC") or str(Path(__file__).resolve().parents[1]))

from simplexmpp.xml import StreamParser  # noqa: E402

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='b1' "
          b"version='1.0' xml:lang='en'>")
CHUNK = 4096


def stanzas(count: int) -> bytes:
    """About 200 bytes each, like a chat message with an archive id and an origin-id."""
    one = ("<message from='alice@localhost/laptop' to='bob@localhost/phone' type='chat' "
           "id='m{0:08d}'><body>Hello Bob, this is message {0}</body><origin-id "
           "xmlns='urn:xmpp:sid:0' id='m{0:08d}'/></message>")
    return "".join(one.format(i) for i in range(count)).encode()


def chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_simplexmpp(pieces: list[bytes]) -> int:
    parser = StreamParser()
    count = 0
    for piece in pieces:
        count += len(parser.feed(piece))
    return count - 1  # the header


def run_pull(pieces: list[bytes]) -> int:
    parser = ET.XMLPullParser(("start", "end"))
    depth = 0
    count = 0
    for piece in pieces:
        parser.feed(piece)
        for event, elem in parser.read_events():
            if event == "start":
                depth += 1
            else:
                depth -= 1
                if depth == 1:
                    count += 1
                    elem.clear()
    return count


def run_defusedxml(pieces: list[bytes]) -> int:
    from defusedxml.ElementTree import DefusedXMLParser
    builder = ET.TreeBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    for piece in pieces:
        parser.feed(piece)
    return -1  # the tree is built but not walked (it costs nothing here)


def run_expat(pieces: list[bytes]) -> int:
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    for piece in pieces:
        parser.Parse(piece, False)
    return -1  # expat alone counts nothing; the stanza count is the input's


def measure(fn: Callable[[list[bytes]], int], pieces: list[bytes], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(pieces)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    data = HEADER + stanzas(args.count)
    pieces = chunks(data)
    got = run_simplexmpp(pieces)
    if got != args.count:
        raise SystemExit(f"StreamParser returned {got} stanzas, expected {args.count}")
    results = {
        "bare expat (no handlers)": measure(run_expat, pieces, args.repeat),
        "ElementTree.XMLPullParser": measure(run_pull, pieces, args.repeat),
        "simplexmpp StreamParser": measure(run_simplexmpp, pieces, args.repeat),
    }
    try:
        import defusedxml  # noqa: F401
    except ImportError:
        pass
    else:
        results["defusedxml DefusedXMLParser"] = measure(run_defusedxml, pieces, args.repeat)
    expat = results["bare expat (no handlers)"]
    print(f"{args.count} stanzas, {len(data) / 1e6:.1f} MB, {CHUNK}-byte chunks, "
          f"median of {args.repeat}; Python {sys.version.split()[0]}")
    for name, seconds in results.items():
        print(f"  {name:28s} {args.count / seconds:>12,.0f} stanzas/s   "
              f"{expat / seconds:6.0%} of bare expat")


if __name__ == "__main__":
    main()
