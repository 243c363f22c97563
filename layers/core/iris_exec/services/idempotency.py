"""Idempotent execute: a retried POST with the same Idempotency-Key returns the first
answer instead of running the code twice; the same key with another body is a 422."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable

from iris_exec.domain.errors import BadRequest, Conflict, UnprocessableEntity
from iris_exec.domain.models import OutputChunk, Principal
from iris_exec.domain.ports import IdempotencyStore
from iris_exec.services.answers import Answer, ExecutionAnswer
from iris_exec.services.clock import Clock
from iris_exec.services.commands import ExecuteCommand
from iris_exec.services.executions import ExecutionService

type Runner[A: Answer] = Callable[[Principal, ExecuteCommand], Awaitable[A]]
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
#: A claim outlives its execution's deadline by this much before a retry may take it over.
CLAIM_GRACE_S = 30.0


def fingerprint(command: ExecuteCommand) -> str:
    """What makes two requests the same request (not how long the caller waits)."""
    body = {
        "code": command.code,
        "language": command.language,
        "timeout_s": command.timeout_s,
        "session_id": command.session_id,
        "context": command.context,
        "sandbox_id": command.sandbox_id,
        "background": command.background,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class IdempotentExecutions:
    def __init__(self, store: IdempotencyStore, executions: ExecutionService, clock: Clock) -> None:
        self._store = store
        self._executions = executions
        self._clock = clock

    async def execute(
        self,
        principal: Principal,
        command: ExecuteCommand,
        key: str | None,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> tuple[ExecutionAnswer, bool]:
        """Execute now (``on_output`` hears the output as it is printed); the answer, and
        whether it is a replay of an earlier one."""

        async def run(principal: Principal, command: ExecuteCommand) -> ExecutionAnswer:
            return await self._executions.execute(principal, command, on_output)

        return await self.once(principal, command, key, run, ExecutionAnswer)

    async def once[A: Answer](
        self,
        principal: Principal,
        command: ExecuteCommand,
        key: str | None,
        run: Runner[A],
        kind: type[A],
    ) -> tuple[A, bool]:
        """The answer of ``run``, and whether it is a replay of an earlier one (kept as
        its JSON, read back as ``kind``)."""
        if key is None:
            return await run(principal, command), False
        if not KEY_PATTERN.match(key):
            raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters, no spaces")
        # Another project's key is another key. As JSON, no (project, key) pair can read as
        # another's, as "acme:evil" + "u" and "acme" + "evil:u" did when joined with ':'.
        scoped = json.dumps([principal.project_id, key], separators=(",", ":"))
        print_ = fingerprint(command)
        hit = self._store.begin(
            scoped, print_, self._clock(), lock_s=command.timeout_s + CLAIM_GRACE_S
        )
        if hit is not None:
            if hit.state == "mismatch":
                raise UnprocessableEntity(
                    "This Idempotency-Key was used with a different request body; use a new"
                    " key for a new request"
                )
            if hit.state == "in_progress":
                raise Conflict(
                    "A request with this Idempotency-Key is still running; retry after it ends",
                    headers={"Retry-After": "1"},
                )
            assert hit.response is not None
            return kind.model_validate(hit.response), True
        try:
            answer = await run(principal, command)
        except BaseException:
            self._store.release(scoped, print_)  # nothing was answered: a retry runs it
            raise
        self._store.complete(scoped, print_, answer.wire(), self._clock())
        return answer, False
