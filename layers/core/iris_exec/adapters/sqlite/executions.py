"""Asynchronous executions and their log lines in the local SQLite file."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from iris_exec.adapters import logchunks
from iris_exec.adapters.sqlite.database import Database
from iris_exec.domain.models import (
    UNFINISHED_STATUSES,
    ExecutionEnd,
    ExecutionRecord,
    Position,
)

QUEUED = frozenset({"queued"})

EXECUTIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    execution_id    TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL,
    sandbox_id      TEXT NOT NULL,
    status          TEXT NOT NULL,
    request         TEXT NOT NULL,
    lease_id        TEXT NOT NULL,
    sandbox_created INTEGER NOT NULL,
    created_at      REAL NOT NULL,
    alive_until     REAL NOT NULL,
    actor           TEXT NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    result          TEXT,
    reason          TEXT,
    log_lines       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS executions_open ON executions (status, alive_until);
CREATE INDEX IF NOT EXISTS executions_project_created ON executions (project_id, created_at);

-- Log lines in chunks (see adapters/logchunks.py); one row per line made a megabyte of
-- newlines a hundred megabytes of file. Logs of the row-per-line table are not carried over.
DROP TABLE IF EXISTS execution_logs;
CREATE TABLE IF NOT EXISTS execution_log_chunks (
    execution_id TEXT NOT NULL REFERENCES executions (execution_id) ON DELETE CASCADE,
    first_line   INTEGER NOT NULL,
    line_count   INTEGER NOT NULL,
    data         TEXT NOT NULL,
    PRIMARY KEY (execution_id, first_line)
);
"""


