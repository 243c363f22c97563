"""Code execution through the `mcp` Lambda function, called with real API Gateway events
(over DynamoDB Local, PostgreSQL, the E2B stand-in and the Lambda Invoke stand-in that runs
the worker function): answers come back within API Gateway's time limit, and longer runs
are read with getExecution."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.events import api_event
from tests.support.lambda_stack import Stack, lambda_stack
from tests.support.postgres import PostgresServer

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
WAIT_S = 3
RESPONSE_LIMIT = 5_500_000  # the template's IRIS_RESPONSE_LIMIT_BYTES
LAMBDA_LIMIT = 6 * 1024 * 1024  # a synchronous invocation's response


@pytest.fixture(scope="module")
def stack(
    dynamodb_local: DynamoDBLocal,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with lambda_stack(
        dynamodb_local,
        postgres,
        tmp_path_factory.mktemp("lambda-mcp"),
        mcp_wait_s=str(WAIT_S),
        response_limit_bytes=str(RESPONSE_LIMIT),
    ) as built:
        yield built


def call_tool(
    stack: Stack, key: str, name: str, arguments: dict[str, Any], query: str = ""
) -> dict[str, Any]:
    rpc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    status, body = stack.call(
        "mcp",
        "POST",
        "/mcp",
        key=key,
        body=rpc,
        headers=HEADERS,
        query={"tools": query} if query else None,
    )
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


def run_to_end(stack: Stack, key: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """executeCode's answer; if the run outlasted the wait, read to its end."""
    started = time.monotonic()
    answer = call_tool(stack, key, "executeCode", arguments, "code")
    assert time.monotonic() - started < 29  # API Gateway's integration timeout
    assert answer.get("isError") is not True, answer
    body: dict[str, Any] = answer["structuredContent"]
    while "executionId" in body and body.get("status") in ("queued", "running"):
        time.sleep(0.5)
        polled = call_tool(stack, key, "getExecution", {"executionId": body["executionId"]})
        body = polled["structuredContent"]
        if "result" in body:
            body = {**body["result"], "sandboxId": body["sandboxId"]}
    return body


def test_execute_code_through_the_mcp_function_then_reuse_the_sandbox(stack: Stack) -> None:
    key = stack.key("lambda-agent")
    answer = run_to_end(stack, key, {"code": "console.log('hi');\nreturn 40 + 2;"})
    assert answer["success"] is True and answer["output"].startswith("=== Results ===\n42")
    assert answer["logs"] == ["[stdout] hi"]
    again = run_to_end(stack, key, {"code": "return 'again'", "sandboxId": answer["sandboxId"]})
    assert again["metadata"]["sandboxCreated"] is False
    assert again["sandboxId"] == answer["sandboxId"]
    # Another project's key does not find it.
    other = call_tool(
        stack, stack.key("lambda-other"), "getSandbox", {"sandboxId": answer["sandboxId"]}
    )
    assert other["isError"] is True and "not found" in other["content"][0]["text"]


def test_a_run_longer_than_the_wait_is_read_with_get_execution(stack: Stack) -> None:
    key = stack.key("lambda-long")
    code = (
        "for (let i = 1; i <= 6; i++) { console.log(`line ${i}`);"
        " await new Promise((r) => setTimeout(r, 1000)); }\nreturn 'late';"
    )
    started = time.monotonic()
    first = call_tool(stack, key, "executeCode", {"code": code})
    waited = time.monotonic() - started
    assert waited < WAIT_S + 5, waited  # answered near the wait, not at the end of the run
    pending = first["structuredContent"]
    assert pending["status"] in ("queued", "running"), pending
    final: dict[str, Any] = {}
    lines: list[str] = []
    cursor = 0
    for _ in range(60):
        final = call_tool(
            stack, key, "getExecution", {"executionId": pending["executionId"], "after": cursor}
        )["structuredContent"]
        lines += final["logs"]
        cursor = final["cursor"]
        if final["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert final["status"] == "succeeded", final
    assert lines == [f"[stdout] line {i}" for i in range(1, 7)]
    assert final["result"]["output"].startswith('=== Results ===\n"late"')


def test_answers_at_the_output_cap_fit_lambdas_response_limit(stack: Stack) -> None:
    """1 MiB of one-character lines: over 8 MB as JSON-RPC if nothing were left out."""
    key = stack.key("lambda-big")
    code = "process.stdout.write('x\\n'.repeat(512 * 1024)); return 1;"
    rpc = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "executeCode", "arguments": {"code": code}},
    }  # fmt: skip
    sizes = []
    response = stack.invoke("mcp", api_event("POST", "/mcp", key=key, body=rpc, headers=HEADERS))
    sizes.append(len(json.dumps(response)))
    body = json.loads(response["body"])["result"]["structuredContent"]
    execution = body.get("executionId") or body["metadata"]["executionId"]
    for _ in range(60):
        poll = {**rpc, "params": {"name": "getExecution", "arguments": {"executionId": execution}}}
        response = stack.invoke(
            "mcp", api_event("POST", "/mcp", key=key, body=poll, headers=HEADERS)
        )
        sizes.append(len(json.dumps(response)))
        answer = json.loads(response["body"])["result"]["structuredContent"]
        if answer["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert answer["status"] == "succeeded", answer.get("status")
    assert answer["result"]["metadata"]["logsTruncated"] is True  # what was left out is said
    assert answer["result"]["returnValue"] == 1
    assert max(sizes) < LAMBDA_LIMIT, sizes
