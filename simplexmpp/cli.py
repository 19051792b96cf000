"""The ``simplexmpp`` command (also ``python -m simplexmpp``): XMPP from the shell.

    simplexmpp send bob@example.org "Hello"          # or the message on stdin
    simplexmpp listen --json                          # one line per incoming message
    simplexmpp roster | ping | disco | upload FILE | muc | register

Credentials come from flags, then the environment (``XMPP_JID``, ``XMPP_PASSWORD``,
``XMPP_HOST``, ``XMPP_PORT``, ``XMPP_CA``), then ``~/.config/simplexmpp/config.toml``
(``jid = "…"``, ``password = "…"``, ``host``, ``port``, ``ca_file``, ``tls``), then a prompt on a
terminal for the password. Passwords are never echoed or printed.

Exit codes: 0 ok, 1 usage, 2 authentication, 3 network/TLS/server, 4 timeout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, errors
from .client import Client
from .jid import JID

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["main", "EXIT_OK", "EXIT_USAGE", "EXIT_AUTH", "EXIT_NETWORK", "EXIT_TIMEOUT"]

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_NETWORK, EXIT_TIMEOUT = 0, 1, 2, 3, 4
DEFAULT_CONFIG = Path("~/.config/simplexmpp/config.toml")


class UsageError(Exception):
    """Wrong or missing arguments: exit code 1."""


# -- arguments ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (flags, else XMPP_* environment, else config file)")
    g.add_argument("--jid", help="account JID (env XMPP_JID)")
    g.add_argument("--password-file", type=Path,
                   help="read the password from this file (env XMPP_PASSWORD, else a prompt)")
    g.add_argument("--host", help="server host (env XMPP_HOST; default: DNS SRV)")
    g.add_argument("--port", type=int, help="server port (env XMPP_PORT)")
    g.add_argument("--tls", choices=("starttls", "direct"), help="default starttls")
    g.add_argument("--ca-file", help="extra certificate or CA to trust (env XMPP_CA)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per step (30)")
    g.add_argument("--config", type=Path, help=f"config file (default {DEFAULT_CONFIG})")
    g.add_argument("--debug", action="store_true", help="log the XML stream, show tracebacks")

    p = argparse.ArgumentParser(prog="simplexmpp", description="XMPP from the command line.",
                                epilog="exit codes: 0 ok, 1 usage, 2 authentication, "
                                       "3 network, 4 timeout")
    p.add_argument("--version", action="version", version=f"simplexmpp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("send", parents=[common], help="send a message",
                       description="Send a message to one or more JIDs, or to a room. The "
                                   "message comes from --message, else stdin.")
    s.add_argument("to", nargs="*", metavar="JID", help="recipients")
    s.add_argument("-m", "--message", help="the message (default: read stdin)")
    s.add_argument("--lines", action="store_true", help="send each line of stdin separately")
    s.add_argument("--muc", metavar="ROOM", help="send to this room (joined for the purpose)")
    s.add_argument("--nick", help="nick in the room (default: the JID's localpart)")
    s.add_argument("--type", choices=("chat", "normal", "headline"), default="chat")
    s.add_argument("--oob", metavar="URL", help="attach this URL (XEP-0066)")

    s = sub.add_parser("listen", parents=[common], help="print incoming messages",
                       description="Print incoming messages, one per line, until interrupted.")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--count", type=int, help="stop after this many messages")
    s.add_argument("--idle", type=float, help="stop after this many seconds without a message")

    s = sub.add_parser("roster", parents=[common], help="list, add or remove contacts")
    s.add_argument("action", nargs="?", choices=("list", "add", "remove"), default="list")
    s.add_argument("contact", nargs="?", metavar="JID")
    s.add_argument("--name", help="name for add")
    s.add_argument("--group", action="append", default=[], help="group for add (repeatable)")
    s.add_argument("--subscribe", action="store_true", help="with add: ask for presence too")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("ping", parents=[common], help="XEP-0199 ping (default: the server)")
    s.add_argument("target", nargs="?", metavar="JID")
    s.add_argument("--count", type=int, default=1)

    s = sub.add_parser("disco", parents=[common], help="XEP-0030 service discovery")
    s.add_argument("target", nargs="?", metavar="JID", help="default: the server")
    s.add_argument("--node")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("upload", parents=[common], help="XEP-0363 upload; prints the URL")
    s.add_argument("file", type=Path)
    s.add_argument("--to", action="append", default=[], metavar="JID",
                   help="also send the URL to this JID (repeatable), as an XEP-0066 link")
    s.add_argument("--content-type")
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("muc", parents=[common], help="list rooms of a MUC service and occupants")
    s.add_argument("service", nargs="?", help="default: conference.<domain>")
    s.add_argument("--occupants", action="store_true",
                   help="also list each room's occupants (joins each room briefly)")
    s.add_argument("--nick", default="room-lister", help="nick used with --occupants")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("register", parents=[common], help="XEP-0077: create the account")
    return p


# -- credentials -------------------------------------------------------------------------------

def _config(path: Path | None) -> dict[str, Any]:
    explicit = path is not None
    path = (path or DEFAULT_CONFIG).expanduser()
    if not path.exists():
        if explicit:
            raise UsageError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    known = {"jid", "password", "host", "port", "ca_file", "tls", "timeout"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    return data


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    conf = _config(args.config)
    env = os.environ
    jid = args.jid or env.get("XMPP_JID") or conf.get("jid")
    if not jid:
        raise UsageError("no account: pass --jid, set XMPP_JID, or put jid = \"…\" in "
                         f"{DEFAULT_CONFIG}")
    if args.password_file is not None:
        try:
            password: str | None = args.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read the password file: {exc}") from None
    else:
        password = env.get("XMPP_PASSWORD") or conf.get("password")
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("no password: use --password-file, XMPP_PASSWORD or the config "
                             "file (stdin is not a terminal to ask on)")
        password = getpass.getpass(f"password for {jid}: ")
    port = args.port or env.get("XMPP_PORT") or conf.get("port")
    try:
        port_number = int(port) if port else None
    except ValueError:
        raise UsageError(f"port must be a number, not {port!r}") from None
    return dict(jid=jid, password=password,
                host=args.host or env.get("XMPP_HOST") or conf.get("host"),
                port=port_number,
                tls=args.tls or conf.get("tls") or "starttls",
                ca_file=args.ca_file or env.get("XMPP_CA") or conf.get("ca_file"),
                timeout=args.timeout)


def _client(settings: dict[str, Any]) -> Client:
    try:
        return Client(settings["jid"], settings["password"], host=settings["host"],
                      port=settings["port"], tls=settings["tls"], ca_file=settings["ca_file"],
                      timeout=settings["timeout"], reconnect=False)
    except ValueError as exc:  # JIDError and friends: the user's input
        raise UsageError(str(exc)) from None


# -- commands ----------------------------------------------------------------------------------

def _stdin_messages(lines: bool) -> Iterator[str]:
    if lines:
        for line in sys.stdin:
            line = line.rstrip("\r\n")
            if line:
                yield line
    else:
        text = sys.stdin.read()
        if text.strip():
            yield text.rstrip("\n")


def cmd_send(client: Client, args: argparse.Namespace) -> int:
    if not args.to and not args.muc:
        raise UsageError("send: give at least one recipient JID or --muc ROOM")
    recipients = [JID(to) for to in args.to]
    if args.message is not None:
        bodies: Iterator[str] = iter([args.message])
    else:
        bodies = _stdin_messages(args.lines)
    room = None
    if args.muc:
        nick = args.nick or client.account.local or "simplexmpp"
        room = client.muc.join(args.muc, nick, timeout=args.timeout)
    sent = 0
    for body in bodies:
        for to in recipients:
            if args.oob:
                client.oob.send(to, args.oob, body=body)
            else:
                client.send_message(to, body, type=args.type)
            sent += 1
        if room is not None:
            room.send(body)
            sent += 1
    if room is not None:
        room.leave()
    if not sent:
        raise UsageError("send: nothing to send (empty message)")
    return EXIT_OK


def _message_record(msg: Any) -> dict[str, Any]:
    delay = msg.delay
    return {"from": str(msg.from_) if msg.from_ else None, "type": msg.type, "id": msg.id,
            "body": msg.body, "subject": msg.subject, "thread": msg.thread,
            "delay": delay.isoformat() if delay else None}


def cmd_listen(client: Client, args: argparse.Namespace) -> int:
    client.send_presence()
    count = 0
    for msg in client.messages(timeout=args.idle):
        if msg.body is None and msg.subject is None:
            continue  # chat states, receipts and the like
        if args.json:
            print(json.dumps(_message_record(msg), ensure_ascii=False), flush=True)
        else:
            print(f"{msg.from_}: {msg.body if msg.body is not None else msg.subject}",
                  flush=True)
        count += 1
        if args.count is not None and count >= args.count:
            break
    return EXIT_OK


def cmd_roster(client: Client, args: argparse.Namespace) -> int:
    if args.action in ("add", "remove") and not args.contact:
        raise UsageError(f"roster {args.action}: which JID?")
    if args.action == "add":
        client.add_contact(args.contact, name=args.name, groups=args.group)
        if args.subscribe:
            client.subscribe(args.contact)
        return EXIT_OK
    if args.action == "remove":
        client.remove_contact(args.contact)
        return EXIT_OK
    roster = client.get_roster()
    items = sorted(roster.values(), key=lambda item: str(item.jid))
    if args.json:
        print(json.dumps([{"jid": str(i.jid), "name": i.name, "groups": sorted(i.groups),
                           "subscription": i.subscription} for i in items],
                         ensure_ascii=False))
    else:
        for item in items:
            groups = f" [{', '.join(sorted(item.groups))}]" if item.groups else ""
            name = f" ({item.name})" if item.name else ""
            print(f"{item.jid}{name} {item.subscription}{groups}")
    return EXIT_OK


def cmd_ping(client: Client, args: argparse.Namespace) -> int:
    target = args.target or client.account.domain
    for _ in range(max(1, args.count)):
        seconds = client.ping(args.target, timeout=args.timeout)
        print(f"pong from {target}: {seconds * 1000:.1f} ms", flush=True)
    return EXIT_OK


def cmd_disco(client: Client, args: argparse.Namespace) -> int:
    target = args.target or client.account.domain
    info = client.disco.info(target, node=args.node, timeout=args.timeout)
    items = client.disco.items(target, node=args.node, timeout=args.timeout)
    identities = [(i.category, i.type, i.name) for i in info.identities]
    if args.json:
        print(json.dumps({"jid": str(target), "identities": [list(i) for i in identities],
                          "features": sorted(info.features),
                          "items": [{"jid": str(i.jid), "node": i.node, "name": i.name}
                                    for i in items]}, ensure_ascii=False))
        return EXIT_OK
    print(f"{target}")
    for category, type_, name in identities:
        print(f"  identity {category}/{type_}" + (f" {name}" if name else ""))
    for feature in sorted(info.features):
        print(f"  feature  {feature}")
    for item in items:
        print(f"  item     {item.jid}" + (f" node={item.node}" if item.node else "")
              + (f" ({item.name})" if item.name else ""))
    return EXIT_OK


def _progress_bar(total_hint: int) -> Callable[[int, int | None], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        total = total or total_hint
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                         f"{done / 1024:,.0f}/{(total or 0) / 1024:,.0f} KiB")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise UsageError(f"upload: {args.file} is not a file")
    progress = None if args.no_progress else _progress_bar(args.file.stat().st_size)
    url = client.upload.file(str(args.file), content_type=args.content_type,
                             progress=progress, timeout=args.timeout)
    print(url, flush=True)
    for to in args.to:
        client.oob.send(JID(to), url, desc=args.file.name)
    return EXIT_OK


def cmd_muc(client: Client, args: argparse.Namespace) -> int:
    service = args.service or f"conference.{client.account.domain}"
    rooms = client.muc.rooms(service, timeout=args.timeout)
    out = []
    for room in rooms:
        entry: dict[str, Any] = {"jid": str(room.jid), "name": room.name}
        if args.occupants:
            # Most services show occupants only to occupants (XEP-0045 §6.5): join briefly,
            # without history, as the Perl room lister does.
            try:
                joined = client.muc.join(room.jid, args.nick, history=0,
                                         timeout=args.timeout)
            except errors.XMPPError as exc:
                entry["error"] = str(exc)
                entry["occupants"] = []
            else:
                try:
                    entry["occupants"] = sorted(nick for nick in joined.occupants
                                                if nick != joined.nick)
                finally:
                    joined.leave(timeout=args.timeout)
        out.append(entry)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for entry in out:
            print(f"{entry['jid']}" + (f" ({entry['name']})" if entry["name"] else ""))
            if "error" in entry:
                print(f"  (cannot enter: {entry['error']})")
            for nick in entry.get("occupants", []):
                print(f"  {nick}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "send": cmd_send, "listen": cmd_listen, "roster": cmd_roster, "ping": cmd_ping,
    "disco": cmd_disco, "upload": cmd_upload, "muc": cmd_muc,
}


# -- main --------------------------------------------------------------------------------------

def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, errors.AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, (errors.TimeoutError, TimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(exc, (UsageError, ValueError)):
        return EXIT_USAGE
    return EXIT_NETWORK


def _fail(message: str, code: int) -> NoReturn:
    print(f"simplexmpp: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
        if args.command == "register":
            Client.register(settings["jid"], settings["password"],
                            host=settings["host"], port=settings["port"],
                            tls=settings["tls"], ca_file=settings["ca_file"],
                            timeout=settings["timeout"])
            print(f"registered {settings['jid']}")
            return EXIT_OK
        client = _client(settings)
        with client:
            return COMMANDS[args.command](client, args)
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "listen" else 130
    except (UsageError, errors.XMPPError, OSError, ValueError) as exc:
        if args.debug:
            raise
        _fail(str(exc) or type(exc).__name__, _exit_code(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
