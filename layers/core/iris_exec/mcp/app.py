"""The ASGI app serving MCP (Streamable HTTP, stateless, JSON responses) behind our own
authentication: a project API key (any MCP client) or a per-execution token (code in a
sandbox). Whatever authenticates the call decides the project."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from iris_exec.domain.errors import IrisError, StoreUnavailable
from iris_exec.domain.tools import ToolCaller
from iris_exec.mcp.server import CALLER_KEY, build_mcp_server
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import Clock, iso, new_id
from iris_exec.services.ratelimit import RateLimiter
from iris_exec.services.tokens import TOKEN_PREFIX, ExecutionTokens
from iris_exec.services.tools import ToolService

MCP_PATH = "/mcp"


class McpEndpoint:
    """Authenticates, then hands the request to the MCP server with the caller attached."""

    def __init__(
        self,
        tools: ToolService,
        auth: AuthService,
        tokens: ExecutionTokens,
        rate_limiter: RateLimiter,
        clock: Clock,
    ) -> None:
        self.server = build_mcp_server(tools)
        # Requests reach us through our own auth (and API Gateway in production), and over
        # a Unix socket from the sandboxes: the SDK's Host/Origin checks do not apply.
        self.app: ASGIApp = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._auth = auth
        self._tokens = tokens
        self._rate_limiter = rate_limiter
        self._clock = clock

    def session_manager_run(self) -> Any:
        """The context the SDK needs around request handling (a task group)."""
        return self.server.session_manager.run()

    def caller(self, authorization: str | None) -> ToolCaller:
        token = (authorization or "").strip().partition(" ")[2].strip()
        if (authorization or "").lower().startswith("bearer ") and token.startswith(TOKEN_PREFIX):
            grant = self._tokens.verify(token)
            return ToolCaller(grant.project_id, grant.session_id, grant.execution_id)
        principal = self._auth.authenticate(authorization)
        self._rate_limiter.check(principal)
        return ToolCaller(principal.project_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = self.caller(headers.get("authorization"))
        except IrisError as exc:
            await _error(
                scope, send, exc.status, exc.title, exc.message, exc.headers, exc.extra, self._clock
            )
            return
        except StoreUnavailable:
            await _error(
                scope, send, 503, "Service Unavailable",
                "A store this service depends on is unavailable; retry shortly",
                {"Retry-After": "5"}, {}, self._clock,
            )  # fmt: skip
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        await self.app(scope, receive, send)


async def _error(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    message: str,
    headers: dict[str, str],
    extra: dict[str, Any],
    clock: Clock,
) -> None:
    request_id = scope.get("state", {}).get("request_id") or new_id("req_")
    body = json.dumps(
        {
            "error": title,
            "message": message,
            "statusCode": status,
            "timestamp": iso(clock()),
            "path": scope.get("path", MCP_PATH),
            "requestId": request_id,
            **extra,
        }
    ).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
