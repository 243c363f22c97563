"""The ASGI app serving MCP (Streamable HTTP, stateless, JSON responses) behind our own
authentication: a project API key (any MCP client) or a per-execution token (code in a
sandbox). Whatever authenticates the call decides the project."""

from __future__ import annotations

from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from iris_exec.domain.errors import IrisError, StoreUnavailable, Unauthorized
from iris_exec.domain.tools import ToolCaller
from iris_exec.http.envelope import send_error
from iris_exec.mcp.server import CALLER_KEY, build_mcp_server
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import Clock, iso
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
        *,
        per_request: bool = False,
    ) -> None:
        self.server = build_mcp_server(tools)
        #: Lambda: the SDK's session manager runs once per instance, so each invocation
        #: gets a fresh one (the tools stay registered on the one server).
        self.per_request = per_request
        self.app: ASGIApp = self._http_app()
        self._auth = auth
        self._tokens = tokens
        self._rate_limiter = rate_limiter
        self._clock = clock

    def _http_app(self) -> ASGIApp:
        # Requests reach us through our own auth (and API Gateway in production), and over
        # a Unix socket from the sandboxes: the SDK's Host/Origin checks do not apply.
        return self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    def session_manager_run(self) -> Any:
        """The context the SDK needs around request handling (a task group)."""
        return self.server.session_manager.run()

    def caller(self, authorizations: list[str]) -> ToolCaller:
        if len(authorizations) > 1:
            raise Unauthorized("Send one Authorization header, not several")
        authorization = authorizations[0] if authorizations else None
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
        authorizations = [
            v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"
        ]
        try:
            caller = self.caller(authorizations)
        except IrisError as exc:
            await send_error(
                scope, send, exc.status, exc.title, exc.message,
                timestamp=iso(self._clock()), headers=exc.headers, extra=exc.extra,
            )  # fmt: skip
            return
        except StoreUnavailable:
            await send_error(
                scope, send, 503, "Service Unavailable",
                "A store this service depends on is unavailable; retry shortly",
                timestamp=iso(self._clock()), headers={"Retry-After": "5"},
            )  # fmt: skip
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        if self.per_request:
            app = self._http_app()
            async with self.session_manager_run():
                await app(scope, receive, send)
        else:
            await self.app(scope, receive, send)
