"""samples/notebook.ipynb runs top to bottom in a real Jupyter kernel against the real Prosody."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Server

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "samples" / "notebook.ipynb"


def outputs_text(cell: object) -> str:
    parts = []
    for out in cell.get("outputs", []):  # type: ignore[attr-defined]
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts.append(data.get("text/html", "") + data.get("text/plain", ""))
    return "".join(parts)


def test_notebook_executes(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    jid, contact = server.new_account(), server.new_account()
    for key, value in dict(XMPP_JID=jid, XMPP_PASSWORD=server.password, XMPP_HOST=server.host,
                           XMPP_PORT=str(server.port), XMPP_CA=server.ca,
                           XMPP_CONTACT=contact).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    texts = [outputs_text(c) for c in nb.cells if c.cell_type == "code"]
    assert "ping to the server" in texts[1]
    assert contact in texts[2] and "<table>" in texts[2]          # the roster as HTML
    assert "Hello from a notebook" in texts[3]
    assert "first post from the notebook" in texts[4]              # the room's archive
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
