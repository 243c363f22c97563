"""The IRIS tool server (MCP): the eight tools of the contract and their read-side companions.

Tool names are the `iris.*` method names. Arguments never choose the project: the caller
(project, and session and execution when the call comes from an execution) is put into the
request by the authentication in front of this server (`iris_exec.mcp.app`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import Tool as MCPTool
from pydantic import Field, JsonValue, ValidationError

from iris_exec import __version__
from iris_exec.domain.errors import IrisError
from iris_exec.domain.tools import ToolCaller
from iris_exec.services.tool_answers import (
    Consensus,
    Evaluation,
    EventRecord,
    Lineage,
    LineageRecord,
    MetricRecord,
    MetricStats,
    Patterns,
    Prompt,
    PromptList,
    PromptLookup,
    VoteResult,
)
from iris_exec.services.tools import ToolService

log = logging.getLogger(__name__)

CALLER_KEY = "iris_caller"

INSTRUCTIONS = (
    "IRIS agent-learning tools: pattern discovery over your project's records, reflexion"
    " (evaluations), consensus voting, telemetry events, a versioned prompt registry, lineage"
    " tracking and metrics. Every call is scoped to the project of your credential."
)


# -- the server ---------------------------------------------------------------------------


def _compact_schema(node: Any) -> Any:
    """A JSON schema without pydantic's generated titles ("Minsupport"): they repeat the
    property names and cost an agent's context on every tools/list."""
    if isinstance(node, list):
        return [_compact_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    compact: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            compact[key] = {name: _compact_schema(schema) for name, schema in value.items()}
        else:
            compact[key] = _compact_schema(value)
    return compact


class IrisMcpServer(MCPServer[Any]):
    """An MCP server whose tools/list is compact: no generated titles, docstrings on one
    line. Computed once (the tools do not change after start)."""

    _listed: list[MCPTool] | None = None

    async def list_tools(self) -> list[MCPTool]:
        if self._listed is None:
            self._listed = [
                tool.model_copy(
                    update={
                        "description": " ".join((tool.description or "").split()),
                        "input_schema": _compact_schema(tool.input_schema),
                        "output_schema": _compact_schema(tool.output_schema),
                    }
                )
                for tool in await super().list_tools()
            ]
        return self._listed

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        """Tool errors in the contract's words: arguments that do not fit the schema said
        plainly (which argument, what it must be: no pydantic codes, echoed input or
        links), and no "Error executing tool" in front."""
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: its generic text stays generic
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}"
                    for error in cause.errors(include_url=False)
                )
                raise ToolError(f"invalid arguments: {problems}") from cause
            # The SDK puts "Error executing tool <name>: " in front; the caller knows the name.
            raise ToolError(str(exc).removeprefix(f"Error executing tool {name}: ")) from cause


Name = Annotated[str, Field(min_length=1, max_length=200)]
After = Annotated[
    str | None, Field(description="The `next` of the previous page; omit for the first")
]
Limit = Annotated[int | None, Field(description="Page size, 1 to 1000 (default 100)")]


def caller_of(ctx: Context) -> ToolCaller:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    caller = state.get(CALLER_KEY)
    if not isinstance(caller, ToolCaller):
        # The authentication in front of the server always sets it; never fall back.
        raise ToolError("not authenticated")
    return caller


def tool_error(exc: IrisError, *, with_status: bool = False) -> ToolError:
    """MCP's one translation of an error into a tool error the caller can act on. The IRIS
    tools say the message (the sandbox's `iris` module raises it as IrisToolError); the
    execution tools, as the HTTP API would, ``<status> <title>: <message>`` plus ``(retry
    after N s)``. A 5xx's detail goes to the log; the caller never reads it."""
    if exc.status >= 500:
        log.error("an MCP tool failed: %s", exc.detail)
    message = exc.public_message()
    if not with_status:
        return ToolError(message)
    retry = exc.headers.get("Retry-After")
    suffix = f" (retry after {retry} s)" if retry else ""
    return ToolError(f"{exc.status} {exc.title}: {message}{suffix}")


def _call[T](fn: Callable[[], T]) -> T:
    """Domain errors become tool errors the caller can act on; nothing internal leaks."""
    try:
        return fn()
    except IrisError as exc:
        raise tool_error(exc) from exc


def build_mcp_server(tools: ToolService) -> MCPServer[Any]:
    """The IRIS tools alone: what an execution's own token reaches."""
    server = IrisMcpServer(name="iris", version=__version__, instructions=INSTRUCTIONS)
    register_iris_tools(server, tools)
    return server


