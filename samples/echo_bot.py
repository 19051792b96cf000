#!/usr/bin/env python3
"""Echo bot: answers every chat message with the same text, accepts every subscription.

    python samples/echo_bot.py --jid alice@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt
Stops on Ctrl-C, after --max messages, or after --idle seconds without a message.
"""

from _common import client_from, parser


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--max", type=int, default=0, help="stop after this many messages")
    p.add_argument("--idle", type=float, default=None, help="stop after this many idle seconds")
    args = p.parse_args()
    with client_from(args) as client:
        # Subscription requests arrive as events; approving from a callback is fine.
        client.on("subscription_request", lambda presence: client.approve(presence.from_))
        client.send_presence(status="I echo what you say")
        print(f"echo bot {client.jid} ready", flush=True)
        answered = 0
        try:
            for msg in client.messages(timeout=args.idle):
                if msg.body is None or msg.type == "groupchat":
                    continue
                client.send_message(msg.from_, msg.body, type=msg.type)
                answered += 1
                if args.max and answered >= args.max:
                    break
        except KeyboardInterrupt:
            pass
        print(f"echo bot answered {answered} message(s)", flush=True)


if __name__ == "__main__":
    main()
