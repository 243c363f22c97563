"""Local mode: SQLite for state, bubblewrap jails for sandboxes (or the provider a test or
a stand-in gives)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from iris_exec.composition import Adapters, Services
from iris_exec.domain.errors import ConfigurationError
from iris_exec.domain.ports import SandboxProvider, ToolSockets, ToolStore
from iris_exec.services.clock import Clock, system_clock
from iris_exec.settings import Settings, ToolStoreKind

if TYPE_CHECKING:
    from iris_exec.adapters.sqlite.database import Database


def local_signing_key(settings: Settings) -> bytes:
    """The configured key, or one kept in the data directory (created once, mode 0600)."""
    if settings.token_signing_key is not None:
        return settings.token_signing_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "signing.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    import secrets

    with os.fdopen(fd, "w") as out:
        key = secrets.token_hex(32)
        out.write(key)
    return key.encode()


def build_tool_store(settings: Settings, sqlite_db: Database) -> ToolStore:
    """PostgreSQL (Supabase) when configured, else the local database."""
    if settings.tool_store is ToolStoreKind.POSTGRES:
        if settings.database_url is None:
            raise ConfigurationError("IRIS_TOOL_STORE=postgres needs IRIS_DATABASE_URL")
        from iris_exec.adapters.postgres.tools import PostgresToolStore

        return PostgresToolStore(settings.database_url.get_secret_value())
    from iris_exec.adapters.sqlite.tools import SqliteToolStore

    return SqliteToolStore(sqlite_db)


def local_database(settings: Settings) -> Database:
    """The one SQLite file of local mode, with every table of every local store."""
    from iris_exec.adapters.sqlite.audit import AUDIT_SCHEMA
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.executions import EXECUTIONS_SCHEMA
    from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA

    return Database(
        settings.database_path, extra_schema=(TOOL_SCHEMA, AUDIT_SCHEMA, EXECUTIONS_SCHEMA)
    )


def build_local(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    provider: SandboxProvider | None = None,
    signing_key: bytes | Callable[[], bytes] | None = None,
) -> Services:
    """The local services over SQLite. Overrides: ``provider`` (default: bubblewrap jails;
    tests give a fake one, or E2B's against its stand-in), ``clock``, ``signing_key``
    (default: IRIS_TOKEN_SIGNING_KEY, else one kept in the data directory)."""
    from iris_exec.adapters.sqlite.audit import SqliteAuditLog, SqliteIdempotencyStore
    from iris_exec.adapters.sqlite.executions import SqliteExecutionStore
    from iris_exec.adapters.sqlite.keys import SqliteKeyStore
    from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
    from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry

    attach: Callable[[ToolSockets], None] | None = None
    if provider is None:
        from iris_exec.adapters.local.provider import LocalSandboxProvider

        jails = LocalSandboxProvider(settings)

        def serve_tools(sockets: ToolSockets) -> None:
            jails.tool_sockets = sockets

        provider, attach = jails, serve_tools
    db = local_database(settings)
    adapters = Adapters(
        registry=SqliteSandboxRegistry(db),
        keys=SqliteKeyStore(db),
        rate_limits=SqliteRateLimitStore(db),
        tool_store=build_tool_store(settings, db),
        provider=provider,
        signing_key=local_signing_key(settings) if signing_key is None else signing_key,
        audit_log=SqliteAuditLog(db),
        idempotency=SqliteIdempotencyStore(db, settings.idempotency_ttl_s),
        execution_store=SqliteExecutionStore(db),
        attach_tool_sockets=attach,
    )
    return Services(settings, adapters, clock)
