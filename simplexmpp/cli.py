"""The `simplexmpp` command (also `python -m simplexmpp`): XMPP from the shell.

```sh
simplexmpp send bob@example.org "Hello"          # or the message on stdin
simplexmpp listen --json                          # one line per incoming message
simplexmpp roster | ping | disco | upload FILE | muc | register
simplexmpp send --omemo bob@example.org -m "Hello"   # end-to-end encrypted (OMEMO)
simplexmpp omemo devices|trust|distrust|fingerprint
simplexmpp login --token-store ~/.config/bot/tokens  # once; later commands need no password
```

Credentials come from flags, then the environment (`XMPP_JID`, `XMPP_PASSWORD`,
`XMPP_HOST`, `XMPP_PORT`, `XMPP_CA`), then `~/.config/simplexmpp/config.toml`
(`jid = "…"`, `password = "…"`, `host`, `port`, `ca_file`, `tls`), then a prompt on a
terminal for the password. Passwords are never echoed or printed, and never taken as a flag's
value (other users see the command line in `ps`): `--password-file`, the environment or the
config file instead.

With `--token-store PATH` (env `XMPP_TOKEN_STORE`, config `token_store`) a command logs in with
the XEP-0484 FAST token kept there, where the server offers it; `simplexmpp login` asks for
that token once, with the password, and stores it. A command then needs no password while
the store holds a token for the account.

Exit codes: 0 ok, 1 usage, 2 authentication, 3 network/TLS/server, 4 timeout, 5 encryption
(OMEMO: no device of a recipient to encrypt for, or the key store failed).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import ssl
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, errors
from .client import Client
from .jid import JID
from .stanza import Iq, Stanza, wrap
from .tokens import TokenStore
from .xml import CLIENT_NS, StreamEnd, StreamParser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["main", "EXIT_OK", "EXIT_USAGE", "EXIT_AUTH", "EXIT_NETWORK", "EXIT_TIMEOUT",
           "EXIT_ENCRYPTION"]

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_NETWORK, EXIT_TIMEOUT = 0, 1, 2, 3, 4
EXIT_ENCRYPTION = 5
"""OMEMO could not encrypt (no trusted device of a recipient), or its store failed."""
DEFAULT_CONFIG = Path("~/.config/simplexmpp/config.toml")
DEFAULT_TOKEN_STORE = Path("~/.config/simplexmpp/tokens.json")


class UsageError(Exception):
    """Wrong or missing arguments: exit code 1."""


# -- arguments ---------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """No abbreviations (`--password` must not pass for `--password-file`), and argparse's
    own usage errors exit with the documented usage code 1 (its default, 2, is ours for a
    failed authentication)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _RefusePassword(argparse.Action):
    """`--password`: refused before anything else, without repeating the value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error("--password is not accepted: a password on the command line is visible "
                     "to every user of this machine (ps, shell history); use --password-file, "
                     "XMPP_PASSWORD or the config file")


TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("connection (flags, else XMPP_* environment, else config file)")
    g.add_argument("--jid", help="account JID (env XMPP_JID)")
    g.add_argument("--password-file", type=Path,
                   help="read the password from this file (env XMPP_PASSWORD, else a prompt)")
    g.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    g.add_argument("--resource", help="resource to bind (default: one the server picks)")
    g.add_argument("--host", help="server host (env XMPP_HOST; default: DNS SRV)")
    g.add_argument("--port", type=int, help="server port (env XMPP_PORT)")
    g.add_argument("--tls", choices=("starttls", "direct"), help="default starttls")
    g.add_argument("--tls-version", choices=sorted(TLS_VERSIONS),
                   help="lowest TLS version accepted (default 1.2)")
    g.add_argument("--ca-file", help="extra certificate or CA to trust (env XMPP_CA)")
    g.add_argument("--no-verify", action="store_true",
                   help="DANGEROUS, for test servers only: do not check the server's "
                        "certificate (anyone on the path can read the session)")
    g.add_argument("--token-store", type=Path, metavar="PATH",
                   help="keep XEP-0484 FAST tokens in this file and log in with them "
                        "(env XMPP_TOKEN_STORE; see the login command)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per step (30)")
    g.add_argument("--config", type=Path, help=f"config file (default {DEFAULT_CONFIG})")
    g.add_argument("--debug", action="store_true", help="log the XML stream, show tracebacks")
    g.add_argument("--omemo-store", metavar="PATH",
                   help="OMEMO key store (env XMPP_OMEMO_STORE; default under "
                        "~/.local/share/simplexmpp/omemo/)")

    p = _Parser(prog="simplexmpp", description="XMPP from the command line.",
                epilog="exit codes: 0 ok, 1 usage, 2 authentication, 3 network, 4 timeout, "
                       "5 encryption")
    p.add_argument("--version", action="version", version=f"simplexmpp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("send", parents=[common], help="send a message",
                       description="Send a message to one or more JIDs, or to a room. The "
                                   "message comes from --message, else --file, else stdin.")
    s.add_argument("to", nargs="*", metavar="JID", help="recipients")
    s.add_argument("-m", "--message", help="the message (default: read stdin)")
    s.add_argument("-f", "--file", metavar="PATH",
                   help="read the message from this file ('-': stdin)")
    s.add_argument("--lines", action="store_true",
                   help="send each line of the input separately")
    s.add_argument("--subject", help="subject of the message (not with --muc: that would "
                                     "change the room's topic)")
    s.add_argument("--muc", metavar="ROOM", help="send to this room (joined for the purpose)")
    s.add_argument("--nick", help="nick in the room (default: the JID's localpart)")
    s.add_argument("--muc-password", metavar="SECRET",
                   help="password of the room (env XMPP_MUC_PASSWORD keeps it out of ps)")
    s.add_argument("--type", choices=("chat", "normal", "headline"), default="chat")
    s.add_argument("--oob", metavar="URL", help="attach this URL (XEP-0066)")
    s.add_argument("--raw", action="store_true",
                   help="the input is one XML stanza (message, presence or iq), sent as is "
                        "after a check; an iq get/set waits for its answer and prints it")
    s.add_argument("--omemo", action="store_true",
                   help="end-to-end encrypt (OMEMO) for every trusted device of each "
                        "recipient (with --muc: of every member of the room)")

    s = sub.add_parser("listen", parents=[common], help="print incoming messages",
                       description="Print incoming messages, one per line, until interrupted.")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
    s.add_argument("--count", type=int, help="stop after this many messages")
    s.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    s.add_argument("--muc", metavar="ROOM",
                   help="listen in this chat room instead (messages sent from now on)")
    s.add_argument("--omemo", action="store_true",
                   help="turn OMEMO on (announce this device) even before its store exists; "
                        "encrypted messages are decrypted whenever the store exists")
    s.add_argument("--nick", help="nick in the room (default: the JID's localpart)")
    s.add_argument("--muc-password", metavar="SECRET",
                   help="password of the room (env XMPP_MUC_PASSWORD keeps it out of ps)")

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
    s.add_argument("--omemo", action="store_true",
                   help="encrypt the file (aesgcm://) and send its link OMEMO-encrypted to "
                        "the --to JIDs")

    s = sub.add_parser("muc", parents=[common], help="list rooms of a MUC service and occupants")
    s.add_argument("service", nargs="?", help="default: conference.<domain>")
    s.add_argument("--occupants", action="store_true",
                   help="also list each room's occupants (joins each room briefly)")
    s.add_argument("--nick", default="room-lister", help="nick used with --occupants")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("register", parents=[common], help="XEP-0077: create the account")

    s = sub.add_parser("omemo", parents=[common], help="OMEMO devices, fingerprints and trust",
                       description="OMEMO end-to-end encryption: list devices with their "
                                   "fingerprints and trust, trust or distrust one, show ours.")
    s.add_argument("action", choices=("devices", "trust", "distrust", "fingerprint"))
    s.add_argument("contact", nargs="?", metavar="JID",
                   help="whose devices (default: our own account)")
    s.add_argument("device", nargs="?", type=int, metavar="DEVICE_ID",
                   help="for trust and distrust")
    s.add_argument("--json", action="store_true")

    sub.add_parser("login", parents=[common],
                   help="log in with the password once and store a FAST token (XEP-0484) "
                        f"in --token-store (default {DEFAULT_TOKEN_STORE})")
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
    known = {"jid", "password", "host", "port", "ca_file", "tls", "timeout", "omemo_store",
             "token_store"}
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
    store_path = args.token_store or env.get("XMPP_TOKEN_STORE") or conf.get("token_store")
    if store_path is None and args.command == "login":
        store_path = DEFAULT_TOKEN_STORE
    token_store = TokenStore(store_path) if store_path else None
    if password is None and token_store is not None and args.command != "login":
        try:
            has_token = token_store.get(jid) is not None
        except ValueError as exc:  # JIDError, TokenStoreError: the user's input
            raise UsageError(str(exc)) from None
        if has_token:
            # XEP-0484 FAST: the stored token logs in; no password is needed or asked for.
            return _finish_settings(args, conf, jid, None, token_store)
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("no password: use --password-file, XMPP_PASSWORD or the config "
                             "file (stdin is not a terminal to ask on)")
        password = getpass.getpass(f"password for {jid}: ")
    return _finish_settings(args, conf, jid, password, token_store)


def _finish_settings(args: argparse.Namespace, conf: dict[str, Any], jid: str,
                     password: str | None, token_store: TokenStore | None) -> dict[str, Any]:
    env = os.environ
    port = args.port or env.get("XMPP_PORT") or conf.get("port")
    try:
        port_number = int(port) if port else None
    except ValueError:
        raise UsageError(f"port must be a number, not {port!r}") from None
    ca_file = args.ca_file or env.get("XMPP_CA") or conf.get("ca_file")
    tls: dict[str, Any] = dict(ca_file=ca_file)
    if args.no_verify:
        # Loud on purpose, whatever the log level: this is for throwaway test servers.
        print("simplexmpp: WARNING: --no-verify: the server's certificate is NOT checked; "
              "anyone on the network path can read and change this session. Use it only "
              "with a test server.", file=sys.stderr, flush=True)
        tls = dict(ca_file=None, verify=False)
    if args.tls_version is not None:
        tls = dict(ssl_context=_tls_context(ca_file, TLS_VERSIONS[args.tls_version],
                                            not args.no_verify))
    omemo_store = args.omemo_store or env.get("XMPP_OMEMO_STORE") or conf.get("omemo_store")
    if omemo_store is None and _wants_omemo(args):
        from .ext.omemo import default_store_path  # OMEMO on from the start (see _client)
        try:
            omemo_store = default_store_path(jid)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return dict(jid=jid, password=password, omemo_store=omemo_store,
                host=args.host or env.get("XMPP_HOST") or conf.get("host"),
                port=port_number,
                tls=args.tls or conf.get("tls") or "starttls",
                tls_options=tls, resource=args.resource,
                timeout=args.timeout, token_store=token_store)


def _wants_omemo(args: argparse.Namespace) -> bool:
    """Whether the command uses OMEMO, so that the client turns it on from the start."""
    return args.command == "omemo" or bool(getattr(args, "omemo", False))


def _tls_context(ca_file: str | None, minimum: ssl.TLSVersion, verify: bool) -> ssl.SSLContext:
    """The TLS context of `--tls-version` (with `--ca-file` and `--no-verify`)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load --ca-file {ca_file!r}: {exc}") from None
    context.minimum_version = minimum
    context.set_alpn_protocols(["xmpp-client"])  # XEP-0368 §3
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _client(settings: dict[str, Any]) -> Client:
    try:
        return Client(settings["jid"], settings["password"], host=settings["host"],
                      port=settings["port"], tls=settings["tls"],
                      resource=settings["resource"], timeout=settings["timeout"],
                      reconnect=False, omemo_store=settings.get("omemo_store"),
                      token_store=settings.get("token_store"),
                      **settings["tls_options"])
    except ValueError as exc:  # JIDError and friends: the user's input
        raise UsageError(str(exc)) from None


