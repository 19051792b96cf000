"""Shared command-line handling for the samples: flags or XMPP_* environment variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simplexmpp import Client  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--jid", default=os.environ.get("XMPP_JID"),
                   help="account JID (env XMPP_JID)")
    p.add_argument("--password", default=os.environ.get("XMPP_PASSWORD"),
                   help="password (env XMPP_PASSWORD)")
    p.add_argument("--host", default=os.environ.get("XMPP_HOST"),
                   help="server host, default: DNS SRV of the JID's domain (env XMPP_HOST)")
    p.add_argument("--port", type=int, default=int(os.environ.get("XMPP_PORT") or 0) or None,
                   help="server port (env XMPP_PORT)")
    p.add_argument("--ca-file", default=os.environ.get("XMPP_CA"),
                   help="extra certificate/CA to trust (env XMPP_CA)")
    p.add_argument("--debug", action="store_true", help="log every stanza")
    return p


def client_from(args: argparse.Namespace, **kwargs: object) -> Client:
    if not args.jid or args.password is None:
        sys.exit("need --jid and --password (or XMPP_JID and XMPP_PASSWORD)")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    return Client(args.jid, args.password, host=args.host, port=args.port,
                  ca_file=args.ca_file, **kwargs)  # type: ignore[arg-type]
