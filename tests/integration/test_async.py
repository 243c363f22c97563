"""Asynchronous executions on the local server: 202 at once, status and logs by polling with
a cursor, live lines over Server-Sent Events, and no execution left `running` when its
worker dies."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import result_value
from tests.support.server import LocalServer

FINAL = {"succeeded", "failed", "timed_out"}


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server whose workers beat every second and whose streams beat twice a second."""
    data = tmp_path_factory.mktemp("async") / "data"
    with LocalServer(data, execution_heartbeat_s=1, sse_heartbeat_s=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def fast_key(fast: LocalServer) -> str:
    return fast.create_key("async")


def submit(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, "async": True, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"executions/{body['executionId']}"
    return body


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def poll(
    server: LocalServer, key: str, execution_id: str, timeout_s: float = 30, every_s: float = 0.5
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll with the cursor until the execution ends: the last answer and every answer."""
    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + timeout_s
    with server.client(key) as client:
        while time.monotonic() < deadline:
            response = client.get(f"/api/iris/executions/{execution_id}", params={"after": cursor})
            assert response.status_code == 200, response.text
            body = response.json()
            seen.append(body)
            cursor = body["cursor"]
            if body["status"] in FINAL:
                return body, seen
            time.sleep(every_s)
    raise AssertionError(f"{execution_id} did not finish in {timeout_s} s: {seen[-1:]}")


@pytest.mark.slow
def test_a_sixty_second_execution_completes_through_the_async_api(fast: LocalServer) -> None:
    key = fast.create_key("async-long")  # its own key: a minute of polls is its own budget
    code = """
for (let i = 1; i <= 60; i++) {
  console.log(`tick ${i}`);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
return { ticks: 60 };
"""
    started = time.monotonic()
    queued = submit(fast, key, code, timeoutMs=120_000)
    assert time.monotonic() - started < 5  # answered at once, not after a minute
    assert queued["status"] == "queued" and queued["sandboxId"].startswith("sb_")
    final, seen = poll(fast, key, queued["executionId"], timeout_s=150, every_s=1.0)
    assert final["status"] == "succeeded", final
    assert final["success"] is True
    # While it ran, polls saw it running with part of its lines.
    running = [b for b in seen if b["status"] == "running"]
    assert len(running) > 10
    assert any(0 < b["cursor"] < 60 for b in running)
    # The lines read page by page with the cursor are all the lines, once, in order.
    polled = [line for body in seen for line in body["logs"]]
    assert polled == [f"[stdout] tick {i}" for i in range(1, 61)]
    # The answer is the synchronous call's answer.
    result = final["result"]
    assert result_value(result) == {"ticks": 60}
    assert result["logs"] == polled
    assert result["metadata"]["executionId"] == queued["executionId"]
    assert result["metadata"]["sandboxId"] == queued["sandboxId"]
    assert result["executionTime"] >= 60_000


def sse_events(response: httpx.Response) -> Iterator[tuple[float, str, dict[str, Any] | None]]:
    """(arrival time, event name or ':' for a comment, data) as they arrive."""
    name, data = "", None
    for line in response.iter_lines():
        now = time.monotonic()
        if line.startswith(":"):
            yield now, ":", None
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and name:
            yield now, name, data
            name, data = "", None


def test_server_sent_events_deliver_lines_as_they_are_printed(
    fast: LocalServer, fast_key: str
) -> None:
    code = """
console.log('first');
await new Promise((resolve) => setTimeout(resolve, 3000));
console.log('second');
return 'done';
"""
    queued = submit(fast, fast_key, code)
    arrivals: dict[str, float] = {}
    heartbeats = 0
    done: dict[str, Any] | None = None
    with (
        fast.client(fast_key) as client,
        client.stream("GET", f"/api/iris/executions/{queued['executionId']}/events") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for at, name, data in sse_events(stream):
            if name == "log" and data is not None:
                arrivals[data["line"]] = at
            elif name == ":":
                heartbeats += 1
            elif name == "done":
                done = data
                break
    assert done is not None and done["status"] == "succeeded"
    # 'first' arrived while the program was still sleeping, seconds before 'second'.
    assert arrivals["[stdout] second"] - arrivals["[stdout] first"] > 2.0
    assert heartbeats >= 2  # the quiet three seconds kept the connection alive
    assert result_value(done["result"]) == "done"


def test_a_stream_resumes_after_the_last_event_id(fast: LocalServer, fast_key: str) -> None:
    queued = submit(fast, fast_key, "for (const c of 'abcde') console.log(c);")
    poll(fast, fast_key, queued["executionId"])
    headers = {"Last-Event-ID": "3"}
    with (
        fast.client(fast_key) as client,
        client.stream(
            "GET", f"/api/iris/executions/{queued['executionId']}/events", headers=headers
        ) as stream,
    ):
        lines = [data["line"] for _, name, data in sse_events(stream) if name == "log" and data]
    assert lines == ["[stdout] d", "[stdout] e"]


def test_timeouts_and_errors_end_with_their_status(fast: LocalServer, fast_key: str) -> None:
    spinning = submit(fast, fast_key, "while (true) {}", timeoutMs=1000)
    thrown = submit(fast, fast_key, "console.log('before'); throw new RangeError('nope');")
    final, _ = poll(fast, fast_key, spinning["executionId"])
    assert final["status"] == "timed_out" and final["success"] is False
    assert final["result"]["error"]["name"] == "TimeoutError"
    final, _ = poll(fast, fast_key, thrown["executionId"])
    assert final["status"] == "failed"
    assert final["result"]["error"] == {
        "name": "RangeError",
        "message": "nope",
        "stack": final["result"]["error"]["stack"],
    }
    assert final["result"]["logs"] == ["[stdout] before"]
    assert "reason" not in final  # the code failed, not the service


def test_executions_queue_behind_a_busy_sandbox(fast: LocalServer, fast_key: str) -> None:
    first = submit(fast, fast_key, "await new Promise(r => setTimeout(r, 1500)); return 1;")
    sandbox = first["sandboxId"]
    second = submit(fast, fast_key, "return 2;", sandboxId=sandbox)
    assert second["sandboxId"] == sandbox and second["status"] == "queued"
    # With 'X-Iris-Busy: reject' a busy sandbox is refused instead of waited for.
    with fast.client(fast_key) as client:
        refused = client.post(
            "/api/iris/execute",
            json={"code": "return 3;", "async": True, "sandboxId": sandbox},
            headers={"X-Iris-Busy": "reject"},
        )
    assert refused.status_code == 409, refused.text
    one, _ = poll(fast, fast_key, first["executionId"])
    two, _ = poll(fast, fast_key, second["executionId"])
    assert (result_value(one["result"]), result_value(two["result"])) == (1, 2)
    # The second ran after the first had finished with the sandbox.
    one_started = instant(one["result"]["metadata"]["timestamp"])
    two_started = instant(two["result"]["metadata"]["timestamp"])
    assert two_started >= one_started + one["result"]["executionTime"] / 1000


def test_prefer_respond_async_and_idempotent_submits(fast: LocalServer, fast_key: str) -> None:
    headers = {"Prefer": "wait=10, respond-async", "Idempotency-Key": "async-once-1"}
    with fast.client(fast_key) as client:
        first = client.post("/api/iris/execute", json={"code": "return 7;"}, headers=headers)
        again = client.post("/api/iris/execute", json={"code": "return 7;"}, headers=headers)
        other = client.post("/api/iris/execute", json={"code": "return 8;"}, headers=headers)
    assert first.status_code == 202, first.text
    assert first.headers["preference-applied"] == "respond-async"
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["executionId"] == first.json()["executionId"]  # not run twice
    assert other.status_code == 422
    final, _ = poll(fast, fast_key, first.json()["executionId"])
    assert result_value(final["result"]) == 7


def test_executions_are_private_to_their_project(fast: LocalServer, fast_key: str) -> None:
    queued = submit(fast, fast_key, "return 1;")
    stranger = fast.create_key("stranger")
    with fast.client(stranger) as client:
        for path in ("", "/events"):
            response = client.get(f"/api/iris/executions/{queued['executionId']}{path}")
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "Not Found"
    with fast.client(None) as client:
        assert client.get(f"/api/iris/executions/{queued['executionId']}").status_code == 401


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/iris/executions/nope", {}, 400, "executionId must look like"),
        ("/api/iris/executions/ex_0000000000000000", {}, 404, "not found"),
        ("/api/iris/executions/ex_0000000000000000", {"after": "-1"}, 400, "after must be"),
        ("/api/iris/executions/ex_0000000000000000", {"limit": "0"}, 400, "limit must be"),
        ("/api/iris/executions/nope/events", {}, 400, "executionId must look like"),
    ],
)
def test_bad_execution_reads_get_clear_errors(
    fast: LocalServer, fast_key: str, path: str, params: dict[str, str], status: int, message: str
) -> None:
    with fast.client(fast_key) as client:
        response = client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["message"] and body["statusCode"] == status and body["path"] == path


def test_async_must_be_a_boolean(fast: LocalServer, fast_key: str) -> None:
    with fast.client(fast_key) as client:
        response = client.post("/api/iris/execute", json={"code": "1", "async": "yes"})
    assert response.status_code == 400
    assert "'async'" in response.json()["message"]


def test_a_server_killed_mid_run_ends_its_executions_failed_with_a_reason(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = LocalServer(data, execution_heartbeat_s=1).start()
    key = first.create_key("crash")
    queued = submit(first, key, "console.log('up'); while (true) {}", timeoutMs=120_000)
    with first.client(key) as client:
        deadline = time.monotonic() + 20
        while client.get(f"/api/iris/executions/{queued['executionId']}").json()["cursor"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: the worker dies with no chance to record anything
    first.proc.wait()
    first.stop()
    with LocalServer(data, execution_heartbeat_s=1) as second:
        final, _ = poll(second, key, queued["executionId"], timeout_s=10)
    assert final["status"] == "failed" and final["success"] is False
    assert "server stopped before the execution finished" in final["reason"]
    assert final["finishedAt"] is not None
    assert "result" not in final
    # The lines printed before the crash are kept.
    with LocalServer(data) as third, third.client(key) as client:
        kept = client.get(f"/api/iris/executions/{queued['executionId']}").json()
    assert kept["logs"] == ["[stdout] up"]


def test_a_stopping_server_fails_its_running_executions(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "data").start()
    key = server.create_key("stop")
    queued = submit(server, key, "while (true) {}", timeoutMs=120_000)
    time.sleep(1.0)
    server.stop()  # SIGTERM: a graceful stop
    with LocalServer(tmp_path / "data") as again:
        final, _ = poll(again, key, queued["executionId"], timeout_s=10)
    assert final["status"] == "failed"
    assert "server stopped" in final["reason"]


def test_many_async_executions_at_once_all_finish(fast: LocalServer) -> None:
    keys = [fast.create_key("async-many") for _ in range(4)]  # 100 requests/min each

    def one(i: int) -> Any:
        key = keys[i % len(keys)]
        queued = submit(fast, key, f"console.log({i}); return {i} * 2;")
        final, _ = poll(fast, key, queued["executionId"], timeout_s=60, every_s=1.0)
        assert final["status"] == "succeeded", final
        return result_value(final["result"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        values = list(pool.map(one, range(16)))
    assert values == [i * 2 for i in range(16)]
