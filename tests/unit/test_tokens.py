"""The FAST token store: a private file, replaced atomically, one user-agent id per store."""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from simplexmpp.tokens import FastToken, TokenStore, TokenStoreError

LATER = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_is_kept_per_bare_jid_in_a_file_only_the_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    store = TokenStore(path)
    store.put("Alice@localhost/phone", FastToken("HT-SHA-256-EXPR", "s3cret", LATER))
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    again = TokenStore(path).get("alice@localhost")
    assert again == FastToken("HT-SHA-256-EXPR", "s3cret", LATER)
    assert TokenStore(path).get("bob@localhost") is None
    assert "s3cret" not in repr(again)  # never the secret in logs or tracebacks


def test_rotation_replaces_the_token_and_discard_forgets_it(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t")
    store.put("alice@localhost", FastToken("HT-SHA-256-NONE", "one"))
    store.put("alice@localhost", FastToken("HT-SHA-256-NONE", "two"))
    assert store.get("alice@localhost") == FastToken("HT-SHA-256-NONE", "two")
    assert store.discard("alice@localhost") and store.get("alice@localhost") is None
    assert not store.discard("alice@localhost")
    # a rejected token is only removed while it is still the one stored
    store.put("alice@localhost", FastToken("HT-SHA-256-NONE", "newer"))
    assert not store.discard("alice@localhost", FastToken("HT-SHA-256-NONE", "two"))
    assert store.get("alice@localhost") == FastToken("HT-SHA-256-NONE", "newer")
    assert not [p for p in tmp_path.iterdir() if p.name != "t"]  # no temporary files left


def test_user_agent_id_is_a_uuid4_stable_for_the_store(tmp_path: Path) -> None:
    first = TokenStore(tmp_path / "t").user_agent_id
    assert uuid.UUID(first).version == 4
    assert TokenStore(tmp_path / "t").user_agent_id == first
    assert TokenStore(tmp_path / "other").user_agent_id != first


def test_expired_token_is_not_offered(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t")
    store.put("alice@localhost", FastToken("HT-SHA-256-NONE", "old",
                                           datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert store.get("alice@localhost") is None


def test_store_readable_by_others_is_made_private(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t"
    TokenStore(path).put("alice@localhost", FastToken("HT-SHA-256-NONE", "x"))
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="simplexmpp.tokens"):
        assert TokenStore(path).get("alice@localhost") is not None
    assert mode(path) == 0o600 and "readable by others" in caplog.text


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"version": 99}',
                                     b'{"accounts": []}', b"\xff\xfe"])
def test_a_file_that_is_not_a_token_store_is_a_clear_error_and_left_alone(
        tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "t"
    path.write_bytes(content)
    with pytest.raises(TokenStoreError, match="not a simplexmpp token store"):
        TokenStore(path).get("alice@localhost")
    with pytest.raises(TokenStoreError):
        TokenStore(path).put("alice@localhost", FastToken("HT-SHA-256-NONE", "x"))
    assert path.read_bytes() == content


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenStoreError, match="directory"):
        TokenStore(tmp_path)


def test_malformed_entries_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text(json.dumps({"version": 1, "accounts": {
        "alice@localhost": {"token": 5}, "bob@localhost": "x"}}))
    os.chmod(path, 0o600)
    store = TokenStore(path)
    assert store.get("alice@localhost") is None and store.get("bob@localhost") is None
