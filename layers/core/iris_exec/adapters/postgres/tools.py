"""The IRIS tool store in PostgreSQL (Supabase), through psycopg.

Works with Supabase's pooled connection string (PgBouncer in transaction mode): no
server-side prepared statements, and every operation is one short transaction. The
schema is `infra/sql/001_tool_store.sql`, applied with psql."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from iris_exec.domain.errors import StoreUnavailable
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

_MINING = """
SELECT txn, kind, name, metadata FROM (SELECT *, SUM(OCTET_LENGTH(metadata::text))
    OVER (ORDER BY created_at DESC ROWS UNBOUNDED PRECEDING) AS running FROM (
    SELECT COALESCE(session_id, execution_id, id) AS txn, 'event' AS kind, event AS name,
           metadata, created_at FROM iris.tool_events WHERE project_id = %(p)s
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'evaluation', verdict, NULL, created_at
           FROM iris.tool_evaluations WHERE project_id = %(p)s
    UNION ALL
    SELECT COALESCE(session_id, execution_id, project_id || '/' || consensus_id || '/' || agent_id),
           'vote', vote, NULL, updated_at FROM iris.tool_votes WHERE project_id = %(p)s
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'metric', metric, NULL, created_at
           FROM iris.tool_metrics WHERE project_id = %(p)s
) AS records ORDER BY created_at DESC LIMIT %(limit)s) AS sized
WHERE COALESCE(running, 0) <= %(max_bytes)s ORDER BY created_at DESC
"""


class PostgresToolStore:
    """One connection, opened lazily and reopened after a failure."""

    def __init__(self, dsn: str | Callable[[], str], *, connect_timeout_s: int = 5) -> None:
        # A callable lets the connection string come from Secrets Manager on first use.
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn() if callable(self._dsn) else self._dsn,
                row_factory=dict_row,
                prepare_threshold=None,  # PgBouncer transaction pooling has no prepared statements
                connect_timeout=self._timeout,
                autocommit=False,
            )
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError as exc:
                if self._conn is not None:
                    self._conn.close()
                raise StoreUnavailable(
                    f"tool store unreachable: {exc.sqlstate or 'connection'}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def add_event(
        self, caller: ToolCaller, record_id: str, event: str, metadata: dict[str, Any], at: float
    ) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_events VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, event,
                 Jsonb(metadata), at),
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
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_evaluations VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, input_text,
                 output_text, verdict, score, at),
            )  # fmt: skip
            cur.execute(
                "SELECT COUNT(*) AS total,"
                " COUNT(*) FILTER (WHERE verdict = 'correct') AS correct,"
                " COUNT(*) FILTER (WHERE verdict = 'partial') AS partial,"
                " COUNT(*) FILTER (WHERE verdict = 'incorrect') AS incorrect,"
                " SUM(score) AS score_sum FROM iris.tool_evaluations WHERE project_id = %s",
                (caller.project_id,),
            )
            row = cur.fetchone()
        assert row is not None
        return EvaluationStats(
            int(row["total"]), int(row["correct"]), int(row["partial"]), int(row["incorrect"]),
            float(row["score_sum"]),
        )  # fmt: skip

    def put_vote(
        self, caller: ToolCaller, consensus_id: str, agent_id: str, vote: str, at: float
    ) -> VoteTally:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_votes VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (project_id, consensus_id, agent_id) DO UPDATE SET"
                " vote = EXCLUDED.vote, session_id = EXCLUDED.session_id,"
                " execution_id = EXCLUDED.execution_id, updated_at = EXCLUDED.updated_at",
                (caller.project_id, consensus_id, agent_id, vote, caller.session_id,
                 caller.execution_id, at),
            )  # fmt: skip
            return self._tally(cur, caller.project_id, consensus_id)

    def get_votes(
        self, project_id: str, consensus_id: str, limit: int
    ) -> tuple[list[Vote], VoteTally]:
        with self._tx() as cur:
            cur.execute(
                "SELECT consensus_id, agent_id, vote, updated_at FROM iris.tool_votes"
                " WHERE project_id = %s AND consensus_id = %s ORDER BY agent_id LIMIT %s",
                (project_id, consensus_id, limit),
            )
            votes = [
                Vote(r["consensus_id"], r["agent_id"], r["vote"], r["updated_at"]) for r in cur
            ]
            return votes, self._tally(cur, project_id, consensus_id)

    @staticmethod
    def _tally(
        cur: psycopg.Cursor[dict[str, Any]], project_id: str, consensus_id: str
    ) -> VoteTally:
        cur.execute(
            "SELECT COUNT(*) FILTER (WHERE vote = 'approve') AS approve,"
            " COUNT(*) FILTER (WHERE vote = 'reject') AS reject,"
            " COUNT(*) FILTER (WHERE vote = 'abstain') AS abstain"
            " FROM iris.tool_votes WHERE project_id = %s AND consensus_id = %s",
            (project_id, consensus_id),
        )
        row = cur.fetchone()
        assert row is not None
        return VoteTally(int(row["approve"]), int(row["reject"]), int(row["abstain"]))

    def save_prompt(
        self, project_id: str, name: str, template: str, variables: list[str], at: float
    ) -> PromptVersion:
        with self._tx() as cur:
            # The row lock taken by the upsert serializes concurrent saves of one name.
            cur.execute(
                "INSERT INTO iris.tool_prompt_heads AS h VALUES (%s, %s, 1, %s)"
                " ON CONFLICT (project_id, name) DO UPDATE SET latest = h.latest + 1,"
                " updated_at = EXCLUDED.updated_at RETURNING latest",
                (project_id, name, at),
            )
            head = cur.fetchone()
            assert head is not None
            version = int(head["latest"])
            cur.execute(
                "INSERT INTO iris.tool_prompts VALUES (%s, %s, %s, %s, %s, %s)",
                (project_id, name, version, template, Jsonb(variables), at),
            )
        return PromptVersion(name, version, template, variables, at)

    def get_prompt(self, project_id: str, name: str, version: int | None) -> PromptVersion | None:
        with self._tx() as cur:
            if version is None:
                cur.execute(
                    "SELECT * FROM iris.tool_prompts WHERE project_id = %s AND name = %s"
                    " ORDER BY version DESC LIMIT 1",
                    (project_id, name),
                )
            else:
                cur.execute(
                    "SELECT * FROM iris.tool_prompts WHERE project_id = %s AND name = %s"
                    " AND version = %s",
                    (project_id, name, version),
                )
            row = cur.fetchone()
        if row is None:
            return None
        return PromptVersion(
            row["name"], row["version"], row["template"], list(row["variables"]), row["created_at"]
        )

    def list_prompts(self, project_id: str, after: str | None, limit: int) -> list[PromptSummary]:
        with self._tx() as cur:
            cur.execute(
                "SELECT name, latest, updated_at FROM iris.tool_prompt_heads WHERE project_id = %s"
                " AND (%s::text IS NULL OR name > %s) ORDER BY name LIMIT %s",
                (project_id, after, after, limit),
            )
            return [PromptSummary(r["name"], r["latest"], r["updated_at"]) for r in cur]

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
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_lineage"
                " (id, project_id, signature, parent_id, input, output, created_at)"
                " SELECT %s, %s, %s, %s, %s, %s, %s"
                " WHERE %s::text IS NULL OR EXISTS"
                " (SELECT 1 FROM iris.tool_lineage WHERE project_id = %s AND id = %s)",
                (record_id, project_id, signature, parent_id, Jsonb(input_value),
                 Jsonb(output_value), at, parent_id, project_id, parent_id),
            )  # fmt: skip
            return cur.rowcount == 1

    def get_lineage(
        self, project_id: str, signature: str, after: str | None, limit: int, max_bytes: int
    ) -> tuple[list[LineageEntry], bool] | None:
        with self._tx() as cur:
            start: tuple[float, int] = (float("-inf"), -1)
            if after is not None:
                cur.execute(
                    "SELECT created_at, seq FROM iris.tool_lineage"
                    " WHERE project_id = %s AND signature = %s AND id = %s",
                    (project_id, signature, after),
                )
                found = cur.fetchone()
                if found is None:
                    return None
                start = (found["created_at"], found["seq"])
            # Sizes add up in the database, so that a page of huge entries is never read whole:
            # first which entries fit, then only those.
            cur.execute(
                "SELECT id, running - size < %s AS fits FROM (SELECT id, created_at, seq,"
                " OCTET_LENGTH(input::text) + OCTET_LENGTH(output::text) AS size,"
                " SUM(OCTET_LENGTH(input::text) + OCTET_LENGTH(output::text))"
                " OVER (ORDER BY created_at, seq ROWS UNBOUNDED PRECEDING) AS running"
                " FROM iris.tool_lineage WHERE project_id = %s AND signature = %s"
                " AND (created_at, seq) > (%s, %s) ORDER BY created_at, seq LIMIT %s) AS page"
                " ORDER BY created_at, seq",
                (max_bytes, project_id, signature, *start, limit + 1),
            )
            sized = cur.fetchall()
            ids = [r["id"] for r in sized[:limit] if r["fits"]]
            cur.execute(
                "SELECT * FROM iris.tool_lineage WHERE id = ANY(%s) ORDER BY created_at, seq",
                (ids,),
            )
            entries = [
                LineageEntry(
                    r["id"],
                    r["signature"],
                    r["parent_id"],
                    r["input"],
                    r["output"],
                    r["created_at"],
                )
                for r in cur
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
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_metrics VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, metric,
                 value, Jsonb(tags), at),
            )  # fmt: skip

    def metric_summary(
        self, project_id: str, metric: str, since: float | None, sample: int
    ) -> MetricSummary:
        where = "WHERE project_id = %s AND metric = %s AND created_at >= %s"
        params = (project_id, metric, float("-inf") if since is None else since)
        with self._tx() as cur:
            cur.execute(
                f"SELECT COUNT(*) AS n, MIN(value) AS lo, MAX(value) AS hi,"
                f" COALESCE(SUM(value), 0) AS total FROM iris.tool_metrics {where}",
                params,
            )
            row = cur.fetchone()
            assert row is not None
            cur.execute(
                f"SELECT value FROM iris.tool_metrics {where} ORDER BY created_at DESC LIMIT %s",
                (*params, sample),
            )
            recent = [float(r["value"]) for r in cur]
        return MetricSummary(int(row["n"]), row["lo"], row["hi"], float(row["total"]), recent)

    def mining_records(self, project_id: str, limit: int, max_bytes: int) -> list[MiningRecord]:
        with self._tx() as cur:
            cur.execute(_MINING, {"p": project_id, "limit": limit, "max_bytes": max_bytes})
            return [MiningRecord(r["txn"], r["kind"], r["name"], r["metadata"]) for r in cur]

    def charge(self, project_id: str, size: int, quota: int) -> int | None:
        if size > quota:
            return None
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO iris.tool_usage AS u VALUES (%s, %s) ON CONFLICT (project_id)"
                " DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes"
                " WHERE u.bytes + EXCLUDED.bytes <= %s RETURNING bytes",
                (project_id, size, quota),
            )
            row = cur.fetchone()
        return None if row is None else int(row["bytes"])
