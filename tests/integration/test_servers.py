"""The repository's own server scripts (scripts/prosody-up, scripts/ejabberd-up): options the
fixtures do not use, and what happens when a start fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import EJABBERD_UP, PROSODY_UP, Server

needs_ejabberd = pytest.mark.skipif(os.environ.get("SIMPLEXMPP_SKIP_EJABBERD") == "1",
                                    reason="ejabberd variant skipped: SIMPLEXMPP_SKIP_EJABBERD=1")


def processes_of(directory: Path) -> list[str]:
    """The processes whose command line names ``directory`` (a server started from it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(directory) in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def start(up: Path, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(up), "--dir", str(directory), "--auto-ports", *extra],
                          capture_output=True, text=True, timeout=300)


def settings(stdout: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in
            (line.split("=", 1) for line in stdout.splitlines() if "=" in line)}


@pytest.mark.parametrize("up, level", [(PROSODY_UP, "warn"),
                                       pytest.param(EJABBERD_UP, "warning",
                                                    marks=needs_ejabberd)],
                         ids=["prosody", "ejabberd"])
def test_server_starts_and_serves_at_a_quiet_log_level(up: Path, level: str,
                                                       tmp_path: Path) -> None:
    # ejabberd-up used to wait for its "is started" line, which is logged at info only: at
    # "warning" it gave up after 60 s and failed, leaving the node running.
    directory = tmp_path / "server"
    proc = start(up, directory, "--log-level", level, "--users", "alice")
    try:
        assert proc.returncode == 0, proc.stderr
        server = Server(settings(proc.stdout), up)
        with server.client(f"alice@{server.domain}") as alice:
            assert alice.ping() >= 0
    finally:
        subprocess.run([str(up), "--stop", str(directory)], check=False, timeout=60)
    assert processes_of(directory) == []


@pytest.mark.parametrize("up", [PROSODY_UP, pytest.param(EJABBERD_UP, marks=needs_ejabberd)],
                         ids=["prosody", "ejabberd"])
def test_a_failed_start_leaves_no_server_running(up: Path, tmp_path: Path) -> None:
    # The server is up when the accounts are created; an account it refuses fails the start,
    # and then the server must be gone again (not left holding its ports).
    directory = tmp_path / "server"
    proc = start(up, directory, "--users", "alice not@valid")
    try:
        assert proc.returncode != 0
        assert "could not register not@valid" in proc.stderr
        assert processes_of(directory) == []
    finally:
        subprocess.run([str(up), "--stop", str(directory)], check=False, timeout=60)


def test_a_restarted_prosody_keeps_every_one_of_its_ports(tmp_path: Path) -> None:
    # Server.restart() (the MUC and reliability restart tests) passed every port but the
    # SOCKS5 proxy's, which then fell back to the fixed 7777: held by any other Prosody
    # restarted the same way (test runs side by side), and the start failed.
    import socket
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", 7777))
        squatter.listen()
    except OSError:
        pass  # someone else holds it already: the case this test is about
    directory = tmp_path / "server"
    try:
        proc = start(PROSODY_UP, directory, "--users", "alice")
        assert proc.returncode == 0, proc.stderr
        server = Server(settings(proc.stdout), PROSODY_UP)
        assert server.env["XMPP_PROXY_PORT"] != "7777"
        server.restart()
        config = (directory / "prosody.cfg.lua").read_text(encoding="utf-8")
        assert f"proxy65_ports = {{ {server.env['XMPP_PROXY_PORT']} }}" in config
        with server.client(f"alice@{server.domain}") as alice:
            assert alice.ping() >= 0
    finally:
        squatter.close()
        subprocess.run([str(PROSODY_UP), "--stop", str(directory)], check=False, timeout=60)
    assert processes_of(directory) == []
