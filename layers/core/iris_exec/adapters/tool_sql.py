"""The IRIS tool store's statements, written once for SQLite and PostgreSQL (Supabase).

Statements use ``?`` placeholders and put ``{t}`` before every table name. A store says
only how its database differs: its schema prefix and placeholder, how it stores JSON and
measures it, the column that orders rows of equal time, and how it opens a transaction."""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

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


def _count(column: str, value: str) -> str:
    return f"COALESCE(SUM(CASE WHEN {column} = '{value}' THEN 1 ELSE 0 END), 0)"


_EVALUATION_STATS = (
    f"SELECT COUNT(*) AS total, {_count('verdict', 'correct')} AS correct,"
    f" {_count('verdict', 'partial')} AS partial, {_count('verdict', 'incorrect')} AS incorrect,"
    " COALESCE(SUM(score), 0) AS score_sum FROM {t}tool_evaluations WHERE project_id = ?"
)

_TALLY = (
    f"SELECT {_count('vote', 'approve')} AS approve, {_count('vote', 'reject')} AS reject,"
    f" {_count('vote', 'abstain')} AS abstain"
    " FROM {t}tool_votes WHERE project_id = ? AND consensus_id = ?"
)

# The newest records of every kind, while their metadata adds up to the byte budget.
_MINING = """
SELECT txn, kind, name, metadata FROM (SELECT *, SUM({metadata_size})
    OVER (ORDER BY created_at DESC ROWS UNBOUNDED PRECEDING) AS running FROM (
    SELECT COALESCE(session_id, execution_id, id) AS txn, 'event' AS kind, event AS name,
           metadata, created_at FROM {t}tool_events WHERE project_id = ?
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'evaluation', verdict, NULL, created_at
           FROM {t}tool_evaluations WHERE project_id = ?
    UNION ALL
    SELECT COALESCE(session_id, execution_id, project_id || '/' || consensus_id || '/' || agent_id),
           'vote', vote, NULL, updated_at FROM {t}tool_votes WHERE project_id = ?
    UNION ALL
    SELECT COALESCE(session_id, execution_id, id), 'metric', metric, NULL, created_at
           FROM {t}tool_metrics WHERE project_id = ?
) AS records ORDER BY created_at DESC LIMIT ?) AS sized
WHERE COALESCE(running, 0) <= ? ORDER BY created_at DESC
"""

# Sizes add up in the database, so that a page of huge entries is never read whole: first
# which entries fit, then only those.
_LINEAGE_PAGE = (
    "SELECT id, running - size < ? AS fits FROM (SELECT id, created_at, {seq} AS seq,"
    " {entry_size} AS size,"
    " SUM({entry_size}) OVER (ORDER BY created_at, {seq} ROWS UNBOUNDED PRECEDING) AS running"
    " FROM {t}tool_lineage WHERE project_id = ? AND signature = ?"
    " AND (created_at, {seq}) > (?, ?) ORDER BY created_at, {seq} LIMIT ?) AS page"
    " ORDER BY created_at, seq"
)


