"""The RFC 9266 tls-exporter channel binding (simplexmpp._tlsexporter) against OpenSSL's own
server: the bytes our ctypes path exports are the ones `openssl s_server -keymatexport` prints."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from simplexmpp.transport import channel_bindings


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_exporter_matches_openssl(tmp_path: Path) -> None:
    """RFC 9266 tls-exporter from our ctypes path equals what OpenSSL's own server exports."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key",
         str(key), "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32",
         "-naccept", "1", "-tls1_3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        for _ in range(100):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                if server.poll() is not None:
                    pytest.fail(f"openssl s_server ended: {server.stdout.read()}")  # type: ignore[union-attr]
                threading.Event().wait(0.05)
        else:
            pytest.fail("openssl s_server did not listen")
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            ours = channel_bindings(tls).get("tls-exporter")
            tls.sendall(b"Q\n")
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert ours is not None and len(ours) == 32
    match = re.search(r"Keying material: ([0-9A-F]+)", output)
    assert match, output
    assert ours.hex().upper() == match.group(1)
