"""Ports: what the services need from the outside world. Adapters implement them;
each port has one contract test suite run against every adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from iris_exec.domain.models import (
    ApiKeyRecord,
    AuditEvent,
    CreatedSandbox,
    ExecutionEnd,
    ExecutionJob,
    ExecutionRecord,
    ExecutionReport,
    GoneReason,
    IdempotencyHit,
    Position,
    ProviderSandbox,
    RunOutcome,
    SandboxRecord,
)

if TYPE_CHECKING:
    from pathlib import Path

    from iris_exec.domain.tools import (
        EvaluationStats,
        LineageEntry,
        MetricSummary,
        MiningRecord,
        PromptSummary,
        PromptVersion,
        ToolCaller,
        Vote,
        VoteTally,
    )


class SandboxRegistry(Protocol):
    """Where sandboxes are registered, across requests (and Lambda invocations).

    Every read is scoped to a project: another project's sandbox is simply not found."""

    def create(self, record: SandboxRecord) -> None:
        """Register a new sandbox; raises ``AlreadyExists`` if the id is taken."""

    def get(self, project_id: str, sandbox_id: str) -> SandboxRecord | None: ...

    def list_live(self, project_id: str, now: float) -> list[SandboxRecord]:
        """The project's sandboxes that are running and not past their deadline (or busy)."""

    def list_recent(
        self, project_id: str, status: str | None, limit: int, before: Position | None
    ) -> tuple[list[SandboxRecord], Position | None]:
        """The project's sandboxes, newest first (by ``created_at``; ties in the store's own
        order, each once), with ``status``
        if given, at most ``limit``, starting after ``before``; and where the next page
        starts (None when there is none)."""

    def list_due(self, now: float, limit: int) -> list[SandboxRecord]:
        """Running sandboxes of any project past their deadline and not busy: the reaper's work."""

    def list_running(self, provider: str) -> list[SandboxRecord]:
        """Every sandbox marked running for a provider (reconciliation after a restart)."""

    def acquire_lease(
        self, project_id: str, sandbox_id: str, lease_id: str, until: float, now: float
    ) -> bool:
        """Take the execution lease if the sandbox is running and not leased (or the lease
        expired). Atomic: of two callers at once, one gets it."""

    def release_lease(
        self,
        project_id: str,
        sandbox_id: str,
        lease_id: str,
        last_used_at: float,
        expires_at: float,
    ) -> None:
        """Give back the lease (only if still ours) and record the use."""

    def mark_gone(
        self,
        project_id: str,
        sandbox_id: str,
        reason: GoneReason,
        at: float,
        detail: str | None = None,
        *,
        only_if_idle: bool = False,
    ) -> bool:
        """Move a running sandbox to its final status. False if it was not running (or, with
        ``only_if_idle``, if it holds a live lease at ``at``)."""


class KeyStore(Protocol):
    """API keys, stored by SHA-256 hash only."""

    def add(self, record: ApiKeyRecord) -> None: ...

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    def list(self, project_id: str | None = None) -> list[ApiKeyRecord]: ...

    def revoke(self, key_id: str, at: float) -> bool: ...

    def delete(self, key_id: str) -> bool:
        """Forget a key entirely (a temporary key of the CLI). True if one was deleted."""


class RateLimitStore(Protocol):
    def hit(self, subject: str, window_start: int, window_s: int) -> int:
        """Count one request of ``subject`` in the window starting at ``window_start`` and
        return the count including it. Atomic across concurrent callers. The count is kept
        at least ``2 * window_s`` seconds after ``window_start``."""

    def recent(self, subject: str, since: int) -> dict[int, int]:
        """The counts of ``subject``'s windows starting at ``since`` or later, by start."""

    def unhit(self, subject: str, window_start: int) -> None:
        """Take back one request counted by ``hit`` (it was refused)."""


