"""Encrypted file sharing as OMEMO clients do it (XEP-0454 OMEMO Media sharing): `aesgcm://`
links.

The file is encrypted with AES-256-GCM under a fresh random key and 12-byte IV while it is
uploaded by XEP-0363 HTTP upload; what the HTTP server stores is the ciphertext followed by the
16-byte authentication tag (§2). The link that is then sent, inside an OMEMO-encrypted message,
is the HTTPS GET URL with the scheme `aesgcm` and the IV and key in the fragment, in hex:

```
aesgcm://upload.example.org/f7.../3b9e0c1d2a4f.jpg#<24 hex digits of IV><64 hex digits of key>
```

Conversations, Dino, Gajim, Monal and Siskin show such a message as the file itself.

```python
from simplexmpp.ext.omemo_media import upload_encrypted, download_encrypted, aesgcm_link_of

link = upload_encrypted(client, "photo.jpg")      # an AesgcmLink; str(link) is the aesgcm:// URL
# ... send str(link) OMEMO-encrypted (client.omemo.upload(path, to) does all three steps)

link = aesgcm_link_of(msg)                        # None unless the body is exactly such a link
if link is not None:
    path = download_encrypted(client, link, "downloads/")
```

What the server still learns: that a file of this size (plus 16 bytes) was uploaded by this
account at this time, and the file name extension (kept so that receiving clients can tell the
kind of file). The name itself is replaced by a random one; the content type sent is always
`application/octet-stream`.

Receiving accepts the legacy 16-byte IV (a 96-hex-digit fragment) that older clients sent.
A file whose tag does not match (changed on the server, cut short, or a wrong key) raises
[`DecryptionFailedError`][simplexmpp.ext.omemo_media.DecryptionFailedError] and leaves no file
behind: plaintext reaches the target path only after the whole file was authenticated.

The cryptography is the `cryptography` package, which the OMEMO stack depends on as well
(`pip install simplexmpp[omemo]`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import XMPPError
from ..jid import JID
from ..stanza import Message
from .oob import DownloadError, http_download
from .upload import CHUNK_SIZE, FileTooLargeError, Progress, UploadError

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["AesgcmLink", "InvalidAesgcmLinkError", "DecryptionFailedError", "aesgcm_link_of",
           "upload_encrypted", "download_encrypted", "encrypted_size", "AESGCM_SCHEME",
           "KEY_SIZE", "IV_SIZE", "LEGACY_IV_SIZE", "TAG_SIZE", "CONTENT_TYPE"]

log = logging.getLogger(__name__)

AESGCM_SCHEME = "aesgcm"
KEY_SIZE = 32
"""AES-256: a 32-byte key (XEP-0454 §2)."""
IV_SIZE = 12
"""The IV length we send (XEP-0454 §2: 12 bytes, 24 hex digits)."""
LEGACY_IV_SIZE = 16
"""The IV length clients used before 12 became the rule; accepted when receiving."""
TAG_SIZE = 16
"""The GCM authentication tag appended to the uploaded ciphertext (XEP-0454 §2)."""
CONTENT_TYPE = "application/octet-stream"
"""The content type of every encrypted upload: the real one would tell the server what it is."""

_HEX_FRAGMENT = re.compile(r"[0-9A-Fa-f]+")
_DATA_URI = re.compile(r"data:[^\s]*")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


class InvalidAesgcmLinkError(XMPPError, ValueError):
    """Text that is not a valid `aesgcm://` link (wrong scheme, no host, a fragment that is
    not the hex of a 12- or 16-byte IV and a 32-byte key)."""


class DecryptionFailedError(DownloadError):
    """A downloaded `aesgcm://` file failed authentication: it was changed or cut short on the
    way or on the server, or the key is not the one it was encrypted with. Nothing was kept."""


def _crypto() -> Any:
    """`(Cipher, algorithms, modes, InvalidTag)` from `cryptography`, imported on first use."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError as exc:  # pragma: no cover - declared by the omemo extra
        raise ImportError("encrypted file sharing needs the 'cryptography' package: "
                          "pip install 'simplexmpp[omemo]'") from exc
    return Cipher, algorithms, modes, InvalidTag


