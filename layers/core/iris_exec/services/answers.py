"""What the services answer: typed, snake_case in Python, camelCase on the wire.

The HTTP edge declares these as its response models (so the OpenAPI document shows every
answer's shape) and the MCP edge returns the same JSON. A field the service left out when
it built an answer stays off the wire (``wire`` dumps with ``exclude_unset``): the contract
leaves some keys out rather than sending null (``result.error`` of a run that succeeded,
``reason`` of a running sandbox), and a ``returnValue`` of null is not the same as none."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from iris_exec.domain.models import ExecutionStatus, LimitHit


class Answer(BaseModel):
    """A service's answer. Built by field name, read and written by its camelCase alias."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        # Built on first use: a Lambda function builds the few answers of its route only.
        defer_build=True,
    )

    def wire(self) -> dict[str, Any]:
        """The answer as JSON goes out (only the fields it was built with)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# -- one execution --------------------------------------------------------------------------


class CodeFailure(Answer):
    message: str
    name: str = Field(description="The error's name: TypeError, TimeoutError, ...")
    stack: str | None = Field(default=None, description="Present when the runtime gave one")


StateResetReason = Literal["timeout", "memory", "output", "exit", "crash", "busy"]


class RunMetadata(Answer):
    sandbox_id: str
    project_id: str
    session_id: str | None = Field(default=None, description="Present when the request had one")
    timestamp: str = Field(description="When the request began")
    execution_id: str
    language: str
    setup_time: int = Field(description="ms spent starting the sandbox's runtime")
    sandbox_created: bool
    output_truncated: bool
    limit_hit: LimitHit | None = Field(
        default=None, description="Present when a limit ended the run"
    )
    logs_truncated: bool | None = Field(
        default=None,
        description="Present (true) when log lines were left out to fit the response limit",
    )
    state_reset: bool | None = Field(
        default=None,
        description="Present with keepState: true when the sandbox's kept runner of this"
        " language was lost since its last execution (this one started fresh)",
    )
    state_reset_reason: StateResetReason | None = Field(
        default=None, description="Present when stateReset is true: why the runner was lost"
    )


class RunResult(Answer):
    success: bool
    output: str = Field(description="`=== Results ===`, `=== Output ===`, `=== Errors ===`")
    return_value: JsonValue = Field(
        default=None, description="The value the code returned, when it returned one"
    )
    error: CodeFailure | None = Field(default=None, description="Present when the code failed")
    execution_time: int = Field(description="ms the code ran")
    logs: list[str] = Field(description="One entry per printed line: `[stdout] ...`")
    metadata: RunMetadata

    def stored(self) -> dict[str, Any]:
        """The result as an execution's record keeps it: its log lines are kept apart, in
        chunks, and put back on reading."""
        kept = self.wire()
        del kept["logs"]
        return kept


class ExecutionAnswer(Answer):
    """The answer of a synchronous execution (also when the code failed)."""

    success: bool
    result: RunResult
    sandbox_id: str
    timestamp: str


class ExecutionStarted(Answer):
    """The 202 of an asynchronous execution."""

    execution_id: str
    status: ExecutionStatus
    sandbox_id: str
    timestamp: str


class ExecutionView(Answer):
    """An execution as it stands: status, a page of log lines, the answer once it ended."""

    execution_id: str
    status: ExecutionStatus
    sandbox_id: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    async_: bool = Field(alias="async")
    language: str | None
    session_id: str | None
    code: str | None
    logs: list[str] = Field(description="The log lines after `after`")
    cursor: int = Field(description="Pass as `after` for the next lines")
    success: bool | None = Field(default=None, description="Present once it ended")
    result: RunResult | None = Field(
        default=None, description="Present once it ended with an answer"
    )
    reason: str | None = Field(
        default=None, description="Present when the service, not the code, ended it"
    )
    timestamp: str


# -- sandboxes --------------------------------------------------------------------------------


class SandboxSummary(Answer):
    sandbox_id: str
    status: Literal["running", "closed", "expired", "failed"]
    active: bool
    busy: bool
    created_at: str
    last_used_at: str
    expires_at: str | None
    executions: int
    reason: str | None = Field(default=None, description="Present once it is not running")
    closed_at: str | None = Field(default=None, description="Present once it is not running")


class SandboxView(SandboxSummary):
    total_active: int = Field(description="Your project's active sandboxes")
    timestamp: str


class SandboxesClosed(Answer):
    message: str
    closed: int | None = Field(default=None, description="Present for all=true: how many")
    timestamp: str


# -- lists --------------------------------------------------------------------------------


class SandboxPage(Answer):
    sandboxes: list[SandboxSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
    timestamp: str


class ExecutionSummary(Answer):
    execution_id: str
    sandbox_id: str
    status: ExecutionStatus
    async_: bool = Field(alias="async")
    language: str | None
    session_id: str | None
    created_at: str
    finished_at: str | None
    execution_time: int | None
    success: bool | None


class ExecutionPage(Answer):
    executions: list[ExecutionSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")
    timestamp: str


class AuditEntry(Answer):
    id: str
    at: str
    kind: str
    actor: str
    sandbox_id: str | None
    execution_id: str | None
    duration_ms: int | float | None
    outcome: str | None
    output_bytes: int | None
    detail: str | None


class AuditPage(Answer):
    events: list[AuditEntry]
    timestamp: str
