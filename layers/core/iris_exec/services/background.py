"""Asynchronous executions: answer 202 at once, run the code in a worker, keep its log lines
and its answer where any function can read them.

The request that submits an execution takes the sandbox (creating one if needed) so the
202 can name it, records the execution `queued` and asks the dispatcher for a worker (an
asyncio task locally, a Lambda invoked asynchronously on AWS). The worker marks it
`running`, shows signs of life every heartbeat while it runs (log lines are flushed on
the way), and stores the final status and the same answer a synchronous call gets. A
worker that dies leaves a record whose signs of life stop: the next reader (or the
sweeper) ends it `failed` with the reason, so nothing stays `running` forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from iris_exec.domain.errors import (
    BadRequest,
    Conflict,
    IrisError,
    NotFound,
    ServiceUnavailable,
)
from iris_exec.domain.models import (
    FINAL_STATUSES,
    UNFINISHED_STATUSES,
    ExecutionEnd,
    ExecutionRecord,
    ExecutionStatus,
    Principal,
)
from iris_exec.domain.ports import ExecutionStore, WorkDispatcher
from iris_exec.services.answers import (
    ExecutionAnswer,
    ExecutionStarted,
    ExecutionView,
    RunResult,
)
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.services.commands import ExecuteCommand, command_from_dict, command_to_dict
from iris_exec.services.executions import ExecutionService, status_of
from iris_exec.services.output import LiveLines
from iris_exec.services.sandboxes import Lease, SandboxService
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

EXECUTION_ID_PATTERN = re.compile(r"^ex_[A-Za-z0-9]{8,64}$")
#: A worker is declared dead after this many heartbeats without a sign of life.
MISSED_HEARTBEATS = 3
MAX_LOG_PAGE = 10_000


def validate_execution_id(execution_id: str) -> str:
    if not EXECUTION_ID_PATTERN.fullmatch(execution_id):
        raise BadRequest("executionId must look like 'ex_' followed by 8-64 letters or digits")
    return execution_id


class TakenOver(Exception):
    """The execution was ended by someone else (declared dead) while this worker ran it."""


class BackgroundExecutions:
    def __init__(
        self,
        store: ExecutionStore,
        executions: ExecutionService,
        sandboxes: SandboxService,
        settings: Settings,
        clock: Clock,
        dispatcher: WorkDispatcher | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self._executions = executions
        self._sandboxes = sandboxes
        self._settings = settings
        self._clock = clock

    @property
    def _alive_window_s(self) -> float:
        return self._settings.execution_heartbeat_s * MISSED_HEARTBEATS

    # -- submitting ------------------------------------------------------------------------

    async def submit(self, principal: Principal, command: ExecuteCommand) -> ExecutionStarted:
        """Queue the execution and start its worker; the 202's body."""
        if self.dispatcher is None:
            raise ServiceUnavailable("Asynchronous executions are not configured here")
        self._executions.check(command)
        lease: Lease | None = None
        try:
            lease = await self._sandboxes.acquire(
                principal, command.sandbox_id, wait=False, timeout_s=command.timeout_s
            )
        except Conflict:
            # The sandbox is busy: the worker waits for it (unless the caller said not to).
            if not command.wait:
                raise
        assert lease is not None or command.sandbox_id is not None
        now = self._clock()
        record = ExecutionRecord(
            execution_id=new_id("ex_"),
            project_id=principal.project_id,
            sandbox_id=lease.record.sandbox_id if lease else str(command.sandbox_id),
            status="queued",
            request=command_to_dict(command),
            lease_id=lease.lease_id if lease else "",
            sandbox_created=lease.created if lease else False,
            created_at=now,
            alive_until=now + self._settings.execution_dispatch_grace_s,
            actor=principal.key_id,
        )
        try:
            self.store.create(record)
        except BaseException:
            if lease is not None:
                await self._sandboxes.discard(lease)
            raise
        try:
            self.dispatcher.dispatch(record.project_id, record.execution_id)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, IrisError) else "the worker could not start"
            self._end(record, "failed", reason=f"Not started: {reason}")
            if lease is not None:
                await self._sandboxes.discard(lease)
            raise
        log.info(
            "execution %s queued in %s (project %s)",
            record.execution_id,
            record.sandbox_id,
            record.project_id,
        )
        return ExecutionStarted(
            execution_id=record.execution_id,
            status=record.status,
            sandbox_id=record.sandbox_id,
            timestamp=iso(now),
        )

    # -- working ---------------------------------------------------------------------------

    async def work(self, project_id: str, execution_id: str) -> ExecutionStatus | None:
        """Run a queued execution to its end. None if it was not this worker's to run
        (unknown, already taken by another delivery of the same event, or ended)."""
        record = self.store.get(project_id, execution_id)
        if record is None or record.status != "queued":
            # The status only: the record holds the caller's code, not for one log line.
            found = record.status if record is not None else "unknown"
            log.warning("execution %s is not queued (%s); nothing to do", execution_id, found)
            return None
        now = self._clock()
        if not self.store.start(
            project_id, execution_id, started_at=now, alive_until=now + self._alive_window_s
        ):
            return None
        log_writer = _LogWriter(self.store, project_id, execution_id)
        stop = asyncio.Event()
        runner = asyncio.create_task(self._run(record, log_writer.live.add))
        flusher = asyncio.create_task(log_writer.run(stop, self._settings.execution_log_flush_s))
        beat = asyncio.create_task(self._heartbeat(record, runner))
        status: ExecutionStatus
        answer: ExecutionAnswer | None = None
        reason: str | None = None
        try:
            answer = await runner
            status = status_of(answer)
        except asyncio.CancelledError:
            if beat.done() and isinstance(beat.exception(), TakenOver):
                log.warning("execution %s was ended by another party; stopping", execution_id)
                await self._stop(stop, flusher, beat)
                return None
            # The server is shutting down with the execution unfinished.
            status, reason = "failed", "the server stopped before the execution finished"
            await self._stop(stop, flusher, beat)
            self._finish(record, status, None, reason, log_writer)
            raise
        except IrisError as exc:
            if exc.status >= 500:
                log.error("execution %s failed in the worker: %s", execution_id, exc.detail)
            status, reason = "failed", exc.public_message()
        except Exception as exc:
            log.exception("execution %s failed in the worker", execution_id)
            status, reason = "failed", f"internal error in the worker ({type(exc).__name__})"
        await self._stop(stop, flusher, beat)
        self._finish(record, status, answer, reason, log_writer)
        return status

    @staticmethod
    async def _stop(
        stop: asyncio.Event, flusher: asyncio.Task[None], beat: asyncio.Task[None]
    ) -> None:
        """Stop beating, and let the flusher finish the write it may be in."""
        stop.set()
        beat.cancel()
        await asyncio.gather(flusher, beat, return_exceptions=True)

    async def _run(self, record: ExecutionRecord, on_output: Any) -> ExecutionAnswer:
        command = command_from_dict(record.request)
        principal = Principal(record.project_id, record.actor)
        if record.lease_id:
            lease = self._sandboxes.resume(
                record.project_id, record.sandbox_id, record.lease_id, record.sandbox_created
            )
        else:
            lease = await self._sandboxes.acquire(
                principal, record.sandbox_id, wait=True, timeout_s=command.timeout_s
            )
        return await self._executions.run(
            principal, command, lease, record.execution_id, on_output=on_output
        )

    async def _heartbeat(self, record: ExecutionRecord, runner: asyncio.Task[Any]) -> None:
        """Show signs of life until cancelled (off the event loop, so that a busy run cannot
        delay them); stop the run if another party has ended the execution meanwhile."""
        while True:
            await asyncio.sleep(self._settings.execution_heartbeat_s)
            try:
                alive = await asyncio.to_thread(
                    self.store.beat,
                    record.project_id,
                    record.execution_id,
                    alive_until=self._clock() + self._alive_window_s,
                )
            except Exception:
                # A store hiccup: the next beat tries again; missing three declares us dead.
                log.exception("heartbeat of execution %s failed", record.execution_id)
                continue
            if not alive:
                runner.cancel()
                raise TakenOver(record.execution_id)

    def _finish(
        self,
        record: ExecutionRecord,
        status: ExecutionStatus,
        answer: ExecutionAnswer | None,
        reason: str | None,
        log_writer: _LogWriter,
    ) -> None:
        log_writer.live.close()
        lines = answer.result.logs if answer is not None else log_writer.live.lines
        log_writer.write(lines)
        # The result is kept without its log lines: they are stored once, in chunks, and put
        # back when it is read (kept twice, a megabyte of newlines cost a dozen).
        ended = self._end(
            record,
            status,
            result=answer.result.stored() if answer is not None else None,
            reason=reason,
            log_lines=max(len(lines), log_writer.flushed),
        )
        log.info("execution %s %s%s", record.execution_id, status, f" ({reason})" if reason else "")
        if not ended:
            log.warning("execution %s had already been ended elsewhere", record.execution_id)

    def _end(
        self,
        record: ExecutionRecord,
        status: ExecutionStatus,
        *,
        result: dict[str, Any] | None = None,
        reason: str | None = None,
        log_lines: int | None = None,
        alive_before: float | None = None,
    ) -> bool:
        end = ExecutionEnd(status, self._clock(), result, reason, log_lines)
        return self.store.finish(
            record.project_id, record.execution_id, end, alive_before=alive_before
        )

    # -- reading -----------------------------------------------------------------------------

    def record(self, principal: Principal, execution_id: str) -> ExecutionRecord:
        """The execution as it stands (a dead worker's found out and recorded first)."""
        validate_execution_id(execution_id)
        record = self.store.get(principal.project_id, execution_id)
        if record is None:
            raise NotFound(f"Execution {execution_id} not found")
        if record.status in UNFINISHED_STATUSES and record.alive_until < self._clock():
            self._declare_dead(record)
            record = self.store.get(principal.project_id, execution_id) or record
        return record

    def lines(self, record: ExecutionRecord, after: int, limit: int) -> list[str]:
        """Log lines of ``record`` after line ``after`` (at most ``limit``)."""
        return self.store.logs(record.project_id, record.execution_id, after, limit)

    def describe(
        self, principal: Principal, execution_id: str, after: int = 0, limit: int = MAX_LOG_PAGE
    ) -> ExecutionView:
        """Status, the log lines after line ``after``, and the answer when it is done."""
        record = self.record(principal, execution_id)
        logs = self.store.logs(record.project_id, execution_id, after, limit)
        return self.body(record, logs, after)

    def body(self, record: ExecutionRecord, logs: list[str], after: int) -> ExecutionView:
        view = ExecutionView(
            execution_id=record.execution_id,
            status=record.status,
            sandbox_id=record.sandbox_id,
            created_at=iso(record.created_at),
            started_at=iso(record.started_at),
            finished_at=iso(record.finished_at),
            async_=not record.request.get("sync", False),
            language=record.request.get("language"),
            session_id=record.request.get("sessionId"),
            code=record.request.get("code"),
            logs=logs,
            cursor=after + len(logs),
            timestamp=iso(self._clock()),
        )
        if record.status not in FINAL_STATUSES:
            return view
        ended: dict[str, Any] = {"success": record.status == "succeeded"}
        if record.result is not None:
            ended["result"] = self._with_logs(record)
        if record.reason is not None:
            ended["reason"] = record.reason
        return view.model_copy(update=ended)

    def _with_logs(self, record: ExecutionRecord) -> RunResult:
        result = record.result or {}
        if "logs" not in result:  # (results stored before logs were kept apart hold them)
            logs = self.store.logs(record.project_id, record.execution_id, 0, record.log_lines)
            result = {**result, "logs": logs}
        return RunResult.model_validate(result)

    # -- the dead ----------------------------------------------------------------------------

    def _declare_dead(self, record: ExecutionRecord) -> bool:
        reason = (
            "its worker never started (no worker picked it up in time)"
            if record.status == "queued"
            else "its worker stopped (no sign of life since "
            f"{iso(record.alive_until - self._alive_window_s)}); the output so far is kept"
        )
        ended = self._end(record, "failed", reason=reason, alive_before=self._clock())
        if ended:
            log.warning("execution %s failed: %s", record.execution_id, reason)
        return ended

    def sweep(self, limit: int = 100) -> int:
        """End every execution whose worker stopped showing signs of life. Returns how many."""
        return sum(
            self._declare_dead(record) for record in self.store.list_stale(self._clock(), limit)
        )

    def abandon_all(self, reason: str) -> int:
        """End every unfinished execution (local mode, at start: their workers died with the
        previous server)."""
        ended = 0
        for record in self.store.list_stale(float("inf"), 10_000):
            ended += self._end(record, "failed", reason=reason)
        return ended

    def purge(self) -> int:
        return self.store.purge(self._clock() - self._settings.execution_retention_s)


