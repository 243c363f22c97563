"""The composition root: the one place that builds adapters from settings.

Everything else receives what it needs. Heavy SDKs are imported inside the
builder that needs them, so a function that never touches them never pays."""

from __future__ import annotations

from dataclasses import dataclass

from iris_exec.domain.ports import KeyStore, RateLimitStore, SandboxProvider, SandboxRegistry
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import Clock, system_clock
from iris_exec.services.executions import ExecutionService
from iris_exec.services.ratelimit import RateLimiter
from iris_exec.services.sandboxes import SandboxService
from iris_exec.settings import Backend, Settings


@dataclass
class Container:
    settings: Settings
    clock: Clock
    registry: SandboxRegistry
    keys: KeyStore
    rate_limits: RateLimitStore
    provider: SandboxProvider
    auth: AuthService
    rate_limiter: RateLimiter
    sandboxes: SandboxService
    executions: ExecutionService


def assemble(
    settings: Settings,
    *,
    registry: SandboxRegistry,
    keys: KeyStore,
    rate_limits: RateLimitStore,
    provider: SandboxProvider,
    clock: Clock = system_clock,
) -> Container:
    """Wire the services over the given adapters."""
    sandboxes = SandboxService(registry, provider, settings, clock)
    return Container(
        settings=settings,
        clock=clock,
        registry=registry,
        keys=keys,
        rate_limits=rate_limits,
        provider=provider,
        auth=AuthService(keys, clock),
        rate_limiter=RateLimiter(rate_limits, settings.rate_limit_per_minute, clock),
        sandboxes=sandboxes,
        executions=ExecutionService(sandboxes, provider, settings, clock),
    )


def build_local(settings: Settings, *, clock: Clock = system_clock) -> Container:
    """Local mode: SQLite for state, bubblewrap jails for sandboxes."""
    from iris_exec.adapters.local.provider import LocalSandboxProvider
    from iris_exec.adapters.sqlite.database import Database
    from iris_exec.adapters.sqlite.keys import SqliteKeyStore
    from iris_exec.adapters.sqlite.ratelimit import SqliteRateLimitStore
    from iris_exec.adapters.sqlite.registry import SqliteSandboxRegistry

    db = Database(settings.database_path)
    return assemble(
        settings,
        registry=SqliteSandboxRegistry(db),
        keys=SqliteKeyStore(db),
        rate_limits=SqliteRateLimitStore(db),
        provider=LocalSandboxProvider(settings),
        clock=clock,
    )


def build(settings: Settings) -> Container:
    if settings.backend is Backend.LOCAL:
        return build_local(settings)
    raise NotImplementedError("the AWS backend is built by iris_exec.aws (issue: AWS deployment)")
