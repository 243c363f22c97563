"""The composition root: the one place that builds adapters from settings.

Everything else receives what it needs. Heavy SDKs are imported inside the
builder that needs them, so a function that never touches them never pays."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from iris_exec.domain.errors import ConfigurationError
from iris_exec.domain.ports import (
    AuditLog,
    ExecutionObserver,
    ExecutionStore,
    IdempotencyStore,
    KeyStore,
    RateLimitStore,
    SandboxProvider,
    SandboxRegistry,
    ToolStore,
    WorkDispatcher,
)
from iris_exec.services.audit import AuditTrail, Observers
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import Clock, system_clock
from iris_exec.services.ratelimit import RateLimiter
from iris_exec.services.sandboxes import SandboxService
from iris_exec.settings import Backend, Settings, ToolStoreKind

if TYPE_CHECKING:
    from iris_exec.services.background import BackgroundExecutions
    from iris_exec.services.executions import ExecutionService
    from iris_exec.services.history import History
    from iris_exec.services.idempotency import IdempotentExecutions
    from iris_exec.services.tokens import ExecutionTokens
    from iris_exec.services.tools import ToolService


@dataclass
class Container:
    """The services over one set of adapters.

    Those that only some entry points use (tokens, tools, executions, idempotent
    executions, background executions) are built on first use, and their modules imported
    then: a Lambda function that never runs code (sandbox_get, sandbox_delete) never loads
    the execution machinery at cold start."""

    settings: Settings
    clock: Clock
    registry: SandboxRegistry
    keys: KeyStore
    rate_limits: RateLimitStore
    tool_store: ToolStore
    provider: SandboxProvider
    auth: AuthService
    rate_limiter: RateLimiter
    sandboxes: SandboxService
    audit: AuditTrail
    signing_key: bytes | Callable[[], bytes] = field(repr=False)
    idempotency_store: IdempotencyStore = field(repr=False)
    execution_store: ExecutionStore = field(repr=False)
    dispatcher: WorkDispatcher | None = field(default=None, repr=False)
    observer: ExecutionObserver | None = field(default=None, repr=False)
    #: The signing key before the last rotation (AWS: the secret's AWSPREVIOUS version).
    previous_signing_key: Callable[[], bytes | None] | None = field(default=None, repr=False)
    _built: dict[str, object] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def _once[T](self, name: str, build: Callable[[], T]) -> T:
        """The service ``name``, built by ``build`` the first time (one, across threads)."""
        found = self._built.get(name)
        if found is None:
            with self._lock:
                found = self._built.get(name)
                if found is None:
                    found = self._built[name] = build()
        return cast(T, found)

    @property
    def tokens(self) -> ExecutionTokens:
        def build() -> ExecutionTokens:
            from iris_exec.services.tokens import ExecutionTokens

            return ExecutionTokens(
                self.signing_key,
                self.clock,
                self.previous_signing_key,
                registry=self.registry,
                keys=self.keys,
                rate_limiter=RateLimiter(
                    self.rate_limits, self.settings.tool_calls_per_minute, self.clock
                ),
            )

        return self._once("tokens", build)

    @property
    def tools(self) -> ToolService:
        def build() -> ToolService:
            from iris_exec.services.tools import ToolService

            return ToolService(self.tool_store, self.clock, self.settings, self.rate_limits)

        return self._once("tools", build)

    @property
    def executions(self) -> ExecutionService:
        def build() -> ExecutionService:
            from iris_exec.services.executions import ExecutionService

            observers = Observers(self.audit, self.observer)
            return ExecutionService(
                self.sandboxes, self.provider, self.tokens, self.settings, self.clock, observers,
                history=self.execution_store,
            )  # fmt: skip

        return self._once("executions", build)

    @property
    def history(self) -> History:
        def build() -> History:
            from iris_exec.services.history import History

            return History(self.registry, self.execution_store, self.clock)

        return self._once("history", build)

    @property
    def idempotent(self) -> IdempotentExecutions:
        def build() -> IdempotentExecutions:
            from iris_exec.services.idempotency import IdempotentExecutions

            return IdempotentExecutions(self.idempotency_store, self.executions, self.clock)

        return self._once("idempotent", build)

    @property
    def background(self) -> BackgroundExecutions:
        def build() -> BackgroundExecutions:
            from iris_exec.services.background import BackgroundExecutions, LocalDispatcher

            background = BackgroundExecutions(
                self.execution_store, self.executions, self.sandboxes, self.settings,
                self.clock, self.dispatcher,
            )  # fmt: skip
            if self.dispatcher is None:
                background.dispatcher = LocalDispatcher(background)
            return background

        return self._once("background", build)

    def close(self) -> None:
        """Release what the adapters hold open (database connections)."""
        for adapter in (self.tool_store, self.registry, self.keys, self.rate_limits):
            close = getattr(adapter, "close", None)
            if callable(close):
                close()


def assemble(
    settings: Settings,
    *,
    registry: SandboxRegistry,
    keys: KeyStore,
    rate_limits: RateLimitStore,
    tool_store: ToolStore,
    provider: SandboxProvider,
    signing_key: bytes | Callable[[], bytes],
    audit_log: AuditLog,
    idempotency: IdempotencyStore,
    execution_store: ExecutionStore,
    dispatcher: WorkDispatcher | None = None,
    clock: Clock = system_clock,
    observer: ExecutionObserver | None = None,
    previous_signing_key: Callable[[], bytes | None] | None = None,
) -> Container:
    """Wire the services over the given adapters."""
    audit = AuditTrail(audit_log, clock, settings.audit_retention_days * 86400)
    return Container(
        settings=settings,
        clock=clock,
        registry=registry,
        keys=keys,
        rate_limits=rate_limits,
        tool_store=tool_store,
        provider=provider,
        auth=AuthService(keys, clock),
        rate_limiter=RateLimiter(rate_limits, settings.rate_limit_per_minute, clock),
        sandboxes=SandboxService(registry, provider, settings, clock, audit),
        audit=audit,
        signing_key=signing_key,
        idempotency_store=idempotency,
        execution_store=execution_store,
        dispatcher=dispatcher,
        observer=observer,
        previous_signing_key=previous_signing_key,
    )


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


def build_tool_store(settings: Settings, sqlite_db: object | None = None) -> ToolStore:
    if settings.tool_store is ToolStoreKind.POSTGRES:
        if settings.database_url is None:
            raise ConfigurationError("IRIS_TOOL_STORE=postgres needs IRIS_DATABASE_URL")
        from iris_exec.adapters.postgres.tools import PostgresToolStore

        return PostgresToolStore(settings.database_url.get_secret_value())
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.tools import SqliteToolStore

    assert isinstance(sqlite_db, Database), "the SQLite tool store shares the local database"
    return SqliteToolStore(sqlite_db)


def build_local(settings: Settings, *, clock: Clock = system_clock) -> Container:
    """Local mode: SQLite for state, bubblewrap jails for sandboxes."""
    from iris_exec.adapters.local.provider import LocalSandboxProvider
    from iris_exec.adapters.sqlite.audit import AUDIT_SCHEMA, SqliteAuditLog, SqliteIdempotencyStore
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.executions import EXECUTIONS_SCHEMA, SqliteExecutionStore
    from iris_exec.adapters.sqlite.keys import SqliteKeyStore
    from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
    from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry
    from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA

    db = Database(
        settings.database_path, extra_schema=(TOOL_SCHEMA, AUDIT_SCHEMA, EXECUTIONS_SCHEMA)
    )
    return assemble(
        settings,
        registry=SqliteSandboxRegistry(db),
        keys=SqliteKeyStore(db),
        rate_limits=SqliteRateLimitStore(db),
        tool_store=build_tool_store(settings, db),
        provider=LocalSandboxProvider(settings),
        signing_key=local_signing_key(settings),
        audit_log=SqliteAuditLog(db),
        idempotency=SqliteIdempotencyStore(db, settings.idempotency_ttl_s),
        execution_store=SqliteExecutionStore(db),
        clock=clock,
    )


def build(settings: Settings) -> Container:
    if settings.backend is Backend.LOCAL:
        return build_local(settings)
    from iris_exec.aws.composition import build_aws

    return build_aws(settings)