@dataclass(frozen=True, repr=False)
class AesgcmLink:
    """An `aesgcm://` link: where the encrypted file is (`https_url`) and its `key` and `iv`.

    `str(link)` (or `link.url`) is the `aesgcm://` URL to send; its repr hides the key.
    """

    https_url: str
    key: bytes
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE:
            raise InvalidAesgcmLinkError(f"an aesgcm key has {KEY_SIZE} bytes, not "
                                         f"{len(self.key)}")
        if len(self.iv) not in (IV_SIZE, LEGACY_IV_SIZE):
            raise InvalidAesgcmLinkError(f"an aesgcm IV has {IV_SIZE} (or {LEGACY_IV_SIZE}) "
                                         f"bytes, not {len(self.iv)}")
        parts = urlsplit(self.https_url)
        # XEP-0454 §2: only HTTPS URLs become aesgcm URLs (the download must be encrypted too).
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise InvalidAesgcmLinkError(f"an aesgcm link needs an https URL with a host, "
                                         f"not {self.https_url!r}")
        if parts.fragment:
            raise InvalidAesgcmLinkError("the https URL of an aesgcm link has no fragment")

    @property
    def url(self) -> str:
        """The `aesgcm://` URL: the HTTPS URL's scheme replaced, IV then key in hex as its
        fragment (XEP-0454 §2)."""
        parts = urlsplit(self.https_url)
        return urlunsplit((AESGCM_SCHEME, parts.netloc, parts.path, parts.query,
                           self.iv.hex() + self.key.hex()))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"AesgcmLink({self.https_url!r}, key=<hidden>, iv_size={len(self.iv)})"

    @property
    def filename(self) -> str:
        """The last path segment of the URL (the name the uploader gave the server)."""
        from .oob import _safe_name
        return _safe_name(self.https_url)

    @classmethod
    def parse(cls, text: str) -> AesgcmLink:
        """The link in `text`, one `aesgcm://` URL (surrounding whitespace ignored). Raises
        [`InvalidAesgcmLinkError`][simplexmpp.ext.omemo_media.InvalidAesgcmLinkError]."""
        text = text.strip()
        parts = urlsplit(text)
        if parts.scheme.lower() != AESGCM_SCHEME:
            raise InvalidAesgcmLinkError(f"not an aesgcm:// link: {text[:80]!r}")
        if not parts.hostname or any(ch.isspace() for ch in text):
            raise InvalidAesgcmLinkError("an aesgcm:// link needs a host and no spaces")
        fragment = parts.fragment
        # IV first, then key (§2); 88 hex digits for a 12-byte IV, 96 for the legacy 16 bytes.
        iv_size = {2 * (IV_SIZE + KEY_SIZE): IV_SIZE,
                   2 * (LEGACY_IV_SIZE + KEY_SIZE): LEGACY_IV_SIZE}.get(len(fragment))
        if iv_size is None or not _HEX_FRAGMENT.fullmatch(fragment):
            raise InvalidAesgcmLinkError(
                f"the fragment of an aesgcm:// link is {2 * (IV_SIZE + KEY_SIZE)} (or "
                f"{2 * (LEGACY_IV_SIZE + KEY_SIZE)}) hex digits, IV then key; this one has "
                f"{len(fragment)} characters")
        secret = bytes.fromhex(fragment)
        https = urlunsplit(("https", parts.netloc, parts.path, parts.query, ""))
        return cls(https, secret[iv_size:], secret[:iv_size])


