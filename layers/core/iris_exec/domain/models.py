"""Domain models: plain dataclasses, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class SandboxStatus(StrEnum):
    RUNNING = "running"
    CLOSED = "closed"
    EXPIRED = "expired"
    FAILED = "failed"


class GoneReason(StrEnum):
    """Why a sandbox is gone, as a 410 tells it."""

    CLOSED = "closed"
    EXPIRED = "expired"
    EVICTED = "evicted"
    FAILED = "failed"

    @property
    def status(self) -> SandboxStatus:
        return {
            GoneReason.CLOSED: SandboxStatus.CLOSED,
            GoneReason.EVICTED: SandboxStatus.CLOSED,
            GoneReason.EXPIRED: SandboxStatus.EXPIRED,
            GoneReason.FAILED: SandboxStatus.FAILED,
        }[self]


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    """One sandbox in the registry. Times are epoch seconds."""

    sandbox_id: str
    project_id: str
    provider: str
    provider_ref: str
    status: SandboxStatus
    created_at: float
    last_used_at: float
    #: Idle deadline: last use + idle timeout, capped by the lifetime deadline.
    expires_at: float
    #: Hard end of life: creation + max lifetime.
    lifetime_deadline: float
    closed_at: float | None = None
    closed_reason: GoneReason | None = None
    detail: str | None = None
    lease_id: str | None = None
    lease_until: float | None = None
    executions: int = 0
    #: How code in the sandbox reaches the IRIS tools (e.g. "unix-socket", "egress-header",
    #: "sandbox-token"): says whether an execution token is ever visible inside.
    tool_channel: str | None = None

    def is_busy(self, now: float) -> bool:
        return self.lease_id is not None and (self.lease_until or 0.0) > now

    def is_live(self, now: float) -> bool:
        """Running and not past its deadline. A busy sandbox stays live until its lease ends."""
        return self.status is SandboxStatus.RUNNING and (self.expires_at > now or self.is_busy(now))


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    key_hash: str
    #: First characters of the key, enough to recognise it in a list.
    prefix: str
    project_id: str
    created_at: float
    revoked_at: float | None = None
    name: str | None = None
    #: API Gateway key this key is metered on (usage plans), on AWS.
    usage_key: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: decided by the credential, never by a request argument."""

    project_id: str
    key_id: str
    #: The API Gateway key its requests are metered on (AWS), passed on to the tool tokens
    #: of its executions.
    usage_key: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


Language = Literal["typescript", "javascript", "python"]
Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class CreatedSandbox:
    """A provider's answer to create: its own id, and how the tools are reached from it."""

    provider_ref: str
    tool_channel: str


@dataclass(frozen=True, slots=True)
class ProviderSandbox:
    """A sandbox as the provider knows it (for reconciling with the registry)."""

    provider_ref: str
    sandbox_id: str
    project_id: str
    #: When the provider started it (epoch seconds), if it says.
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ToolGrant:
    """What an execution may do with the IRIS tools: one project, one sandbox, one execution,
    until ``expires_at``. Providers turn it into whatever reaches their sandboxes."""

    project_id: str
    sandbox_id: str
    execution_id: str
    expires_at: float
    token: str
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionJob:
    """One execution as a provider receives it."""

    execution_id: str
    source: str
    language: Language
    project_id: str
    session_id: str | None
    context: dict[str, Any]
    timeout_s: float
    output_limit_bytes: int
    grant: ToolGrant | None = None
    #: The sandbox's end of life (epoch seconds): no provider may keep it alive past this.
    sandbox_deadline: float | None = None
    #: Told about output as the program prints it (live logs); may be None.
    on_output: Callable[[OutputChunk], None] | None = None
    #: Run in the sandbox's kept runner of this language (state kept between executions).
    keep_state: bool = False


@dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: Stream
    text: str


@dataclass(frozen=True, slots=True)
class CodeError:
    """An error of the user's code: data in the response, not an HTTP error."""

    name: str
    message: str
    stack: str | None = None


LimitHit = Literal["timeout", "memory", "output"]


@dataclass(slots=True)
class RunOutcome:
    """What a provider observed while running one execution."""

    output: list[OutputChunk] = field(default_factory=list)
    succeeded: bool = False
    #: The top-level return value as JSON text, or None if nothing was returned.
    value_json: str | None = None
    error: CodeError | None = None
    limit_hit: LimitHit | None = None
    output_truncated: bool = False
    execution_ms: float = 0.0
    setup_ms: float = 0.0
    exit_code: int | None = None
    #: Kept state: why the runner's state was lost before this execution ("timeout",
    #: "memory", "output", "exit", "crash", "busy"); None when it was kept.
    state_reset: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """What is known of one finished execution, for metrics and audit."""

    project_id: str
    sandbox_id: str
    execution_id: str
    sandbox_created: bool
    succeeded: bool
    error_name: str | None
    #: The service's own classification (services/executions.py, classify).
    outcome: str
    execution_ms: float
    setup_ms: float
    output_bytes: int
    started_at: float
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class IdempotencyHit:
    """What an Idempotency-Key already stands for: a request still running, a finished one
    (with its answer), or one with another body."""

    state: Literal["in_progress", "completed", "mismatch"]
    response: dict[str, Any] | None = None


AuditKind = Literal[
    "execution",
    "sandbox.created",
    "sandbox.closed",
    "sandbox.expired",
    "sandbox.evicted",
    "sandbox.failed",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of a project's audit trail."""

    event_id: str
    project_id: str
    at: float
    kind: AuditKind
    #: Who did it: an API key id, or "system" (reaper, quota eviction, provider loss).
    actor: str
    sandbox_id: str | None = None
    execution_id: str | None = None
    duration_ms: float | None = None
    outcome: str | None = None
    output_bytes: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a page of a newest-first list ends: the last item's creation time and id."""

    created_at: float
    item_id: str


ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "timed_out"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})
UNFINISHED_STATUSES: frozenset[str] = frozenset({"queued", "running"})


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """An asynchronous execution: what was asked, where, and how it is going."""

    execution_id: str
    project_id: str
    sandbox_id: str
    status: ExecutionStatus
    #: The request as the worker needs it (code, language, timeout, session, context...).
    request: dict[str, Any]
    #: The sandbox lease this execution holds ("" while it waits for a busy sandbox), and
    #: whether it created the sandbox.
    lease_id: str
    sandbox_created: bool
    created_at: float
    #: While queued or running, the worker must show signs of life before this; past it,
    #: the execution is failed (its worker died).
    alive_until: float
    actor: str
    started_at: float | None = None
    finished_at: float | None = None
    #: The answer's `result`, when done (the same shape as the synchronous call's).
    result: dict[str, Any] | None = None
    #: Why it failed when the infrastructure, not the code, ended it.
    reason: str | None = None
    log_lines: int = 0
    #: The answer's ``executionTime`` (ms the code ran), when done: lists show it without
    #: reading the whole answer.
    execution_ms: float | None = None


@dataclass(frozen=True, slots=True)
class ExecutionEnd:
    """How an execution ended, as ``ExecutionStore.finish`` records it."""

    status: ExecutionStatus
    finished_at: float
    #: The answer's `result` without its log lines (kept apart), or None when none came.
    result: dict[str, Any] | None = None
    #: Why the infrastructure, not the code, ended it.
    reason: str | None = None
    #: How many log lines are stored; None leaves the count as it is.
    log_lines: int | None = None

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES:
            raise ValueError(f"an execution cannot end {self.status}")
