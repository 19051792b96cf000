"""An independent OMEMO peer for the tests: slixmpp with slixmpp-omemo, run as its own process.

    python omemo_peer.py JID PASSWORD HOST PORT CA_FILE STORE_FILE

It prints one JSON object per line on stdout: {"ready": device_id} once its device is
published, {"got": body, "ns": namespace, "device": sender_device, "from": bare JID} for each
OMEMO message it decrypted, {"error": text} for one it could not. It reads commands, one JSON
object per line, on stdin: {"send": jid, "ns": namespace, "body": text}; and it answers every
message it decrypted with "echo: <body>" in the same namespace.

slixmpp-omemo 2.2 encrypts and decrypts only eu.siacs.conversations.axolotl itself (it has no
XEP-0420 envelopes). For urn:xmpp:omemo:2 this peer drives python-omemo's session manager,
which the plugin creates, directly and builds and reads the XEP-0420 envelope itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, FrozenSet, Optional

import oldmemo
import twomemo
import twomemo.etree
from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp import JID, ClientXMPP
from slixmpp.plugins import register_plugin
from slixmpp.stanza import Message
from slixmpp_omemo import XEP_0384

TWOMEMO = twomemo.twomemo.NAMESPACE
OLDMEMO = oldmemo.oldmemo.NAMESPACE
SCE = "urn:xmpp:sce:1"


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class FileStorage(Storage):  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.data: dict[str, JSONType] = json.loads(path.read_text()) if path.exists() else {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data))

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.path.write_text(json.dumps(self.data))


class XEP_0384Impl(XEP_0384):  # noqa: N801 - slixmpp's naming
    default_config = {"fallback_message": "This message is OMEMO encrypted.",
                      "json_file_path": None}

    def plugin_init(self) -> None:
        self._store = FileStorage(Path(self.json_file_path))
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self._store

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
        return None

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation],
                                   identifier: Optional[str]) -> None:
        session_manager = await self.get_session_manager()
        for device in manually_trusted:
            await session_manager.set_trust(device.bare_jid, device.identity_key, "TRUSTED")


register_plugin(XEP_0384Impl)


class Peer(ClientXMPP):  # type: ignore[misc]
    def __init__(self, jid: str, password: str, store: str) -> None:
        super().__init__(jid, password)
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0380")
        self.register_plugin("xep_0384", {"json_file_path": store},
                             module=sys.modules[__name__])
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)

    @property
    def omemo(self) -> XEP_0384Impl:
        return self["xep_0384"]  # type: ignore[no-any-return]

    async def start(self, _event: Any) -> None:
        self.send_presence()
        await self.get_roster()
        session_manager = await self.omemo.get_session_manager()
        device, _ = await session_manager.get_own_device_information()
        emit(ready=device.device_id)

    async def on_message(self, stanza: Message) -> None:
        if stanza["type"] not in ("chat", "normal"):
            return
        sender = JID(stanza["from"]).bare
        found = self.omemo.is_encrypted(stanza)
        if not found:
            return
        try:
            if TWOMEMO in found:
                body, device = await self.decrypt_twomemo(stanza, sender)
                namespace = TWOMEMO
            else:
                decrypted, info = await self.omemo.decrypt_message(stanza)
                body, device, namespace = decrypted["body"] or None, info.device_id, OLDMEMO
        except Exception as exc:  # noqa: BLE001 - reported to the test
            emit(error=f"{type(exc).__name__}: {exc}", **{"from": sender})
            return
        if body is None:
            return  # an empty OMEMO message: key material only
        emit(got=body, ns=namespace, device=device, **{"from": sender})
        if not body.startswith("echo: "):
            await self.send_encrypted(sender, namespace, "echo: " + body)

    async def decrypt_twomemo(self, stanza: Message, sender: str) -> tuple[Optional[str], int]:
        session_manager = await self.omemo.get_session_manager()
        element = stanza.xml.find(f"{{{TWOMEMO}}}encrypted")
        message = twomemo.etree.parse_message(element, sender)
        plaintext, device, _ = await session_manager.decrypt(message)
        if plaintext is None:
            return None, device.device_id
        envelope = ET.fromstring(plaintext)
        claimed = envelope.find(f"{{{SCE}}}from")
        if claimed is not None and JID(claimed.get("jid")).bare != sender:
            raise ValueError("the envelope's <from/> is not the sender")
        body = envelope.find(f"{{{SCE}}}content/{{jabber:client}}body")
        return (body.text or "") if body is not None else None, device.device_id

    async def send_encrypted(self, to: str, namespace: str, body: str) -> None:
        if namespace == OLDMEMO:
            msg = self.make_message(mto=JID(to), mtype="chat")
            msg["body"] = body
            encrypted, errors = await self.omemo.encrypt_message(msg, JID(to))
            encrypted.send()
            return
        # omemo:2, by hand: an XEP-0420 envelope encrypted with the session manager
        envelope = ET.Element(f"{{{SCE}}}envelope")
        content = ET.SubElement(envelope, f"{{{SCE}}}content")
        ET.SubElement(content, "{jabber:client}body").text = body
        ET.SubElement(envelope, f"{{{SCE}}}rpad").text = base64.b64encode(
            secrets.token_bytes(secrets.randbelow(32) + 1)).decode()
        ET.SubElement(envelope, f"{{{SCE}}}from", jid=self.boundjid.bare)
        plaintext = ET.tostring(envelope)
        await self.omemo.refresh_device_lists({JID(to)})
        session_manager = await self.omemo.get_session_manager()
        messages, _errors = await session_manager.encrypt(
            frozenset({to}), {TWOMEMO: plaintext, OLDMEMO: body.encode()},
            backend_priority_order=[TWOMEMO])
        msg = self.make_message(mto=JID(to), mtype="chat")
        msg["body"] = "This message is OMEMO encrypted."
        for message in messages:
            msg.append(twomemo.etree.serialize_message(message))
        msg.enable("store")
        msg.send()

    def command(self, line: str) -> None:
        order = json.loads(line)
        asyncio.ensure_future(self.send_encrypted(order["send"], order["ns"], order["body"]))


def main() -> None:
    jid, password, host, port, ca, store = sys.argv[1:7]
    peer = Peer(jid, password, store)
    peer.ca_certs = Path(ca)
    loop = asyncio.get_event_loop()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(peer.command, line)
        loop.call_soon_threadsafe(peer.disconnect)

    threading.Thread(target=read_commands, daemon=True).start()
    peer.connect(host, int(port))
    loop.run_until_complete(peer.disconnected)


if __name__ == "__main__":
    main()
