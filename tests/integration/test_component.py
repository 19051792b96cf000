"""XEP-0114 external component against the real Prosody (component ``echo.localhost``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simplexmpp import Client, Component, Iq, Message, Presence, errors

from .conftest import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_NS = "urn:example:component"


def component_threads(domain: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("simplexmpp-")
            and t.name.endswith(domain)]


def make_component(server: Server, **kwargs: Any) -> Component:
    options: dict[str, Any] = dict(timeout=15)
    options.update(kwargs)
    jid = options.pop("jid", server.component)
    secret = options.pop("secret", server.component_secret)
    return Component(jid, secret, server.host, server.component_port, **options)


@pytest.fixture
def component(server: Server) -> Iterator[Component]:
    """The connected echo.localhost component (only one connection may serve it at a time)."""
    comp = make_component(server).connect()
    yield comp
    comp.disconnect(timeout=5)
    assert component_threads(server.component) == []


@pytest.fixture
def user(connect: Callable[..., Client]) -> Client:
    return connect()


def test_handshake_connects_and_disconnect_leaves_no_threads(server: Server) -> None:
    comp = make_component(server)
    called = threading.Event()
    comp.on("connected", lambda jid: called.set())  # so the dispatcher thread starts too
    with comp:
        assert comp.is_connected
        assert str(comp.jid) == server.component
        assert comp.mechanism == "handshake"
        assert called.wait(10)
        assert len(component_threads(server.component)) == 2
        assert comp.ping() >= 0   # our own domain: a round trip through the server
    assert comp.state == "disconnected"
    assert component_threads(server.component) == []


def test_wrong_secret_is_an_authentication_error(server: Server) -> None:
    comp = make_component(server, secret="not-the-secret")
    with pytest.raises(errors.AuthenticationError) as info:
        comp.connect()
    assert info.value.condition == "not-authorized"
    assert server.component in str(info.value)
    assert not comp.is_connected
    assert component_threads(server.component) == []


def test_unknown_component_domain_is_host_unknown(server: Server) -> None:
    comp = make_component(server, jid="nothere.localhost")
    with pytest.raises(errors.StreamError) as info:
        comp.connect()
    assert info.value.condition == "host-unknown"
    assert "nothere.localhost" in str(info.value)
    assert component_threads("nothere.localhost") == []


def test_second_connection_for_the_same_component_is_refused(
        server: Server, component: Component) -> None:
    with pytest.raises(errors.StreamError) as info:
        make_component(server).connect()
    assert info.value.condition == "conflict"
    assert component.ping() >= 0   # the first connection is unaffected


@pytest.mark.parametrize("local", [None, "bob"])
def test_message_from_client_reaches_component_and_echo_comes_back(
        server: Server, component: Component, user: Client, local: str | None) -> None:
    address = f"{local}@{server.component}" if local else server.component
    sent_id = user.send_message(address, "hello component")
    msg = component.next_message(timeout=10)
    assert msg.body == "hello component" and msg.id == sent_id
    assert msg.from_ == user.jid
    assert str(msg.to) == address
    assert msg.xml.tag == "{jabber:client}message"
    reply_id = component.send_message(msg.from_, "echo: " + (msg.body or ""), from_=msg.to)
    echo = user.next_message(timeout=10)
    assert echo.body == "echo: hello component" and echo.id == reply_id
    assert str(echo.from_) == address
    assert echo.to == user.jid


def test_message_without_from_goes_from_the_component_domain(
        server: Server, component: Component, user: Client) -> None:
    assert user.jid is not None
    component.send(Message(to=user.jid, body="plain", type="chat"))
    got = user.next_message(timeout=10)
    assert str(got.from_) == server.component and got.body == "plain"


def test_message_event_callback_runs_on_the_dispatcher(
        server: Server, component: Component, user: Client) -> None:
    seen: list[tuple[Message, str]] = []
    done = threading.Event()

    def on_message(msg: Message) -> None:
        seen.append((msg, threading.current_thread().name))
        done.set()

    handle = component.on("message", on_message)
    user.send_message(server.component, "to the callback")
    assert done.wait(10)
    component.off(handle)
    msg, thread = seen[0]
    assert msg.body == "to the callback"
    assert thread == f"simplexmpp-dispatch-{server.component}"


def test_iq_from_client_is_answered_by_a_registered_handler(
        server: Server, component: Component, user: Client) -> None:
    def answer(iq: Iq) -> ET.Element:
        payload = ET.Element(f"{{{EXAMPLE_NS}}}query")
        ET.SubElement(payload, f"{{{EXAMPLE_NS}}}asked").text = str(iq.to)
        ET.SubElement(payload, f"{{{EXAMPLE_NS}}}by").text = str(iq.from_)
        return payload

    def refuse(iq: Iq) -> None:
        raise errors.IqError("not-allowed", "cancel", "no writes here")

    component.register_iq_handler("get", f"{{{EXAMPLE_NS}}}query", answer)
    component.register_iq_handler("set", f"{{{EXAMPLE_NS}}}query", refuse)
    for address in (server.component, f"bob@{server.component}"):
        result = user.iq(Iq.get(address, ET.Element(f"{{{EXAMPLE_NS}}}query")))
        # RFC 6120 §8.1.2.1: the answer comes from the address asked (the client checks it).
        assert str(result.from_) == address
        assert result.payload is not None
        assert result.payload.findtext(f"{{{EXAMPLE_NS}}}asked") == address
        assert result.payload.findtext(f"{{{EXAMPLE_NS}}}by") == str(user.jid)
    with pytest.raises(errors.IqError) as refused:
        user.iq(Iq.set(f"bob@{server.component}", ET.Element(f"{{{EXAMPLE_NS}}}query")))
    assert refused.value.condition == "not-allowed" and refused.value.text == "no writes here"
    with pytest.raises(errors.IqError) as unknown:
        user.iq(Iq.get(server.component, ET.Element(f"{{{EXAMPLE_NS}}}other")))
    assert unknown.value.condition == "service-unavailable"


def test_client_pings_the_component(server: Server, component: Component,
                                    user: Client) -> None:
    assert user.ping(server.component) >= 0
    assert user.ping(f"anyone@{server.component}/r") >= 0


def test_component_pings_the_users_full_jid(server: Server, component: Component,
                                            user: Client) -> None:
    assert user.jid is not None and not user.jid.is_bare
    assert component.ping(user.jid) >= 0
    future = component.send_iq(Iq.get(user.jid, ET.Element("{urn:xmpp:ping}ping")))
    result = future.result(timeout=10)
    assert result.type == "result" and result.from_ == user.jid
    with pytest.raises(errors.IqError):   # the client answers unknown queries with an error
        component.iq(Iq.get(user.jid, ET.Element(f"{{{EXAMPLE_NS}}}query")))


def test_handler_may_block_on_the_component(server: Server, component: Component,
                                            user: Client) -> None:
    # The handler runs on the dispatcher thread, so it may make a blocking call itself.
    def whoami(iq: Iq) -> ET.Element:
        assert iq.from_ is not None
        component.ping(iq.from_, timeout=10)
        return ET.Element(f"{{{EXAMPLE_NS}}}pinged-back")

    component.register_iq_handler("get", f"{{{EXAMPLE_NS}}}whoami", whoami)
    result = user.iq(Iq.get(server.component, ET.Element(f"{{{EXAMPLE_NS}}}whoami")))
    assert result.payload is not None and result.payload.tag == f"{{{EXAMPLE_NS}}}pinged-back"


def test_disco_info_of_the_component(server: Server, component: Component,
                                     user: Client) -> None:
    info = user.disco.info(server.component)
    assert info.has_identity("component", "generic")
    assert "urn:xmpp:ping" in info.features
    assert "http://jabber.org/protocol/disco#info" in info.features
    # and the component can ask the server in turn
    assert component.disco.info(server.domain).has_identity("server")


def test_presence_both_ways(server: Server, component: Component, user: Client) -> None:
    got = threading.Event()
    presences: list[Presence] = []

    def on_presence(presence: Presence) -> None:
        presences.append(presence)
        got.set()

    component.on("presence", on_presence)
    user.send_presence(status="hi component", to=f"bob@{server.component}")
    assert got.wait(10)
    assert presences[0].from_ == user.jid and presences[0].status == "hi component"
    assert str(presences[0].to) == f"bob@{server.component}"

    seen = threading.Event()
    user.on("presence", lambda p: seen.set() if str(p.from_) == f"bob@{server.component}"
            else None)
    assert user.jid is not None
    component.send_presence(status="here", to=user.jid, from_=f"bob@{server.component}")
    assert seen.wait(10)
    assert user.presence_of(f"bob@{server.component}")


def test_component_cannot_send_from_another_domain(server: Server,
                                                   component: Component) -> None:
    with pytest.raises(errors.InvalidStanzaError):
        component.send_message("alice@localhost", "spoof", from_="alice@localhost")
    with pytest.raises(errors.InvalidStanzaError):
        component.send(Message(to="alice@localhost", from_="localhost", body="spoof"))
    assert component.ping() >= 0   # the stream is still fine


def test_disconnect_from_a_callback_does_not_hang(server: Server, user: Client) -> None:
    comp = make_component(server).connect()
    finished = threading.Event()
    errors_seen: list[BaseException] = []

    def on_message(msg: Message) -> None:
        try:
            comp.disconnect(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors_seen.append(exc)
        finished.set()

    comp.on("message", on_message)
    user.send_message(server.component, "stop now")
    assert finished.wait(15)
    assert errors_seen == []
    assert not comp.is_connected
    comp.disconnect(timeout=5)   # from the test thread: joins the dispatcher
    assert component_threads(server.component) == []


class DetachingProxy:
    """Loopback TCP proxy that can drop the component's side of a connection while keeping
    the server's side open, as when the network dies and the server has not noticed yet."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="test-proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            up.settimeout(None)
            with self.lock:
                self.pairs.append((down, up))
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True,
                                 name="test-proxy-pump").start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        # End of data from src: let dst see it (unless the test detached that side).
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def detach_component_side(self) -> socket.socket:
        """Close the component's side of the first connection; return the server's side,
        left open and silent."""
        with self.lock:
            down, up = self.pairs.pop(0)
        # Stop forwarding into `up` first: dup() it away so the pump writing to it fails.
        kept = up.dup()
        up.close()
        down.shutdown(socket.SHUT_RDWR)
        down.close()
        return kept

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for down, up in self.pairs:
                for sock in (down, up):
                    try:
                        sock.close()
                    except OSError:
                        pass


