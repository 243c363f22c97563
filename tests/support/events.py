"""API Gateway events for handler tests: the files under tests/events (made with
`sam local generate-event`), filled in per request."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[1] / "events"


@cache
def _load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def api_event(
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    resource: str | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy event, as API Gateway sends it to a Lambda function."""
    event = copy.deepcopy(_load("apigw_rest_proxy.json"))
    event["httpMethod"] = method
    event["path"] = path
    event["resource"] = resource or path
    all_headers = dict(event["headers"])
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    all_headers.update(headers or {})
    event["headers"] = all_headers
    event["multiValueHeaders"] = {k: [v] for k, v in all_headers.items()}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["body"] = (
        raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    )
    event["isBase64Encoded"] = False
    context = event["requestContext"]
    context["httpMethod"] = method
    context["resourcePath"] = event["resource"]
    context["path"] = f"/{context['stage']}{path}"
    context["requestId"] = str(uuid.uuid4())
    return event


def authorizer_event(
    token: str, method: str = "POST", path: str = "api/iris/execute"
) -> dict[str, Any]:
    event = copy.deepcopy(_load("authorizer_token.json"))
    event["authorizationToken"] = token
    event["methodArn"] = (
        f"arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/{method}/{path}"
    )
    return event


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context` (the attributes Powertools reads)."""

    function_name: str = "iris-exec-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:iris-exec-test"
    aws_request_id: str = "0f6e1f7a-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/iris-exec-test"
    log_stream_name: str = "2026/11/26/[$LATEST]test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000
