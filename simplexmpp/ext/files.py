"""Jingle file transfer (XEP-0234) over in-band bytestreams (XEP-0261, XEP-0047) or SOCKS5
bytestreams through the server's proxy (XEP-0260, XEP-0065): `client.files`.

Sending blocks until the receiver has the whole file and has checked its hash (XEP-0300):

```python
client.files.send("bob@localhost/laptop", "report.pdf",
                  progress=lambda done, total: print(done, "of", total))
```

Receiving, in a script (blocking):

```python
offer = client.files.next_offer(timeout=60)          # a FileOffer
if offer.size is not None and offer.size < 10_000_000:
    path = offer.receive(directory="downloads")      # blocks; returns where it was written
else:
    offer.decline()
```

or from a callback (event "file_offer"; the callback must not wait for the transfer, since the
transfer's own stanzas are handled on the same dispatcher thread):

```python
def on_offer(offer):
    transfer = offer.accept(directory="downloads")   # returns at once
    transfer.add_done_callback(lambda t: print("got", t.result()))
client.on("file_offer", on_offer)
```

Offers larger than `client.files.max_size` are declined (XEP-0234 §11.2 `file-too-large`)
before anyone sees them, and a sender that sends more than it offered is cut off. A received
file is written to `NAME.part` and renamed only once its size and hash are right; a file of the
same name is never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hashlib
import logging
import mimetypes
import os
import queue
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import errors
from ..extension import Extension, Session
from ..jid import JID
from ..stanza import Iq, format_datetime, new_id, parse_datetime

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Files", "FileOffer", "Transfer", "FileTransferError", "FileDeclinedError",
           "FileTransferAborted", "FileIntegrityError", "FileTooLargeError", "JINGLE_NS",
           "FILE_TRANSFER_NS", "IBB_TRANSPORT_NS", "S5B_TRANSPORT_NS", "IBB_NS",
           "BYTESTREAMS_NS", "HASHES_NS"]

log = logging.getLogger(__name__)

JINGLE_NS = "urn:xmpp:jingle:1"
"""XEP-0166 Jingle."""
JINGLE_ERRORS_NS = "urn:xmpp:jingle:errors:1"
FILE_TRANSFER_NS = "urn:xmpp:jingle:apps:file-transfer:5"
"""XEP-0234 Jingle File Transfer."""
FILE_ERRORS_NS = "urn:xmpp:jingle:apps:file-transfer:errors:0"
IBB_TRANSPORT_NS = "urn:xmpp:jingle:transports:ibb:1"
"""XEP-0261 Jingle In-Band Bytestreams transport."""
S5B_TRANSPORT_NS = "urn:xmpp:jingle:transports:s5b:1"
"""XEP-0260 Jingle SOCKS5 Bytestreams transport."""
IBB_NS = "http://jabber.org/protocol/ibb"
"""XEP-0047 In-Band Bytestreams."""
BYTESTREAMS_NS = "http://jabber.org/protocol/bytestreams"
"""XEP-0065 SOCKS5 Bytestreams (the proxy's protocol)."""
HASHES_NS = "urn:xmpp:hashes:2"
"""XEP-0300 hashes."""

_JINGLE = "{%s}jingle" % JINGLE_NS
_CONTENT = "{%s}content" % JINGLE_NS
_REASON = "{%s}reason" % JINGLE_NS
_DESCRIPTION = "{%s}description" % FILE_TRANSFER_NS
_FILE = "{%s}file" % FILE_TRANSFER_NS
_HASH = "{%s}hash" % HASHES_NS

# XEP-0300 §4 / IANA hash names -> hashlib names; we send sha-256.
_HASH_ALGOS = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384",
               "sha-512": "sha512", "sha3-256": "sha3_256", "sha3-512": "sha3_512",
               "blake2b-256": "blake2b-256", "blake2b-512": "blake2b"}
_SEND_HASH = "sha-256"

# XEP-0166 §7.4: the defined reason conditions.
_REASONS = frozenset({
    "alternative-session", "busy", "cancel", "connectivity-error", "decline", "expired",
    "failed-application", "failed-transport", "general-error", "gone",
    "incompatible-parameters", "media-error", "security-error", "success", "timeout",
    "unsupported-applications", "unsupported-transports"})

Progress = Callable[[int, "int | None"], object]
"""`progress(done, total)`: bytes moved so far, and the file's size."""


