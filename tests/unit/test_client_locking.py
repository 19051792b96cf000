"""Client state the I/O thread changes is read under the client lock by other threads."""

from __future__ import annotations

from simplexmpp import Client


class _StreamCheckingTheLock:
    """Stands in for the ClientStream: its XEP-0198 queue may only be read under the lock,
    since the I/O thread trims it as acks arrive."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.reads_without_lock = 0

    @property
    def unacked(self) -> list[object]:
        if not self.client._lock._is_owned():  # type: ignore[attr-defined]
            self.reads_without_lock += 1
        return []


def test_unacked_ids_reads_the_ack_queue_under_the_lock() -> None:
    client = Client("alice@localhost", "secret")
    stream = _StreamCheckingTheLock(client)
    client._conn.stream = client._core.stream = stream  # type: ignore[assignment]
    assert client._conn.unacked_ids() == []
    assert stream.reads_without_lock == 0