# -- commands ----------------------------------------------------------------------------------

def _split(text: str, lines: bool) -> Iterator[str]:
    if lines:
        for line in text.splitlines():
            if line:
                yield line
    elif text.strip():
        yield text.rstrip("\n")


def _input_text(args: argparse.Namespace) -> str:
    """The message: `--message`, else `--file` (`-`: stdin), else stdin."""
    if args.message is not None:
        if args.file is not None:
            raise UsageError("send: give the message with --message or --file, not both")
        return str(args.message)
    if args.file is None or args.file == "-":
        return sys.stdin.read()
    try:
        with open(args.file, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"send: cannot read --file {args.file}: {exc}") from None


def _muc_password(args: argparse.Namespace) -> str | None:
    return args.muc_password or os.environ.get("XMPP_MUC_PASSWORD") or None


_STANZAS = {f"{{{CLIENT_NS}}}{name}" for name in ("message", "presence", "iq")}


def parse_raw_stanza(text: str, max_size: int = 1 << 20) -> Stanza:
    """One stanza from `text` for `send --raw`: well-formed XML (with the stream parser's
    restrictions: no DTD, comments or processing instructions), exactly one top-level
    element, and that a `message`, `presence` or `iq` of `jabber:client`. Raises
    `UsageError` saying what is wrong."""
    parser = StreamParser(max_stanza_size=max_size)
    parser.feed(b"<stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams'>")
    try:
        items = parser.feed(text.strip().encode("utf-8"))
        if parser.in_stanza:
            raise UsageError("send --raw: the XML ends inside an element (not closed)")
        end = parser.feed(b"</stream:stream>")
    except errors.StreamError as exc:
        raise UsageError(f"send --raw: not a well-formed XML stanza ({exc.condition}"
                         + (f": {exc.text}" if exc.text else "") + ")") from None
    if any(isinstance(item, StreamEnd) for item in items) or \
            not any(isinstance(item, StreamEnd) for item in end):
        raise UsageError("send --raw: give one stanza, not stream framing")
    elements = [item for item in items if isinstance(item, ET.Element)]
    if len(elements) != 1:
        raise UsageError(f"send --raw: give exactly one stanza, not {len(elements)} elements")
    element = elements[0]
    if element.tag not in _STANZAS:
        name = element.tag.rpartition("}")[2]
        raise UsageError(f"send --raw: <{name}> is not a stanza of jabber:client (message, "
                         "presence or iq)")
    stanza = wrap(element)
    assert stanza is not None
    return stanza


