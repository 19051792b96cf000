"""Component and in-band registration plug a Role into the client's one connection instead of
overriding its privates; the client's states move only as connection.TRANSITIONS says."""

from __future__ import annotations

import ast
import inspect

import pytest

import simplexmpp.component as component_module
from simplexmpp import Client, Component
from simplexmpp.connection import TRANSITIONS, ClientState, LoginRole
from simplexmpp.errors import JIDError
from simplexmpp.stream import ClientStream
from simplexmpp.transport import Target


def _methods_defined_in(module: object, class_name: str) -> set[str]:
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {f.name for f in node.body
                    if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    raise AssertionError(f"no class {class_name}")


def test_component_overrides_no_private_method_of_the_client() -> None:
    private_client = {name for name in dir(Client)
                      if name.startswith("_") and not name.startswith("__")}
    overridden = _methods_defined_in(component_module, "Component") & private_client
    assert overridden == set()


def test_the_pre_auth_client_is_a_plain_client_with_a_role() -> None:
    import simplexmpp._preauth as preauth
    from simplexmpp._preauth import PreAuthRole

    assert not [node for node in ast.parse(inspect.getsource(preauth)).body
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, ast.Name) and base.id == "Client" for base in node.bases)]
    client = Client("alice@localhost", "secret", role=PreAuthRole(), load_extensions=False)
    assert type(client) is Client and client.extensions == {}
    stream = client._conn.role.new_stream(client, Target("127.0.0.1", 5222, False), {}, None)
    assert isinstance(stream, ClientStream) and stream.pre_auth
    assert client._conn._flush_until(0.0) == (True, [])  # nothing to confirm


def test_the_component_role_chooses_the_stream_and_checks_the_address() -> None:
    component = Component("echo.localhost", "secret", "127.0.0.1")
    role = component._conn.role
    assert role.name == "component" and not role.roster_pushes
    stream = role.new_stream(component, Target("127.0.0.1", 5347, False), {}, None)
    assert isinstance(stream, component_module.ComponentStream)
    assert role.redact("<handshake>abcdef</handshake>") == "<handshake>[redacted]</handshake>"
    assert ("component", "generic", "simplexmpp") in component.local_identities
    with pytest.raises(JIDError):
        Component("user@echo.localhost", "secret", "127.0.0.1")


def test_a_login_role_refuses_an_account_without_localpart() -> None:
    with pytest.raises(JIDError):
        Client("example.org", "secret")
    assert isinstance(Client("alice@example.org", "secret")._conn.role, LoginRole)


def test_client_states_move_only_as_the_table_says() -> None:
    client = Client("alice@localhost", "secret", load_extensions=False)
    conn = client._conn
    assert conn.state is ClientState.DISCONNECTED and client.state == "disconnected"
    with conn.lock:
        with pytest.raises(RuntimeError):
            conn._move(ClientState.READY)  # never without connecting first
        conn._move(ClientState.CONNECTING)
        conn._move(ClientState.READY)
        assert client.is_connected and client.state == "ready"
        conn._move(ClientState.RECONNECTING)
        with pytest.raises(RuntimeError):
            conn._move(ClientState.CONNECTING)
        conn._move(ClientState.CLOSING)
        conn._move(ClientState.DISCONNECTED)
    assert set(TRANSITIONS) == set(ClientState)
    assert all(ClientState.DISCONNECTED in targets or state is ClientState.DISCONNECTED
               for state, targets in TRANSITIONS.items())
