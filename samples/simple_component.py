#!/usr/bin/env python3
"""Echo component (XEP-0114): answers every message sent to it, or to any JID at its domain.

    python samples/simple_component.py --jid echo.localhost --secret secret \
        --host 127.0.0.1 --port 5347
Each message is answered with the same body, from the address it was sent to; pings are
answered too. Stops on Ctrl-C or after --count messages.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simplexmpp import Component  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", default=os.environ.get("XMPP_COMPONENT"),
                   help="the component's domain (env XMPP_COMPONENT)")
    p.add_argument("--secret", default=os.environ.get("XMPP_COMPONENT_SECRET"),
                   help="the secret shared with the server (env XMPP_COMPONENT_SECRET)")
    p.add_argument("--host", default=os.environ.get("XMPP_HOST") or "127.0.0.1",
                   help="server host, a loopback address (env XMPP_HOST)")
    p.add_argument("--port", type=int,
                   default=int(os.environ.get("XMPP_COMPONENT_PORT") or 5347),
                   help="the server's component port (env XMPP_COMPONENT_PORT)")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages")
    p.add_argument("--debug", action="store_true", help="log every stanza")
    args = p.parse_args()
    if not args.jid or not args.secret:
        sys.exit("need --jid and --secret (or XMPP_COMPONENT and XMPP_COMPONENT_SECRET)")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    answered = 0
    with Component(args.jid, args.secret, args.host, args.port) as component:
        print(f"echo component {component.jid} ready", flush=True)
        try:
            for msg in component.messages():
                if msg.body is None or msg.type == "groupchat" or msg.from_ is None:
                    continue
                component.send_message(msg.from_, msg.body, type=msg.type, from_=msg.to)
                answered += 1
                if args.count and answered >= args.count:
                    break
        except KeyboardInterrupt:
            pass
    print(f"echo component answered {answered} message(s)", flush=True)


if __name__ == "__main__":
    main()
