"""XEP-0384 OMEMO end-to-end encryption: `client.omemo`.

```python
client = simplexmpp.Client("alice@example.org", password, omemo_store="alice.omemo.json")
client.connect()
client.omemo.send_message("bob@example.org", "only Bob's devices can read this")
for msg in client.messages():
    print(msg.body, msg.encryption, msg.sender_device)   # decrypted before it gets here
```

Both OMEMO versions in use are spoken: `urn:xmpp:omemo:2` (the current one, with XEP-0420
stanza content encryption) and `eu.siacs.conversations.axolotl` (the legacy one most deployed
clients speak). Each recipient device gets the newest one it publishes keys for. The
cryptography is python-omemo's (`omemo`, `twomemo`, `oldmemo`: `pip install
'simplexmpp[omemo]'`); it is asyncio code, run on a private event loop in a thread of this
extension (`simplexmpp-omemo-<account>`), so nothing of asyncio shows here and every method
works from any thread, also from a Jupyter cell whose thread runs an event loop.

When OMEMO is on: from `Client(omemo_store=PATH)`, from the first `client.omemo` call that
needs keys, or when the default store of the account exists already (a program that used OMEMO
before reads its messages from the first session on). Then at every new session our device is
announced (device list and bundles over PEP, XEP-0163) before anything is sent, contacts'
device lists are followed (`+notify`), and incoming OMEMO messages (direct, carbon copies, both
ways, and archived ones) are decrypted before they reach `messages()`, `next_message()` and the
"message" callbacks, in arrival order per conversation (a later message of the same peer or
room waits for an encrypted one before it: see docs/encryption.md, "Arrival order"). A message that cannot be decrypted still arrives: `body` None,
`encryption` set and `decryption_error` saying why (also logged); a session that broke gets a
fresh key exchange (XEP-0384 §7).

Trust: blind trust before verification is the default policy (`policy = "blind"`): devices
are trusted as they appear until one device of that account is trusted by hand
([trust][simplexmpp.ext.omemo.OMEMO.trust]); after that new devices of that account wait for a
decision. `policy = "manual"` trusts nothing by itself. A distrusted device is never encrypted
for and its messages are not decrypted.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import xml.etree.ElementTree as ET
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DisconnectedError, OMEMOError, OMEMOUnavailableError, XMPPError
from ..extension import Extension, Session
from ..jid import JID
from ..stanza import Message, format_datetime, mark_encrypted
from ..xml import CLIENT_NS, StreamParser, tostring

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..client import Client
    from .omemo_media import AesgcmLink
    from .upload import Progress
    from ..ext.pubsub import Item
    from ._omemo_engine import Engine
    from ._omemo_order import Slot

__all__ = ["OMEMO", "Device", "TWOMEMO_NS", "OLDMEMO_NS", "NAMESPACES", "default_store_path",
           "build_envelope", "parse_envelope", "take_envelope", "FALLBACK_BODY"]

log = logging.getLogger(__name__)

TWOMEMO_NS = "urn:xmpp:omemo:2"
"""OMEMO as XEP-0384 0.8 and later specifies it."""
OLDMEMO_NS = "eu.siacs.conversations.axolotl"
"""Legacy OMEMO (XEP-0384 0.3), what most deployed clients speak."""
NAMESPACES = (TWOMEMO_NS, OLDMEMO_NS)
"""Newest first: the order a device's namespaces are preferred in."""
TWOMEMO_DEVICES = "urn:xmpp:omemo:2:devices"
OLDMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
SCE_NS = "urn:xmpp:sce:1"
EME_NS = "urn:xmpp:eme:0"
HINTS_NS = "urn:xmpp:hints"
FALLBACK_BODY = ("I sent you an OMEMO encrypted message but your client doesn't seem to "
                 "support that.")
"""The plain body of an encrypted message, for clients without OMEMO (XEP-0384 allows one)."""

_ENCRYPTED = {"{%s}encrypted" % TWOMEMO_NS: TWOMEMO_NS,
              "{%s}encrypted" % OLDMEMO_NS: OLDMEMO_NS}
_BODY = "{%s}body" % CLIENT_NS
_EME = "{%s}encryption" % EME_NS
# Elements of a decrypted XEP-0420 <content/> that are not taken into the message: what only
# the server or the outer stanza may say (archive ids, delays, hints) or nested encryption.
_NOT_FROM_CONTENT = frozenset({
    "{urn:xmpp:sid:0}stanza-id", "{urn:xmpp:sid:0}origin-id", "{urn:xmpp:delay}delay",
    "{%s}error" % CLIENT_NS, _EME, *_ENCRYPTED})
