"""SASL mechanisms for XMPP (RFC 6120 §6): SCRAM (RFC 5802, RFC 7677), PLAIN, EXTERNAL, ANONYMOUS,
and the Hashed Token mechanisms (HT-*) that XEP-0484 FAST logs in with.

Sans-IO: a [`Mechanism`][simplexmpp.sasl.Mechanism] turns server challenges (bytes) into responses
(bytes). The stream state machine base64-wraps them into `<auth/>`, `<response/>`.

The server side, for [`ServerStream`][simplexmpp.serverstream.ServerStream] and test servers:
[`ScramServer`][simplexmpp.sasl.ScramServer] (SCRAM-SHA-1/-256/-512 without channel binding) and
[`check_plain()`][simplexmpp.sasl.check_plain], asking a
[`ServerAccounts`][simplexmpp.sasl.ServerAccounts] (such as
[`PasswordAccounts`][simplexmpp.sasl.PasswordAccounts]) for credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from precis_i18n import get_profile

from .errors import AuthenticationError

__all__ = ["Mechanism", "Scram", "Plain", "External", "Anonymous", "HashedToken",
           "choose_mechanism", "choose_token_mechanism", "PREFERENCE",
           "CHANNEL_BINDING_PREFERENCE", "HT_CHANNEL_BINDINGS", "parse_token_mechanism",
           "saslprep", "parse_attributes",
           "tls_server_end_point", "clear_cache",
           "ScramServer", "ScramCredentials", "ServerAccounts", "PasswordAccounts", "check_plain"]

SCRAM_HASHES = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
PREFERENCE = ("SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
              "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "EXTERNAL", "ANONYMOUS")
# RFC 9266 makes tls-exporter the default for TLS 1.3; tls-unique is only sound under 1.2.
CHANNEL_BINDING_PREFERENCE = ("tls-exporter", "tls-server-end-point", "tls-unique")
# draft-schmaus-kitten-sasl-ht §3: HT-<hash>-<cb>; the suffix names the channel binding.
HT_CHANNEL_BINDINGS: dict[str, str | None] = {
    "EXPR": "tls-exporter", "UNIQ": "tls-unique", "ENDP": "tls-server-end-point", "NONE": None}
HT_HASHES = {"SHA-256": "sha256", "SHA-512": "sha512"}
MIN_ITERATIONS = 4096      # RFC 7677 §4: at least 4096
MAX_ITERATIONS = 600_000
"""The most SCRAM iterations a server may ask for; above, AuthenticationError. RFC 5802 §9: "a
hostile server can perform a computational denial-of-service attack on clients by sending a big
iteration count value". Real servers ask for 4096 to 10,000 (Prosody, ejabberd); node-postgres and
the MongoDB driver specification (DRIVERS-3472) stop at 100,000; this allows 600,000, OWASP's 2023
figure for PBKDF2-HMAC-SHA256, in case an administrator follows it: ~0.13 s of SHA-1/-256 or ~0.4 s
of SHA-512 on a 2020s CPU (10^7 took 5.8 s). A module attribute, read at each exchange: raise it for
a server that needs more."""

_OPAQUE = get_profile("OpaqueString")


def saslprep(password: str) -> str:
    """Prepare a password with PRECIS OpaqueString (RFC 8265 §4.2, successor of SASLprep).

    A password the profile refuses (control characters, say) is used as given, so the
    server decides; refusing it here would lock out an account whose password predates PRECIS.
    """
    try:
        return _OPAQUE.enforce(password)
    except UnicodeError:
        return password


def parse_attributes(data: bytes) -> dict[str, str]:
    """`a=1,b=2` (RFC 5802 §5) to a dict; a malformed message is an AuthenticationError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationError("SCRAM message is not UTF-8", "malformed-request") from None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if len(key) != 1 or not eq:
            raise AuthenticationError(f"malformed SCRAM attribute {part!r}", "malformed-request")
        out.setdefault(key, value)
    return out


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


