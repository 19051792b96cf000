"""XEP-0066 Out of Band Data: send a link with a message, see links others send, fetch them.

```python
client.oob.send("bob@example.org", url, desc="holiday photo")
client.on("oob", lambda msg, data: print(msg.from_, data.url, data.desc))
for msg in client.messages():
    data = oob_of(msg)
    if data is not None:
        client.oob.download(data.url, "downloads/")
```

A message carrying `<x xmlns="jabber:x:oob">` still reaches the inbox and the "message"
event as usual; in addition the "oob" event fires with `(msg, OOBData)`. The body of a sent
link defaults to the URL itself, which is what clients without XEP-0066 show (and what some,
like Conversations, require to display the file inline).

Downloads use the same HTTP session as XEP-0363 uploads
([`upload.http_session()`][simplexmpp.ext.upload.http_session]): the client's CA file, `.localhost`
names on loopback.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from ..extension import Extension
from ..jid import JID
from ..stanza import Message
from ..xml import check_text
from .upload import CHUNK_SIZE, HTTPTransferError, Progress, check_http_url, http_session, \
    transfer_error

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["OOB", "OOBData", "oob_of", "DownloadError", "OOB_NS", "Decoder",
           "http_download"]

log = logging.getLogger(__name__)

OOB_NS = "jabber:x:oob"
_X = "{%s}x" % OOB_NS
_URL = "{%s}url" % OOB_NS
_DESC = "{%s}desc" % OOB_NS


class DownloadError(HTTPTransferError):
    """A download failed: `status` is the HTTP status when the server answered (None for a
    network or TLS failure, or a body cut short / over `max_size`), `url` the address."""


@dataclass(frozen=True)
class OOBData:
    """The link of an XEP-0066 `jabber:x:oob` element: `url` and optional `desc`."""

    url: str
    desc: str | None = None


def oob_of(msg: Message) -> OOBData | None:
    """The XEP-0066 link a message carries, or None (also None when the URL is empty)."""
    x = msg.xml.find(_X)
    if x is None:
        return None
    url = (x.findtext(_URL) or "").strip()
    if not url:
        return None
    desc = x.findtext(_DESC)
    return OOBData(url, desc if desc else None)


def _safe_name(url: str) -> str:
    """A local file name from the last path segment of `url`: no directories, no hidden
    or special names."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = name.replace("\\", "_").replace("/", "_").replace("\x00", "")
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:200] or "download"


def _unused(directory: Path, name: str) -> Path:
    """`directory/name`, or `stem-1.ext`, `stem-2.ext`... if that exists already."""
    candidate = directory / name
    stem, dot, suffix = name.partition(".")
    number = 1
    while candidate.exists():
        candidate = directory / f"{stem}-{number}{dot}{suffix}"
        number += 1
    return candidate


