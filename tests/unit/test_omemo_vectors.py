"""Known-answer tests: the cryptography under OMEMO and our glue around it, checked against
published vectors (not against the same libraries computing both sides).

- AES-256-GCM of `aesgcm://` file sharing (XEP-0454): test case 15 of McGrew and Viega, "The
  Galois/Counter Mode of Operation (GCM)" (256-bit key, 96-bit IV, no associated data), through
  our streaming encryptor and decryptor in any chunking.
- X25519 (RFC 7748 §6.1) and Ed25519 key derivation (RFC 8032 §7.1, test 1) in XEdDSA, the
  package python-omemo signs and agrees keys with.
- The fingerprint we show (`client.omemo.fingerprint`, CLI `omemo fingerprint`) is the
  Curve25519 form of the Ed25519 identity key: checked against the birational map
  u = (1 + y) / (1 - y) mod 2^255 - 19 (RFC 7748 §4.1) computed here by hand.
"""

from __future__ import annotations

import io

import pytest

pytest.importorskip("omemo")
xeddsa = pytest.importorskip("xeddsa")

from simplexmpp.ext._omemo_engine import fingerprint  # noqa: E402
from simplexmpp.ext.omemo_media import (  # noqa: E402
    AesgcmLink,
    DecryptionFailedError,
    _DecryptingDecoder,
    _EncryptingReader,
)

GCM_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
GCM_IV = bytes.fromhex("cafebabefacedbaddecaf888")
GCM_PLAIN = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
GCM_CIPHER = bytes.fromhex(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad")
GCM_TAG = bytes.fromhex("b094dac5d93471bdec1a502270e3cc6c")


@pytest.mark.parametrize("read_size", [-1, 1, 7, 16, 64, 80])
def test_file_encryption_gives_the_gcm_test_vector(read_size: int) -> None:
    reader = _EncryptingReader(io.BytesIO(GCM_PLAIN), len(GCM_PLAIN), GCM_KEY, GCM_IV)
    out = bytearray()
    while chunk := reader.read(read_size):
        out += chunk
    assert bytes(out) == GCM_CIPHER + GCM_TAG


@pytest.mark.parametrize("chunk", [1, 5, 16, 33, 80])
def test_file_decryption_of_the_gcm_test_vector(chunk: int) -> None:
    blob = GCM_CIPHER + GCM_TAG
    decoder = _DecryptingDecoder(AesgcmLink("https://upload.example/f", GCM_KEY, GCM_IV))
    out = bytearray()
    for at in range(0, len(blob), chunk):
        out += decoder.update(blob[at:at + chunk])
    out += decoder.finalize()
    assert bytes(out) == GCM_PLAIN


def test_the_gcm_test_vector_with_a_changed_tag_is_refused() -> None:
    decoder = _DecryptingDecoder(AesgcmLink("https://upload.example/f", GCM_KEY, GCM_IV))
    decoder.update(GCM_CIPHER + GCM_TAG[:-1] + bytes([GCM_TAG[-1] ^ 1]))
    with pytest.raises(DecryptionFailedError):
        decoder.finalize()


def test_x25519_public_key_of_rfc7748() -> None:
    alice_private = bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    assert xeddsa.priv_to_curve25519_pub(alice_private).hex() == \
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_ed25519_public_key_of_rfc8032() -> None:
    assert xeddsa.seed_to_ed25519_pub(RFC8032_SEED) == RFC8032_PUBLIC


def test_the_fingerprint_is_the_curve25519_form_of_the_identity_key() -> None:
    p = 2**255 - 19
    y = int.from_bytes(RFC8032_PUBLIC, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, p - 2, p) % p
    expected = u.to_bytes(32, "little").hex()
    shown = fingerprint(RFC8032_PUBLIC)
    assert len(shown) == 64
    assert shown.lower() == expected