def _record(row: sqlite3.Row, with_result: bool = True) -> ExecutionRecord:
    result = json.loads(row["result"]) if row["result"] is not None else None
    execution_ms = result.get("executionTime") if isinstance(result, dict) else None
    return ExecutionRecord(
        execution_id=row["execution_id"],
        project_id=row["project_id"],
        sandbox_id=row["sandbox_id"],
        status=row["status"],
        request=json.loads(row["request"]),
        lease_id=row["lease_id"],
        sandbox_created=bool(row["sandbox_created"]),
        created_at=row["created_at"],
        alive_until=row["alive_until"],
        actor=row["actor"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=result if with_result else None,
        reason=row["reason"],
        log_lines=row["log_lines"],
        execution_ms=float(execution_ms) if isinstance(execution_ms, int | float) else None,
    )


class SqliteExecutionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: ExecutionRecord) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.execution_id, record.project_id, record.sandbox_id, record.status,
                 json.dumps(record.request), record.lease_id, int(record.sandbox_created),
                 record.created_at, record.alive_until, record.actor, record.started_at,
                 record.finished_at,
                 json.dumps(record.result) if record.result is not None else None,
                 record.reason, record.log_lines),
            )  # fmt: skip

    def get(self, project_id: str, execution_id: str) -> ExecutionRecord | None:
        with self._db.cursor() as cur:
            row = cur.execute(
                "SELECT * FROM executions WHERE execution_id = ? AND project_id = ?",
                (execution_id, project_id),
            ).fetchone()
        return _record(row) if row is not None else None

    def _change(
        self,
        project_id: str,
        execution_id: str,
        changes: dict[str, Any],
        expect: frozenset[str],
        alive_before: float | None = None,
    ) -> bool:
        """Set ``changes`` (column -> value) if the status is one of ``expect``."""
        statuses = sorted(expect)
        sql = (
            f"UPDATE executions SET {', '.join(f'{name} = ?' for name in changes)}"
            " WHERE execution_id = ? AND project_id = ?"
            f" AND status IN ({', '.join('?' for _ in statuses)})"
        )
        params: list[Any] = [*changes.values(), execution_id, project_id, *statuses]
        if alive_before is not None:
            sql += " AND alive_until < ?"
            params.append(alive_before)
        with self._db.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount == 1

    def start(
        self, project_id: str, execution_id: str, *, started_at: float, alive_until: float
    ) -> bool:
        changes = {"status": "running", "started_at": started_at, "alive_until": alive_until}
        return self._change(project_id, execution_id, changes, QUEUED)

    def beat(self, project_id: str, execution_id: str, *, alive_until: float) -> bool:
        return self._change(
            project_id, execution_id, {"alive_until": alive_until}, UNFINISHED_STATUSES
        )

    def finish(
        self,
        project_id: str,
        execution_id: str,
        end: ExecutionEnd,
        *,
        alive_before: float | None = None,
    ) -> bool:
        changes: dict[str, Any] = {
            "status": end.status,
            "finished_at": end.finished_at,
            "result": None if end.result is None else json.dumps(end.result),
            "reason": end.reason,
        }
        if end.log_lines is not None:
            changes["log_lines"] = end.log_lines
        return self._change(project_id, execution_id, changes, UNFINISHED_STATUSES, alive_before)

    def append_logs(self, project_id: str, execution_id: str, first: int, lines: list[str]) -> None:
        with self._db.transaction() as cur:
            owned = cur.execute(
                "SELECT 1 FROM executions WHERE execution_id = ? AND project_id = ?",
                (execution_id, project_id),
            ).fetchone()
            if owned is None:
                return
            # REPLACE: a retried flush starts its chunks at the same lines, with as many or more.
            cur.executemany(
                "INSERT OR REPLACE INTO execution_log_chunks VALUES (?, ?, ?, ?)",
                [
                    (execution_id, number, len(chunk), logchunks.pack(chunk))
                    for number, chunk in logchunks.chunks(first + 1, lines)
                ],
            )

    def logs(self, project_id: str, execution_id: str, after: int, limit: int) -> list[str]:
        lines: list[str] = []
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT c.first_line, c.data FROM execution_log_chunks c"
                " JOIN executions e USING (execution_id)"
                " WHERE c.execution_id = ? AND e.project_id = ? AND c.first_line > ?"
                " AND c.first_line + c.line_count > ? ORDER BY c.first_line",
                (execution_id, project_id, after - logchunks.CHUNK_LINES, after + 1),
            )
            for row in rows:
                if row["first_line"] > after + len(lines) + 1:
                    break  # a gap: never skip a line the cursor has not passed
                skip = after + len(lines) + 1 - row["first_line"]
                lines += logchunks.unpack(row["data"])[skip : skip + limit - len(lines)]
                if len(lines) >= limit:
                    break
        return lines

    def list_recent(
        self,
        project_id: str,
        *,
        sandbox_id: str | None,
        status: str | None,
        limit: int,
        before: Position | None,
    ) -> tuple[list[ExecutionRecord], Position | None]:
        sql = "SELECT * FROM executions WHERE project_id = ?"
        params: list[Any] = [project_id]
        if sandbox_id is not None:
            sql += " AND sandbox_id = ?"
            params.append(sandbox_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND execution_id < ?))"
            params += [before.created_at, before.created_at, before.item_id]
        sql += " ORDER BY created_at DESC, execution_id DESC LIMIT ?"
        params.append(limit + 1)
        with self._db.cursor() as cur:
            rows = cur.execute(sql, params).fetchall()
        records = [_record(r, with_result=False) for r in rows[:limit]]
        last = records[-1] if records and len(rows) > limit else None
        return records, Position(last.created_at, last.execution_id) if last else None

    def list_stale(self, now: float, limit: int) -> list[ExecutionRecord]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM executions WHERE status IN ('queued', 'running')"
                " AND alive_until < ? ORDER BY alive_until LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_record(r) for r in rows]

    def purge(self, before: float) -> int:
        with self._db.cursor() as cur:
            cur.execute(
                "DELETE FROM executions WHERE status NOT IN ('queued', 'running')"
                " AND finished_at < ?",
                (before,),
            )
            return cur.rowcount
