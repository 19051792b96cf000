"""The repository stands alone (issue 12): nothing in it refers to files beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not find itself.
OUTSIDE = ["../" + "shared", "shared" + "/xmpp-server", "shared" + "/API.md",
           "shared" + "/STYLE.md"]


def project_files() -> list[Path]:
    if (ROOT / ".git").exists():
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True, timeout=60).stdout.splitlines()
        return [ROOT / name for name in names]
    skip = {".venv", ".git", "__pycache__", ".hypothesis", ".pytest_cache", "build", "dist"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def test_nothing_in_the_project_refers_to_files_beside_the_repository() -> None:
    found = []
    for path in project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(needle in line for needle in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("script", ["prosody-up", "ejabberd-up", "fake-server", "demo", "test",
                                    "setup-env", "docs", "bench"])
def test_the_scripts_the_project_needs_are_in_the_repository(script: str) -> None:
    assert (ROOT / "scripts" / script).is_file()