# Salted passwords are expensive on purpose; reconnects reuse them (keyed by everything
# that goes into them, held in memory only, bounded, the least recently used given up first).
# Clients on many threads share it without a lock (this module is sans-IO: no threading):
# each step is one operation on a dict, which CPython performs atomically (the free-threaded
# build locks each dict). Two threads missing the same key at once both compute it, which
# costs time, never correctness; a plain dict keeps insertion order, so the first key is the
# least recently used.
_cache: dict[tuple[str, str, bytes, int], bytes] = {}
_CACHE_SIZE = 64


def _salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    key = (hash_name, password, salt, iterations)
    value = _cache.pop(key, None)
    if value is None:
        value = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
    _cache[key] = value  # (again) the most recently used: last in order
    while len(_cache) > _CACHE_SIZE:
        try:
            del _cache[next(iter(_cache))]
        except (KeyError, RuntimeError, StopIteration):  # another thread changed it meanwhile
            break  # that thread (or the next call) trims it
    return value


def clear_cache() -> None:
    """Forget every cached salted password."""
    _cache.clear()


class Mechanism:
    """One SASL exchange. `initial_response` first, then `challenge` per server
    challenge, then `success` with the additional data of `<success/>`, if any."""

    name: ClassVar[str] = ""

    def initial_response(self) -> bytes | None:
        return None

    def challenge(self, data: bytes) -> bytes:
        raise AuthenticationError(f"unexpected challenge for {self.name}", "malformed-request")

    def success(self, data: bytes | None) -> None:
        if data:
            raise AuthenticationError(f"unexpected success data for {self.name}",
                                      "malformed-request")


class Plain(Mechanism):
    """RFC 4616. Only ever chosen on an encrypted stream."""

    name = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str | None = None) -> None:
        self._message = b"\0".join(((authzid or "").encode("utf-8"), username.encode("utf-8"),
                                     saslprep(password).encode("utf-8")))

    def initial_response(self) -> bytes:
        return self._message


class External(Mechanism):
    """RFC 4422 Appendix A: identity from the TLS client certificate."""

    name = "EXTERNAL"

    def __init__(self, authzid: str | None = None) -> None:
        self._authzid = authzid

    def initial_response(self) -> bytes:
        # RFC 6120 §6.4.2: an empty response is sent as "=", which our caller does for b"".
        return (self._authzid or "").encode("utf-8")


class Anonymous(Mechanism):
    """RFC 4505."""

    name = "ANONYMOUS"

    def initial_response(self) -> bytes:
        return b""


