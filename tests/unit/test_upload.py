"""XEP-0363 and XEP-0066 pieces that need no server: slots, slot errors, links."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from simplexmpp.errors import IqError
from simplexmpp.ext.oob import OOBData, _safe_name, oob_of
from simplexmpp.ext.upload import (FileTooLargeError, QuotaExceededError, SlotError,
                                   UploadError, _slot_error, is_loopback_name, parse_slot)
from simplexmpp.stanza import Iq, Message

NS = "urn:xmpp:http:upload:0"


def test_slot_keeps_only_allowed_headers_without_newlines() -> None:
    slot = parse_slot(ET.fromstring(
        f"<slot xmlns='{NS}'><put url='https://up.example/a/b.jpg'>"
        "<header name='Authorization'>Basic\n QWxh\r\n</header>"
        "<header name='Cookie'>foo=bar</header>"
        "<header name='Host'>evil.example</header>"
        "<header name='X-Injected'>1</header>"
        "<header name='expires'>Tue, 01 Jan 2030 00:00:00 GMT</header>"
        "</put><get url='https://dl.example/a/b.jpg'/></slot>"))
    put_url, headers, get_url = slot
    assert put_url == "https://up.example/a/b.jpg" and get_url == "https://dl.example/a/b.jpg"
    assert headers == {"Authorization": "Basic QWxh", "Cookie": "foo=bar",
                       "Expires": "Tue, 01 Jan 2030 00:00:00 GMT"}


@pytest.mark.parametrize("payload", [
    None,
    f"<slot xmlns='{NS}'><get url='https://dl.example/x'/></slot>",
    f"<slot xmlns='{NS}'><put url='file:///etc/passwd'/><get url='https://dl.example/x'/>"
    "</slot>",
])
def test_bad_slots_are_refused(payload: str | None) -> None:
    with pytest.raises(UploadError):
        parse_slot(ET.fromstring(payload) if payload else None)


def _error(xml: str) -> IqError:
    iq = Iq(ET.fromstring(f"<iq xmlns='jabber:client' type='error' id='1' "
                          f"from='upload.example'>{xml}</iq>"))
    error = iq.error
    assert isinstance(error, IqError)
    return error


def test_file_too_large_slot_error_carries_the_limit() -> None:
    exc = _slot_error(_error(
        "<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        f"<file-too-large xmlns='{NS}'><max-file-size>20000</max-file-size></file-too-large>"
        "</error>"), 23456)
    assert isinstance(exc, FileTooLargeError)
    assert exc.max_size == 20000 and exc.size == 23456 and exc.by_server


def test_quota_slot_error_carries_the_retry_time() -> None:
    exc = _slot_error(_error(
        "<error type='wait'><resource-constraint "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        f"<retry xmlns='{NS}' stamp='2017-12-03T23:42:05Z'/></error>"), 1)
    assert isinstance(exc, QuotaExceededError) and isinstance(exc, IqError)
    assert exc.retry_at is not None and exc.retry_at.year == 2017
    assert exc.condition == "resource-constraint" and exc.type == "wait"


def test_other_slot_errors_are_slot_errors() -> None:
    exc = _slot_error(_error("<error type='cancel'><not-allowed "
                             "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"), 1)
    assert type(exc) is SlotError and exc.condition == "not-allowed"


def test_only_names_under_localhost_are_mapped_to_loopback() -> None:
    assert is_loopback_name("upload.localhost") and is_loopback_name("A.LOCALHOST.")
    assert not is_loopback_name("localhost")  # left to the resolver
    assert not is_loopback_name("localhost.example.org")
    assert not is_loopback_name("evil-localhost") and not is_loopback_name(None)


def test_oob_of_reads_url_and_desc() -> None:
    msg = Message(ET.fromstring(
        "<message xmlns='jabber:client'><body>x</body><x xmlns='jabber:x:oob'>"
        "<url> https://example.org/a.png </url><desc>A</desc></x></message>"))
    assert oob_of(msg) == OOBData("https://example.org/a.png", "A")
    assert oob_of(Message(to="bob@example.org", body="plain")) is None


@pytest.mark.parametrize("url, name", [
    ("https://h/a/b/photo%20one.jpg", "photo one.jpg"),
    ("https://h/a/..%2F..%2Fetc%2Fpasswd", "_.._etc_passwd"),
    ("https://h/", "download"),
    ("https://h/.hidden", "hidden"),
])
def test_download_names_stay_inside_the_directory(url: str, name: str) -> None:
    assert _safe_name(url) == name


def test_requests_is_imported_only_when_a_file_is_transferred() -> None:
    # requests (with urllib3, charset_normalizer, http.cookiejar) adds ~16 MB and ~75 ms to
    # every process; a client that never uploads or downloads must not pay for it.
    import subprocess
    import sys
    code = ("import sys\n"
            "from simplexmpp import Client, Pool\n"
            "client = Client('bob@localhost', 'secret')\n"
            "client.upload, client.oob\n"
            "assert 'requests' not in sys.modules, 'imported at start'\n"
            "from simplexmpp.ext.upload import http_session\n"
            "http_session(client).close()\n"
            "assert 'requests' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