class SqlToolStore:
    """The ToolStore port over SQL. Subclasses set the dialect and open transactions."""

    #: Put before every table name ("iris." in PostgreSQL).
    schema = ""
    #: The positional placeholder of the database driver.
    placeholder = "?"
    #: A column that orders rows written at the same time.
    seq = "rowid"

    def _tx(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction."""
        raise NotImplementedError

    def _json_in(self, value: Any) -> Any:
        """A value as the driver stores it in a JSON column."""
        raise NotImplementedError

    def _json_out(self, value: Any) -> Any:
        """A JSON column's value, as read, back to Python."""
        raise NotImplementedError

    def _bytes_of(self, column: str) -> str:
        """SQL for the size in bytes of a JSON column as stored."""
        raise NotImplementedError

    def _sql(self, statement: str) -> str:
        return _render(
            statement,
            self.schema,
            self.placeholder,
            self.seq,
            self._bytes_of("metadata"),
            f"{self._bytes_of('input')} + {self._bytes_of('output')}",
        )

    def _run(self, cur: Any, statement: str, params: tuple[Any, ...] = ()) -> Any:
        return cur.execute(self._sql(statement), params)

    def add_event(
        self, caller: ToolCaller, record_id: str, event: str, metadata: dict[str, Any], at: float
    ) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "INSERT INTO {t}tool_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, event,
                 self._json_in(metadata), at),
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
            self._run(
                cur,
                "INSERT INTO {t}tool_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, input_text,
                 output_text, verdict, score, at),
            )  # fmt: skip
            row = self._run(cur, _EVALUATION_STATS, (caller.project_id,)).fetchone()
        return EvaluationStats(
            int(row["total"]), int(row["correct"]), int(row["partial"]), int(row["incorrect"]),
            float(row["score_sum"]),
        )  # fmt: skip

    def put_vote(
        self, caller: ToolCaller, consensus_id: str, agent_id: str, vote: str, at: float
    ) -> VoteTally:
        with self._tx() as cur:
            self._run(
                cur,
                "INSERT INTO {t}tool_votes VALUES (?, ?, ?, ?, ?, ?, ?)"
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
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT consensus_id, agent_id, vote, updated_at FROM {t}tool_votes"
                " WHERE project_id = ? AND consensus_id = ? ORDER BY agent_id LIMIT ?",
                (project_id, consensus_id, limit),
            ).fetchall()
            votes = [
                Vote(r["consensus_id"], r["agent_id"], r["vote"], r["updated_at"]) for r in rows
            ]
            return votes, self._tally(cur, project_id, consensus_id)

    def _tally(self, cur: Any, project_id: str, consensus_id: str) -> VoteTally:
        row = self._run(cur, _TALLY, (project_id, consensus_id)).fetchone()
        return VoteTally(int(row["approve"]), int(row["reject"]), int(row["abstain"]))

    def save_prompt(
        self, project_id: str, name: str, template: str, variables: list[str], at: float
    ) -> PromptVersion:
        with self._tx() as cur:
            # The row the upsert writes serializes concurrent saves of one name.
            head = self._run(
                cur,
                "INSERT INTO {t}tool_prompt_heads AS h VALUES (?, ?, 1, ?)"
                " ON CONFLICT (project_id, name) DO UPDATE SET latest = h.latest + 1,"
                " updated_at = excluded.updated_at RETURNING latest",
                (project_id, name, at),
            ).fetchone()
            version = int(head["latest"])
            self._run(
                cur,
                "INSERT INTO {t}tool_prompts VALUES (?, ?, ?, ?, ?, ?)",
                (project_id, name, version, template, self._json_in(variables), at),
            )
        return PromptVersion(name, version, template, variables, at)

    def get_prompt(self, project_id: str, name: str, version: int | None) -> PromptVersion | None:
        query = "SELECT * FROM {t}tool_prompts WHERE project_id = ? AND name = ?"
        with self._tx() as cur:
            if version is None:
                found = self._run(cur, query + " ORDER BY version DESC LIMIT 1", (project_id, name))
            else:
                found = self._run(cur, query + " AND version = ?", (project_id, name, version))
            row = found.fetchone()
        if row is None:
            return None
        return PromptVersion(
            row["name"], int(row["version"]), row["template"],
            list(self._json_out(row["variables"])), row["created_at"],
        )  # fmt: skip

    def list_prompts(self, project_id: str, after: str | None, limit: int) -> list[PromptSummary]:
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT name, latest, updated_at FROM {t}tool_prompt_heads WHERE project_id = ?"
                " AND (CAST(? AS TEXT) IS NULL OR name > ?) ORDER BY name LIMIT ?",
                (project_id, after, after, limit),
            ).fetchall()
        return [PromptSummary(r["name"], int(r["latest"]), r["updated_at"]) for r in rows]

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
            done = self._run(
                cur,
                "INSERT INTO {t}tool_lineage"
                " (id, project_id, signature, parent_id, input, output, created_at)"
                " SELECT ?, ?, ?, ?, ?, ?, ? WHERE CAST(? AS TEXT) IS NULL OR EXISTS"
                " (SELECT 1 FROM {t}tool_lineage WHERE project_id = ? AND id = ?)",
                (record_id, project_id, signature, parent_id, self._json_in(input_value),
                 self._json_in(output_value), at, parent_id, project_id, parent_id),
            )  # fmt: skip
            return bool(done.rowcount == 1)

    def get_lineage(
        self, project_id: str, signature: str, after: str | None, limit: int, max_bytes: int
    ) -> tuple[list[LineageEntry], bool] | None:
        with self._tx() as cur:
            start: tuple[float, int] = (float("-inf"), -1)
            if after is not None:
                found = self._run(
                    cur,
                    "SELECT created_at, {seq} AS seq FROM {t}tool_lineage"
                    " WHERE project_id = ? AND signature = ? AND id = ?",
                    (project_id, signature, after),
                ).fetchone()
                if found is None:
                    return None
                start = (found["created_at"], found["seq"])
            sized = self._run(
                cur, _LINEAGE_PAGE, (max_bytes, project_id, signature, *start, limit + 1)
            ).fetchall()
            ids = [r["id"] for r in sized[:limit] if r["fits"]]
            rows = (
                self._run(
                    cur,
                    f"SELECT * FROM {{t}}tool_lineage WHERE id IN ({', '.join('?' for _ in ids)})"
                    " ORDER BY created_at, {seq}",
                    tuple(ids),
                ).fetchall()
                if ids
                else []
            )
        entries = [self._lineage_entry(r) for r in rows]
        return entries, len(sized) > len(entries)

    def _lineage_entry(self, r: Any) -> LineageEntry:
        return LineageEntry(
            r["id"], r["signature"], r["parent_id"], self._json_out(r["input"]),
            self._json_out(r["output"]), r["created_at"],
        )  # fmt: skip

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
            self._run(
                cur,
                "INSERT INTO {t}tool_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, caller.project_id, caller.session_id, caller.execution_id, metric,
                 value, self._json_in(tags), at),
            )  # fmt: skip

    def metric_summary(
        self, project_id: str, metric: str, since: float | None, sample: int
    ) -> MetricSummary:
        where = "WHERE project_id = ? AND metric = ? AND created_at >= ?"
        params = (project_id, metric, float("-inf") if since is None else since)
        with self._tx() as cur:
            row = self._run(
                cur,
                "SELECT COUNT(*) AS n, MIN(value) AS lo, MAX(value) AS hi,"
                " COALESCE(SUM(value), 0) AS total FROM {t}tool_metrics " + where,
                params,
            ).fetchone()
            recent = self._run(
                cur,
                "SELECT value FROM {t}tool_metrics " + where + " ORDER BY created_at DESC LIMIT ?",
                (*params, sample),
            ).fetchall()
        return MetricSummary(
            int(row["n"]), row["lo"], row["hi"], float(row["total"]),
            [float(r["value"]) for r in recent],
        )  # fmt: skip

    def mining_records(self, project_id: str, limit: int, max_bytes: int) -> list[MiningRecord]:
        with self._tx() as cur:
            rows = self._run(cur, _MINING, (project_id,) * 4 + (limit, max_bytes)).fetchall()
        return [
            MiningRecord(r["txn"], r["kind"], r["name"], self._json_out(r["metadata"]))
            if r["metadata"] is not None
            else MiningRecord(r["txn"], r["kind"], r["name"], None)
            for r in rows
        ]

    def charge(self, project_id: str, size: int, quota: int) -> int | None:
        if size > quota:
            return None
        with self._tx() as cur:
            row = self._run(
                cur,
                "INSERT INTO {t}tool_usage AS u VALUES (?, ?) ON CONFLICT (project_id)"
                " DO UPDATE SET bytes = u.bytes + excluded.bytes"
                " WHERE u.bytes + excluded.bytes <= ? RETURNING bytes",
                (project_id, size, quota),
            ).fetchone()
        return None if row is None else int(row["bytes"])


@functools.cache
def _render(
    statement: str, schema: str, placeholder: str, seq: str, metadata_size: str, entry_size: str
) -> str:
    """A statement for one database (cached: each is rendered once per dialect)."""
    text = statement.replace("{t}", schema).replace("{seq}", seq)
    text = text.replace("{metadata_size}", metadata_size).replace("{entry_size}", entry_size)
    return text.replace("?", placeholder)
