"""scripts/demo, the first command of the README: the conversation, quietly, on Prosody or,
when Prosody cannot be had, on simplexmpp.testing's in-process server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo"
MAX_LINES = 40   # issue 12: the demo prints the conversation and little else

CONVERSATION = [
    "bob@localhost -> alice@localhost: Hello, bot!",
    "alice@localhost -> bob@localhost: Hello, bot!",
    "bob@localhost -> alice@localhost: Are you a blocking client too?",
    "alice@localhost -> bob@localhost: Are you a blocking client too?",
    "bob@localhost -> alice@localhost: Bye.",
    "alice@localhost -> bob@localhost: Bye.",
]


def run_demo(tmp_path: Path, **env: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environ = {k: v for k, v in os.environ.items()
               if k not in ("SIMPLEXMPP_DEMO_SERVER", "SIMPLEXMPP_PROSODY_UP")}
    environ.update(env, TMPDIR=str(scratch))
    out = subprocess.run([str(DEMO)], capture_output=True, text=True, timeout=600, env=environ,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    # the conversation, in order, each line once
    said = [line for line in lines if " -> " in line]
    assert said == CONVERSATION, "\n".join(lines)
    assert "== [bot] echo bot answered 3 message(s)" in lines
    assert lines[-1] == "== done; stopping the server"
    # nothing left behind: the state directory is gone, no process runs from it
    assert list(scratch.iterdir()) == []
    assert not processes_mentioning(str(scratch)), processes_mentioning(str(scratch))
    return lines, out


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_talks_to_the_echo_bot_on_a_throwaway_prosody(tmp_path: Path) -> None:
    lines, out = run_demo(tmp_path, SIMPLEXMPP_DEMO_SERVER="prosody")
    assert lines[0].startswith("== a throwaway Prosody on 127.0.0.1:"), lines
    assert out.stderr == ""


def test_demo_says_in_one_line_when_prosody_cannot_be_installed_and_uses_the_fake_server(
        tmp_path: Path) -> None:
    # What prosody-up does as a normal user on a machine without Prosody.
    stub = tmp_path / "prosody-up"
    stub.write_text("#!/bin/sh\n[ \"$1\" = --stop ] && exit 0\n"
                    "echo 'prosody-up: Prosody is not installed; run: sudo apt-get install "
                    "prosody lua-dbi-sqlite3' >&2\nexit 1\n")
    stub.chmod(0o755)
    lines, out = run_demo(tmp_path, SIMPLEXMPP_PROSODY_UP=str(stub))
    notices = [line for line in lines if "Prosody" in line]
    assert notices == [
        "== Prosody is not available (Prosody is not installed; run: sudo apt-get install "
        "prosody lua-dbi-sqlite3); using simplexmpp.testing's in-process server instead"], lines
    assert lines[1].startswith("== simplexmpp.testing.FakeServer on 127.0.0.1:"), lines


def test_demo_runs_on_the_fake_server_when_asked(tmp_path: Path) -> None:
    lines, out = run_demo(tmp_path, SIMPLEXMPP_DEMO_SERVER="fake")
    assert lines[0].startswith("== simplexmpp.testing.FakeServer on 127.0.0.1:"), lines
    assert not any("Prosody" in line for line in lines), lines


def test_demo_refuses_an_unknown_server_choice(tmp_path: Path) -> None:
    out = subprocess.run([str(DEMO)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SIMPLEXMPP_DEMO_SERVER": "openfire"})
    assert out.returncode == 1
    assert "SIMPLEXMPP_DEMO_SERVER must be auto, prosody or fake" in out.stderr


@pytest.mark.parametrize("mode", ["runtime", "test"])
def test_setup_env_is_silent_when_the_virtualenv_is_current(mode: str) -> None:
    # scripts/test has just set .venv up for the test tools (which cover the runtime)
    out = subprocess.run(["bash", "-c", f". scripts/setup-env {mode} && command -v python"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / ".venv" / "bin" / "python")
    assert out.stderr == ""
