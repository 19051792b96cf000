#!/usr/bin/env python3
"""Command bot: offers XEP-0050 ad-hoc commands that any XMPP client can run from its menu.

    python samples/command_bot.py --jid bot@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt --owner alice@localhost

Commands: "status" (one step), "note" (two steps with data forms: write a note, then confirm),
"notes" (a table of the notes) and "stop" (the --owner only). By default only contacts who see
the bot's presence may run them (--allow all: anyone). Stops on "stop", Ctrl-C, or after
--lifetime seconds.
"""

import platform
import threading
import time

from _common import client_from, parser

from simplexmpp.ext.commands import CommandFailed, Stage
from simplexmpp.ext.forms import Field, Form


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--allow", choices=["subscribed", "all"], default="subscribed",
                   help="who may run the commands (default: contacts who see our presence)")
    p.add_argument("--owner", action="append", default=[],
                   help="a JID that may run 'stop' (repeatable)")
    p.add_argument("--lifetime", type=float, default=None, help="stop after this many seconds")
    args = p.parse_args()
    client = client_from(args)
    started = time.monotonic()
    notes: list[dict[str, list[str]]] = []
    stop = threading.Event()

    @client.commands.command("status", "Bot status", allow=args.allow)
    def status(request):
        up = int(time.monotonic() - started)
        return f"up {up} s, {len(notes)} note(s), Python {platform.python_version()}"

    @client.commands.command("note", "Write a note", allow=args.allow)
    def note(request):
        # Stage 1: ask for the note; the generator gets the submitted form back.
        written = yield Form(title="New note", instructions=["Write a short note."], fields=[
            Field("title", type="text-single", label="Title", required=True),
            Field("text", type="text-multi", label="Text")])
        title = (written.value("title") or "").strip()
        if not title:
            raise CommandFailed("a note needs a title")
        text = "\n".join(written.value("text") or [])
        # Stage 2, the last: confirm.
        confirmed = yield Stage(Form(title="Keep it?", fields=[
            Field("keep", ["1"], type="boolean", label=f"Keep the note {title!r}?")]),
            last=True)
        if not confirmed.value("keep"):
            return "Nothing kept."
        notes.append({"title": [title], "text": [text], "by": [str(request.requester.bare)]})
        return f"Kept note {len(notes)}: {title}"

    @client.commands.command("notes", "List the notes", allow=args.allow)
    def list_notes(request):
        if not notes:
            return "No notes yet."
        return [f"{len(notes)} note(s)", Form(type="result", title="Notes", items=notes)]

    @client.commands.command("stop", "Stop the bot", allow=args.owner)
    def stop_bot(request):
        stop.set()
        return "Bye."

    with client:
        # Contacts may run the commands: accept subscription requests.
        client.on("subscription_request", lambda presence: client.approve(presence.from_))
        client.send_presence(status="Run my commands from your client's menu")
        print(f"command bot {client.jid} ready: {', '.join(client.commands.offered)}",
              flush=True)
        try:
            stop.wait(args.lifetime)
        except KeyboardInterrupt:
            pass
        # Let the answer to "stop" go out before the stream closes (disconnect flushes).
    print(f"command bot stopped with {len(notes)} note(s)", flush=True)


if __name__ == "__main__":
    main()
