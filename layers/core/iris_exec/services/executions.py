"""One execution: lease a sandbox, run the code there, give the sandbox back, answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from iris_exec.domain.errors import ProviderUnavailable, SandboxLost, ServiceUnavailable
from iris_exec.domain.models import (
    ExecutionJob,
    ExecutionReport,
    OutputChunk,
    Principal,
    RunOutcome,
)
from iris_exec.domain.ports import ExecutionObserver, SandboxProvider
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.services.output import log_lines, sections
from iris_exec.services.requests import ExecuteCommand
from iris_exec.services.sandboxes import Lease, SandboxService
from iris_exec.services.tokens import ExecutionTokens
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

GRANT_GRACE_S = 5.0


class ExecutionService:
    def __init__(
        self,
        sandboxes: SandboxService,
        provider: SandboxProvider,
        tokens: ExecutionTokens,
        settings: Settings,
        clock: Clock,
        observer: ExecutionObserver | None = None,
    ) -> None:
        self._observer = observer
        self._sandboxes = sandboxes
        self._provider = provider
        self._tokens = tokens
        self._settings = settings
        self._clock = clock

    async def execute(self, principal: Principal, command: ExecuteCommand) -> dict[str, Any]:
        """Run the code; errors of the code are data in the answer, not exceptions."""
        started = self._clock()
        lease = await self._sandboxes.acquire(
            principal, command.sandbox_id, wait=command.wait, timeout_s=command.timeout_s
        )
        return await self.run(principal, command, lease, new_id("ex_"), started=started)

    async def run(
        self,
        principal: Principal,
        command: ExecuteCommand,
        lease: Lease,
        execution_id: str,
        on_output: Callable[[OutputChunk], None] | None = None,
        started: float | None = None,
    ) -> dict[str, Any]:
        """Run the code in the leased sandbox, give the lease back, answer. ``on_output``
        hears the output as the program prints it; ``started`` is when the request began
        (before it waited for the sandbox), now by default."""
        started = self._clock() if started is None else started
        sandbox_id = lease.record.sandbox_id
        # The tools answer this execution until its deadline (plus a moment to close).
        grant = self._tokens.mint(
            principal.project_id,
            sandbox_id,
            execution_id,
            command.session_id,
            expires_at=self._clock() + command.timeout_s + GRANT_GRACE_S,
            lease_id=lease.lease_id,
            key_id=principal.key_id,
        )
        job = ExecutionJob(
            execution_id=execution_id,
            source=command.code,
            language=command.language,
            project_id=principal.project_id,
            session_id=command.session_id,
            context=command.context,
            timeout_s=command.timeout_s,
            output_limit_bytes=self._settings.output_limit_bytes,
            grant=grant,
            sandbox_deadline=lease.record.lifetime_deadline,
            on_output=on_output,
        )
        began = time.monotonic()
        try:
            outcome = await self._provider.run(lease.record.provider_ref, job)
        except SandboxLost as exc:
            raise await self._sandboxes.lost(lease, exc) from exc
        except ProviderUnavailable as exc:
            self._sandboxes.release(lease)
            raise ServiceUnavailable(
                f"The sandbox provider cannot run code now: {exc}", retry_after_s=exc.retry_after_s
            ) from exc
        except BaseException:
            self._sandboxes.release(lease)
            raise
        self._sandboxes.release(lease)
        total_ms = (time.monotonic() - began) * 1000
        log.info(
            "execution %s in %s (project %s): %s, code %.0f ms, total %.0f ms",
            execution_id,
            sandbox_id,
            principal.project_id,
            "ok" if outcome.succeeded else (outcome.error.name if outcome.error else "failed"),
            outcome.execution_ms,
            total_ms,
        )
        if lease.created:
            outcome = replace(outcome, setup_ms=outcome.setup_ms + lease.create_ms)
        if self._observer is not None:
            self._observer.executed(
                ExecutionReport(
                    project_id=principal.project_id,
                    sandbox_id=sandbox_id,
                    execution_id=execution_id,
                    sandbox_created=lease.created,
                    succeeded=outcome.succeeded,
                    error_name=outcome.error.name if outcome.error else None,
                    execution_ms=outcome.execution_ms,
                    setup_ms=outcome.setup_ms,
                    output_bytes=sum(len(c.text.encode()) for c in outcome.output),
                    started_at=started,
                    actor=principal.key_id,
                )
            )
        return self.render(
            principal, command, outcome, sandbox_id, execution_id, started, lease.created
        )

    def render(
        self,
        principal: Principal,
        command: ExecuteCommand,
        outcome: RunOutcome,
        sandbox_id: str,
        execution_id: str,
        started: float,
        created: bool,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "sandboxId": sandbox_id,
            "projectId": principal.project_id,
        }
        if command.session_id is not None:
            metadata["sessionId"] = command.session_id
        metadata.update(
            {
                "timestamp": iso(started),
                "executionId": execution_id,
                "language": command.language,
                "setupTime": round(outcome.setup_ms),
                "sandboxCreated": created,
                "outputTruncated": outcome.output_truncated,
            }
        )
        result: dict[str, Any] = {
            "success": outcome.succeeded,
            "output": sections(outcome),
        }
        if outcome.error is not None:
            error: dict[str, Any] = {"message": outcome.error.message, "name": outcome.error.name}
            if outcome.error.stack:
                error["stack"] = outcome.error.stack
            result["error"] = error
        result.update(
            {
                "executionTime": round(outcome.execution_ms),
                "logs": log_lines(outcome.output),
                "metadata": metadata,
            }
        )
        return {
            "success": outcome.succeeded,
            "result": result,
            "sandboxId": sandbox_id,
            "timestamp": iso(self._clock()),
        }