def aesgcm_link_of(msg_or_body: Message | str | None) -> AesgcmLink | None:
    """The shared file of a message (or of a body), or None.

    Strict, as XEP-0454 §4 asks: the body must be exactly one `aesgcm://` link, optionally
    followed by one newline and a `data:` URI (a thumbnail); anything else, a link inside a
    sentence for instance, is an ordinary message."""
    body = msg_or_body.body if isinstance(msg_or_body, Message) else msg_or_body
    if not body:
        return None
    first, newline, rest = body.strip().partition("\n")
    if newline and not _DATA_URI.fullmatch(rest.strip()):
        return None
    try:
        return AesgcmLink.parse(first)
    except InvalidAesgcmLinkError:
        return None


def encrypted_size(size: int) -> int:
    """The size of the upload of a `size`-byte file: GCM adds no padding, only the tag."""
    return size + TAG_SIZE


class _EncryptingReader:
    """A body for the PUT that encrypts the file as it is read: the ciphertext of each chunk,
    then the tag. It refuses a file that grew or shrank after its size was sent in the slot
    request (the HTTP server would refuse the length, or store a broken file)."""

    def __init__(self, stream: IO[bytes], size: int, key: bytes, iv: bytes) -> None:
        Cipher, algorithms, modes, _ = _crypto()
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        self._stream = stream
        self._size = size
        self._read = 0
        self._pending = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        want = CHUNK_SIZE if size is None or size < 0 else max(1, size)
        if not self._pending and not self._done:
            data = self._stream.read(min(want, CHUNK_SIZE))
            if data:
                self._read += len(data)
                if self._read > self._size:
                    raise UploadError("the file grew while it was being encrypted and uploaded")
                self._pending = self._encryptor.update(data)
            else:
                if self._read != self._size:
                    raise UploadError(f"the file shrank while it was being encrypted and "
                                      f"uploaded ({self._read} of {self._size} bytes)")
                self._encryptor.finalize()
                self._pending = self._encryptor.tag
                self._done = True
        out, self._pending = self._pending[:want], self._pending[want:]
        return out


class _DecryptingDecoder:
    """Decrypts a downloaded `aesgcm://` file chunk by chunk: everything but the last 16 bytes
    is ciphertext, those are the tag, checked in `finalize()`."""

    def __init__(self, link: AesgcmLink) -> None:
        Cipher, algorithms, modes, self._invalid_tag = _crypto()
        self._decryptor = Cipher(algorithms.AES(link.key), modes.GCM(link.iv)).decryptor()
        self._tail = b""
        self._url = link.https_url

    def update(self, data: bytes) -> bytes:
        data = self._tail + data
        cut = max(0, len(data) - TAG_SIZE)
        self._tail = data[cut:]
        return bytes(self._decryptor.update(data[:cut]))

    def finalize(self) -> bytes:
        if len(self._tail) < TAG_SIZE:
            raise DecryptionFailedError(f"downloading {self._url}: {len(self._tail)} bytes is "
                                        f"too short for an encrypted file (no {TAG_SIZE}-byte "
                                        f"tag)", None, self._url)
        try:
            return bytes(self._decryptor.finalize_with_tag(self._tail))
        except self._invalid_tag:
            raise DecryptionFailedError(
                f"downloading {self._url}: the file failed authentication (AES-GCM tag "
                f"mismatch): it was changed or cut short, or the key is wrong; nothing was "
                f"kept", None, self._url) from None


def _server_name(path: str | os.PathLike[str], filename: str | None) -> str:
    """The name the upload service is told: `filename` when given, else random hex with the
    original extension (receiving clients use it to tell the kind of file)."""
    if filename is not None:
        return filename
    suffix = PurePosixPath(os.path.basename(os.fspath(path))).suffix
    suffix = suffix.lower() if _SUFFIX.fullmatch(suffix) else ""
    return secrets.token_hex(16) + suffix


