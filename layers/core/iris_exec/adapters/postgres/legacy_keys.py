"""Reads the API keys of the earlier implementation (an `iris_api_keys` table in Supabase),
which kept SHA-256 hashes, so `iris-exec keys import` can carry them over."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
#: Accepted spellings of each field, first match wins.
COLUMNS = {
    "hash": ("key_hash", "hashed_key", "api_key_hash", "hash"),
    "project": ("project_id", "project"),
    "name": ("name", "label", "description"),
    "prefix": ("key_prefix", "prefix"),
    "created": ("created_at", "created"),
    "revoked": ("revoked_at",),
    "active": ("is_active", "active", "enabled"),
}


@dataclass(frozen=True, slots=True)
class LegacyKey:
    key_hash: str
    project_id: str
    name: str | None
    prefix: str | None
    created_at: float | None
    revoked_at: float | None
    active: bool


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def read_legacy_keys(dsn: str, table: str = "iris_api_keys") -> list[LegacyKey]:
    if not IDENTIFIER.match(table):
        raise ValueError(f"not a table name: {table!r}")
    schema, _, name = table.rpartition(".")
    with psycopg.connect(dsn, row_factory=dict_row, prepare_threshold=None) as conn:
        present = {
            row["column_name"]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                " AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())",
                (name, schema),
            )
        }
        chosen = {
            field: next((c for c in spellings if c in present), None)
            for field, spellings in COLUMNS.items()
        }
        if chosen["hash"] is None or chosen["project"] is None:
            raise ValueError(
                f"{table} needs a key hash and a project id column; it has {sorted(present)}"
            )
        columns = [c for c in chosen.values() if c is not None]
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(*table.split(".")),
        )
        rows = conn.execute(query).fetchall()
    return [_legacy({f: row.get(c) if c else None for f, c in chosen.items()}) for row in rows]


def _legacy(fields: dict[str, Any]) -> LegacyKey:
    revoked = _epoch(fields["revoked"])
    return LegacyKey(
        key_hash=str(fields["hash"]).strip().lower(),
        project_id=str(fields["project"]),
        name=fields["name"],
        prefix=fields["prefix"],
        created_at=_epoch(fields["created"]),
        revoked_at=revoked,
        active=revoked is None and fields["active"] is not False,
    )
