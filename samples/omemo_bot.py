#!/usr/bin/env python3
"""OMEMO echo bot: answers end-to-end encrypted messages encrypted, keeps encrypted files.

    pip install 'simplexmpp[omemo]'
    python samples/omemo_bot.py --jid bot@localhost --password password \
        --host 127.0.0.1 --ca-file certs/localhost.crt --store bot.omemo.json --downloads files/

Prints its device id and fingerprint (compare them in your client before you trust it), then
answers each OMEMO message with the same text, encrypted. A shared file (an aesgcm:// link from
Conversations, Dino, Gajim, Monal ...) is downloaded into --downloads, decrypted, and
acknowledged. Plain messages get a note that only encrypted ones are answered. Stops on Ctrl-C,
after --max answers, or after --idle seconds without a message.
"""

from _common import client_from, parser

from simplexmpp.errors import OMEMOError, XMPPError
from simplexmpp.ext.omemo_media import aesgcm_link_of


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="the OMEMO store file (keep it: it is the "
                                                  "bot's device)")
    p.add_argument("--downloads", default=".", help="where shared files go (default: here)")
    p.add_argument("--max", type=int, default=0, help="stop after this many answers")
    p.add_argument("--idle", type=float, default=None, help="stop after this many idle seconds")
    args = p.parse_args()
    with client_from(args, omemo_store=args.store) as client:
        client.on("subscription_request", lambda presence: client.approve(presence.from_))
        client.send_presence(status="I answer OMEMO messages")
        print(f"omemo bot {client.jid} ready: device {client.omemo.device_id}, fingerprint "
              f"{client.omemo.fingerprint}", flush=True)
        answered = 0
        try:
            for msg in client.messages(timeout=args.idle):
                if msg.type not in ("chat", "normal") or msg.from_ is None:
                    continue
                sender = msg.from_.bare
                if msg.encryption is None:
                    if msg.body:
                        client.send_message(sender, "I only answer OMEMO-encrypted messages.")
                    continue
                if msg.body is None:  # could not be decrypted: the reason was logged
                    print(f"cannot decrypt a message from {sender}: {msg.decryption_error}")
                    continue
                link = aesgcm_link_of(msg)
                try:
                    if link is not None:
                        path = client.omemo.download(link, args.downloads)
                        print(f"received {path} from {sender}", flush=True)
                        answer = f"got {link.filename} ({path.stat().st_size} bytes)"
                    else:
                        answer = msg.body
                    client.omemo.send_message(sender, answer)
                except OMEMOError as exc:  # e.g. none of the sender's devices is trusted
                    print(f"cannot answer {sender}: {exc}", flush=True)
                    continue
                except XMPPError as exc:  # a download that failed (changed file, HTTP error)
                    client.omemo.send_message(sender, f"could not get your file: {exc}")
                answered += 1
                if args.max and answered >= args.max:
                    break
        except KeyboardInterrupt:
            pass
        print(f"omemo bot answered {answered} message(s)", flush=True)


if __name__ == "__main__":
    main()
