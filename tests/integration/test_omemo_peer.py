"""OMEMO with an independent implementation through the real Prosody: slixmpp + slixmpp-omemo
as a peer process (tests/integration/omemo_peer.py), both ways, in both namespaces, and with
either side starting the session."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omemo")
pytest.importorskip("slixmpp_omemo")

from simplexmpp import Client  # noqa: E402
from simplexmpp.ext.omemo import OLDMEMO_NS, TWOMEMO_NS  # noqa: E402

from .conftest import Server  # noqa: E402

WAIT = 60.0
PEER = Path(__file__).with_name("omemo_peer.py")


class Peer:
    """The slixmpp-omemo peer process: JSON lines out, commands in."""

    def __init__(self, server: Server, jid: str, tmp: Path) -> None:
        self.jid = jid
        self.stderr_path = tmp / f"peer-{jid}.log"
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), jid, server.password, server.host, str(server.port),
             server.ca, str(tmp / f"peer-{jid}.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.device_id = self.expect("ready")["ready"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"error": f"peer printed {line!r}"})
        self.lines.put({"error": "the peer process ended"})

    def expect(self, key: str) -> dict[str, Any]:
        while True:
            try:
                item = self.lines.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"the peer said nothing within {WAIT} s; its log:\n"
                            f"{self.stderr_path.read_text()[-3000:]}")
            if key in item:
                return item
            if "error" in item:
                pytest.fail(f"the peer failed: {item['error']}; its log:\n"
                            f"{self.stderr_path.read_text()[-3000:]}")

    def send(self, to: str, namespace: str, body: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"send": to, "ns": namespace, "body": body}) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stderr.close()


@pytest.fixture
def peer(server: Server, tmp_path: Path) -> Iterator[Peer]:
    p = Peer(server, server.new_account("peer"), tmp_path)
    yield p
    p.close()


def ours(connect: Callable[..., Client], tmp_path: Path) -> Client:
    client = connect(omemo_store=tmp_path / "ours.json")
    client.send_presence()
    assert client.omemo.device_id
    return client


@pytest.mark.parametrize("namespace", [OLDMEMO_NS, TWOMEMO_NS])
def test_we_start_and_the_slixmpp_omemo_peer_answers(connect: Callable[..., Client],
                                                     tmp_path: Path, peer: Peer,
                                                     namespace: str) -> None:
    alice = ours(connect, tmp_path)
    assert [d.id for d in alice.omemo.devices(peer.jid)] == [peer.device_id]
    alice.omemo.send_message(peer.jid, "hi slixmpp", namespace=namespace)
    got = peer.expect("got")
    assert (got["got"], got["ns"], got["device"]) == (
        "hi slixmpp", namespace, alice.omemo.device_id)
    answer = alice.next_message(timeout=WAIT)
    assert (answer.body, answer.encryption, answer.sender_device) == (
        "echo: hi slixmpp", namespace, peer.device_id)
    alice.omemo.send_message(peer.jid, "and again", namespace=namespace)
    assert peer.expect("got")["got"] == "and again"
    assert alice.next_message(timeout=WAIT).body == "echo: and again"


@pytest.mark.parametrize("namespace", [OLDMEMO_NS, TWOMEMO_NS])
def test_the_slixmpp_omemo_peer_starts_and_we_answer(connect: Callable[..., Client],
                                                     tmp_path: Path, peer: Peer,
                                                     namespace: str) -> None:
    alice = ours(connect, tmp_path)
    peer.send(str(alice.account.bare), namespace, "hello simplexmpp")
    msg = alice.next_message(timeout=WAIT)
    assert (msg.body, msg.encryption, msg.sender_device, msg.decryption_error) == (
        "hello simplexmpp", namespace, peer.device_id, None)
    alice.omemo.send_message(peer.jid, "hello slixmpp", namespace=namespace)
    got = peer.expect("got")
    assert (got["got"], got["ns"]) == ("hello slixmpp", namespace)
    assert alice.next_message(timeout=WAIT).body == "echo: hello slixmpp"


def test_the_newest_namespace_is_chosen_for_a_peer_that_publishes_both(
        connect: Callable[..., Client], tmp_path: Path, peer: Peer) -> None:
    alice = ours(connect, tmp_path)
    [device] = alice.omemo.devices(peer.jid)
    assert device.namespaces == (TWOMEMO_NS, OLDMEMO_NS) and device.namespace == TWOMEMO_NS
    alice.omemo.send_message(peer.jid, "which one?")
    assert peer.expect("got")["ns"] == TWOMEMO_NS
