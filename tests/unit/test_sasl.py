"""SASL mechanisms against the published vectors, mechanism choice and channel binding."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from simplexmpp import sasl
from simplexmpp.errors import AuthenticationError
from simplexmpp.sasl import Scram, choose_mechanism, parse_attributes, tls_server_end_point

# RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256), user "user", password "pencil".
VECTORS = {
    "SCRAM-SHA-1": dict(
        nonce="fyko+d2lbbFgONRv9qkxdawL",
        server_first="r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        client_final="c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                     "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        server_final="v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
    "SCRAM-SHA-256": dict(
        nonce="rOprNGfwEbeRWgbNEkqO",
        server_first="r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        client_final="c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        server_final="v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_scram_reproduces_the_rfc_vectors(name: str) -> None:
    v = VECTORS[name]
    mech = Scram(name, "user", "pencil", nonce=v["nonce"])
    assert mech.initial_response() == f"n,,n=user,r={v['nonce']}".encode()
    assert mech.challenge(v["server_first"].encode()) == v["client_final"].encode()
    mech.success(v["server_final"].encode())  # verifies v=, raises on mismatch


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_server_final_may_come_as_a_challenge(name: str) -> None:
    v = VECTORS[name]
    mech = Scram(name, "user", "pencil", nonce=v["nonce"])
    mech.initial_response()
    mech.challenge(v["server_first"].encode())
    assert mech.challenge(v["server_final"].encode()) == b""
    mech.success(None)


def test_wrong_server_signature_is_an_authentication_error() -> None:
    v = VECTORS["SCRAM-SHA-1"]
    mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce=v["nonce"])
    mech.initial_response()
    mech.challenge(v["server_first"].encode())
    with pytest.raises(AuthenticationError) as info:
        mech.success(b"v=" + base64.b64encode(b"x" * 20))
    assert info.value.condition == "server-signature-mismatch"


def test_success_without_server_signature_is_refused() -> None:
    v = VECTORS["SCRAM-SHA-1"]
    mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce=v["nonce"])
    mech.initial_response()
    mech.challenge(v["server_first"].encode())
    with pytest.raises(AuthenticationError) as info:
        mech.success(None)
    assert info.value.condition == "server-signature-mismatch"


@pytest.mark.parametrize("server_first, why", [
    (b"r=othernonce,s=QSXCR+Q6sek8bf92,i=4096", "nonce"),
    (b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096", "nonce"),  # not extended
    (b"r=fyko+d2lbbFgONRv9qkxdawLxx,i=4096", "salt"),
    (b"r=fyko+d2lbbFgONRv9qkxdawLxx,s=QSXCR+Q6sek8bf92,i=1", "iterations"),
    (b"r=fyko+d2lbbFgONRv9qkxdawLxx,s=QSXCR+Q6sek8bf92,i=999999999", "iterations"),
    (b"m=ext,r=fyko+d2lbbFgONRv9qkxdawLxx,s=QSXCR+Q6sek8bf92,i=4096", "extension"),
    (b"garbage", "attribute"),
    (b"\xff\xfe", "UTF-8"),
    (b"r=fyko+d2lbbFgONRv9qkxdawLxx,s=!!!,i=4096", "base64"),
])
def test_hostile_server_first_messages_are_refused(server_first: bytes, why: str) -> None:
    mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce="fyko+d2lbbFgONRv9qkxdawL")
    mech.initial_response()
    with pytest.raises(AuthenticationError) as info:
        mech.challenge(server_first)
    assert why in str(info.value) and info.value.condition == "malformed-request"


def test_server_error_attribute_is_reported() -> None:
    v = VECTORS["SCRAM-SHA-1"]
    mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce=v["nonce"])
    mech.initial_response()
    mech.challenge(v["server_first"].encode())
    with pytest.raises(AuthenticationError, match="invalid-proof"):
        mech.challenge(b"e=invalid-proof")


def test_plus_variant_binds_the_channel_into_c() -> None:
    mech = Scram("SCRAM-SHA-256-PLUS", "user", "pencil", cb_type="tls-exporter",
                 cb_data=b"\x01\x02", nonce="abc")
    first = mech.initial_response()
    assert first == b"p=tls-exporter,,n=user,r=abc"
    final = mech.challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
    c = parse_attributes(final)["c"]
    assert base64.b64decode(c) == b"p=tls-exporter,," + b"\x01\x02"


def test_usernames_and_authzid_are_escaped() -> None:
    mech = Scram("SCRAM-SHA-1", "a=b,c", "pw", authzid="x,y@z", nonce="n")
    assert mech.initial_response() == b"n,a=x=2Cy@z,n=a=3Db=2Cc,r=n"


def test_password_is_prepared_with_opaque_string() -> None:
    # U+00A0 NO-BREAK SPACE maps to a plain space (RFC 8265 §4.2.2)
    assert sasl.saslprep("pass\u00a0word") == "pass word"
    assert sasl.saslprep("\u2168") == "\u2168"  # stays as given (no NFKC in OpaqueString)


def test_salted_password_is_cached_and_cache_can_be_cleared() -> None:
    sasl.clear_cache()
    v = VECTORS["SCRAM-SHA-1"]
    for _ in range(2):
        mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce=v["nonce"])
        mech.initial_response()
        assert mech.challenge(v["server_first"].encode()) == v["client_final"].encode()
    assert len(sasl._cache) == 1
    sasl.clear_cache()
    assert not sasl._cache


def test_salted_password_cache_is_bounded_and_gives_up_the_least_recently_used() -> None:
    sasl.clear_cache()
    try:
        first = sasl._salted_password("sha1", "pw", b"salt-0", 1)
        for n in range(1, sasl._CACHE_SIZE):
            sasl._salted_password("sha1", "pw", f"salt-{n}".encode(), 1)
        assert sasl._salted_password("sha1", "pw", b"salt-0", 1) == first  # used again
        sasl._salted_password("sha1", "pw", b"one more", 1)
        assert len(sasl._cache) == sasl._CACHE_SIZE
        keys = {key[2] for key in sasl._cache}
        assert b"salt-0" in keys and b"salt-1" not in keys and b"one more" in keys
    finally:
        sasl.clear_cache()


def test_salted_password_cache_stays_right_under_threads() -> None:
    import concurrent.futures
    import hashlib

    sasl.clear_cache()
    try:
        salts = [f"salt-{n % 80}".encode() for n in range(2000)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda s: sasl._salted_password("sha1", "pw", s, 1), salts))
        assert results == [hashlib.pbkdf2_hmac("sha1", b"pw", s, 1) for s in salts]
        assert len(sasl._cache) <= sasl._CACHE_SIZE + 8
    finally:
        sasl.clear_cache()


ALL = ["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
       "SCRAM-SHA-512", "SCRAM-SHA-512-PLUS", "PLAIN", "ANONYMOUS", "EXTERNAL"]


def test_strongest_mechanism_first() -> None:
    mech = choose_mechanism(ALL, username="u", password="p", encrypted=True,
                            channel_bindings={"tls-unique": b"x"})
    assert mech.name == "SCRAM-SHA-512-PLUS"
    assert mech.initial_response().startswith(b"p=tls-unique,")
    mech = choose_mechanism(ALL, username="u", password="p", encrypted=True)
    assert mech.name == "SCRAM-SHA-512"
    assert mech.initial_response().startswith(b"n,,")


def test_channel_binding_type_follows_xep_0440_and_preference() -> None:
    cb = {"tls-unique": b"u", "tls-server-end-point": b"e"}
    mech = choose_mechanism(ALL, username="u", password="p", encrypted=True,
                            channel_bindings=cb,
                            server_cb_types=["tls-unique", "tls-server-end-point"])
    assert mech.initial_response().startswith(b"p=tls-server-end-point,")
    # The server advertises nothing we have: no -PLUS; "n" since it does offer -PLUS.
    mech = choose_mechanism(ALL, username="u", password="p", encrypted=True,
                            channel_bindings=cb, server_cb_types=["tls-exporter"])
    assert mech.name == "SCRAM-SHA-512" and mech.initial_response().startswith(b"n,,")


def test_y_flag_when_we_could_bind_but_server_offers_no_plus() -> None:
    mech = choose_mechanism(["SCRAM-SHA-1"], username="u", password="p", encrypted=True,
                            channel_bindings={"tls-unique": b"x"})
    assert mech.initial_response().startswith(b"y,,")


def test_plain_is_never_chosen_without_tls() -> None:
    with pytest.raises(AuthenticationError) as info:
        choose_mechanism(["PLAIN"], username="u", password="p", encrypted=False)
    assert info.value.condition == "no-mechanism" and "TLS" in str(info.value)
    mech = choose_mechanism(["PLAIN"], username="u", password="p\u00a0", encrypted=True)
    assert mech.initial_response() == b"\0u\0p "


def test_allowed_restricts_and_anonymous_needs_asking() -> None:
    mech = choose_mechanism(ALL, username="u", password="p", encrypted=True, allowed=["PLAIN"])
    assert mech.name == "PLAIN"
    with pytest.raises(AuthenticationError):
        choose_mechanism(["ANONYMOUS"], username="u", password="p", encrypted=True)
    assert choose_mechanism(["ANONYMOUS"], username="", password=None,
                            encrypted=True).name == "ANONYMOUS"
    assert choose_mechanism(["EXTERNAL", "ANONYMOUS"], username="u", password=None,
                            encrypted=True).name == "EXTERNAL"


def test_nothing_in_common_names_what_was_offered() -> None:
    with pytest.raises(AuthenticationError) as info:
        choose_mechanism(["DIGEST-MD5", "X-OAUTH2"], username="u", password="p", encrypted=True)
    assert "DIGEST-MD5" in str(info.value) and info.value.condition == "no-mechanism"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("key, digest, expected_hash", [
    ("rsa:2048", "-sha256", "sha256"),
    ("rsa:2048", "-sha384", "sha384"),
    ("rsa:2048", "-sha512", "sha512"),
    ("rsa:2048", "-sha1", "sha256"),  # RFC 5929 §4.1: SHA-1 is replaced by SHA-256
    ("ec", "-sha384", "sha384"),
])
def test_tls_server_end_point_hashes_with_the_certificate_signature_hash(
        tmp_path: Path, key: str, digest: str, expected_hash: str) -> None:
    keyopt = ["-newkey", key] if key != "ec" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", "-nodes", *keyopt, digest, "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "k"),
                    "-outform", "DER", "-out", str(tmp_path / "c")], check=True,
                   capture_output=True)
    der = (tmp_path / "c").read_bytes()
    assert tls_server_end_point(der) == hashlib.new(expected_hash, der).digest()


def test_tls_server_end_point_of_garbage_is_none() -> None:
    assert tls_server_end_point(b"\x30\x03\x02\x01") is None
    assert tls_server_end_point(b"") is None


@pytest.mark.parametrize("iterations", [10_000_000, sasl.MAX_ITERATIONS + 1])
def test_iteration_count_above_the_maximum_is_refused_by_its_count(
        iterations: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: 10**7 iterations of SCRAM-SHA-512 took 5.8 s; refused before any hashing."""
    def no_hashing(*args: object) -> bytes:
        raise AssertionError("hashed a refused iteration count")
    monkeypatch.setattr(sasl, "_salted_password", no_hashing)
    mech = Scram("SCRAM-SHA-512", "user", "pencil", nonce="fyko")
    mech.initial_response()
    with pytest.raises(AuthenticationError) as info:
        mech.challenge(f"r=fykoXX,s=QSXCR+Q6sek8bf92,i={iterations}".encode())
    assert str(iterations) in str(info.value) and info.value.condition == "malformed-request"


