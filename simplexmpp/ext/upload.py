"""XEP-0363 HTTP File Upload: put a file on the server's HTTP store, get a URL to share.

```python
url = client.upload.file("photo.jpg", progress=lambda sent, total: print(sent, total))
client.oob.send("bob@example.org", url)                     # XEP-0066 link
```

`file()` finds the upload service by service discovery (`disco#items` of the server, then
`disco#info` of each item: identity `store/file` with feature `urn:xmpp:http:upload:0`,
§3), refuses a file over the service's `max-file-size` before asking for anything, asks for a
slot (§4), and PUTs the file with `requests`, streamed in chunks, with only the headers the
slot may set. The GET URL is returned once the HTTP server has accepted the file.

HTTP is done by [`http_session()`][simplexmpp.ext.upload.http_session], shared with XEP-0066
downloads (`client.oob`): it trusts `client.ca_file` when set (else the default store), skips
verification only when the client does (`verify=False`), and connects names under `.localhost` to
127.0.0.1 (RFC 6761 §6.3: they are loopback names) while still checking the certificate against the
name itself.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from ..extension import Extension
from .. import errors
from ..errors import IqError, XMPPError
from ..jid import JID
from ..stanza import Iq, parse_datetime

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from ..client import Client

__all__ = ["Upload", "Slot", "UploadService", "HTTPTransferError", "UploadError",
           "NoUploadServiceError", "FileTooLargeError", "SlotError", "QuotaExceededError",
           "http_session", "is_loopback_name", "UPLOAD_NS", "ALLOWED_HEADERS", "Progress"]

log = logging.getLogger(__name__)

UPLOAD_NS = "urn:xmpp:http:upload:0"
ALLOWED_HEADERS = ("Authorization", "Cookie", "Expires")
"""XEP-0363 §4: the only slot headers a client sends; any other is ignored."""
CHUNK_SIZE = 64 * 1024
Progress = Callable[[int, "int | None"], object]
"""`progress(done, total)`: bytes moved so far, and the total (None when not known)."""


# -- errors --------------------------------------------------------------------------------------

class HTTPTransferError(XMPPError):
    """An HTTP transfer (upload or download) failed; `status` is the HTTP status code when
    the server answered (None for a network or TLS failure), `url` the address."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class UploadError(HTTPTransferError):
    """An XEP-0363 upload failed (the PUT was refused, or no slot could be had)."""


class NoUploadServiceError(UploadError):
    """The server offers no XEP-0363 upload service (nothing in its disco#items)."""


class FileTooLargeError(UploadError):
    """The file is larger than the service accepts: `size` and `max_size` in bytes.
    `by_server` is False when we refused before asking (the limit from disco#info, §3)."""

    def __init__(self, message: str, size: int, max_size: int | None,
                 by_server: bool = False) -> None:
        super().__init__(message)
        self.size = size
        self.max_size = max_size
        self.by_server = by_server


class SlotError(UploadError, IqError):
    """The service refused a slot (§5): `condition`, `type`, `text` as in
    [`IqError`][simplexmpp.errors.IqError] (so `except IqError` catches it too)."""

    def __init__(self, message: str, error: IqError) -> None:
        IqError.__init__(self, error.condition, error.type, error.text, error.stanza, error.by)
        self.args = (message,)
        self.status = None
        self.url = None


class QuotaExceededError(SlotError):
    """A temporary refusal (§5: `resource-constraint`, type `wait`), such as a quota;
    `retry_at` (an aware datetime, or None) is when asking again may succeed."""

    def __init__(self, message: str, error: IqError, retry_at: datetime | None) -> None:
        super().__init__(message, error)
        self.retry_at = retry_at


# -- HTTP ----------------------------------------------------------------------------------------

def is_loopback_name(host: str | None) -> bool:
    """True for names under `.localhost` (RFC 6761 §6.3), which this library connects to
    127.0.0.1 itself. (`localhost` alone is left to the resolver, which knows it.)"""
    return bool(host) and host.rstrip(".").lower().endswith(".localhost")  # type: ignore[union-attr]


