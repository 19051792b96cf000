#!/usr/bin/env python3
"""Create an XMPP account by in-band registration (XEP-0077), then log in with it once.

    python samples/register.py --jid newbie@localhost --password s3cret \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt
The JID and password may also come from XMPP_JID and XMPP_PASSWORD. Exit status 0 when the
account was created (or, with --exist-ok, already existed) and can log in.
"""

import sys

from _common import parser

from simplexmpp import Client, errors
from simplexmpp.ext.register import AccountExistsError


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--exist-ok", action="store_true",
                   help="an account that already exists is not an error")
    args = p.parse_args()
    if not args.jid or not args.password:
        sys.exit("need --jid and --password (or XMPP_JID and XMPP_PASSWORD)")
    settings = dict(host=args.host, port=args.port, ca_file=args.ca_file)
    try:
        Client.register(args.jid, args.password, **settings)
        print(f"registered {args.jid}")
    except AccountExistsError:
        if not args.exist_ok:
            sys.exit(f"{args.jid} already exists")
        print(f"{args.jid} already exists")
    except errors.XMPPError as exc:
        sys.exit(f"registration failed: {exc}")
    # Prove it: log in with the new account.
    with Client(args.jid, args.password, **settings) as client:
        print(f"logged in as {client.jid}")


if __name__ == "__main__":
    main()
