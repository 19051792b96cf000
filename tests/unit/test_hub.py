"""transport.Hub: one thread driving many ready connections, against the in-process
FakeServer (the real-server tests are in tests/integration/test_pool.py and
test_reliability.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from simplexmpp import Client, errors
from simplexmpp.testing import running_server
from simplexmpp.transport import Hub


def wait_until(predicate: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def thread_names(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_hub_takes_over_ready_connections_and_ends_with_the_last() -> None:
    users = {f"u{i}": "password" for i in range(6)}
    hub = Hub("test-hub")
    with running_server(users=users) as server:
        clients: list[Client] = []
        for name in users:
            clients.append(server.client(name, hub=hub).connect())
        # Each client negotiated on its own I/O thread, handed over, and that thread ended.
        assert wait_until(lambda: len(hub) == 6 and not thread_names("simplexmpp-io-u"))
        assert thread_names("test-hub") == ["test-hub"]
        server.make_contacts("u0", "u1")
        clients[1].send_presence()
        for sender in clients[2:]:
            sender.send_message(clients[1].account, f"from {sender.account.local}")
        got = sorted((clients[1].next_message(timeout=5).body or "") for _ in range(4))
        assert got == [f"from u{i}" for i in range(2, 6)]
        # IQ round trips resolve their futures from the hub's thread.
        assert clients[0].get_roster(timeout=5).get(clients[1].account) is not None
        assert clients[3].ping(timeout=5) >= 0
        for client in clients[:5]:
            client.disconnect(timeout=5)
            assert client.state == "disconnected"
        assert wait_until(lambda: len(hub) == 1)
        clients[5].send_message(clients[1].account, "nobody listens")  # still served
        clients[5].disconnect(timeout=5)
    assert wait_until(lambda: not thread_names("test-hub")), "the hub thread outlived its work"


def test_server_going_away_ends_every_hub_connection_with_an_error() -> None:
    hub = Hub("test-hub")
    ended: list[BaseException | None] = []
    with running_server() as server:
        clients = []
        for name in ("alice", "bob"):
            client = server.client(name, hub=hub)  # reconnect=False
            client.on("disconnected", ended.append)
            clients.append(client.connect())
        assert wait_until(lambda: len(hub) == 2)
        server.stop()
        for client in clients:
            with pytest.raises(errors.DisconnectedError):
                for _ in client.messages(timeout=5):
                    pass
                client.send_message("carol@localhost", "too late", timeout=1)
        assert wait_until(lambda: len(ended) == 2)
        assert all(isinstance(exc, errors.XMPPError) for exc in ended), ended
    assert wait_until(lambda: len(hub) == 0 and not thread_names("test-hub"))


class _TimedConn:
    """A stand-in for a client on the hub: its timers are all it has (issue 18: the hub keeps
    the connections' due times in a heap)."""

    def __init__(self, delays: list[float | None]) -> None:
        self.peer, sock = socket.socketpair()
        self.wire = _FakeWire(sock)
        self.delays = delays      # what each step returns as its sleep; None: release
        self.steps: list[tuple[float, bool]] = []
        self.ended = threading.Event()

    def hub_step(self, readable: bool) -> tuple[float, bool] | None:
        if readable:
            self.wire.sock.recv(100)
        self.steps.append((time.monotonic(), readable))
        delay = self.delays[min(len(self.steps), len(self.delays)) - 1]
        return None if delay is None else (delay, False)

    def hub_ended(self, exc: BaseException | None) -> None:
        self.wire.sock.close()
        self.peer.close()
        self.ended.set()


class _FakeWire:
    blocked = False

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self._hub = self._hub_conn = None

    def release_own_wakeup(self) -> None:
        pass


def test_hub_steps_each_connection_when_its_own_timer_is_due() -> None:
    hub = Hub("test-hub-timers")
    # Forty connections with timers 20-400 ms apart: each is stepped on adoption, then not
    # before its own due time, then released (None).
    conns = [_TimedConn([0.02 + 0.01 * i, None]) for i in range(40)]
    # One waits long, then its socket becomes readable and the step after the read asks for
    # 50 ms: the earlier due time must be honoured, not the old, later one.
    moved = _TimedConn([30.0, 0.05, None])
    for conn in conns + [moved]:
        hub.adopt(conn, conn.wire)  # type: ignore[arg-type]
    assert wait_until(lambda: len(moved.steps) == 1)
    moved.peer.send(b"x")
    for conn in conns + [moved]:
        assert conn.ended.wait(10), f"a timer was lost: {conn.steps}"
    for i, conn in enumerate(conns):
        (first, _), (second, readable) = conn.steps
        assert not readable and second - first >= 0.02 + 0.01 * i - 0.001, conn.steps
    assert [readable for _, readable in moved.steps] == [False, True, False]
    assert moved.steps[2][0] - moved.steps[1][0] >= 0.05 - 0.001
    assert wait_until(lambda: not thread_names("test-hub-timers"))


def test_pool_uses_only_public_names_of_clients_and_hub() -> None:
    # Issue 15: the hub's protocol is public (transport.HubConnection) and a Pool gives each
    # account its hub with Client(..., hub=): pool.py reaches into nothing's privates.
    import ast
    from pathlib import Path

    import simplexmpp.pool

    assert simplexmpp.pool.__file__ is not None
    tree = ast.parse(Path(simplexmpp.pool.__file__).read_text(encoding="utf-8"))
    private = [f"line {node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr.startswith("_")
               and not node.attr.endswith("__")
               and not (isinstance(node.value, ast.Name) and node.value.id == "self")]
    assert private == []


def test_a_client_given_a_hub_is_driven_by_it() -> None:
    hub = Hub("test-hub-kwarg")
    with running_server() as server:
        client = server.client("alice", hub=hub).connect()
        try:
            assert wait_until(lambda: len(hub) == 1)
            assert client.ping(timeout=5) >= 0
        finally:
            client.disconnect(timeout=5)
    assert wait_until(lambda: len(hub) == 0 and not thread_names("test-hub-kwarg"))
