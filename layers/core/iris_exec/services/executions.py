"""One execution: lease a sandbox, run the code there, give the sandbox back, answer."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from iris_exec.domain.errors import (
    BadRequest,
    IrisError,
    ProviderUnavailable,
    SandboxLost,
    ServiceUnavailable,
)
from iris_exec.domain.models import (
    ExecutionEnd,
    ExecutionJob,
    ExecutionRecord,
    ExecutionReport,
    ExecutionStatus,
    OutputChunk,
    Principal,
    RunOutcome,
)
from iris_exec.domain.ports import ExecutionObserver, ExecutionStore, SandboxProvider
from iris_exec.services.answers import CodeFailure, ExecutionAnswer, RunMetadata, RunResult
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.services.commands import ExecuteCommand, command_to_dict
from iris_exec.services.output import label, log_lines, sections
from iris_exec.services.sandboxes import Lease, SandboxService
from iris_exec.services.tokens import ExecutionTokens
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

GRANT_GRACE_S = 5.0
#: A synchronous execution still `running` this long past its time limit lost its server.
SYNC_ALIVE_GRACE_S = 60.0


def status_of(answer: ExecutionAnswer) -> ExecutionStatus:
    if answer.success:
        return "succeeded"
    # The service's own reading (a program can name its error "TimeoutError" too).
    return "timed_out" if answer.result.metadata.limit_hit == "timeout" else "failed"


#: What the service itself saw of an execution's end, by the limit it hit (never taken from
#: what the program says: a program can name its error anything, "ok" included).
_LIMIT_OUTCOMES = {"timeout": "timeout", "memory": "out_of_memory", "output": "output_limit"}


def _json_value(text: str) -> Any:
    """JSON text as a value; a lone surrogate escaped in it (JavaScript strings may hold
    one) becomes U+FFFD, as in the rest of the answer, so that the answer stays UTF-8."""
    value = json.loads(text)
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        dumped = json.dumps(value, ensure_ascii=False)
        value = json.loads(dumped.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
    return value


def classify(outcome: RunOutcome) -> str:
    """``ok``, ``timeout``, ``out_of_memory``, ``output_limit``, ``error`` (the program
    failed) or ``failed`` (it ended with no answer)."""
    if outcome.limit_hit is not None:
        return _LIMIT_OUTCOMES[outcome.limit_hit]
    if outcome.succeeded:
        return "ok"
    return "error" if outcome.error is not None else "failed"


class ExecutionService:
    def __init__(
        self,
        sandboxes: SandboxService,
        provider: SandboxProvider,
        tokens: ExecutionTokens,
        settings: Settings,
        clock: Clock,
        observer: ExecutionObserver | None = None,
        history: ExecutionStore | None = None,
    ) -> None:
        self._observer = observer
        #: Where synchronous executions are recorded too (the history the console lists).
        self._history = history
        self._sandboxes = sandboxes
        self._provider = provider
        self._tokens = tokens
        self._settings = settings
        self._clock = clock

    async def execute(
        self,
        principal: Principal,
        command: ExecuteCommand,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> ExecutionAnswer:
        """Run the code; errors of the code are data in the answer, not exceptions.
        ``on_output`` hears the output as the program prints it."""
        self.check(command)
        started = self._clock()
        lease = await self._sandboxes.acquire(
            principal, command.sandbox_id, wait=command.wait, timeout_s=command.timeout_s
        )
        execution_id = new_id("ex_")
        if self._history is None:
            return await self.run(
                principal, command, lease, execution_id, on_output=on_output, started=started
            )
        record = self._record_start(principal, command, lease, execution_id, started)
        try:
            answer = await self.run(
                principal, command, lease, execution_id, on_output=on_output, started=started
            )
        except BaseException as exc:
            reason = exc.message if isinstance(exc, IrisError) else "internal error"
            self._record_end(record, "failed", None, reason)
            raise
        self._record_end(record, status_of(answer), answer, None)
        return answer

    def check(self, command: ExecuteCommand) -> None:
        """Refuse, before any sandbox is taken, what this server's provider cannot do."""
        if command.keep_state and not getattr(self._provider, "keeps_state", False):
            raise BadRequest(
                f"keepState is not available with the '{self._provider.name}' sandbox provider"
                " yet: its executions always run in a fresh process. Send the request without"
                " keepState (files in the sandbox persist between executions)"
            )

    def _record_start(
        self,
        principal: Principal,
        command: ExecuteCommand,
        lease: Lease,
        execution_id: str,
        started: float,
    ) -> ExecutionRecord:
        """Record the synchronous execution `running` (or give the sandbox back and fail:
        no execution runs unrecorded). The sweeper ends it if this server dies meanwhile."""
        assert self._history is not None
        now = self._clock()
        record = ExecutionRecord(
            execution_id=execution_id,
            project_id=principal.project_id,
            sandbox_id=lease.record.sandbox_id,
            status="running",
            request={**command_to_dict(command), "sync": True},
            lease_id=lease.lease_id,
            sandbox_created=lease.created,
            created_at=started,
            alive_until=now + command.timeout_s + SYNC_ALIVE_GRACE_S,
            actor=principal.key_id,
            started_at=now,
        )
        try:
            self._history.create(record)
        except BaseException:
            self._sandboxes.release(lease)
            raise
        return record

    def _record_end(
        self,
        record: ExecutionRecord,
        status: ExecutionStatus,
        answer: ExecutionAnswer | None,
        reason: str | None,
    ) -> None:
        """Store the answer and its log lines. The code has run: a store failure here is
        logged, never turned into an error of the request."""
        assert self._history is not None
        lines = answer.result.logs if answer is not None else []
        try:
            if lines:
                self._history.append_logs(record.project_id, record.execution_id, 0, lines)
            result = answer.result.stored() if answer is not None else None
            end = ExecutionEnd(status, self._clock(), result, reason, len(lines))
            self._history.finish(record.project_id, record.execution_id, end)
        except Exception:
            log.exception("recording the end of execution %s failed", record.execution_id)

    async def run(
        self,
        principal: Principal,
        command: ExecuteCommand,
        lease: Lease,
        execution_id: str,
        on_output: Callable[[OutputChunk], None] | None = None,
        started: float | None = None,
    ) -> ExecutionAnswer:
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
            usage_key=principal.usage_key,
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
            keep_state=command.keep_state,
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
            "execution %s in %s (project %s): %s%s, code %.0f ms, total %.0f ms",
            execution_id,
            sandbox_id,
            principal.project_id,
            classify(outcome),
            # The program chose its error's name: quoted and cut, it cannot forge a line.
            f" {label(outcome.error.name)}" if outcome.error and not outcome.limit_hit else "",
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
                    outcome=classify(outcome),
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
    ) -> ExecutionAnswer:
        metadata = RunMetadata(
            sandbox_id=sandbox_id,
            project_id=principal.project_id,
            timestamp=iso(started),
            execution_id=execution_id,
            language=command.language,
            setup_time=round(outcome.setup_ms),
            sandbox_created=created,
            output_truncated=outcome.output_truncated,
        )
        if command.session_id is not None:
            metadata = metadata.model_copy(update={"session_id": command.session_id})
        if outcome.limit_hit is not None:
            metadata = metadata.model_copy(update={"limit_hit": outcome.limit_hit})
        if command.keep_state:
            metadata = metadata.model_copy(
                update={"state_reset": outcome.state_reset is not None}
                | ({"state_reset_reason": outcome.state_reset} if outcome.state_reset else {})
            )
        extra: dict[str, Any] = {}
        if outcome.value_json is not None:
            # The value itself, as JSON: no printed text can forge it (`output` shows it too).
            extra["return_value"] = _json_value(outcome.value_json)
        if outcome.error is not None:
            error = CodeFailure(message=outcome.error.message, name=outcome.error.name)
            if outcome.error.stack:
                error = error.model_copy(update={"stack": outcome.error.stack})
            extra["error"] = error
        result = RunResult(
            success=outcome.succeeded,
            output=sections(outcome),
            execution_time=round(outcome.execution_ms),
            logs=log_lines(outcome.output),
            metadata=metadata,
            **extra,
        )
        return ExecutionAnswer(
            success=outcome.succeeded,
            result=result,
            sandbox_id=sandbox_id,
            timestamp=iso(self._clock()),
        )
