"""The package as Python expects it: a wheel and an sdist built from this tree install, import
and pass ``twine check``; the sdist is the whole project; dependencies are honest (each one
declared is imported, each third-party import is declared)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from simplexmpp import __version__ as VERSION

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Declared but not imported on purpose: nothing (defusedxml was dropped, issue 12 item 4; it is
# a test requirement for tests/unit/test_xml_attacks.py).
NOT_IMPORTED_YET: set[str] = set()


def run(*args: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh sdist, and a wheel built from that sdist (python -m build, offline)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    (sdist,) = out.glob("simplexmpp-*.tar.gz")
    (wheel,) = out.glob("simplexmpp-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_and_sdist_pass_twine_check(dist: dict[str, Path]) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"])
    assert out.count("PASSED") == 2, out


def test_wheel_installs_into_a_fresh_venv_and_imports(dist: dict[str, Path],
                                                       tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--no-cache-dir", "-q", dist["wheel"])
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .strip())
    # The dependencies come from the test venv, looked up AFTER the fresh venv's own
    # site-packages (a path line in a .pth file), so simplexmpp itself is the installed wheel.
    deps = Path(sysconfig.get_path("purelib"))
    (site / "zz_test_dependencies.pth").write_text(f"{deps}\n")
    out = run(python, "-c",
              "import importlib.metadata as m, simplexmpp, simplexmpp.ext.muc, simplexmpp.cli;"
              "print(simplexmpp.__file__); print(simplexmpp.__version__);"
              "print(m.version('simplexmpp')); print(m.metadata('simplexmpp')['License-Expression']);"
              "print(sorted(str(f) for f in m.files('simplexmpp') if 'LICENSE' in str(f)))",
              cwd=tmp_path).splitlines()
    assert Path(out[0]).is_relative_to(site), out
    assert out[1] == out[2] == VERSION, out
    assert out[3] == "MIT"
    assert "licenses/LICENSE" in out[4], out
    help_text = run(venv / "bin" / "simplexmpp", "--help", cwd=tmp_path)
    assert "usage: simplexmpp" in help_text


def test_wheel_holds_the_package_and_nothing_else(dist: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"simplexmpp", f"simplexmpp-{VERSION}.dist-info"}, tops
    assert "simplexmpp/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_sdist_is_the_whole_project(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for needed in ("LICENSE", "README.md", "CHANGES", "pyproject.toml", "MANIFEST.in",
                   "requirements-test.txt", "requirements-omemo.txt", "pytest.ini", "simplexmpp/__init__.py",
                   "simplexmpp/py.typed", "scripts/prosody-up", "scripts/ejabberd-up",
                   "scripts/demo", "scripts/test", "scripts/setup-env", "scripts/fake-server",
                   "tests/test_demo.py", "tests/integration/conftest.py", "docs/index.md",
                   "samples/echo_bot.py", "bench/run"):
        assert needed in members, needed
    for script in ("scripts/prosody-up", "scripts/ejabberd-up", "scripts/demo", "scripts/test"):
        assert members[script].mode & 0o111, f"{script} lost its executable bit"
    junk = [n for n in members if any(part in n.split("/") for part in
            (".venv", "__pycache__", ".hypothesis", ".pytest_cache", ".git", "dist"))
            or n.endswith(".pyc") or n.startswith("build/")]
    assert junk == []
    if (ROOT / ".git").exists():  # every tracked file of the repository is in the sdist
        tracked = set(run("git", "ls-files", cwd=ROOT).splitlines())
        missing = tracked - set(members) - {".gitignore"}
        assert not missing, sorted(missing)


def test_metadata_has_licence_classifiers_and_urls() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert project["requires-python"] == ">=3.10"
    classifiers = project["classifiers"]
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    from trove_classifiers import classifiers as known
    assert [c for c in classifiers if c not in known] == []
    assert all(url.startswith("https://") for url in project["urls"].values())
    assert not (ROOT / "setup.py").exists()


def third_party_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Top-level modules imported by simplexmpp/ that are neither stdlib nor simplexmpp:
    (always, guarded) -> module -> files. Guarded: inside a ``try`` that catches ImportError."""
    always: dict[str, set[str]] = {}
    guarded: dict[str, set[str]] = {}

    def visit(node: ast.AST, file: str, in_guard: bool) -> None:
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            guard = bool(catches & {"ImportError", "ModuleNotFoundError",
                                    "(ImportError, ModuleNotFoundError)"})
            for child in node.body + [n for h in node.handlers for n in h.body]:
                visit(child, file, in_guard or guard)
            for child in node.orelse + node.finalbody:
                visit(child, file, in_guard)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in ("simplexmpp", "__future__"):
                continue
            (guarded if in_guard else always).setdefault(top, set()).add(file)
        for child in ast.iter_child_nodes(node):
            visit(child, file, in_guard)

    for path in sorted((ROOT / "simplexmpp").rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)), False)
    return always, guarded


def distribution_of(module: str) -> str:
    """The distribution that provides ``module`` here; a module not installed in this Python
    (tomli on 3.11+) is taken to come from the distribution of the same name."""
    dists = importlib.metadata.packages_distributions().get(module)
    return canonicalize_name(dists[0] if dists else module)


def test_every_third_party_import_is_declared_and_every_dependency_imported() -> None:
    required = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    always, guarded = third_party_imports()
    extras_file = [line for name in ("requirements-test.txt", "requirements-omemo.txt")
                   for line in (ROOT / name).read_text(encoding="utf-8").splitlines()]
    extras = {canonicalize_name(Requirement(line).name) for line in extras_file
              if line.strip() and not line.startswith("#")}
    undeclared = {m: sorted(f) for m, f in always.items() if distribution_of(m) not in required}
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"
    # optional imports (try/except ImportError) need at least an extra, or a dependency with a
    # marker (tomli on Python 3.10)
    unoptional = {m: sorted(f) for m, f in guarded.items()
                  if distribution_of(m) not in required | extras}
    assert unoptional == {}, unoptional
    imported = {distribution_of(m) for m in [*always, *guarded]}
    unused = required - imported - NOT_IMPORTED_YET
    assert unused == set(), f"declared in pyproject.toml but never imported: {unused}"
