"""The service's answers as typed models, written by hand from docs/CONTRACT.md (the
OpenAPI document has no response schemas yet). Field names are snake_case in Python and
camelCase on the wire; fields the service adds later are kept (``extra="allow"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

Language = Literal["typescript", "javascript", "python"]
#: ``queued`` and ``running`` until it ends ``succeeded``, ``failed`` or ``timed_out``.
ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "timed_out"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class CodeError(Model):
    """Why the code failed: ``name`` is ``TypeError``, ``TimeoutError``,
    ``OutOfMemoryError``, ``OutputLimitError``, ``ModuleNotFoundError``, ..."""

    message: str
    name: str
    stack: str | None = None


class ExecutionMetadata(Model):
    timestamp: str
    sandbox_id: str | None = None
    project_id: str | None = None
    session_id: str | None = None
    language: str | None = None
    execution_id: str | None = None
    #: Milliseconds spent before the code ran (creating the sandbox, starting the runtime).
    setup_time: int | None = None
    sandbox_created: bool | None = None
    output_truncated: bool | None = None
    #: With ``keep_state``: whether the sandbox's live runner was lost since the last such
    #: execution (a time limit, memory, output, exit or crash), and why.
    state_reset: bool | None = None
    state_reset_reason: str | None = None


class ExecutionResult(Model):
    """What the code did. A failure of the code is data here (``success`` false,
    ``error`` set), not an exception."""

    success: bool
    output: str
    execution_time: int
    logs: list[str]
    metadata: ExecutionMetadata
    error: CodeError | None = None


class ExecuteResponse(Model):
    """``POST /api/iris/execute``'s 200 answer."""

    success: bool
    result: ExecutionResult
    timestamp: str
    sandbox_id: str | None = None


class SubmittedExecution(Model):
    """``POST /api/iris/execute``'s 202 answer in the asynchronous mode."""

    execution_id: str
    status: ExecutionStatus
    sandbox_id: str
    timestamp: str


class Execution(Model):
    """``GET /api/iris/executions/{id}``: status, the log lines after ``after``, the
    ``cursor`` to pass next time, and once it has ended ``success`` and ``result`` (or
    ``reason`` when the service, not the code, ended it)."""

    execution_id: str
    status: ExecutionStatus
    sandbox_id: str
    logs: list[str]
    cursor: int
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    success: bool | None = None
    result: ExecutionResult | None = None
    reason: str | None = None
    timestamp: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


class Sandbox(Model):
    """``GET /api/iris/sandbox``: ``active`` is true only if it is really alive."""

    sandbox_id: str
    active: bool
    total_active: int
    timestamp: str
    status: Literal["running", "closed", "expired", "failed"] | None = None
    created_at: str | None = None
    last_used_at: str | None = None
    expires_at: str | None = None


class Closed(Model):
    """``DELETE /api/iris/sandbox``: ``closed`` (a count) only for ``all=true``."""

    message: str
    timestamp: str
    closed: int | None = None


def execute_body(
    code: str,
    *,
    language: Language | None,
    sandbox_id: str | None,
    session_id: str | None,
    project_id: str | None,
    context: dict[str, Any] | None,
    timeout_ms: int | None,
    background: bool,
    keep_state: bool | None = None,
) -> dict[str, Any]:
    """The request body: only the fields given (the service rejects unknown ones)."""
    body: dict[str, Any] = {"code": code}
    optional: dict[str, Any] = {
        "language": language,
        "sandboxId": sandbox_id,
        "sessionId": session_id,
        "projectId": project_id,
        "context": context,
        "timeoutMs": timeout_ms,
        "keepState": keep_state,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if background:
        body["async"] = True
    return body


class SandboxSummary(Model):
    """A row of ``GET /api/iris/sandboxes`` (``active`` read from the registry only)."""

    sandbox_id: str
    status: Literal["running", "closed", "expired", "failed"]
    active: bool
    created_at: str
    last_used_at: str | None = None
    expires_at: str | None = None
    executions: int | None = None


class SandboxPage(Model):
    """A page of sandboxes, newest first; ``next_cursor`` is None on the last page."""

    sandboxes: list[SandboxSummary]
    next_cursor: str | None = None


class ExecutionSummary(Model):
    """A row of ``GET /api/iris/executions``: synchronous and asynchronous runs alike."""

    execution_id: str
    sandbox_id: str
    status: Literal["queued", "running", "succeeded", "failed", "timed_out"]
    language: str | None = None
    created_at: str
    finished_at: str | None = None
    execution_time: int | None = None
    success: bool | None = None


class ExecutionPage(Model):
    """A page of executions, newest first; ``next_cursor`` is None on the last page."""

    executions: list[ExecutionSummary]
    next_cursor: str | None = None
