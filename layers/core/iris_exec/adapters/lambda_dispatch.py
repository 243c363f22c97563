"""Asynchronous executions on AWS: each one's worker is the worker Lambda function,
invoked with ``InvocationType=Event`` (Lambda queues the event and answers 202 at once)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from iris_exec.adapters.awsapi import AwsError, AwsUnreachable, LambdaApi
from iris_exec.domain.errors import InternalError, ServiceUnavailable
from iris_exec.settings import Settings

log = logging.getLogger(__name__)


class LambdaDispatcher:
    """``base_url`` tells the worker where sandboxes reach the tools (the API's own URL as
    the submitting request saw it), since the worker has no HTTP request of its own."""

    def __init__(self, settings: Settings, base_url: Callable[[], str | None]) -> None:
        self._settings = settings
        self._base_url = base_url
        self._client: LambdaApi | None = None

    def dispatch(self, project_id: str, execution_id: str) -> None:
        function = self._settings.worker_function
        if not function:
            raise InternalError("set IRIS_WORKER_FUNCTION to the worker Lambda function")
        if self._client is None:
            self._client = LambdaApi.connect(
                self._settings.aws_region,
                self._settings.lambda_endpoint,
                connect_timeout=2,
                read_timeout=5,
                max_attempts=3,
            )
        payload = {"projectId": project_id, "executionId": execution_id}
        base_url = self._base_url()
        if base_url:
            payload["baseUrl"] = base_url
        try:
            status = self._client.invoke_event(function, json.dumps(payload).encode())
        except (AwsError, AwsUnreachable) as exc:
            log.error("could not invoke the worker %s: %s", function, exc)
            raise ServiceUnavailable(
                "The execution could not be started (the worker function is unavailable);"
                " retry shortly",
                retry_after_s=5,
            ) from exc
        if status != 202:
            raise ServiceUnavailable(
                f"The worker function refused the execution (status {status})",
                retry_after_s=5,
            )
