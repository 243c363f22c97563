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

from iris_exec.adapters.tool_sql import SqlToolStore
from iris_exec.domain.errors import StoreUnavailable


class PostgresToolStore(SqlToolStore):
    """One connection, opened lazily and reopened after a failure."""

    schema = "iris."
    placeholder = "%s"
    seq = "seq"

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

    def _json_in(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def _json_out(self, value: Any) -> Any:
        return value  # psycopg decodes jsonb

    def _bytes_of(self, column: str) -> str:
        return f"OCTET_LENGTH({column}::text)"