class OOB(Extension):
    """`client.oob`: XEP-0066 links in messages."""

    name = "oob"
    features = (OOB_NS,)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        client.declare_event("oob")
        self._intercept_stanzas("message", self._watch, tags=(_X,))

    @staticmethod
    def of(msg: Message) -> OOBData | None:
        """Same as [`oob_of()`][simplexmpp.ext.oob.oob_of]."""
        return oob_of(msg)

    def send(self, to: JID | str, url: str, desc: str | None = None, body: str | None = None,
             type: str = "chat", timeout: float | None = None) -> str:
        """Send `url` (with `desc`) to `to`; the body is `body`, else the URL itself.
        Returns the message id."""
        if not url or not url.strip():
            raise ValueError("the URL must not be empty")
        for name, value in (("url", url), ("desc", desc)):
            if value is not None:
                check_text(value, f"out-of-band {name}")
        msg = self._client.new_message(to, url if body is None else body, type)
        x = ET.SubElement(msg.xml, _X)
        ET.SubElement(x, _URL).text = url
        if desc:
            ET.SubElement(x, _DESC).text = desc
        self._client.send(msg, timeout)
        return msg.id or ""

    def _watch(self, msg: Message) -> bool:
        """I/O thread: announce a received link; never claims the message (it goes on to the
        inbox and the "message" event)."""
        if msg.xml.get("type") == "error":
            return False
        data = oob_of(msg)
        if data is None:
            return False
        origin = msg.origin_id
        if origin:
            # A message re-sent after a lost session is announced once (XEP-0359 origin-id).
            key = ((msg.xml.get("from") or "").partition("/")[0].lower(), origin)
            with self._lock:
                if key in self._seen:
                    return False
                self._seen[key] = None
                while len(self._seen) > 1000:
                    self._seen.popitem(last=False)
        self._client.emit("oob", msg, data)
        return False

    def download(self, url: str, path_or_dir: str | os.PathLike[str],
                 progress: Progress | None = None, timeout: float | None = None, *,
                 max_size: int | None = None) -> Path:
        """Fetch `url` into a file; return its path.

        `path_or_dir` is the file to write, or an existing directory to put it in (named after the
        URL's last path segment, made unique). `progress(received, total)` is called per chunk
        (`total` None when the server does not say). `max_size` stops a larger download. `timeout`
        bounds each network wait, as in `requests`. Nothing is left behind on failure. Raises
        [`DownloadError`][simplexmpp.ext.oob.DownloadError] (`status` set for an HTTP error),
        [`TimeoutError`][simplexmpp.errors.TimeoutError], `OSError` for local file problems.
        """
        return http_download(self._client, url, path_or_dir, progress, self.timeout(timeout),
                             max_size=max_size)


class Decoder(Protocol):
    """What [`http_download()`][simplexmpp.ext.oob.http_download] passes the received bytes
    through before they are written (the AES-GCM decryption of `aesgcm://` files, see
    [simplexmpp.ext.omemo_media][]): `update()` per chunk, then `finalize()` once after the
    last, which may raise to refuse the whole file (nothing is left behind then)."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


def http_download(client: Client, url: str, path_or_dir: str | os.PathLike[str],
                  progress: Progress | None, seconds: float, *, max_size: int | None = None,
                  decoder: Decoder | None = None) -> Path:
    """The download behind [`OOB.download()`][simplexmpp.ext.oob.OOB.download], with an
    optional `decoder` the bytes pass through. `max_size` and `progress` count the bytes
    received (before decoding); `seconds` bounds each network wait. The file appears at its
    place only once the whole body arrived and `decoder.finalize()` accepted it."""
    check_http_url(url, "downloading", DownloadError)
    target = Path(path_or_dir)
    what = f"downloading {url}"
    import requests  # here, not at the top: see upload.http_session()
    with http_session(client) as session:
        try:
            response = session.get(url, stream=True, timeout=seconds)
        except requests.RequestException as exc:
            raise transfer_error(exc, what, url, DownloadError) from None
        with response:
            if not 200 <= response.status_code < 300:
                raise DownloadError(f"{what}: the HTTP server answered "
                                    f"{response.status_code} {response.reason}",
                                    response.status_code, url)
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if max_size is not None and total is not None and total > max_size:
                raise DownloadError(f"{what}: {total} bytes is more than max_size "
                                    f"({max_size})", None, url)
            if target.is_dir():
                target = _unused(target, _safe_name(response.url or url))
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
            try:
                received = 0
                with os.fdopen(fd, "wb") as out:
                    try:
                        for chunk in response.iter_content(CHUNK_SIZE):
                            received += len(chunk)
                            if max_size is not None and received > max_size:
                                raise DownloadError(f"{what}: more than max_size "
                                                    f"({max_size}) bytes", None, url)
                            out.write(chunk if decoder is None else decoder.update(chunk))
                            if progress is not None:
                                progress(received, total)
                    except requests.RequestException as exc:
                        raise transfer_error(exc, what, url, DownloadError) from None
                    if total is not None and received != total:
                        raise DownloadError(f"{what}: got {received} of {total} bytes",
                                            None, url)
                    if decoder is not None:
                        out.write(decoder.finalize())
                os.replace(temp, target)
            except BaseException:
                try:
                    os.unlink(temp)
                except FileNotFoundError:
                    pass
                raise
    log.debug("downloaded %s to %s (%d bytes)", url, target, received)
    return target
