"""Smoke test of the benchmark suite, so it cannot rot: ``bench/run --quick --no-slixmpp``
(tiny sizes, one run, simplexmpp only, its own throwaway Prosody) must finish and print a
row for every benchmark. No figure is checked: benchmarks never judge the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = {
    "receive": ["bytes -> Message in queue", "share of XMLPullParser alone",
                "consumer takes each as it arrives", "share of XMLPullParser ("],
    "pace": ["receiver CPU/msg, messages()", 'receiver CPU/msg, "message" callback',
             "nobody taking them (I/O thread alone)", "raw reader counting bytes"],
    "e2e": ["first send -> last receive", "share of server ceiling", "share of matched ceiling",
            "client CPU/msg"],
    "ping": ["p50 of", "p99", "p50 / floor p50", "p99 / floor p99"],
    "connect": ["median of"],
    "login": ["FAST token", "password (", "FAST / password"],
    "scale": ["process RSS", "threads", "idle CPU"],
    "bigstanza": ["peak memory, one"],
    "cluster": ["accounts, 2 ejabberd nodes", "messages/s, all crossing nodes", "lost"],
}
if os.environ.get("SIMPLEXMPP_SKIP_EJABBERD") == "1":  # as tests/integration/conftest.py
    del ROWS["cluster"]


def test_quick_run_prints_every_benchmark(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run"), "--quick", "--no-slixmpp",
         "--only", ",".join(ROWS), "--results", str(results)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for bench, metrics in ROWS.items():
        for metric in metrics:
            assert any(line.startswith(bench) and metric in line for line in lines), \
                f"no '{bench}' row with '{metric}' in:\n{proc.stdout}"
    assert "FAILED" not in proc.stdout
    assert "slixmpp: skipped (--no-slixmpp)" in proc.stdout
    table = [line.split(" | ") for line in results.read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| benchmark")]
    assert {cells[0].lstrip("| ") for cells in table} == set(ROWS)
    for cells in table:  # every simplexmpp figure is a number; slixmpp's column is skipped
        assert any(ch.isdigit() for ch in cells[2]), cells
        assert cells[3] in ("skipped", ""), cells


def test_unknown_benchmark_is_refused() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run"), "--only", "nosuch"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "unknown benchmark" in proc.stderr
