"""Records of the IRIS tools (reflexion, consensus, telemetry, prompts, lineage, metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from iris_exec.domain.errors import BadRequest

Verdict = Literal["correct", "incorrect", "partial"]
VoteValue = Literal["approve", "reject", "abstain"]
VERDICT_SCORES: dict[str, float] = {"correct": 1.0, "partial": 0.5, "incorrect": 0.0}


class ToolInputError(BadRequest):
    """The arguments of a tool call are wrong; the message says what to fix."""


class ToolLimitError(ToolInputError):
    """A limit of the caller's project was reached (storage quota, write rate, mining
    budget): the caller's own tool error, the message says which limit and what to do."""


@dataclass(frozen=True, slots=True)
class ToolCaller:
    """Who calls a tool: the project comes from the credential, never from an argument.
    Session and execution are known when the call comes from an execution."""

    project_id: str
    session_id: str | None = None
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationStats:
    total: int
    correct: int
    partial: int
    incorrect: int
    score_sum: float


@dataclass(frozen=True, slots=True)
class Vote:
    consensus_id: str
    agent_id: str
    vote: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class VoteTally:
    approve: int
    reject: int
    abstain: int


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """Exact aggregates of a metric's values, and the most recent values (at most the
    sample asked for) that its percentiles are taken from."""

    count: int
    min: float | None
    max: float | None
    total: float
    recent: list[float]


@dataclass(frozen=True, slots=True)
class PromptVersion:
    name: str
    version: int
    template: str
    variables: list[str]
    created_at: float


@dataclass(frozen=True, slots=True)
class PromptSummary:
    name: str
    latest_version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class LineageEntry:
    id: str
    signature: str
    parent_id: str | None
    input: Any
    output: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class MiningRecord:
    """One recorded fact, as pattern discovery sees it."""

    transaction: str
    kind: Literal["event", "evaluation", "vote", "metric"]
    name: str
    metadata: dict[str, Any] | None = None
