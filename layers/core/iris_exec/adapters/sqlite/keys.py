"""API keys in SQLite (hashes only)."""

from __future__ import annotations

import sqlite3

from iris_exec.adapters.sqlite.database import Database, from_row
from iris_exec.domain.errors import AlreadyExists
from iris_exec.domain.models import ApiKeyRecord


def _record(row: sqlite3.Row) -> ApiKeyRecord:
    return from_row(ApiKeyRecord, row)


class SqliteKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: ApiKeyRecord) -> None:
        try:
            with self._db.cursor() as cur:
                cur.execute(
                    "INSERT INTO api_keys (key_id, key_hash, prefix, project_id, name, created_at,"
                    " revoked_at, usage_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.key_id,
                        record.key_hash,
                        record.prefix,
                        record.project_id,
                        record.name,
                        record.created_at,
                        record.revoked_at,
                        record.usage_key,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(record.key_id) from exc

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        with self._db.cursor() as cur:
            row = cur.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return _record(row) if row else None

    def list(self, project_id: str | None = None) -> list[ApiKeyRecord]:
        with self._db.cursor() as cur:
            if project_id is None:
                rows = cur.execute("SELECT * FROM api_keys ORDER BY created_at").fetchall()
            else:
                rows = cur.execute(
                    "SELECT * FROM api_keys WHERE project_id = ? ORDER BY created_at", (project_id,)
                ).fetchall()
        return [_record(r) for r in rows]

    def delete(self, key_id: str) -> bool:
        with self._db.cursor() as cur:
            cur.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,))
            return cur.rowcount == 1

    def revoke(self, key_id: str, at: float) -> bool:
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
            return cur.rowcount == 1
