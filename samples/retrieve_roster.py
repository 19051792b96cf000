#!/usr/bin/env python3
"""Print the roster of an account: JID, name, subscription and groups.

    python samples/retrieve_roster.py --jid alice@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt
"""

from _common import client_from, parser


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    with client_from(args) as client:
        roster = client.get_roster()
        print(f"roster of {client.jid.bare}: {len(roster)} contact(s)")
        for jid, item in sorted(roster.items(), key=lambda pair: str(pair[0])):
            groups = ", ".join(sorted(item.groups)) or "-"
            pending = " (asked)" if item.ask else ""
            print(f"  {jid}  name={item.name or '-'}  subscription={item.subscription}"
                  f"{pending}  groups={groups}")


if __name__ == "__main__":
    main()
