"""Schemathesis against the app's own OpenAPI, on a real local server with a real key.

For every route, requests generated from the schema (positive: fitting it; negative:
violating it) must never get a 5xx, every error answer must carry the contract's envelope,
and every answer must be one the document declares: its status, its content type, and a
body that fits that status's schema. Bounded: a fixed number of examples per operation and
mode, derandomized (reproducible), no shrinking (a failure prints its curl command)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response

from tests.support.server import LocalServer

ENVELOPE = {"error", "message", "statusCode", "timestamp", "path", "requestId"}
EXECUTE = ("/api/iris/execute", "POST")
SANDBOX_GET = ("/api/iris/sandbox", "GET")
SANDBOX_DELETE = ("/api/iris/sandbox", "DELETE")
SANDBOXES = ("/api/iris/sandboxes", "GET")
EXECUTIONS = ("/api/iris/executions", "GET")
EXECUTION = ("/api/iris/executions/{execution_id}", "GET")
AUDIT = ("/api/iris/audit", "GET")
#: Examples per (operation, mode): 120 for execute (which runs code), more for the cheap ones.
EXAMPLES = {
    EXECUTE: 120,
    SANDBOX_GET: 150,
    SANDBOX_DELETE: 150,
    SANDBOXES: 60,
    EXECUTIONS: 60,
    EXECUTION: 60,
    AUDIT: 60,
}
#: What the answers must be, besides never a 5xx and errors in the envelope.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
#: The contract's query parameters, which the app reads by hand and its schema omits.
SANDBOX_ID = {"type": "string", "pattern": "^sb_[A-Za-z0-9]{8,64}$"}
SANDBOX_PARAMETERS = {
    "GET": [{"name": "sandboxId", "in": "query", "required": True, "schema": SANDBOX_ID}],
    "DELETE": [
        {"name": "sandboxId", "in": "query", "required": False, "schema": SANDBOX_ID},
        {
            "name": "all",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["true"]},
        },
    ],
}
#: Statuses each run must have seen, so that it cannot pass without exercising anything:
#: real executions, and well-formed ids that are unknown.
MUST_SEE = {
    (EXECUTE, GenerationMode.POSITIVE): {200, 400},
    (EXECUTE, GenerationMode.NEGATIVE): {400},
    (SANDBOX_GET, GenerationMode.POSITIVE): {404},
    (SANDBOX_GET, GenerationMode.NEGATIVE): {400},
    (SANDBOX_DELETE, GenerationMode.POSITIVE): {200, 404},
    (SANDBOX_DELETE, GenerationMode.NEGATIVE): {400},
    (SANDBOXES, GenerationMode.POSITIVE): {200},
    (SANDBOXES, GenerationMode.NEGATIVE): {400},
    (EXECUTIONS, GenerationMode.POSITIVE): {200},
    (EXECUTIONS, GenerationMode.NEGATIVE): {400},
    # Any string is a path parameter; one shaped like an id is then unknown.
    (EXECUTION, GenerationMode.POSITIVE): {400},
    (AUDIT, GenerationMode.POSITIVE): {200},
    (AUDIT, GenerationMode.NEGATIVE): {400},
}


class Fuzzed:
    def __init__(self, server: LocalServer, key: str) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    with LocalServer(data, rate_limit_per_minute=1_000_000, execution_timeout_s=10) as server:
        yield Fuzzed(server, server.create_key("fuzzed"))


def with_sandbox_parameters(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec, with the sandbox routes' query parameters declared where it lacks them."""
    spec = copy.deepcopy(spec)
    for method, parameters in SANDBOX_PARAMETERS.items():
        operation = spec["paths"]["/api/iris/sandbox"][method.lower()]
        declared = {p["name"] for p in operation.get("parameters", [])}
        operation.setdefault("parameters", []).extend(
            p for p in parameters if p["name"] not in declared
        )
    return spec


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> schemathesis.BaseSchema:
    response = httpx.get(fuzzed.server.url + "/openapi.json", headers=fuzzed.headers, timeout=10)
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    for path, method in EXAMPLES:
        assert method.lower() in spec["paths"][path], f"{method} {path} is not in the OpenAPI"
    return schemathesis.openapi.from_dict(with_sandbox_parameters(spec))


def problems_with(response: Response) -> list[str]:
    """What is wrong with an answer: a 5xx, or an error without the envelope."""
    status = response.status_code
    if status >= 500:
        return [f"server error {status}: {response.content[:300]!r}"]
    if status < 400:
        return []
    try:
        body = json.loads(response.content)
    except ValueError:
        return [f"{status} answer is not JSON: {response.content[:300]!r}"]
    if not isinstance(body, dict) or not set(body) >= ENVELOPE:
        return [f"{status} answer lacks the envelope: {body!r}"]
    found = []
    if body["statusCode"] != status:
        found.append(f"statusCode {body['statusCode']} != {status}")
    if body["requestId"] != response.headers.get("x-request-id", [None])[0]:
        found.append("requestId differs from the X-Request-Id header")
    # (both decoded: the answer names the path decoded, but for a `#` or `?` in it)
    if unquote(body["path"]) != unquote(str(response.request.path_url).split("?")[0]):
        found.append(f"path {body['path']!r} is not the request's")
    if not body["message"]:
        found.append("empty message")
    return found


@pytest.mark.parametrize(
    ("operation", "mode"),
    list(MUST_SEE),
    ids=[f"{method} {path} {mode.value}" for (path, method), mode in MUST_SEE],
)
def test_generated_requests_get_documented_answers_never_a_5xx(
    fuzzed: Fuzzed,
    api_schema: schemathesis.BaseSchema,
    operation: tuple[str, str],
    mode: GenerationMode,
) -> None:
    path, method = operation
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES[operation],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    def exchange(case: Case[Any]) -> None:
        response = case.call(base_url=fuzzed.server.url, headers=fuzzed.headers, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        found = problems_with(response)
        curl = case.as_curl_command(headers=fuzzed.headers, base_url=fuzzed.server.url)
        assert not found, f"{found}\nreproduce: {curl}"
        try:
            case.validate_response(response, checks=CONFORMANCE, headers=fuzzed.headers)
        except (AssertionError, FailureGroup) as exc:  # one failure, or several
            raise AssertionError(f"{exc}\nreproduce: {curl}") from None

    exchange()
    assert set(statuses) >= MUST_SEE[operation, mode], statuses
    assert httpx.get(fuzzed.server.url + "/health", timeout=5).status_code == 200
