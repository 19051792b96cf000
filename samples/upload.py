#!/usr/bin/env python3
"""Upload a file with HTTP File Upload (XEP-0363) and print its URL; --to also sends it.

    python samples/upload.py photo.jpg --to bob@localhost --jid alice@localhost \
        --password password --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt
With --to, each recipient gets the URL as an XEP-0066 out-of-band link (body = the URL).
"""

import sys

from _common import client_from, parser

from simplexmpp import errors


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("file", help="the file to upload")
    p.add_argument("--to", action="append", default=[], metavar="JID",
                   help="send the URL to this JID (repeatable)")
    p.add_argument("--content-type", help="default: guessed from the file name")
    p.add_argument("--desc", help="description sent with the link")
    args = p.parse_args()

    def progress(sent: int, total: int | None) -> None:
        print(f"\r{sent}/{total} bytes", end="", file=sys.stderr, flush=True)

    with client_from(args) as client:
        try:
            url = client.upload.file(args.file, content_type=args.content_type,
                                     progress=progress)
        except errors.XMPPError as exc:  # too large, refused, HTTP failure
            sys.exit(f"\nupload failed: {exc}")
        print(file=sys.stderr)
        print(url, flush=True)
        for to in args.to:
            client.oob.send(to, url, desc=args.desc)
            print(f"sent to {to}", file=sys.stderr)


if __name__ == "__main__":
    main()
