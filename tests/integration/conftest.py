"""Integration fixtures: a real Prosody on loopback, started once per session.

`server` is the Prosody (scripts/prosody-up). `ejabberd` is a second server (scripts/ejabberd-up), and
`any_server` / `connect_any` run a test once against each of them (ids `[prosody]`,
`[ejabberd]`). SIMPLEXMPP_SKIP_EJABBERD=1 skips the ejabberd variants; otherwise a failure to
install or start ejabberd fails those tests.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client

ROOT = Path(__file__).resolve().parents[2]
PROSODY_UP = Path(os.environ.get("SIMPLEXMPP_PROSODY_UP", ROOT / "scripts" / "prosody-up"))
EJABBERD_UP = Path(os.environ.get("SIMPLEXMPP_EJABBERD_UP", ROOT / "scripts" / "ejabberd-up"))


class Server:
    """Settings of one running prosody-up or ejabberd-up instance (the KEY=VALUE lines it
    prints). `kind` is "prosody" or "ejabberd"; `up` the script that started it."""

    def __init__(self, env: dict[str, str], up: Path = PROSODY_UP) -> None:
        self.env = env
        self.up = up
        self.kind = env.get("XMPP_SERVER", "prosody")
        self.api_url = env.get("XMPP_API_URL")  # ejabberd: mod_http_api, loopback only
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

    def __repr__(self) -> str:
        return f"<Server {self.kind} {self.host}:{self.port}>"

    def restart(self) -> None:
        """Stop this Prosody and start it again from its directory on every one of its own
        ports (accounts, persistent rooms and certificate kept). The SOCKS5 proxy's port is
        passed too: left out, it fell back to the fixed 7777, which any other Prosody
        started the same way may hold (several test runs at once), and the start failed."""
        if self.kind != "prosody":
            raise NotImplementedError(f"restart() is for prosody-up servers, not {self.kind}")
        subprocess.run([str(self.up), "--stop", self.state], check=True, timeout=60)
        ports = {"--c2s-port": self.port, "--tls-port": self.tls_port,
                 "--component-port": self.component_port, "--http-port": self.http_port,
                 "--https-port": self.https_port, "--proxy-port": self.env["XMPP_PROXY_PORT"]}
        args = [str(self.up), "--dir", self.state]
        for option, port in ports.items():
            args += [option, str(port)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{self.up.name} could not start again: {out.stderr}"

    def register(self, user: str, password: str | None = None) -> str:
        password = password or self.password
        if self.kind == "ejabberd" and self.api_url:
            # ejabberdctl starts an Erlang VM per call (~0.5 s); the HTTP API takes milliseconds
            body = json.dumps({"user": user, "host": self.domain, "password": password})
            request = urllib.request.Request(f"{self.api_url}/register", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=30).close()
            except urllib.error.HTTPError as error:
                if error.code != 409:  # 409: already registered, like --register
                    raise RuntimeError(f"ejabberd could not register {user}: "
                                       f"{error.read()!r}") from error
        else:
            subprocess.run([str(self.up), "--register", self.state, user, password],
                           check=True, timeout=60)
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


def start_server(tmp: Path, *extra: str, up: Path = PROSODY_UP) -> Iterator[Server]:
    if not up.exists():
        where = ("it is part of the repository (scripts/prosody-up); or set "
                 "SIMPLEXMPP_PROSODY_UP" if up == PROSODY_UP else "set SIMPLEXMPP_EJABBERD_UP")
        pytest.fail(f"{up.name} not found at {up}; {where}")
    last = None
    for _ in range(3):  # --auto-ports has a small race; retry
        proc = subprocess.run([str(up), "--dir", str(tmp), "--auto-ports", *extra],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            break
        last = proc.stderr
    else:
        pytest.fail(f"{up.name} failed: {last}")
    env = {k: v.strip('"') for k, v in
           (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)}
    try:
        yield Server(env, up)
    finally:
        subprocess.run([str(up), "--stop", str(tmp)], check=False, timeout=60)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The main Prosody: SCRAM-SHA-1 (+PLAIN over TLS), TLS 1.2+, instant MUC rooms off."""
    yield from start_server(tmp_path_factory.mktemp("prosody"))


@pytest.fixture(scope="session")
def server_sha256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second Prosody offering SCRAM-SHA-256 and -PLUS (TLS 1.2, so tls-unique works)."""
    yield from start_server(tmp_path_factory.mktemp("prosody256"), "--password-hash",
                            "SHA-256", "--tls-protocol", "tlsv1_2")


@pytest.fixture(scope="session")
def server_sasl2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Prosody with SASL2, Bind2, FAST and inline stream management (prosody-up --sasl2),
    SCRAM-SHA-256 keys (SCRAM over SASL2 needs them), TLS 1.3: FAST offers HT-SHA-256-EXPR and
    -NONE. FAST only on the STARTTLS port (`port`), as prosody-up documents. Every FAST login
    rotates the token (--fast-rotate-after 0), so rotation is exercised too."""
    yield from start_server(tmp_path_factory.mktemp("prosody-sasl2"), "--sasl2",
                            "--password-hash", "SHA-256", "--fast-rotate-after", "0")


@pytest.fixture(scope="session")
def server_sasl2_tls12(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`server_sasl2` under TLS 1.2: SCRAM-SHA-256-PLUS and HT-SHA-256-UNIQ (tls-unique)."""
    yield from start_server(tmp_path_factory.mktemp("prosody-sasl2-tls12"), "--sasl2",
                            "--password-hash", "SHA-256", "--tls-protocol", "tlsv1_2")


@pytest.fixture(scope="session")
def ejabberd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A throwaway ejabberd (scripts/ejabberd-up; Debian package, installed on first use)."""
    if os.environ.get("SIMPLEXMPP_SKIP_EJABBERD") == "1":
        pytest.skip("ejabberd variant skipped: SIMPLEXMPP_SKIP_EJABBERD=1")
    yield from start_server(tmp_path_factory.mktemp("ejabberd"), up=EJABBERD_UP)


@pytest.fixture(params=["prosody", "ejabberd"])
def any_server(request: pytest.FixtureRequest) -> Server:
    """Each real server in turn: the Prosody of `server`, then the `ejabberd` one."""
    server: Server = request.getfixturevalue("server" if request.param == "prosody"
                                             else "ejabberd")
    return server


def _connector(server: Server) -> Iterator[Callable[..., Client]]:
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


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Client]]:
    """connect(jid=None, **kwargs) -> a connected Client, disconnected after the test."""
    yield from _connector(server)


@pytest.fixture
def connect_any(any_server: Server) -> Iterator[Callable[..., Client]]:
    """Like `connect`, on `any_server` (so the test runs against Prosody and ejabberd)."""
    yield from _connector(any_server)
