"""Request counters per (subject, window) in SQLite (services/ratelimit.py adds them up)."""

from __future__ import annotations

from iris_exec.adapters.sqlite.database import Database


class SqliteRateLimitStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def hit(self, subject: str, window_start: int, window_s: int) -> int:
        with self._db.transaction() as cur:
            row = cur.execute(
                "INSERT INTO rate_windows (subject, window_start, count, expires_at)"
                " VALUES (?, ?, 1, ?)"
                " ON CONFLICT (subject, window_start) DO UPDATE SET count = count + 1"
                " RETURNING count",
                (subject, window_start, window_start + 2 * window_s),
            ).fetchone()
            # Old windows are useless; drop them now and then (cheap with the primary key).
            if row["count"] == 1:
                cur.execute("DELETE FROM rate_windows WHERE expires_at < ?", (window_start,))
        return int(row["count"])

    def recent(self, subject: str, since: int) -> dict[int, int]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT window_start, count FROM rate_windows"
                " WHERE subject = ? AND window_start >= ?",
                (subject, since),
            ).fetchall()
        return {int(r["window_start"]): int(r["count"]) for r in rows}

    def unhit(self, subject: str, window_start: int) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "UPDATE rate_windows SET count = count - 1"
                " WHERE subject = ? AND window_start = ? AND count > 0",
                (subject, window_start),
            )
