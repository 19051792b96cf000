"""What the library logs when a connection is lost and comes back (real Prosody, connections
cut by the fault proxy): one WARNING for the loss, one INFO when it is back, the failed attempts
in between at DEBUG only."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from simplexmpp import Client

from .conftest import Server
from .proxy import FaultProxy


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.port)
    yield fault_proxy
    fault_proxy.close()


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("simplexmpp") and r.levelno == level]


def test_a_lost_connection_logs_one_warning_and_one_info_however_many_attempts_fail(
        server: Server, proxy: FaultProxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="simplexmpp")
    client: Client = server.client(server.new_account(), port=proxy.port,
                                   reconnect_max_delay=0.2, stream_management=False)
    with client:
        caplog.clear()
        for outage in (1, 2):
            proxy.reject_next(4)   # the next four attempts fail
            assert proxy.cut_all() == 1
            assert proxy.rejected.wait(60)
            client.ping(timeout=60)   # waits for the session that comes back
            warnings = records(caplog, logging.WARNING)
            infos = [m for m in records(caplog, logging.INFO) if " back " in m]
            assert len(warnings) == outage, warnings
            assert warnings[-1].startswith(f"connection to {server.domain} lost ("), warnings
            assert len(infos) == outage, infos
            assert f"connection to {server.domain} back after" in infos[-1]
            assert "4 failed attempt(s) (new session)" in infos[-1]
        attempts = [m for m in records(caplog, logging.DEBUG) if m.startswith("reconnect attempt")]
        assert len(attempts) == 8, attempts
        # from the connection module's own logger, under the package logger
        assert {r.name for r in caplog.records if r.levelno == logging.WARNING or
                " back after " in r.getMessage()} == {"simplexmpp.connection"}


def test_a_resumed_stream_is_logged_as_resumed(server: Server, proxy: FaultProxy,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="simplexmpp")
    with server.client(server.new_account(), port=proxy.port, reconnect_max_delay=0.2) as client:
        caplog.clear()
        assert proxy.cut_all() == 1
        client.ping(timeout=60)
        assert len(records(caplog, logging.WARNING)) == 1
        infos = [m for m in records(caplog, logging.INFO) if " back " in m]
        assert len(infos) == 1 and infos[0].endswith("0 failed attempt(s) (stream resumed)"), infos
