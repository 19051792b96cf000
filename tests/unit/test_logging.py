"""The logging conventions of a well-behaved library: a NullHandler on the package logger,
module loggers named from __name__ under "simplexmpp", and no output unless the application
configures logging."""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import simplexmpp

PACKAGE = Path(simplexmpp.__file__).parent
# The one logger that is not a module's: every byte sent and received, switched on by itself.
WIRE = "simplexmpp.wire"


def test_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("simplexmpp").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), handlers


def test_every_module_logger_is_named_after_its_module() -> None:
    for info in pkgutil.walk_packages([str(PACKAGE)], "simplexmpp."):
        if info.name.endswith("__main__"):
            continue  # runs the command line
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, logging.Logger):
                assert value.name in (module.__name__, WIRE), (info.name, name, value.name)


def test_get_logger_is_only_called_with_dunder_name() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "logging.getLogger":
                calls.append((path.name, ast.unparse(node)))
    wrong = [c for c in calls if c[1] not in ("logging.getLogger(__name__)",
                                              f"logging.getLogger({WIRE!r})",
                                              f'logging.getLogger("{WIRE}")')]
    assert calls and wrong == []


def test_nothing_is_printed_when_the_application_does_not_configure_logging() -> None:
    # Client(verify=False) logs a WARNING; without the NullHandler, Python's last-resort
    # handler would write it to stderr of a program that never asked for logging.
    code = ("import simplexmpp; simplexmpp.Client('a@example.org', 'pw', verify=False);"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=PACKAGE.parent)
    assert (out.returncode, out.stdout, out.stderr) == (0, "ok\n", "")
