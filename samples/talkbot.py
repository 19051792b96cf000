#!/usr/bin/env python3
"""A bot that recites lines from a file: every message it gets is answered with the next line.
It accepts every subscription request (and subscribes back), like the Perl library's talkbot.

    XMPP_JID=bot@localhost XMPP_PASSWORD=... python samples/talkbot.py poem.txt
"""

from __future__ import annotations

import itertools
import signal
import sys

from _common import client_from, parser

from simplexmpp import Presence


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("lines", help="text file; one line per answer, recited in a loop")
    p.add_argument("--count", type=int, default=0,
                   help="stop after answering this many messages (default: run until ^C)")
    args = p.parse_args()
    with open(args.lines, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    if not lines:
        sys.exit(f"{args.lines} has no lines to recite")
    recital = itertools.cycle(lines)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    with client_from(args) as client:
        def on_request(presence: Presence) -> None:
            # RFC 6121 §3.1: approve, and ask for theirs in return.
            client.approve(presence.from_)
            client.subscribe(presence.from_)

        client.on("subscription_request", on_request)
        client.send_presence(status="reciting")
        print("ready", flush=True)
        answered = 0
        for msg in client.messages():
            if not msg.body or msg.type == "error":
                continue
            client.send_message(msg.from_, next(recital), type=msg.type, thread=msg.thread)
            answered += 1
            if args.count and answered >= args.count:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
