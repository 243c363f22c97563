"""Code execution for agents over MCP: `executeCode`, `getSandbox`, `closeSandbox` and
`getExecution`, with the same validation, limits, idempotency, audit and project isolation
as the HTTP API (they call the same services with the same principal).

Only a project API key reaches these tools; an execution's own token (code in a sandbox)
reaches the IRIS tools alone (`iris_exec.mcp.app` picks the surface by credential).

In code mode (`/mcp?tools=code`) these four tools are the whole surface, and `executeCode`'s
description carries the `iris` module's API, so an agent writes one program against the
IRIS tools with nothing else in its context."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, JsonValue

from iris_exec.domain.errors import BadRequest, IrisError
from iris_exec.domain.models import FINAL_STATUSES, OutputChunk, Principal
from iris_exec.mcp.server import tool_error
from iris_exec.services.answers import ExecutionStarted, ExecutionView, RunResult
from iris_exec.services.output import LiveLines, fit_answer
from iris_exec.services.sandboxes import validate_sandbox_id

if TYPE_CHECKING:
    from iris_exec.composition import Services

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "iris_principal"
#: Log lines are sent as progress at most this often, in one notification of at most
#: PROGRESS_MESSAGE_CHARS characters (a flood of output is not a flood of notifications).
PROGRESS_EVERY_S = 0.25
PROGRESS_MESSAGE_CHARS = 8192
#: How much output the readable text block of an answer shows (the structured content
#: carries all of it).
TEXT_OUTPUT_CHARS = 4000
#: How often a long run is polled while executeCode waits for it (backing off to the max).
FOLLOW_POLL_S = 0.25
FOLLOW_POLL_MAX_S = 2.0

IRIS_API = """\
Code runs as an ES module (TypeScript types stripped) or Python 3; top-level await and return \
work; the returned value is result.returnValue (JSON). Files in \
/home/user persist per sandbox: pass sandboxId to reuse one. The IRIS tools, scoped to your \
project:
TS: import { iris, projectId, sessionId, context } from './iris-prime' (every call is async)
Py: from iris_prime import iris, project_id, session_id, context (synchronous; snake_case \
names and keyword arguments: discover_patterns(min_support=...), get_metrics(metric, since=))
- discoverPatterns({minSupport=0.3, minConfidence=0.7, maxPatterns=10}) -> {antecedent: \
string[], consequent: string[], support, confidence, lift, count}[], best lift first. One \
transaction per sessionId; items event:<name>, event:<name>.<key>=<value>, verdict:<v>, \
vote:<v>, metric:<name>
- evaluateOutput(input: string, output: string, verdict: 'correct'|'partial'|'incorrect') -> \
{id, input, output, verdict, score, createdAt, stats: {total, correct, partial, incorrect, \
accuracy}}
- submitVote(consensusId, agentId, vote: 'approve'|'reject'|'abstain') -> {consensusId, \
agentId, vote, tally: {approve, reject, abstain, total}, status: \
'pending'|'approved'|'rejected'|'tied'}; voting again replaces the vote
- getConsensus(consensusId) -> {consensusId, votes: {agentId, vote, updatedAt}[], tally, status}
- logEvent(event, metadata?: object) -> {id, event, timestamp}
- savePrompt(name, template: 'Hi {who}', variables?: string[]) -> {name, version, template, \
variables, createdAt}; versions 1, 2, ... per name
- getPrompt(name, version?) -> that shape, or null; listPrompts() -> {name, latestVersion, \
updatedAt}[]
- trackLineage(signature, input: JSON, output: JSON, parentId?) -> {id, signature, parentId, \
createdAt}; getLineage(signature, {after?, limit?}) -> {signature, entries: {id, parentId, \
input, output, createdAt}[], next} (a page, oldest first; pass next as after)
- recordMetric(metric, value: number, tags?: {[k]: string}) -> {id, metric, value, tags, \
timestamp}; getMetrics(metric, {since?: ISO time | epoch ms}) -> {metric, count, min, max, \
mean, p50, p95, sampled}
A failed call throws (Python: raises) IrisToolError; its message says what to fix (a \
project's storage quota, write rate and mining budget are limits too)."""

EXECUTE_SUMMARY = (
    "Run TypeScript (default), JavaScript or Python in an isolated sandbox of your project and"
    " answer with the result: success, output, logs, error (name, message, stack),"
    " executionTime, metadata, sandboxId. An error of the code is data (success false), not a"
    " tool error. Long runs: async true answers at once with an executionId; read it with"
    " getExecution."
)


def principal_of(ctx: Context) -> Principal:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    principal = state.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        # Only a project API key reaches these tools; never fall back.
        raise ToolError("These tools need a project API key")
    return principal


def _progress_token(ctx: Context) -> object | None:
    meta: dict[str, object] = dict(ctx.request_context.meta or {})
    for name in ("progress_token", "progressToken"):
        if meta.get(name) is not None:  # 0 and "" are tokens too
            return meta[name]
    return None


@contextlib.contextmanager
def contract_errors() -> Iterator[None]:
    """The contract's errors, raised inside, reach the caller as tool errors."""
    try:
        yield
    except IrisError as exc:
        raise tool_error(exc, with_status=True) from exc


def _readable(result: RunResult, sandbox_id: str) -> str:
    """The short text block beside the structured answer."""
    state = "succeeded" if result.success else "failed"
    head = (
        f"{state} in {result.execution_time} ms (sandbox {sandbox_id},"
        f" execution {result.metadata.execution_id})"
    )
    parts = [head]
    output = result.output
    if output:
        if len(output) > TEXT_OUTPUT_CHARS:
            output = (
                output[:TEXT_OUTPUT_CHARS] + "\n... (truncated here; see the structured output)"
            )
        parts.append(output)
    if result.error is not None:
        parts.append(f"{result.error.name}: {result.error.message}")
    return "\n".join(parts)


#: Room in Lambda's response for the JSON-RPC envelope and the text block beside the
#: structured answer (the text shows at most TEXT_OUTPUT_CHARS of output).
ENVELOPE_BYTES = 64 * 1024


def _answer(structured: dict[str, Any], text: str, limit: int | None) -> CallToolResult:
    """The structured answer (made to fit ``limit``, Lambda's response limit where there is
    one, as the HTTP API's answers are) and its readable text."""
    if limit is not None:
        if "output" in structured:  # a result itself: fit it as the answer it is part of
            fitted = fit_answer({"result": structured}, limit - ENVELOPE_BYTES)
            structured = fitted["result"]
        elif "result" in structured or "logs" in structured:  # an execution's page
            structured = fit_answer(structured, limit - ENVELOPE_BYTES)
    return CallToolResult(content=[TextContent(text=text)], structured_content=structured)


class _ProgressPump:
    """Sends the log lines of a running execution as progress notifications."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.lines = LiveLines()
        self._sent = 0

    def add(self, chunk: OutputChunk) -> None:
        self.lines.add(chunk)

    async def flush(self, lines: list[str] | None = None) -> None:
        pending = (self.lines.lines if lines is None else lines)[self._sent :]
        if not pending:
            return
        self._sent += len(pending)
        message = "\n".join(pending)
        if len(message) > PROGRESS_MESSAGE_CHARS:
            message = message[:PROGRESS_MESSAGE_CHARS] + " ..."
        with contextlib.suppress(Exception):  # a client gone away does not stop the run
            await self._ctx.report_progress(self._sent, None, message)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            await self.flush()


def register_execution_tools(
    server: MCPServer[Any], container: Services, *, code_mode: bool
) -> None:
    """executeCode, getSandbox, closeSandbox and getExecution on ``server``."""
    limit = container.settings.response_limit_bytes
    description = EXECUTE_SUMMARY + ("\n" + IRIS_API if code_mode else " In code, `import { iris }"
        " from './iris-prime'` (Python: `from iris_prime import iris`) calls the IRIS tools"
        " listed beside this one.")  # fmt: skip

    @server.tool(
        name="executeCode",
        description=description,
        annotations=ToolAnnotations(readOnlyHint=False, openWorldHint=False),
    )
    async def execute_code(
        ctx: Context,
        code: Annotated[str, Field(description="Source, at most 100 KiB")],
        language: Annotated[
            Literal["typescript", "javascript", "python"], Field(description="Default typescript")
        ] = "typescript",
        sandboxId: Annotated[str | None, Field(description="Reuse this sandbox")] = None,
        sessionId: Annotated[
            str | None, Field(description="Groups records for pattern discovery")
        ] = None,
        context: Annotated[
            dict[str, JsonValue] | None, Field(description="JSON object the code reads as context")
        ] = None,
        timeoutMs: Annotated[int | None, Field(description="Time limit in ms")] = None,
        keepState: Annotated[
            bool,
            Field(
                description="Keep the sandbox's runner of this language alive: top-level"
                " names, imports and globals stay for the next keepState call (with sandboxId)"
            ),
        ] = False,
        idempotencyKey: Annotated[
            str | None, Field(description="A retry with the same key returns the first answer")
        ] = None,
        async_: Annotated[
            bool, Field(validation_alias="async", description="Answer at once with an executionId")
        ] = False,
    ) -> CallToolResult:
        principal = principal_of(ctx)
        # The arguments as sent, checked by the HTTP API's own strict rules (the schema above
        # is for the agent; pydantic's would coerce "2000" or true to a number).
        params = ctx.request_context.params or {}
        body = dict(params.get("arguments") or {})
        key = body.pop("idempotencyKey", None)
        with contract_errors():
            if key is not None and not isinstance(key, str):
                raise BadRequest("'idempotencyKey' must be a string")
            return await _execute(ctx, container, principal, body, key)

    @server.tool(name="getExecution", annotations=ToolAnnotations(readOnlyHint=True))
    async def get_execution(
        ctx: Context,
        executionId: Annotated[str, Field(description="From executeCode's answer")],
        after: Annotated[
            int,
            Field(description="Only log lines after this one (the last cursor)", ge=0, le=10**9),
        ] = 0,
    ) -> CallToolResult:
        """Status and log lines (after line `after`) of an execution started with async true
        or still running when executeCode answered; once it has ended, its result too."""
        with contract_errors():
            view = container.background.describe(principal_of(ctx), executionId, after)
        return _answer(view.wire(), _describe_text(view), limit)

    @server.tool(name="getSandbox", annotations=ToolAnnotations(readOnlyHint=True))
    async def get_sandbox(
        ctx: Context, sandboxId: Annotated[str, Field(description="A sandbox of your project")]
    ) -> CallToolResult:
        """Status of a sandbox: active, status, createdAt, lastUsedAt, expiresAt."""
        with contract_errors():
            sandbox = validate_sandbox_id(sandboxId)
            found = await container.sandboxes.describe(principal_of(ctx), sandbox)
        return _answer(found.wire(), f"sandbox {sandboxId}: {found.status}", limit)

    @server.tool(name="closeSandbox", annotations=ToolAnnotations(destructiveHint=True))
    async def close_sandbox(
        ctx: Context, sandboxId: Annotated[str, Field(description="A sandbox of your project")]
    ) -> CallToolResult:
        """Close a sandbox of your project: its processes and files are gone."""
        with contract_errors():
            await container.sandboxes.close(principal_of(ctx), validate_sandbox_id(sandboxId))
        return _answer(
            {"sandboxId": sandboxId, "closed": True}, f"sandbox {sandboxId} closed", limit
        )

    del execute_code, get_execution, get_sandbox, close_sandbox  # registered on the server


def _describe_text(view: ExecutionView) -> str:
    lines = view.logs
    head = f"execution {view.execution_id}: {view.status} ({len(lines)} new log lines," \
        f" cursor {view.cursor})"  # fmt: skip
    tail = "\n".join(lines[-20:])
    if view.result is not None:
        return _readable(view.result, view.sandbox_id)
    if view.reason:
        return f"{head}\n{view.reason}"
    return f"{head}\n{tail}" if tail else head


async def _execute(
    ctx: Context,
    container: Services,
    principal: Principal,
    body: dict[str, Any],
    key: str | None,
) -> CallToolResult:
    from iris_exec.services.commands import parse_execute  # the HTTP API's own rules

    settings = container.settings
    # The wait counts from the request's arrival: creating a sandbox is part of it.
    deadline = asyncio.get_running_loop().time() + (settings.mcp_wait_s or 0.0)
    command = parse_execute(json.dumps(body).encode(), principal, settings)
    if command.background:
        started, _ = await container.idempotent.once(
            principal, command, key, container.background.submit, ExecutionStarted
        )
        text = (
            f"started execution {started.execution_id} in sandbox {started.sandbox_id};"
            " read its log lines and result with getExecution"
        )
        return _answer(started.wire(), text, settings.response_limit_bytes)
    if settings.mcp_wait_s is not None:
        # The transport has a time limit (API Gateway's 29 s): run in the background (a
        # background run is its own idempotent request) and wait for it while we may.
        command = replace(command, background=True)
        started, _ = await container.idempotent.once(
            principal, command, key, container.background.submit, ExecutionStarted
        )
        return await _follow(ctx, container, principal, started, deadline)
    pump = _ProgressPump(ctx) if _progress_token(ctx) is not None else None
    pumping = asyncio.create_task(pump.run()) if pump else None
    try:
        answer, _ = await container.idempotent.execute(
            principal, command, key, on_output=pump.add if pump else None
        )
    finally:
        if pumping is not None:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping
    if pump is not None:
        pump.lines.close()
        await pump.flush()
    return _answer(
        {**answer.result.wire(), "sandboxId": answer.sandbox_id},
        _readable(answer.result, answer.sandbox_id),
        settings.response_limit_bytes,
    )


async def _follow(
    ctx: Context,
    container: Services,
    principal: Principal,
    started: ExecutionStarted,
    deadline: float,
) -> CallToolResult:
    """Wait for a background execution until ``deadline`` (event-loop time), sending its
    lines as progress; poll no faster than the worker stores them, backing off."""
    execution_id = started.execution_id
    pump = _ProgressPump(ctx) if _progress_token(ctx) is not None else None
    loop = asyncio.get_running_loop()
    poll_s = max(FOLLOW_POLL_S, container.settings.execution_log_flush_s)
    lines: list[str] = []
    while True:
        view = await asyncio.to_thread(
            container.background.describe, principal, execution_id, len(lines)
        )
        lines.extend(view.logs)
        if pump is not None:
            await pump.flush(lines)
        if view.status in FINAL_STATUSES:
            if view.result is None:
                raise ToolError(f"Execution {execution_id} failed: {view.reason}")
            return _answer(
                {**view.result.wire(), "sandboxId": view.sandbox_id},
                _readable(view.result, view.sandbox_id),
                container.settings.response_limit_bytes,
            )
        if loop.time() >= deadline:
            running = {
                "executionId": execution_id,
                "status": view.status,
                "sandboxId": view.sandbox_id,
                "cursor": len(lines),
            }
            text = (
                f"execution {execution_id} is still {view.status};"
                f" call getExecution with executionId {execution_id} and after {len(lines)}"
                " for its next log lines and, once it ends, its result"
            )
            return _answer(running, text, container.settings.response_limit_bytes)
        await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
        poll_s = min(poll_s * 1.5, FOLLOW_POLL_MAX_S)
