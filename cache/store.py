"""The attribution store: finished results in SQLite, keyed by a content hash.

The key covers everything a result depends on: the model (loader, class, configuration,
code and weights, see :attr:`explainers.adapters.ModelAdapter.result_key`), the encoded
input, the method, its resolved parameters and the target. Rows are validated by the engine
before they are served, so a damaged or mismatched row is recomputed, never returned.

The store is an optimisation, never a point of failure: every SQLite or file-system fault
surfaces as :class:`StoreFault`, which the engine turns into a warning and a computation
without the cache. Its size is bounded: least recently used rows are evicted above
``$ATTRIBUTION_STUDIO_CACHE_MB`` megabytes (default 500).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

ENV_VAR = "ATTRIBUTION_STUDIO_CACHE"
CAP_ENV_VAR = "ATTRIBUTION_STUDIO_CACHE_MB"
DEFAULT_CAP_MB = 500
FILE_NAME = "attributions.sqlite"
#: bump when keys or stored scores change meaning; a store written by another version is
#: emptied when it is opened (SQLite ``PRAGMA user_version`` holds the version)
SCHEMA_VERSION = 4
#: after an eviction the payload is brought down to this fraction of the cap, so that a
#: store at its cap does not evict on every write
EVICT_TO = 0.9


class StoreFault(Exception):
    """The store could not be read or written; the caller computes without it."""


class BadRow(StoreFault):
    """One stored row was unreadable; it has been dropped, the store itself still works."""


def cache_path() -> Path:
    """The cache directory's path (not created): ``$ATTRIBUTION_STUDIO_CACHE`` or
    ``~/.cache/attribution-studio``."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "attribution-studio")


