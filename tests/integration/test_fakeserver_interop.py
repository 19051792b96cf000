"""The sans-IO ServerStream (through simplexmpp.testing's FakeServer) negotiates with a client
that is not simplexmpp: go-sendxmpp (the go-xmpp library) does STARTTLS, SASL and binding with
it and delivers a message to a simplexmpp client."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from simplexmpp.testing import running_server

GO_SENDXMPP = shutil.which("go-sendxmpp")
pytestmark = pytest.mark.skipif(GO_SENDXMPP is None, reason="go-sendxmpp is not installed")


def _go_sendxmpp(port: int, password: str, to: str, text: str) -> subprocess.CompletedProcess[str]:
    assert GO_SENDXMPP is not None
    # -n: the FakeServer's throwaway certificate is self-signed; loopback only.
    return subprocess.run([GO_SENDXMPP, "-u", "alice@localhost", "-p", password,
                           "-j", f"127.0.0.1:{port}", "-n", "--timeout", "20", to],
                          input=text, capture_output=True, text=True, timeout=60)


def test_go_sendxmpp_logs_in_over_starttls_and_its_message_arrives() -> None:
    with running_server(tls=True) as server:
        with server.client("bob") as bob:
            bob.send_presence()
            done = _go_sendxmpp(server.port, "password", "bob@localhost", "hello from go")
            assert done.returncode == 0, done.stdout + done.stderr
            message = bob.next_message(timeout=10)
            assert message.body == "hello from go"
            assert message.from_.bare == "alice@localhost"
            assert message.from_.resource   # the full JID the ServerStream bound
        assert server.stream_errors == []


def test_go_sendxmpp_with_a_wrong_password_is_refused() -> None:
    with running_server(tls=True) as server:
        with server.client("bob") as bob:
            done = _go_sendxmpp(server.port, "wrong", "bob@localhost", "never")
            assert done.returncode != 0
            assert "not-authorized" in (done.stdout + done.stderr)
            assert server.sessions("alice") == []
