"""The IRIS tool store in SQLite (the embedded default: same file as the rest of local state).

The schema mirrors `infra/sql/001_tool_store.sql` (PostgreSQL), with JSON kept as text."""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.tool_sql import SqlToolStore

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


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteToolStore(SqlToolStore):
    """JSON kept as text; rows of equal time ordered by rowid."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _tx(self) -> AbstractContextManager[sqlite3.Cursor]:
        return self._db.transaction()

    def _json_in(self, value: Any) -> str:
        return _dumps(value)

    def _json_out(self, value: Any) -> Any:
        return json.loads(value)

    def _bytes_of(self, column: str) -> str:
        return f"LENGTH(CAST({column} AS BLOB))"
