"""The Python client library (clients/python) against the real local server: typed
answers, typed errors, sandboxes, asynchronous executions whose log lines stream as they are
printed (Server-Sent Events, or polling where the events route is missing), and retries
that never run the code twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iris_exec_client import (
    AsyncIrisClient,
    AuthenticationError,
    BadRequestError,
    GoneError,
    IrisClient,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
)
from tests.support.flaky_proxy import Cut, FlakyProxy, http_response
from tests.support.server import LocalServer

#: Prints a line a second for five seconds.
FIVE_SECONDS = """\
for (let i = 1; i <= 5; i++) {
  console.log(`tick ${i}`);
  await new Promise((r) => setTimeout(r, 1000));
}
return 5;
"""
TICKS = [f"[stdout] tick {i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def project_key(server: LocalServer) -> str:
    return server.create_key("py-client")


def timed_lines(lines: Iterator[str]) -> tuple[list[str], list[float], float]:
    """The lines, when each arrived, and when the stream ended (monotonic seconds)."""
    got: list[str] = []
    at: list[float] = []
    for line in lines:
        got.append(line)
        at.append(time.monotonic())
    return got, at, time.monotonic()


def test_execute_answers_typed_models(server: LocalServer, project_key: str) -> None:
    with IrisClient(project_key, base_url=server.url) as iris:
        answer = iris.execute(
            "import { projectId, context } from './iris-prime';\n"
            "console.log('hello', context.who); console.error('careful');\n"
            "return { projectId };",
            session_id="s-1",
            context={"who": "world"},
        )
        failed = iris.execute("null.x", sandbox_id=answer.sandbox_id)
        python = iris.execute("print(6 * 7)", language="python", sandbox_id=answer.sandbox_id)
    assert answer.success and answer.result.success
    assert answer.result.logs == ["[stdout] hello world", "[stderr] careful"]
    assert answer.result.output.startswith('=== Results ===\n{\n  "projectId": "py-client"\n}')
    assert answer.sandbox_id is not None and answer.sandbox_id.startswith("sb_")
    assert answer.result.metadata.sandbox_id == answer.sandbox_id
    assert answer.result.metadata.session_id == "s-1"
    assert answer.result.error is None
    # The code's own failure is data, not an exception.
    assert failed.result.success is False
    assert failed.result.error is not None and failed.result.error.name == "TypeError"
    assert python.result.output == "=== Output ===\n42"


def test_keep_state_carries_names_to_the_next_execution(server: LocalServer) -> None:
    key = server.create_key("py-client-kept")
    with IrisClient(key, base_url=server.url) as iris:
        first = iris.execute("const seen: number = 41;", keep_state=True)
        again = iris.execute("return seen + 1", keep_state=True, sandbox_id=first.sandbox_id)
        iris.execute("process.exit(1)", keep_state=True, sandbox_id=first.sandbox_id)
        reset = iris.execute("return typeof seen", keep_state=True, sandbox_id=first.sandbox_id)
        fresh = iris.execute("return typeof seen", sandbox_id=first.sandbox_id)
    assert again.result.output == "=== Results ===\n42"
    assert again.result.metadata.state_reset is False
    assert reset.result.metadata.state_reset is True
    assert reset.result.metadata.state_reset_reason == "exit"
    assert reset.result.output == '=== Results ===\n"undefined"'
    assert fresh.result.metadata.state_reset is None  # not asked to keep state


def test_sandboxes_are_read_reused_and_closed(server: LocalServer) -> None:
    key = server.create_key("py-client-sandboxes")
    with IrisClient(key, base_url=server.url) as iris:
        first = iris.execute("require('fs').writeFileSync('note.txt', 'kept'); return 1")
        assert first.sandbox_id is not None
        again = iris.execute(
            "return require('fs').readFileSync('note.txt', 'utf8')", sandbox_id=first.sandbox_id
        )
        assert again.result.output == '=== Results ===\n"kept"'
        alive = iris.get_sandbox(first.sandbox_id)
        assert (alive.active, alive.status, alive.total_active) == (True, "running", 1)
        closed = iris.close_sandbox(first.sandbox_id)
        assert closed.message == f"Sandbox {first.sandbox_id} closed"
        assert iris.get_sandbox(first.sandbox_id).status == "closed"
        with pytest.raises(GoneError) as gone:
            iris.execute("return 1", sandbox_id=first.sandbox_id)
        assert gone.value.reason == "closed" and gone.value.gone_at
        iris.execute("return 1")
        iris.execute("return 2")
        listed = iris.list_sandboxes()
        assert [s.status for s in listed.sandboxes] == ["running", "running", "closed"]
        assert listed.sandboxes[-1].sandbox_id == first.sandbox_id  # newest first
        page = iris.list_sandboxes(limit=2)
        assert len(page.sandboxes) == 2 and page.next_cursor is not None
        rest = iris.list_sandboxes(limit=2, cursor=page.next_cursor)
        assert [s.sandbox_id for s in rest.sandboxes] == [first.sandbox_id]
        history = iris.list_executions(sandbox_id=first.sandbox_id)
        assert [e.status for e in history.executions] == ["succeeded", "succeeded"]
        assert iris.close_all_sandboxes().closed == 2


def test_errors_are_typed_with_status_message_and_request_id(
    server: LocalServer, project_key: str
) -> None:
    with (
        IrisClient("sk_live_" + "x" * 43, base_url=server.url) as stranger,
        pytest.raises(AuthenticationError) as unauthorized,
    ):
        stranger.execute("return 1")
    error = unauthorized.value
    assert (error.status, error.message) == (401, "Invalid or inactive API key")
    assert error.request_id and error.request_id.startswith("req_")
    assert error.hint
    with IrisClient(project_key, base_url=server.url) as iris:
        with pytest.raises(NotFoundError) as missing:
            iris.get_sandbox("sb_" + "z" * 20)
        with pytest.raises(PermissionDeniedError):
            iris.execute("return 1", project_id="someone-else")
        with pytest.raises(BadRequestError) as bad:
            iris.execute("")
        with pytest.raises(PayloadTooLargeError):
            iris.execute("x" * (100 * 1024 + 1))
        with pytest.raises(NotFoundError):
            list(iris.stream_logs("ex_" + "0" * 20))
    assert missing.value.status == 404 and missing.value.request_id
    assert "code" in bad.value.message


def test_a_rate_limited_call_says_when_to_retry(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data", rate_limit_per_minute=2) as limited:
        key = limited.create_key("py-client-limited")
        with IrisClient(key, base_url=limited.url, max_retries=0) as iris:
            iris.execute("return 1")
            iris.execute("return 2")
            with pytest.raises(RateLimitError) as limited_error:
                iris.execute("return 3")
    assert limited_error.value.status == 429
    assert limited_error.value.retry_after is not None and limited_error.value.retry_after > 0


def test_a_retry_after_a_lost_answer_does_not_run_the_code_twice(server: LocalServer) -> None:
    key = server.create_key("py-client-retry")
    with IrisClient(key, base_url=server.url) as direct:
        sandbox = direct.execute("return 0").sandbox_id
        assert sandbox is not None
    count = "const fs = require('fs'); fs.appendFileSync('runs', 'x'); return fs.readFileSync('runs', 'utf8').length"
    # The first connection's answer is lost after the server ran the code.
    with (
        FlakyProxy(server.port, cuts={0: lambda _: True}) as proxy,
        IrisClient(key, base_url=proxy.url) as iris,
    ):
        answer = iris.execute(count, sandbox_id=sandbox)
    assert proxy.cut_connections == [0]
    posts = [r for r in proxy.requests if r.startswith(b"POST ")]
    assert len(posts) == 2
    keys = {
        line
        for r in posts
        for line in r.split(b"\r\n")
        if line.lower().startswith(b"idempotency-key:")
    }
    assert len(keys) == 1  # the retry sent the first attempt's key
    assert answer.result.output == "=== Results ===\n1"  # the first run's answer, replayed
    with IrisClient(key, base_url=server.url) as direct:
        # Ran once: the next run is the second.
        assert direct.execute(count, sandbox_id=sandbox).result.output == "=== Results ===\n2"


def test_a_503_with_retry_after_is_waited_for_and_retried_with_the_same_key(
    server: LocalServer, project_key: str
) -> None:
    """As the service answers when its sandbox provider is unavailable (a stand-in answer from
    the proxy, once; then the real server)."""
    unavailable = http_response(
        503,
        "Service Unavailable",
        json.dumps({"error": "Service Unavailable", "message": "retry shortly"}).encode(),
        "application/json",
    ).replace(b"Connection: close", b"Retry-After: 1\r\nConnection: close")
    answered: list[bytes] = []

    def first_post_unavailable(request: bytes) -> bytes | None:
        if request.startswith(b"POST ") and not answered:
            answered.append(request)
            return unavailable
        return None

    with (
        FlakyProxy(server.port, intercept=first_post_unavailable) as proxy,
        IrisClient(project_key, base_url=proxy.url) as iris,
    ):
        started = time.monotonic()
        answer = iris.execute("return 'second time lucky'")
        waited = time.monotonic() - started
    assert answer.result.output == '=== Results ===\n"second time lucky"'
    keys = [
        line
        for request in proxy.requests
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"idempotency-key:")
    ]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert waited >= 1.0  # Retry-After was honoured


def test_log_lines_stream_as_they_are_printed(server: LocalServer, project_key: str) -> None:
    with IrisClient(project_key, base_url=server.url) as iris:
        submitted = iris.submit(FIVE_SECONDS)
        assert submitted.status in ("queued", "running")
        lines, arrived, ended = timed_lines(iris.stream_logs(submitted.execution_id))
        final = iris.get_execution(submitted.execution_id)
    assert lines == TICKS
    assert ended - arrived[0] >= 2.0, (arrived, ended)  # the first line long before the end
    assert final.done and final.status == "succeeded" and final.success
    assert final.result is not None and final.result.output.startswith("=== Results ===\n5\n")
    assert final.result.metadata.execution_id == submitted.execution_id


def test_polling_reads_the_same_lines_live(server: LocalServer, project_key: str) -> None:
    with IrisClient(project_key, base_url=server.url, log_stream="poll") as iris:
        submitted = iris.submit(FIVE_SECONDS)
        lines, arrived, ended = timed_lines(iris.stream_logs(submitted.execution_id))
    assert lines == TICKS
    assert ended - arrived[0] >= 2.0, (arrived, ended)


def test_where_the_events_route_is_missing_the_stream_polls(
    server: LocalServer, project_key: str
) -> None:
    """As on AWS: API Gateway answers a path it has no route for with a 403 of its own."""
    gateway_403 = http_response(
        403,
        "Forbidden",
        json.dumps({"error": "Bad Request", "message": "Missing Authentication Token"}).encode(),
        "application/json",
    )

    def no_events_route(request: bytes) -> bytes | None:
        return gateway_403 if b"/events " in request.split(b"\r\n", 1)[0] else None

    with IrisClient(project_key, base_url=server.url) as direct:
        submitted = direct.submit(
            "console.log('a'); await new Promise(r => setTimeout(r, 500)); console.log('b')"
        )
    with (
        FlakyProxy(server.port, intercept=no_events_route) as proxy,
        IrisClient(project_key, base_url=proxy.url, poll_interval_s=0.2) as iris,
    ):
        lines = list(iris.stream_logs(submitted.execution_id))
    assert lines == ["[stdout] a", "[stdout] b"]
    first_lines = [r.split(b"\r\n", 1)[0] for r in proxy.requests]
    assert b"/events " in first_lines[0]
    assert any(b"?after=" in line for line in first_lines[1:])


def test_a_cut_stream_resumes_after_the_last_line(server: LocalServer, project_key: str) -> None:
    code = "for (let i = 1; i <= 6; i++) { console.log(`line ${i}`); await new Promise(r => setTimeout(r, 300)); }"
    with IrisClient(project_key, base_url=server.url) as direct:
        submitted = direct.submit(code)
    with (
        FlakyProxy(server.port, cuts={0: lambda seen: seen.count(b"event: log") >= 2}) as proxy,
        IrisClient(project_key, base_url=proxy.url) as iris,
    ):
        lines = list(iris.stream_logs(submitted.execution_id))
    assert lines == [f"[stdout] line {i}" for i in range(1, 7)]  # none lost, none twice
    assert proxy.cut_connections == [0]
    resumed = [
        line for line in proxy.requests[1].lower().split(b"\r\n") if b"last-event-id" in line
    ]
    assert len(resumed) == 1 and int(resumed[0].split(b":")[1]) >= 2, resumed


def test_the_async_client_does_the_same(server: LocalServer, project_key: str) -> None:
    async def run() -> tuple[list[str], list[float], float, str, int | None]:
        async with AsyncIrisClient(project_key, base_url=server.url) as iris:
            quick = await iris.execute("return 7")
            submitted = await iris.submit(FIVE_SECONDS)
            lines: list[str] = []
            arrived: list[float] = []
            async for line in iris.stream_logs(submitted.execution_id):
                lines.append(line)
                arrived.append(time.monotonic())
            ended = time.monotonic()
            final = await iris.get_execution(submitted.execution_id, after=4)
            assert quick.sandbox_id is not None
            sandbox = await iris.get_sandbox(quick.sandbox_id)
            closed = await iris.close_sandbox(quick.sandbox_id)
            assert sandbox.active and closed.message.endswith("closed")
            with pytest.raises(NotFoundError):
                await iris.get_execution("ex_" + "0" * 20)
            return lines, arrived, ended, quick.result.output, final.cursor

    lines, arrived, ended, output, cursor = asyncio.run(run())
    assert output == "=== Results ===\n7"
    assert lines == TICKS
    assert ended - arrived[0] >= 2.0, (arrived, ended)
    assert cursor == 5


def test_the_async_client_retries_and_resumes_the_same_way(
    server: LocalServer, project_key: str
) -> None:
    """The lost answer and the cut stream again, through AsyncIrisClient's own I/O."""
    with IrisClient(project_key, base_url=server.url) as direct:
        sandbox = direct.execute("return 0").sandbox_id
        assert sandbox is not None
        submitted = direct.submit(
            "for (let i = 1; i <= 4; i++) { console.log(`n ${i}`); await new Promise(r => setTimeout(r, 300)); }"
        )
    count = "const fs = require('fs'); fs.appendFileSync('runs', 'x'); return fs.readFileSync('runs', 'utf8').length"

    async def run() -> tuple[str, list[str]]:
        async with AsyncIrisClient(project_key, base_url=proxy.url) as iris:
            answer = await iris.execute(count, sandbox_id=sandbox)
            lines = [line async for line in iris.stream_logs(submitted.execution_id)]
        return answer.result.output, lines

    cut_streams: list[bool] = []

    def first_stream(seen: bytes) -> bool:
        """Cuts the first event stream once it has passed two lines, whichever connection."""
        if cut_streams or b"text/event-stream" not in seen or seen.count(b"event: log") < 2:
            return False
        cut_streams.append(True)
        return True

    # Connection 0 carries the execute (its answer is lost); a later one the stream.
    cuts: dict[int, Cut] = {0: lambda _: True, **{i: first_stream for i in range(1, 5)}}
    with FlakyProxy(server.port, cuts=cuts) as proxy:
        output, lines = asyncio.run(run())
    assert output == "=== Results ===\n1"
    assert lines == [f"[stdout] n {i}" for i in range(1, 5)]
    assert proxy.cut_connections[0] == 0 and len(proxy.cut_connections) == 2
    with IrisClient(project_key, base_url=server.url) as direct:
        assert direct.execute(count, sandbox_id=sandbox).result.output == "=== Results ===\n2"
