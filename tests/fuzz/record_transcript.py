"""Record what a real Prosody sends one client during a busy session, as the seed corpus of
fuzz_client.py (tests/fuzz/transcripts/prosody.json). Re-run after a server upgrade:

    scripts/prosody-up --dir /tmp/p --auto-ports --muc-instant > /tmp/p.env
    python -m tests.fuzz.record_transcript /tmp/p.env

The file is a JSON list of what each socket read returned once the session was ready (TLS
decrypted), as it came; the recorded full JID is replaced by the placeholder ``{me}``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from simplexmpp import Client, Iq

OUT = Path(__file__).with_name("transcripts") / "prosody.json"


class _Recorder:
    """Keeps what one client read from the socket once ``ready`` (its wire log hook)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.ready = False

    def __call__(self, direction: str, data: bytes) -> None:
        if self.ready and direction == "RECV":
            self.chunks.append(data.decode("utf-8"))


def main() -> None:
    env = dict(line.strip().split("=", 1) for line in Path(sys.argv[1]).read_text().splitlines()
               if "=" in line)
    opts = dict(host=env["XMPP_HOST"], port=int(env["XMPP_PORT"]), ca_file=env["XMPP_CA"],
                timeout=15)
    password = env["XMPP_PASSWORD"].strip('"')
    recorder = _Recorder()
    logging.getLogger("simplexmpp.wire").setLevel(logging.DEBUG)  # so the hook is called
    alice = Client("alice@localhost", password, resource="rec", **opts)
    alice._conn._log_wire = recorder  # type: ignore[method-assign]
    alice.connect()
    recorder.ready = True
    bob = Client("bob@localhost", password, resource="b1", **opts).connect()
    alice2 = Client("alice@localhost", password, resource="other", **opts).connect()
    got = threading.Semaphore(0)
    alice.on("message", lambda msg: got.release())
    alice.get_roster()
    alice.carbons.enable()
    alice.send_presence(status="recording")
    alice.add_contact("bob@localhost", name="Bob", groups=["Friends"])
    alice.subscribe("bob@localhost")
    bob.approve("alice@localhost")
    bob.subscribe("alice@localhost")
    alice.approve("bob@localhost")
    bob.send_presence(show="away", status="out")
    bob.receipts.send("alice@localhost/rec", "with a receipt request")
    bob.chatstates.send("alice@localhost/rec", "composing")
    first = bob.send_message("alice@localhost/rec", "hello <&> \u00e9\U0001F600")
    bob.correction.send("alice@localhost/rec", "hello, corrected", first)
    bob.markers.send_markable("alice@localhost/rec", "markable")
    bob.oob.send("alice@localhost/rec", "https://example.org/f.png", "a file")
    bob.send_message("alice@localhost", "to the bare JID", type="normal", subject="Subj",
                     thread="t1")
    alice2.send_message("bob@localhost", "from my other resource (a carbon)")
    for _ in range(8):
        got.acquire(timeout=10)
    alice.disco.info("localhost")
    alice.disco.items("localhost")
    alice.version.query("bob@localhost/b1") if hasattr(alice.version, "query") else None
    bob.iq(Iq.get("alice@localhost/rec", ET.Element("{urn:xmpp:ping}ping")))
    bob.ping("alice@localhost/rec")
    room = alice.muc.join(f"fuzz@{env['XMPP_MUC']}", "alice")
    bob_room = bob.muc.join(f"fuzz@{env['XMPP_MUC']}", "bob")
    bob_room.send("hello room")
    room.next_message(timeout=10)
    room.set_subject("the subject")
    bob_room.leave()
    room.leave()
    alice.vcard.get("bob@localhost") if hasattr(alice, "vcard") else None
    alice.remove_contact("bob@localhost")
    alice.ping()
    for client in (bob, alice2, alice):
        client.disconnect()
    me = "alice@localhost/rec"
    chunks = [chunk.replace(me, "{me}") for chunk in recorder.chunks
              if "</stream:stream>" not in chunk]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(chunks, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(chunks)} reads recorded in {OUT}")


if __name__ == "__main__":
    main()
