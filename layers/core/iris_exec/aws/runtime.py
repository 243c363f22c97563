"""What every Lambda function of this service shares, without FastAPI: Powertools logging
and metrics, and the adapters of this Lambda container (built once, at cold start)."""

from __future__ import annotations

import asyncio
import logging
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from iris_exec.composition import Services
from iris_exec.composition.aws import build_aws
from iris_exec.domain.models import ExecutionReport
from iris_exec.settings import Settings

#: Per stack (POWERTOOLS_SERVICE_NAME in the template), so that the metrics and alarms of
#: two stacks in one account stay apart.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "iris-exec"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "IrisExec"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Core code logs with stdlib logging under "iris_exec"; give it Powertools' JSON handler
# (which carries the correlation id), and keep the SDKs' per-request chatter out.
_core_logs = logging.getLogger("iris_exec")
_core_logs.addHandler(logger.registered_handler)
_core_logs.setLevel(logging.INFO)
_core_logs.propagate = False
for _noisy in ("mcp.server.streamable_http", "mcp.server.streamable_http_manager", "httpx"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class PowertoolsMetrics:
    """ExecutionObserver: one metric set per execution."""

    def executed(self, report: ExecutionReport) -> None:
        metrics.add_metric(name="Executions", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="SandboxesCreated" if report.sandbox_created else "SandboxesReused",
            unit=MetricUnit.Count,
            value=1,
        )
        if not report.succeeded:
            metrics.add_metric(name="ExecutionsFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="ExecutionTime", unit=MetricUnit.Milliseconds, value=report.execution_ms
        )
        metrics.add_metric(name="SetupTime", unit=MetricUnit.Milliseconds, value=report.setup_ms)


_container: Services | None = None
_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """One event loop for the life of the Lambda container (Mangum uses the current one):
    SDK clients made in one invocation are reused by the next."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


def container() -> Services:
    """The services of this Lambda container, built once (at cold start)."""
    global _container
    if _container is None:
        _container = build_aws(Settings(), observer=PowertoolsMetrics())
    return _container


def reset() -> None:
    """Forget the container and close its loop (tests: a fresh "Lambda container")."""
    global _container, _loop
    if _container is not None:
        _container.close()
    if _loop is not None:
        _loop.close()
    _container, _loop = None, None
