"""scripts/demo, the first command of the README, runs from start to end."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_talks_to_the_echo_bot_and_cleans_up() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "demo")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "alice@localhost -> bob@localhost: Hello, bot!" in out.stdout
    assert "echo bot answered 3 message(s)" in out.stdout
    assert "== done; stopping Prosody" in out.stdout