def http_session(client: Client) -> requests.Session:
    """A `requests.Session` with the client's TLS settings: `verify` is `client.ca_file`
    when set (else the default store), False only when the client has `verify=False`; names
    under `.localhost` reach 127.0.0.1 (RFC 6761 §6.3) while certificates are still checked
    against the name. `requests` is imported on first use (it adds about 16 MB and 75 ms
    to a process that never transfers a file)."""
    from . import _http
    return _http.http_session(client)


def check_http_url(url: str, what: str,
                   cls: type[HTTPTransferError] = HTTPTransferError) -> None:
    """Only http(s) URLs are fetched or written to (never file:, ftp: and the like)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise cls(f"{what}: {url!r} is not an http(s) URL", url=url)


def transfer_error(exc: requests.RequestException, what: str, url: str,
                   cls: type[HTTPTransferError]) -> XMPPError:
    """The library's exception for a failed `requests` call."""
    from . import _http
    return _http.transfer_error(exc, what, url, cls)


# -- slots ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UploadService:
    """An upload service found by disco: its JID and size limit (None: none announced)."""

    jid: JID
    max_size: int | None


@dataclass(frozen=True)
class Slot:
    """Where to PUT the file (`put_url` with `headers`) and where it can then be fetched
    (`get_url`). Iterable, so `put_url, headers, get_url = slot` works."""

    put_url: str
    headers: dict[str, str] = field(default_factory=dict)
    get_url: str = ""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.put_url, self.headers, self.get_url))


def _max_size(form: Any) -> int | None:
    if form is None or form.form_type != UPLOAD_NS:
        return None
    value = form.value("max-file-size")
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


def parse_slot(payload: ET.Element | None) -> Slot:
    """A [`Slot`][simplexmpp.ext.upload.Slot] from the `<slot/>` of a result (§4). Headers other
    than those in [`ALLOWED_HEADERS`][simplexmpp.ext.upload.ALLOWED_HEADERS] are dropped; newlines
    are stripped from names and values (§8)."""
    if payload is None or payload.tag != "{%s}slot" % UPLOAD_NS:
        raise UploadError("the upload service answered without a <slot/>")
    put = payload.find("{%s}put" % UPLOAD_NS)
    get = payload.find("{%s}get" % UPLOAD_NS)
    put_url = (put.get("url") or "").strip() if put is not None else ""
    get_url = (get.get("url") or "").strip() if get is not None else ""
    if not put_url or not get_url:
        raise UploadError("the upload service's slot lacks a PUT or GET URL")
    check_http_url(put_url, "the slot's PUT URL", UploadError)
    check_http_url(get_url, "the slot's GET URL", UploadError)
    headers: dict[str, str] = {}
    assert put is not None
    for header in put.findall("{%s}header" % UPLOAD_NS):
        name = "".join((header.get("name") or "").split("\n")).replace("\r", "").strip()
        value = (header.text or "").replace("\r", "").replace("\n", "").strip()
        for allowed in ALLOWED_HEADERS:
            if name.lower() == allowed.lower():
                headers[allowed] = value
                break
        else:
            log.debug("ignoring slot header %r (XEP-0363 §4 allows only %s)", name,
                      ", ".join(ALLOWED_HEADERS))
    return Slot(put_url, headers, get_url)


def _slot_error(exc: IqError, size: int) -> UploadError:
    """The typed exception for a slot request answered with an error (§5)."""
    error = exc.stanza.xml.find("{jabber:client}error") if exc.stanza is not None and \
        hasattr(exc.stanza, "xml") else None
    detail = f": {exc.text}" if exc.text else ""
    if error is not None:
        too_large = error.find("{%s}file-too-large" % UPLOAD_NS)
        if too_large is not None:
            text = too_large.findtext("{%s}max-file-size" % UPLOAD_NS)
            limit = int(text) if text and text.strip().isdigit() else None
            message = f"the upload service refused a file of {size} bytes as too large"
            if limit is not None:
                message += f" (at most {limit} bytes)"
            failure = FileTooLargeError(message, size, limit, by_server=True)
            failure.__cause__ = exc
            return failure
        retry = error.find("{%s}retry" % UPLOAD_NS)
        if retry is not None or exc.condition == "resource-constraint":
            retry_at = None
            if retry is not None:
                try:
                    retry_at = parse_datetime(retry.get("stamp", ""))
                except ValueError:
                    retry_at = None
            when = f"; try again after {retry_at.isoformat()}" if retry_at else \
                "; try again later"
            return QuotaExceededError(f"the upload service is out of room for us "
                                      f"({exc.condition}){detail}{when}", exc, retry_at)
    return SlotError(f"the upload service refused a slot ({exc.condition}){detail}", exc)


