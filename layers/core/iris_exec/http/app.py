"""The HTTP edge: the contract's routes, one error envelope, CORS, rate-limit headers.

The same app factory serves the local server (all routes) and each Lambda function
(only its own route)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from iris_exec import __version__
from iris_exec.composition import Services
from iris_exec.domain.errors import BadRequest, InternalError, IrisError, PayloadTooLarge
from iris_exec.domain.models import FINAL_STATUSES, Principal
from iris_exec.http.envelope import ErrorBody, RequestContext, error_body
from iris_exec.services.answers import (
    Answer,
    AuditPage,
    ExecutionAnswer,
    ExecutionPage,
    ExecutionStarted,
    ExecutionView,
    SandboxesClosed,
    SandboxPage,
    SandboxView,
)
from iris_exec.services.audit import MAX_LIMIT as MAX_AUDIT_LIMIT
from iris_exec.services.clock import iso, new_id, parse_instant
from iris_exec.services.output import fit_answer
from iris_exec.services.sandboxes import validate_sandbox_id

if TYPE_CHECKING:
    from sse_starlette import ServerSentEvent

log = logging.getLogger(__name__)

EXECUTE = "execute"
SANDBOX_GET = "sandbox_get"
SANDBOX_DELETE = "sandbox_delete"
AUDIT = "audit"
EXECUTIONS = "executions"
#: Server-Sent Events need a streaming edge: the local server has one; API Gateway's REST
#: APIs buffer responses, so on AWS live logs are read by polling with ?after=<cursor>.
EXECUTION_EVENTS = "execution_events"
#: The lists the console reads (a project's sandboxes and execution history).
SANDBOXES_LIST = "sandboxes_list"
EXECUTIONS_LIST = "executions_list"
#: The web console's page and files (http/console.py), at `/`.
CONSOLE = "console"
ALL_ROUTES = frozenset(
    {
        EXECUTE,
        SANDBOX_GET,
        SANDBOX_DELETE,
        AUDIT,
        EXECUTIONS,
        EXECUTION_EVENTS,
        SANDBOXES_LIST,
        EXECUTIONS_LIST,
        CONSOLE,
    }
)

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Iris-Busy", "Prefer"]
EXPOSED_HEADERS = [
    "X-Request-Id",
    "Idempotent-Replayed",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
    "Preference-Applied",
]


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or new_id("req_"))


def error_response(
    request: Request,
    status: int,
    title: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The contract's one error shape."""
    body = error_body(
        status,
        title,
        message,
        path=request.url.path,
        request_id=_request_id(request),
        timestamp=iso(request.app.state.container.clock()),
        extra=extra,
    )
    merged = dict(_ratelimit_headers(request))
    merged.update(headers or {})
    return JSONResponse(body, status_code=status, headers=merged)


def _ratelimit_headers(request: Request) -> dict[str, str]:
    state = getattr(request.state, "ratelimit", None)
    return state.headers() if state is not None else {}


def respond(request: Request, answer: Answer, status: int = 200) -> JSONResponse:
    body = answer.wire()
    limit = container_of(request).settings.response_limit_bytes
    if limit is not None:  # Lambda's response limit (services/output.py)
        body = fit_answer(body, limit)
    return JSONResponse(body, status_code=status, headers=_ratelimit_headers(request))


