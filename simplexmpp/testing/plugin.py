"""Test helpers and the pytest fixtures `xmpp_server` and `xmpp_client`.

The fixtures are registered by loading the plugin: `pytest_plugins = ["simplexmpp.testing"]` in
a `conftest.py` (the package re-exports them), or `-p simplexmpp.testing.plugin`."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..client import Client
from ..errors import XMPPError
from .server import FakeServer

__all__ = ["running_server", "ClientFactory", "DEFAULT_USERS"]

log = logging.getLogger(__name__)

DEFAULT_USERS: dict[str, str] = {"alice": "password", "bob": "password", "carol": "password"}
"""The accounts of the `xmpp_server` fixture and of
[`running_server()`][simplexmpp.testing.running_server]."""


@contextmanager
def running_server(users: Mapping[str, str] | None = None, **kwargs: Any) -> Iterator[FakeServer]:
    """A started [`FakeServer`][simplexmpp.testing.FakeServer] (accounts alice, bob and carol with
    password `"password"` unless `users` is given), stopped at the end of the block."""
    with FakeServer(users=dict(DEFAULT_USERS if users is None else users), **kwargs) as server:
        yield server


class ClientFactory:
    """Makes connected clients for a [`FakeServer`][simplexmpp.testing.FakeServer] and disconnects
    them all in [`close()`][simplexmpp.testing.ClientFactory.close] (the `xmpp_client` fixture is
    one of these)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.clients: list[Client] = []

    def __call__(self, user: str = "alice", **kwargs: Any) -> Client:
        """A connected client for `user`; keywords go to
        [`FakeServer.client()`][simplexmpp.testing.FakeServer.client]."""
        client = self.server.client(user, **kwargs)
        self.clients.append(client)
        client.connect()
        return client

    def close(self) -> None:
        """Disconnect every client made (errors while disconnecting are logged)."""
        while self.clients:
            client = self.clients.pop()
            try:
                client.disconnect(timeout=5)
            except XMPPError as exc:
                log.debug("disconnecting %s after the test: %s", client, exc)


try:
    import pytest
except ImportError:  # pragma: no cover - the fixtures need pytest; the server does not
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True
    __all__ += ["xmpp_server", "xmpp_client"]

if _HAVE_PYTEST:
    @pytest.fixture
    def xmpp_server() -> Iterator[FakeServer]:
        """A started FakeServer on `localhost` with accounts alice, bob and carol (password
        `"password"`), stopped after the test (which fails if the server had errors)."""
        with running_server() as server:
            yield server

    @pytest.fixture
    def xmpp_client(xmpp_server: FakeServer) -> Iterator[ClientFactory]:
        """A factory: `xmpp_client("alice")` returns a connected Client; every client it
        made is disconnected after the test."""
        factory = ClientFactory(xmpp_server)
        try:
            yield factory
        finally:
            factory.close()
