"""The sandbox registry in SQLite. Conditional updates mirror the DynamoDB adapter's
condition expressions, so both pass the same contract tests."""

from __future__ import annotations

import sqlite3

from iris_exec.adapters.sqlite.database import Database, from_row
from iris_exec.domain.errors import AlreadyExists
from iris_exec.domain.models import GoneReason, Position, SandboxRecord, SandboxStatus

_COLUMNS = (
    "sandbox_id, project_id, provider, provider_ref, status, created_at, last_used_at,"
    " expires_at, lifetime_deadline, closed_at, closed_reason, detail, lease_id, lease_until,"
    " executions, tool_channel"
)


def _record(row: sqlite3.Row) -> SandboxRecord:
    reason = row["closed_reason"]
    return from_row(
        SandboxRecord,
        row,
        status=SandboxStatus(row["status"]),
        closed_reason=GoneReason(reason) if reason else None,
    )


class SqliteSandboxRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: SandboxRecord) -> None:
        try:
            with self._db.cursor() as cur:
                cur.execute(
                    f"INSERT INTO sandboxes ({_COLUMNS}) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.sandbox_id,
                        record.project_id,
                        record.provider,
                        record.provider_ref,
                        record.status.value,
                        record.created_at,
                        record.last_used_at,
                        record.expires_at,
                        record.lifetime_deadline,
                        record.closed_at,
                        record.closed_reason.value if record.closed_reason else None,
                        record.detail,
                        record.lease_id,
                        record.lease_until,
                        record.executions,
                        record.tool_channel,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(record.sandbox_id) from exc

    def get(self, project_id: str, sandbox_id: str) -> SandboxRecord | None:
        with self._db.cursor() as cur:
            row = cur.execute(
                "SELECT * FROM sandboxes WHERE sandbox_id = ? AND project_id = ?",
                (sandbox_id, project_id),
            ).fetchone()
        return _record(row) if row else None

    def list_live(self, project_id: str, now: float) -> list[SandboxRecord]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM sandboxes WHERE project_id = ? AND status = 'running'"
                " AND (expires_at > ? OR (lease_id IS NOT NULL AND lease_until > ?))"
                " ORDER BY last_used_at",
                (project_id, now, now),
            ).fetchall()
        return [_record(r) for r in rows]

    def list_recent(
        self, project_id: str, status: str | None, limit: int, before: Position | None
    ) -> tuple[list[SandboxRecord], Position | None]:
        sql = "SELECT * FROM sandboxes WHERE project_id = ?"
        params: list[object] = [project_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if before is not None:
            sql += " AND (created_at < ? OR (created_at = ? AND sandbox_id < ?))"
            params += [before.created_at, before.created_at, before.item_id]
        sql += " ORDER BY created_at DESC, sandbox_id DESC LIMIT ?"
        params.append(limit + 1)
        with self._db.cursor() as cur:
            rows = cur.execute(sql, params).fetchall()
        records = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        last = records[-1] if records and more else None
        return records, Position(last.created_at, last.sandbox_id) if last else None

    def list_due(self, now: float, limit: int) -> list[SandboxRecord]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM sandboxes WHERE status = 'running' AND expires_at <= ?"
                " AND (lease_id IS NULL OR lease_until <= ?) ORDER BY expires_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
        return [_record(r) for r in rows]

    def list_running(self, provider: str) -> list[SandboxRecord]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM sandboxes WHERE status = 'running' AND provider = ?", (provider,)
            ).fetchall()
        return [_record(r) for r in rows]

    def acquire_lease(
        self, project_id: str, sandbox_id: str, lease_id: str, until: float, now: float
    ) -> bool:
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE sandboxes SET lease_id = ?, lease_until = ?"
                " WHERE sandbox_id = ? AND project_id = ? AND status = 'running'"
                " AND (lease_id IS NULL OR lease_until <= ?)",
                (lease_id, until, sandbox_id, project_id, now),
            )
            return cur.rowcount == 1

    def release_lease(
        self,
        project_id: str,
        sandbox_id: str,
        lease_id: str,
        last_used_at: float,
        expires_at: float,
    ) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE sandboxes SET lease_id = NULL, lease_until = NULL, last_used_at = ?,"
                " expires_at = MIN(?, lifetime_deadline), executions = executions + 1"
                " WHERE sandbox_id = ? AND project_id = ? AND lease_id = ?",
                (last_used_at, expires_at, sandbox_id, project_id, lease_id),
            )

    def mark_gone(
        self,
        project_id: str,
        sandbox_id: str,
        reason: GoneReason,
        at: float,
        detail: str | None = None,
        *,
        only_if_idle: bool = False,
    ) -> bool:
        idle = " AND (lease_id IS NULL OR lease_until <= ?)" if only_if_idle else ""
        params: tuple[object, ...] = (
            reason.status.value,
            reason.value,
            at,
            detail,
            sandbox_id,
            project_id,
        )
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE sandboxes SET status = ?, closed_reason = ?, closed_at = ?, detail = ?,"
                " lease_id = NULL, lease_until = NULL"
                " WHERE sandbox_id = ? AND project_id = ? AND status = 'running'" + idle,
                (*params, at) if only_if_idle else params,
            )
            return cur.rowcount == 1
