#!/usr/bin/env python3
"""List the rooms of a multi-user chat service and who is in each (XEP-0045).

Joins each public room briefly (no history) under a nickname, prints the room's name and its
occupants with their roles and affiliations, and leaves again.

    python samples/room_lister.py --jid alice@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt [conference.localhost]

Without a service argument, the server's own MUC service is found with service discovery.
"""

from _common import client_from, parser

from simplexmpp import errors


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("service", nargs="?", help="MUC service JID (default: discovered)")
    p.add_argument("--nick", default="room-lister", help="nickname used in the rooms")
    args = p.parse_args()
    with client_from(args) as client:
        muc = client.muc  # type: ignore[attr-defined]
        service = args.service or muc.service()
        rooms = muc.rooms(service)
        print(f"{service}: {len(rooms)} room(s)")
        for item in rooms:
            title = f"{item.jid}" + (f" ({item.name})" if item.name else "")
            try:
                room = muc.join(item.jid, args.nick, history=0)
            except errors.XMPPError as exc:  # password-protected, members-only, …
                print(f"{title}: cannot enter: {exc}")
                continue
            try:
                others = [o for o in room.occupants.values() if o.nick != room.nick]
                print(f"{title}: {len(others)} occupant(s)"
                      + (f", subject: {room.subject}" if room.subject else ""))
                for occupant in sorted(others, key=lambda o: o.nick.lower()):
                    print(f"  {occupant.nick}  role={occupant.role}  "
                          f"affiliation={occupant.affiliation}"
                          + (f"  jid={occupant.jid}" if occupant.jid else ""))
            finally:
                room.leave()


if __name__ == "__main__":
    main()
