"""``iris_prime``: the module Python code in an IRIS sandbox imports to reach the IRIS tools.

Usage::

    from iris_prime import iris, project_id, session_id, context, IrisToolError

    iris.log_event("signup", {"plan": "pro"})
    prompt = iris.save_prompt("greet", "Hello {name}")      # {"version": 1, ...}
    patterns = iris.discover_patterns(min_support=0.3)      # [{"antecedent": [...], ...}]
    try:
        iris.evaluate_output("question", "answer", "maybe")
    except IrisToolError as exc:
        print(exc.tool, exc)        # evaluateOutput 1 validation error ...

    # Calls are synchronous and thread-safe: run them concurrently with threads.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda v: iris.record_metric("latency", v), [12, 15, 9]))

Every ``iris.*`` call is an MCP tool call (Streamable HTTP, JSON-RPC) to this service's IRIS
tool server, scoped to the project of the key that started the execution; arguments never
choose the project. Results are the tools' structured results, with camelCase keys as the
server sends them. The connection opens on the first call, and the runner closes it when the
code ends (after letting calls in flight finish).

The runner imports this module before the request exists (warm start), then initializes it
once with the execution's project, session, context and tool endpoint (the token lives only
in this process's memory). Standard library only; Python 3.11+.
"""

from __future__ import annotations

import datetime
import http.client
import itertools
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

__all__ = [
    "Consensus",
    "Evaluation",
    "EventRecord",
    "Iris",
    "IrisToolError",
    "Lineage",
    "LineageRecord",
    "MetricRecord",
    "MetricStats",
    "Pattern",
    "Prompt",
    "PromptSummary",
    "VoteResult",
    "context",
    "iris",
    "project_id",
    "session_id",
]

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "iris-prime-python", "version": "1.0.0"}
#: A call that takes longer fails (the MCP TypeScript SDK's default request timeout).
CALL_TIMEOUT_S = 60.0
#: Connections kept open between calls; more may be open while calls run concurrently.
MAX_IDLE_CONNECTIONS = 8

# -- what the tools return ------------------------------------------------------------------

Verdict = Literal["correct", "incorrect", "partial"]
VoteValue = Literal["approve", "reject", "abstain"]
ConsensusStatus = Literal["pending", "approved", "rejected", "tied"]


class Pattern(TypedDict):
    """An association rule: transactions with every ``antecedent`` item tend to have the
    ``consequent`` items too."""

    antecedent: list[str]
    consequent: list[str]
    support: float
    """Share of transactions containing every item of the rule."""
    confidence: float
    """support(rule) / support(antecedent)."""
    lift: float
    """confidence / support(consequent); above 1 is a positive association."""
    count: int
    """Transactions containing every item of the rule."""


class EvaluationStats(TypedDict):
    total: int
    correct: int
    partial: int
    incorrect: int
    accuracy: float
    """Mean score (correct 1, partial 0.5, incorrect 0)."""


class Evaluation(TypedDict):
    id: str
    input: str
    output: str
    verdict: Verdict
    score: float
    createdAt: str
    stats: EvaluationStats


class Tally(TypedDict):
    approve: int
    reject: int
    abstain: int
    total: int


class VoteResult(TypedDict):
    consensusId: str
    agentId: str
    vote: VoteValue
    tally: Tally
    status: ConsensusStatus


class CastVote(TypedDict):
    agentId: str
    vote: VoteValue
    updatedAt: str


class Consensus(TypedDict):
    consensusId: str
    votes: list[CastVote]
    tally: Tally
    status: ConsensusStatus


class EventRecord(TypedDict):
    id: str
    event: str
    timestamp: str


class Prompt(TypedDict):
    name: str
    version: int
    template: str
    variables: list[str]
    createdAt: str


class PromptSummary(TypedDict):
    name: str
    latestVersion: int
    updatedAt: str


class LineageRecord(TypedDict):
    id: str
    signature: str
    parentId: str | None
    createdAt: str


class LineageEntry(TypedDict):
    id: str
    parentId: str | None
    input: Any
    output: Any
    createdAt: str


class Lineage(TypedDict):
    signature: str
    entries: list[LineageEntry]
    next: str | None


class MetricRecord(TypedDict):
    id: str
    metric: str
    value: float
    tags: dict[str, str]
    timestamp: str


class MetricStats(TypedDict):
    metric: str
    count: int
    min: float | None
    max: float | None
    mean: float | None
    p50: float | None
    p95: float | None
    sampled: int


class IrisToolError(Exception):
    """A tool call failed; the message says what was wrong (usually with the arguments)."""

    def __init__(self, message: str, tool: str) -> None:
        super().__init__(message)
        #: The tool that failed, e.g. ``"savePrompt"``.
        self.tool = tool


