"""The audit trail and idempotency records in the local SQLite file."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from iris_exec.adapters.sqlite.database import Database, from_row
from iris_exec.domain.models import AuditEvent, IdempotencyHit

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    event_id     TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    sandbox_id   TEXT,
    execution_id TEXT,
    duration_ms  REAL,
    outcome      TEXT,
    output_bytes INTEGER,
    detail       TEXT
);
CREATE INDEX IF NOT EXISTS audit_project_at ON audit (project_id, at);

CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    state        TEXT NOT NULL,
    response     TEXT,
    locked_until REAL NOT NULL,
    expires_at   REAL NOT NULL
);
"""


def _event(row: sqlite3.Row) -> AuditEvent:
    return from_row(AuditEvent, row)


class SqliteAuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, event: AuditEvent) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.event_id, event.project_id, event.at, event.kind, event.actor,
                 event.sandbox_id, event.execution_id, event.duration_ms, event.outcome,
                 event.output_bytes, event.detail),
            )  # fmt: skip

    def query(
        self, project_id: str, since: float | None, until: float | None, limit: int
    ) -> list[AuditEvent]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM audit WHERE project_id = ? AND at >= ? AND at <= ?"
                " ORDER BY at DESC, rowid DESC LIMIT ?",
                (project_id, since or 0.0, until if until is not None else 1e18, limit),
            ).fetchall()
        return [_event(r) for r in rows]

    def purge(self, before: float) -> int:
        with self._db.cursor() as cur:
            cur.execute("DELETE FROM audit WHERE at < ?", (before,))
            cur.execute("DELETE FROM idempotency WHERE expires_at < ?", (before,))
            return cur.rowcount


class SqliteIdempotencyStore:
    def __init__(self, db: Database, retention_s: float) -> None:
        self._db = db
        self._retention_s = retention_s

    def begin(self, key: str, fingerprint: str, now: float, lock_s: float) -> IdempotencyHit | None:
        with self._db.transaction() as cur:
            row = cur.execute("SELECT * FROM idempotency WHERE key = ?", (key,)).fetchone()
            stale = row is not None and (
                row["expires_at"] <= now
                or (row["state"] == "in_progress" and row["locked_until"] <= now)
            )
            if row is None or stale:
                cur.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, 'in_progress', NULL, ?, ?)",
                    (key, fingerprint, now + lock_s, now + self._retention_s),
                )
                return None
        if row["fingerprint"] != fingerprint:
            return IdempotencyHit("mismatch")
        if row["state"] == "completed":
            response: dict[str, Any] = json.loads(row["response"])
            return IdempotencyHit("completed", response)
        return IdempotencyHit("in_progress")

    def complete(self, key: str, fingerprint: str, response: dict[str, Any], now: float) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE idempotency SET state = 'completed', response = ?, expires_at = ?"
                " WHERE key = ? AND fingerprint = ?",
                (json.dumps(response), now + self._retention_s, key, fingerprint),
            )

    def release(self, key: str, fingerprint: str) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "DELETE FROM idempotency WHERE key = ? AND fingerprint = ?"
                " AND state = 'in_progress'",
                (key, fingerprint),
            )