_STREAM_OPEN = (b"<stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams'>")
TRUST_LEVELS = ("blind", "trusted", "distrusted", "undecided")
SEEN_LIMIT = 1000  # decrypted messages remembered for the repeat check
POLICIES = ("blind", "manual")


@dataclass(frozen=True)
class Device:
    """One OMEMO device of an account, as [OMEMO.devices][simplexmpp.ext.omemo.OMEMO.devices]
    lists it."""

    jid: str
    """The account's bare JID."""
    id: int
    """The device id."""
    fingerprint: str
    """Its identity key as OMEMO clients show it (Curve25519 form, 64 hex digits): compare it
    with what the other device shows before you call `trust()`."""
    trust: str
    """`"blind"` (trusted before verification), `"trusted"` (by hand), `"distrusted"` or
    `"undecided"` (not encrypted for until you decide)."""
    namespace: str
    """The OMEMO version we encrypt for it with: `urn:xmpp:omemo:2` when it publishes keys for
    it, else `eu.siacs.conversations.axolotl`."""
    namespaces: tuple[str, ...] = ()
    """Every OMEMO version it publishes keys for."""
    active: bool = True
    """Whether it is on the account's current device list (False: it was removed)."""
    label: str | None = None
    """Its label, when it publishes one (omemo:2)."""
    this_device: bool = False
    """True for the device of this client."""


FORMAT = "simplexmpp-omemo-store/1"
"""The `format` member of an OMEMO store file."""


