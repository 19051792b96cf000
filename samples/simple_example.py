#!/usr/bin/env python3
"""Connect, send one message, print the answer: the smallest complete simplexmpp program.

    python samples/simple_example.py --jid bob@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt --to alice@localhost "Hi!"
"""

from _common import client_from, parser

from simplexmpp import errors


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--to", required=True, help="who to talk to")
    p.add_argument("--wait", type=float, default=10, help="seconds to wait for each answer")
    p.add_argument("text", nargs="+", help="messages to send, one per argument")
    args = p.parse_args()
    with client_from(args) as client:
        client.send_presence()
        for text in args.text:
            print(f"{client.jid.bare} -> {args.to}: {text}", flush=True)
            client.send_message(args.to, text)
            try:
                reply = client.next_message(timeout=args.wait)
            except errors.TimeoutError:
                print(f"(no answer within {args.wait:g} s)")
                continue
            print(f"{reply.from_.bare} -> {client.jid.bare}: {reply.body}", flush=True)


if __name__ == "__main__":
    main()