class Scram(Mechanism):
    """SCRAM-SHA-1/-256/-512 and the -PLUS variants (RFC 5802, RFC 7677)."""

    name = ""  # set per instance

    def __init__(self, name: str, username: str, password: str, *,
                 cb_type: str | None = None, cb_data: bytes = b"", client_supports_cb: bool = False,
                 authzid: str | None = None, nonce: str | None = None) -> None:
        base = name.removesuffix("-PLUS")
        if base not in SCRAM_HASHES:
            raise ValueError(f"not a SCRAM mechanism: {name}")
        if name.endswith("-PLUS") != (cb_type is not None):
            raise ValueError("a -PLUS mechanism needs a channel-binding type, and only it")
        self.name = name  # type: ignore[misc]
        self._hash = SCRAM_HASHES[base]
        self._password = saslprep(password)
        self._cb_data = cb_data if cb_type else b""
        # RFC 5802 §6: "p=" binds; "y" says we could bind but the server did not offer
        # -PLUS (so a downgrade is detectable); "n" says we cannot bind at all.
        flag = f"p={cb_type}" if cb_type else ("y" if client_supports_cb else "n")
        self._gs2 = f"{flag},{'a=' + _saslname(authzid) if authzid else ''},".encode()
        self._nonce = nonce or secrets.token_urlsafe(24)
        self._first_bare = f"n={_saslname(username)},r={self._nonce}".encode("utf-8")
        self._server_signature: bytes | None = None
        self._verified = False
        self._state = "initial"

    def initial_response(self) -> bytes:
        self._state = "first"
        return self._gs2 + self._first_bare

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self._hash).digest()

    def challenge(self, data: bytes) -> bytes:
        if self._state == "first":
            return self._client_final(data)
        if self._state == "final":
            self._verify(data)
            return b""
        raise AuthenticationError("unexpected SCRAM challenge", "malformed-request")

    def _client_final(self, server_first: bytes) -> bytes:
        attrs = parse_attributes(server_first)
        if "m" in attrs:  # RFC 5802 §5.1: a mandatory extension we do not know
            raise AuthenticationError("server requires an unknown SCRAM extension",
                                      "malformed-request")
        nonce, salt_b64, iterations_text = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthenticationError("server nonce does not extend ours", "malformed-request")
        if salt_b64 is None or not iterations_text.isdigit():
            raise AuthenticationError("server-first-message lacks salt or iteration count",
                                      "malformed-request")
        iterations = int(iterations_text)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise AuthenticationError(
                f"server asks for {iterations} SCRAM iterations; accepted are "
                f"{MIN_ITERATIONS}..{MAX_ITERATIONS} (simplexmpp.sasl.MAX_ITERATIONS)",
                "malformed-request")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except ValueError:
            raise AuthenticationError("SCRAM salt is not base64", "malformed-request") from None
        salted = _salted_password(self._hash, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._hash, client_key).digest()
        channel = base64.b64encode(self._gs2 + self._cb_data).decode()
        without_proof = f"c={channel},r={nonce}".encode()
        auth_message = self._first_bare + b"," + server_first + b"," + without_proof
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        self._state = "final"
        return without_proof + b",p=" + base64.b64encode(proof)

    def _verify(self, server_final: bytes) -> None:
        attrs = parse_attributes(server_final)
        if "e" in attrs:
            raise AuthenticationError(f"server reports a SCRAM error: {attrs['e']}",
                                      "not-authorized", attrs["e"])
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError:
            signature = b""
        assert self._server_signature is not None
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthenticationError(
                "the server's SCRAM signature is wrong: it does not know the password, "
                "or someone is in the middle", "server-signature-mismatch")
        self._verified = True
        self._state = "done"

    def success(self, data: bytes | None) -> None:
        if self._state == "final" and data:
            self._verify(data)  # RFC 6120 §6.3.10: server-final in <success/>
        if not self._verified:
            raise AuthenticationError(
                "server reported success without proving it knows the password",
                "server-signature-mismatch")


class HashedToken(Mechanism):
    """The Hashed Token mechanisms `HT-SHA-256-NONE/-UNIQ/-ENDP/-EXPR` (draft-schmaus-kitten-
    sasl-ht §3, §4), which XEP-0484 FAST authenticates with: one message each way.

    The client sends `authcid NUL HMAC(token, "Initiator" || cb-data)`; the server proves it
    knows the token too with `HMAC(token, "Responder" || cb-data)` in its success data, which
    [`success()`][simplexmpp.sasl.HashedToken.success] checks (mutual authentication).
    `cb_data` is the channel-binding data the name's suffix asks for (empty for `-NONE`).
    """

    name = ""  # set per instance

    def __init__(self, name: str, username: str, token: str, cb_data: bytes = b"") -> None:
        hash_name, cb_type = parse_token_mechanism(name)
        if cb_type is not None and not cb_data:
            raise ValueError(f"{name} needs {cb_type} channel-binding data")
        self.name = name  # type: ignore[misc]
        self._hash = hash_name
        self._username = username
        self._token = token.encode("utf-8")
        self._cb_data = cb_data if cb_type is not None else b""
        self._verified = False

    def initial_response(self) -> bytes:
        proof = hmac.new(self._token, b"Initiator" + self._cb_data, self._hash).digest()
        return self._username.encode("utf-8") + b"\0" + proof

    def success(self, data: bytes | None) -> None:
        """Check the server's proof; AuthenticationError (`server-signature-mismatch`) when it
        is missing or wrong."""
        expected = hmac.new(self._token, b"Responder" + self._cb_data, self._hash).digest()
        if not data or not hmac.compare_digest(data, expected):
            raise AuthenticationError(
                "the server's token proof is wrong: it does not know the token, or someone is "
                "in the middle", "server-signature-mismatch")
        self._verified = True