class SandboxProvider(Protocol):
    """Runs sandboxes: local bubblewrap jails or E2B microVMs."""

    name: str

    async def start(self) -> None:
        """Prepare (and check) the provider; raise with a clear message if it cannot work."""

    async def shutdown(self) -> None: ...

    async def create(self, sandbox_id: str, project_id: str, lifetime_s: float) -> CreatedSandbox:
        """Start a sandbox (at most ``lifetime_s`` long); its provider id and tool channel.
        Retried creates with the same ``sandbox_id`` must not make a second sandbox."""

    async def run(self, provider_ref: str, job: ExecutionJob) -> RunOutcome:
        """Run one execution; errors of the user's code are data in the outcome.
        Raises ``SandboxLost`` if the sandbox is gone, ``ProviderUnavailable`` if the
        provider cannot serve."""

    async def kill(self, provider_ref: str) -> None:
        """Stop the sandbox. Idempotent: killing a gone sandbox is fine."""

    async def is_alive(self, provider_ref: str) -> bool: ...

    async def list_sandboxes(self) -> list[ProviderSandbox]:
        """Every sandbox this provider runs for this service (to find orphans)."""


class ToolStore(Protocol):
    """Where the IRIS tools keep their records. Every read and write is scoped to a project."""

    def add_event(
        self, caller: ToolCaller, record_id: str, event: str, metadata: dict[str, Any], at: float
    ) -> None: ...

    def add_evaluation(
        self,
        caller: ToolCaller,
        record_id: str,
        input_text: str,
        output_text: str,
        verdict: str,
        score: float,
        at: float,
    ) -> EvaluationStats:
        """Store one evaluation and return the project's totals including it (atomically)."""

    def put_vote(
        self, caller: ToolCaller, consensus_id: str, agent_id: str, vote: str, at: float
    ) -> VoteTally:
        """Insert or replace the agent's vote; return the consensus's tally."""

    def get_votes(
        self, project_id: str, consensus_id: str, limit: int
    ) -> tuple[list[Vote], VoteTally]:
        """At most ``limit`` votes (by agent id) and the tally of all of them."""

    def save_prompt(
        self, project_id: str, name: str, template: str, variables: list[str], at: float
    ) -> PromptVersion:
        """Store the next version of a prompt. Two concurrent saves get two versions."""

    def get_prompt(
        self, project_id: str, name: str, version: int | None
    ) -> PromptVersion | None: ...

    def list_prompts(self, project_id: str, after: str | None, limit: int) -> list[PromptSummary]:
        """At most ``limit`` prompt heads whose name sorts after ``after``, by name."""

    def add_lineage(
        self,
        project_id: str,
        record_id: str,
        signature: str,
        parent_id: str | None,
        input_value: Any,
        output_value: Any,
        at: float,
    ) -> bool:
        """Append to a lineage. False (and nothing stored) if the parent is not this project's."""

    def get_lineage(
        self, project_id: str, signature: str, after: str | None, limit: int, max_bytes: int
    ) -> tuple[list[LineageEntry], bool] | None:
        """Oldest first, the entries after the one whose id is ``after``: at most ``limit``,
        and no more once their input and output add up to ``max_bytes`` (the first always
        comes); and whether more follow. None if ``after`` is not an entry of this lineage."""

    def add_metric(
        self,
        caller: ToolCaller,
        record_id: str,
        metric: str,
        value: float,
        tags: dict[str, str],
        at: float,
    ) -> None: ...

    def metric_summary(
        self, project_id: str, metric: str, since: float | None, sample: int
    ) -> MetricSummary: ...

    def mining_records(self, project_id: str, limit: int, max_bytes: int) -> list[MiningRecord]:
        """The project's most recent records (events, evaluations, votes, metrics): at most
        ``limit``, and no more once their metadata adds up to ``max_bytes``."""

    def charge(self, project_id: str, size: int, quota: int) -> int | None:
        """Add ``size`` bytes to the project's stored total unless that would pass ``quota``:
        the new total, or None (and nothing added). Atomic across concurrent callers."""


class ExecutionObserver(Protocol):
    """Told about every finished execution (metrics on AWS; nothing by default)."""

    def executed(self, report: ExecutionReport) -> None: ...