def _send_raw(client: Client, args: argparse.Namespace) -> int:
    stanza: Stanza = args.stanza
    if isinstance(stanza, Iq) and stanza.type in ("get", "set"):
        if not stanza.id:
            stanza.xml.set("id", f"raw-{os.getpid()}")
        reply = client.iq(stanza, timeout=args.timeout)
        print(str(reply), flush=True)
        return EXIT_OK
    client.send(stanza, timeout=args.timeout)
    return EXIT_OK


def cmd_send(client: Client, args: argparse.Namespace) -> int:
    text: str = args.text  # read (and a raw stanza checked) before connecting
    if args.raw:
        return _send_raw(client, args)
    if not args.to and not args.muc:
        raise UsageError("send: give at least one recipient JID or --muc ROOM")
    recipients = [JID(to) for to in args.to]
    bodies = _split(text, args.lines)
    room = None
    if args.muc:
        nick = args.nick or client.account.local or "simplexmpp"
        room = client.muc.join(args.muc, nick, password=_muc_password(args),
                               timeout=args.timeout)
    sent = 0
    for body in bodies:
        for to in recipients:
            if args.omemo:
                client.omemo.send_message(to, body, type=args.type, timeout=args.timeout)
            elif args.oob:
                client.oob.send(to, args.oob, body=body)
            else:
                client.send_message(to, body, type=args.type, subject=args.subject)
            sent += 1
        if room is not None:
            if args.omemo:
                client.omemo_muc.send(room, body, timeout=args.timeout)
            else:
                room.send(body)
            sent += 1
    if room is not None:
        room.leave()
    if not sent:
        raise UsageError("send: nothing to send (empty message)")
    return EXIT_OK


