"""The contract's one error shape, and the request id every answer carries. Starlette only
(no FastAPI), so the MCP endpoint uses it without loading FastAPI."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iris_exec.services.clock import new_id

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"


class ErrorBody(BaseModel):
    """The contract's one error shape (some errors add fields: 401 `hint`, 410 `reason`
    and `goneAt`)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="The status's title: Bad Request, Not Found, ...")
    message: str = Field(description="What went wrong and what to do")
    statusCode: int
    timestamp: str | None
    path: str
    requestId: str
    hint: str | None = Field(default=None, description="401: how to send a key")
    reason: str | None = Field(default=None, description="410: closed, expired, evicted, failed")
    goneAt: str | None = Field(default=None, description="410: when")


def error_body(
    status: int,
    title: str,
    message: str,
    *,
    path: str,
    request_id: str,
    timestamp: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`{"error", "message", "statusCode", "timestamp", "path", "requestId", ...}`."""
    body: dict[str, Any] = {
        "error": title,
        "message": message,
        "statusCode": status,
        "timestamp": timestamp,
        "path": path,
        "requestId": request_id,
    }
    body.update(extra or {})
    return body


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id") or new_id("req_"))


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    message: str,
    *,
    timestamp: str | None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Answer an ASGI request with the error envelope (for plain ASGI apps)."""
    body = error_body(
        status,
        title,
        message,
        path=str(scope.get("path", "")),
        request_id=request_id_of(scope),
        timestamp=timestamp,
        extra=extra,
    )
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


class RequestContext:
    """Gives every request an id (API Gateway's when there is one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" not in headers:
            # A bare OPTIONS (not a CORS preflight, which CORSMiddleware answers): say what
            # is allowed; never 401 or 405.
            await Response(status_code=204, headers={"Allow": ALLOWED_METHODS})(
                scope, receive, send
            )
            return
        event = scope.get("aws.event") or {}
        request_id = (event.get("requestContext") or {}).get("requestId") or new_id("req_")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
