"""The IRIS tool store in SQLite (the embedded default: same file as the rest of local state).

The schema mirrors `infra/sql/001_tool_store.sql` (PostgreSQL), with JSON kept as text."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from iris_exec.adapters.sqlite.database import Database
from iris_exec.domain.tools import (
    EvaluationStats,
    LineageEntry,
    MetricSummary,
    MiningRecord,
    PromptSummary,
    PromptVersion,
    ToolCaller,
    Vote,
    VoteTally,
)

TOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS tool_events (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    session_id   TEXT,
    execution_id TEXT,
    event        TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_events_project ON tool_events (project_id, created_at);

CREATE TABLE IF NOT EXISTS tool_evaluations (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    session_id   TEXT,
    execution_id TEXT,
    input        TEXT NOT NULL,
    output       TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    score        REAL NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_evaluations_project ON tool_evaluations (project_id, created_at);

CREATE TABLE IF NOT EXISTS tool_votes (
    project_id   TEXT NOT NULL,
    consensus_id TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    vote         TEXT NOT NULL,
    session_id   TEXT,
    execution_id TEXT,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (project_id, consensus_id, agent_id)
);

CREATE TABLE IF NOT EXISTS tool_prompt_heads (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    latest     INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS tool_prompts (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    template   TEXT NOT NULL,
    variables  TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project_id, name, version)
);

CREATE TABLE IF NOT EXISTS tool_lineage (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    signature  TEXT NOT NULL,
    parent_id  TEXT,
    input      TEXT NOT NULL,
    output     TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_lineage_signature
    ON tool_lineage (project_id, signature, created_at);

CREATE TABLE IF NOT EXISTS tool_metrics (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    session_id   TEXT,
    execution_id TEXT,
    metric       TEXT NOT NULL,
    value        REAL NOT NULL,
    tags         TEXT NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_metrics_name ON tool_metrics (project_id, metric, created_at);

-- Bytes the project's tool calls have stored (its storage quota, IRIS_TOOL_STORAGE_QUOTA_BYTES).
CREATE TABLE IF NOT EXISTS tool_usage (
    project_id TEXT PRIMARY KEY,
    bytes      INTEGER NOT NULL
);
"""

