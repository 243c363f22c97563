"""Asynchronous executions through the Lambda functions: the execute function records the
execution in DynamoDB Local and invokes the worker function through the Lambda Invoke
stand-in (the real botocore client), which runs the real worker handler in a process of its
own against the E2B stand-in; the executions function reads status and logs with a cursor."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import result_value
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.lambda_stack import Stack, lambda_stack
from tests.support.postgres import PostgresServer

FINAL = {"succeeded", "failed", "timed_out"}


@pytest.fixture(scope="module")
def stack(
    dynamodb_local: DynamoDBLocal,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with lambda_stack(
        dynamodb_local,
        postgres,
        tmp_path_factory.mktemp("lambda-async"),
        execution_heartbeat_s="2",
        execution_log_flush_s="0.5",
        execution_dispatch_grace_s="20",
    ) as built:
        yield built


def submit(stack: Stack, key: str, code: str, **fields: Any) -> dict[str, Any]:
    status, body = stack.call(
        "execute",
        "POST",
        "/api/iris/execute",
        key=key,
        body={"code": code, "async": True, **fields},
    )
    assert status == 202, body
    return dict(body)


def read(stack: Stack, key: str, execution_id: str, after: int = 0) -> dict[str, Any]:
    path = f"/api/iris/executions/{execution_id}"
    status, body = stack.call(
        "executions",
        "GET",
        path,
        key=key,
        query={"after": str(after)},
        resource="/api/iris/executions/{executionId}",
    )
    assert status == 200, body
    return dict(body)


def poll(
    stack: Stack, key: str, execution_id: str, timeout_s: float = 60
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = read(stack, key, execution_id, cursor)
        seen.append(body)
        cursor = body["cursor"]
        if body["status"] in FINAL:
            return body, seen
        time.sleep(1.0)
    raise AssertionError(f"{execution_id} did not finish in {timeout_s} s: {seen[-1:]}")


def worker_of(stack: Stack, execution_id: str) -> Any:
    found = [i for i in stack.lambdas.invocations if i.payload["executionId"] == execution_id]
    assert len(found) == 1, stack.lambdas.invocations
    return found[0]


@pytest.mark.slow
def test_a_sixty_second_execution_completes_through_the_functions(stack: Stack) -> None:
    key = stack.key("long-runner")
    code = """
for (let i = 1; i <= 60; i++) {
  console.log(`tick ${i}`);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
return { ticks: 60 };
"""
    started = time.monotonic()
    queued = submit(stack, key, code, timeoutMs=120_000)
    assert time.monotonic() - started < 10  # far inside API Gateway's 29 s
    assert queued["status"] == "queued"
    final, seen = poll(stack, key, queued["executionId"], timeout_s=150)
    assert final["status"] == "succeeded", (final, worker_of(stack, queued["executionId"]).log)
    # Lines were readable while it ran (the worker streams them from the sandbox).
    assert any(b["status"] == "running" and 0 < b["cursor"] < 60 for b in seen)
    polled = [line for body in seen for line in body["logs"]]
    assert polled == [f"[stdout] tick {i}" for i in range(1, 61)]
    assert final["result"]["logs"] == polled
    assert result_value(final["result"]) == {"ticks": 60}
    assert final["result"]["metadata"]["executionId"] == queued["executionId"]
    worker = worker_of(stack, queued["executionId"])
    assert worker.wait(30) == 0
    assert worker.payload["projectId"] == "long-runner"


def test_a_killed_worker_ends_the_execution_failed_with_the_reason(stack: Stack) -> None:
    key = stack.key("crashing")
    queued = submit(stack, key, "console.log('up'); while (true) {}", timeoutMs=120_000)
    deadline = time.monotonic() + 30
    while read(stack, key, queued["executionId"])["cursor"] < 1:
        assert time.monotonic() < deadline, worker_of(stack, queued["executionId"]).log.read_text()
        time.sleep(0.5)
    worker = worker_of(stack, queued["executionId"])
    worker.process.send_signal(signal.SIGKILL)  # as Lambda ends a crashed or timed-out worker
    worker.wait(10)
    # Three missed heartbeats (of 2 s here) later, the next reader finds it out.
    final, _ = poll(stack, key, queued["executionId"], timeout_s=15)
    assert final["status"] == "failed" and final["success"] is False
    assert "worker stopped" in final["reason"]
    assert read(stack, key, queued["executionId"])["logs"] == ["[stdout] up"]  # kept
    assert "result" not in final


@pytest.mark.slow
def test_the_reaper_ends_executions_whose_worker_died(stack: Stack) -> None:
    key = stack.key("reaped")
    queued = submit(stack, key, "while (true) {}", timeoutMs=120_000)
    deadline = time.monotonic() + 30
    while read(stack, key, queued["executionId"])["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    worker_of(stack, queued["executionId"]).process.kill()
    time.sleep(7)  # three missed heartbeats of 2 s, and a second
    swept = stack.invoke("reaper", {})
    assert swept["deadExecutions"] >= 1
    final = read(stack, key, queued["executionId"])
    assert final["status"] == "failed" and "worker stopped" in final["reason"]


def test_a_lost_invocation_ends_failed_instead_of_queued_forever(stack: Stack) -> None:
    key = stack.key("lost")
    stack.lambdas.run_workers = False  # Lambda accepted the event; no worker ever ran
    try:
        queued = submit(stack, key, "return 1;")
    finally:
        stack.lambdas.run_workers = True
    assert read(stack, key, queued["executionId"])["status"] == "queued"
    from iris_exec.aws import runtime

    background = runtime.container().background
    record = background.store.get("lost", queued["executionId"])
    assert record is not None
    # Move the record's deadline into the past rather than wait the 20 s of grace.
    background.store.beat("lost", queued["executionId"], alive_until=time.time() - 1)
    final = read(stack, key, queued["executionId"])
    assert final["status"] == "failed"
    assert "never started" in final["reason"]


def test_large_output_comes_back_whole(stack: Stack) -> None:
    key = stack.key("large")
    code = """
console.log('x'.repeat(700000));
for (let i = 0; i < 2000; i++) console.log(`line ${i}`);
return 'ok';
"""
    queued = submit(stack, key, code)
    final, seen = poll(stack, key, queued["executionId"])
    assert final["status"] == "succeeded", final
    logs = final["result"]["logs"]
    assert logs[0] == "[stdout] " + "x" * 700_000
    assert logs[1:] == [f"[stdout] line {i}" for i in range(2000)]
    assert [line for body in seen for line in body["logs"]] == logs


def test_another_project_cannot_read_an_execution(stack: Stack) -> None:
    owner, stranger = stack.key("owner"), stack.key("stranger")
    queued = submit(stack, owner, "return 1;")
    status, body = stack.call(
        "executions",
        "GET",
        f"/api/iris/executions/{queued['executionId']}",
        key=stranger,
        resource="/api/iris/executions/{executionId}",
    )
    assert status == 404 and body["error"] == "Not Found", body
    poll(stack, owner, queued["executionId"])
