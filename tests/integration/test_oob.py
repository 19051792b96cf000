"""XEP-0066 out-of-band links between two accounts, and downloads over HTTPS."""

from __future__ import annotations

import http.server
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simplexmpp import Client
from simplexmpp.ext.oob import OOB_NS, DownloadError, OOBData, oob_of

from .conftest import Server
from .samples import run_sample

PAYLOAD = os.urandom(200_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.hosts.append(self.headers.get("Host", ""))
        if self.path != "/dir/file%20one.bin":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_files(server: Server) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with the test certificate (SAN *.localhost); its port."""
    certs = Path(server.state) / "certs"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "localhost.crt", certs / "localhost.key")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.hosts = []
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_link_is_received_with_event_and_still_reaches_the_inbox(
        connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    bob.send_presence()
    seen: list[tuple[object, OOBData]] = []
    got = threading.Event()

    def on_oob(msg: object, data: OOBData) -> None:
        seen.append((msg, data))
        got.set()

    bob.on("oob", on_oob)
    url = "https://example.org/some/file.png"
    alice.oob.send(bob.jid, url, desc="a picture")  # type: ignore[attr-defined]
    msg = bob.next_message(timeout=15)
    assert msg.body == url  # the body defaults to the URL (what clients without XEP-0066 show)
    assert oob_of(msg) == OOBData(url, "a picture")
    assert got.wait(15)
    assert seen[0][1] == OOBData(url, "a picture") and seen[0][0].id == msg.id  # type: ignore[attr-defined]


def test_plain_message_has_no_link_and_fires_no_event(connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    bob.send_presence()
    events: list[object] = []
    got = threading.Event()

    def on_oob(msg: object, data: OOBData) -> None:
        events.append(data)
        got.set()

    bob.on("oob", on_oob)
    alice.send_message(bob.jid, "just text")
    alice.oob.send(bob.jid, "https://example.org/x", body="see this")  # type: ignore[attr-defined]
    first, second = bob.next_message(timeout=15), bob.next_message(timeout=15)
    assert first.body == "just text" and oob_of(first) is None
    assert second.body == "see this" and oob_of(second) == OOBData("https://example.org/x")
    # Events run in arrival order: once the link's has run, the plain one would have too.
    assert got.wait(15)
    assert events == [OOBData("https://example.org/x")]


def test_we_advertise_oob(connect: Callable[..., Client]) -> None:
    alice, bob = connect(), connect()
    assert OOB_NS in alice.local_features
    info = bob.disco.info(alice.jid)  # type: ignore[attr-defined]
    assert OOB_NS in info.features


def test_uploaded_file_is_sent_and_downloaded(connect: Callable[..., Client],
                                              tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    bob.send_presence()
    data = os.urandom(150_000)
    url = alice.upload.upload_bytes(data, "holiday photo.jpg")  # type: ignore[attr-defined]
    alice.oob.send(bob.jid, url, desc="holiday")  # type: ignore[attr-defined]
    link = oob_of(bob.next_message(timeout=15))
    assert link is not None and link.url == url
    calls: list[tuple[int, int | None]] = []
    saved = bob.oob.download(link.url, tmp_path,  # type: ignore[attr-defined]
                             progress=lambda got, total: calls.append((got, total)))
    assert saved == tmp_path / "holiday photo.jpg"
    assert saved.read_bytes() == data
    assert calls[-1] == (len(data), len(data))
    # A second download of the same URL does not overwrite the first.
    again = bob.oob.download(link.url, tmp_path)  # type: ignore[attr-defined]
    assert again == tmp_path / "holiday photo-1.jpg" and again.read_bytes() == data
    # An explicit file path is used as given.
    chosen = bob.oob.download(link.url, tmp_path / "chosen.bin")  # type: ignore[attr-defined]
    assert chosen.read_bytes() == data


def test_missing_file_raises_with_status_and_leaves_nothing(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    client = connect()
    url = client.upload.upload_bytes(b"x", "x.txt")  # type: ignore[attr-defined]
    with pytest.raises(DownloadError) as caught:
        client.oob.download(url.rsplit("/", 2)[0] + "/nope/x.txt", tmp_path)  # type: ignore[attr-defined]
    assert caught.value.status == 404
    assert list(tmp_path.iterdir()) == []


def test_max_size_stops_a_download_and_leaves_nothing(connect: Callable[..., Client],
                                                      tmp_path: Path) -> None:
    client = connect()
    url = client.upload.upload_bytes(b"y" * 1000, "y.txt")  # type: ignore[attr-defined]
    with pytest.raises(DownloadError, match="max_size"):
        client.oob.download(url, tmp_path, max_size=999)  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


def test_non_http_urls_are_refused(connect: Callable[..., Client], tmp_path: Path) -> None:
    client = connect()
    with pytest.raises(DownloadError):
        client.oob.download("file:///etc/passwd", tmp_path)  # type: ignore[attr-defined]


def test_names_under_localhost_reach_loopback_with_the_name_checked(
        connect: Callable[..., Client], https_files: int, tmp_path: Path) -> None:
    client = connect()  # ca_file is the test certificate
    url = f"https://files.localhost:{https_files}/dir/file%20one.bin"
    saved = client.oob.download(url, tmp_path)  # type: ignore[attr-defined]
    assert saved.name == "file one.bin" and saved.read_bytes() == PAYLOAD
    assert _Handler.hosts[-1] == f"files.localhost:{https_files}"


def test_certificate_is_verified_for_localhost_names(server: Server, https_files: int,
                                                     tmp_path: Path) -> None:
    # Without the test certificate the default trust store must reject it.
    client = server.client(server.new_account(), ca_file=None)
    with pytest.raises(DownloadError, match="TLS"):
        client.oob.download(f"https://files.localhost:{https_files}/dir/file%20one.bin",  # type: ignore[attr-defined]
                            tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_retriever_sample_downloads_links_it_receives(server: Server,
                                                      connect: Callable[..., Client],
                                                      tmp_path: Path) -> None:
    alice = connect()
    bob = server.new_account()
    first = alice.upload.upload_bytes(b"first file\n", "first.txt")  # type: ignore[attr-defined]
    second = alice.upload.upload_bytes(b"second file\n", "second.txt")  # type: ignore[attr-defined]
    # bob is offline: the server stores the messages and delivers them when he comes online.
    alice.send_message(bob, "no link here")
    alice.oob.send(bob, first)  # type: ignore[attr-defined]
    alice.oob.send(bob, second, desc="the second")  # type: ignore[attr-defined]
    out = run_sample(server, "oob_retriever.py", str(tmp_path / "inbox"), "--count", "2",
                     "--idle", "30", jid=bob)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "inbox" / "first.txt").read_bytes() == b"first file\n"
    assert (tmp_path / "inbox" / "second.txt").read_bytes() == b"second file\n"
    assert "retriever saved 2 file(s)" in out.stdout