def cache_dir() -> Path:
    """The cache directory, created if missing."""
    path = cache_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cap_from_env() -> int:
    """The size cap in bytes from ``$ATTRIBUTION_STUDIO_CACHE_MB`` (default 500 MB).

    An unreadable value falls back to the default with a Python warning, so a typo in the
    environment never stops the app.
    """
    raw = os.environ.get(CAP_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_CAP_MB * 1_000_000
    try:
        mb = float(raw)
        if not mb >= 0 or mb == float("inf"):
            raise ValueError
    except ValueError:
        warnings.warn(f"{CAP_ENV_VAR}={raw!r} is not a size in MB; using {DEFAULT_CAP_MB}",
                      stacklevel=2)
        return DEFAULT_CAP_MB * 1_000_000
    return int(mb * 1_000_000)


def make_key(*parts: Any) -> str:
    """SHA-256 of the JSON of ``parts`` (sorted keys), prefixed by the schema version."""
    blob = json.dumps([SCHEMA_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    return text


class AttributionStore:
    """A small key -> JSON store in one SQLite file, safe to share across threads and
    processes, bounded by least-recently-used eviction.

    Nothing touches the disk until the first call, so creating a store never fails; each
    call raises :class:`StoreFault` for a store it cannot use (corrupt file, read-only
    database or directory, a cache path that is a file).

    Args:
        path: the SQLite file; defaults to ``attributions.sqlite`` in :func:`cache_path`.
        cap_bytes: evict least recently used rows once the stored JSON exceeds this many
            bytes; default from :func:`cap_from_env`. ``0`` disables the cap.
    """

    def __init__(self, path: str | Path | None = None, cap_bytes: int | None = None) -> None:
        self.path = Path(path) if path else cache_path() / FILE_NAME
        self.cap_bytes = cap_from_env() if cap_bytes is None else int(cap_bytes)
        self._lock = threading.Lock()
        self._ready = False

    # -- connection and schema ---------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreFault(f"cannot open {self.path} ({_reason(e)})") from None
        try:
            if not self._ready:
                self._init_schema(con)
                self._ready = True
        except (OSError, sqlite3.Error) as e:
            con.close()
            raise StoreFault(f"cannot use {self.path} ({_reason(e)})") from None
        return con

    @staticmethod
    def _init_schema(con: sqlite3.Connection) -> None:
        """Create the table, or empty a store written with another schema version."""
        if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        con.execute("PRAGMA auto_vacuum=INCREMENTAL")  # lets eviction shrink the file
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                con.execute("DROP TABLE IF EXISTS results")
                con.execute("CREATE TABLE results (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                            "size INTEGER NOT NULL, created REAL NOT NULL, accessed REAL NOT NULL)")
                con.execute("CREATE INDEX results_accessed ON results (accessed)")
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        try:
            con.execute("VACUUM")  # applies auto_vacuum and drops the old rows' pages
        except sqlite3.OperationalError:
            pass  # another connection is busy: the file shrinks on a later eviction
        con.execute("PRAGMA journal_mode=WAL")

    def _run(self, fn, what: str) -> Any:
        """Run ``fn(connection)`` under the lock; SQLite and OS errors become StoreFault."""
        with self._lock:
            con = self._connect()
            try:
                return fn(con)
            except (OSError, sqlite3.Error) as e:
                raise StoreFault(f"cannot {what} {self.path.name} ({_reason(e)})") from None
            finally:
                con.close()

    # -- the key -> value interface ------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The stored value, or None.

        Raises:
            StoreFault: the store cannot be read, or the row is not valid JSON (it is
                deleted, so the next write replaces it).
        """
        def read(con: sqlite3.Connection) -> str | None:
            row = con.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            try:  # LRU order only: a read-only store still serves its rows
                con.execute("UPDATE results SET accessed = ? WHERE key = ?", (time.time(), key))
            except sqlite3.Error:
                pass
            return row[0]

        blob = self._run(read, "read")
        if blob is None:
            return None
        try:
            value = json.loads(blob)
            if not isinstance(value, dict):
                raise ValueError("not an object")
        except ValueError:
            self.discard(key)
            raise BadRow("a stored row was unreadable (not JSON) and was dropped") from None
        return value

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key``, then evict least recently used rows over the cap.

        Raises:
            StoreFault: the store cannot be written.
        """
        blob = json.dumps(value)
        now = time.time()

        def write(con: sqlite3.Connection) -> None:
            con.execute("INSERT OR REPLACE INTO results (key, value, size, created, accessed) "
                        "VALUES (?, ?, ?, ?, ?)", (key, blob, len(blob), now, now))
            self._evict(con)

        self._run(write, "write")

    def discard(self, key: str) -> None:
        """Delete one row (a bad one); a store that cannot be written is left as it is."""
        try:
            self._run(lambda con: con.execute("DELETE FROM results WHERE key = ?", (key,)), "write")
        except StoreFault:
            pass

    def _evict(self, con: sqlite3.Connection) -> int:
        """Delete least recently used rows until the payload is under ``EVICT_TO`` x cap."""
        if self.cap_bytes <= 0:
            return 0
        total = con.execute("SELECT COALESCE(SUM(size), 0) FROM results").fetchone()[0]
        if total <= self.cap_bytes:
            return 0
        excess = total - int(self.cap_bytes * EVICT_TO)
        doomed, freed = [], 0
        for key, size in con.execute("SELECT key, size FROM results ORDER BY accessed ASC"):
            if freed >= excess:
                break
            doomed.append((key,))
            freed += size
        con.executemany("DELETE FROM results WHERE key = ?", doomed)
        con.execute("PRAGMA incremental_vacuum")
        return len(doomed)

    # -- reporting -------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Size and health of the store, for the Home page; never raises.

        Returns:
            ``{"rows", "bytes", "file_bytes", "cap_bytes", "path", "error"}``: ``bytes`` is
            the stored JSON (what the cap bounds), ``file_bytes`` the SQLite files on disk
            (WAL included); ``rows`` and ``bytes`` are None and ``error`` says why when the
            store cannot be read.
        """
        out: dict[str, Any] = {"rows": None, "bytes": None, "file_bytes": self._file_bytes(),
                               "cap_bytes": self.cap_bytes, "path": str(self.path), "error": None}
        try:
            rows, size = self._run(lambda con: con.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM results").fetchone(), "read")
            out.update(rows=int(rows), bytes=int(size))
        except StoreFault as e:
            out["error"] = str(e)
        return out

    def _file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            try:
                total += p.stat().st_size if p.is_file() else 0
            except OSError:
                pass
        return total

    def __len__(self) -> int:
        return self._run(lambda con: con.execute("SELECT COUNT(*) FROM results").fetchone()[0], "read")

    def clear(self) -> None:
        self._run(lambda con: con.execute("DELETE FROM results"), "write")


_default: AttributionStore | None = None
_default_lock = threading.Lock()


def default_store() -> AttributionStore:
    """The process-wide store in the current cache directory (re-made when
    ``$ATTRIBUTION_STUDIO_CACHE`` changes). Never raises; see :class:`AttributionStore`."""
    global _default
    with _default_lock:
        if _default is None or _default.path.parent != cache_path():
            _default = AttributionStore()
        return _default


def store_stats() -> dict:
    """:meth:`AttributionStore.stats` of :func:`default_store`: what the Home page shows."""
    return default_store().stats()
