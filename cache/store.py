"""The attribution store: finished results in SQLite, keyed by a content hash.

The key covers the model's weights fingerprint, the encoded input, the method, its resolved
parameters and the target, so a repeated request is answered without touching the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

ENV_VAR = "ATTRIBUTION_STUDIO_CACHE"
SCHEMA_VERSION = 3  # bump when stored scores change meaning


def cache_dir() -> Path:
    """The cache directory: ``$ATTRIBUTION_STUDIO_CACHE`` or ``~/.cache/attribution-studio``."""
    path = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "attribution-studio")
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_key(*parts: Any) -> str:
    """SHA-256 of the JSON of ``parts`` (sorted keys), prefixed by the schema version."""
    blob = json.dumps([SCHEMA_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class AttributionStore:
    """A small key -> JSON store in one SQLite file, safe to share across threads.

    Args:
        path: the SQLite file; defaults to ``attributions.sqlite`` in :func:`cache_dir`.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "attributions.sqlite"
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                        " created REAL DEFAULT (julianday('now')))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def get(self, key: str) -> dict | None:
        with self._lock, self._connect() as con:
            row = con.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        blob = json.dumps(value)
        with self._lock, self._connect() as con:
            con.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (key, blob))

    def __len__(self) -> int:
        with self._lock, self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def clear(self) -> None:
        with self._lock, self._connect() as con:
            con.execute("DELETE FROM results")


_default: AttributionStore | None = None
_default_lock = threading.Lock()


def default_store() -> AttributionStore:
    """The process-wide store in the current cache directory."""
    global _default
    with _default_lock:
        if _default is None or _default.path.parent != cache_dir():
            _default = AttributionStore()
        return _default
