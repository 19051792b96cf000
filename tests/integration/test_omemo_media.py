"""aesgcm:// encrypted file sharing (XEP-0454) through the real Prosody's http_file_share."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from simplexmpp import Client
from simplexmpp.ext.oob import DownloadError
from simplexmpp.ext.omemo_media import (CONTENT_TYPE, AesgcmLink, DecryptionFailedError,
                                        download_encrypted, upload_encrypted)
from simplexmpp.ext.upload import UPLOAD_NS, FileTooLargeError, UploadService, http_session
from simplexmpp.jid import JID

from .conftest import Server

LIMIT = 16 * 1024 * 1024


def fetch_raw(client: Client, url: str) -> Any:
    with http_session(client) as session:
        response = session.get(url, timeout=15)
        assert response.status_code == 200, response.status_code
        return response


def slot_requests(client: Client) -> list[Any]:
    sent: list[Any] = []
    original = client.send_iq

    def spy(iq: Any, timeout: float | None = None) -> Any:
        if iq.payload is not None and iq.payload.tag == "{%s}request" % UPLOAD_NS:
            sent.append(iq.payload)
        return original(iq, timeout)

    client.send_iq = spy  # type: ignore[method-assign]
    return sent


def test_encrypted_upload_stores_only_ciphertext_and_tag(connect: Callable[..., Client],
                                                         tmp_path: Path) -> None:
    alice = connect()
    data = os.urandom(300_000)
    path = tmp_path / "Holiday Photo.JPG"
    path.write_bytes(data)
    requests_sent = slot_requests(alice)
    calls: list[tuple[int, int | None]] = []
    link = upload_encrypted(alice, path, progress=lambda sent, total: calls.append((sent, total)))
    assert link.url.startswith("aesgcm://") and link.https_url.startswith("https://")
    assert len(link.iv) == 12 and len(link.key) == 32
    # The server got a random name with the extension, the generic type, the size + tag.
    request = requests_sent[0]
    assert request.get("size") == str(len(data) + 16)
    assert request.get("content-type") == CONTENT_TYPE
    assert "Holiday" not in request.get("filename") and request.get("filename").endswith(".jpg")
    assert calls[-1] == (len(data) + 16, len(data) + 16)
    # What the HTTP server holds is AES-256-GCM ciphertext || tag (what Conversations and Dino
    # read), checked with an independent one-shot decryption.
    stored = fetch_raw(alice, link.https_url).content
    assert len(stored) == len(data) + 16 and data[:64] not in stored
    assert AESGCM(link.key).decrypt(link.iv, stored, None) == data


def test_another_account_downloads_and_decrypts_the_link_text(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    data = b"meet me at noon\n" * 1000
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    link = upload_encrypted(alice, path)
    inbox = tmp_path / "bob"
    inbox.mkdir()
    received = download_encrypted(bob, str(link), inbox)
    assert received.parent == inbox and received.suffix == ".txt"
    assert received.read_bytes() == data
    # A second download of the same link gets a name of its own.
    again = download_encrypted(bob, link, inbox)
    assert again != received and again.read_bytes() == data


def test_empty_file_round_trip(connect: Callable[..., Client], tmp_path: Path) -> None:
    client = connect()
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    link = upload_encrypted(client, path)
    target = download_encrypted(client, link, tmp_path / "out.bin")
    assert target.read_bytes() == b""


def test_legacy_16_byte_iv_file_is_decrypted(connect: Callable[..., Client],
                                             tmp_path: Path) -> None:
    # Older OMEMO clients encrypted with a 16-byte IV; we still read their files.
    client = connect()
    data, key, iv = os.urandom(5000), os.urandom(32), os.urandom(16)
    url = client.upload.upload_bytes(AESGCM(key).encrypt(iv, data, None), "old.bin")
    link = AesgcmLink.parse(f"aesgcm://{url.removeprefix('https://')}#{(iv + key).hex()}")
    assert download_encrypted(client, link, tmp_path / "old.bin").read_bytes() == data


@pytest.mark.parametrize("damage", ["flip-byte", "drop-tag", "wrong-key"])
def test_tampered_file_is_refused_and_nothing_is_left(connect: Callable[..., Client],
                                                      tmp_path: Path, damage: str) -> None:
    # The server (or anyone on the way) changes the stored file: authentication fails.
    client = connect()
    data, key, iv = os.urandom(70_000), os.urandom(32), os.urandom(12)
    blob = bytearray(AESGCM(key).encrypt(iv, data, None))
    if damage == "flip-byte":
        blob[40_000] ^= 0x01
    elif damage == "drop-tag":
        del blob[-16:]
    url = client.upload.upload_bytes(bytes(blob), "f.bin")
    if damage == "wrong-key":
        key = os.urandom(32)
    link = AesgcmLink(url, key, iv)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DecryptionFailedError) as caught:
        download_encrypted(client, link, out)
    assert "authentication" in str(caught.value)
    assert list(out.iterdir()) == []


def test_too_large_is_refused_before_a_slot_counting_the_tag(
        connect: Callable[..., Client], server: Server, tmp_path: Path) -> None:
    client = connect()
    requests_sent = slot_requests(client)
    path = tmp_path / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(LIMIT - 15)  # fits in plain, not with the 16-byte tag (sparse file)
    with pytest.raises(FileTooLargeError) as caught:
        upload_encrypted(client, path)
    assert caught.value.max_size == LIMIT and caught.value.size == LIMIT + 1
    assert caught.value.by_server is False
    assert str(path) in str(caught.value) and "tag" in str(caught.value)
    assert requests_sent == []
    # Exactly at the limit once encrypted: allowed (checked on a smaller known limit).
    client.upload._service = UploadService(JID(server.upload), 116)  # type: ignore[attr-defined]
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100))
    link = upload_encrypted(client, small)
    assert download_encrypted(client, link, tmp_path / "s.bin").read_bytes() == \
        small.read_bytes()
    small.write_bytes(os.urandom(101))
    with pytest.raises(FileTooLargeError):
        upload_encrypted(client, small)


def test_server_refusal_counts_the_tag(connect: Callable[..., Client], server: Server,
                                       tmp_path: Path) -> None:
    client = connect()
    client.upload._service = UploadService(JID(server.upload), None)  # type: ignore[attr-defined]
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(LIMIT - 15)
    with pytest.raises(FileTooLargeError) as caught:
        upload_encrypted(client, path)
    assert caught.value.by_server is True and caught.value.max_size == LIMIT


def test_download_max_size_bounds_the_decrypted_size(connect: Callable[..., Client],
                                                     tmp_path: Path) -> None:
    client = connect()
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(1000))
    link = upload_encrypted(client, path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError) as caught:
        download_encrypted(client, link, out, max_size=999)
    assert not isinstance(caught.value, DecryptionFailedError)
    assert list(out.iterdir()) == []
    assert download_encrypted(client, link, out, max_size=1000).read_bytes() == \
        path.read_bytes()


def test_missing_file_is_a_download_error_with_status(connect: Callable[..., Client],
                                                      tmp_path: Path) -> None:
    client = connect()
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    link = upload_encrypted(client, path)
    # Prosody finds a file by the slot id (the path segment before the name), not the name.
    base, slot_id, name = link.https_url.rsplit("/", 2)
    gone = AesgcmLink(f"{base}/{uuid.uuid4()}/{name}", link.key, link.iv)
    with pytest.raises(DownloadError) as caught:
        download_encrypted(client, gone, tmp_path / "x")
    assert caught.value.status == 404
