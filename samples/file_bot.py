#!/usr/bin/env python3
"""File-receiving bot: accepts files sent with Jingle (XEP-0234) into a directory and answers
the sender with what it got.

    python samples/file_bot.py --jid bot@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt --dir inbox \
        --allow alice@localhost --max-size 10000000
Offers from anyone not in --allow (all when none is given) and files over --max-size bytes
are declined. Stops on Ctrl-C, after --max files, or after --idle seconds without an offer.
Send it a file with `client.files.send("bot@localhost/RESOURCE", path)` (it prints its full
JID when ready).
"""

from pathlib import Path

from _common import client_from, parser

from simplexmpp.ext.files import FileTransferError


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dir", default="inbox", help="where received files go (made if missing)")
    p.add_argument("--allow", action="append", default=[],
                   help="accept files only from this bare JID (repeatable)")
    p.add_argument("--max-size", type=int, default=100_000_000, help="largest file, bytes")
    p.add_argument("--max", type=int, default=0, help="stop after this many files")
    p.add_argument("--idle", type=float, default=None, help="stop after this many idle seconds")
    args = p.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    allowed = {jid.lower() for jid in args.allow}
    with client_from(args) as client:
        client.files.max_size = args.max_size       # bigger offers are declined for us
        client.send_presence(status="Send me files")
        print(f"file bot {client.jid} ready", flush=True)
        received = 0
        try:
            for offer in client.files.offers(timeout=args.idle):
                sender = offer.sender
                if allowed and str(sender.bare) not in allowed:
                    offer.decline()
                    print(f"declined {offer.name!r} from {sender}", flush=True)
                    continue
                try:
                    path = offer.receive(directory=folder, timeout=600)
                except FileTransferError as error:
                    print(f"failed: {offer.name!r} from {sender}: {error}", flush=True)
                    continue
                received += 1
                size = path.stat().st_size
                print(f"received {path.name} ({size} bytes) from {sender}", flush=True)
                client.send_message(sender, f"Got {path.name}: {size} bytes, checked.")
                if args.max and received >= args.max:
                    break
        except KeyboardInterrupt:
            pass
        print(f"file bot received {received} file(s)", flush=True)


if __name__ == "__main__":
    main()