def parse_token_mechanism(name: str) -> tuple[str, str | None]:
    """`("sha256", "tls-exporter")` for `HT-SHA-256-EXPR`: the hashlib name and the channel
    binding of a Hashed Token mechanism; ValueError for any other name."""
    prefix, _, suffix = name.upper().rpartition("-")
    hash_part = prefix.removeprefix("HT-")
    if not prefix.startswith("HT-") or hash_part not in HT_HASHES or \
            suffix not in HT_CHANNEL_BINDINGS:
        raise ValueError(f"not a Hashed Token mechanism: {name}")
    return HT_HASHES[hash_part], HT_CHANNEL_BINDINGS[suffix]


def choose_token_mechanism(offered: Iterable[str],
                           channel_bindings: Mapping[str, bytes] | None = None) -> str | None:
    """The Hashed Token mechanism to ask a FAST token for: the strongest channel binding both
    sides can do (XEP-0484 §7: channel binding "MUST be preferred by the client"), then the
    stronger hash. None when the server offers none we can use."""
    bindings = channel_bindings or {}
    usable = []
    for name in offered:
        try:
            hash_name, cb_type = parse_token_mechanism(name.strip())
        except ValueError:
            continue
        if cb_type is not None and not bindings.get(cb_type):
            continue
        cb_rank = (CHANNEL_BINDING_PREFERENCE.index(cb_type) if cb_type is not None
                   else len(CHANNEL_BINDING_PREFERENCE))
        usable.append((cb_rank, hash_name != "sha512", name.strip().upper()))
    return min(usable)[2] if usable else None


def choose_mechanism(offered: Iterable[str], *, username: str, password: str | None,
                     encrypted: bool, channel_bindings: Mapping[str, bytes] | None = None,
                     server_cb_types: Iterable[str] | None = None,
                     allowed: Iterable[str] | None = None, authzid: str | None = None,
                     nonce: str | None = None) -> Mechanism:
    """The strongest mechanism both sides support, ready to run.

    `server_cb_types` lists what the server advertised with XEP-0440; None means it said
    nothing, in which case only `tls-unique` is assumed (RFC 5802 §6).
    """
    offered_set = {m.strip().upper() for m in offered}
    allowed_set = None if allowed is None else {m.upper() for m in allowed}
    bindings = dict(channel_bindings or {})
    server_cb = {"tls-unique"} if server_cb_types is None else set(server_cb_types)
    cb_type = next((t for t in CHANNEL_BINDING_PREFERENCE
                    if t in bindings and t in server_cb), None)
    server_offers_plus = any(m.endswith("-PLUS") for m in offered_set)
    reasons: list[str] = []
    for name in PREFERENCE:
        if name not in offered_set or (allowed_set is not None and name not in allowed_set):
            continue
        if name.startswith("SCRAM-"):
            if password is None or not username:
                reasons.append(f"{name} needs a username and password")
                continue
            if name.endswith("-PLUS"):
                if cb_type is None:
                    reasons.append(f"{name}: no channel binding in common with the server")
                    continue
                return Scram(name, username, password, cb_type=cb_type,
                             cb_data=bindings[cb_type], authzid=authzid, nonce=nonce)
            return Scram(name, username, password, authzid=authzid, nonce=nonce,
                         client_supports_cb=bool(bindings) and not server_offers_plus)
        if name == "PLAIN":
            if not encrypted:
                reasons.append("PLAIN is never used without TLS")
                continue
            if password is None or not username:
                reasons.append("PLAIN needs a username and password")
                continue
            return Plain(username, password, authzid)
        if name == "EXTERNAL":
            if password is not None or not encrypted:
                continue  # only for certificate logins, which pass no password
            return External(authzid)
        if name == "ANONYMOUS":
            if username and allowed_set is None:
                continue  # never log in anonymously by accident when an account was given
            return Anonymous()
    detail = "; ".join(reasons) if reasons else "none of them is usable"
    wanted = "" if allowed_set is None else f" (allowed: {', '.join(sorted(allowed_set))})"
    raise AuthenticationError(
        f"no usable SASL mechanism: server offers {', '.join(sorted(offered_set)) or 'none'}"
        f"{wanted}; {detail}", "no-mechanism")


