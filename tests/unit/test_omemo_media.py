"""aesgcm:// links (XEP-0454): parsing, the strict message rule, and the streaming AES-GCM
encryption and decryption checked against cryptography's one-shot AESGCM."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from simplexmpp.ext.omemo_media import (AesgcmLink, DecryptionFailedError,
                                        InvalidAesgcmLinkError, _DecryptingDecoder,
                                        _EncryptingReader, _server_name, aesgcm_link_of,
                                        encrypted_size)
from simplexmpp.ext.upload import UploadError
from simplexmpp.stanza import Message

# The example of XEP-0454 §2.
XEP_GET = ("https://download.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/"
           "tr%C3%A8s%20cool.jpg")
XEP_IV = "8c3d050e9386ec173861778f"
XEP_KEY = "68e9af38a97aaf82faa4063b4d0878a61261534410c8a84331eaac851759f587"
XEP_LINK = ("aesgcm://download.montague.tld/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/"
            "tr%C3%A8s%20cool.jpg#" + XEP_IV + XEP_KEY)


def test_the_xep_example_parses_to_its_url_iv_and_key() -> None:
    link = AesgcmLink.parse(XEP_LINK)
    assert link.https_url == XEP_GET
    assert link.iv == bytes.fromhex(XEP_IV) and link.key == bytes.fromhex(XEP_KEY)
    assert link.url == XEP_LINK and str(link) == XEP_LINK
    assert link.filename == "très cool.jpg"


def test_a_link_is_built_iv_first_then_key() -> None:
    link = AesgcmLink(XEP_GET, bytes.fromhex(XEP_KEY), bytes.fromhex(XEP_IV))
    assert link.url == XEP_LINK


def test_legacy_16_byte_iv_and_upper_case_hex_are_accepted() -> None:
    iv, key = os.urandom(16), os.urandom(32)
    link = AesgcmLink.parse(f"aesgcm://h.example/f.bin#{(iv + key).hex().upper()}")
    assert link.iv == iv and link.key == key and link.https_url == "https://h.example/f.bin"


def test_query_and_port_are_kept_and_the_key_is_not_in_the_https_url() -> None:
    link = AesgcmLink.parse(f"aesgcm://h.example:5281/a/b.png?x=1#{XEP_IV}{XEP_KEY}")
    assert link.https_url == "https://h.example:5281/a/b.png?x=1"
    assert XEP_KEY not in link.https_url and "#" not in link.https_url


def test_repr_hides_the_key() -> None:
    link = AesgcmLink.parse(XEP_LINK)
    assert XEP_KEY not in repr(link) and XEP_IV not in repr(link)


@pytest.mark.parametrize("text", [
    "https://download.montague.tld/x.jpg#" + XEP_IV + XEP_KEY,     # not aesgcm
    "aesgcm:///x.jpg#" + XEP_IV + XEP_KEY,                         # no host
    "aesgcm://h.example/x.jpg",                                     # no fragment
    "aesgcm://h.example/x.jpg#" + XEP_IV + XEP_KEY[:-2],           # a byte short
    "aesgcm://h.example/x.jpg#" + XEP_IV + XEP_KEY + "00",         # a byte over
    "aesgcm://h.example/x.jpg#" + XEP_IV + XEP_KEY[:-1] + "g",     # not hex
    "aesgcm://h.example/a b.jpg#" + XEP_IV + XEP_KEY,              # a space
])
def test_invalid_links_raise_a_typed_value_error(text: str) -> None:
    with pytest.raises(InvalidAesgcmLinkError):
        AesgcmLink.parse(text)
    with pytest.raises(ValueError):
        AesgcmLink.parse(text)
    assert aesgcm_link_of(text) is None


def test_only_https_urls_become_links() -> None:
    with pytest.raises(InvalidAesgcmLinkError):
        AesgcmLink("http://h.example/x", os.urandom(32), os.urandom(12))
    with pytest.raises(InvalidAesgcmLinkError):
        AesgcmLink("https://h.example/x", os.urandom(16), os.urandom(12))
    with pytest.raises(InvalidAesgcmLinkError):
        AesgcmLink("https://h.example/x", os.urandom(32), os.urandom(8))


def test_message_rule_is_strict() -> None:
    # XEP-0454 §4: exactly a link, or a link, one newline and a data: URI.
    assert aesgcm_link_of(XEP_LINK) == AesgcmLink.parse(XEP_LINK)
    assert aesgcm_link_of(f"{XEP_LINK}\ndata:image/jpeg,/9j/4AAQSkZJRg") is not None
    assert aesgcm_link_of(f"look: {XEP_LINK}") is None
    assert aesgcm_link_of(f"{XEP_LINK} nice") is None
    assert aesgcm_link_of(f"{XEP_LINK}\nand some text") is None
    assert aesgcm_link_of("") is None and aesgcm_link_of(None) is None
    msg = Message(to="bob@example.org", body=XEP_LINK)
    assert aesgcm_link_of(msg) == AesgcmLink.parse(XEP_LINK)
    assert aesgcm_link_of(Message(to="bob@example.org", body="hi")) is None


def encrypt_streaming(data: bytes, key: bytes, iv: bytes, read_size: int = -1) -> bytes:
    reader = _EncryptingReader(io.BytesIO(data), len(data), key, iv)
    out = bytearray()
    while True:
        chunk = reader.read(read_size)
        if not chunk:
            return bytes(out)
        out += chunk


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 65536, 200_001])
@pytest.mark.parametrize("read_size", [-1, 5, 8192])
def test_streaming_encryption_is_ciphertext_then_tag(size: int, read_size: int) -> None:
    data, key, iv = os.urandom(size), os.urandom(32), os.urandom(12)
    upload = encrypt_streaming(data, key, iv, read_size)
    assert len(upload) == encrypted_size(size) == size + 16
    # An independent one-shot AES-GCM gives ciphertext || tag: what Conversations/Dino expect.
    assert upload == AESGCM(key).encrypt(iv, data, None)


@pytest.mark.parametrize("iv_size", [12, 16])
@pytest.mark.parametrize("chunks", [[1], [3, 20, 1], [65536], [17, 17, 17]])
def test_streaming_decryption_in_any_chunking(iv_size: int, chunks: list[int]) -> None:
    data, key, iv = os.urandom(100_000), os.urandom(32), os.urandom(iv_size)
    blob = AESGCM(key).encrypt(iv, data, None)
    decoder = _DecryptingDecoder(AesgcmLink("https://h.example/f", key, iv))
    out, at, i = bytearray(), 0, 0
    while at < len(blob):
        n = chunks[i % len(chunks)]
        out += decoder.update(blob[at:at + n])
        at, i = at + n, i + 1
    out += decoder.finalize()
    assert bytes(out) == data


@pytest.mark.parametrize("damage", ["flip-body", "flip-tag", "truncate", "too-short",
                                    "wrong-key"])
def test_tampering_fails_authentication(damage: str) -> None:
    data, key, iv = os.urandom(1000), os.urandom(32), os.urandom(12)
    blob = bytearray(AESGCM(key).encrypt(iv, data, None))
    if damage == "flip-body":
        blob[10] ^= 1
    elif damage == "flip-tag":
        blob[-1] ^= 0x80
    elif damage == "truncate":
        del blob[-1]
    elif damage == "too-short":
        blob = blob[:10]
    elif damage == "wrong-key":
        key = os.urandom(32)
    decoder = _DecryptingDecoder(AesgcmLink("https://h.example/f", key, iv))
    decoder.update(bytes(blob))
    with pytest.raises(DecryptionFailedError) as caught:
        decoder.finalize()
    assert caught.value.url == "https://h.example/f"


def test_a_file_that_grows_or_shrinks_during_upload_is_refused() -> None:
    reader = _EncryptingReader(io.BytesIO(b"x" * 10), 5, os.urandom(32), os.urandom(12))
    with pytest.raises(UploadError, match="grew"):
        while reader.read(4):
            pass
    reader = _EncryptingReader(io.BytesIO(b"x" * 3), 5, os.urandom(32), os.urandom(12))
    with pytest.raises(UploadError, match="shrank"):
        while reader.read(4):
            pass


def test_server_file_name_is_random_with_the_extension() -> None:
    first, second = _server_name("/tmp/Secret Plans.PDF", None), _server_name("a.pdf", None)
    assert first.endswith(".pdf") and second.endswith(".pdf") and first != second
    assert "Secret" not in first and len(first) == 32 + 4
    assert "." not in _server_name("/tmp/noext", None)
    assert "." not in _server_name("/tmp/x.tar.verylongextension", None)
    assert _server_name("/tmp/x.bin", "chosen.bin") == "chosen.bin"