def register_iris_tools(server: MCPServer[Any], tools: ToolService) -> None:
    """The twelve IRIS tools on ``server``."""

    @server.tool(name="discoverPatterns", structured_output=True)
    def discover_patterns(
        ctx: Context,
        minSupport: Annotated[
            float, Field(description="Minimum share of transactions, in (0, 1]", gt=0, le=1)
        ] = 0.3,
        minConfidence: Annotated[
            float, Field(description="Minimum confidence of a rule, in (0, 1]", gt=0, le=1)
        ] = 0.7,
        maxPatterns: Annotated[
            int, Field(description="Most rules to return (best first)", ge=1, le=1000)
        ] = 10,
    ) -> Patterns:
        """Association rules mined from the project's records: one transaction per session
        (or per execution), items `event:<name>`, `event:<name>.<key>=<value>`, `verdict:<v>`,
        `vote:<v>`, `metric:<name>`. Sorted by lift, then confidence, then support."""
        caller = caller_of(ctx)
        return _call(
            lambda: tools.discover_patterns(caller, minSupport, minConfidence, maxPatterns)
        )

    @server.tool(name="evaluateOutput", structured_output=True)
    def evaluate_output(
        ctx: Context,
        input: Annotated[str, Field(description="What the agent was given")],
        output: Annotated[str, Field(description="What the agent produced")],
        verdict: Annotated[
            Literal["correct", "incorrect", "partial"],
            Field(description="correct (score 1), partial (0.5) or incorrect (0)"),
        ],
    ) -> Evaluation:
        """Store a reflexion (an evaluated output) and return the project's running stats."""
        caller = caller_of(ctx)
        return _call(lambda: tools.evaluate_output(caller, input, output, verdict))

    @server.tool(name="submitVote", structured_output=True)
    def submit_vote(
        ctx: Context,
        consensusId: Annotated[Name, Field(description="The decision being voted on")],
        agentId: Annotated[Name, Field(description="Who votes; voting again replaces the vote")],
        vote: Annotated[Literal["approve", "reject", "abstain"], Field(description="The vote")],
    ) -> VoteResult:
        """Cast (or replace) an agent's vote and return the tally and status."""
        caller = caller_of(ctx)
        return _call(lambda: tools.submit_vote(caller, consensusId, agentId, vote))

    @server.tool(name="getConsensus", structured_output=True)
    def get_consensus(
        ctx: Context, consensusId: Annotated[Name, Field(description="The decision")]
    ) -> Consensus:
        """Every vote of a consensus, its tally and status."""
        caller = caller_of(ctx)
        return _call(lambda: tools.get_consensus(caller, consensusId))

    @server.tool(name="logEvent", structured_output=True)
    def log_event(
        ctx: Context,
        event: Annotated[Name, Field(description="Event name, 1-200 characters")],
        metadata: Annotated[
            dict[str, JsonValue] | None, Field(description="JSON object, at most 64 KiB")
        ] = None,
    ) -> EventRecord:
        """Record a telemetry event."""
        caller = caller_of(ctx)
        return _call(lambda: tools.log_event(caller, event, metadata))

    @server.tool(name="savePrompt", structured_output=True)
    def save_prompt(
        ctx: Context,
        name: Annotated[Name, Field(description="Prompt name; versions count per name")],
        template: Annotated[str, Field(description="Template with {placeholders}")],
        variables: Annotated[
            list[str] | None,
            Field(description="Declared placeholders; default: those found in the template"),
        ] = None,
    ) -> Prompt:
        """Save the next version of a prompt template."""
        caller = caller_of(ctx)
        return _call(lambda: tools.save_prompt(caller, name, template, variables))

    @server.tool(name="getPrompt", structured_output=True)
    def get_prompt(
        ctx: Context,
        name: Annotated[Name, Field(description="Prompt name")],
        version: Annotated[
            int | None, Field(description="A version; default the latest", ge=1)
        ] = None,
    ) -> PromptLookup:
        """A saved prompt (the latest version unless one is given), or null."""
        caller = caller_of(ctx)
        return PromptLookup(prompt=_call(lambda: tools.get_prompt(caller, name, version)))

    @server.tool(name="listPrompts", structured_output=True)
    def list_prompts(ctx: Context, after: After = None, limit: Limit = None) -> PromptList:
        """A page of the project's prompt names (by name) with their latest versions."""
        caller = caller_of(ctx)
        return _call(lambda: tools.list_prompts(caller, after, limit))

    @server.tool(name="trackLineage", structured_output=True)
    def track_lineage(
        ctx: Context,
        signature: Annotated[Name, Field(description="What is being traced")],
        input: Annotated[JsonValue, Field(description="Any JSON, at most 64 KiB")],
        output: Annotated[JsonValue, Field(description="Any JSON, at most 64 KiB")],
        parentId: Annotated[
            str | None, Field(description="An earlier lineage id of this project")
        ] = None,
    ) -> LineageRecord:
        """Append a step to the lineage of a signature."""
        caller = caller_of(ctx)
        return _call(lambda: tools.track_lineage(caller, signature, input, output, parentId))

    @server.tool(name="getLineage", structured_output=True)
    def get_lineage(
        ctx: Context,
        signature: Annotated[Name, Field(description="What was traced")],
        after: After = None,
        limit: Limit = None,
    ) -> Lineage:
        """A page of the steps recorded for a signature, oldest first."""
        caller = caller_of(ctx)
        return _call(lambda: tools.get_lineage(caller, signature, after, limit))

    @server.tool(name="recordMetric", structured_output=True)
    def record_metric(
        ctx: Context,
        metric: Annotated[Name, Field(description="Metric name")],
        value: Annotated[float, Field(description="A finite number", allow_inf_nan=False)],
        tags: Annotated[
            dict[str, str] | None, Field(description="Flat map of strings to strings")
        ] = None,
    ) -> MetricRecord:
        """Record one value of a metric."""
        caller = caller_of(ctx)
        return _call(lambda: tools.record_metric(caller, metric, value, tags))

    @server.tool(name="getMetrics", structured_output=True)
    def get_metrics(
        ctx: Context,
        metric: Annotated[Name, Field(description="Metric name")],
        since: Annotated[
            str | float | None,
            Field(description="Only values since this ISO 8601 time or epoch milliseconds"),
        ] = None,
    ) -> MetricStats:
        """count, min, max, mean, p50 and p95 of a metric's values."""
        caller = caller_of(ctx)
        return _call(lambda: tools.get_metrics(caller, metric, since))
