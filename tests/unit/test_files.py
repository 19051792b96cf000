"""The pure parts of Jingle file transfer: names from peers, SOCKS5 addressing and framing,
Jingle reasons, offer parsing of hostile input."""

from __future__ import annotations

import hashlib
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from simplexmpp import JID
from simplexmpp.ext import files
from simplexmpp.ext.files import (FILE_TRANSFER_NS, JINGLE_NS, _dst_addr, _free_path,
                                  _parse_reason, _reason_element, _safe_name, _socks5_connect)


@pytest.mark.parametrize("name, safe", [
    ("report.pdf", "report.pdf"), ("../../etc/passwd", "passwd"), ("a\\b\\c.txt", "c.txt"),
    ("", "file"), ("..", "file"), (".bashrc", "file.bashrc"), ("x\x00y\n.txt", "xy.txt"),
    ("/", "file"), ("dir/", "file"), ("n" * 300, "n" * 200),
])
def test_names_from_a_peer_never_name_a_directory(name: str, safe: str) -> None:
    assert _safe_name(name) == safe


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("mine")
    (tmp_path / "a (1).txt.part").write_text("in progress")
    assert _free_path(tmp_path, "a.txt") == tmp_path / "a (2).txt"
    assert _free_path(tmp_path, "b.txt") == tmp_path / "b.txt"


def test_dst_addr_is_the_sha1_of_sid_requester_and_target() -> None:
    # XEP-0065 §5.3.2, the example's values
    expected = hashlib.sha1(b"vj3hs98yromeo@montague.lit/orchardjuliet@capulet.lit/balcony")
    assert _dst_addr("vj3hs98y", JID("romeo@montague.lit/orchard"),
                     JID("juliet@capulet.lit/balcony")) == expected.hexdigest()


def test_jingle_reasons_round_trip_and_unknown_ones_are_ignored() -> None:
    jingle = ET.Element("{%s}jingle" % JINGLE_NS)
    jingle.append(_reason_element("media-error", "too big", "file-too-large"))
    assert _parse_reason(jingle) == ("media-error", "too big", "file-too-large")
    odd = ET.fromstring(f"<jingle xmlns='{JINGLE_NS}'><reason><made-up/></reason></jingle>")
    assert _parse_reason(odd) == (None, None, None)
    assert _parse_reason(ET.Element("{%s}jingle" % JINGLE_NS)) == (None, None, None)


def test_an_offer_with_hostile_fields_parses_to_safe_values() -> None:
    file = ET.fromstring(
        f"<file xmlns='{FILE_TRANSFER_NS}'><name>../x</name><size>-5</size>"
        "<date>yesterday</date><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>not base64!"
        "</hash><hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>AAAA</hash></file>")
    session = files._Session(sid="s", peer=JID("a@x/r"), initiator=JID("a@x/r"),
                             content_name="c", sending=False,
                             transport=files.IBB_TRANSPORT_NS, transport_sid="t")
    offer = files.FileOffer(None, session, file)  # type: ignore[arg-type]
    assert offer.size is None and offer.date is None and offer.safe_name == "x"
    assert offer.hashes == {"sha-1": b"\x00\x00\x00"}
    assert offer.media_type == "application/octet-stream"


def _socks5_server(replies: list[bytes]) -> tuple[int, list[bytes]]:
    """A one-connection SOCKS5 server on loopback that answers `replies` in turn."""
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            for reply in replies:
                got.append(conn.recv(1024))
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], got


def test_socks5_connect_sends_rfc1928_requests() -> None:
    addr = "a" * 40
    port, got = _socks5_server([b"\x05\x00",
                                b"\x05\x00\x00\x03\x28" + addr.encode() + b"\x00\x00"])
    stream = _socks5_connect("127.0.0.1", port, addr, 5)
    stream.close()
    assert got == [b"\x05\x01\x00", b"\x05\x01\x00\x03\x28" + addr.encode() + b"\x00\x00"]


def test_socks5_refusals_are_oserrors() -> None:
    port, _ = _socks5_server([b"\x05\xff"])
    with pytest.raises(ConnectionRefusedError, match="authentication"):
        _socks5_connect("127.0.0.1", port, "x", 5)
    port, _ = _socks5_server([b"\x05\x00", b"\x05\x04\x00\x01\x00\x00\x00\x00\x00\x00"])
    with pytest.raises(ConnectionRefusedError, match="code 4"):
        _socks5_connect("127.0.0.1", port, "x", 5)