class FileTransferError(errors.XMPPError):
    """A file transfer failed; `reason` is the Jingle reason (XEP-0166 §7.4) when the peer
    gave one, `text` its explanation."""

    def __init__(self, message: str, reason: str | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.text = text


class FileDeclinedError(FileTransferError):
    """The receiver declined the offer (or answered busy, or does not support it)."""


class FileTransferAborted(FileTransferError):
    """The transfer was cancelled or broken off by either side, or failed on the way."""


class FileIntegrityError(FileTransferError):
    """The received data does not match the offered size or hash (XEP-0300); nothing was kept."""


class FileTooLargeError(FileTransferError):
    """The file is larger than the receiver accepts (XEP-0234 `file-too-large`)."""


def _hashlib(algo: str) -> Any:
    name = _HASH_ALGOS.get(algo)
    if name is None:
        return None
    if name == "blake2b-256":
        return hashlib.blake2b(digest_size=32)
    return hashlib.new(name)


def _hash_file(path: Path) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.digest()


def _safe_name(name: str | None) -> str:
    """XEP-0234 §13: a name from the peer never names a directory: only its last component,
    without control characters, and never empty, "." or ".."."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c >= " " and c != "\x7f").strip()
    if base in ("", ".", "..") or base.startswith("."):
        base = "file" + (base if base not in ("", ".", "..") else "")
    return base[:200]


def _free_path(directory: Path, name: str) -> Path:
    """`directory/name`, or `name (1)`, `name (2)` … when that exists: never overwrite."""
    candidate = directory / name
    stem, suffix = os.path.splitext(name)
    number = 1
    while candidate.exists() or candidate.with_name(candidate.name + ".part").exists():
        candidate = directory / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


def _reason_element(condition: str, text: str | None = None,
                    file_error: str | None = None) -> ET.Element:
    reason = ET.Element(_REASON)
    ET.SubElement(reason, "{%s}%s" % (JINGLE_NS, condition))
    if text:
        ET.SubElement(reason, "{%s}text" % JINGLE_NS).text = text
    if file_error:
        ET.SubElement(reason, "{%s}%s" % (FILE_ERRORS_NS, file_error))
    return reason


def _parse_reason(jingle: ET.Element) -> tuple[str | None, str | None, str | None]:
    """(condition, text, file-transfer error) of a session-terminate's reason."""
    reason = jingle.find(_REASON)
    if reason is None:
        return None, None, None
    condition = text = file_error = None
    for child in reason:
        if child.tag == "{%s}text" % JINGLE_NS:
            text = child.text
        elif child.tag.startswith("{%s}" % JINGLE_NS):
            local = child.tag.split("}", 1)[1]
            if local in _REASONS:
                condition = local
        elif child.tag.startswith("{%s}" % FILE_ERRORS_NS):
            file_error = child.tag.split("}", 1)[1]
    return condition, text, file_error


def _on_dispatcher() -> bool:
    return threading.current_thread().name.startswith("simplexmpp-dispatch")


@dataclass
class _Session:
    """One Jingle session carrying one file, either way."""

    sid: str
    peer: JID
    initiator: JID
    content_name: str
    sending: bool
    transport: str                       # IBB_TRANSPORT_NS or S5B_TRANSPORT_NS
    transport_sid: str
    block_size: int = 4096
    state: str = "pending"               # pending, active, ended
    cond: threading.Condition = field(default_factory=threading.Condition)
    events: list[tuple[str, ET.Element]] = field(default_factory=list)
    # receiving side
    offer: FileOffer | None = None
    transfer: Transfer | None = None
    # SOCKS5
    candidates: list[dict[str, str]] = field(default_factory=list)


class Transfer:
    """An incoming file transfer that was accepted: wait for it with
    [result][simplexmpp.ext.files.Transfer.result].

    Attributes:
        offer: The offer it answers.
        path: Where the file is written once complete.
        received: Bytes received so far.
    """

    def __init__(self, files: Files, offer: FileOffer, path: Path,
                 progress: Progress | None) -> None:
        self.offer = offer
        self.path = path
        self.received = 0
        self._files = files
        self._progress = progress
        self._future: Future[Path] = Future()
        self._part = path.with_name(path.name + ".part")
        self._stream: IO[bytes] | None = None
        self._hashes = {algo: h for algo in offer.hashes
                        if (h := _hashlib(algo)) is not None}
        self._ibb_seq = 0
        # _write/_finish/_fail come from the dispatcher (IBB, the peer's session-terminate),
        # the SOCKS5 reader thread and the user's cancel(): one at a time
        self._lock = threading.RLock()

    @property
    def transport(self) -> str:
        """"s5b" (SOCKS5 bytestream through a proxy) or "ibb" (in-band), as negotiated so far."""
        return "ibb" if self.offer._session.transport == IBB_TRANSPORT_NS else "s5b"

    @property
    def done(self) -> bool:
        """Whether the transfer has ended (complete or failed)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> Path:
        """Wait until the file is complete and checked; return its path.

        Raises:
            FileTransferAborted: The sender broke off, or the connection was lost.
            FileIntegrityError: The data did not match the offered size or hash.
            FileTooLargeError: The sender sent more than it offered or than `max_size`.
            errors.TimeoutError: No data arrived for `timeout` seconds (default: the client's
                timeout): a transfer that keeps moving is waited for however long it takes.
                The transfer goes on; call again, or cancel() it.
            RuntimeError: Called on the dispatcher thread (a callback), where it would wait
                forever: the transfer's stanzas are handled on that thread.
        """
        if _on_dispatcher() and not self._future.done():
            raise RuntimeError("Transfer.result() would wait forever on the dispatcher thread "
                               "(in a callback): use add_done_callback() there")
        wait = self._files.timeout(timeout)
        seen = -1
        while True:
            try:
                return self._future.result(wait)
            except concurrent.futures.TimeoutError:  # not the builtin one on Python 3.10
                if self.received == seen or self.received == 0:
                    raise errors.TimeoutError(
                        f"the transfer of {self.offer.name!r} stalled: nothing arrived for "
                        f"{wait:g} s ({self.received} bytes so far)") from None
                seen = self.received

    def add_done_callback(self, fn: Callable[[Transfer], object]) -> None:
        """Call `fn(transfer)` when the transfer ends (on the thread that ends it: the
        dispatcher, or the transfer's own)."""
        self._future.add_done_callback(lambda _: fn(self))

    def cancel(self) -> None:
        """Break the transfer off (session-terminate with `cancel`); `result()` raises
        [FileTransferAborted][simplexmpp.ext.files.FileTransferAborted]."""
        if not self.done:
            self._fail(FileTransferAborted("the transfer was cancelled", "cancel"), "cancel")

    # -- internals (dispatcher, or the SOCKS5 reader thread) -----------------------------------
    def _open(self) -> None:
        self._stream = open(self._part, "xb")

    def _write(self, data: bytes) -> bool:
        """Take one block; False (and the transfer failed) when it breaks a limit."""
        with self._lock:
            return self._write_locked(data)

    def _write_locked(self, data: bytes) -> bool:
        if self.done or self._stream is None:
            return False
        limit = self._files.max_size
        expected = self.offer.size
        if (expected is not None and self.received + len(data) > expected) or \
                (limit is not None and self.received + len(data) > limit):
            self._fail(FileTooLargeError(
                f"{self.offer.sender} sent more than the {expected if expected is not None else limit}"
                " bytes allowed; transfer stopped", "media-error"),
                "media-error", file_error="file-too-large")
            return False
        self._stream.write(data)
        for digest in self._hashes.values():
            digest.update(data)
        self.received += len(data)
        if self._progress is not None:
            try:
                self._progress(self.received, expected)
            except Exception:  # noqa: BLE001 - a user's progress callback must not break it
                log.exception("progress callback failed")
        return True

    def _finish(self) -> None:
        """The sender says the data is complete: check size and hashes, then keep the file."""
        with self._lock:
            self._finish_locked()

    def _finish_locked(self) -> None:
        if self.done:
            return
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        expected = self.offer.size
        if expected is not None and self.received != expected:
            self._fail(FileIntegrityError(
                f"{self.offer.name!r}: got {self.received} bytes of {expected}", "media-error"),
                "media-error", text="size mismatch")
            return
        for algo, digest in self._hashes.items():
            if digest.digest() != self.offer.hashes[algo]:
                self._fail(FileIntegrityError(
                    f"{self.offer.name!r}: the {algo} hash does not match (XEP-0300); the data "
                    "was discarded", "media-error"), "media-error", text="hash mismatch")
                return
        if not self._hashes:
            log.warning("%s: no hash we know was offered; the file is unchecked",
                        self.offer.name)
        os.replace(self._part, self.path)
        self._files._end(self.offer._session, "success")
        self._future.set_result(self.path)

    def _fail(self, error: FileTransferError, reason: str | None,
              text: str | None = None, file_error: str | None = None) -> None:
        """End with `error`: remove the partial file; tell the peer `reason` (None: it told
        us)."""
        with self._lock:
            self._fail_locked(error, reason, text, file_error)

    def _fail_locked(self, error: FileTransferError, reason: str | None,
                     text: str | None = None, file_error: str | None = None) -> None:
        if self._future.done():
            return
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        try:
            self._part.unlink()
        except FileNotFoundError:
            pass
        if reason is not None:
            self._files._end(self.offer._session, reason, text, file_error)
        else:
            self._files._forget(self.offer._session)
        self._future.set_exception(error)


class FileOffer:
    """A file someone offers us (XEP-0234 session-initiate), to
    [accept][simplexmpp.ext.files.FileOffer.accept],
    [receive][simplexmpp.ext.files.FileOffer.receive] or
    [decline][simplexmpp.ext.files.FileOffer.decline].

    Attributes:
        sender: Who offers it (a full JID).
        name: The file's name as the sender gave it (see `safe_name`).
        size: Its size in bytes, if given.
        media_type: Its media type (default `application/octet-stream`).
        date: Its last modification time, if given.
        description: The sender's description, if any.
        hashes: XEP-0300 hashes, algorithm name -> digest bytes.
        transport: The transport namespace offered (IBB or SOCKS5).
    """

    def __init__(self, files: Files, session: _Session, file: ET.Element) -> None:
        self._files = files
        self._session = session
        self.sender = session.peer
        self.name = file.findtext("{%s}name" % FILE_TRANSFER_NS) or "file"
        size = file.findtext("{%s}size" % FILE_TRANSFER_NS)
        self.size = int(size) if size and size.strip().isdigit() else None
        self.media_type = (file.findtext("{%s}media-type" % FILE_TRANSFER_NS)
                           or "application/octet-stream")
        date = file.findtext("{%s}date" % FILE_TRANSFER_NS)
        try:
            self.date: datetime | None = parse_datetime(date) if date else None
        except ValueError:
            self.date = None
        self.description = file.findtext("{%s}desc" % FILE_TRANSFER_NS)
        self.hashes: dict[str, bytes] = {}
        for el in file.iterfind(_HASH):
            algo = el.get("algo", "")
            try:
                digest = base64.b64decode((el.text or "").strip(), validate=True)
            except (binascii.Error, ValueError):
                continue
            if algo and digest:
                self.hashes[algo] = digest
        self.transport = session.transport
        self._answered = False

    @property
    def safe_name(self) -> str:
        """The name made safe for a file system: no directories, no leading dot."""
        return _safe_name(self.name)

    @property
    def sid(self) -> str:
        """The Jingle session id."""
        return self._session.sid

    @property
    def cancelled(self) -> bool:
        """Whether the sender withdrew the offer (or it was otherwise ended) before an answer."""
        return self._session.state == "ended" and self._session.transfer is None

    def accept(self, path: str | os.PathLike[str] | None = None, *,
               directory: str | os.PathLike[str] | None = None,
               progress: Progress | None = None) -> Transfer:
        """Accept the offer and return at once; the data arrives in the background.

        Args:
            path: Where to write the file (must not exist).
            directory: Or a directory to write it to under its `safe_name` (a free variant
                of it when taken). Default: `client.files.directory`.
            progress: `progress(received, size)` after each block.

        Raises:
            FileTransferAborted: The sender already withdrew the offer.
            FileExistsError: `path` exists.
        """
        if self._answered:
            raise RuntimeError("this offer was already answered")
        if self._session.state == "ended":
            raise FileTransferAborted(f"{self.sender} withdrew the offer of {self.name!r}",
                                      "cancel")
        if path is not None:
            target = Path(path)
            if target.exists():
                raise FileExistsError(f"{target} exists; not overwritten")
        else:
            folder = Path(directory) if directory is not None else self._files.directory
            target = _free_path(folder, self.safe_name)
        transfer = Transfer(self._files, self, target, progress)
        transfer._open()
        self._answered = True
        self._session.transfer = transfer
        self._files._accept(self._session)
        return transfer

    def receive(self, path: str | os.PathLike[str] | None = None, *,
                directory: str | os.PathLike[str] | None = None,
                progress: Progress | None = None, timeout: float | None = None) -> Path:
        """Accept and wait until the file is complete and checked (see
        [accept][simplexmpp.ext.files.FileOffer.accept] and
        [Transfer.result][simplexmpp.ext.files.Transfer.result]); return its path.
        `timeout` is how long the data may stall, not a bound on the whole transfer. Not from
        a callback (RuntimeError)."""
        if _on_dispatcher():
            raise RuntimeError("FileOffer.receive() would wait forever on the dispatcher "
                               "thread (in a callback): use accept() there")
        return self.accept(path, directory=directory, progress=progress).result(timeout)

    def decline(self, reason: str = "decline", text: str | None = None) -> None:
        """Decline the offer (Jingle session-terminate with `reason`: `decline` or `busy`)."""
        if self._answered:
            raise RuntimeError("this offer was already answered")
        if reason not in _REASONS:
            raise ValueError(f"unknown Jingle reason {reason!r}")
        self._answered = True
        self._files._end(self._session, reason, text)

    def __repr__(self) -> str:
        return (f"<FileOffer {self.name!r} ({self.size if self.size is not None else '?'} "
                f"bytes) from {self.sender}>")


class Files(Extension):
    """`client.files`: send and receive files with Jingle (XEP-0234)."""

    name = "files"
    features = (JINGLE_NS, FILE_TRANSFER_NS, IBB_TRANSPORT_NS, S5B_TRANSPORT_NS, IBB_NS)
    follow_sessions_from_start = False  # nothing to end until a transfer exists

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.max_size: int | None = 100 * 1024 * 1024
        """Largest file we accept, in bytes (None: no limit). Bigger offers are declined
        with `file-too-large`; a sender that goes beyond is cut off."""
        self.directory = Path(".")
        """Where accepted files go when neither `path` nor `directory` is given."""
        self.block_size = 16384
        """IBB block size we offer and accept at most (XEP-0047 §2: up to 65535)."""
        self.window = 8
        """IBB blocks in flight at once while sending."""
        self.use_proxy = True
        """Offer SOCKS5 bytestreams through the server's proxy (XEP-0065) when it has one;
        IBB is the fall-back and the only transport when False."""
        self.max_offers = 100
        """Offers kept for `next_offer()` when nobody handles the "file_offer" event; more are
        answered `busy`."""
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._ibb: dict[tuple[str, str], _Session] = {}
        self._lock = threading.Lock()
        self._offers: queue.Queue[FileOffer] = queue.Queue()
        self._proxies: list[dict[str, str]] | None = None
        client.declare_event("file_offer")
        client.register_iq_handler("set", _JINGLE, self._on_jingle)
        client.register_iq_handler("set", "{%s}open" % IBB_NS, self._on_ibb_open)
        client.register_iq_handler("set", "{%s}data" % IBB_NS, self._on_ibb_data)
        client.register_iq_handler("set", "{%s}close" % IBB_NS, self._on_ibb_close)

    # ================================================================ receiving: blocking API
    def next_offer(self, timeout: float | None = None) -> FileOffer:
        """The next file offered to us (that no "file_offer" callback took); blocks.

        Raises:
            errors.TimeoutError: None within `timeout`.
        """
        end = time.monotonic() + self.timeout(timeout)
        while True:
            left = end - time.monotonic()
            try:
                offer = self._offers.get(timeout=max(0.0, left))
            except queue.Empty:
                raise errors.TimeoutError("no file was offered in time") from None
            if not offer.cancelled:
                return offer

    def offers(self, timeout: float | None = None) -> Iterator[FileOffer]:
        """Offers as they come, each waited for up to `timeout`; ends at a timeout."""
        while True:
            try:
                yield self.next_offer(timeout)
            except errors.TimeoutError:
                return

    # ================================================================ sending
    def send(self, to: JID | str, path: str | os.PathLike[str], *,
             progress: Progress | None = None, timeout: float | None = None,
             name: str | None = None, media_type: str | None = None,
             description: str | None = None, transport: str = "auto") -> str:
        """Offer the file at `path` to `to` and send it; return once the receiver has it
        complete and checked (it ends the session with `success`): "s5b" when it went through
        a SOCKS5 proxy, "ibb" when in-band.

        Args:
            to: The receiver: a full JID, or a bare one (then the first online resource that
                supports Jingle file transfer, by disco).
            path: The file.
            progress: `progress(sent, size)` after each block, on this thread.
            timeout: How long to wait for each step of the peer: accepting the offer (a person
                may have to decide), each answer during the transfer, the final confirmation.
            name: The name to offer (default: the file's).
            media_type: Default: guessed from the name.
            description: A text for the receiver.
            transport: "auto" (SOCKS5 through the server's proxy when there is one, else or on
                failure IBB), "ibb" or "s5b".

        Raises:
            FileDeclinedError: The receiver declined (or does not support file transfer).
            FileTransferAborted: The receiver broke off, or the data could not be delivered.
            FileIntegrityError: The receiver found the data damaged.
            FileTooLargeError: The receiver does not take files that large.
            errors.TimeoutError: The receiver did not answer within `timeout` (the session is
                then ended with `timeout`).
        """
        if transport not in ("auto", "ibb", "s5b"):
            raise ValueError("transport must be 'auto', 'ibb' or 's5b'")
        if _on_dispatcher():
            raise RuntimeError("files.send() would wait forever on the dispatcher thread "
                               "(in a callback): call it from a thread of your own")
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"no file at {source}")
        wait = self.timeout(timeout)
        peer = self._full_jid(to, wait)
        size, digest = _hash_file(source)
        sid = new_id()
        use_s5b = transport == "s5b" or (transport == "auto" and self.use_proxy)
        proxies = self._find_proxies(wait) if use_s5b else []
        if transport == "s5b" and not proxies:
            raise FileTransferError("no SOCKS5 proxy (XEP-0065) found on the server; use "
                                    "transport='ibb' or 'auto'")
        me = self.client.jid
        if me is None:
            raise errors.DisconnectedError("the client is not connected; call connect() first")
        session = _Session(sid=sid, peer=peer, initiator=me, content_name="a-file-offer",
                           sending=True,
                           transport=S5B_TRANSPORT_NS if proxies else IBB_TRANSPORT_NS,
                           transport_sid=new_id(), block_size=self.block_size)
        file = ET.Element(_FILE)
        ET.SubElement(file, "{%s}media-type" % FILE_TRANSFER_NS).text = (
            media_type or mimetypes.guess_type(name or source.name)[0]
            or "application/octet-stream")
        ET.SubElement(file, "{%s}name" % FILE_TRANSFER_NS).text = name or source.name
        ET.SubElement(file, "{%s}date" % FILE_TRANSFER_NS).text = format_datetime(
            datetime.fromtimestamp(source.stat().st_mtime, timezone.utc))
        ET.SubElement(file, "{%s}size" % FILE_TRANSFER_NS).text = str(size)
        if description:
            ET.SubElement(file, "{%s}desc" % FILE_TRANSFER_NS).text = description
        ET.SubElement(file, _HASH, algo=_SEND_HASH).text = base64.b64encode(digest).decode()
        jingle = self._jingle(session, "session-initiate")
        jingle.set("initiator", str(me))
        content = ET.SubElement(jingle, _CONTENT, creator="initiator", name=session.content_name,
                                senders="initiator")
        ET.SubElement(content, _DESCRIPTION).append(file)
        content.append(self._transport_element(session, proxies))
        self._register(session)
        try:
            try:
                self.client.iq(Iq.set(peer, jingle), wait)
            except errors.IqError as error:
                raise FileDeclinedError(f"{peer} refused the offer ({error.condition})",
                                        error.condition) from error
            kind, answer = self._next_event(session, wait, "accept the offer",
                                            ("session-accept",))
            accepted = answer.find(_CONTENT)
            ibb_answer = accepted.find("{%s}transport" % IBB_TRANSPORT_NS) \
                if accepted is not None else None
            if session.transport == IBB_TRANSPORT_NS:
                if ibb_answer is not None:
                    size_ok = ibb_answer.get("block-size", "")
                    if size_ok.isdigit() and 0 < int(size_ok) < session.block_size:
                        session.block_size = int(size_ok)  # XEP-0261 §2: the responder may lower it
                self._send_ibb(session, source, size, progress, wait)
            else:
                stream = self._s5b_initiator(session, wait)
                if stream is None:  # no candidate worked: XEP-0260 §2.5 fall back to IBB
                    self._replace_with_ibb(session, wait)
                    self._send_ibb(session, source, size, progress, wait)
                else:
                    self._send_socket(session, stream, source, size, progress, wait)
            self._next_event(session, wait, "confirm the file", ())
            return "ibb" if session.transport == IBB_TRANSPORT_NS else "s5b"
        except BaseException as failure:
            if session.state != "ended":
                self._end(session, "timeout" if isinstance(failure, errors.TimeoutError)
                          else "cancel")
            raise
        finally:
            self._forget(session)

    def _full_jid(self, to: JID | str, wait: float) -> JID:
        jid = JID(str(to))
        if jid.resource:
            return jid
        for resource in sorted(self.client.presence_of(jid)):
            candidate = jid.with_resource(resource)
            try:
                if FILE_TRANSFER_NS in self.client.disco.info(candidate, timeout=wait).features:
                    return candidate
            except errors.XMPPError:
                continue
        raise FileDeclinedError(f"no online resource of {jid} supports Jingle file transfer "
                                "(we need its presence: subscribe, or give a full JID)",
                                "unsupported-applications")

    def _send_ibb(self, session: _Session, source: Path, size: int,
                  progress: Progress | None, wait: float) -> None:
        """XEP-0047: open, data blocks as IQs (a window of them in flight), close."""
        peer, sid = session.peer, session.transport_sid
        self._iq_checked(session, ET.Element("{%s}open" % IBB_NS, {
            "block-size": str(session.block_size), "sid": sid, "stanza": "iq"}), wait)
        in_flight: list[Any] = []
        sent = 0
        seq = 0
        with open(source, "rb") as stream:
            while True:
                block = stream.read(session.block_size)
                if not block:
                    break
                data = ET.Element("{%s}data" % IBB_NS, seq=str(seq), sid=sid)
                data.text = base64.b64encode(block).decode()
                seq = (seq + 1) % 65536  # XEP-0047 §2.2: seq wraps after 65535
                in_flight.append(self.client.send_iq(Iq.set(peer, data), wait))
                while len(in_flight) >= self.window:
                    self._iq_result(session, in_flight.pop(0), wait)
                sent += len(block)
                if progress is not None:
                    progress(sent, size)
            for future in in_flight:
                self._iq_result(session, future, wait)
        self._iq_checked(session, ET.Element("{%s}close" % IBB_NS, sid=sid), wait)

    def _iq_checked(self, session: _Session, payload: ET.Element, wait: float) -> None:
        self._iq_result(session, self.client.send_iq(Iq.set(session.peer, payload), wait), wait)

    def _iq_result(self, session: _Session, future: Any, wait: float) -> None:
        try:
            future.result(wait)
        except concurrent.futures.TimeoutError:  # (3.10: not the builtin TimeoutError)
            self._raise_if_ended(session, 0)
            raise errors.TimeoutError(f"{session.peer} did not take a block within {wait:g} s"
                                      ) from None
        except errors.IqError as error:
            self._raise_if_ended(session)
            raise FileTransferAborted(f"{session.peer} refused the data ({error.condition})",
                                      error.condition) from error

    def _raise_if_ended(self, session: _Session, bound: float = 5.0) -> None:
        """Raise the peer's reason when it ended the session. A peer that refuses data ends
        the session first, but its session-terminate may be handled here a moment after the
        refusal: wait for it (up to `bound`) so the error says why."""
        end = time.monotonic() + bound
        with session.cond:
            while True:
                for kind, jingle in session.events:
                    if kind == "session-terminate":
                        raise self._terminate_error(session, jingle)
                left = end - time.monotonic()
                if left <= 0:
                    return
                session.cond.wait(left)

    # ================================================================ Jingle plumbing
    def _jingle(self, session: _Session, action: str) -> ET.Element:
        return ET.Element(_JINGLE, action=action, sid=session.sid)

    def _transport_element(self, session: _Session,
                           proxies: list[dict[str, str]]) -> ET.Element:
        if session.transport == IBB_TRANSPORT_NS:
            return ET.Element("{%s}transport" % IBB_TRANSPORT_NS, {
                "block-size": str(session.block_size), "sid": session.transport_sid})
        transport = ET.Element("{%s}transport" % S5B_TRANSPORT_NS,
                               {"sid": session.transport_sid, "mode": "tcp"})
        for number, proxy in enumerate(proxies):
            cid = new_id()
            # XEP-0260 §2.2: priority = type preference (proxy: 10) << 16 + local preference
            candidate = {"cid": cid, "host": proxy["host"], "port": proxy["port"],
                         "jid": proxy["jid"], "type": "proxy",
                         "priority": str((10 << 16) + 65535 - number)}
            session.candidates.append(candidate)
            ET.SubElement(transport, "{%s}candidate" % S5B_TRANSPORT_NS, candidate)
        return transport

    def _register(self, session: _Session) -> None:
        self.follow_sessions()
        with self._lock:
            self._sessions[(str(session.peer), session.sid)] = session
            self._ibb[(str(session.peer), session.transport_sid)] = session

    def _forget(self, session: _Session) -> None:
        with self._lock:
            self._sessions.pop((str(session.peer), session.sid), None)
            self._ibb.pop((str(session.peer), session.transport_sid), None)

    def _next_event(self, session: _Session, wait: float, what: str,
                    kinds: tuple[str, ...]) -> tuple[str, ET.Element]:
        """Wait for the peer's next Jingle action among `kinds` (a session-terminate always
        ends the wait: success when `kinds` is empty, else an error)."""
        end = time.monotonic() + wait
        with session.cond:
            while True:
                for index, (kind, jingle) in enumerate(session.events):
                    if kind == "session-terminate":
                        condition = _parse_reason(jingle)[0]
                        if not kinds and condition == "success":
                            return kind, jingle
                        raise self._terminate_error(session, jingle)
                    if kind in kinds:
                        del session.events[index]
                        return kind, jingle
                if session.state == "ended":
                    raise FileTransferAborted(f"the transfer with {session.peer} ended: the "
                                              "connection was lost or the client stopped",
                                              "gone")
                left = end - time.monotonic()
                if left <= 0:
                    raise errors.TimeoutError(f"{session.peer} did not {what} within "
                                              f"{wait:g} s")
                session.cond.wait(left)

    def _terminate_error(self, session: _Session, jingle: ET.Element) -> FileTransferError:
        condition, text, file_error = _parse_reason(jingle)
        said = f": {text}" if text else ""
        if file_error == "file-too-large":
            return FileTooLargeError(f"{session.peer} does not take a file that large{said}",
                                     condition, text)
        if condition in ("decline", "busy", "unsupported-applications",
                         "unsupported-transports", "incompatible-parameters"):
            return FileDeclinedError(f"{session.peer} declined the file ({condition}){said}",
                                     condition, text)
        if condition == "media-error":
            return FileIntegrityError(f"{session.peer} found the data damaged{said}",
                                      condition, text)
        return FileTransferAborted(f"{session.peer} ended the transfer ({condition}){said}",
                                   condition, text)

    def _end(self, session: _Session, reason: str, text: str | None = None,
             file_error: str | None = None) -> None:
        """Send session-terminate (without waiting for its answer) and forget the session."""
        if session.state == "ended":
            return
        session.state = "ended"
        jingle = self._jingle(session, "session-terminate")
        jingle.append(_reason_element(reason, text, file_error))
        try:
            future = self.client.send_iq(Iq.set(session.peer, jingle))
            future.add_done_callback(lambda f: f.exception())  # answered or not: nothing to do
        except errors.XMPPError as error:
            log.info("could not end Jingle session %s with %s: %s", session.sid,
                     session.peer, error)
        self._forget(session)

    def _on_jingle(self, iq: Iq) -> Any:  # dispatcher thread
        jingle = iq.payload
        assert jingle is not None
        action, sid, peer = jingle.get("action", ""), jingle.get("sid", ""), iq.from_
        if peer is None or not sid:
            raise errors.IqError("bad-request", "modify", "a Jingle request needs from and sid")
        if action == "session-initiate":
            return self._on_initiate(iq, jingle, peer, sid)
        with self._lock:
            session = self._sessions.get((str(peer), sid))
        if session is None:
            # XEP-0166 §7.2.2: an unknown session is item-not-found with <unknown-session/>
            reply = iq.error_reply("item-not-found", "cancel")
            error = reply.xml.find("{jabber:client}error")
            assert error is not None
            ET.SubElement(error, "{%s}unknown-session" % JINGLE_ERRORS_NS)
            return reply
        if action == "session-terminate":
            session.state = "ended"
            self._forget(session)
            transfer = session.transfer
            if transfer is not None and not transfer.done:
                transfer._fail(self._terminate_error(session, jingle), None)
        elif action == "session-info":
            self._on_session_info(session, jingle)
            return None
        elif action == "transport-replace" and not session.sending:
            return self._on_transport_replace(iq, session, jingle)
        with session.cond:
            session.events.append((action, jingle))
            session.cond.notify_all()
        return None

    def _on_initiate(self, iq: Iq, jingle: ET.Element, peer: JID, sid: str) -> Any:
        content = jingle.find(_CONTENT)
        description = content.find(_DESCRIPTION) if content is not None else None
        file = description.find(_FILE) if description is not None else None
        ibb = content.find("{%s}transport" % IBB_TRANSPORT_NS) if content is not None else None
        s5b = content.find("{%s}transport" % S5B_TRANSPORT_NS) if content is not None else None
        transport = ibb if ibb is not None else s5b
        session = _Session(sid=sid, peer=peer, initiator=peer,
                           content_name=content.get("name", "") if content is not None else "",
                           sending=False,
                           transport=IBB_TRANSPORT_NS if ibb is not None else S5B_TRANSPORT_NS,
                           transport_sid=transport.get("sid", "") if transport is not None
                           else "")
        with self._lock:
            if (str(peer), sid) in self._sessions:
                raise errors.IqError("conflict", "cancel", "a session with this sid exists")
        if file is None or content is None or content.get("senders", "initiator") != "initiator":
            # not a file offer (a request, or another application): XEP-0166 §6.3
            self._register(session)
            self.client.dispatch(self._end, session, "unsupported-applications")
            return None
        if transport is None or not session.transport_sid:
            self._register(session)
            self.client.dispatch(self._end, session, "unsupported-transports")
            return None
        if ibb is not None:
            size = ibb.get("block-size", "")
            session.block_size = min(int(size), self.block_size) \
                if size.isdigit() and int(size) > 0 else self.block_size
        else:
            session.candidates = [dict(c.attrib) for c in
                                  s5b.iterfind("{%s}candidate" % S5B_TRANSPORT_NS)]  # type: ignore[union-attr]
        offer = FileOffer(self, session, file)
        session.offer = offer
        self._register(session)
        limit = self.max_size
        if limit is not None and offer.size is not None and offer.size > limit:
            log.info("declined %r from %s: %d bytes is over files.max_size (%d)", offer.name,
                     peer, offer.size, limit)
            self.client.dispatch(self._end, session, "media-error",
                                 f"larger than {limit} bytes", "file-too-large")
            return None
        if self.client.has_callbacks("file_offer"):
            self.client.emit("file_offer", offer)
        elif self._offers.qsize() >= self.max_offers:
            self.client.dispatch(self._end, session, "busy")
        else:
            self._offers.put(offer)
        return None  # XEP-0166 §6.2: acknowledge at once; the answer comes later

    def _on_session_info(self, session: _Session, jingle: ET.Element) -> None:
        """XEP-0234 §8.2: a checksum sent after the offer."""
        checksum = jingle.find("{%s}checksum" % FILE_TRANSFER_NS)
        offer = session.offer
        if checksum is None or offer is None:
            return
        for el in checksum.iter(_HASH):
            try:
                digest = base64.b64decode((el.text or "").strip(), validate=True)
            except (binascii.Error, ValueError):
                continue
            algo = el.get("algo", "")
            if digest and algo:
                offer.hashes[algo] = digest
                transfer = session.transfer
                if transfer is not None and algo not in transfer._hashes:
                    log.warning("%s: checksum %s came after the data began; not checked",
                                offer.name, algo)

    def _accept(self, session: _Session) -> None:
        """Send session-accept for an offer (from the thread that accepts)."""
        session.state = "active"
        jingle = self._jingle(session, "session-accept")
        jingle.set("responder", str(self.client.jid))
        offer = session.offer
        assert offer is not None
        content = ET.SubElement(jingle, _CONTENT, creator="initiator",
                                name=session.content_name, senders="initiator")
        description = ET.SubElement(content, _DESCRIPTION)
        file = ET.SubElement(description, _FILE)
        ET.SubElement(file, "{%s}name" % FILE_TRANSFER_NS).text = offer.name
        if offer.size is not None:
            ET.SubElement(file, "{%s}size" % FILE_TRANSFER_NS).text = str(offer.size)
        if session.transport == IBB_TRANSPORT_NS:
            content.append(ET.Element("{%s}transport" % IBB_TRANSPORT_NS, {
                "block-size": str(session.block_size), "sid": session.transport_sid}))
        else:
            # We offer no candidates of our own (XEP-0260 allows an empty list): we connect
            # to the initiator's, after the accept.
            content.append(ET.Element("{%s}transport" % S5B_TRANSPORT_NS, {
                "sid": session.transport_sid, "mode": "tcp"}))
        future = self.client.send_iq(Iq.set(session.peer, jingle))

        def accepted(f: Any) -> None:
            error = f.exception()
            transfer = session.transfer
            if error is not None and transfer is not None:
                transfer._fail(FileTransferAborted(
                    f"{session.peer} did not take our acceptance: {error}"), None)
                self._forget(session)
            elif session.transport == S5B_TRANSPORT_NS:
                threading.Thread(target=self._s5b_responder, args=(session,),
                                 name=f"simplexmpp-s5b-{session.sid}", daemon=True).start()

        future.add_done_callback(accepted)

    # ================================================================ IBB receiving
    def _ibb_session(self, iq: Iq, sid: str | None) -> _Session:
        with self._lock:
            session = self._ibb.get((str(iq.from_), sid or ""))
        if session is None or session.sending or session.transfer is None \
                or session.transport != IBB_TRANSPORT_NS:
            # XEP-0047 §2.1: an unknown or unaccepted stream is item-not-found / not-acceptable
            raise errors.IqError("item-not-found", "cancel", "no such bytestream")
        return session

    def _on_ibb_open(self, iq: Iq) -> None:
        payload = iq.payload
        assert payload is not None
        session = self._ibb_session(iq, payload.get("sid"))
        size = payload.get("block-size", "")
        if not size.isdigit() or not 0 < int(size) <= session.block_size:
            raise errors.IqError("resource-constraint", "modify",
                                 f"block-size must be at most {session.block_size}")
        if payload.get("stanza", "iq") != "iq":
            raise errors.IqError("feature-not-implemented", "cancel", "only stanza='iq'")
        session.block_size = int(size)
        return None

    def _on_ibb_data(self, iq: Iq) -> None:
        payload = iq.payload
        assert payload is not None
        session = self._ibb_session(iq, payload.get("sid"))
        transfer = session.transfer
        assert transfer is not None
        seq = payload.get("seq", "")
        if not seq.isdigit() or int(seq) != transfer._ibb_seq:
            # XEP-0047 §2.2: a repeated or missing sequence number closes the stream
            transfer._fail(FileTransferAborted(f"{session.peer} sent block {seq!r}, expected "
                                               f"{transfer._ibb_seq}", "failed-transport"),
                           "failed-transport")
            raise errors.IqError("unexpected-request", "cancel", "bad sequence number")
        try:
            block = base64.b64decode((payload.text or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            transfer._fail(FileTransferAborted(f"{session.peer} sent a block that is not "
                                               "base64", "failed-transport"), "failed-transport")
            raise errors.IqError("bad-request", "cancel", "not base64") from None
        if len(block) > session.block_size:
            transfer._fail(FileTransferAborted(f"{session.peer} sent a block over the agreed "
                                               "block-size", "failed-transport"),
                           "failed-transport")
            raise errors.IqError("bad-request", "cancel", "block too large")
        transfer._ibb_seq = (transfer._ibb_seq + 1) % 65536
        if not transfer._write(block):
            raise errors.IqError("not-acceptable", "cancel", "transfer ended")
        return None

    def _on_ibb_close(self, iq: Iq) -> None:
        payload = iq.payload
        assert payload is not None
        session = self._ibb_session(iq, payload.get("sid"))
        transfer = session.transfer
        assert transfer is not None
        self.client.dispatch(transfer._finish)  # after this close is answered
        return None

    def _on_transport_replace(self, iq: Iq, session: _Session, jingle: ET.Element) -> Any:
        """XEP-0260 §2.5: the initiator falls back to IBB; we accept."""
        content = jingle.find(_CONTENT)
        ibb = content.find("{%s}transport" % IBB_TRANSPORT_NS) if content is not None else None
        if ibb is None or not ibb.get("sid"):
            self.client.dispatch(self._end, session, "unsupported-transports")
            return None
        with self._lock:
            self._ibb.pop((str(session.peer), session.transport_sid), None)
            session.transport = IBB_TRANSPORT_NS
            session.transport_sid = ibb.get("sid", "")
            size = ibb.get("block-size", "")
            session.block_size = min(int(size), self.block_size) \
                if size.isdigit() and int(size) > 0 else self.block_size
            self._ibb[(str(session.peer), session.transport_sid)] = session
        answer = self._jingle(session, "transport-accept")
        content_el = ET.SubElement(answer, _CONTENT, creator="initiator",
                                   name=session.content_name)
        content_el.append(ET.Element("{%s}transport" % IBB_TRANSPORT_NS, {
            "block-size": str(session.block_size), "sid": session.transport_sid}))
        self.client.send_iq(Iq.set(session.peer, answer)).add_done_callback(
            lambda f: f.exception())
        return None

    def _replace_with_ibb(self, session: _Session, wait: float) -> None:
        with self._lock:
            self._ibb.pop((str(session.peer), session.transport_sid), None)
            session.transport = IBB_TRANSPORT_NS
            session.transport_sid = new_id()
            self._ibb[(str(session.peer), session.transport_sid)] = session
        jingle = self._jingle(session, "transport-replace")
        content = ET.SubElement(jingle, _CONTENT, creator="initiator", name=session.content_name)
        content.append(self._transport_element(session, []))
        self.client.iq(Iq.set(session.peer, jingle), wait)
        _, answer = self._next_event(session, wait, "accept the fall-back to IBB",
                                     ("transport-accept",))
        accepted = answer.find(_CONTENT)
        ibb = accepted.find("{%s}transport" % IBB_TRANSPORT_NS) if accepted is not None else None
        if ibb is not None and ibb.get("block-size", "").isdigit():
            session.block_size = max(1, min(session.block_size, int(ibb.get("block-size", ""))))

    # ================================================================ SOCKS5 (XEP-0260/0065)
    # What we implement of XEP-0260: the initiator offers the SOCKS5 proxies of its server
    # (XEP-0065 §6) as candidates; the responder offers none (an empty candidate list), tries
    # the initiator's in priority order and reports candidate-used or candidate-error; the
    # initiator, which can use no candidate of the responder, reports candidate-error, so the
    # responder's choice is the nominated candidate (§2.4). The initiator then connects to that
    # proxy itself, activates the bytestream (XEP-0065 §6.3.3) and says so with <activated/>.
    # Both sides failing means the XEP-0260 §3 fall-back: transport-replace to IBB.
    def _find_proxies(self, wait: float) -> list[dict[str, str]]:
        """The SOCKS5 proxies of our server (XEP-0065 §4), asked once per client."""
        if self._proxies is not None:
            return self._proxies
        proxies: list[dict[str, str]] = []
        try:
            services = self.client.disco.find("proxy", "bytestreams", timeout=wait)
        except errors.XMPPError as error:
            log.info("no SOCKS5 proxy found: %s", error)
            services = []
        for service in services:
            try:
                answer = self.client.iq(Iq.get(service.jid, ET.Element(
                    "{%s}query" % BYTESTREAMS_NS)), wait)
            except errors.XMPPError as error:
                log.info("the SOCKS5 proxy %s did not answer: %s", service.jid, error)
                continue
            payload = answer.payload
            for host in payload.iterfind("{%s}streamhost" % BYTESTREAMS_NS) \
                    if payload is not None else ():
                if host.get("host") and (host.get("port") or "").isdigit():
                    proxies.append({"jid": host.get("jid") or str(service.jid),
                                    "host": host.get("host", ""), "port": host.get("port", "")})
        self._proxies = proxies
        return proxies

    def _transport_info(self, session: _Session, child: ET.Element, wait: float | None) -> None:
        jingle = self._jingle(session, "transport-info")
        content = ET.SubElement(jingle, _CONTENT, creator="initiator", name=session.content_name)
        transport = ET.SubElement(content, "{%s}transport" % S5B_TRANSPORT_NS,
                                  sid=session.transport_sid)
        transport.append(child)
        self.client.iq(Iq.set(session.peer, jingle), wait)

    def _s5b_initiator(self, session: _Session, wait: float) -> socket.socket | None:
        """After session-accept: report that we use none of the responder's candidates, wait
        for its report, and connect through the proxy it chose; None when it could use none."""
        self._transport_info(session, ET.Element("{%s}candidate-error" % S5B_TRANSPORT_NS), wait)
        while True:
            _, jingle = self._next_event(session, wait, "try our SOCKS5 candidates",
                                         ("transport-info",))
            transport = jingle.find(".//{%s}transport" % S5B_TRANSPORT_NS)
            if transport is None:
                continue
            if transport.find("{%s}candidate-error" % S5B_TRANSPORT_NS) is not None:
                log.info("%s could not reach our SOCKS5 proxy; falling back to IBB",
                         session.peer)
                return None
            used = transport.find("{%s}candidate-used" % S5B_TRANSPORT_NS)
            if used is not None:
                break
        candidate = next((c for c in session.candidates if c["cid"] == used.get("cid")), None)
        if candidate is None:
            raise FileTransferAborted(f"{session.peer} chose a SOCKS5 candidate we did not "
                                      "offer", "failed-transport")
        try:
            stream = _socks5_connect(candidate["host"], int(candidate["port"]),
                                     _dst_addr(session.transport_sid, session.initiator,
                                               session.peer), min(wait, 10.0))
            query = ET.Element("{%s}query" % BYTESTREAMS_NS, sid=session.transport_sid)
            ET.SubElement(query, "{%s}activate" % BYTESTREAMS_NS).text = str(session.peer)
            self.client.iq(Iq.set(candidate["jid"], query), wait)  # XEP-0065 §6.3.3
        except (OSError, errors.IqError) as error:
            log.info("could not use our SOCKS5 proxy %s: %s; falling back to IBB",
                     candidate["jid"], error)
            self._transport_info(session, ET.Element("{%s}proxy-error" % S5B_TRANSPORT_NS),
                                 wait)
            return None
        self._transport_info(session, ET.Element("{%s}activated" % S5B_TRANSPORT_NS,
                                                 cid=candidate["cid"]), wait)
        return stream

    def _send_socket(self, session: _Session, stream: socket.socket, source: Path, size: int,
                     progress: Progress | None, wait: float) -> None:
        sent = 0
        stream.settimeout(wait)
        try:
            with open(source, "rb") as data:
                while chunk := data.read(1 << 16):
                    if session.events and session.events[-1][0] == "session-terminate":
                        self._raise_if_ended(session, 0)
                    stream.sendall(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
            stream.shutdown(socket.SHUT_WR)
        except socket.timeout:
            raise errors.TimeoutError(f"{session.peer} did not read the data within "
                                      f"{wait:g} s") from None
        except OSError as error:
            self._raise_if_ended(session)
            raise FileTransferAborted(f"the SOCKS5 bytestream to {session.peer} broke: "
                                      f"{error}", "connectivity-error") from error
        finally:
            # the receiver's session-terminate, read after this, tells whether it arrived
            stream_closer = threading.Thread(target=_drain_and_close, args=(stream, wait),
                                             name="simplexmpp-s5b-close", daemon=True)
            stream_closer.start()

    def _s5b_responder(self, session: _Session) -> None:
        """Our thread for an accepted SOCKS5 offer: connect to the initiator's candidates,
        report, wait for activation, then read the file until the initiator closes."""
        transfer = session.transfer
        assert transfer is not None
        wait = self.timeout(None)
        me = self.client.jid
        if me is None:
            transfer._fail(FileTransferAborted("the client is not connected", "gone"), None)
            return
        dst = _dst_addr(session.transport_sid, session.initiator, me)
        stream = None
        chosen = None
        # XEP-0260 §2.3: by priority, highest first; don't wait long on any (§4: 5 s)
        for candidate in sorted(session.candidates,
                                key=lambda c: -int(c.get("priority", "0"))
                                if c.get("priority", "").isdigit() else 0):
            port = candidate.get("port", "")
            if not candidate.get("cid") or not port.isdigit():
                continue
            try:
                stream = _socks5_connect(candidate.get("host", ""), int(port), dst, 5.0)
                chosen = candidate
                break
            except OSError as error:
                log.info("SOCKS5 candidate %s:%s failed: %s", candidate.get("host"), port, error)
        try:
            if stream is None or chosen is None:
                self._transport_info(session, ET.Element(
                    "{%s}candidate-error" % S5B_TRANSPORT_NS), wait)
                return  # the initiator replaces the transport with IBB, or ends the session
            self._transport_info(session, ET.Element("{%s}candidate-used" % S5B_TRANSPORT_NS,
                                                     cid=chosen["cid"]), wait)
            activated = False
            while not activated:
                _, jingle = self._next_event(session, wait, "activate the bytestream",
                                             ("transport-info",))
                transport = jingle.find(".//{%s}transport" % S5B_TRANSPORT_NS)
                if transport is None:
                    continue
                if transport.find("{%s}proxy-error" % S5B_TRANSPORT_NS) is not None:
                    stream.close()
                    return  # IBB follows (transport-replace)
                activated = transport.find("{%s}activated" % S5B_TRANSPORT_NS) is not None
            stream.settimeout(wait)
            while not transfer.done:
                chunk = stream.recv(1 << 16)
                if not chunk:
                    transfer._finish()
                    break
                if not transfer._write(chunk):
                    break
        except FileTransferError as error:
            transfer._fail(error if isinstance(error, FileTransferError) else
                           FileTransferAborted(str(error)), None)
        except (OSError, errors.XMPPError) as error:
            transfer._fail(FileTransferAborted(f"the SOCKS5 bytestream from {session.peer} "
                                               f"failed: {error}", "connectivity-error"),
                           "connectivity-error")
        finally:
            if stream is not None:
                stream.close()

    # ================================================================ lifecycle
    def session_started(self, session: Session) -> None:
        """A new session after a lost one: the Jingle sessions and bytestreams of the old one
        are gone with it (the peer's stanzas went to a session that no longer exists)."""
        if not session.first:
            self._abort_all("the connection was lost")

    def client_stopped(self, error: BaseException | None) -> None:
        self._abort_all("the client stopped")

    def _abort_all(self, why: str) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            transfer = session.transfer
            if transfer is not None and not transfer.done:
                transfer._fail(FileTransferAborted(f"file transfer ended: {why}", "gone"), None)
            with session.cond:
                session.state = "ended"
                session.cond.notify_all()
            self._forget(session)



def _dst_addr(sid: str, requester: JID, target: JID) -> str:
    """XEP-0065 §5.3.2 / XEP-0260 §2.3: the SOCKS5 DST.ADDR is SHA-1 (hex) of the stream id and
    the full JIDs of the party that offered the candidate and of the other party."""
    return hashlib.sha1(f"{sid}{requester}{target}".encode()).hexdigest()


def _recv_exact(stream: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = stream.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("the SOCKS5 server closed the connection")
        data += chunk
    return data


def _socks5_connect(host: str, port: int, dst_addr: str, timeout: float) -> socket.socket:
    """A SOCKS5 connection (RFC 1928, no authentication) to `host`, asking for the
    bytestream named `dst_addr` (XEP-0065 §5.3: CONNECT to a domain name, port 0)."""
    stream = socket.create_connection((host, port), timeout)
    try:
        stream.sendall(b"\x05\x01\x00")                       # version 5, one method: none
        if _recv_exact(stream, 2) != b"\x05\x00":
            raise ConnectionRefusedError("the SOCKS5 server wants authentication")
        address = dst_addr.encode()
        stream.sendall(b"\x05\x01\x00\x03" + bytes([len(address)]) + address + b"\x00\x00")
        reply = _recv_exact(stream, 4)
        if reply[1] != 0:
            raise ConnectionRefusedError(f"the SOCKS5 server refused (code {reply[1]})")
        kind = reply[3]
        if kind == 3:
            _recv_exact(stream, _recv_exact(stream, 1)[0] + 2)
        else:
            _recv_exact(stream, (4 if kind == 1 else 16) + 2)
    except BaseException:
        stream.close()
        raise
    stream.settimeout(None)
    return stream


def _drain_and_close(stream: socket.socket, wait: float) -> None:
    """Close a sending stream once the other side has closed too (so the last bytes are not
    cut off by a reset), or after `wait`."""
    try:
        stream.settimeout(wait)
        while stream.recv(4096):
            pass
    except OSError:
        pass
    finally:
        stream.close()
