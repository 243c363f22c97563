"""What the IRIS tools answer: the MCP tools' structured output, as the tool service builds
it (field names are the wire's)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, JsonValue, PlainSerializer


def _json_number(value: float) -> int | float:
    """1.0 as 1: a JSON number has no int/float kind, and JavaScript clients print 1; this
    way Python clients (iris_prime) see the very same numbers."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


Number = Annotated[float, PlainSerializer(_json_number, return_type=int | float)]


class Pattern(BaseModel):
    antecedent: list[str] = Field(description="Items that, together, predict the consequent")
    consequent: list[str] = Field(description="Items predicted")
    support: Number = Field(description="Share of transactions containing every item of the rule")
    confidence: Number = Field(description="support(rule) / support(antecedent)")
    lift: Number = Field(
        description="confidence / support(consequent); above 1 means positive association"
    )
    count: int = Field(description="Transactions containing every item of the rule")


class Patterns(BaseModel):
    patterns: list[Pattern]
    transactions: int = Field(description="Transactions the rules were mined from")


class EvaluationStats(BaseModel):
    total: int
    correct: int
    partial: int
    incorrect: int
    accuracy: Number = Field(description="Mean score over the project's evaluations")


class Evaluation(BaseModel):
    id: str
    input: str
    output: str
    verdict: Literal["correct", "incorrect", "partial"]
    score: Number
    createdAt: str
    stats: EvaluationStats


Vote = Literal["approve", "reject", "abstain"]
ConsensusStatus = Literal["pending", "approved", "rejected", "tied"]


class Tally(BaseModel):
    approve: int
    reject: int
    abstain: int
    total: int


class VoteResult(BaseModel):
    consensusId: str
    agentId: str
    vote: Vote
    tally: Tally
    status: ConsensusStatus


class CastVote(BaseModel):
    agentId: str
    vote: Vote
    updatedAt: str


class Consensus(BaseModel):
    consensusId: str
    votes: list[CastVote]
    tally: Tally
    status: ConsensusStatus


class EventRecord(BaseModel):
    id: str
    event: str
    timestamp: str


class Prompt(BaseModel):
    name: str
    version: int
    template: str
    variables: list[str]
    createdAt: str


class PromptLookup(BaseModel):
    prompt: Prompt | None = Field(description="The prompt, or null if there is none")


class PromptSummary(BaseModel):
    name: str
    latestVersion: int
    updatedAt: str


class PromptList(BaseModel):
    prompts: list[PromptSummary]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end")


class LineageRecord(BaseModel):
    id: str
    signature: str
    parentId: str | None
    createdAt: str


class LineageEntry(BaseModel):
    id: str
    parentId: str | None
    input: JsonValue
    output: JsonValue
    createdAt: str


class Lineage(BaseModel):
    signature: str
    entries: list[LineageEntry]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end")


class MetricRecord(BaseModel):
    id: str
    metric: str
    value: Number
    tags: dict[str, str]
    timestamp: str


class MetricStats(BaseModel):
    metric: str
    count: int
    min: Number | None
    max: Number | None
    mean: Number | None
    p50: Number | None
    p95: Number | None
    sampled: int = Field(description="How many of the most recent values p50 and p95 are of")