def test_reconnect_waits_out_the_servers_stale_connection(server: Server) -> None:
    proxy = DetachingProxy(server.component_port)
    comp = Component(server.component, server.component_secret, "127.0.0.1", proxy.port,
                     timeout=15, reconnect_max_delay=0.5)
    connected = threading.Semaphore(0)
    refused = threading.Event()

    def on_reconnecting(error: BaseException) -> None:
        if "conflict" in str(error):
            refused.set()

    comp.on("connected", lambda jid: connected.release())
    comp.on("reconnecting", on_reconnecting)
    stale: socket.socket | None = None
    try:
        comp.connect()
        assert connected.acquire(timeout=10)
        stale = proxy.detach_component_side()
        # The server still holds the old connection: the handshake is refused (conflict),
        # which must not end the component the way a conflict on a live stream would.
        assert refused.wait(15)
        assert comp.state == "reconnecting"
        # Now the server notices (shutdown, not just close: a pump thread may still be in
        # recv() on that connection), and a retry gets through.
        stale.shutdown(socket.SHUT_RDWR)
        stale.close()
        stale = None
        assert connected.acquire(timeout=15)
        assert comp.is_connected and comp.ping() >= 0
    finally:
        if stale is not None:
            stale.shutdown(socket.SHUT_RDWR)
            stale.close()
        comp.disconnect(timeout=5)
        proxy.close()
    assert component_threads(server.component) == []


def test_sample_echo_component(server: Server, user: Client) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env.update(XMPP_HOST=server.host, XMPP_COMPONENT=server.component,
               XMPP_COMPONENT_SECRET=server.component_secret,
               XMPP_COMPONENT_PORT=str(server.component_port))
    proc = subprocess.Popen([sys.executable, str(ROOT / "samples" / "simple_component.py"),
                             "--count", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready" in line, line + (proc.stderr.read() if proc.stderr else "")
        assert user.ping(server.component) >= 0   # pings are answered
        for n, address in enumerate((server.component, f"someone@{server.component}")):
            user.send_message(address, f"echo me {n}")
            echo = user.next_message(timeout=15)
            assert echo.body == f"echo me {n}" and str(echo.from_) == address
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "answered 2 message(s)" in out
