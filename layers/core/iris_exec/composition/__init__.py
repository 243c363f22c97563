"""The composition root: the one place that builds adapters from settings and wires the
services over them. The edges (the HTTP app, MCP, the Lambda handlers, the local server,
the CLI) and the tests all take their `Services` from here, with overrides:

- `composition.local.build_local`: SQLite and bubblewrap jails (or a given provider);
- `composition.aws.build_aws`: DynamoDB, E2B, Lambda dispatch, secrets by name;
- `composition.admin`: key administration for the CLI (local or the deployment's table).

Heavy SDKs are imported inside the builder that needs them, so a function that never
touches them never pays."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from iris_exec.domain.ports import (
    AuditLog,
    ExecutionObserver,
    ExecutionStore,
    IdempotencyStore,
    KeyStore,
    RateLimitStore,
    SandboxProvider,
    SandboxRegistry,
    ToolSockets,
    ToolStore,
    WorkDispatcher,
)
from iris_exec.services.audit import AuditTrail, Observers
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import Clock, system_clock
from iris_exec.services.ratelimit import RateLimiter
from iris_exec.services.sandboxes import SandboxService
from iris_exec.settings import Settings

if TYPE_CHECKING:
    from iris_exec.services.background import BackgroundExecutions
    from iris_exec.services.executions import ExecutionService
    from iris_exec.services.history import History
    from iris_exec.services.idempotency import IdempotentExecutions
    from iris_exec.services.tokens import ExecutionTokens
    from iris_exec.services.tools import ToolService


@dataclass(frozen=True)
class Adapters:
    """The ports' implementations one `Services` runs over. The composition and the tests
    hold them; the edges never do (they see services only)."""

    registry: SandboxRegistry
    keys: KeyStore
    rate_limits: RateLimitStore
    tool_store: ToolStore
    provider: SandboxProvider
    audit_log: AuditLog
    idempotency: IdempotencyStore
    execution_store: ExecutionStore
    signing_key: bytes | Callable[[], bytes]
    #: The signing key before the last rotation (AWS: the secret's AWSPREVIOUS version).
    previous_signing_key: Callable[[], bytes | None] | None = None
    #: None: executions in the background run in this process (`LocalDispatcher`).
    dispatcher: WorkDispatcher | None = None
    observer: ExecutionObserver | None = None
    #: Gives the provider the host of its sandboxes' tool sockets (local jails only).
    attach_tool_sockets: Callable[[ToolSockets], None] | None = None


class Services:
    """What the edges get: the services over one set of adapters.

    Those that only some entry points use (tokens, tools, executions, idempotent
    executions, background executions, history) are built on first use, and their modules
    imported then: a Lambda function that never runs code (sandbox_get, sandbox_delete)
    never loads the execution machinery at cold start."""

    def __init__(self, settings: Settings, adapters: Adapters, clock: Clock = system_clock):
        self.settings = settings
        self.clock = clock
        #: For the composition and the tests; an edge that reaches in here is a layering bug.
        self.adapters = adapters
        self.audit = AuditTrail(adapters.audit_log, clock, settings.audit_retention_days * 86400)
        self.auth = AuthService(adapters.keys, clock)
        self.rate_limiter = RateLimiter(adapters.rate_limits, settings.rate_limit_per_minute, clock)
        self.sandboxes = SandboxService(
            adapters.registry, adapters.provider, settings, clock, self.audit
        )
        self._built: dict[str, object] = {}
        self._lock = threading.RLock()

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
    def provider_name(self) -> str:
        """Which sandboxes this service runs (`local`, `e2b`...): /health says it."""
        return self.adapters.provider.name

    @property
    def tokens(self) -> ExecutionTokens:
        def build() -> ExecutionTokens:
            from iris_exec.services.tokens import ExecutionTokens

            adapters = self.adapters
            return ExecutionTokens(
                adapters.signing_key,
                self.clock,
                adapters.previous_signing_key,
                registry=adapters.registry,
                keys=adapters.keys,
                rate_limiter=RateLimiter(
                    adapters.rate_limits, self.settings.tool_calls_per_minute, self.clock
                ),
            )

        return self._once("tokens", build)

    @property
    def tools(self) -> ToolService:
        def build() -> ToolService:
            from iris_exec.services.tools import ToolService

            adapters = self.adapters
            return ToolService(adapters.tool_store, self.clock, self.settings, adapters.rate_limits)

        return self._once("tools", build)

    @property
    def executions(self) -> ExecutionService:
        def build() -> ExecutionService:
            from iris_exec.services.executions import ExecutionService

            observers = Observers(self.audit, self.adapters.observer)
            return ExecutionService(
                self.sandboxes, self.adapters.provider, self.tokens, self.settings, self.clock,
                observers, history=self.adapters.execution_store,
            )  # fmt: skip

        return self._once("executions", build)

    @property
    def history(self) -> History:
        def build() -> History:
            from iris_exec.services.history import History

            return History(self.adapters.registry, self.adapters.execution_store, self.clock)

        return self._once("history", build)

    @property
    def idempotent(self) -> IdempotentExecutions:
        def build() -> IdempotentExecutions:
            from iris_exec.services.idempotency import IdempotentExecutions

            return IdempotentExecutions(self.adapters.idempotency, self.executions, self.clock)

        return self._once("idempotent", build)

    @property
    def background(self) -> BackgroundExecutions:
        def build() -> BackgroundExecutions:
            from iris_exec.services.background import BackgroundExecutions, LocalDispatcher

            dispatcher = self.adapters.dispatcher
            background = BackgroundExecutions(
                self.adapters.execution_store, self.executions, self.sandboxes, self.settings,
                self.clock, dispatcher,
            )  # fmt: skip
            if dispatcher is None:
                background.dispatcher = LocalDispatcher(background)
            return background

        return self._once("background", build)

    async def start(self, tool_sockets: ToolSockets | None = None) -> None:
        """Start the sandbox provider (local: bubblewrap's checks, the compiler, the pool),
        its sandboxes' tool calls served by ``tool_sockets``."""
        if tool_sockets is not None and self.adapters.attach_tool_sockets is not None:
            self.adapters.attach_tool_sockets(tool_sockets)
        await self.adapters.provider.start()

    async def stop_workers(self) -> None:
        """Wait for the executions this process runs in the background (local mode)."""
        from iris_exec.services.background import BackgroundExecutions, LocalDispatcher

        background = self._built.get("background")  # none built: none running
        if isinstance(background, BackgroundExecutions) and isinstance(
            background.dispatcher, LocalDispatcher
        ):
            await background.dispatcher.shutdown()

    async def stop(self) -> None:
        """Stop the sandbox provider (local: every jail)."""
        await self.adapters.provider.shutdown()

    def close(self) -> None:
        """Release what the adapters hold open (database connections)."""
        adapters = self.adapters
        for adapter in (
            adapters.tool_store, adapters.registry, adapters.keys, adapters.rate_limits,
            adapters.audit_log, adapters.idempotency, adapters.execution_store,
        ):  # fmt: skip
            close = getattr(adapter, "close", None)
            if callable(close):
                close()