# -- execution context (set once by the runner) ---------------------------------------------

#: The project of the key that started this execution.
project_id: str = ""
#: The request's ``sessionId``, or None.
session_id: str | None = None
#: The request's ``context`` object.
context: dict[str, Any] = {}


@dataclass(frozen=True)
class ToolsConfig:
    """Where the tool server is. ``socket``: reach it through this Unix socket (local
    sandboxes); ``token``: the per-execution bearer token (absent when the network adds it)."""

    url: str
    socket: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, raw: object) -> ToolsConfig | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("url"), str):
            return None
        sock, token = raw.get("socket"), raw.get("token")
        return cls(
            url=raw["url"],
            socket=sock if isinstance(sock, str) and sock else None,
            token=token if isinstance(token, str) and token else None,
        )


# -- the MCP client ---------------------------------------------------------------------------


class _TransportError(Exception):
    """The call did not get a JSON-RPC result (connection, HTTP or protocol failure)."""


def _encode(message: dict[str, Any]) -> bytes:
    """A JSON-RPC message as strict JSON (what the server parses): no NaN, no objects."""
    try:
        return json.dumps(message, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        problem = "NaN and infinity are not JSON numbers" if "float" in str(exc) else str(exc)
        raise _TransportError(f"arguments must be JSON: {problem}") from None
    except TypeError as exc:  # e.g. "Object of type datetime is not JSON serializable"
        raise _TransportError(f"arguments must be JSON: {exc}") from None


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: the only channel out of a local jail."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


#: How a kept-alive connection the server closed while it sat idle fails when used again:
#: the request is then sent once more, on a fresh connection.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _McpClient:
    """A minimal MCP client (Streamable HTTP, stateless server): ``initialize`` once, then
    ``tools/call``. Thread-safe; keeps a small pool of keep-alive connections."""

    def __init__(self, config: ToolsConfig) -> None:
        self._config = config
        target = urllib.parse.urlsplit(config.url)
        self._scheme = target.scheme or "http"
        self._host = target.hostname or "localhost"
        self._port = target.port
        self._path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        self._lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._generation = 0  # bumped by close(): connections of an older one are not reused
        self._ids = itertools.count(1)
        self._initialized = False
        self._protocol: str | None = None
        self._session: str | None = None

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self._initialize()
        result = self._request("tools/call", {"name": name, "arguments": arguments})
        if not isinstance(result, dict):
            raise _TransportError("the tool server sent no result")
        return result

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
            self._initialized = False
        for conn in idle:
            conn.close()

    # -- JSON-RPC

    def _initialize(self) -> None:
        with self._init_lock:  # concurrent first calls wait for one handshake
            if not self._initialized:
                self._handshake()
                self._initialized = True

    def _handshake(self) -> None:
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": CLIENT_INFO,
        }
        result = self._request("initialize", params)
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        self._protocol = version if isinstance(version, str) else PROTOCOL_VERSION
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _request(self, method: str, params: dict[str, Any]) -> Any:
        with self._lock:
            request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        reply = self._post(message)
        if reply is None:
            raise _TransportError(f"the tool server sent no answer to {method}")
        error = reply.get("error")
        if isinstance(error, dict):
            raise _TransportError(str(error.get("message") or error))
        return reply.get("result")

    def _post(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send one JSON-RPC message; its response, or None for a notification."""
        status, headers, data = self._exchange(_encode(message))
        session = headers.get("mcp-session-id")
        if session:
            self._session = session
        if status == 202 or ("id" not in message and status < 300):
            return None
        if status >= 300:
            raise _TransportError(f"HTTP {status}: {_http_error_message(data)}")
        content_type = headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return _from_event_stream(data, message.get("id"))
        try:
            reply = json.loads(data)
        except ValueError:
            raise _TransportError("the tool server sent a response that is not JSON") from None
        if not isinstance(reply, dict):
            raise _TransportError("the tool server sent an unexpected response")
        return reply

    # -- HTTP

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if self._protocol:
            headers["MCP-Protocol-Version"] = self._protocol
        if self._session:
            headers["Mcp-Session-Id"] = self._session
        if self._config.token:
            headers["Authorization"] = f"Bearer {self._config.token}"
        return headers

    def _exchange(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """POST ``body``; status, lower-cased headers and body of the response."""
        for attempt in range(2):
            conn, generation, reused = self._checkout()
            try:
                conn.request("POST", self._path, body, self._headers())
                response = conn.getresponse()
                data = response.read()
            except _STALE_CONNECTION as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise _TransportError(_describe(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _TransportError(_describe(exc)) from None
            headers = {key.lower(): value for key, value in response.getheaders()}
            if response.will_close:
                conn.close()
            else:
                self._checkin(conn, generation)
            return response.status, headers, data
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkout(self) -> tuple[http.client.HTTPConnection, int, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), self._generation, True
            generation = self._generation
        return self._connection(), generation, False

    def _checkin(self, conn: http.client.HTTPConnection, generation: int) -> None:
        with self._lock:
            if generation == self._generation and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._config.socket:
            return _UnixHTTPConnection(self._config.socket, CALL_TIMEOUT_S)
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=CALL_TIMEOUT_S,
                context=ssl.create_default_context(),
            )  # fmt: skip
        return http.client.HTTPConnection(self._host, self._port, timeout=CALL_TIMEOUT_S)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer from the tool server within {CALL_TIMEOUT_S:g} s"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the tool server closed the connection"
    return str(exc) or type(exc).__name__


def _http_error_message(data: bytes) -> str:
    """The message of an error response (this service's error shape, or JSON-RPC's)."""
    text = data.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "no message"
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return str(body["message"])
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return text.strip()[:500]


def _from_event_stream(data: bytes, request_id: object) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` in a server-sent events body."""
    for event in data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        lines = [
            line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")
        ]
        if not lines:
            continue
        try:
            message = json.loads("\n".join(lines))
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise _TransportError("the tool server's event stream had no response")


# -- the tools --------------------------------------------------------------------------------


def _clean_message(text: str, tool: str) -> str:
    """The server's message without the SDK's prefix and pydantic's documentation links."""
    text = text.removeprefix(f"Error executing tool {tool}: ")
    return re.sub(r"\n\s*For further information visit \S+", "", text).strip()


def _instant(since: str | float | datetime.datetime | None) -> str | float | None:
    if isinstance(since, datetime.datetime):
        # A naive datetime is taken as UTC (the sandbox's clock is UTC).
        aware = since if since.tzinfo else since.replace(tzinfo=datetime.UTC)
        return aware.isoformat()
    return since


class Iris:
    """The IRIS tools. Every method is one MCP tool call; it returns the tool's result or
    raises :class:`IrisToolError`. Methods are synchronous and safe to call from threads."""

    def __init__(self) -> None:
        self._config: ToolsConfig | None = None
        self._client: _McpClient | None = None
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)  # no call in flight
        self._in_flight = 0

    # -- tools

    def discover_patterns(
        self, min_support: float = 0.3, min_confidence: float = 0.7, max_patterns: int = 10
    ) -> list[Pattern]:
        """Association rules mined from the project's recorded events, evaluations, votes and
        metrics (one transaction per session), best lift first. Thresholds are in (0, 1]."""
        found = self._call(
            "discoverPatterns",
            minSupport=min_support, minConfidence=min_confidence, maxPatterns=max_patterns,
        )  # fmt: skip
        patterns: list[Pattern] = found["patterns"]
        return patterns

    def evaluate_output(self, input: str, output: str, verdict: Verdict) -> Evaluation:
        """Store a reflexion: an output and its verdict (``correct``, ``incorrect`` or
        ``partial``). Returns it with the project's running ``stats``."""
        result: Evaluation = self._call(
            "evaluateOutput", input=input, output=output, verdict=verdict
        )
        return result

    def submit_vote(self, consensus_id: str, agent_id: str, vote: VoteValue) -> VoteResult:
        """Cast (or replace) an agent's vote (``approve``, ``reject`` or ``abstain``)."""
        result: VoteResult = self._call(
            "submitVote", consensusId=consensus_id, agentId=agent_id, vote=vote
        )
        return result

    def get_consensus(self, consensus_id: str) -> Consensus:
        """Every vote of a consensus, its tally and status."""
        result: Consensus = self._call("getConsensus", consensusId=consensus_id)
        return result

    def log_event(self, event: str, metadata: Mapping[str, Any] | None = None) -> EventRecord:
        """Record a telemetry event (1-200 characters) with an optional JSON object."""
        args: dict[str, Any] = {"event": event}
        if metadata is not None:
            args["metadata"] = dict(metadata)
        result: EventRecord = self._call("logEvent", **args)
        return result

    def save_prompt(
        self, name: str, template: str, variables: Sequence[str] | None = None
    ) -> Prompt:
        """Save the next version (1, 2, 3...) of a prompt template; ``variables`` default to
        its ``{placeholders}`` and must match them."""
        args: dict[str, Any] = {"name": name, "template": template}
        if variables is not None:
            args["variables"] = list(variables)
        result: Prompt = self._call("savePrompt", **args)
        return result

    def get_prompt(self, name: str, version: int | None = None) -> Prompt | None:
        """The latest (or the given) version of a prompt, or None."""
        args: dict[str, Any] = {"name": name}
        if version is not None:
            args["version"] = version
        prompt: Prompt | None = self._call("getPrompt", **args)["prompt"]
        return prompt

    def list_prompts(self) -> list[PromptSummary]:
        """Every prompt name of the project with its latest version (read a page of up
        to 1000 at a time)."""
        prompts: list[PromptSummary] = []
        after: str | None = None
        while True:
            args: dict[str, Any] = {"limit": 1000}
            if after is not None:
                args["after"] = after
            page = self._call("listPrompts", **args)
            prompts += page["prompts"]
            after = page["next"]
            if after is None:
                return prompts

    def track_lineage(
        self, signature: str, input: Any, output: Any, parent_id: str | None = None
    ) -> LineageRecord:
        """Append a step (any JSON input and output) to the lineage of ``signature``;
        ``parent_id`` must be an earlier lineage id of this project."""
        args: dict[str, Any] = {"signature": signature, "input": input, "output": output}
        if parent_id is not None:
            args["parentId"] = parent_id
        result: LineageRecord = self._call("trackLineage", **args)
        return result

    def get_lineage(
        self, signature: str, after: str | None = None, limit: int | None = None
    ) -> Lineage:
        """A page of the steps recorded for ``signature``, oldest first (at most ``limit``,
        default 100, and about 1 MiB); ``next`` is the ``after`` of the following page, None
        at the end."""
        args: dict[str, Any] = {"signature": signature}
        if after is not None:
            args["after"] = after
        if limit is not None:
            args["limit"] = limit
        result: Lineage = self._call("getLineage", **args)
        return result

    def record_metric(
        self, metric: str, value: float, tags: Mapping[str, str] | None = None
    ) -> MetricRecord:
        """Record one value (a finite number) of a metric, with optional string tags."""
        args: dict[str, Any] = {"metric": metric, "value": value}
        if tags is not None:
            args["tags"] = dict(tags)
        result: MetricRecord = self._call("recordMetric", **args)
        return result

    def get_metrics(
        self, metric: str, since: str | float | datetime.datetime | None = None
    ) -> MetricStats:
        """count, min, max, mean, p50 and p95 of a metric; only values recorded since
        ``since`` (an ISO 8601 string, epoch milliseconds or a datetime) when given."""
        args: dict[str, Any] = {"metric": metric}
        if since is not None:
            args["since"] = _instant(since)
        result: MetricStats = self._call("getMetrics", **args)
        return result

    def close(self) -> None:
        """Close the connection to the IRIS tools. Idempotent; a later call reconnects.
        The runner also closes it when the code ends."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- machinery

    def _call(self, tool: str, **arguments: Any) -> Any:
        client = self._begin(tool)
        try:
            result = client.call_tool(tool, arguments)
        except _TransportError as exc:
            raise IrisToolError(f"{tool} failed: {exc}", tool) from None
        finally:
            self._end()
        if result.get("isError"):
            raise IrisToolError(_clean_message(_text_of(result), tool) or f"{tool} failed", tool)
        structured = result.get("structuredContent")
        if not isinstance(structured, dict):
            raise IrisToolError(f"{tool} failed: the tool server sent no structured result", tool)
        return structured

    def _begin(self, tool: str) -> _McpClient:
        """The client (connecting lazily), with this call counted as in flight."""
        with self._lock:
            if self._client is None:
                if self._config is None:
                    raise IrisToolError("The IRIS tools are not available in this execution", tool)
                self._client = _McpClient(self._config)
            self._in_flight += 1
            return self._client

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._quiet.notify_all()

    def _configure(self, config: ToolsConfig | None) -> None:
        with self._lock:
            self._config = config

    def _shutdown(self, grace_s: float) -> None:
        """Let calls in flight finish (at most ``grace_s``), then close."""
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._quiet.wait(left)
        self.close()


def _text_of(result: Mapping[str, Any]) -> str:
    content = result.get("content")
    if not isinstance(content, list):
        return ""
    return "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))


#: The IRIS tools of this execution.
iris = Iris()

_initialized = False


def _init_execution(
    *,
    project: str,
    session: str | None,
    execution_context: Mapping[str, Any] | None,
    tools: object,
) -> None:
    """Called once by the runner, before the user's code runs."""
    global _initialized, project_id, session_id, context
    if _initialized:
        raise RuntimeError("iris_prime is already initialized for this execution")
    _initialized = True
    project_id = project
    session_id = session
    context = dict(execution_context or {})
    iris._configure(ToolsConfig.parse(tools))


def _shutdown(grace_s: float) -> None:
    """Called by the runner when the code ends."""
    iris._shutdown(grace_s)
