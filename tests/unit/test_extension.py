"""The public extension interface (issue 15, first step): no built-in extension reaches into
the client's privates, and Extension/Client.extension behave as documented."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import simplexmpp
from simplexmpp import Client, Extension, Message, Session
from simplexmpp.testing import ClientFactory, FakeServer
from simplexmpp.testing import xmpp_client, xmpp_server  # noqa: F401  (the fixtures)

EXT = Path(simplexmpp.__file__).parent / "ext"

#: Names that hold a client in simplexmpp/ext: a variable ``client`` and the attributes
#: ``.client`` / ``._client`` of an extension, a room, …
_CLIENT_NAMES = {"client"}
_CLIENT_ATTRIBUTES = {"client", "_client"}


def _is_client(node: ast.AST, client_self: bool) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _CLIENT_NAMES or (client_self and node.id == "self")
    if isinstance(node, ast.Attribute):
        return node.attr in _CLIENT_ATTRIBUTES
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return client_self and node.func.id == "super"
    return False


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_client_accesses(source: str, filename: str) -> list[str]:
    """Every ``<client>._name`` (and getattr/setattr of such a name) in ``source``; inside a
    Client subclass ``self`` and ``super()`` count as the client too."""
    found: list[str] = []

    def visit(node: ast.AST, client_self: bool) -> None:
        if isinstance(node, ast.ClassDef):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                     for b in node.bases}
            client_self = bool(bases & {"Client", "Component"})
        if isinstance(node, ast.Attribute) and _private(node.attr) and \
                _is_client(node.value, client_self):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr", "delattr") and \
                len(node.args) >= 2 and _is_client(node.args[0], client_self) and \
                isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and _private(node.args[1].value):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, client_self)

    visit(ast.parse(source, filename), False)
    return found


def test_the_scan_finds_private_client_accesses() -> None:
    # The check itself can fail: these are the shapes the built-ins used before issue 15.
    source = ("class X:\n"
              "    def f(self, client):\n"
              "        self._client._on_early('connected', None)\n"
              "        client._password = 'x'\n"
              "        t = self._client._timeout(None)\n"
              "        getattr(self.client, '_sessions')\n"
              "        self._client.timeout, client.__class__, self._private\n"
              "class P(Client):\n"
              "    def g(self):\n"
              "        return self._stream, super()._new_stream()\n")
    found = private_client_accesses(source, "x.py")
    assert [line.split(": ", 1)[1] for line in found] == [
        "self._client._on_early", "client._password", "self._client._timeout",
        "getattr(self.client, '_sessions')", "self._stream", "super()._new_stream"]


def test_no_builtin_extension_touches_a_private_attribute_of_the_client() -> None:
    modules = sorted(EXT.glob("*.py"))
    assert len(modules) > 15
    found = [hit for path in modules
             for hit in private_client_accesses(path.read_text(encoding="utf-8"),
                                                f"simplexmpp/ext/{path.name}")]
    assert found == []


def client_private_names() -> set[str]:
    """The private names a Client has: its private methods and the ``self._x`` it sets."""
    source = (Path(simplexmpp.__file__).parent / "client.py").read_text(encoding="utf-8")
    cls = next(node for node in ast.parse(source).body
               if isinstance(node, ast.ClassDef) and node.name == "Client")
    names = {node.name for node in cls.body
             if isinstance(node, ast.FunctionDef) and _private(node.name)}
    names.update(node.attr for node in ast.walk(cls)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id == "self" and _private(node.attr))
    return names


def uses_of_client_private_names(source: str, filename: str, names: set[str]) -> list[str]:
    """Every ``<anything but self/cls>._name`` where ``_name`` is private to the Client:
    catches a client reached under another name (``c = self.client; c._conn``), which
    private_client_accesses cannot see."""
    return [f"{filename}:{node.lineno}: {ast.unparse(node)}"
            for node in ast.walk(ast.parse(source, filename))
            if isinstance(node, ast.Attribute) and node.attr in names
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]


def test_no_builtin_extension_uses_a_client_private_name_under_any_alias() -> None:
    names = client_private_names()
    assert {"_conn", "_core", "_router", "_inbox", "_password"} <= names
    # the check itself can fail
    assert uses_of_client_private_names("c = self.client\nc._conn.send_text('x')\n",
                                        "x.py", names) == ["x.py:2: c._conn"]
    found = [hit for path in sorted(EXT.glob("*.py"))
             for hit in uses_of_client_private_names(path.read_text(encoding="utf-8"),
                                                     f"simplexmpp/ext/{path.name}", names)]
    assert found == []


def test_every_builtin_is_an_extension_attached_under_its_name(
        xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    extensions = alice.extensions
    assert {"disco", "muc", "carbons", "mam", "version", "receipts"} <= set(extensions)
    for name, extension in extensions.items():
        assert isinstance(extension, Extension) and getattr(alice, name) is extension
        assert alice.extension(type(extension)) is extension  # attached once
        assert set(type(extension).features) <= alice.local_features


class Weather(Extension):
    name = "weather"
    features = ("urn:example:weather",)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.started: list[Session] = []
        self.stopped = threading.Event()
        self.hook_threads: list[str] = []

    def session_started(self, session: Session) -> None:
        self.hook_threads.append(threading.current_thread().name)
        self.started.append(session)

    def client_stopped(self, error: BaseException | None) -> None:
        self.stopped.set()


class Quiet(Extension):
    name = "quiet"
    features = ("urn:example:quiet",)


def test_extension_attaches_once_advertises_and_registers_only_overridden_hooks(
        xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")
    quiet = alice.extension(Quiet)
    assert alice.quiet is quiet and alice.extension(Quiet) is quiet
    assert Quiet.overridden_hooks() == ()
    assert "urn:example:quiet" in alice.disco.local_info().features
    weather = alice.extension(Weather)
    assert Weather.overridden_hooks() == ("session_started", "client_stopped")
    assert alice._router.hooks["session_started"] == [weather]
    assert "session_lost" not in alice._router.hooks


def test_extension_names_are_checked(xmpp_client: ClientFactory) -> None:
    alice = xmpp_client("alice")

    class Clash(Extension):
        name = "send"

    class Bad(Extension):
        name = "not an identifier"

    with pytest.raises(ValueError, match="already has an attribute"):
        alice.extension(Clash)
    with pytest.raises(ValueError, match="identifier"):
        alice.extension(Bad)
    with pytest.raises(TypeError):
        alice.extension(object)  # type: ignore[type-var]


def test_session_tells_number_first_and_jid(xmpp_server: FakeServer) -> None:
    alice = xmpp_server.client("alice")
    weather = alice.extension(Weather)
    alice.connect()
    alice.disconnect()
    assert weather.stopped.wait(5)
    weather.stopped.clear()
    alice.connect()
    alice.ping()  # the dispatcher runs hooks in order: session_started came first
    alice.disconnect()
    assert weather.stopped.wait(5)
    first, second = weather.started
    assert (first.number, first.first, first.resumed) == (1, True, False)
    assert (second.number, second.first) == (2, True)
    assert first.jid.bare == "alice@" + alice.account.domain


def test_hooks_cost_a_dispatcher_thread_only_when_overridden(xmpp_server: FakeServer) -> None:
    quiet_client = xmpp_server.client("alice")
    quiet_client.extension(Quiet)  # overrides no hook
    busy_client = xmpp_server.client("bob")
    weather = busy_client.extension(Weather)
    quiet_client.connect()
    busy_client.connect()
    try:
        quiet_client.ping()
        assert quiet_client._events.thread is None
        busy_client.ping()
        xmpp_server.wait_for(lambda: weather.started)
        assert weather.hook_threads == [f"simplexmpp-dispatch-{busy_client.account.bare}"]
    finally:
        quiet_client.disconnect()
        busy_client.disconnect()


def test_stanza_handlers_run_on_the_dispatcher_and_claim(xmpp_server: FakeServer) -> None:
    alice = xmpp_server.client("alice")
    alice.connect()
    got: list[tuple[str | None, str]] = []
    done = threading.Event()

    def on_weather(msg: Message) -> None:
        got.append((msg.body, threading.current_thread().name))
        done.set()

    handle = alice.add_stanza_handler("message", on_weather, tags=["{urn:example:weather}x"])
    with pytest.raises(ValueError):
        alice.add_stanza_handler("message", on_weather)  # neither tags nor types
    try:
        for body, tagged in (("claimed", True), ("plain", False)):
            extra = "<x xmlns='urn:example:weather'/>" if tagged else ""
            xmpp_server.inject(f"<message xmlns='jabber:client' to='{alice.jid}' "
                               f"from='bob@localhost/x' type='chat'><body>{body}</body>"
                               f"{extra}</message>")
        assert alice.next_message(timeout=5).body == "plain"  # the tagged one was claimed
        assert done.wait(5)
        assert got == [("claimed", f"simplexmpp-dispatch-{alice.account.bare}")]
        alice.remove_stanza_handler(handle)
        xmpp_server.inject(f"<message xmlns='jabber:client' to='{alice.jid}' "
                           "from='bob@localhost/x' type='chat'><body>free</body>"
                           "<x xmlns='urn:example:weather'/></message>")
        assert alice.next_message(timeout=5).body == "free"
    finally:
        alice.disconnect()
