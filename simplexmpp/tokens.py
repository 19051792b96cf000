"""A file that keeps XEP-0484 FAST tokens between runs of a script: the token store.

```python
client = Client("bot@example.org", password, token_store="~/.config/bot/xmpp-tokens")
```

After one password login the server's token is kept here, and later connects log in with it
(one round trip fewer, and the script may then run without the password). The file holds a
secret as good as the password for this client: it is created with mode 0600, replaced
atomically (a crash never leaves half a file), and tightened to 0600 when found looser.

The store also keeps the SASL2 user-agent id (XEP-0388 §2.3: "a unique stable identifier for
the client installation", a UUID v4): the same for every account and every run using this
store, so the server sees one client installation and (XEP-0386 §3.2.1) may give it the same
resource each time. One store therefore belongs to one client at a time; two scripts
running at once should each have their own.

Format (JSON, version 1):

```json
{"version": 1, "user_agent_id": "5bd0...",
 "accounts": {"bot@example.org": {"mechanism": "HT-SHA-256-EXPR", "token": "...",
                                   "expiry": "2026-12-24T01:12:08Z"}}}
```
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import XMPPError
from .jid import JID
from .stanza import parse_datetime

__all__ = ["FastToken", "TokenStore", "TokenStoreError"]

log = logging.getLogger(__name__)

_VERSION = 1


class TokenStoreError(XMPPError, ValueError):
    """The token store file cannot be read or written (not a token store, unreadable, a
    directory that cannot be created)."""


@dataclass(frozen=True)
class FastToken:
    """One XEP-0484 token: the secret, the Hashed Token mechanism it was issued for, and when
    the server said it expires (None when it did not say or said it unreadably)."""

    mechanism: str
    token: str
    expiry: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the expiry the server gave has passed."""
        if self.expiry is None:
            return False
        return (now or datetime.now(timezone.utc)) >= self.expiry

    def __repr__(self) -> str:  # never the secret in logs or tracebacks
        return f"FastToken(mechanism={self.mechanism!r}, expiry={self.expiry!r})"


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        return None


class TokenStore:
    """The token store at `path` (a file; its directory is made, mode 0700, if missing).

    Reads go to the file each time, so a token that another process (`simplexmpp login`)
    wrote is seen by the next connect. Every method may raise
    [`TokenStoreError`][simplexmpp.tokens.TokenStoreError].
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise TokenStoreError(f"token store {self.path} is a directory; give a file path")

    # -- public ----------------------------------------------------------------------------
    @property
    def user_agent_id(self) -> str:
        """The store's stable SASL2 user-agent id, created (and saved) on first use."""
        with self._lock:
            data = self._load()
            agent = data.get("user_agent_id")
            if not isinstance(agent, str) or not _is_uuid(agent):
                data["user_agent_id"] = agent = str(uuid.uuid4())
                self._save(data)
            return agent

    def get(self, account: JID | str) -> FastToken | None:
        """The token for `account` (its bare JID), or None when there is none or it expired."""
        with self._lock:
            entry = self._load().get("accounts", {}).get(str(JID(str(account)).bare))
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str) or \
                not isinstance(entry.get("mechanism"), str):
            return None
        token = FastToken(entry["mechanism"], entry["token"], _expiry(entry.get("expiry")))
        if token.expired():
            log.info("the FAST token for %s in %s has expired; logging in with the password",
                     JID(str(account)).bare, self.path)
            return None
        return token

    def put(self, account: JID | str, token: FastToken) -> None:
        """Keep `token` for `account`, replacing the one before (a rotation, XEP-0484 §4.4)."""
        entry: dict[str, Any] = {"mechanism": token.mechanism, "token": token.token}
        if token.expiry is not None:
            entry["expiry"] = token.expiry.astimezone(timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            data = self._load()
            data.setdefault("accounts", {})[str(JID(str(account)).bare)] = entry
            self._save(data)

    def discard(self, account: JID | str, token: FastToken | None = None) -> bool:
        """Forget the token of `account` (the server rejected it); with `token`, only if the
        store still holds that one (not a newer one another process wrote meanwhile). True
        if a token was removed."""
        with self._lock:
            data = self._load()
            accounts = data.get("accounts", {})
            key = str(JID(str(account)).bare)
            entry = accounts.get(key)
            if entry is None or (token is not None and isinstance(entry, dict)
                                 and entry.get("token") != token.token):
                return False
            del accounts[key]
            self._save(data)
            return True

    # -- file ------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {"version": _VERSION, "accounts": {}}
        except OSError as exc:
            raise TokenStoreError(f"cannot read token store {self.path}: {exc.strerror}") \
                from None
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                # A token is a credential: others must not read it (XEP-0484 §6.1).
                log.warning("token store %s was readable by others (mode %o); now 0600",
                            self.path, stat.S_IMODE(mode))
                try:
                    os.fchmod(file.fileno(), 0o600)
                except OSError as exc:
                    raise TokenStoreError(f"token store {self.path} is readable by others and "
                                          f"cannot be made private: {exc.strerror}") from None
            raw = file.read(1 << 20)
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict) or data.get("version", _VERSION) != _VERSION or \
                not isinstance(data.get("accounts", {}), dict):
            raise TokenStoreError(
                f"{self.path} is not a simplexmpp token store (version {_VERSION}); move it "
                "away or give another path")
        data.setdefault("version", _VERSION)
        data.setdefault("accounts", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp creates the file with mode 0600; os.replace makes the switch atomic.
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        except OSError as exc:
            raise TokenStoreError(f"cannot write token store {self.path}: {exc.strerror}") \
                from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, indent=1, sort_keys=True)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise TokenStoreError(f"cannot write token store {self.path}: {exc.strerror}") \
                from None


def _is_uuid(text: str) -> bool:
    try:
        return uuid.UUID(text).version == 4
    except ValueError:
        return False
