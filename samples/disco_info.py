#!/usr/bin/env python3
"""Print what an XMPP entity is and supports (XEP-0030), and the items it lists.

    XMPP_JID=alice@localhost XMPP_PASSWORD=... python samples/disco_info.py conference.localhost
"""

from _common import client_from, parser

from simplexmpp import errors


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("target", nargs="?", help="entity to ask (default: your server)")
    p.add_argument("--node", help="disco node")
    args = p.parse_args()
    with client_from(args) as client:
        try:
            info = client.disco.info(args.target, args.node)
            items = client.disco.items(args.target, args.node)
        except errors.IqError as exc:
            print(f"error: {exc}")
            return 1
        print(f"{args.target or client.account.domain}")
        for identity in info.identities:
            print(f"  identity {identity.category}/{identity.type} {identity.name or ''}".rstrip())
        for feature in sorted(info.features):
            print(f"  feature  {feature}")
        for form in info.forms:
            for field in form.fields:
                print(f"  field    {field.var} = {', '.join(field.values)}")
        for item in items:
            print(f"  item     {item.jid}" + (f" node={item.node}" if item.node else "")
                  + (f" ({item.name})" if item.name else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