class _LogWriter:
    """Turns a run's output into log lines and stores the new ones every ``every`` seconds
    (off the event loop), then once more at the end."""

    def __init__(self, store: ExecutionStore, project_id: str, execution_id: str) -> None:
        self.live = LiveLines()
        self.flushed = 0
        self._store = store
        self._project_id = project_id
        self._execution_id = execution_id

    def write(self, lines: list[str]) -> None:
        """Store ``lines[flushed:]`` (the caller makes sure no other write runs)."""
        if len(lines) > self.flushed:
            pending = lines[self.flushed :]
            self._store.append_logs(self._project_id, self._execution_id, self.flushed, pending)
            self.flushed += len(pending)

    async def run(self, stop: asyncio.Event, every: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            try:
                await asyncio.to_thread(self.write, list(self.live.lines))
            except Exception:
                log.exception("storing log lines of %s failed; retrying", self._execution_id)


class LocalDispatcher:
    """Runs each worker as a task of this server's event loop."""

    def __init__(self, service: BackgroundExecutions) -> None:
        self._service = service
        self._tasks: set[asyncio.Task[Any]] = set()

    def dispatch(self, project_id: str, execution_id: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._service.work(project_id, execution_id), name=f"execution {execution_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Stop the running workers; their executions end `failed` with the reason."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
