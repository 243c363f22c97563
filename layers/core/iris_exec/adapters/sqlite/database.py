"""One SQLite file, one connection, schema created on open.

SQLite calls here take tens of microseconds, so the async services call them
directly; a lock serializes them across the threads that may share the file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from iris_exec.domain.errors import StoreUnavailable


def from_row[T](cls: type[T], row: sqlite3.Row, **converted: Any) -> T:
    """A record dataclass from a row whose columns carry its fields' names; ``converted``
    gives the fields whose stored form differs (an enum kept as text, JSON)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{name: row[name] for name in names if name not in converted}, **converted)


SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    name        TEXT,
    created_at  REAL NOT NULL,
    revoked_at  REAL,
    usage_key   TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_project ON api_keys (project_id);

CREATE TABLE IF NOT EXISTS sandboxes (
    sandbox_id        TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    provider          TEXT NOT NULL,
    provider_ref      TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        REAL NOT NULL,
    last_used_at      REAL NOT NULL,
    expires_at        REAL NOT NULL,
    lifetime_deadline REAL NOT NULL,
    closed_at         REAL,
    closed_reason     TEXT,
    detail            TEXT,
    lease_id          TEXT,
    lease_until       REAL,
    executions        INTEGER NOT NULL DEFAULT 0,
    tool_channel      TEXT
);
CREATE INDEX IF NOT EXISTS sandboxes_project_status ON sandboxes (project_id, status);
CREATE INDEX IF NOT EXISTS sandboxes_status_expiry ON sandboxes (status, expires_at);
CREATE INDEX IF NOT EXISTS sandboxes_project_created ON sandboxes (project_id, created_at);

CREATE TABLE IF NOT EXISTS rate_windows (
    subject      TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (subject, window_start)
);
"""

#: Columns added after a table's first release: (table, column, type). Applied to older files.
ADDED_COLUMNS = (
    ("api_keys", "usage_key", "TEXT"),
    ("sandboxes", "tool_channel", "TEXT"),
)


class Database:
    """The local SQLite file. ``extra_schema`` lets other adapters add their tables."""

    def __init__(self, path: Path | str, extra_schema: tuple[str, ...] = ()) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA + "".join(extra_schema))
            self._add_missing_columns()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the local database {self.path}: {exc}") from exc
        self._lock = threading.RLock()

    def _add_missing_columns(self) -> None:
        for table, column, kind in ADDED_COLUMNS:
            present = {row["name"] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @contextmanager
    def cursor(self) -> Iterator[sqlite3.Cursor]:
        """A cursor in autocommit mode."""
        with self._lock:
            try:
                yield self._conn.cursor()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"local database error: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction (BEGIN IMMEDIATE): atomic read-modify-write."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreUnavailable(f"local database error: {exc}") from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
