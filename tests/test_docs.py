"""The documentation site builds with warnings as errors (broken links, bad API references)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run([str(ROOT / "scripts" / "docs"), "--out", str(tmp_path / "site")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "send_message" in api and "messages" in api  # the reference was generated