_MINING = """
SELECT txn, kind, name, metadata FROM (SELECT *, SUM(LENGTH(metadata))
    OVER (ORDER BY created_at DESC ROWS UNBOUNDED PRECEDING) AS running FROM (
    SELECT COALESCE(session_id, execution_id, id) AS txn, 'event' AS kind, event AS name,
           metadata, created_at FROM tool_events WHERE project_id = :p
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'evaluation', verdict, NULL, created_at
           FROM tool_evaluations WHERE project_id = :p
    UNION ALL
    SELECT COALESCE(session_id, execution_id, project_id || '/' || consensus_id || '/' || agent_id),
           'vote', vote, NULL, updated_at FROM tool_votes WHERE project_id = :p
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'metric', metric, NULL, created_at
           FROM tool_metrics WHERE project_id = :p
) ORDER BY created_at DESC LIMIT :limit) WHERE COALESCE(running, 0) <= :max_bytes
ORDER BY created_at DESC
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteToolStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_event(
        self, caller: ToolCaller, record_id: str, event: str, metadata: dict[str, Any], at: float
    ) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO tool_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, event,
                 _dumps(metadata), at),
            )  # fmt: skip

    def add_evaluation(
        self,
        caller: ToolCaller,
        record_id: str,
        input_text: str,
        output_text: str,
        verdict: str,
        score: float,
        at: float,
    ) -> EvaluationStats:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO tool_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, input_text,
                 output_text, verdict, score, at),
            )  # fmt: skip
            row = cur.execute(
                "SELECT COUNT(*) AS total,"
                " SUM(verdict = 'correct') AS correct, SUM(verdict = 'partial') AS partial,"
                " SUM(verdict = 'incorrect') AS incorrect, SUM(score) AS score_sum"
                " FROM tool_evaluations WHERE project_id = ?",
                (caller.project_id,),
            ).fetchone()
        return EvaluationStats(
            row["total"], row["correct"], row["partial"], row["incorrect"], row["score_sum"]
        )

    def put_vote(
        self, caller: ToolCaller, consensus_id: str, agent_id: str, vote: str, at: float
    ) -> VoteTally:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO tool_votes VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (project_id, consensus_id, agent_id) DO UPDATE SET"
                " vote = excluded.vote, session_id = excluded.session_id,"
                " execution_id = excluded.execution_id, updated_at = excluded.updated_at",
                (caller.project_id, consensus_id, agent_id, vote, caller.session_id,
                 caller.execution_id, at),
            )  # fmt: skip
            return self._tally(cur, caller.project_id, consensus_id)

    def get_votes(
        self, project_id: str, consensus_id: str, limit: int
    ) -> tuple[list[Vote], VoteTally]:
        with self._db.transaction() as cur:
            rows = cur.execute(
                "SELECT consensus_id, agent_id, vote, updated_at FROM tool_votes"
                " WHERE project_id = ? AND consensus_id = ? ORDER BY agent_id LIMIT ?",
                (project_id, consensus_id, limit),
            ).fetchall()
            votes = [
                Vote(r["consensus_id"], r["agent_id"], r["vote"], r["updated_at"]) for r in rows
            ]
            return votes, self._tally(cur, project_id, consensus_id)

    @staticmethod
    def _tally(cur: sqlite3.Cursor, project_id: str, consensus_id: str) -> VoteTally:
        row = cur.execute(
            "SELECT COALESCE(SUM(vote = 'approve'), 0) AS approve,"
            " COALESCE(SUM(vote = 'reject'), 0) AS reject,"
            " COALESCE(SUM(vote = 'abstain'), 0) AS abstain"
            " FROM tool_votes WHERE project_id = ? AND consensus_id = ?",
            (project_id, consensus_id),
        ).fetchone()
        return VoteTally(int(row["approve"]), int(row["reject"]), int(row["abstain"]))

    def save_prompt(
        self, project_id: str, name: str, template: str, variables: list[str], at: float
    ) -> PromptVersion:
        with self._db.transaction() as cur:
            version = cur.execute(
                "INSERT INTO tool_prompt_heads VALUES (?, ?, 1, ?)"
                " ON CONFLICT (project_id, name) DO UPDATE SET latest = latest + 1,"
                " updated_at = excluded.updated_at RETURNING latest",
                (project_id, name, at),
            ).fetchone()["latest"]
            cur.execute(
                "INSERT INTO tool_prompts VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, name, version, template, _dumps(variables), at),
            )
        return PromptVersion(name, int(version), template, variables, at)

    def get_prompt(self, project_id: str, name: str, version: int | None) -> PromptVersion | None:
        with self._db.cursor() as cur:
            if version is None:
                row = cur.execute(
                    "SELECT * FROM tool_prompts WHERE project_id = ? AND name = ?"
                    " ORDER BY version DESC LIMIT 1",
                    (project_id, name),
                ).fetchone()
            else:
                row = cur.execute(
                    "SELECT * FROM tool_prompts WHERE project_id = ? AND name = ? AND version = ?",
                    (project_id, name, version),
                ).fetchone()
        if row is None:
            return None
        return PromptVersion(
            row["name"], row["version"], row["template"], json.loads(row["variables"]),
            row["created_at"],
        )  # fmt: skip

    def list_prompts(self, project_id: str, after: str | None, limit: int) -> list[PromptSummary]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                "SELECT name, latest, updated_at FROM tool_prompt_heads WHERE project_id = ?"
                " AND (? IS NULL OR name > ?) ORDER BY name LIMIT ?",
                (project_id, after, after, limit),
            ).fetchall()
        return [PromptSummary(r["name"], r["latest"], r["updated_at"]) for r in rows]

    def add_lineage(
        self,
        project_id: str,
        record_id: str,
        signature: str,
        parent_id: str | None,
        input_value: Any,
        output_value: Any,
        at: float,
    ) -> bool:
        with self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO tool_lineage SELECT ?, ?, ?, ?, ?, ?, ?"
                " WHERE ? IS NULL OR EXISTS"
                " (SELECT 1 FROM tool_lineage WHERE project_id = ? AND id = ?)",
                (record_id, project_id, signature, parent_id, _dumps(input_value),
                 _dumps(output_value), at, parent_id, project_id, parent_id),
            )  # fmt: skip
            return cur.rowcount == 1

    def get_lineage(
        self, project_id: str, signature: str, after: str | None, limit: int, max_bytes: int
    ) -> tuple[list[LineageEntry], bool] | None:
        with self._db.transaction() as cur:
            start = (float("-inf"), -1)
            if after is not None:
                row = cur.execute(
                    "SELECT created_at, rowid FROM tool_lineage"
                    " WHERE project_id = ? AND signature = ? AND id = ?",
                    (project_id, signature, after),
                ).fetchone()
                if row is None:
                    return None
                start = (row["created_at"], row["rowid"])
            # Sizes add up in the database, so that a page of huge entries is never read whole:
            # first which entries fit, then only those.
            sized = cur.execute(
                "SELECT id, running - size < ? AS fits FROM (SELECT id, created_at,"
                " rowid AS seq, LENGTH(input) + LENGTH(output) AS size,"
                " SUM(LENGTH(input) + LENGTH(output))"
                " OVER (ORDER BY created_at, rowid ROWS UNBOUNDED PRECEDING) AS running"
                " FROM tool_lineage WHERE project_id = ? AND signature = ?"
                " AND (created_at, rowid) > (?, ?) ORDER BY created_at, rowid LIMIT ?)"
                " ORDER BY created_at, seq",
                (max_bytes, project_id, signature, *start, limit + 1),
            ).fetchall()
            ids = [r["id"] for r in sized[:limit] if r["fits"]]
            rows = cur.execute(
                f"SELECT * FROM tool_lineage WHERE id IN ({', '.join('?' for _ in ids)})"
                " ORDER BY created_at, rowid",
                ids,
            ).fetchall()
        entries = [
            LineageEntry(
                r["id"],
                r["signature"],
                r["parent_id"],
                json.loads(r["input"]),
                json.loads(r["output"]),
                r["created_at"],
            )
            for r in rows
        ]
        return entries, len(sized) > len(entries)

    def add_metric(
        self,
        caller: ToolCaller,
        record_id: str,
        metric: str,
        value: float,
        tags: dict[str, str],
        at: float,
    ) -> None:
        with self._db.cursor() as cur:
            cur.execute(
                "INSERT INTO tool_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, metric,
                 value, _dumps(tags), at),
            )  # fmt: skip

    def metric_summary(
        self, project_id: str, metric: str, since: float | None, sample: int
    ) -> MetricSummary:
        where = "WHERE project_id = ? AND metric = ? AND created_at >= ?"
        params = (project_id, metric, float("-inf") if since is None else since)
        with self._db.transaction() as cur:
            row = cur.execute(
                f"SELECT COUNT(*) AS n, MIN(value) AS lo, MAX(value) AS hi,"
                f" COALESCE(SUM(value), 0) AS total FROM tool_metrics {where}",
                params,
            ).fetchone()
            recent = cur.execute(
                f"SELECT value FROM tool_metrics {where} ORDER BY created_at DESC LIMIT ?",
                (*params, sample),
            ).fetchall()
        return MetricSummary(
            int(row["n"]), row["lo"], row["hi"], float(row["total"]),
            [float(r["value"]) for r in recent],
        )  # fmt: skip

    def mining_records(self, project_id: str, limit: int, max_bytes: int) -> list[MiningRecord]:
        with self._db.cursor() as cur:
            rows = cur.execute(
                _MINING, {"p": project_id, "limit": limit, "max_bytes": max_bytes}
            ).fetchall()
        return [
            MiningRecord(
                r["txn"], r["kind"], r["name"], json.loads(r["metadata"]) if r["metadata"] else None
            )
            for r in rows
        ]

    def charge(self, project_id: str, size: int, quota: int) -> int | None:
        if size > quota:
            return None
        with self._db.cursor() as cur:
            row = cur.execute(
                "INSERT INTO tool_usage VALUES (?, ?) ON CONFLICT (project_id) DO UPDATE"
                " SET bytes = bytes + excluded.bytes WHERE bytes + excluded.bytes <= ?"
                " RETURNING bytes",
                (project_id, size, quota),
            ).fetchone()
        return None if row is None else int(row["bytes"])
