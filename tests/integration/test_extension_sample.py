"""The sample third-party extension (samples/weather_extension), installed as its own package
and found through its entry point, against the real Prosody (issue 15)."""

from __future__ import annotations

import importlib
import queue
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from simplexmpp import Client, Component, Iq, errors
from simplexmpp.extension import installed_extensions

from .conftest import Server
from .proxy import FaultProxy

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "weather_extension"
WEATHER_NS = "urn:example:weather"


@pytest.fixture(scope="module")
def weather_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type]:
    """pip-installs the sample into a directory of its own (dist-info with the entry point
    included), puts it on sys.path for this module's tests, and takes it away after."""
    target = tmp_path_factory.mktemp("weather-site")
    build = tmp_path_factory.mktemp("weather-build")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, which
    # would leave them in samples/ (and in the sdist, which grafts samples/).
    source = build / "weather_extension"
    shutil.copytree(SAMPLE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=build)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("simplexmpp_weather_sample-*.dist-info/entry_points.txt"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        found = [cls for cls in installed_extensions(refresh=True) if cls.name == "weather"]
        assert len(found) == 1, found
        yield found[0]
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("simplexmpp_weather", None)
        installed_extensions(refresh=True)


def ask(client: Client, jid: object, city: str) -> str:
    reply = client.iq(Iq.get(str(jid), ET.Element("{%s}query" % WEATHER_NS, city=city)))
    assert reply.payload is not None
    return reply.payload.text or ""


@pytest.mark.parametrize("stream_management", [True, False], ids=["resumed", "new-session"])
def test_installed_extension_advertises_answers_and_keeps_state_across_a_cut(
        server: Server, weather_installed: type, stream_management: bool) -> None:
    proxy = FaultProxy(server.port)
    alice = server.client(server.new_account(), port=proxy.port,
                          stream_management=stream_management)
    bob = server.client(server.new_account(), load_extensions=False)
    try:
        # Found through its entry point: attached to the new client without being named.
        weather = alice.weather
        assert type(weather) is weather_installed
        assert Path(sys.modules[weather_installed.__module__].__file__ or "").parent in \
            [Path(p) for p in sys.path]
        assert not hasattr(bob, "weather")  # load_extensions=False: built-ins only
        weather.report("Paris", "sunny, 21 °C")
        alice.connect()
        bob.connect()

        # Its feature is in our disco#info as another client sees it, and in the XEP-0115
        # caps hash of our presence (bob verifies the hash against what we answer).
        assert WEATHER_NS in bob.disco.info(alice.jid).features
        presences: queue.SimpleQueue[object] = queue.SimpleQueue()
        bob.on("presence", presences.put)
        alice.send_presence(to=bob.jid)
        presences.get(timeout=30)
        node, ver, algorithm = bob.disco.caps_of(alice.jid) or ("", "", "")
        assert ver == alice.disco.ver
        caps = bob.disco.capabilities(alice.jid)
        assert WEATHER_NS in caps.features and caps.caps_hash(algorithm) == ver
        # It answers the other client's IQ, on the dispatcher thread.
        assert ask(bob, alice.jid, "Paris") == "sunny, 21 °C"
        with pytest.raises(errors.IqError) as refused:
            ask(bob, alice.jid, "Atlantis")
        assert refused.value.condition == "item-not-found"
        assert weather.answered[0][1].startswith("simplexmpp-dispatch-")

        back = threading.Event()
        alice.on("resumed" if stream_management else "connected", lambda jid: back.set())
        assert proxy.cut_all() == 1
        assert back.wait(30), "alice did not come back after the cut"

        # Its state survived the cut, and it was told what kind of session followed.
        assert ask(bob, alice.jid, "Paris") == "sunny, 21 °C"
        kinds = [kind for kind, _ in weather.sessions]
        first, second = (session for _, session in weather.sessions)
        assert (first.number, first.first, first.resumed) == (1, True, False)
        if stream_management:  # XEP-0198: the server kept the session
            assert kinds == ["started", "resumed"]
            assert (second.number, second.resumed, second.started) == (1, True, first.started)
        else:  # a new session: the extension restores what it keeps
            assert kinds == ["started", "started"]
            assert (second.number, second.first, second.resumed) == (2, False, False)
        assert second.jid == alice.jid
    finally:
        for client in (alice, bob):
            try:
                client.disconnect()
            except errors.XMPPError:
                pass
        proxy.close()


def test_a_component_attaches_installed_extensions_only_when_asked(
        weather_installed: type) -> None:
    """Entry-point extensions are written for accounts; a component (XEP-0114) serves a
    domain and takes them only with load_extensions=True."""
    plain = Component("echo.localhost", "secret", "127.0.0.1")
    assert "weather" not in plain.extensions
    asked = Component("echo.localhost", "secret", "127.0.0.1", load_extensions=True)
    assert isinstance(asked.extensions["weather"], weather_installed)
