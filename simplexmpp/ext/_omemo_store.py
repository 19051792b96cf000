"""The persistent OMEMO store: one JSON file per account (identity, device id, sessions,
trust), for python-omemo's `Storage` interface.

Imported only when OMEMO is used (it needs the optional `omemo` package). Every write goes to
a new file beside the store, made with mode 0600, then replaces the store in one `os.replace`,
so a crash leaves the old or the new store, never half of one. Changes are kept in memory and
written by [flush][simplexmpp.ext._omemo_store.JSONStorage.flush], which the OMEMO extension
calls at the end of every operation (and before a message encrypted with the new state leaves).

One process at a time: the store is locked (an `flock` on `PATH.lock`) while a client uses it,
because two processes with the same device id would break each other's sessions.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import tempfile
import threading
from typing import Any

from ..errors import OMEMOError, OMEMOUnavailableError

try:
    from omemo.storage import Just, Maybe, Nothing, Storage
except ImportError as exc:  # pragma: no cover - the extra is installed where this runs
    raise OMEMOUnavailableError("OMEMO needs the packages omemo, twomemo and oldmemo: "
                                f"pip install 'simplexmpp[omemo]' ({exc})") from exc
from .omemo import FORMAT, read_store_file

__all__ = ["JSONStorage"]

log = logging.getLogger(__name__)

class JSONStorage(Storage):
    """python-omemo storage kept in memory and persisted to one JSON file.

    Thread-safe: python-omemo calls it on the extension's event-loop thread; other threads may
    read ([get][simplexmpp.ext._omemo_store.JSONStorage.get]) at the same time.
    """

    def __init__(self, path: str, account: str) -> None:
        super().__init__(disable_cache=True)  # the dict below is the cache
        self.path = os.path.abspath(os.path.expanduser(path))
        self.account = account
        self._lock = threading.Lock()
        self._dirty = False
        self._lock_file: Any = None
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OMEMOError(f"cannot create the directory of the OMEMO store {self.path}: "
                             f"{exc}") from exc
        self._take_process_lock()
        try:
            data = read_store_file(self.path)
            if data is not None:
                owner = data.get("/simplexmpp/account")
                if owner is not None and owner != account:
                    raise OMEMOError(
                        f"the OMEMO store {self.path} belongs to {owner}, not {account}: "
                        "give each account its own store (Client(omemo_store=...))")
            self._data: dict[str, Any] = data if data is not None else {}
            if "/simplexmpp/account" not in self._data:
                self._data["/simplexmpp/account"] = account
                self._dirty = True
            self.flush()
        except BaseException:
            self.close()
            raise

    # -- one process at a time -------------------------------------------------------------
    def _take_process_lock(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - no flock there; one process is assumed
            return
        import fcntl
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OMEMOError(f"cannot open the lock file {lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise OMEMOError(
                f"the OMEMO store {self.path} is in use by another process (another client "
                "of this account on this machine): two programs with one device id would "
                "break each other's sessions; stop the other one or give this one its own "
                "store (Client(omemo_store=...))") from exc
        self._lock_file = fd

    def close(self) -> None:
        """Write what is pending and release the process lock."""
        try:
            self.flush()
        finally:
            fd, self._lock_file = self._lock_file, None
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock

    # -- python-omemo's Storage interface (its event-loop thread) --------------------------
    async def _load(self, key: str) -> Maybe:  # type: ignore[type-arg]
        with self._lock:
            if key in self._data:
                return Just(self._data[key])
        return Nothing()

    async def _store(self, key: str, value: Any) -> None:
        # A JSON round trip: what we keep is exactly what the file will hold (and a value the
        # file could not hold fails here, where the caller sees it).
        copy = json.loads(json.dumps(value))
        with self._lock:
            self._data[key] = copy
            self._dirty = True

    async def _delete(self, key: str) -> None:
        with self._lock:
            if key in self._data:
                del self._data[key]
                self._dirty = True

    # -- our own access -----------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The value under `key` (any thread)."""
        with self._lock:
            return self._data.get(key, default)

    def get_bytes(self, key: str) -> bytes | None:
        """A value python-omemo stored with `store_bytes` (base64 in the file)."""
        value = self.get(key)
        return base64.urlsafe_b64decode(value) if isinstance(value, str) else None

    def flush(self) -> None:
        """Write the store if anything changed since the last write: a new file with mode
        0600 replaces the old one (atomic on POSIX and Windows)."""
        with self._lock:
            if not self._dirty:
                return
            document = {"format": FORMAT, "data": self._data}
            payload = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
            directory = os.path.dirname(self.path)
            fd, tmp = tempfile.mkstemp(prefix=".omemo-", suffix=".tmp", dir=directory)
            try:
                os.chmod(tmp, 0o600)  # mkstemp makes 0600 already; say it anyway
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise OMEMOError(f"cannot write the OMEMO store {self.path}: {exc}") from exc
            self._dirty = False
