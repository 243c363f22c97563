"""The ASGI app serving MCP (Streamable HTTP, stateless) behind our own authentication:
a project API key (any MCP client) or a per-execution token (code in a sandbox). Whatever
authenticates the call decides the project, and the surface:

- an execution's token reaches the twelve IRIS tools, and nothing else;
- a project API key reaches those plus code execution (`executeCode`, `getSandbox`,
  `closeSandbox`, `getExecution`), or with `?tools=code` the four execution tools alone,
  `executeCode` describing the `iris` module (code mode)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecuritySettings,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iris_exec import __version__
from iris_exec.domain.errors import BadRequest, IrisError, Unauthorized
from iris_exec.domain.models import Principal
from iris_exec.domain.tools import ToolCaller
from iris_exec.http.envelope import send_error
from iris_exec.mcp.execution import PRINCIPAL_KEY, register_execution_tools
from iris_exec.mcp.server import (
    CALLER_KEY,
    INSTRUCTIONS,
    IrisMcpServer,
    build_mcp_server,
    register_iris_tools,
)
from iris_exec.services.auth import bearer_credential
from iris_exec.services.clock import iso
from iris_exec.services.tokens import TOKEN_PREFIX

if TYPE_CHECKING:
    from iris_exec.composition import Services

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"

Surface = Literal["iris", "all", "code"]
#: What `?tools=` may ask for, with a project API key.
KEY_SURFACES: dict[str, Surface] = {"all": "all", "code": "code"}

CODE_INSTRUCTIONS = (
    "Run code in isolated sandboxes of your project. Write one program that calls the IRIS"
    " agent-learning tools through the `iris` module (its API is in executeCode's"
    " description) instead of calling tools one by one."
)


class _Surface:
    """One MCP server (a set of tools) and its Streamable HTTP app."""

    def __init__(self, server: MCPServer[Any], *, json_response: bool) -> None:
        self.server = server
        self.json_response = json_response
        self.app: ASGIApp = self.http_app()

    def http_app(self) -> ASGIApp:
        # Requests reach us through our own auth (and API Gateway in production), and over
        # a Unix socket from the sandboxes: the SDK's Host/Origin checks do not apply.
        return self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=self.json_response,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )


class McpEndpoint:
    """Authenticates, then hands the request to the MCP server of the caller's surface."""

    def __init__(self, container: Services, *, per_request: bool = False) -> None:
        self._container = container
        #: Lambda: the SDK's session manager runs once per instance, so each invocation
        #: gets a fresh one (the tools stay registered on the one server).
        self.per_request = per_request
        self._surfaces: dict[tuple[Surface, bool], _Surface] = {}
        self.surface("iris")  # the sandboxes' tools: built at start, the others on first use

    def surface(self, name: Surface, streaming: bool = False) -> _Surface:
        """The server of ``name``: answers as plain JSON, or (``streaming``) as an event
        stream that carries progress notifications before the answer."""
        found = self._surfaces.get((name, streaming))
        if found is None:
            container = self._container
            if name == "iris":
                server = build_mcp_server(container.tools)
            else:
                server = IrisMcpServer(
                    name="iris" if name == "all" else "iris-code",
                    version=__version__,
                    instructions=INSTRUCTIONS if name == "all" else CODE_INSTRUCTIONS,
                )
                if name == "all":
                    register_iris_tools(server, container.tools)
                register_execution_tools(server, container, code_mode=name == "code")
            found = _Surface(server, json_response=not streaming)
            self._surfaces[(name, streaming)] = found
        return found

    @contextlib.asynccontextmanager
    async def session_manager_run(self) -> AsyncIterator[None]:
        """The context the SDK needs around request handling (a task group per server)."""
        for name in KEY_SURFACES.values():
            for streaming in (False, True):
                self.surface(name, streaming)
        async with contextlib.AsyncExitStack() as stack:
            for built in self._surfaces.values():
                await stack.enter_async_context(built.server.session_manager.run())
            yield

    def caller(self, authorizations: list[str]) -> tuple[ToolCaller, Principal | None]:
        """Who calls: an execution (its token), or a project (its API key, rate-limited)."""
        container = self._container
        if len(authorizations) > 1:
            raise Unauthorized("Send one Authorization header, not several")
        authorization = authorizations[0] if authorizations else None
        token = bearer_credential(authorization) or ""
        if token.startswith(TOKEN_PREFIX):
            grant = container.tokens.verify(token)
            return ToolCaller(grant.project_id, grant.session_id, grant.execution_id), None
        principal = container.auth.authenticate(authorization)
        container.rate_limiter.check(principal)
        return ToolCaller(principal.project_id), principal

    @staticmethod
    def requested_surface(scope: Scope) -> Surface:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        asked = query.get("tools", ["all"])
        if len(asked) != 1 or asked[0] not in KEY_SURFACES:
            raise BadRequest("tools must be 'code' (code execution only) or 'all' (the default)")
        return KEY_SURFACES[asked[0]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.surface("iris").app(scope, receive, send)
            return
        if scope["method"] not in ("POST", "OPTIONS"):
            # Stateless: no session to delete, and no server-initiated stream to open (a GET
            # would otherwise hold a connection open for nothing).
            await send_error(
                scope, send, 405, "Method Not Allowed",
                f"{scope['method']} is not allowed on {MCP_PATH}; use POST",
                timestamp=iso(self._container.clock()), headers={"Allow": "POST"},
            )  # fmt: skip
            return
        authorizations = [
            v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"
        ]
        try:
            caller, principal = self.caller(authorizations)
            name: Surface = "iris" if principal is None else self.requested_surface(scope)
        except IrisError as exc:
            if exc.status >= 500:
                log.error("MCP authentication failed: %s", exc.detail)
            await send_error(
                scope, send, exc.status, exc.title, exc.public_message(),
                timestamp=iso(self._container.clock()), headers=exc.headers, extra=exc.extra,
            )  # fmt: skip
            return
        state = scope.setdefault("state", {})
        state[CALLER_KEY] = caller
        if principal is not None:
            state[PRINCIPAL_KEY] = principal
        if principal is not None and not self.per_request:
            # Plain JSON unless the call asks for progress (log lines as they come): then an
            # event stream. (API Gateway buffers answers: on Lambda, always JSON.)
            body = await _read_body(receive)
            surface = self.surface(name, streaming=_wants_progress(body))
            await surface.app(scope, _replay(body, receive), send)
            return
        surface = self.surface(name)
        if self.per_request:
            app = surface.http_app()
            async with surface.server.session_manager.run():
                await app(scope, receive, send)
        else:
            await surface.app(scope, receive, send)


#: What is read to choose the answer's form; the SDK refuses larger bodies itself (413).
MAX_INSPECTED_BODY = DEFAULT_MAX_REQUEST_BODY_SIZE + 1


async def _read_body(receive: Receive) -> list[Message]:
    """The request's body messages (at most about MAX_INSPECTED_BODY bytes are held)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if (
            message["type"] != "http.request"
            or not message.get("more_body")
            or size > MAX_INSPECTED_BODY
        ):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The body read already, then the connection's own messages (its disconnect)."""
    queue = list(messages)

    async def replayed() -> Message:
        return queue.pop(0) if queue else await receive()

    return replayed


def _wants_progress(messages: list[Message]) -> bool:
    """A request whose `_meta` carries a progress token (0 and "" are tokens too)."""
    raw = b"".join(m.get("body", b"") for m in messages)
    if b"progressToken" not in raw:
        return False
    try:
        payload = json.loads(raw)
    except ValueError:
        return False
    requests = payload if isinstance(payload, list) else [payload]
    return any(
        isinstance(r, dict)
        and isinstance(r.get("params"), dict)
        and isinstance(r["params"].get("_meta"), dict)
        and r["params"]["_meta"].get("progressToken") is not None
        for r in requests
    )