class IdempotencyStore(Protocol):
    """Remembers the answer to a request sent with an Idempotency-Key (keys are scoped to a
    project by the caller)."""

    def begin(self, key: str, fingerprint: str, now: float, lock_s: float) -> IdempotencyHit | None:
        """Claim ``key`` for a request whose body hashes to ``fingerprint``. None: it is
        ours, run it. Otherwise what the key already stands for. A claim not completed
        within ``lock_s`` (its worker died) can be taken again."""

    def complete(self, key: str, fingerprint: str, response: dict[str, Any], now: float) -> None:
        """Keep the answer for later retries (for the store's retention)."""

    def release(self, key: str, fingerprint: str) -> None:
        """Give up a claim (the request failed): a retry runs it again."""


class AuditLog(Protocol):
    """The audit trail: every execution and sandbox lifecycle change, per project."""

    def record(self, event: AuditEvent) -> None: ...

    def query(
        self, project_id: str, since: float | None, until: float | None, limit: int
    ) -> list[AuditEvent]:
        """Newest first, at most ``limit``."""

    def purge(self, before: float) -> int:
        """Drop entries older than ``before`` (where the store has no TTL of its own)."""


class ExecutionStore(Protocol):
    """Asynchronous executions and their log lines, per project."""

    def create(self, record: ExecutionRecord) -> None: ...

    def get(self, project_id: str, execution_id: str) -> ExecutionRecord | None: ...

    def start(
        self, project_id: str, execution_id: str, *, started_at: float, alive_until: float
    ) -> bool:
        """A queued execution is now running. Atomic; False (and nothing changed) unless it
        was queued and this project's (another delivery of the worker event took it)."""

    def beat(self, project_id: str, execution_id: str, *, alive_until: float) -> bool:
        """A sign of life: an unfinished execution's worker runs until ``alive_until`` at
        least. Atomic; False (and nothing changed) if it has ended meanwhile."""

    def finish(
        self,
        project_id: str,
        execution_id: str,
        end: ExecutionEnd,
        *,
        alive_before: float | None = None,
    ) -> bool:
        """End an unfinished execution as ``end`` says; given ``alive_before``, only if its
        signs of life stopped before then (declaring its worker dead). Atomic; False (and
        nothing changed) if it had already ended or the condition did not hold."""

    def append_logs(self, project_id: str, execution_id: str, first: int, lines: list[str]) -> None:
        """Store lines ``first``, ``first + 1``... of the execution's log."""

    def logs(self, project_id: str, execution_id: str, after: int, limit: int) -> list[str]:
        """Lines ``after + 1`` on (at most ``limit``)."""

    def list_recent(
        self,
        project_id: str,
        *,
        sandbox_id: str | None,
        status: str | None,
        limit: int,
        before: Position | None,
    ) -> tuple[list[ExecutionRecord], Position | None]:
        """The project's executions, newest first (by ``created_at``; ties in the store's own
        order, each once), filtered by
        sandbox and status if given, at most ``limit``, starting after ``before``; without
        their ``result`` (None). Also where the next page starts (None when there is none)."""

    def list_stale(self, now: float, limit: int) -> list[ExecutionRecord]:
        """Queued or running executions whose worker showed no sign of life by ``now``."""

    def purge(self, before: float) -> int:
        """Drop finished executions older than ``before`` (where the store has no TTL)."""


class WorkDispatcher(Protocol):
    """Starts the worker of an asynchronous execution (a task here, a Lambda on AWS)."""

    def dispatch(self, project_id: str, execution_id: str) -> None:
        """Start the worker; raise ``ServiceUnavailable`` if it cannot be started."""


class ToolSocket(Protocol):
    """One sandbox's tool socket: its channel to the IRIS tools (local jails)."""

    def reset(self) -> None:
        """A new execution starts: a fresh budget, and nothing left open by the last one."""

    async def aclose(self) -> None: ...


class ToolSockets(Protocol):
    """What opens each local sandbox's tool socket (the local server serves them)."""

    async def open(self, name: str, path: Path) -> ToolSocket:
        """Listen on ``path`` for the tool calls of one sandbox."""


class UsageKeys(Protocol):
    """API Gateway usage-plan keys: one per customer API key, so usage plans meter them."""

    def issue(self, key_id: str, project_id: str) -> str:
        """Create the usage key of one of our keys; its value (not a secret)."""

    def retire(self, key_id: str) -> bool:
        """Delete the usage key of one of our keys (after a revoke)."""