class _ProgressReader:
    """A file-like body for `requests`: read in chunks, reporting progress; `len()` gives
    the Content-Length so the upload is not chunk-encoded (§6: it must match the slot)."""

    def __init__(self, stream: IO[bytes], total: int, progress: Progress | None) -> None:
        self._stream = stream
        self._total = total
        self._sent = 0
        self._progress = progress

    def __len__(self) -> int:
        return self._total

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(CHUNK_SIZE if size is None or size < 0 else
                                 min(size, CHUNK_SIZE))
        if data:
            self._sent += len(data)
            if self._sent > self._total:
                raise UploadError("the file grew while it was being uploaded")
            if self._progress is not None:
                self._progress(self._sent, self._total)
        return data


class Upload(Extension):
    """`client.upload`: XEP-0363 uploads."""

    name = "upload"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self._service: UploadService | None = None
        self._lock = threading.Lock()

    # -- discovery -------------------------------------------------------------------------
    def service(self, timeout: float | None = None) -> UploadService:
        """The server's upload service (found once by disco, then cached). Raises
        [`NoUploadServiceError`][simplexmpp.ext.upload.NoUploadServiceError] when there is none."""
        with self._lock:
            if self._service is not None:
                return self._service
        disco = self._client.disco
        domain = self._client.account.domain
        for item in disco.items(domain, timeout=timeout):
            if item.node:
                continue
            try:
                info = disco.info(item.jid, timeout=timeout)
            except IqError as exc:  # an item that is down (a component not connected)
                log.debug("skipping %s while looking for an upload service: %s", item.jid, exc)
                continue
            if UPLOAD_NS in info.features and info.has_identity("store", "file"):
                # XEP-0363 §3: the limit sits in the form of FORM_TYPE urn:xmpp:http:upload:0,
                # which need not be the first one (ejabberd sends another form before it).
                found = UploadService(JID(str(item.jid)),
                                      _max_size(info.form_for(UPLOAD_NS)))
                with self._lock:
                    self._service = found
                return found
        raise NoUploadServiceError(f"{domain} offers no HTTP upload service (XEP-0363)")

    def _service_for(self, service: JID | str | None,
                     timeout: float | None) -> UploadService:
        if service is None:
            return self.service(timeout)
        jid = JID(str(service))
        cached = self._service
        if cached is not None and cached.jid == jid:
            return cached
        info = self._client.disco.info(jid, timeout=timeout)
        if UPLOAD_NS not in info.features:
            raise NoUploadServiceError(f"{jid} is not an HTTP upload service (XEP-0363)")
        return UploadService(jid, _max_size(info.form_for(UPLOAD_NS)))

    # -- slots -----------------------------------------------------------------------------
    def slot(self, filename: str, size: int, content_type: str | None = None, *,
             service: JID | str | None = None, timeout: float | None = None) -> Slot:
        """Ask for a slot (§4): returns a [`Slot`][simplexmpp.ext.upload.Slot] (`put_url, headers,
        get_url`).

        Raises [`FileTooLargeError`][simplexmpp.ext.upload.FileTooLargeError] (before asking, when
        the service announced a smaller limit; or from the service),
        [`QuotaExceededError`][simplexmpp.ext.upload.QuotaExceededError],
        [`SlotError`][simplexmpp.ext.upload.SlotError]."""
        if not filename or "/" in filename or "\\" in filename:
            raise ValueError(f"filename must be a plain file name, not {filename!r}")
        if size < 0:
            raise ValueError("size must not be negative")
        found = self._service_for(service, timeout)
        if found.max_size is not None and size > found.max_size:
            raise FileTooLargeError(
                f"{filename} has {size} bytes; {found.jid} accepts at most {found.max_size}",
                size, found.max_size)
        request = ET.Element("{%s}request" % UPLOAD_NS, filename=filename, size=str(size))
        if content_type:
            request.set("content-type", content_type)
        try:
            reply = self._client.iq(Iq.get(found.jid, request), timeout)
        except IqError as exc:
            raise _slot_error(exc, size) from None
        return parse_slot(reply.payload)

    # -- uploads ---------------------------------------------------------------------------
    def file(self, path: str | os.PathLike[str], content_type: str | None = None,
             progress: Progress | None = None, service: JID | str | None = None,
             timeout: float | None = None, *, filename: str | None = None) -> str:
        """Upload the file at `path`; return its GET URL.

        `content_type` defaults to a guess from the name (else `application/octet-stream`);
        `progress(sent, total)` is called as chunks go out; `service` picks the upload service
        (default: found by disco); `timeout` bounds each XMPP step and each HTTP network wait (a
        transfer that keeps moving is not cut off). Raises
        [`FileTooLargeError`][simplexmpp.ext.upload.FileTooLargeError],
        [`SlotError`][simplexmpp.ext.upload.SlotError],
        [`UploadError`][simplexmpp.ext.upload.UploadError] (`status` set when the HTTP server
        refused the PUT), [`TimeoutError`][simplexmpp.errors.TimeoutError], `OSError` when the file
        cannot be read.
        """
        name = filename or os.path.basename(os.fspath(path))
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            slot = self.slot(name, size, content_type, service=service, timeout=timeout)
            return self._put(slot, stream, size, content_type, progress, timeout)

    def upload_bytes(self, data: bytes, filename: str, content_type: str | None = None,
                     progress: Progress | None = None, service: JID | str | None = None,
                     timeout: float | None = None) -> str:
        """Upload `data` under the name `filename`; return its GET URL (see
        [`file()`][simplexmpp.ext.upload.Upload.file])."""
        import io
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        slot = self.slot(filename, len(data), content_type, service=service, timeout=timeout)
        return self._put(slot, io.BytesIO(data), len(data), content_type, progress, timeout)

    def put(self, slot: Slot, stream: IO[bytes], size: int, content_type: str,
            progress: Progress | None = None, timeout: float | None = None) -> str:
        """PUT `size` bytes read from `stream` to a [`Slot`][simplexmpp.ext.upload.Slot] asked
        for with the same size and `content_type`; return its GET URL. For bodies that are
        made while they are sent (the encrypted uploads of
        [simplexmpp.ext.omemo_media][]); [`file()`][simplexmpp.ext.upload.Upload.file] does
        slot and PUT in one call. Raises [`UploadError`][simplexmpp.ext.upload.UploadError]
        (`status` set when the HTTP server refused), [`TimeoutError`][simplexmpp.errors.TimeoutError]."""
        return self._put(slot, stream, size, content_type, progress, timeout)

    def _put(self, slot: Slot, stream: IO[bytes], size: int, content_type: str,
             progress: Progress | None, timeout: float | None) -> str:
        seconds = self.timeout(timeout)
        headers = dict(slot.headers)
        # §6: Content-Type must match the one in the slot request; Content-Length the size.
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(size)
        body = _ProgressReader(stream, size, progress)
        what = f"uploading {size} bytes to {urlsplit(slot.put_url).netloc}"
        import requests  # here, not at the top: see http_session()
        with http_session(self._client) as session:
            try:
                response = session.put(slot.put_url, data=body if size else b"",
                                       headers=headers, timeout=seconds, allow_redirects=False)
            except requests.RequestException as exc:
                raise transfer_error(exc, what, slot.put_url, UploadError) from None
            with response:
                if not 200 <= response.status_code < 300:
                    raise UploadError(f"{what}: the HTTP server answered {response.status_code} "
                                      f"{response.reason}", response.status_code, slot.put_url)
        if size == 0 and progress is not None:
            progress(0, 0)
        log.debug("uploaded %d bytes; GET URL %s", size, slot.get_url)
        return slot.get_url