def _check_send_args(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, refused before connecting."""
    if args.raw:
        clashing = [flag for flag, used in (
            ("recipient JIDs", args.to), ("--muc", args.muc), ("--subject", args.subject),
            ("--oob", args.oob), ("--lines", args.lines), ("--nick", args.nick),
            ("--muc-password", args.muc_password), ("--type", args.type != "chat")) if used]
        if clashing:
            raise UsageError(f"send --raw: the stanza says it all; drop {', '.join(clashing)}")
        return
    if args.omemo:
        clashing = [flag for flag, used in (("--subject", args.subject is not None),
                                            ("--oob", args.oob), ("--raw", args.raw)) if used]
        if clashing:
            raise UsageError(f"send --omemo: {', '.join(clashing)} would go out unencrypted; "
                             "drop it (only the body is encrypted)")
    if args.subject is not None and args.muc:
        raise UsageError("send: --subject with --muc would change the room's topic; send the "
                         "subject to people, or set the topic in a client")
    if args.subject is not None and args.oob:
        raise UsageError("send: --subject cannot be combined with --oob")
    if args.message is not None and args.file is not None:
        raise UsageError("send: give the message with --message or --file, not both")


def _prepare_send(args: argparse.Namespace) -> None:
    """Check the flags and read the message before connecting; a raw stanza is checked now,
    so a bad one costs no connection."""
    _check_send_args(args)
    args.text = _input_text(args)
    if args.raw:
        args.stanza = parse_raw_stanza(args.text)


def _message_record(msg: Any) -> dict[str, Any]:
    delay = msg.delay
    record = {"from": str(msg.from_) if msg.from_ else None, "type": msg.type, "id": msg.id,
              "body": msg.body, "subject": msg.subject, "thread": msg.thread,
              "delay": delay.isoformat() if delay else None,
              "encryption": getattr(msg, "encryption", None)}
    if record["encryption"] is not None:
        record["sender_device"] = msg.sender_device
        record["decryption_error"] = msg.decryption_error
    return record


def cmd_listen(client: Client, args: argparse.Namespace) -> int:
    client.send_presence()
    count = 0
    if args.muc:
        nick = args.nick or client.account.local or "simplexmpp"
        room = client.muc.join(args.muc, nick, password=_muc_password(args), history=0,
                               timeout=args.timeout)
        source: Iterator[Any] = room.messages(timeout=args.idle)
    else:
        source = client.messages(timeout=args.idle)
    for msg in source:
        undecrypted = msg.body is None and getattr(msg, "decryption_error", None) is not None
        if msg.body is None and not undecrypted and (args.muc or msg.subject is None):
            continue  # chat states, receipts, a room's topic and the like
        if args.json:
            print(json.dumps(_message_record(msg), ensure_ascii=False), flush=True)
        elif undecrypted:
            print(f"{msg.from_}: [cannot decrypt: {msg.decryption_error}]", flush=True)
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
    # XEP-0128 extension forms, each under its FORM_TYPE (an entity may send several).
    forms = {form_type: {var: value for var, value in form.as_dict().items()
                         if var != "FORM_TYPE"}
             for form_type in info.form_types
             for form in [info.form_for(form_type)] if form is not None}
    if args.json:
        print(json.dumps({"jid": str(target), "identities": [list(i) for i in identities],
                          "features": sorted(info.features), "forms": forms,
                          "items": [{"jid": str(i.jid), "node": i.node, "name": i.name}
                                    for i in items]}, ensure_ascii=False))
        return EXIT_OK
    print(f"{target}")
    for category, type_, name in identities:
        print(f"  identity {category}/{type_}" + (f" {name}" if name else ""))
    for feature in sorted(info.features):
        print(f"  feature  {feature}")
    for form_type, fields in forms.items():
        print(f"  form     {form_type}")
        for var, value in fields.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"    {var} = {shown}")
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


def _check_upload_args(args: argparse.Namespace) -> None:
    """`upload` arguments that cannot work, refused before connecting."""
    if not args.file.is_file():
        raise UsageError(f"upload: {args.file} is not a file")
    if args.omemo and not args.to:
        raise UsageError("upload --omemo: give --to JID: the link holds the key and goes "
                         "only into encrypted messages")
    if args.omemo and args.content_type:
        raise UsageError("upload --omemo: --content-type is not sent (encrypted uploads are "
                         "application/octet-stream)")


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    _check_upload_args(args)
    progress = None if args.no_progress else _progress_bar(args.file.stat().st_size)
    if args.omemo:
        link = client.omemo.upload(args.file, [JID(to) for to in args.to],
                                   progress=progress, timeout=args.timeout)
        print(link.https_url, flush=True)  # the key stays out of the terminal and logs
        return EXIT_OK
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


def _check_omemo_args(args: argparse.Namespace) -> None:
    """`omemo ACTION` arguments that cannot work, refused before connecting."""
    if args.action in ("trust", "distrust"):
        if not args.contact or args.device is None:
            raise UsageError(f"omemo {args.action}: give the JID and the DEVICE_ID (see "
                             "'simplexmpp omemo devices JID')")
    elif args.action == "fingerprint":
        if args.contact or args.device is not None:
            raise UsageError("omemo fingerprint shows our own; for others' use "
                             "'omemo devices JID'")
    elif args.device is not None:
        raise UsageError("omemo devices takes a JID only")
    if args.contact:
        try:
            JID(args.contact)
        except ValueError as exc:
            raise UsageError(f"omemo {args.action}: {exc}") from None


def cmd_omemo(client: Client, args: argparse.Namespace) -> int:
    omemo = client.omemo
    if args.action in ("trust", "distrust"):
        known = {d.id: d for d in omemo.devices(args.contact, timeout=args.timeout)}
        if args.device not in known:
            listed = ", ".join(map(str, sorted(known))) or "none"
            raise UsageError(f"omemo {args.action}: {JID(args.contact).bare} has no device "
                             f"{args.device} (known: {listed})")
        getattr(omemo, args.action)(args.contact, args.device, timeout=args.timeout)
        after = {d.id: d for d in omemo.devices(args.contact, timeout=args.timeout)}
        device = after[args.device]
        print(f"{device.jid} {device.id} {device.trust} {_grouped(device.fingerprint)}")
        return EXIT_OK
    if args.action == "fingerprint":
        fingerprint = omemo.fingerprint
        record = {"jid": str(client.account.bare), "device": omemo.device_id,
                  "fingerprint": fingerprint, "store": omemo.store_path}
        if args.json:
            print(json.dumps(record))
        else:
            print(f"{record['jid']} device {record['device']}\n"
                  f"{_grouped(fingerprint or '')}\nstore: {record['store']}")
        return EXIT_OK
    devices = omemo.devices(args.contact, timeout=args.timeout)
    if args.json:
        print(json.dumps([{"jid": d.jid, "id": d.id, "fingerprint": d.fingerprint,
                           "trust": d.trust, "namespace": d.namespace,
                           "namespaces": list(d.namespaces), "active": d.active,
                           "label": d.label, "this_device": d.this_device}
                          for d in devices], ensure_ascii=False))
        return EXIT_OK
    for d in devices:
        marks = [d.trust] + (["this device"] if d.this_device else []) + \
            ([] if d.active else ["removed"]) + ([repr(d.label)] if d.label else [])
        print(f"{d.jid} {d.id} {', '.join(marks)} ({d.namespace})\n  {_grouped(d.fingerprint)}")
    return EXIT_OK


def _grouped(fingerprint: str) -> str:
    """A fingerprint in groups of eight hex digits, as OMEMO clients show it."""
    return " ".join(fingerprint[i:i + 8] for i in range(0, len(fingerprint), 8))


def cmd_login(client: Client) -> int:
    """Log in with the password and keep the FAST token the server issues (XEP-0484 §4.2)."""
    store = client.token_store
    assert store is not None
    # A token already stored would be used instead of asking for a new one: this command is
    # for (re)starting from the password. The old token comes back if the login fails.
    old = store.get(client.account)
    store.discard(client.account)
    try:
        with client:
            mechanism = client.mechanism
    except BaseException:
        if old is not None and store.get(client.account) is None:
            store.put(client.account, old)
        raise
    token = store.get(client.account)
    if token is None:
        raise errors.AuthenticationError(
            f"logged in with {mechanism}, but {client.account.domain} issued no FAST token: "
            "the server does not offer XEP-0388 SASL2 with XEP-0484 FAST here", "no-mechanism")
    expiry = f", valid until {token.expiry:%Y-%m-%d %H:%M} UTC" if token.expiry else ""
    print(f"stored a FAST token ({token.mechanism}{expiry}) for {client.account.bare} "
          f"in {store.path}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "send": cmd_send, "listen": cmd_listen, "roster": cmd_roster, "ping": cmd_ping,
    "disco": cmd_disco, "upload": cmd_upload, "muc": cmd_muc, "omemo": cmd_omemo,
}


# -- main --------------------------------------------------------------------------------------

def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, errors.AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, (errors.TimeoutError, TimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(exc, errors.OMEMOError):
        return EXIT_ENCRYPTION
    if isinstance(exc, (UsageError, ValueError)):
        return EXIT_USAGE
    return EXIT_NETWORK


# What the library's messages call a keyword argument, and the flag that sets it here.
_KEYWORD_FLAGS = [
    (re.compile(r"\s*\(or an ssl_context that trusts it\)"), ""),
    (re.compile(r"\bca_file= to the Client\b"), "--ca-file"),
    (re.compile(r"\bca_file=(?=\s|$|[,;:)])"), "--ca-file"),
    (re.compile(r"\bverify=False\b"), "--no-verify"),
    (re.compile(r"\b(host|port|timeout|resource)=(?=\s|$|[,;:)])"), r"--\1"),
    (re.compile(r"\btls='direct'"), "--tls direct"),
    (re.compile(r"\btls='starttls'"), "--tls starttls"),
]


def cli_message(message: str) -> str:
    """A library error message in the words of this command: its flags (`--ca-file`), not
    the Python keywords (`ca_file=`) the library's messages name."""
    for pattern, flag in _KEYWORD_FLAGS:
        message = pattern.sub(flag, message)
    return message


def _fail(message: str, code: int) -> NoReturn:
    print(f"simplexmpp: {cli_message(message)}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    try:
        if args.command == "send":
            _prepare_send(args)
        elif args.command == "omemo":
            _check_omemo_args(args)
        elif args.command == "upload":
            _check_upload_args(args)
        settings = _settings(args)
        if args.command == "register":
            Client.register(settings["jid"], settings["password"],
                            host=settings["host"], port=settings["port"],
                            tls=settings["tls"], timeout=settings["timeout"],
                            **settings["tls_options"])
            print(f"registered {settings['jid']}")
            return EXIT_OK
        client = _client(settings)
        if args.command == "login":
            return cmd_login(client)
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