_HTTP_TITLES = {404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "OPTIONS"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    methods.discard("HEAD")
    return ", ".join(sorted(methods))


def _render(request: Request, exc: IrisError) -> JSONResponse:
    """The one translation of an error into an answer; a 5xx's detail goes to the log."""
    request_id = _request_id(request)
    if exc.status >= 500:
        log.error("request %s failed: %s", request_id, exc.detail)
    return error_response(
        request, exc.status, exc.title, exc.public_message(request_id),
        headers=exc.headers, extra=exc.extra,
    )  # fmt: skip


def _install_error_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IrisError)
        return _render(request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = allowed
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        elif status == 404:
            message = f"No route {request.url.path}; see the API reference in the README"
        else:
            message = str(exc.detail)
        title = _HTTP_TITLES.get(status, "Error")
        return error_response(request, status, title, message, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        return error_response(request, 400, "Bad Request", f"Invalid request: {exc}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on request %s", _request_id(request), exc_info=exc)
        response = _render(request, InternalError(f"{type(exc).__name__} (traceback above)"))
        # Answered outside RequestContext (by Starlette's outermost middleware).
        response.headers["X-Request-Id"] = _request_id(request)
        return response

    app.add_exception_handler(IrisError, domain_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def container_of(request: Request) -> Services:
    container: Services = request.app.state.container
    return container


async def authenticated(request: Request) -> Principal:
    """Bearer key -> project, then the per-key rate limit (both before the body is read).
    Async like the services that call the same stores: a sync dependency would cost every
    request a hop to a worker thread and back."""
    container = container_of(request)
    principal = container.auth.authenticate(request.headers.getlist("authorization"))
    request.state.ratelimit = container.rate_limiter.check(principal)
    return principal


Caller = Annotated[Principal, Depends(authenticated)]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"Request body of {declared} bytes is too large; at most {limit} bytes are read"
            " (the code's and the context's limits, as JSON)"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"Request body is too large; at most {limit} bytes are read"
                " (the code's and the context's limits, as JSON)"
            )
    return bytes(body)


def _prefers_async(request: Request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` (among other preferences, any case)."""
    prefer = request.headers.get("prefer", "")
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


#: A number as this API takes it: ASCII digits only (``str.isdigit`` also takes "²" and
#: "٣", which ``int`` then refuses or reads), and not so many that it means nothing.
_DIGITS = re.compile(r"[0-9]{1,18}")


def strict_int(value: str, what: str, low: int, high: int) -> int:
    """``value`` as an integer from ``low`` to ``high``, else a 400 saying so."""
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise BadRequest(f"{what} must be an integer from {low} to {high}")
    return int(value)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    return default if value is None else strict_int(value, name, low, high)


#: Lines end with LF alone, as they always have here (sse-starlette's default is CRLF, which
#: the spec allows but simple clients that split on a blank line do not read).
SSE_SEP = "\n"


async def execution_stream(
    container: Services, caller: Principal, execution_id: str, after: int
) -> AsyncIterator[ServerSentEvent]:
    """`log` events as lines are stored (id = line number), `status` when it changes, and
    `done` with the whole answer at the end (sse-starlette adds the heartbeat comments and
    ends the stream when the client goes)."""
    from sse_starlette import ServerSentEvent

    from iris_exec.services.background import MAX_LOG_PAGE

    background = container.background
    poll_s = min(container.settings.execution_log_flush_s, 0.25)
    cursor, status = after, ""
    yield ServerSentEvent(comment=f"stream of execution {execution_id}", sep=SSE_SEP)
    while True:
        record = background.record(caller, execution_id)
        lines = background.lines(record, cursor, MAX_LOG_PAGE)
        for line in lines:
            cursor += 1
            yield _event("log", {"n": cursor, "line": line}, cursor)
        if record.status != status:
            status = record.status
            yield _event("status", {"status": status})
        if record.status in FINAL_STATUSES and not lines:
            yield _event("done", background.body(record, [], cursor).wire())
            return
        await asyncio.sleep(poll_s)


def _event(event: str, data: dict[str, Any], event_id: int | None = None) -> ServerSentEvent:
    from sse_starlette import ServerSentEvent

    return ServerSentEvent(
        json.dumps(data, separators=(",", ":")),
        event=event,
        id=None if event_id is None else str(event_id),
        sep=SSE_SEP,
    )


def _sandbox_id_param(request: Request) -> str | None:
    value = request.query_params.get("sandboxId")
    return None if value is None else validate_sandbox_id(value)


def _query(*specs: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI query parameters of a route that reads them itself (strictly, with the
    contract's messages): (name, description, schema)."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
            for name, text, schema in specs
        ]
    }


_LIMIT = {"type": "integer", "minimum": 1}
_CURSOR = ("cursor", "nextCursor of the page before", {"type": "string"})
_SANDBOX_ID = (
    "sandboxId",
    "a sandbox of your project",
    {"type": "string", "pattern": "^sb_[A-Za-z0-9]{8,64}$"},
)
_AFTER = (
    "after",
    "only log lines after this one (the last cursor)",
    {"type": "integer", "minimum": 0},
)


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


#: Every route can answer these (a bad parameter, no key, the rate limit, a store or the
#: provider unavailable, a bug).
COMMON_ERRORS = (400, 401, 429, 500, 503)
EXECUTE_ERRORS = (403, 404, 409, 410, 413, 422)
_ERROR_TEXT = {
    400: "Bad Request: a malformed body or parameter",
    401: "Unauthorized: no, malformed or inactive API key (the answer adds `hint`)",
    403: "Forbidden: `projectId` is not the key's project",
    404: "Not Found: unknown, or another project's",
    409: "Conflict: the sandbox is busy, or this Idempotency-Key's request still runs",
    410: "Gone: the sandbox was closed, expired, evicted or failed (`reason`, `goneAt`)",
    413: "Payload Too Large: code over 100 KiB",
    422: "Unprocessable Entity: this Idempotency-Key was used with another body",
    429: "Too Many Requests: over the rate limit, or every sandbox busy at the quota",
    500: "Internal Server Error (logged with the requestId)",
    503: "Service Unavailable: the sandbox provider or a store; retry after Retry-After",
}


def answers(
    model: type[Answer] | None, *errors: int, accepted: type[Answer] | None = None
) -> dict[str, Any]:
    """A route's documented answers (for its ``openapi_extra``): ``model`` (200),
    ``accepted`` (202) and the error envelope for each status in ``errors`` and
    COMMON_ERRORS. Not FastAPI's ``response_model=``: that builds a validator per model
    (and imports pydantic.v1) when the app is built, ~90 ms of every Lambda cold start;
    the answers are models already, and their schemas are made when the document is."""
    responses: dict[str, dict[str, Any]] = {
        str(status): _documented(ErrorBody, _ERROR_TEXT[status])
        for status in sorted({*COMMON_ERRORS, *errors})
    }
    if model is not None:
        responses["200"] = _documented(model, "OK")
    if accepted is not None:
        responses["202"] = _documented(accepted, "Accepted: running in the background")
    return {"responses": responses}


def _documented(model: type[BaseModel], description: str) -> dict[str, Any]:
    schema = {"$ref": f"{_COMPONENTS}{model.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMPONENTS = "#/components/schemas/"
#: Every model a route's answers name (the document holds the schema of each).
DOCUMENTED: tuple[type[BaseModel], ...] = (
    ErrorBody,
    ExecutionAnswer,
    ExecutionStarted,
    ExecutionView,
    ExecutionPage,
    SandboxPage,
    SandboxView,
    SandboxesClosed,
    AuditPage,
)


def _schemas() -> dict[str, Any]:
    """The JSON schemas of DOCUMENTED and of the models they hold, as they are sent."""
    from pydantic.json_schema import models_json_schema

    _, found = models_json_schema(
        [(model, "serialization") for model in DOCUMENTED], ref_template=_COMPONENTS + "{model}"
    )
    schemas: dict[str, Any] = found.get("$defs", {})
    return schemas


def _no_validation_422(responses: dict[str, Any]) -> None:
    """FastAPI documents its own 422 for a path parameter; this API answers 400 instead."""
    if "HTTPValidationError" in json.dumps(responses.get("422", {})):
        del responses["422"]


def _declare_bearer_auth(app: FastAPI) -> None:
    """The OpenAPI document says every route but /health takes `Authorization: Bearer
    sk_live_...` (so /docs's "Authorize" works); authentication itself is `authenticated`."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A project API key: sk_live_ followed by 43 characters",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path != "/health":
                        operation["security"] = [{"apiKey": []}]
                    _no_validation_422(operation.get("responses", {}))
            components = schema["components"].setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            components.update(_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    container: Services,
    *,
    routes: Iterable[str] = ALL_ROUTES,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    enabled = frozenset(routes)
    app = FastAPI(
        title="IRIS code execution service",
        version=__version__,
        description="Run TypeScript in isolated sandboxes with access to the IRIS tools.",
        lifespan=lifespan,
        # /docs is served from this server's own files (add_docs_routes), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    _install_error_handlers(app)
    _declare_bearer_auth(app)

    if EXECUTE in enabled:
        # Imported only by the apps that serve the route (the Lambda functions' cold starts).
        from iris_exec.services.commands import (
            ExecuteBody,
            max_body_bytes,
            parse_execute,
            within_sync_limit,
        )

        @app.post(
            "/api/iris/execute",
            summary="Run code in a sandbox",
            openapi_extra=answers(ExecutionAnswer, *EXECUTE_ERRORS, accepted=ExecutionStarted)
            | {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ExecuteBody.model_json_schema()}},
                }
            },
        )
        async def execute(request: Request, caller: Caller) -> Response:
            settings = container.settings
            raw = await read_body(request, max_body_bytes(settings))
            command = parse_execute(raw, caller, settings)
            if request.headers.get("x-iris-busy", "").lower() == "reject":
                command = replace(command, wait=False)
            if _prefers_async(request):
                command = replace(command, background=True)
            command = within_sync_limit(command, settings)
            key = request.headers.get("idempotency-key")
            if command.background:
                started, replayed = await container.idempotent.once(
                    caller, command, key, container.background.submit, ExecutionStarted
                )
                response = respond(request, started, 202)
                # Relative to .../api/iris/execute, whatever stage prefix is in front.
                response.headers["Location"] = f"executions/{started.execution_id}"
                if _prefers_async(request):
                    response.headers["Preference-Applied"] = "respond-async"
            else:
                answer, replayed = await container.idempotent.execute(caller, command, key)
                response = respond(request, answer)
            if replayed:
                response.headers["Idempotent-Replayed"] = "true"
            return response

    if EXECUTIONS_LIST in enabled:
        from iris_exec.services import history

        @app.get(
            "/api/iris/executions",
            summary="Your project's executions, newest first",
            openapi_extra=answers(ExecutionPage)
            | _query(
                _SANDBOX_ID,
                ("status", "queued, running, succeeded, failed or timed_out", {"type": "string"}),
                ("limit", "rows per page, 1-100 (default 20)", _LIMIT),
                _CURSOR,
            ),
        )
        async def executions_list(request: Request, caller: Caller) -> Response:
            params = request.query_params
            return respond(
                request,
                container.history.executions(
                    caller,
                    _sandbox_id_param(request),
                    history.parse_status(params.get("status"), history.EXECUTION_STATUSES),
                    history.parse_limit(params.get("limit")),
                    params.get("cursor"),
                ),
            )

    if SANDBOXES_LIST in enabled:
        from iris_exec.services import history

        @app.get(
            "/api/iris/sandboxes",
            summary="Your project's sandboxes, newest first",
            openapi_extra=answers(SandboxPage)
            | _query(
                ("status", "running, closed, expired or failed", {"type": "string"}),
                ("limit", "rows per page, 1-100 (default 20)", _LIMIT),
                _CURSOR,
            ),
        )
        async def sandboxes_list(request: Request, caller: Caller) -> Response:
            params = request.query_params
            return respond(
                request,
                container.history.sandboxes(
                    caller,
                    history.parse_status(params.get("status"), history.SANDBOX_STATUSES),
                    history.parse_limit(params.get("limit")),
                    params.get("cursor"),
                ),
            )

    if EXECUTIONS in enabled:
        from iris_exec.services.background import MAX_LOG_PAGE

        @app.get(
            "/api/iris/executions/{execution_id}",
            summary="Status, log lines and (when done) the answer of an execution",
            openapi_extra=answers(ExecutionView, 404)
            | _query(_AFTER, ("limit", "log lines at most (default and most 10000)", _LIMIT)),
        )
        async def execution_get(request: Request, caller: Caller, execution_id: str) -> Response:
            after = _int_param(request, "after", 0, 0, 10**9)
            limit = _int_param(request, "limit", MAX_LOG_PAGE, 1, MAX_LOG_PAGE)
            return respond(
                request, container.background.describe(caller, execution_id, after, limit)
            )

    if EXECUTION_EVENTS in enabled:

        @app.get(
            "/api/iris/executions/{execution_id}/events",
            summary="Live log lines of an asynchronous execution (Server-Sent Events)",
            response_class=EventStream,
            openapi_extra=answers(None, 404) | _query(_AFTER),
        )
        async def execution_events(request: Request, caller: Caller, execution_id: str) -> Response:
            after = _int_param(request, "after", 0, 0, 10**9)
            last_event = request.headers.get("last-event-id", "").strip()
            if last_event:
                # A reconnecting EventSource resumes where it was.
                after = strict_int(last_event, "Last-Event-ID", 0, 10**9)
            container.background.record(caller, execution_id)  # 400/404 before streaming
            # Imported here: only the local server streams (no Lambda loads it at start).
            from sse_starlette import EventSourceResponse, ServerSentEvent

            return EventSourceResponse(
                execution_stream(container, caller, execution_id, after),
                headers=_ratelimit_headers(request),
                ping=container.settings.sse_heartbeat_s,
                ping_message_factory=lambda: ServerSentEvent(comment="heartbeat", sep=SSE_SEP),
                sep=SSE_SEP,
            )

    if SANDBOX_GET in enabled:

        @app.get(
            "/api/iris/sandbox",
            summary="Status of one sandbox",
            openapi_extra=_query(_SANDBOX_ID) | answers(SandboxView, 404),
        )
        async def sandbox_get(request: Request, caller: Caller) -> Response:
            sandbox_id = _sandbox_id_param(request)
            if sandbox_id is None:
                raise BadRequest("The sandboxId query parameter is required")
            return respond(request, await container.sandboxes.describe(caller, sandbox_id))

    if SANDBOX_DELETE in enabled:

        @app.delete(
            "/api/iris/sandbox",
            summary="Close one sandbox, or all of your project's",
            openapi_extra=answers(SandboxesClosed, 404)
            | _query(
                _SANDBOX_ID,
                (
                    "all",
                    "true: close every sandbox of your project",
                    {"type": "string", "enum": ["true"]},
                ),
            ),
        )
        async def sandbox_delete(request: Request, caller: Caller) -> Response:
            sandbox_id = _sandbox_id_param(request)
            close_all = request.query_params.get("all")
            if close_all is not None and close_all.lower() != "true":
                raise BadRequest("all must be 'true' (or leave it out and give sandboxId)")
            if sandbox_id is not None and close_all is not None:
                raise BadRequest("Give either sandboxId or all=true, not both")
            now = iso(container.clock())
            if sandbox_id is not None:
                await container.sandboxes.close(caller, sandbox_id)
                return respond(
                    request, SandboxesClosed(message=f"Sandbox {sandbox_id} closed", timestamp=now)
                )
            if close_all is not None:
                closed = await container.sandboxes.close_all(caller)
                answer = SandboxesClosed(
                    message="All sandboxes closed", closed=closed, timestamp=now
                )
                return respond(request, answer)
            raise BadRequest("Give sandboxId=<id> or all=true")

    if AUDIT in enabled:

        @app.get(
            "/api/iris/audit",
            summary="Your project's audit trail, newest first",
            openapi_extra=answers(AuditPage)
            | _query(
                ("since", "ISO 8601 time or epoch milliseconds", {"type": "string"}),
                ("until", "ISO 8601 time or epoch milliseconds", {"type": "string"}),
                ("limit", "events at most, 1-500 (default 100)", _LIMIT),
            ),
        )
        async def audit(request: Request, caller: Caller) -> Response:
            params = request.query_params
            limit = strict_int(params.get("limit", "100"), "limit", 1, MAX_AUDIT_LIMIT)
            since = parse_instant(params.get("since"), "since")
            until = parse_instant(params.get("until"), "until")
            return respond(request, container.audit.query(caller, since, until, limit))

    if CONSOLE in enabled:
        from iris_exec.http.console import add_console_routes, add_docs_routes

        add_console_routes(app)
        add_docs_routes(app)

    @app.get("/health", summary="Liveness (no authentication)", include_in_schema=False)
    async def health() -> Response:
        body = {"status": "ok", "version": __version__, "provider": container.provider_name}
        return JSONResponse(body)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=container.settings.cors_origin_list,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContext)
    return app