# tls-server-end-point (RFC 5929 §4.1) ----------------------------------------------------------

_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.4": "sha256",   # md5WithRSA -> SHA-256 per RFC 5929 §4.1
    "1.2.840.113549.1.1.5": "sha256",   # sha1WithRSA -> SHA-256
    "1.2.840.10045.4.1": "sha256",      # ecdsa-with-SHA1 -> SHA-256
    "1.2.840.10040.4.3": "sha256",      # dsa-with-sha1
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
    "2.16.840.1.101.3.4.3.2": "sha256",  # dsa-with-sha256
}
_DIGEST_OIDS = {
    "1.3.14.3.2.26": "sha256",  # SHA-1 -> SHA-256
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `pos`."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _oid(content: bytes) -> str:
    first = content[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _signature_hash(der: bytes) -> str | None:
    _, cert_start, _ = _tlv(der, 0)                    # Certificate ::= SEQUENCE {
    _, _, tbs_end = _tlv(der, cert_start)              #   tbsCertificate,
    _, alg_start, alg_end = _tlv(der, tbs_end)         #   signatureAlgorithm SEQUENCE {
    tag, oid_start, oid_end = _tlv(der, alg_start)     #     algorithm OID, parameters }
    if tag != 0x06:
        raise ValueError("signature algorithm is not an OID")
    oid = _oid(der[oid_start:oid_end])
    if oid != _RSASSA_PSS:
        return _SIGNATURE_HASHES.get(oid)
    # RSASSA-PSS-params: [0] hashAlgorithm, default SHA-1 (which maps to SHA-256)
    if oid_end >= alg_end:
        return "sha256"
    _, params_start, params_end = _tlv(der, oid_end)
    if params_start < params_end and der[params_start] == 0xA0:
        _, inner, _ = _tlv(der, params_start)
        _, hash_alg, _ = _tlv(der, inner)
        _, h_start, h_end = _tlv(der, hash_alg)
        return _DIGEST_OIDS.get(_oid(der[h_start:h_end]))
    return "sha256"


def tls_server_end_point(der: bytes) -> bytes | None:
    """The `tls-server-end-point` channel binding of a DER certificate (RFC 5929 §4.1).

    None when the certificate's signature algorithm names no single hash (Ed25519, say),
    for which RFC 5929 defines no binding.
    """
    try:
        name = _signature_hash(der)
    except (ValueError, IndexError):
        return None
    return None if name is None else hashlib.new(name, der).digest()


# ---------------------------------------------------------------------------------------------
# The server side (RFC 5802 §3, §5; RFC 4616): for test servers and anything else that answers
# SASL; simplexmpp.serverstream drives these.

@dataclass(frozen=True)
class ScramCredentials:
    """What a SCRAM server keeps for one account and hash (RFC 5802 §3): not the password, only
    the salt, the iteration count, `StoredKey` and `ServerKey`."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, mechanism: str, password: str, salt: bytes,
                      iterations: int = MIN_ITERATIONS) -> ScramCredentials:
        """The credentials of `password` (prepared with [`saslprep()`][simplexmpp.sasl.saslprep])
        for `mechanism` (`"SCRAM-SHA-256"` …); derived once per salt and count, then cached."""
        hash_name = SCRAM_HASHES[mechanism.removesuffix("-PLUS")]
        salted = _salted_password(hash_name, saslprep(password), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hash_name).digest()
        return cls(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                   hmac.new(salted, b"Server Key", hash_name).digest())


class ServerAccounts(Protocol):
    """The accounts a SASL server authenticates, as [`ScramServer`][simplexmpp.sasl.ScramServer],
    [`check_plain()`][simplexmpp.sasl.check_plain] and
    [`ServerStream`][simplexmpp.serverstream.ServerStream] ask for them. `username` is the name
    as the client sent it; both return the account's own (normalised) name, or None when there is
    no such account (or, for `check_password`, the password is wrong)."""

    def scram_credentials(self, username: str,
                          mechanism: str) -> tuple[str, ScramCredentials] | None:
        """The account named `username` and its credentials for `mechanism`."""
        ...

    def check_password(self, username: str, password: str) -> str | None:
        """The account named `username` if `password` is its password."""
        ...


class PasswordAccounts:
    """[`ServerAccounts`][simplexmpp.sasl.ServerAccounts] from a mapping of names to passwords
    (each account gets a random salt, kept so clients can cache their salted password). Names are
    matched exactly: a server with rules for names (an XMPP localpart, say) normalises them in
    `normalise`, which returns None for a name it refuses."""

    def __init__(self, passwords: Mapping[str, str], *, iterations: int = MIN_ITERATIONS,
                 normalise: Callable[[str], str | None] | None = None) -> None:
        self.passwords = passwords
        self.iterations = iterations
        self._normalise = normalise
        self._salts: dict[str, bytes] = {}

    def _account(self, username: str) -> str | None:
        name = self._normalise(username) if self._normalise is not None else username
        return name if name is not None and name in self.passwords else None

    def scram_credentials(self, username: str,
                          mechanism: str) -> tuple[str, ScramCredentials] | None:
        name = self._account(username)
        if name is None:
            return None
        # One atomic dict operation (no lock: sans-IO): threads asking at once get one salt.
        salt = self._salts.setdefault(name, secrets.token_bytes(16))
        return name, ScramCredentials.from_password(mechanism, self.passwords[name], salt,
                                                    self.iterations)

    def check_password(self, username: str, password: str) -> str | None:
        name = self._account(username)
        if name is None or not hmac.compare_digest(
                saslprep(password).encode(), saslprep(self.passwords[name]).encode()):
            return None
        return name


def _unescape_saslname(name: str) -> str:
    # RFC 5802 §5.1: "," and "=" in names are sent as "=2C" and "=3D"; any other "=" is bad.
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise AuthenticationError("bad escape in SCRAM username", "malformed-request")
    return name.replace("=2C", ",").replace("=3D", "=")


def _server_attributes(data: bytes) -> dict[str, str]:
    return parse_attributes(data)   # its errors are malformed-request already


class ScramServer:
    """The server side of one SCRAM exchange (RFC 5802 §3, §5) for `mechanism`, without channel
    binding (no -PLUS: a client asking to bind is refused). Failures raise
    [`AuthenticationError`][simplexmpp.errors.AuthenticationError] whose `condition` is the RFC
    6120 §6.5 condition to answer with.

    ```python
    server = ScramServer("SCRAM-SHA-256", accounts)
    server_first = server.first(client_first)
    server_final = server.final(client_final)   # raises unless the proof is right
    server.account                                # who logged in
    ```
    """

    def __init__(self, mechanism: str, accounts: ServerAccounts, *,
                 nonce: str | None = None) -> None:
        if mechanism not in SCRAM_HASHES:
            raise ValueError(f"not a SCRAM mechanism without channel binding: {mechanism}")
        self.mechanism = mechanism
        self._hash = SCRAM_HASHES[mechanism]
        self._accounts = accounts
        self._nonce_suffix = nonce
        self.account: str | None = None
        """The authenticated account's name, once `final()` succeeded."""
        self.authzid: str | None = None
        """The identity the client asked to act as (`a=`), if any; the caller checks it."""
        self._credentials: ScramCredentials | None = None
        self.claimed: str | None = None
        """The account the client names, once `first()` found it (not yet proven)."""
        self._gs2 = b""
        self._client_first_bare = b""
        self._server_first = b""
        self._nonce = ""

    def first(self, client_first: bytes) -> bytes:
        """client-first-message in, server-first-message out."""
        if self._credentials is not None:
            raise AuthenticationError("SCRAM exchange already started", "malformed-request")
        flag, comma, rest = client_first.partition(b",")
        authzid, comma2, bare = rest.partition(b",")
        if not comma or not comma2:
            raise AuthenticationError("SCRAM message has no GS2 header", "malformed-request")
        if flag.startswith(b"p="):
            # RFC 5802 §6: we offered no -PLUS mechanism, so a client that binds is confused.
            raise AuthenticationError("channel binding is not supported here", "not-authorized",
                                      "channel binding is not supported here")
        if flag not in (b"n", b"y"):
            raise AuthenticationError("bad GS2 channel-binding flag", "malformed-request")
        attrs = _server_attributes(bare)
        if "m" in attrs:
            raise AuthenticationError("mandatory SCRAM extension not supported",
                                      "malformed-request", "mandatory SCRAM extension")
        if not attrs.get("n") or not attrs.get("r"):
            raise AuthenticationError("client-first-message lacks n= or r=", "malformed-request")
        if authzid:
            text = authzid.decode("utf-8", "replace")
            if not text.startswith("a="):
                raise AuthenticationError("bad authzid in the GS2 header", "malformed-request")
            self.authzid = _unescape_saslname(text[2:])
        found = self._accounts.scram_credentials(_unescape_saslname(attrs["n"]), self.mechanism)
        if found is None:
            raise AuthenticationError("no such account", "not-authorized")
        self.claimed, self._credentials = found
        self._gs2 = flag + b"," + authzid + b","
        self._client_first_bare = bare
        self._nonce = attrs["r"] + (self._nonce_suffix or secrets.token_urlsafe(18))
        self._server_first = ("r=%s,s=%s,i=%d" % (
            self._nonce, base64.b64encode(self._credentials.salt).decode(),
            self._credentials.iterations)).encode()
        return self._server_first

    def final(self, client_final: bytes) -> bytes:
        """client-final-message in, server-final-message (`v=...`) out; not-authorized unless the
        client proved it knows the password."""
        credentials = self._credentials
        if credentials is None or self.account is not None:
            raise AuthenticationError("no SCRAM exchange in progress", "malformed-request")
        without_proof, sep, proof_b64 = client_final.rpartition(b",p=")
        if not sep:
            raise AuthenticationError("client-final-message lacks a proof", "malformed-request")
        attrs = _server_attributes(without_proof)
        if attrs.get("c") != base64.b64encode(self._gs2).decode():
            raise AuthenticationError("channel-binding data does not match", "not-authorized",
                                      "channel-binding data does not match")
        if attrs.get("r") != self._nonce:
            raise AuthenticationError("nonce mismatch", "not-authorized", "nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise AuthenticationError("SCRAM proof is not base64", "incorrect-encoding") from None
        auth_message = self._client_first_bare + b"," + self._server_first + b"," + without_proof
        signature = hmac.new(credentials.stored_key, auth_message, self._hash).digest()
        if len(proof) != len(signature):
            raise AuthenticationError("wrong SCRAM proof", "not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        # RFC 5802 §3: the proof is right when H(ClientProof XOR ClientSignature) == StoredKey.
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(),
                                   credentials.stored_key):
            raise AuthenticationError("wrong SCRAM proof", "not-authorized")
        self.account = self.claimed
        server_signature = hmac.new(credentials.server_key, auth_message, self._hash).digest()
        return b"v=" + base64.b64encode(server_signature)


def check_plain(message: bytes, accounts: ServerAccounts) -> tuple[str, str | None]:
    """The server side of PLAIN (RFC 4616 §2: `[authzid] NUL authcid NUL passwd`): the account
    and the authzid the client asked for (None if none; the caller checks it). Raises
    [`AuthenticationError`][simplexmpp.errors.AuthenticationError] (`malformed-request`,
    `not-authorized`)."""
    parts = message.split(b"\0")
    if len(parts) != 3:
        raise AuthenticationError("PLAIN message is not authzid\\0user\\0pass",
                                  "malformed-request", "PLAIN message is not authzid\\0user\\0pass")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise AuthenticationError("PLAIN message is not UTF-8", "malformed-request",
                                  "PLAIN message is not UTF-8") from None
    account = accounts.check_password(authcid, password)
    if account is None:
        raise AuthenticationError("wrong username or password", "not-authorized")
    return account, authzid or None
