"""What AWS's own limits do to answers, through the Lambda handlers configured as
template.yaml configures them: Lambda's 6 MB synchronous response limit (at the 1 MiB
output cap, answers are several times larger as JSON escaped twice), and API Gateway's
integration timeout (a synchronous run must end before it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.lambda_stack import Stack, lambda_stack
from tests.support.postgres import PostgresServer

#: Lambda: "Invocation payload (request and response): 6 MB each for synchronous".
LAMBDA_RESPONSE_LIMIT = 6_000_000


@pytest.fixture(scope="module")
def stack(
    dynamodb_local: DynamoDBLocal,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    # The values template.yaml sets (IRIS_RESPONSE_LIMIT_BYTES, IRIS_SYNC_TIMEOUT_LIMIT_MS).
    with lambda_stack(
        dynamodb_local,
        postgres,
        tmp_path_factory.mktemp("lambda-limits"),
        response_limit_bytes="5500000",
        sync_timeout_limit_ms="29000",
        execution_log_flush_s="0.5",
    ) as built:
        yield built


def execute(stack: Stack, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
    """Status, answer and the size of the handler's response as Lambda serializes it."""
    from tests.support.events import api_event

    response = stack.invoke("execute", api_event("POST", "/api/iris/execute", key=key, body=body))
    size = len(json.dumps(response))
    return int(response["statusCode"]), json.loads(response["body"]), size


# 1 MiB and more of output, as the review measured it: short lines, empty lines, and
# control characters (six bytes each in JSON, seven once escaped again).
#: Just under the 1 MiB output cap (1,048,576 bytes).
OUTPUTS = {
    "one-character lines": "process.stdout.write('a\\n'.repeat(524000));",
    "empty lines": "process.stdout.write('\\n'.repeat(1048000)); console.log('end');",
    "control characters": "process.stdout.write('\\x01'.repeat(1048000));",
}


@pytest.mark.parametrize("code", OUTPUTS.values(), ids=list(OUTPUTS))
def test_every_answer_at_the_output_cap_fits_lambdas_response_limit(
    stack: Stack, code: str
) -> None:
    status, answer, size = execute(stack, stack.key("big"), {"code": code})
    assert status == 200, answer
    assert size < LAMBDA_RESPONSE_LIMIT
    result = answer["result"]
    assert result["success"] is True, result.get("error")
    assert result["metadata"].get("logsTruncated") is True  # log lines go first
    assert result["output"].startswith("=== Output ===\n")
    if "x01" in code:  # alone 7 MB once escaped twice: its end goes too
        assert result["metadata"]["outputTruncated"] is True
        assert len(result["output"]) > 500_000
    else:  # the output is all there (up to the cap)
        assert len(result["output"]) > 1_000_000


def test_a_short_answer_is_untouched(stack: Stack) -> None:
    status, answer, _ = execute(stack, stack.key("small"), {"code": "console.log('hi'); return 2"})
    assert status == 200
    assert answer["result"]["logs"] == ["[stdout] hi"]
    assert "logsTruncated" not in answer["result"]["metadata"]


def read(stack: Stack, key: str, execution_id: str, after: int) -> tuple[dict[str, Any], int]:
    from tests.support.events import api_event

    event = api_event(
        "GET",
        f"/api/iris/executions/{execution_id}",
        key=key,
        query={"after": str(after)},
        resource="/api/iris/executions/{executionId}",
    )
    response = stack.invoke("executions", event)
    assert response["statusCode"] == 200, response["body"][:500]
    return json.loads(response["body"]), len(json.dumps(response))


def test_polling_a_large_asynchronous_result_fits_and_reads_every_line(stack: Stack) -> None:
    key = stack.key("big-async")
    code = "for (let i = 0; i < 300000; i++) console.log('a');"
    status, submitted, _ = execute(stack, key, {"code": code, "async": True})
    assert status == 202, submitted
    execution_id = submitted["executionId"]
    lines: list[str] = []
    cursor, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        body, size = read(stack, key, execution_id, cursor)
        assert size < LAMBDA_RESPONSE_LIMIT
        assert body["cursor"] == cursor + len(body["logs"])
        lines += body["logs"]
        cursor = body["cursor"]
        if body["status"] in {"succeeded", "failed", "timed_out"} and not body["logs"]:
            break
        if body["status"] not in {"succeeded", "failed", "timed_out"}:
            time.sleep(0.5)
    assert body["status"] == "succeeded", body
    assert lines == ["[stdout] a"] * 300000  # the pages carry every line, in order


def test_a_synchronous_timeout_beyond_the_gateways_wait_is_a_400_pointing_at_async(
    stack: Stack,
) -> None:
    key = stack.key("slow")
    status, answer, _ = execute(stack, key, {"code": "1", "timeoutMs": 60000})
    assert status == 400, answer
    assert '"async": true' in answer["message"] and "14000 ms" in answer["message"]
    status, answer, _ = execute(stack, key, {"code": "1", "timeoutMs": 60000, "async": True})
    assert status == 202, answer
    status, answer, _ = execute(stack, key, {"code": "return 3", "timeoutMs": 14000})
    assert status == 200, answer


def test_without_timeout_ms_a_synchronous_run_is_stopped_before_the_gateway_gives_up(
    stack: Stack,
) -> None:
    """Its limit is lowered from the service's 300 s to what the gateway's 29 s leave."""
    status, answer, _ = execute(stack, stack.key("loop"), {"code": "while (true) {}"})
    assert status == 200, answer
    assert answer["result"]["error"]["name"] == "TimeoutError", answer["result"]["error"]
    assert 14000 <= answer["result"]["executionTime"] < 15000
