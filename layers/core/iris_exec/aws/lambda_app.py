"""Lambda handlers: one FastAPI app per function (just its route), wrapped by Mangum, with
Powertools logging (correlation id = API Gateway request id) and metrics.

Everything here runs at cold start once per container; handlers only translate events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iris_exec.aws.runtime import container, event_loop, logger, metrics
from iris_exec.composition.aws import REQUEST_BASE_URL
from iris_exec.http.envelope import RequestContext

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class StatusMetrics:
    """Counts 4xx and 5xx answers (ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status >= 500:
                    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
                elif status >= 400:
                    metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
            await send(message)

        await self.app(scope, receive, counting)


def _wrap(asgi: ASGIApp) -> Handler:
    event_loop()
    # lifespan="off": Mangum would otherwise run the app's startup on every invocation.
    adapter = Mangum(StatusMetrics(asgi), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        request = event.get("requestContext") or {}
        if request.get("domainName") and request.get("stage"):
            REQUEST_BASE_URL.set(f"https://{request['domainName']}/{request['stage']}")
        response: dict[str, Any] = adapter(event, cast(Any, context))
        return response

    return cast(Handler, handler)


def route_handler(*routes: str) -> Handler:
    """The handler of the API routes of one function (`execute`, `sandbox_get`...)."""
    from iris_exec.http.app import create_app  # FastAPI: only the route functions load it

    return _wrap(create_app(container(), routes=set(routes)))


def mcp_handler() -> Handler:
    """The handler of /mcp: the IRIS tools for sandboxes, and code execution too for MCP
    clients with a project API key (POST)."""
    from iris_exec.mcp.app import McpEndpoint  # the MCP SDK: only this function pays for it

    # GET and DELETE answer 405 (McpEndpoint: stateless, no server-to-client stream).
    return _wrap(RequestContext(McpEndpoint(container(), per_request=True)))


def reaper_handler() -> Callable[[dict[str, Any], LambdaContext], dict[str, int]]:
    """The scheduled reaper: idle/expired sandboxes closed, lost ones marked failed."""
    built = container()

    async def sweep() -> dict[str, int]:
        reaped = await built.sandboxes.reap()
        lost = await built.sandboxes.reconcile()
        dead = built.background.sweep()
        return {"reaped": reaped, "lost": lost, "deadExecutions": dead}

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
        result = event_loop().run_until_complete(sweep())
        metrics.add_metric(name="SandboxesReaped", unit=MetricUnit.Count, value=result["reaped"])
        logger.info("reaper pass", extra=result)
        return result

    return cast(Callable[[dict[str, Any], LambdaContext], dict[str, int]], handler)


def worker_handler() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The worker of asynchronous executions, invoked (InvocationType=Event) by the execute
    function with ``{"projectId", "executionId", "baseUrl"}``."""
    built = container()

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        project_id, execution_id = event.get("projectId"), event.get("executionId")
        if not isinstance(project_id, str) or not isinstance(execution_id, str):
            logger.error("worker event without projectId/executionId", extra={"event": event})
            return {"status": None}
        logger.append_keys(execution_id=execution_id, project_id=project_id)
        if isinstance(event.get("baseUrl"), str):
            REQUEST_BASE_URL.set(event["baseUrl"])
        status = event_loop().run_until_complete(built.background.work(project_id, execution_id))
        if status is not None:
            metrics.add_metric(name="AsyncExecutions", unit=MetricUnit.Count, value=1)
            if status != "succeeded":
                metrics.add_metric(name="AsyncExecutionsFailed", unit=MetricUnit.Count, value=1)
        return {"executionId": execution_id, "status": status}

    return cast(Callable[[dict[str, Any], LambdaContext], dict[str, Any]], handler)
