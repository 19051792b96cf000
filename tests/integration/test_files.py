"""Jingle file transfer (XEP-0234) between two simplexmpp accounts on the real Prosody: over
in-band bytestreams (XEP-0261/XEP-0047) and SOCKS5 through Prosody's proxy65 (XEP-0260/0065),
hashes checked (XEP-0300), declines, size limits and aborts as typed errors."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from simplexmpp import Client, errors
from simplexmpp.ext.files import (FileDeclinedError, FileIntegrityError, FileOffer,
                                  FileTooLargeError, FileTransferAborted)

from .conftest import Server

WAIT = 30


def sender_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run fn() on a thread; the list gets its result or exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def make_file(tmp_path: Path, size: int, name: str = "data.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("transport", ["ibb", "s5b", "auto"])
def test_a_file_goes_from_one_account_to_another(connect: Callable[..., Client],
                                                 tmp_path: Path, transport: str) -> None:
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 200_000 + 17)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    seen: list[tuple[int, int | None]] = []
    thread, outcome = sender_thread(lambda: alice.files.send(
        bob.jid, source, progress=lambda done, total: seen.append((done, total)),
        transport=transport, description="random bytes"))
    offer = bob.files.next_offer(timeout=WAIT)
    assert isinstance(offer, FileOffer) and offer.sender == alice.jid
    assert offer.name == "data.bin" and offer.size == source.stat().st_size
    assert offer.description == "random bytes" and "sha-256" in offer.hashes
    assert offer.transport.endswith(":ibb:1" if transport == "ibb" else ":s5b:1")
    got: list[int] = []
    path = offer.receive(directory=inbox, progress=lambda done, total: got.append(done),
                         timeout=WAIT)
    thread.join(WAIT)
    # "auto" goes through Prosody's proxy65 (scripts/prosody-up enables it)
    assert outcome == ["ibb" if transport == "ibb" else "s5b"]
    assert path == inbox / "data.bin" and path.read_bytes() == source.read_bytes()
    assert seen[-1] == (source.stat().st_size, source.stat().st_size)
    assert got[-1] == source.stat().st_size and got == sorted(got)
    assert not list(inbox.glob("*.part"))


def test_a_declined_offer_is_a_typed_error(connect: Callable[..., Client],
                                           tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 1000)
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source, transport="ibb"))
    bob.files.next_offer(timeout=WAIT).decline()
    thread.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], FileDeclinedError)
    assert outcome[0].reason == "decline"


def test_an_offer_over_the_size_limit_is_declined_before_anyone_sees_it(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    bob.files.max_size = 5000
    source = make_file(tmp_path, 5001)
    with pytest.raises(FileTooLargeError):
        alice.files.send(bob.jid, source, transport="ibb", timeout=WAIT)
    with pytest.raises(errors.TimeoutError):
        bob.files.next_offer(timeout=0.2)


def test_a_damaged_file_is_refused_and_not_kept(connect: Callable[..., Client],
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 3000)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # the sender announces the hash of other bytes: what arrives cannot match it
    import simplexmpp.ext.files as files_module
    monkeypatch.setattr(files_module, "_hash_file",
                        lambda path: (3000, hashlib.sha256(b"other bytes").digest()))
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source, transport="ibb"))
    offer = bob.files.next_offer(timeout=WAIT)
    with pytest.raises(FileIntegrityError):
        offer.receive(directory=inbox, timeout=WAIT)
    thread.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], FileIntegrityError)
    assert list(inbox.iterdir()) == []


def test_the_receiver_cancelling_aborts_the_sender(connect: Callable[..., Client],
                                                   tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 2_000_000)
    alice.files.window = 1
    started = threading.Event()
    bob_offers: list[FileOffer] = []

    def on_offer(offer: FileOffer) -> None:
        bob_offers.append(offer)
        transfer = offer.accept(directory=tmp_path,
                                progress=lambda done, total: started.set())
        transfer.add_done_callback(lambda t: None)

    bob.on("file_offer", on_offer)
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source, transport="ibb"))
    assert started.wait(WAIT)
    transfer = bob_offers[0]._session.transfer
    assert transfer is not None
    transfer.cancel()
    with pytest.raises(FileTransferAborted):
        transfer.result(WAIT)
    thread.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], FileTransferAborted)
    assert outcome[0].reason == "cancel"
    assert not (tmp_path / "data.bin.part").exists()


def test_an_unanswered_offer_times_out_and_is_withdrawn(connect: Callable[..., Client],
                                                       tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 100)
    with pytest.raises(errors.TimeoutError):
        alice.files.send(bob.jid, source, transport="ibb", timeout=1)
    offer = bob.files._offers.get(timeout=WAIT)
    # the withdrawal (session-terminate) reaches bob: accepting now is a typed error
    with offer._session.cond:
        assert offer._session.cond.wait_for(lambda: offer.cancelled, WAIT)
    with pytest.raises(FileTransferAborted):
        offer.accept(directory=tmp_path)


def test_a_receiver_that_cannot_reach_the_proxy_falls_back_to_ibb(
        connect: Callable[..., Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simplexmpp.ext.files as files_module
    real = files_module._socks5_connect

    def unreachable_for_the_receiver(*args: object) -> object:
        if threading.current_thread().name.startswith("simplexmpp-s5b-"):
            raise ConnectionRefusedError("blocked by the test")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(files_module, "_socks5_connect", unreachable_for_the_receiver)
    alice, bob = connect(), connect()
    source = make_file(tmp_path, 50_000)
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source, transport="s5b"))
    offer = bob.files.next_offer(timeout=WAIT)
    inbox = tmp_path / "in"
    inbox.mkdir()
    transfer = offer.accept(directory=inbox)
    path = transfer.result(WAIT)
    thread.join(WAIT)
    assert outcome == ["ibb"] and transfer.transport == "ibb"
    assert path.read_bytes() == source.read_bytes()


def _offer_from(alice: Client, bob: Client, size: int, sid: str, ibb_sid: str,
                block_size: int = 4096) -> None:
    """A hand-written XEP-0234 offer over IBB from alice (a scripted, misbehaving peer)."""
    import xml.etree.ElementTree as ET

    from simplexmpp import Iq
    from simplexmpp.ext.files import FILE_TRANSFER_NS, IBB_TRANSPORT_NS, JINGLE_NS
    jingle = ET.Element("{%s}jingle" % JINGLE_NS, action="session-initiate",
                        initiator=str(alice.jid), sid=sid)
    content = ET.SubElement(jingle, "{%s}content" % JINGLE_NS, creator="initiator",
                            name="f", senders="initiator")
    file = ET.SubElement(ET.SubElement(content, "{%s}description" % FILE_TRANSFER_NS),
                         "{%s}file" % FILE_TRANSFER_NS)
    ET.SubElement(file, "{%s}name" % FILE_TRANSFER_NS).text = "../../etc/evil"
    ET.SubElement(file, "{%s}size" % FILE_TRANSFER_NS).text = str(size)
    ET.SubElement(content, "{%s}transport" % IBB_TRANSPORT_NS, sid=ibb_sid,
                  **{"block-size": str(block_size)})
    # the scripted peer acknowledges whatever Jingle request it gets (session-accept)
    alice.register_iq_handler("set", "{%s}jingle" % JINGLE_NS, lambda iq: None)
    alice.iq(Iq.set(bob.jid, jingle))


def _ibb(alice: Client, bob: Client, tag: str, ibb_sid: str, data: bytes | None = None,
         seq: int = 0) -> None:
    import base64
    import xml.etree.ElementTree as ET

    from simplexmpp import Iq
    from simplexmpp.ext.files import IBB_NS
    el = ET.Element("{%s}%s" % (IBB_NS, tag), sid=ibb_sid)
    if tag == "open":
        el.set("block-size", "4096")
    if data is not None:
        el.set("seq", str(seq))
        el.text = base64.b64encode(data).decode()
    alice.iq(Iq.set(bob.jid, el))


def test_a_peer_sending_more_than_it_offered_is_cut_off(connect: Callable[..., Client],
                                                       tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    _offer_from(alice, bob, 10, "s1", "i1")
    offer = bob.files.next_offer(timeout=WAIT)
    assert offer.safe_name == "evil"           # no directories from the peer's name
    transfer = offer.accept(directory=tmp_path)
    assert transfer.path == tmp_path / "evil"
    _ibb(alice, bob, "open", "i1")
    with pytest.raises(errors.IqError):
        _ibb(alice, bob, "data", "i1", b"x" * 11)
    with pytest.raises(FileTooLargeError):
        transfer.result(WAIT)
    assert list(tmp_path.iterdir()) == []


def test_a_peer_skipping_a_block_breaks_the_transfer(connect: Callable[..., Client],
                                                    tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    _offer_from(alice, bob, 100, "s2", "i2")
    transfer = bob.files.next_offer(timeout=WAIT).accept(directory=tmp_path)
    _ibb(alice, bob, "open", "i2")
    _ibb(alice, bob, "data", "i2", b"a" * 10, seq=0)
    with pytest.raises(errors.IqError):
        _ibb(alice, bob, "data", "i2", b"b" * 10, seq=2)
    with pytest.raises(FileTransferAborted, match="expected 1"):
        transfer.result(WAIT)
    # and a stranger's data for a stream it does not own is refused
    carol = connect()
    with pytest.raises(errors.IqError) as refused:
        _ibb(carol, bob, "data", "i2", b"c", seq=1)
    assert refused.value.condition == "item-not-found"


def test_a_short_file_is_not_kept(connect: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    _offer_from(alice, bob, 100, "s3", "i3")
    transfer = bob.files.next_offer(timeout=WAIT).accept(directory=tmp_path)
    _ibb(alice, bob, "open", "i3")
    _ibb(alice, bob, "data", "i3", b"a" * 10, seq=0)
    _ibb(alice, bob, "close", "i3")
    with pytest.raises(FileIntegrityError, match="10 bytes of 100"):
        transfer.result(WAIT)
    assert list(tmp_path.iterdir()) == []


def test_a_bare_jid_reaches_the_resource_that_supports_file_transfer(
        connect: Callable[..., Client], tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    seen = threading.Event()
    alice.on("presence", lambda p: seen.set() if p.from_ == bob.jid else None)
    bob.send_presence(to=alice.jid)               # directed presence: alice learns the resource
    assert seen.wait(WAIT)
    source = make_file(tmp_path, 1234)
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid.bare, source,
                                                             transport="ibb"))
    inbox = tmp_path / "x"
    inbox.mkdir()
    path = bob.files.next_offer(timeout=WAIT).receive(directory=inbox, timeout=WAIT)
    thread.join(WAIT)
    assert outcome == ["ibb"] and path.read_bytes() == source.read_bytes()
    # nobody online at a bare JID we have no presence of: a typed error, not a hang
    carol = connect()
    with pytest.raises(FileDeclinedError, match="no online resource"):
        alice.files.send(carol.jid.bare, source)


def test_a_lost_connection_ends_the_transfer_on_both_sides(
        connect: Callable[..., Client], server: Server, tmp_path: Path) -> None:
    from .proxy import FaultProxy
    proxy = FaultProxy(server.port)
    alice = connect()
    bob = connect(port=proxy.port, stream_management=False)  # a cut means a new session
    try:
        alice.files.window = 1
        source = make_file(tmp_path, 3_000_000)
        started = threading.Event()
        thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source,
                                                                 transport="ibb", timeout=10))
        offer = bob.files.next_offer(timeout=WAIT)
        transfer = offer.accept(directory=tmp_path, progress=lambda got, size: started.set())
        assert started.wait(WAIT)
        proxy.cut_all()
        with pytest.raises(FileTransferAborted, match="connection was lost"):
            transfer.result(WAIT)
        thread.join(WAIT)
        assert len(outcome) == 1 and isinstance(outcome[0], (FileTransferAborted,
                                                             errors.TimeoutError))
        assert not list(tmp_path.glob("*.part"))
    finally:
        bob.disconnect(timeout=5)
        proxy.close()


def test_auto_uses_ibb_where_the_server_has_no_proxy(connect_any: Callable[..., Client],
                                                     any_server: Server, tmp_path: Path) -> None:
    # Prosody (prosody-up) runs proxy65; ejabberd-up runs no SOCKS5 proxy: in-band there
    alice, bob = connect_any(), connect_any()
    source = make_file(tmp_path, 40_000)
    thread, outcome = sender_thread(lambda: alice.files.send(bob.jid, source))
    inbox = tmp_path / "in"
    inbox.mkdir()
    path = bob.files.next_offer(timeout=WAIT).receive(directory=inbox, timeout=WAIT)
    thread.join(WAIT)
    assert outcome == ["s5b" if any_server.kind == "prosody" else "ibb"]
    assert path.read_bytes() == source.read_bytes()


def test_a_stalled_transfer_times_out_and_can_be_cancelled(connect: Callable[..., Client],
                                                          tmp_path: Path) -> None:
    alice, bob = connect(), connect()
    _offer_from(alice, bob, 100, "s4", "i4")
    transfer = bob.files.next_offer(timeout=WAIT).accept(directory=tmp_path)
    _ibb(alice, bob, "open", "i4")
    _ibb(alice, bob, "data", "i4", b"a" * 10, seq=0)      # then nothing more
    with pytest.raises(errors.TimeoutError, match="stalled"):
        transfer.result(timeout=0.5)
    assert not transfer.done and transfer.received == 10
    transfer.cancel()
    with pytest.raises(FileTransferAborted):
        transfer.result(0)
    assert list(tmp_path.iterdir()) == []
