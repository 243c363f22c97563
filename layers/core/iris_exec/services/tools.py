"""The IRIS tools' semantics (CONTRACT.md, "The module inside the sandbox").

Every call is scoped to the caller's project, which comes from the credential. Results are
the models of ``tool_answers`` (the contract's shapes); bad arguments raise ToolInputError with
a message that says what to fix."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from iris_exec.domain.errors import BadRequest, TooManyRequests
from iris_exec.domain.ports import RateLimitStore, ToolStore
from iris_exec.domain.tools import (
    VERDICT_SCORES,
    ToolCaller,
    ToolInputError,
    ToolLimitError,
    Verdict,
    VoteTally,
)
from iris_exec.services import patterns
from iris_exec.services.clock import Clock, iso, new_id, parse_instant
from iris_exec.services.ratelimit import RateLimiter
from iris_exec.services.tool_answers import (
    CastVote,
    Consensus,
    ConsensusStatus,
    Evaluation,
    EvaluationStats,
    EventRecord,
    Lineage,
    LineageEntry,
    LineageRecord,
    MetricRecord,
    MetricStats,
    Pattern,
    Patterns,
    Prompt,
    PromptList,
    PromptSummary,
    Tally,
    Vote,
    VoteResult,
)
from iris_exec.settings import Settings

MAX_NAME = 200
MAX_TEXT_BYTES = 64 * 1024
MAX_TAGS = 50
MAX_PATTERNS = 1000
#: Pattern discovery reads at most this many of the project's most recent records, and no
#: more once their metadata adds up to MINING_MAX_BYTES.
MINING_WINDOW = 20_000
MINING_MAX_BYTES = 16 * 1024 * 1024
#: Reads answer in pages: at most this many rows (and a caller may ask for fewer)...
PAGE_DEFAULT = 100
PAGE_MAX = 1000
#: ...and, for getLineage, no more entries once their input and output add up to this.
PAGE_MAX_BYTES = 1024 * 1024
#: getConsensus lists at most this many votes (its tally counts them all).
MAX_VOTES_LISTED = 1000
#: getMetrics: count, min, max and mean are exact; p50 and p95 are of the most recent this many.
METRIC_SAMPLE = 100_000
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOTES = ("approve", "reject", "abstain")


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise ToolInputError(f"{what} must be a string of 1 to {MAX_NAME} characters")
    return value


def _json_size(value: Any, what: str, limit: int = MAX_TEXT_BYTES) -> None:
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ToolInputError(f"{what} must be JSON (finite numbers, no cycles): {exc}") from exc
    if size > limit:
        raise ToolInputError(f"{what} is {size} bytes as JSON; the limit is {limit}")


def _text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise ToolInputError(f"{what} must be a string")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise ToolInputError(f"{what} is longer than {MAX_TEXT_BYTES} bytes")
    return value


def _threshold(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ToolInputError(f"{what} must be a number in (0, 1]; got {value!r}")
    return float(value)


def _page_size(limit: int | None) -> int:
    if limit is None:
        return PAGE_DEFAULT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise ToolInputError(f"limit must be an integer from 1 to {PAGE_MAX}")
    return limit


def _tally(counts: VoteTally) -> tuple[Tally, ConsensusStatus]:
    total = counts.approve + counts.reject + counts.abstain
    tally = Tally(approve=counts.approve, reject=counts.reject, abstain=counts.abstain, total=total)
    status: ConsensusStatus
    if counts.approve == 0 and counts.reject == 0:
        status = "pending"
    elif counts.approve > counts.reject:
        status = "approved"
    elif counts.reject > counts.approve:
        status = "rejected"
    else:
        status = "tied"
    return tally, status


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class ToolService:
    def __init__(
        self,
        store: ToolStore,
        clock: Clock,
        settings: Settings | None = None,
        rates: RateLimitStore | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings or Settings()
        self._writes = RateLimiter(rates, 0, clock) if rates is not None else None

    def _charge(self, caller: ToolCaller, *values: Any) -> None:
        """Count one write of the caller's project against its write rate, and the bytes of
        ``values`` (as JSON) against its storage quota; past either, the caller's tool error."""
        settings = self._settings
        if self._writes is not None:
            try:
                self._writes.take(
                    f"tools:{caller.project_id}", settings.tool_writes_per_minute, "tool writes"
                )
            except TooManyRequests as exc:
                raise ToolLimitError(
                    f"This project's tool write rate of {settings.tool_writes_per_minute} per"
                    f" minute is reached; retry in {exc.headers.get('Retry-After', '1')} s"
                    " (IRIS_TOOL_WRITES_PER_MINUTE)"
                ) from exc
        size = sum(len(json.dumps(v, separators=(",", ":")).encode()) for v in values)
        quota = settings.tool_storage_quota_bytes
        if self._store.charge(caller.project_id, size, quota) is None:
            raise ToolLimitError(
                f"This project's tool storage quota of {quota} bytes is reached (this write"
                f" needs {size}); nothing was stored (IRIS_TOOL_STORAGE_QUOTA_BYTES)"
            )

    def discover_patterns(
        self, caller: ToolCaller, min_support: float, min_confidence: float, max_patterns: int
    ) -> Patterns:
        """Rules and the number of transactions they were mined from."""
        support = _threshold(min_support, "minSupport")
        confidence = _threshold(min_confidence, "minConfidence")
        if isinstance(max_patterns, bool) or not isinstance(max_patterns, int):
            raise ToolInputError("maxPatterns must be an integer")
        if not 1 <= max_patterns <= MAX_PATTERNS:
            raise ToolInputError(f"maxPatterns must be between 1 and {MAX_PATTERNS}")
        records = self._store.mining_records(caller.project_id, MINING_WINDOW, MINING_MAX_BYTES)
        baskets = patterns.transactions(records)
        budget = patterns.Budget(self._settings.mining_budget_s)
        found = [
            Pattern(
                antecedent=list(rule.antecedent),
                consequent=list(rule.consequent),
                support=rule.support,
                confidence=rule.confidence,
                lift=rule.lift,
                count=rule.count,
            )
            for rule in patterns.rules(baskets, support, confidence, max_patterns, budget)
        ]
        return Patterns(patterns=found, transactions=len(baskets))

    def evaluate_output(
        self, caller: ToolCaller, input_text: str, output_text: str, verdict: Verdict
    ) -> Evaluation:
        _text(input_text, "input")
        _text(output_text, "output")
        if verdict not in VERDICT_SCORES:
            raise ToolInputError("verdict must be 'correct', 'incorrect' or 'partial'")
        score = VERDICT_SCORES[verdict]
        self._charge(caller, input_text, output_text)
        record_id, now = new_id("evl_"), self._clock()
        stats = self._store.add_evaluation(
            caller, record_id, input_text, output_text, verdict, score, now
        )
        return Evaluation(
            id=record_id,
            input=input_text,
            output=output_text,
            verdict=verdict,
            score=score,
            createdAt=iso(now),
            stats=EvaluationStats(
                total=stats.total,
                correct=stats.correct,
                partial=stats.partial,
                incorrect=stats.incorrect,
                accuracy=stats.score_sum / stats.total if stats.total else 0.0,
            ),
        )

    def submit_vote(
        self, caller: ToolCaller, consensus_id: str, agent_id: str, vote: Vote
    ) -> VoteResult:
        _name(consensus_id, "consensusId")
        _name(agent_id, "agentId")
        if vote not in VOTES:
            raise ToolInputError("vote must be 'approve', 'reject' or 'abstain'")
        self._charge(caller, consensus_id, agent_id, vote)
        counts = self._store.put_vote(caller, consensus_id, agent_id, vote, self._clock())
        tally, status = _tally(counts)
        return VoteResult(
            consensusId=consensus_id,
            agentId=agent_id,
            vote=vote,
            tally=tally,
            status=status,
        )

    def get_consensus(self, caller: ToolCaller, consensus_id: str) -> Consensus:
        _name(consensus_id, "consensusId")
        votes, counts = self._store.get_votes(caller.project_id, consensus_id, MAX_VOTES_LISTED)
        tally, status = _tally(counts)
        return Consensus(
            consensusId=consensus_id,
            votes=[
                CastVote(agentId=v.agent_id, vote=v.vote, updatedAt=iso(v.updated_at))
                for v in votes
            ],
            tally=tally,
            status=status,
        )

    def log_event(
        self, caller: ToolCaller, event: str, metadata: dict[str, Any] | None
    ) -> EventRecord:
        _name(event, "event")
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise ToolInputError("metadata must be a JSON object")
        _json_size(metadata, "metadata")
        self._charge(caller, event, metadata)
        record_id, now = new_id("evt_"), self._clock()
        self._store.add_event(caller, record_id, event, metadata, now)
        return EventRecord(id=record_id, event=event, timestamp=iso(now))

    def save_prompt(
        self, caller: ToolCaller, name: str, template: str, variables: list[str] | None
    ) -> Prompt:
        _name(name, "name")
        _text(template, "template")
        if not template:
            raise ToolInputError("template must not be empty")
        found = list(dict.fromkeys(PLACEHOLDER.findall(template)))
        if variables is None:
            declared = found
        else:
            if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
                raise ToolInputError("variables must be a list of names")
            bad = [v for v in variables if not VARIABLE.match(v)]
            if bad:
                raise ToolInputError(f"variable names are identifiers; not {bad}")
            if len(set(variables)) != len(variables):
                raise ToolInputError("variables lists a name more than once")
            missing = [v for v in variables if v not in found]
            if missing:
                raise ToolInputError(
                    f"variables {missing} are declared but do not appear in the template as"
                    f" {{{missing[0]}}}"
                )
            undeclared = [v for v in found if v not in variables]
            if undeclared:
                raise ToolInputError(
                    f"the template uses {['{' + v + '}' for v in undeclared]} but variables does"
                    " not declare them"
                )
            declared = list(variables)
        self._charge(caller, name, template, declared)
        saved = self._store.save_prompt(caller.project_id, name, template, declared, self._clock())
        return self._prompt(
            saved.name, saved.version, saved.template, saved.variables, saved.created_at
        )

    def get_prompt(self, caller: ToolCaller, name: str, version: int | None) -> Prompt | None:
        _name(name, "name")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise ToolInputError("version must be a positive integer")
        found = self._store.get_prompt(caller.project_id, name, version)
        if found is None:
            return None
        return self._prompt(
            found.name, found.version, found.template, found.variables, found.created_at
        )

    @staticmethod
    def _prompt(
        name: str, version: int, template: str, variables: list[str], created_at: float
    ) -> Prompt:
        return Prompt(
            name=name,
            version=version,
            template=template,
            variables=variables,
            createdAt=iso(created_at),
        )

    def list_prompts(
        self, caller: ToolCaller, after: str | None = None, limit: int | None = None
    ) -> PromptList:
        """A page of prompt names (by name); ``next`` is the ``after`` of the next page."""
        size = _page_size(limit)
        if after is not None:
            _name(after, "after")
        found = self._store.list_prompts(caller.project_id, after, size)
        return PromptList(
            prompts=[
                PromptSummary(
                    name=p.name, latestVersion=p.latest_version, updatedAt=iso(p.updated_at)
                )
                for p in found
            ],
            next=found[-1].name if len(found) == size else None,
        )

    def track_lineage(
        self,
        caller: ToolCaller,
        signature: str,
        input_value: Any,
        output_value: Any,
        parent_id: str | None,
    ) -> LineageRecord:
        _name(signature, "signature")
        _json_size(input_value, "input")
        _json_size(output_value, "output")
        if parent_id is not None:
            _name(parent_id, "parentId")
        self._charge(caller, signature, input_value, output_value, parent_id)
        record_id, now = new_id("lin_"), self._clock()
        stored = self._store.add_lineage(
            caller.project_id, record_id, signature, parent_id, input_value, output_value, now
        )
        if not stored:
            raise ToolInputError(
                f"parentId {parent_id!r} is not a lineage id of this project; pass the id a"
                " previous trackLineage returned, or omit it"
            )
        return LineageRecord(
            id=record_id, signature=signature, parentId=parent_id, createdAt=iso(now)
        )

    def get_lineage(
        self,
        caller: ToolCaller,
        signature: str,
        after: str | None = None,
        limit: int | None = None,
    ) -> Lineage:
        """A page of the lineage, oldest first: at most ``limit`` entries and about
        PAGE_MAX_BYTES; ``next`` is the ``after`` of the next page (null at the end)."""
        _name(signature, "signature")
        size = _page_size(limit)
        if after is not None:
            _name(after, "after")
        found = self._store.get_lineage(caller.project_id, signature, after, size, PAGE_MAX_BYTES)
        if found is None:
            raise ToolInputError(
                f"after {after!r} is not an entry of the lineage {signature!r}; pass the"
                " `next` of the previous page"
            )
        page, more = found
        return Lineage(
            signature=signature,
            entries=[
                LineageEntry(
                    id=e.id,
                    parentId=e.parent_id,
                    input=e.input,
                    output=e.output,
                    createdAt=iso(e.created_at),
                )
                for e in page
            ],
            next=page[-1].id if more and page else None,
        )

    def record_metric(
        self, caller: ToolCaller, metric: str, value: float, tags: dict[str, str] | None
    ) -> MetricRecord:
        _name(metric, "metric")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ToolInputError(f"value must be a finite number; got {value!r}")
        tags = {} if tags is None else tags
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise ToolInputError("tags must be a flat map of strings to strings")
        if len(tags) > MAX_TAGS:
            raise ToolInputError(f"at most {MAX_TAGS} tags")
        _json_size(tags, "tags", 8 * 1024)
        self._charge(caller, metric, value, tags)
        record_id, now = new_id("met_"), self._clock()
        self._store.add_metric(caller, record_id, metric, float(value), tags, now)
        return MetricRecord(
            id=record_id, metric=metric, value=float(value), tags=tags, timestamp=iso(now)
        )

    def get_metrics(
        self, caller: ToolCaller, metric: str, since: str | float | None
    ) -> MetricStats:
        _name(metric, "metric")
        try:
            start = parse_instant(since, "since")
        except BadRequest as exc:
            raise ToolInputError(exc.message) from exc
        summary = self._store.metric_summary(caller.project_id, metric, start, METRIC_SAMPLE)
        if not summary.count:
            return MetricStats(metric=metric, count=0, min=None, max=None, mean=None,
                               p50=None, p95=None, sampled=0)  # fmt: skip
        values = sorted(summary.recent)
        return MetricStats(
            metric=metric,
            count=summary.count,
            min=summary.min,
            max=summary.max,
            mean=summary.total / summary.count,
            p50=_percentile(values, 0.5),
            p95=_percentile(values, 0.95),
            sampled=len(values),
        )
