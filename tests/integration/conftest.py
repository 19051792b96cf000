"""Integration fixtures: a real Prosody on loopback, started once per session."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client

ROOT = Path(__file__).resolve().parents[2]
PROSODY_UP = Path(os.environ.get("SIMPLEXMPP_PROSODY_UP",
                                 ROOT.parent / "shared" / "xmpp-server" / "prosody-up"))


class Server:
    """Settings of one running prosody-up instance (the KEY=VALUE lines it prints)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.domain = env["XMPP_DOMAIN"]
        self.host = env["XMPP_HOST"]
        self.port = int(env["XMPP_PORT"])
        self.tls_port = int(env["XMPP_TLS_PORT"])
        self.component_port = int(env["XMPP_COMPONENT_PORT"])
        self.ca = env["XMPP_CA"]
        self.state = env["XMPP_STATE"]
        self.password = env["XMPP_PASSWORD"]
        self.muc = env["XMPP_MUC"]
        self.upload = env["XMPP_UPLOAD"]
        self.http_port = int(env["XMPP_HTTP_PORT"])
        self.https_port = int(env["XMPP_HTTPS_PORT"])
        self.component = env["XMPP_COMPONENT"]
        self.component_secret = env["XMPP_COMPONENT_SECRET"]
        self._names = itertools.count(1)

    def register(self, user: str, password: str | None = None) -> str:
        subprocess.run([str(PROSODY_UP), "--register", self.state, user,
                        password or self.password], check=True, timeout=60)
        return f"{user}@{self.domain}"

    def new_account(self, prefix: str = "u") -> str:
        """A fresh account nobody else uses (clean roster, no offline messages)."""
        return self.register(f"{prefix}{os.getpid()}x{next(self._names)}")

    def client(self, jid: str, **kwargs: Any) -> Client:
        options: dict[str, Any] = dict(host=self.host, port=self.port, ca_file=self.ca,
                                       timeout=15)
        options.update(kwargs)
        password = options.pop("password", self.password)
        return Client(jid, password, **options)


def start_server(tmp: Path, *extra: str) -> Iterator[Server]:
    if not PROSODY_UP.exists():
        pytest.fail(f"prosody-up not found at {PROSODY_UP}; the shared/ folder must sit beside "
                    "the repository (or set SIMPLEXMPP_PROSODY_UP)")
    last = None
    for _ in range(3):  # --auto-ports has a small race; retry
        proc = subprocess.run([str(PROSODY_UP), "--dir", str(tmp), "--auto-ports", *extra],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            break
        last = proc.stderr
    else:
        pytest.fail(f"prosody-up failed: {last}")
    env = {k: v.strip('"') for k, v in
           (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)}
    try:
        yield Server(env)
    finally:
        subprocess.run([str(PROSODY_UP), "--stop", str(tmp)], check=False, timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The main Prosody: SCRAM-SHA-1 (+PLAIN over TLS), TLS 1.2+, instant MUC rooms off."""
    yield from start_server(tmp_path_factory.mktemp("prosody"))


@pytest.fixture(scope="session")
def server_sha256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second Prosody offering SCRAM-SHA-256 and -PLUS (TLS 1.2, so tls-unique works)."""
    yield from start_server(tmp_path_factory.mktemp("prosody256"), "--password-hash",
                            "SHA-256", "--tls-protocol", "tlsv1_2")


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Client]]:
    """connect(jid=None, **kwargs) -> a connected Client, disconnected after the test."""
    clients: list[Client] = []

    def _connect(jid: str | None = None, **kwargs: Any) -> Client:
        client = server.client(jid or server.new_account(), **kwargs)
        client.connect()
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        try:
            client.disconnect(timeout=5)
        except Exception:
            pass
