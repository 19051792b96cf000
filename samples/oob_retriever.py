#!/usr/bin/env python3
"""Wait for messages carrying out-of-band URLs (XEP-0066) and download them into a directory.

    python samples/oob_retriever.py downloads/ --count 3 --idle 60 --jid bob@localhost \
        --password password --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt
Prints one line per file: "saved PATH from SENDER". Stops after --count files, after --idle
seconds without a message, or on Ctrl-C. Only senders in --from (repeatable) are trusted when
given; --max-size caps each download (default 16 MiB).
"""

import os
import sys

from _common import client_from, parser

from simplexmpp import errors
from simplexmpp.ext.oob import oob_of


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("directory", help="where to save the files (made if missing)")
    p.add_argument("--count", type=int, default=0, help="stop after this many files")
    p.add_argument("--idle", type=float, default=None,
                   help="stop after this many seconds without a message")
    p.add_argument("--from", dest="senders", action="append", default=[], metavar="JID",
                   help="only accept links from this bare JID (repeatable)")
    p.add_argument("--max-size", type=int, default=16 << 20, help="bytes per file")
    args = p.parse_args()
    os.makedirs(args.directory, exist_ok=True)
    saved = 0
    with client_from(args) as client:
        client.send_presence(status="send me links")  # also brings stored offline messages
        print(f"retriever {client.jid} ready", flush=True)
        try:
            for msg in client.messages(timeout=args.idle):
                data = oob_of(msg)
                if data is None or msg.from_ is None:
                    continue
                if args.senders and str(msg.from_.bare) not in args.senders:
                    print(f"ignoring a link from {msg.from_}", file=sys.stderr)
                    continue
                try:
                    path = client.oob.download(data.url, args.directory,
                                               max_size=args.max_size)
                except (errors.XMPPError, OSError) as exc:
                    print(f"could not fetch {data.url}: {exc}", file=sys.stderr, flush=True)
                    continue
                saved += 1
                print(f"saved {path} from {msg.from_.bare}", flush=True)
                if args.count and saved >= args.count:
                    break
        except KeyboardInterrupt:
            pass
    print(f"retriever saved {saved} file(s)", flush=True)


if __name__ == "__main__":
    main()