def test_iteration_count_at_the_maximum_is_accepted() -> None:
    assert 100_000 <= sasl.MAX_ITERATIONS <= 1_000_000
    mech = Scram("SCRAM-SHA-1", "user", "pencil", nonce="fyko")
    mech.initial_response()
    assert mech.challenge(f"r=fykoXX,s=QSXCR+Q6sek8bf92,i={sasl.MAX_ITERATIONS}".encode())


# Hashed Token mechanisms (draft-schmaus-kitten-sasl-ht §4), as XEP-0484 FAST uses them ----------

def test_hashed_token_initial_response_and_server_proof() -> None:
    import hmac
    mech = sasl.HashedToken("HT-SHA-256-UNIQ", "alice", "tok", b"finished")
    expected = hmac.new(b"tok", b"Initiatorfinished", hashlib.sha256).digest()
    assert mech.initial_response() == b"alice\0" + expected
    mech.success(hmac.new(b"tok", b"Responderfinished", hashlib.sha256).digest())
    with pytest.raises(AuthenticationError) as info:
        sasl.HashedToken("HT-SHA-256-NONE", "alice", "tok").success(b"\0" * 32)
    assert info.value.condition == "server-signature-mismatch"
    with pytest.raises(AuthenticationError):
        sasl.HashedToken("HT-SHA-256-NONE", "alice", "tok").success(None)


def test_hashed_token_with_binding_needs_the_binding_data() -> None:
    with pytest.raises(ValueError):
        sasl.HashedToken("HT-SHA-256-EXPR", "alice", "tok")
    with pytest.raises(ValueError):
        sasl.HashedToken("SCRAM-SHA-1", "alice", "tok")


def test_token_mechanism_prefers_the_strongest_binding_this_connection_has() -> None:
    offered = ["HT-SHA-256-NONE", "HT-SHA-256-ENDP", "HT-SHA-256-EXPR", "HT-SHA-256-UNIQ"]
    choose = sasl.choose_token_mechanism
    assert choose(offered, {"tls-exporter": b"x", "tls-server-end-point": b"y"}) == \
        "HT-SHA-256-EXPR"
    assert choose(offered, {"tls-unique": b"x"}) == "HT-SHA-256-UNIQ"
    assert choose(offered, {}) == "HT-SHA-256-NONE"
    assert choose(["HT-SHA-256-EXPR"], {}) is None
    assert choose(["PLAIN", "HT-MD5-NONE"], {}) is None