def read_store_file(path: str) -> dict[str, Any] | None:
    """The `data` mapping of the store file at `path`, or None when there is none.

    Raises:
        OMEMOError: the file exists but is not a store (damaged, or something else).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OMEMOError(f"cannot read the OMEMO store {path}: {exc}") from exc
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OMEMOError(f"the OMEMO store {path} is damaged (not JSON: {exc}); restore it "
                         "from a backup, or move it away to start with a new device") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT or \
            not isinstance(document.get("data"), dict):
        raise OMEMOError(f"{path} is not a simplexmpp OMEMO store (format {FORMAT!r})")
    data: dict[str, Any] = document["data"]
    return data


def default_store_path(account: JID | str) -> str:
    """Where `Client(omemo_store=None)` keeps `account`'s OMEMO store: under the user's data
    directory (`$XDG_DATA_HOME`, else `~/.local/share`; `%APPDATA%` on Windows,
    `~/Library/Application Support` on macOS), `simplexmpp/omemo/<bare JID>.json`."""
    bare = str(JID(account).bare)
    if sys.platform == "win32":  # pragma: no cover
        base = os.environ.get("APPDATA") or os.path.expanduser("~/AppData/Roaming")
    elif sys.platform == "darwin":  # pragma: no cover
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "simplexmpp", "omemo", bare + ".json")


# -- XEP-0420 stanza content encryption, as XEP-0384 (0.8, "SCE profile") uses it ---------------
def build_envelope(content: list[ET.Element], from_jid: str, to_jid: str | None = None) -> bytes:
    """The plaintext of an `urn:xmpp:omemo:2` message: an SCE `<envelope/>` with `content`,
    a random-length `<rpad/>` (REQUIRED: hides the length of short messages), `<from/>`
    (SHOULD), `<to/>` (REQUIRED in group chats) and `<time/>`."""
    envelope = ET.Element("{%s}envelope" % SCE_NS)
    holder = ET.SubElement(envelope, "{%s}content" % SCE_NS)
    holder.extend(content)
    ET.SubElement(envelope, "{%s}rpad" % SCE_NS).text = \
        secrets.token_urlsafe(secrets.randbelow(150) + 1)
    if to_jid is not None:
        ET.SubElement(envelope, "{%s}to" % SCE_NS, jid=to_jid)
    ET.SubElement(envelope, "{%s}from" % SCE_NS, jid=from_jid)
    ET.SubElement(envelope, "{%s}time" % SCE_NS,
                  stamp=format_datetime(datetime.now(timezone.utc)))
    return tostring(envelope, default_ns=None).encode("utf-8")


def parse_envelope(plaintext: bytes, max_size: int = 1 << 20) -> ET.Element:
    """Parse a decrypted SCE envelope with the hardened stream parser (it comes from a peer:
    no DTDs, entities, comments; bounded size and depth). ValueError when it is not one."""
    data = plaintext.lstrip()
    if data.startswith(b"<?xml"):
        end = data.find(b"?>")
        if end < 0:
            raise ValueError("unterminated XML declaration")
        data = data[end + 2:]
    parser = StreamParser(max_stanza_size=max_size)
    try:
        items = parser.feed(_STREAM_OPEN + data)
    except XMPPError as exc:
        raise ValueError(f"not well-formed: {exc}") from exc
    elements = [item for item in items if isinstance(item, ET.Element)]
    if len(elements) != 1 or parser.in_stanza or elements[0].tag != "{%s}envelope" % SCE_NS:
        raise ValueError("not one XEP-0420 <envelope/> element")
    return elements[0]


def _encryption_elements(element: ET.Element) -> list[tuple[str, ET.Element]]:
    return [(_ENCRYPTED[child.tag], child) for child in element if child.tag in _ENCRYPTED]


class OMEMO(Extension):
    """`client.omemo`: OMEMO end-to-end encryption (XEP-0384), both namespaces."""

    name = "omemo"
    follow_sessions_from_start = False  # hooks from the moment OMEMO is on

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        given = getattr(client, "omemo_store", None)
        self.store_path: str = os.path.abspath(os.path.expanduser(
            given if given is not None else default_store_path(client.account)))
        """The store file: identity key, device id, sessions, trust (mode 0600). Back it up:
        without it a program is a new device (see docs/encryption.md)."""
        self._policy = "blind"
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._active = False
        self._failure: str | None = None   # why the engine could not start (logged once)
        self._pep_handle: int | None = None
        # Messages decrypted lately, by sender and id: a copy that comes again (a re-send
        # after a failed resumption) is not decrypted again, which would fail (its key is
        # used up) and be answered with a needless new session (XEP-0384 §7: ignore it).
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Incoming OMEMO messages: claimed from the normal path on the I/O thread, decrypted
        # on a thread of this extension (not the dispatcher: a long user callback must not
        # hold up decryption, and messages behind it), then delivered (never dropped, see
        # _decrypt_in_turn). Meanwhile later messages of the same conversation are held back,
        # so that everything reaches the user in arrival order (see _omemo_order).
        from ..dispatcher import Dispatcher
        from ._omemo_order import Sequencer
        self.order = Sequencer(on_busy=self._gate)
        """The per-conversation arrival order (`order.held`: messages waiting now,
        `order.unordered`: handed out unordered because too many waited)."""
        self._worker = Dispatcher(f"simplexmpp-omemo-decrypt-{client.account.bare}", (),
                                  idle=lambda: 5.0)
        self._hand_out = self._order_messages(None)
        self._intercept_stanzas("message", self._claim_encrypted, tags=tuple(_ENCRYPTED))
        if given is not None or os.path.exists(self.store_path):
            self._activate()

    # -- public API ---------------------------------------------------------------------------
    @property
    def policy(self) -> str:
        """The trust policy for devices never decided on: `"blind"` (the default: blind trust
        before verification) or `"manual"` (only devices you `trust()`)."""
        return self._policy

    @policy.setter
    def policy(self, value: str) -> None:
        if value not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {value!r}")
        self._policy = value

    @property
    def enabled(self) -> bool:
        """Whether OMEMO is on for this client (see the module's description)."""
        return self._active

    @property
    def device_id(self) -> int | None:
        """This client's OMEMO device id (the same in every process using the store); None
        before the store has one (it is made on the first session with OMEMO on). While
        connected with OMEMO on, waits until our device is published."""
        engine = self._started()
        if engine is not None and engine.device_id:
            return engine.device_id
        data = self._stored()
        value = data.get("/own_device_id") if data else None
        return value if isinstance(value, int) else None

    @property
    def fingerprint(self) -> str | None:
        """This device's identity key fingerprint (Curve25519 form, 64 hex digits), what the
        other side compares before trusting us; None before the store has a key."""
        engine = self._started()
        if engine is not None and engine.identity_key:
            from ._omemo_engine import fingerprint
            return fingerprint(engine.identity_key)
        data = self._stored()
        if not data or not isinstance(data.get("/ikp/key"), str):
            return None
        import base64
        from ._omemo_engine import fingerprint  # OMEMOUnavailableError without the extra
        try:
            import xeddsa
        except ImportError as exc:
            raise self._unavailable(exc) from exc
        key = base64.urlsafe_b64decode(data["/ikp/key"])
        public = (xeddsa.seed_to_ed25519_pub(key) if data.get("/ikp/is_seed")
                  else xeddsa.priv_to_ed25519_pub(key))
        return fingerprint(public)

    def send_message(self, to: JID | str, body: str, type: str = "chat",
                     namespace: str | None = None, timeout: float | None = None) -> str:
        """Send `body` encrypted to every trusted device of `to` and to our own other
        devices; return the message id.

        `namespace` None picks, per device, the newest OMEMO version it publishes keys for;
        `"urn:xmpp:omemo:2"` or `"eu.siacs.conversations.axolotl"` uses only that one.
        Turns OMEMO on when it was off (the first time: keys are made and published).

        Raises:
            NoTrustedDevicesError: `to` has no device that could read it (none publishes
                keys, or none is trusted); nothing was sent.
            OMEMOError: the store or our keys' publication failed.
            OMEMOUnavailableError: the optional packages are missing
                (`pip install 'simplexmpp[omemo]'`).
            DisconnectedError: not connected.
        """
        if not isinstance(body, str):
            raise TypeError("body must be a str")
        if type == "groupchat":  # a joined room: every member's devices (omemo_muc)
            return self.client.omemo_muc.send(to, body, namespace=namespace, timeout=timeout)
        msg = self.client.new_message(to, body, type)
        recipient = str(JID(to).bare)
        self.encrypt_message(msg, [recipient], namespace=namespace, timeout=timeout)
        self.client.send(msg, timeout)
        return msg.id or ""

    def encrypt_message(self, msg: Message, recipients: list[JID | str], *,
                        namespace: str | None = None, timeout: float | None = None) -> Message:
        """Encrypt `msg`'s body in place for every trusted device of `recipients` (bare JIDs;
        the members of a room, for a group chat) and our own other devices: the body becomes
        [FALLBACK_BODY][simplexmpp.ext.omemo.FALLBACK_BODY] and the `<encrypted/>` elements,
        an XEP-0380 hint and an XEP-0334 store hint are added. For building your own
        messages; [send_message][simplexmpp.ext.omemo.OMEMO.send_message] is this plus
        `send`. Raises as `send_message` does."""
        if namespace is not None and namespace not in NAMESPACES:
            raise ValueError(f"namespace must be None or one of {NAMESPACES}, not {namespace!r}")
        body = msg.body
        if body is None:
            raise ValueError("the message has no body to encrypt")
        bares = [str(JID(r).bare) for r in recipients]
        if not bares:
            raise ValueError("no recipients")
        engine = self._ready(timeout)
        order = [namespace] if namespace is not None else list(NAMESPACES)
        body_element = ET.Element(_BODY)
        body_element.text = body
        # XEP-0384 (SCE profile): <to/> is required in group chats (the room), so that a
        # server cannot turn a room message into a private one or back.
        room = str(msg.to.bare) if msg.type == "groupchat" and msg.to is not None else None
        plaintexts = {TWOMEMO_NS: build_envelope([body_element], engine.own, room),
                      OLDMEMO_NS: body.encode("utf-8")}
        elements = engine.run(engine.encrypt(bares, plaintexts, order), self.timeout(timeout))
        msg.body = FALLBACK_BODY
        used = [ns for ns in NAMESPACES
                if any(el.tag == "{%s}encrypted" % ns for el in elements)]
        msg.xml.extend(elements)
        # XEP-0380: clients that cannot decrypt say what the message is encrypted with.
        ET.SubElement(msg.xml, _EME, namespace=used[0] if used else order[0], name="OMEMO")
        # XEP-0384 §7: a store hint, so archives keep a message whose body is only fallback.
        ET.SubElement(msg.xml, "{%s}store" % HINTS_NS)
        return msg

    def devices(self, jid: JID | str | None = None, timeout: float | None = None, *,
                refresh: bool = False) -> list[Device]:
        """The OMEMO devices of `jid` (None: our own account, this device included), with
        fingerprints and trust. The device lists are fetched the first time in a session and
        followed by notifications after that (contacts), or fetched again after 10 minutes
        (others); `refresh=True` fetches them now."""
        engine = self._ready(timeout)
        bare = str(JID(jid).bare) if jid is not None else engine.own
        infos = engine.run(engine.devices(bare, force=refresh), self.timeout(timeout))
        from ._omemo_engine import fingerprint
        result = []
        for info in infos:
            active = {ns for ns, on in info.active if on}
            preferred = [ns for ns in NAMESPACES if ns in active] or \
                [ns for ns in NAMESPACES if ns in info.namespaces]
            result.append(Device(
                jid=bare, id=info.device_id, fingerprint=fingerprint(info.identity_key),
                trust=info.trust_level_name, namespace=preferred[0] if preferred else "",
                namespaces=tuple(ns for ns in NAMESPACES if ns in info.namespaces),
                active=bool(active), label=info.label,
                this_device=bare == engine.own and info.device_id == engine.device_id))
        return result

    def trust(self, jid: JID | str, device_id: int, timeout: float | None = None) -> None:
        """Trust `jid`'s device `device_id` (after comparing its fingerprint): it is encrypted
        for, and from now on new devices of that account are no longer trusted blindly."""
        self._set_trust(jid, device_id, "trusted", timeout)

    def distrust(self, jid: JID | str, device_id: int, timeout: float | None = None) -> None:
        """Distrust `jid`'s device `device_id`: it is no longer encrypted for (it cannot read
        what we send from now on) and its messages are not decrypted."""
        self._set_trust(jid, device_id, "distrusted", timeout)

    def set_trust(self, jid: JID | str, device_id: int, trust: str,
                  timeout: float | None = None) -> None:
        """Set a device's trust to one of `"blind"`, `"trusted"`, `"distrusted"`,
        `"undecided"`."""
        if trust not in TRUST_LEVELS:
            raise ValueError(f"trust must be one of {TRUST_LEVELS}, not {trust!r}")
        self._set_trust(jid, device_id, trust, timeout)

    def is_encrypted(self, msg: Message | ET.Element) -> bool:
        """Whether `msg` carries an OMEMO `<encrypted/>` element (either namespace)."""
        element = msg.xml if isinstance(msg, Message) else msg
        return any(child.tag in _ENCRYPTED for child in element)

    def decrypt_message(self, msg: Message, sender: JID | str | None = None,
                        timeout: float | None = None, *, archived: bool = False) -> Message:
        """Decrypt an OMEMO message the way incoming ones are (for messages you unwrap
        yourself: room messages, archives): a new Message without the `<encrypted/>`
        elements and the fallback body, with the decrypted body (and, for omemo:2, the other
        elements of the encrypted content), `encryption` and `sender_device` set. One that
        cannot be decrypted has `body` None and `decryption_error` set; never raises for what
        the peer sent. `sender` is the sender's bare JID when the `from` is not its account
        (a room occupant's real JID). `archived`: a copy from an archive, whose failure is
        not answered with a new session (XEP-0384 §7: it may have been read already). A
        message without OMEMO is returned as it is."""
        result, _empty = self._decrypt(msg, sender, timeout, heal=not archived)
        return result

    # -- encrypted files (aesgcm://, simplexmpp.ext.omemo_media) ------------------------------
    def upload(self, path: str | os.PathLike[str], to: JID | str | list[JID | str], *,
               type: str = "chat", progress: Progress | None = None,
               timeout: float | None = None) -> AesgcmLink:
        """Encrypt the file at `path`, upload it (XEP-0363) and send its `aesgcm://` link
        OMEMO-encrypted to `to` (a JID, a joined room with `type="groupchat"`, or a list of
        JIDs); return the [AesgcmLink][simplexmpp.ext.omemo_media.AesgcmLink].

        Receiving clients (Conversations, Dino, Gajim, Monal …) show the message as the file;
        [download][simplexmpp.ext.omemo.OMEMO.download] fetches and decrypts one. Raises as
        [upload_encrypted][simplexmpp.ext.omemo_media.upload_encrypted] and
        [send_message][simplexmpp.ext.omemo.OMEMO.send_message] do; when a message cannot be
        sent the file stays uploaded but nobody has its key."""
        from .omemo_media import upload_encrypted
        recipients = to if isinstance(to, list) else [to]
        if not recipients:
            raise ValueError("no recipients")
        link = upload_encrypted(self.client, path, progress=progress, timeout=timeout)
        for recipient in recipients:
            self.send_message(recipient, link.url, type=type, timeout=timeout)
        return link

    def download(self, link: Message | AesgcmLink | str, path_or_dir: str | os.PathLike[str],
                 *, progress: Progress | None = None, timeout: float | None = None,
                 max_size: int | None = None) -> Path:
        """Download and decrypt the file of an `aesgcm://` link (or of a message whose body is
        one); return the path written. Raises
        [InvalidAesgcmLinkError][simplexmpp.ext.omemo_media.InvalidAesgcmLinkError] for a
        message that is not such a link, else as
        [download_encrypted][simplexmpp.ext.omemo_media.download_encrypted] does."""
        from .omemo_media import InvalidAesgcmLinkError, aesgcm_link_of, download_encrypted
        if isinstance(link, Message):
            found = aesgcm_link_of(link)
            if found is None:
                raise InvalidAesgcmLinkError("the message is not an aesgcm:// file link")
            link = found
        return download_encrypted(self.client, link, path_or_dir, progress=progress,
                                  timeout=timeout, max_size=max_size)

    # -- lifecycle hooks (dispatcher thread) --------------------------------------------------
    def session_started(self, session: Session) -> None:
        try:
            self._ready(None)
        except XMPPError as exc:
            self._failed(exc)

    def client_stopped(self, error: BaseException | None) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self._worker.stop()  # ends once what is queued is handed out (undecrypted now)

    # -- internals ----------------------------------------------------------------------------
    def _started(self) -> Engine | None:
        """The engine when OMEMO is on and connected (started if it was not yet), else the
        engine as it is (None, or one of an ended session)."""
        if self._active and self.client.is_connected:
            try:
                return self._ready(None)
            except XMPPError as exc:
                self._failed(exc)
        return self._engine

    def _stored(self) -> dict[str, Any] | None:
        engine = self._engine
        if engine is not None:
            return {key: engine.store.get(key) for key in ("/own_device_id", "/ikp/key",
                                                            "/ikp/is_seed")}
        return read_store_file(self.store_path)

    @staticmethod
    def _unavailable(exc: BaseException) -> OMEMOUnavailableError:
        return OMEMOUnavailableError(
            "OMEMO needs the packages omemo, twomemo and oldmemo: "
            f"pip install 'simplexmpp[omemo]' ({exc})")

    def _activate(self) -> None:
        """Turn OMEMO on: follow sessions, ask for device-list notifications (XEP-0163 §4
        `+notify`), react to them."""
        with self._lock:
            if self._active:
                return
            self._active = True
        client = self.client
        self._pep_handle = client.on("pep_event", self._on_pep_event)
        for node in (TWOMEMO_DEVICES, OLDMEMO_DEVICES):
            try:
                client.pep.subscribe_notify(node)
            except XMPPError as exc:  # the presence re-send failed: the next one carries it
                log.debug("OMEMO: announcing %s+notify: %s", node, exc)
        self.follow_sessions()

    def _ready(self, timeout: float | None) -> Engine:
        """The engine, started for the current session (made and started when needed)."""
        self._activate()
        client = self.client
        with self._lock:
            session = client.session
            if not client.is_connected or session is None:
                raise DisconnectedError(f"OMEMO for {client.account.bare} needs a connected "
                                        "client: call connect() first")
            engine = self._engine
            if engine is None:
                from ._omemo_engine import Engine  # OMEMOUnavailableError without the extra
                engine = Engine(client, self.store_path, lambda: self.policy)
                self._engine = engine
            if engine.prepared_session != session.number:
                engine.run(engine.start(session.number), self.timeout(timeout) * 4)
                self._failure = None
                log.info("OMEMO on for %s: device %d, %s", engine.own, engine.device_id,
                         self.store_path)
            return engine

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if not self.client.is_connected:
            # The session ended meanwhile (a disconnect() while a new session started):
            # nothing is wrong with OMEMO; the next session starts it again.
            log.debug("OMEMO not started for %s, disconnected: %s", self.client.account.bare,
                      reason)
            return
        if reason != self._failure:
            log.error("OMEMO could not start for %s: %s", self.client.account.bare, reason)
        self._failure = reason

    def _set_trust(self, jid: JID | str, device_id: int, level: str,
                   timeout: float | None) -> None:
        if isinstance(device_id, bool) or not isinstance(device_id, int):
            raise TypeError("device_id must be an int")
        engine = self._ready(timeout)
        engine.run(engine.set_trust(str(JID(jid).bare), device_id, level),
                   self.timeout(timeout))

    def _on_pep_event(self, jid: JID, node: str, items: list[Item]) -> None:
        """Dispatcher: a device list changed (ours or a contact's)."""
        namespace = {TWOMEMO_DEVICES: TWOMEMO_NS, OLDMEMO_DEVICES: OLDMEMO_NS}.get(node)
        engine = self._engine
        if namespace is None or engine is None or engine.manager is None or not items:
            return
        engine.submit(engine.device_list_update(namespace, str(jid.bare), items[-1].payload),
                      f"the {namespace} device list update of {jid}")

    # -- incoming messages, in arrival order ---------------------------------------------------
    def decrypt_in_turn(self, msg: Message, conversation: str | None,
                        then: Callable[[Message], object]) -> None:
        """Decrypt the received OMEMO message `msg` on this extension's decryption thread
        and call `then(decrypted)` there, in arrival order with the other messages of
        `conversation` (a bare JID; None: the bare `from`): for extensions that unwrap
        messages on the I/O thread (carbons, rooms). Never blocks, never raises for what a
        peer sent: one that cannot be decrypted is passed on with `body` None and
        `decryption_error` set; an empty one (key material only) or a repeat is not passed
        on. Messages of that conversation that arrive meanwhile wait behind it when they are
        delivered ([Client.deliver][simplexmpp.Client.deliver]) or
        [held][simplexmpp.ext.omemo.OMEMO.hold_back]."""
        key = conversation if conversation is not None else msg.xml.get("from")
        self.run_in_turn(key, msg, lambda: self._incoming(msg), then)

    def run_in_turn(self, conversation: str | None, msg: Message,
                    work: Callable[[], Message | None],
                    then: Callable[[Message], object]) -> None:
        """What [decrypt_in_turn][simplexmpp.ext.omemo.OMEMO.decrypt_in_turn] does, with
        `work()` (on the decryption thread) making the message to pass on in place of `msg`
        (None: nothing). If `work` raises, `msg` is passed on undecrypted, with the reason
        (rooms decrypt with their own rules: [simplexmpp.ext.omemo_muc][])."""
        from ._omemo_order import conversation_of
        slot = self.order.reserve(conversation_of(conversation))
        self._worker.dispatch(self._decrypt_in_turn, msg, slot, work, then)

    def hold_back(self, conversation: str, action: Callable[..., object],
                  *args: object) -> bool:
        """Whether a message of `conversation` (a bare JID) that needs no decryption has
        to wait for an OMEMO message before it; if so, `action(*args)` hands it out in its
        turn (on the decryption thread) and True is returned. For extensions that hand
        messages out themselves (rooms); I/O thread."""
        from ._omemo_order import conversation_of
        return self.order.hold(conversation_of(conversation), action, *args)

    def _gate(self, busy: bool) -> None:
        """(Under the order's lock.) The client's gate is on only while a message waits."""
        self._order_messages(self._hold_back if busy else None)

    def _hold_back(self, element: ET.Element, msg: Message | None) -> bool:
        """The client's gate (I/O thread): a message about to reach messages() and the
        callbacks waits while its conversation has an OMEMO message before it."""
        from ._omemo_order import conversation_of
        return self.order.hold(conversation_of(element.get("from")), self._hand_out, element,
                               msg)

    def _claim_encrypted(self, msg: Message) -> bool:
        """I/O thread: an incoming OMEMO message is taken from the normal path and
        decrypted in its turn (quick: no lock that a slow operation holds)."""
        if not self.client.well_addressed(msg):
            return True  # logged by the check; user code never meets a malformed address
        self.decrypt_in_turn(msg, None, self.client.deliver)
        return True

    def _decrypt_in_turn(self, msg: Message, slot: Slot | None,
                         work: Callable[[], Message | None],
                         then: Callable[[Message], object]) -> None:
        """Decryption thread: decrypt `msg`, then hand it out in its turn. Whatever
        happens the slot is filled: a conversation never waits for ever."""
        try:
            result = work()
        except Exception as exc:  # a bug here must not lose the message nor stall the queue
            log.exception("OMEMO: decrypting the message %s from %s failed",
                          msg.xml.get("id"), msg.xml.get("from"))
            found = _encryption_elements(msg.xml)
            result = self._undecrypted(
                msg, found[0][0] if found else "", _sid(found[0][1]) if found else None,
                f"internal error while decrypting: {type(exc).__name__}: {exc}")
        if slot is None:  # too many waiting: not ordered
            if result is not None:
                then(result)
        elif result is None:
            self.order.fill(slot, None)
        else:
            self.order.fill(slot, then, result)

    def _incoming(self, msg: Message) -> Message | None:
        """An incoming OMEMO message decrypted (None: nothing to deliver, it was a repeat or
        an empty message, only key material)."""
        key = _message_key(msg.xml)
        if key is not None:
            with self._lock:
                if key in self._seen:
                    log.debug("OMEMO: dropping a repeated message %s from %s", key[1], key[0])
                    return None
        result, empty = self._decrypt(msg, None, None)
        if key is not None and result.decryption_error is None:
            with self._lock:
                self._seen[key] = None
                while len(self._seen) > SEEN_LIMIT:
                    self._seen.popitem(last=False)
        if empty:
            log.debug("OMEMO: empty message (key exchange or heartbeat) from %s",
                      msg.xml.get("from"))
            return None
        return result

    def _decrypt(self, msg: Message, sender: JID | str | None, timeout: float | None,
                 heal: bool = True) -> tuple[Message, bool]:
        found = _encryption_elements(msg.xml)
        if not found:
            return msg, False
        element = msg.xml
        if sender is not None:
            sender_bare = str(JID(sender).bare)
        else:
            origin = element.get("from")
            sender_bare = str(JID(origin).bare) if origin else str(self.client.account.bare)
        namespace, first = found[0]
        device_hint = _sid(first)
        if element.get("type") == "error":
            return self._undecrypted(msg, namespace, device_hint,
                                     "the server returned this encrypted message as an error"
                                     ), False
        if not self._active:
            return self._undecrypted(msg, namespace, device_hint,
                                     "OMEMO is off on this client (Client(omemo_store=...) "
                                     "or a client.omemo call turns it on)"), False
        try:
            engine = self._ready(timeout)
        except XMPPError as exc:
            self._failed(exc)
            return self._undecrypted(msg, namespace, device_hint,
                                     f"OMEMO is not working: {exc}"), False
        # Newest first: with both versions in one message, omemo:2 is read when it has a key
        # for us, else the legacy one.
        found.sort(key=lambda pair: NAMESPACES.index(pair[0]))
        outcome = None
        for namespace, encrypted in found:
            try:
                outcome = engine.run(engine.decrypt(encrypted, namespace, sender_bare, heal),
                                     self.timeout(timeout))
            except XMPPError as exc:
                return self._undecrypted(msg, namespace, device_hint,
                                         f"OMEMO failed: {exc}"), False
            if outcome.error is None:
                break
        assert outcome is not None
        if outcome.error is not None and all(
                child.find("{%s}payload" % ns) is None for ns, child in found):
            # No payload: an empty OMEMO message (key exchange, heartbeat, healing) meant for
            # other devices, or one we could not use; nothing in it for a reader.
            log.debug("OMEMO: an empty message from %s not for us: %s", element.get("from"),
                      outcome.error)
            return self._undecrypted(msg, outcome.namespace, outcome.device_id, None), True
        if outcome.error is not None:
            return self._undecrypted(msg, outcome.namespace, outcome.device_id,
                                     outcome.error), False
        if outcome.plaintext is None:
            result = self._undecrypted(msg, outcome.namespace, outcome.device_id, None)
            return result, True
        plain = _without_encryption(element)
        try:
            if outcome.namespace == TWOMEMO_NS:
                take_envelope(plain, outcome.plaintext, sender_bare, element)
            else:
                body = ET.Element(_BODY)
                body.text = outcome.plaintext.decode("utf-8")
                plain.append(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._undecrypted(msg, outcome.namespace, outcome.device_id,
                                     f"the decrypted content is not acceptable: {exc}"), False
        result = Message(plain)
        mark_encrypted(result, outcome.namespace, outcome.device_id)
        return result, False

    def _undecrypted(self, msg: Message, namespace: str, device_id: int | None,
                     error: str | None) -> Message:
        result = Message(_without_encryption(msg.xml))
        mark_encrypted(result, namespace, device_id, error)
        if error is not None:
            log.warning("OMEMO: cannot decrypt the message %s from %s (device %s): %s",
                        msg.xml.get("id"), msg.xml.get("from"), device_id, error)
        return result


def take_envelope(plain: ET.Element, plaintext: bytes, sender: str, outer: ET.Element) -> None:
    """Check the decrypted SCE envelope `plaintext` of the message `outer` from `sender` (a
    bare JID) and add its content to `plain`, the message being made. ValueError when it is
    not acceptable."""
    envelope = parse_envelope(plaintext)
    claimed = envelope.find("{%s}from" % SCE_NS)
    # XEP-0420 §5 (affix elements): the envelope's <from/> and <to/> must agree with the
    # stanza that carried it, else the server (or someone) re-addressed the content.
    if claimed is not None and _bare(claimed.get("jid")) != sender:
        raise ValueError(f"the envelope says it is from {claimed.get('jid')}, the "
                         f"message came from {sender}")
    addressed = envelope.find("{%s}to" % SCE_NS)
    # In a room the envelope names the room (the message comes from it), else the recipient.
    to = outer.get("from") if outer.get("type") == "groupchat" else outer.get("to")
    if addressed is not None and to and _bare(addressed.get("jid")) != _bare(to):
        raise ValueError(f"the envelope is addressed to {addressed.get('jid')}, the "
                         f"message to {to}")
    content = envelope.find("{%s}content" % SCE_NS)
    if content is None:
        raise ValueError("the envelope has no <content/>")
    for child in content:
        if child.tag not in _NOT_FROM_CONTENT:
            plain.append(child)


def _without_encryption(element: ET.Element) -> ET.Element:
    """A copy of the message without its OMEMO elements, XEP-0380 hint and (fallback) body."""
    copy = ET.Element(element.tag, dict(element.attrib))
    copy.text = element.text
    for child in element:
        if child.tag in _ENCRYPTED or child.tag == _BODY or child.tag == _EME:
            continue
        copy.append(child)
    return copy


def _message_key(element: ET.Element) -> tuple[str, str] | None:
    """(sender, origin-id or id) of a message, the key of the repeat check."""
    origin = element.find("{urn:xmpp:sid:0}origin-id")
    ident = origin.get("id") if origin is not None else element.get("id")
    sender = element.get("from")
    return (sender, ident) if sender and ident else None


def _sid(encrypted: ET.Element) -> int | None:
    for child in encrypted:
        if child.tag.endswith("}header"):
            try:
                return int(child.get("sid", ""))
            except ValueError:
                return None
    return None


def _bare(jid: str | None) -> str | None:
    if not jid:
        return None
    try:
        return str(JID(jid).bare)
    except ValueError:
        return jid
