"""The package is typed (it ships py.typed): `mypy --strict simplexmpp` passes, with the
omemo extra installed (the test requirements include it), so its modules are checked against
the real python-omemo types rather than skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_passes_mypy_strict(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                          "--cache-dir", str(tmp_path / "mypy-cache"), "simplexmpp"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
