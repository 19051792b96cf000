"""Issue 15's shape, held by tests so it cannot drift back: Client stays a small facade over
its layers (at most ~45 methods, the public API unchanged), and the architecture pages name
only code that exists."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import simplexmpp
from simplexmpp import Client

PACKAGE = Path(simplexmpp.__file__).parent
DOCS = PACKAGE.parent / "docs"

#: Issue 15: "Client ... has at most ~45 methods". A new blocking call belongs here; a helper,
#: a figure or a rule belongs in a layer (session, connection, dispatcher) or an extension.
MAX_CLIENT_METHODS = 45


def class_methods(source: str, name: str) -> list[str]:
    """The defs in the body of class `name` (properties and their setters each count, as the
    issue counts them)."""
    tree = ast.parse(source)
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    return [node.name for node in cls.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_the_count_sees_methods_properties_setters_and_classmethods() -> None:
    source = ("class Client:\n"
              "    x: int = 1\n"
              "    def a(self): ...\n"
              "    @property\n"
              "    def b(self): ...\n"
              "    @b.setter\n"
              "    def b(self, value): ...\n"
              "    @classmethod\n"
              "    def c(cls): ...\n"
              "    async def d(self): ...\n")
    assert class_methods(source, "Client") == ["a", "b", "b", "c", "d"]


def test_client_has_at_most_45_methods() -> None:
    import simplexmpp.client

    assert simplexmpp.client.__file__ is not None
    methods = class_methods(Path(simplexmpp.client.__file__).read_text(encoding="utf-8"),
                            "Client")
    assert len(methods) <= MAX_CLIENT_METHODS, (
        f"Client has {len(methods)} methods (at most {MAX_CLIENT_METHODS}): move helpers, "
        f"figures and rules into a layer or an extension: {methods}")


# The Client names of the API contract (docs/api.md, samples), and those extensions use.
PUBLIC_NAMES = """
    connect disconnect jid account is_connected state session __enter__ __exit__ register
    send send_message new_message messages next_message send_presence broadcast_presence
    subscribe unsubscribe approve deny presence_of get_roster roster add_contact remove_contact
    send_iq iq ping on off declare_event emit has_callbacks dispatch register_iq_handler
    add_stanza_handler remove_stanza_handler well_addressed deliver extension extensions
    set_password expect_server_close max_inbox inbox_dropped inbox_size last_stanza_id
    duplicates_dropped duplicate_window local_features local_identities presence_decorators
    timeout features mechanism disco muc mam carbons upload vcard pubsub pep blocking version
""".split()


def offline_client(**kwargs: object) -> Client:
    return Client("alice@localhost", "secret", tls="none", host="127.0.0.1",
                  load_extensions=False, **kwargs)  # type: ignore[arg-type]


def test_every_public_name_of_the_client_is_still_there() -> None:
    client = offline_client()
    assert [name for name in PUBLIC_NAMES if not hasattr(client, name)] == []


def test_forwarded_figures_and_settings_read_and_set_their_layers() -> None:
    client = offline_client(max_inbox=3)
    assert client.max_inbox == 3
    client.max_inbox = 2
    for n in range(3):
        client._inbox.put(n)  # what the I/O thread does with a received message
    assert (client.inbox_size, client.inbox_dropped) == (2, 1)
    client.duplicate_window = 7
    assert client._core.duplicate_window == 7 and client.duplicate_window == 7
    assert client.duplicates_dropped == 0 and client.last_stanza_id is None
    assert client.roster is client._core.roster and len(client.roster) == 0
    assert client.session is None and client.broadcast_presence is None
    for name in ("inbox_dropped", "duplicates_dropped", "last_stanza_id", "roster", "session",
                 "broadcast_presence"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(client, name, None)


# -- the architecture pages name only what exists ------------------------------------------------

def _modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {"simplexmpp": simplexmpp}
    for info in pkgutil.walk_packages([str(PACKAGE)], "simplexmpp."):
        if info.name.endswith("__main__"):
            continue  # importing it runs the command line
        try:
            found[info.name] = importlib.import_module(info.name)
        except ImportError:  # an optional extra (OMEMO) that is not installed
            pass
    return found


def _has_path(obj: object, parts: list[str]) -> bool:
    for part in parts:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _resolves(name: str, modules: dict[str, ModuleType], client: Client) -> bool:
    """Whether `name` is a module path ("stream.ClientStream", "simplexmpp.session"), a name
    defined in some module followed by attributes ("SessionCore.route_iq"), or an attribute
    of a client ("send", "local_features")."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        for module_name in (".".join(parts[:i]), "simplexmpp." + ".".join(parts[:i])):
            if module_name in modules:
                return _has_path(modules[module_name], parts[i:])
    return any(_has_path(scope, parts) for scope in [*modules.values(), client])


#: Words in code spans of those pages that are protocol values, not code.
_NOT_CODE = {"normal"}
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[`[^`\n]+`\]\[([\w.]+)\]")   # [`text`][simplexmpp.x.y]: the target counts
_NAME = re.compile(r"[A-Za-z_][\w.]*(\(\))?")


def _file_exists(name: str) -> bool:
    """A module of the package ("session.py") or a file of the repository ("tests/...")."""
    return (PACKAGE / name).is_file() or (PACKAGE.parent / name).is_file()


def names_in(text: str) -> tuple[list[str], list[str]]:
    """(code names, files) a page mentions: code spans that are a Python name or dotted path
    (a trailing `()` dropped), link targets, and `*.py` files."""
    names, files = [], []
    names += _LINK.findall(text)
    text = _LINK.sub("", text)
    for span in _CODE_SPAN.findall(text):
        if span.endswith(".py"):
            files.append(span)
        elif _NAME.fullmatch(span) and span not in _NOT_CODE:
            names.append(span.removesuffix("()"))
    return names, files


def test_the_name_check_finds_what_does_not_exist() -> None:
    names, files = names_in("`stream.ClientStream` and `stream.negotiate_tls()`, "
                            "[`Hub`][simplexmpp.transport.Hub], `Connection._hub_step`, "
                            "`SessionCore.nothing()`, `gone.py`, `sasl.py`, `a b`, `x-y`")
    modules = _modules()
    client = offline_client()
    assert [n for n in names if not _resolves(n, modules, client)] == [
        "Connection._hub_step", "SessionCore.nothing"]
    assert [f for f in files if not _file_exists(f)] == ["gone.py"]


@pytest.mark.parametrize("page", ["architecture.md", "reference/layers.md"])
def test_the_architecture_pages_name_only_what_exists(page: str) -> None:
    names, files = names_in((DOCS / page).read_text(encoding="utf-8"))
    assert len(names) > 5 or page != "architecture.md"
    modules = _modules()
    client = offline_client()
    assert [n for n in names if not _resolves(n, modules, client)] == []
    assert [f for f in files if not _file_exists(f)] == []
