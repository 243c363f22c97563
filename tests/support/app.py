"""The real services over SQLite with a given provider (a fake one, or E2B's), in-process."""

from __future__ import annotations

from pathlib import Path

from iris_exec.adapters.sqlite.audit import AUDIT_SCHEMA, SqliteAuditLog, SqliteIdempotencyStore
from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.executions import EXECUTIONS_SCHEMA, SqliteExecutionStore
from iris_exec.adapters.sqlite.keys import SqliteKeyStore
from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA, SqliteToolStore
from iris_exec.composition import Container, assemble
from iris_exec.domain.ports import SandboxProvider
from iris_exec.services.clock import Clock, system_clock
from iris_exec.settings import Settings


def sqlite_container(
    settings: Settings, provider: SandboxProvider, clock: Clock = system_clock
) -> Container:
    db = Database(
        Path(settings.data_dir) / "iris.db",
        extra_schema=(TOOL_SCHEMA, AUDIT_SCHEMA, EXECUTIONS_SCHEMA),
    )
    return assemble(
        settings,
        registry=SqliteSandboxRegistry(db),
        keys=SqliteKeyStore(db),
        rate_limits=SqliteRateLimitStore(db),
        tool_store=SqliteToolStore(db),
        provider=provider,
        signing_key=b"s" * 32,
        audit_log=SqliteAuditLog(db),
        idempotency=SqliteIdempotencyStore(db, settings.idempotency_ttl_s),
        execution_store=SqliteExecutionStore(db),
        clock=clock,
    )


def fake_container(
    tmp_path: Path, provider: SandboxProvider, clock: Clock, **settings: object
) -> Container:
    return sqlite_container(Settings(data_dir=tmp_path, **settings), provider, clock)
