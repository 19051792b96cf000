"""XEP-0363 HTTP File Upload against the real Prosody (http_file_share, 16 MiB limit)."""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client
from simplexmpp.ext.upload import (UPLOAD_NS, FileTooLargeError, NoUploadServiceError, Slot,
                                   UploadError, UploadService, http_session)
from simplexmpp.jid import JID

from .conftest import Server
from .samples import run_sample

LIMIT = 16 * 1024 * 1024


def fetch(client: Client, url: str) -> bytes:
    with http_session(client) as session:
        response = session.get(url, timeout=15)
        assert response.status_code == 200, response.status_code
        return response.content


def record_slot_requests(client: Client) -> list[Any]:
    """Every XEP-0363 slot request the client sends from now on."""
    sent: list[Any] = []
    original = client.send_iq

    def spy(iq: Any, timeout: float | None = None) -> Any:
        if iq.payload is not None and iq.payload.tag == "{%s}request" % UPLOAD_NS:
            sent.append(iq)
        return original(iq, timeout)

    client.send_iq = spy  # type: ignore[method-assign]
    return sent


def test_service_is_found_by_disco_with_its_limit(connect: Callable[..., Client],
                                                  server: Server) -> None:
    client = connect()
    service = client.upload.service()  # type: ignore[attr-defined]
    assert service.jid == JID(server.upload)
    assert service.max_size == LIMIT


def test_service_limit_is_read_from_its_form_on_each_server(
        connect_any: Callable[..., Client], any_server: Server) -> None:
    # ejabberd's disco#info of the upload service carries two XEP-0128 forms (the legacy
    # urn:xmpp:http:upload one first): the limit must come from urn:xmpp:http:upload:0's.
    client = connect_any()
    info = client.disco.info(any_server.upload)
    assert info.form_for(UPLOAD_NS) is not None
    service = client.upload.service()  # type: ignore[attr-defined]
    assert service.jid == JID(any_server.upload)
    assert service.max_size == LIMIT


def test_file_upload_then_get_returns_the_same_bytes(connect: Callable[..., Client],
                                                     tmp_path: Path) -> None:
    client = connect()
    data = os.urandom(300_000)
    path = tmp_path / "random data.bin"
    path.write_bytes(data)
    calls: list[tuple[int, int | None]] = []
    url = client.upload.file(path, progress=lambda sent, total: calls.append((sent, total)))  # type: ignore[attr-defined]
    assert url.startswith("https://")
    assert fetch(client, url) == data
    # Chunks, in order, ending at the whole file.
    assert len(calls) > 1
    assert calls[-1] == (len(data), len(data))
    assert [sent for sent, _ in calls] == sorted(sent for sent, _ in calls)


def test_upload_bytes_and_content_type(connect: Callable[..., Client]) -> None:
    client = connect()
    url = client.upload.upload_bytes(b"hello, world\n", "greeting.txt")  # type: ignore[attr-defined]
    assert url.endswith("/greeting.txt")
    with http_session(client) as session:
        response = session.get(url, timeout=15)
    assert response.content == b"hello, world\n"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_slot_gives_put_headers_and_get(connect: Callable[..., Client]) -> None:
    client = connect()
    put_url, headers, get_url = client.upload.slot("a.txt", 3, "text/plain")  # type: ignore[attr-defined]
    assert put_url.startswith("https://") and get_url.startswith("https://")
    assert set(headers) <= {"Authorization", "Cookie", "Expires"}
    assert "Authorization" in headers  # Prosody authorises the PUT with a bearer token


def test_too_large_file_is_refused_before_asking_for_a_slot(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    client = connect()
    path = tmp_path / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(LIMIT + 1)  # sparse: no 16 MiB written
    requests_sent = record_slot_requests(client)
    with pytest.raises(FileTooLargeError) as caught:
        client.upload.file(path)  # type: ignore[attr-defined]
    assert caught.value.max_size == LIMIT and caught.value.size == LIMIT + 1
    assert caught.value.by_server is False
    assert requests_sent == []


def test_a_smaller_known_limit_is_enforced_too(connect: Callable[..., Client],
                                               server: Server) -> None:
    client = connect()
    requests_sent = record_slot_requests(client)
    client.upload._service = UploadService(JID(server.upload), 10)  # type: ignore[attr-defined]
    with pytest.raises(FileTooLargeError) as caught:
        client.upload.upload_bytes(b"x" * 11, "eleven.txt")  # type: ignore[attr-defined]
    assert caught.value.max_size == 10 and requests_sent == []


def test_server_refusal_of_a_large_slot_is_typed(connect: Callable[..., Client],
                                                 server: Server) -> None:
    client = connect()
    # Pretend disco announced no limit, so the request reaches the service.
    client.upload._service = UploadService(JID(server.upload), None)  # type: ignore[attr-defined]
    requests_sent = record_slot_requests(client)
    with pytest.raises(FileTooLargeError) as caught:
        client.upload.slot("big.bin", LIMIT + 1)  # type: ignore[attr-defined]
    assert caught.value.by_server is True
    assert caught.value.max_size == LIMIT
    assert len(requests_sent) == 1


def test_rejected_put_raises_upload_error_with_status(connect: Callable[..., Client]) -> None:
    client = connect()
    slot = client.upload.slot("x.txt", 5, "text/plain")  # type: ignore[attr-defined]
    forged = Slot(slot.put_url, {"Authorization": "Bearer not-the-token"}, slot.get_url)
    with pytest.raises(UploadError) as caught:
        client.upload._put(forged, io.BytesIO(b"12345"), 5, "text/plain", None, 15)  # type: ignore[attr-defined]
    assert caught.value.status is not None and caught.value.status >= 400
    assert str(caught.value.status) in str(caught.value)


def test_naming_a_service_that_is_not_one(connect: Callable[..., Client],
                                          server: Server) -> None:
    client = connect()
    with pytest.raises(NoUploadServiceError):
        client.upload.upload_bytes(b"x", "x.txt", service=server.muc)  # type: ignore[attr-defined]


def test_upload_sample_prints_the_url_and_sends_it(server: Server, connect: Callable[..., Client],
                                                   tmp_path: Path) -> None:
    bob = connect()
    bob.send_presence()
    path = tmp_path / "notes.txt"
    path.write_text("sample upload\n")
    alice = server.new_account()
    out = run_sample(server, "upload.py", str(path), "--to", str(bob.jid.bare),  # type: ignore[union-attr]
                     "--desc", "notes", jid=alice)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip().splitlines()[-1]
    assert fetch(bob, url) == b"sample upload\n"
    msg = bob.next_message(timeout=15)
    assert msg.body == url
    x = msg.xml.find("{jabber:x:oob}x")
    assert x is not None and x.findtext("{jabber:x:oob}url") == url
    assert x.findtext("{jabber:x:oob}desc") == "notes"


def test_disco_answer_without_the_size_form_means_no_known_limit() -> None:
    from simplexmpp.ext.forms import Form
    from simplexmpp.ext.upload import _max_size
    assert _max_size(None) is None
    form = Form.from_element(ET.fromstring(
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{UPLOAD_NS}</value></field><field var='max-file-size'><value>42</value>"
        "</field></x>"))
    assert _max_size(form) == 42