def upload_encrypted(client: Client, path: str | os.PathLike[str], *,
                     filename: str | None = None, progress: Progress | None = None,
                     service: JID | str | None = None,
                     timeout: float | None = None) -> AesgcmLink:
    """Encrypt the file at `path` and upload it (XEP-0363); return its
    [`AesgcmLink`][simplexmpp.ext.omemo_media.AesgcmLink].

    The file is encrypted while it is sent (never held in memory whole), under a fresh key and
    12-byte IV. `filename` is the name the server is told (default: random hex with the file's
    extension); `progress(sent, total)` counts uploaded bytes (the file's size plus 16);
    `service` and `timeout` as in [`Upload.file()`][simplexmpp.ext.upload.Upload.file].

    Send the link only inside an encrypted message: whoever has it can read the file.

    Raises [`FileTooLargeError`][simplexmpp.ext.upload.FileTooLargeError] (the limit counts the
    16-byte tag), [`UploadError`][simplexmpp.ext.upload.UploadError] (also when the service
    hands out a non-HTTPS URL, which must not carry a key),
    [`SlotError`][simplexmpp.ext.upload.SlotError],
    [`TimeoutError`][simplexmpp.errors.TimeoutError], `OSError` when the file cannot be read.
    """
    name = _server_name(path, filename)
    key = secrets.token_bytes(KEY_SIZE)
    iv = secrets.token_bytes(IV_SIZE)
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        total = encrypted_size(size)
        try:
            slot = client.upload.slot(name, total, CONTENT_TYPE, service=service,
                                      timeout=timeout)
        except FileTooLargeError as exc:
            limit = f"at most {exc.max_size} bytes" if exc.max_size is not None else \
                "less"
            raise FileTooLargeError(
                f"{os.fspath(path)} has {size} bytes, {total} once encrypted (the "
                f"{TAG_SIZE}-byte tag); the upload service accepts {limit}",
                total, exc.max_size, exc.by_server) from None
        # XEP-0454 §2: a key must never travel with an unencrypted (http://) download URL.
        if urlsplit(slot.get_url).scheme.lower() != "https":
            raise UploadError(f"the upload service gave a GET URL that is not HTTPS "
                              f"({slot.get_url}); an encrypted file's link must use HTTPS",
                              url=slot.get_url)
        body = _EncryptingReader(stream, size, key, iv)
        url = client.upload.put(slot, body, total, CONTENT_TYPE,  # type: ignore[arg-type]
                                progress, timeout)
    log.debug("uploaded %d encrypted bytes as %s", total, url)
    return AesgcmLink(url, key, iv)


def download_encrypted(client: Client, link: AesgcmLink | str,
                       path_or_dir: str | os.PathLike[str], *,
                       progress: Progress | None = None, timeout: float | None = None,
                       max_size: int | None = None) -> Path:
    """Download the file of an `aesgcm://` link and decrypt it; return the path written.

    `link` is an [`AesgcmLink`][simplexmpp.ext.omemo_media.AesgcmLink] or the link's text;
    `path_or_dir` the file to write or an existing directory (named after the URL, made
    unique). `max_size` bounds the decrypted size; `progress(received, total)` counts the
    downloaded (encrypted) bytes; `timeout` bounds each network wait. The key never leaves
    this process (the fragment is not part of the request). The file appears only once it has
    been authenticated.

    Raises [`InvalidAesgcmLinkError`][simplexmpp.ext.omemo_media.InvalidAesgcmLinkError],
    [`DecryptionFailedError`][simplexmpp.ext.omemo_media.DecryptionFailedError] (changed, cut
    short, or the wrong key), [`DownloadError`][simplexmpp.ext.oob.DownloadError] (HTTP errors
    with `status`, more than `max_size`), [`TimeoutError`][simplexmpp.errors.TimeoutError],
    `OSError` for local file problems.
    """
    if not isinstance(link, AesgcmLink):
        link = AesgcmLink.parse(link)
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must not be negative")
    seconds = client.upload.timeout(timeout)
    return http_download(client, link.https_url, path_or_dir, progress, seconds,
                         max_size=None if max_size is None else encrypted_size(max_size),
                         decoder=_DecryptingDecoder(link))
