"""Agents run code through MCP: executeCode, getSandbox, closeSandbox and getExecution on
/mcp (the real Python MCP client over Streamable HTTP, and over stdio through
`iris-exec mcp`), against a real local server with real jails."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.integration.test_tools import SEED_EXAMPLE_1, SEED_EXAMPLE_2, SEED_EXAMPLE_3
from tests.support.server import IRIS_EXEC, LocalServer

IRIS_TOOLS = {
    "discoverPatterns", "evaluateOutput", "submitVote", "getConsensus", "logEvent",
    "savePrompt", "getPrompt", "listPrompts", "trackLineage", "getLineage", "recordMetric",
    "getMetrics",
}  # fmt: skip
EXECUTION_TOOLS = {"executeCode", "getSandbox", "closeSandbox", "getExecution"}


@pytest.fixture
def key(server: LocalServer) -> str:
    """A project of its own per test: the session's shared key would meet its rate limit
    (100 in any minute, a sliding window) as this module runs."""
    return server.create_key(f"mcp-{uuid.uuid4().hex[:10]}")


RPC_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


@asynccontextmanager
async def mcp_session(url: str, key: str, tools: str = "") -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"}
    query = f"?tools={tools}" if tools else ""
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        streamable_http_client(f"{url}/mcp{query}", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def returned(result: CallToolResult) -> Any:
    """The program's return value, from the `=== Results ===` section of the output."""
    answer = structured(result)
    assert answer["success"], answer
    output: str = answer["output"]
    return json.loads(output.removeprefix("=== Results ===\n").split("\n\n=== ")[0])


def tools_list_bytes(url: str, key: str, query: str = "") -> tuple[int, set[str]]:
    """The whole tools/list answer as the wire carries it."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {**RPC_HEADERS, "Authorization": f"Bearer {key}"}
    response = httpx.post(f"{url}/mcp{query}", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    data = next(
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ") or line.startswith("{")
    )
    names = {tool["name"] for tool in json.loads(data)["result"]["tools"]}
    return len(response.content), names


# -- the surfaces ------------------------------------------------------------------------------


def test_code_mode_is_four_tools_within_6000_bytes(server: LocalServer, key: str) -> None:
    size, names = tools_list_bytes(server.url, key, "?tools=code")
    assert names == EXECUTION_TOOLS
    assert size <= 6000, size


def test_the_full_surface_is_every_tool_within_16000_bytes(server: LocalServer, key: str) -> None:
    size, names = tools_list_bytes(server.url, key)
    assert names == IRIS_TOOLS | EXECUTION_TOOLS
    assert size <= 16000, size


def test_code_mode_describes_every_iris_tool_in_both_languages(
    server: LocalServer, key: str
) -> None:
    async def describe() -> str:
        async with mcp_session(server.url, key, "code") as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            return tools["executeCode"].description or ""

    description = asyncio.run(describe())
    assert "import { iris" in description and "from iris_prime import iris" in description
    for name in IRIS_TOOLS:
        assert name in description, name


def test_an_unknown_surface_is_a_400_in_the_contract_shape(server: LocalServer, key: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {**RPC_HEADERS, "Authorization": f"Bearer {key}"}
    for query in ("?tools=everything", "?tools=", "?tools", "?tools=code&tools=all"):
        response = httpx.post(f"{server.url}/mcp{query}", json=body, headers=headers)
        assert response.status_code == 400, query
        assert response.json()["message"].startswith("tools must be 'code'")
        assert set(response.json()) >= {"error", "statusCode", "timestamp", "path", "requestId"}


def test_mcp_answers_post_only(server: LocalServer, key: str) -> None:
    headers = {**RPC_HEADERS, "Authorization": f"Bearer {key}"}
    for method in ("GET", "DELETE", "PUT"):
        response = httpx.request(method, f"{server.url}/mcp", headers=headers, timeout=10)
        assert response.status_code == 405, method
        assert response.headers["allow"] == "POST"
        assert response.json()["message"] == f"{method} is not allowed on /mcp; use POST"


# -- running code -------------------------------------------------------------------------------


def test_the_seed_examples_through_execute_code(server: LocalServer) -> None:
    key = server.create_key("mcp-seed")

    async def run() -> list[CallToolResult]:
        async with mcp_session(server.url, key, "code") as session:
            return [
                await session.call_tool("executeCode", {"code": code, "sessionId": "mcp-seed-1"})
                for code in (SEED_EXAMPLE_1, SEED_EXAMPLE_2, SEED_EXAMPLE_3)
            ]

    first, second, third = asyncio.run(run())
    assert structured(first)["logs"] == [
        "[stdout] Analyzing patterns for project: mcp-seed",
        "[stdout] Found 0 patterns",
    ]
    assert structured(second)["output"] == "=== Output ===\nWorkflow completed!"
    assert structured(third)["output"] == "(no output)"
    for answer in (first, second, third):
        body = structured(answer)
        assert body["sandboxId"].startswith("sb_")
        assert body["metadata"]["projectId"] == "mcp-seed"
        assert text_of(answer).startswith("succeeded in ")
    # What the code wrote is the project's, as from the HTTP API.
    check = "import { iris } from './iris-prime';\nreturn (await iris.getConsensus('mcp-seed-1')).tally.approve;"
    with server.client(key) as client:
        answer = client.post("/api/iris/execute", json={"code": check}).json()
    assert answer["result"]["output"] == "=== Results ===\n3"


def test_a_sandbox_is_reused_by_id_then_inspected_and_closed(server: LocalServer, key: str) -> None:
    write = "import fs from 'fs';\nfs.writeFileSync('note.txt', 'kept');\nreturn 1;"
    read = "import fs from 'fs';\nreturn fs.readFileSync('note.txt', 'utf8');"

    async def run() -> dict[str, Any]:
        async with mcp_session(server.url, key) as session:
            first = structured(await session.call_tool("executeCode", {"code": write}))
            sandbox = first["sandboxId"]
            again = await session.call_tool("executeCode", {"code": read, "sandboxId": sandbox})
            described = structured(await session.call_tool("getSandbox", {"sandboxId": sandbox}))
            closed = structured(await session.call_tool("closeSandbox", {"sandboxId": sandbox}))
            after = await session.call_tool("executeCode", {"code": read, "sandboxId": sandbox})
            return {
                "again": returned(again),
                "created": structured(again)["metadata"]["sandboxCreated"],
                "described": described,
                "closed": closed,
                "after": (after.is_error, text_of(after)),
            }

    seen = asyncio.run(run())
    assert seen["again"] == "kept" and seen["created"] is False
    assert seen["described"]["active"] is True and seen["described"]["status"] == "running"
    assert seen["closed"]["closed"] is True
    assert seen["after"][0] is True and "410" in seen["after"][1]


def test_another_projects_sandbox_is_not_found(
    server: LocalServer, key: str, other_key: str
) -> None:
    async def run() -> list[tuple[bool, str]]:
        async with mcp_session(server.url, other_key) as theirs:
            sandbox = structured(await theirs.call_tool("executeCode", {"code": "return 1"}))[
                "sandboxId"
            ]
        async with mcp_session(server.url, key) as mine:
            answers = [
                await mine.call_tool("executeCode", {"code": "return 2", "sandboxId": sandbox}),
                await mine.call_tool("getSandbox", {"sandboxId": sandbox}),
                await mine.call_tool("closeSandbox", {"sandboxId": sandbox}),
            ]
        async with mcp_session(server.url, other_key) as theirs:
            still = structured(await theirs.call_tool("getSandbox", {"sandboxId": sandbox}))
        assert still["active"] is True  # untouched by the other project's attempts
        return [(a.is_error, text_of(a)) for a in answers]

    for is_error, text in asyncio.run(run()):
        assert is_error is True
        assert "not found" in text


def test_bad_input_is_a_tool_error_with_the_contracts_message(
    server: LocalServer, key: str
) -> None:
    async def run() -> list[tuple[bool, str]]:
        async with mcp_session(server.url, key) as session:
            answers = [
                await session.call_tool("executeCode", {"code": "   "}),
                await session.call_tool("executeCode", {"code": "1", "timeoutMs": 0}),
                await session.call_tool("executeCode", {"code": "1", "sessionId": "bad id!"}),
                await session.call_tool("getSandbox", {"sandboxId": "../etc"}),
                await session.call_tool("getExecution", {"executionId": "nope"}),
                await session.call_tool("executeCode", {"code": "1", "timeoutMs": "2000"}),
                await session.call_tool("executeCode", {"code": "1", "timeoutMs": True}),
                await session.call_tool("executeCode", {"code": "1", "retries": 3}),
                await session.call_tool("executeCode", {"code": "1", "projectId": "someone"}),
                await session.call_tool("executeCode", {"code": 1}),
                await session.call_tool(
                    "getExecution", {"executionId": "ex_" + "a" * 16, "after": 2**63}
                ),
            ]
            return [(a.is_error, text_of(a)) for a in answers]

    empty, timeout, session_id, sandbox, execution, *strict = asyncio.run(run())
    assert empty == (True, "400 Bad Request: 'code' must not be empty")
    assert timeout[0] and "'timeoutMs' must be between 1 and" in timeout[1]
    assert session_id[0] and "'sessionId' must be 1-128 characters" in session_id[1]
    assert sandbox[0] and sandbox[1].startswith("400 Bad Request: ")
    assert execution[0] and "executionId must look like" in execution[1]
    # As strict as the HTTP body: no coercion, no unknown fields, no other project.
    as_text, as_bool, unknown, foreign, wrong_type, too_far = strict
    assert as_text[0] and "timeoutMs" in as_text[1] and "400 Bad Request" in as_text[1]
    assert as_bool[0] and "timeoutMs" in as_bool[1]
    assert unknown == (True, "400 Bad Request: unknown field 'retries'")
    assert foreign[0] and foreign[1].startswith("403 Forbidden: projectId does not match")
    assert wrong_type[0] and wrong_type[1].startswith("invalid arguments: code:")
    assert "pydantic" not in wrong_type[1] and "input_value" not in wrong_type[1]
    assert too_far[0] and too_far[1].startswith("invalid arguments: after:")


def test_an_idempotency_key_answers_a_retry_without_running_again(
    server: LocalServer, key: str
) -> None:
    code = "import { iris } from './iris-prime';\nawait iris.logEvent('mcp-once');\nreturn Math.random();"

    async def run() -> list[dict[str, Any]]:
        async with mcp_session(server.url, key) as session:
            args = {"code": code, "idempotencyKey": "mcp-retry-1"}
            first = structured(await session.call_tool("executeCode", args))
            second = structured(await session.call_tool("executeCode", args))
            other = await session.call_tool("executeCode", {**args, "code": "return 0"})
            assert other.is_error and "422" in text_of(other)
            return [first, second]

    first, second = asyncio.run(run())
    assert first["metadata"]["executionId"] == second["metadata"]["executionId"]
    assert first["output"] == second["output"]


def test_log_lines_arrive_as_progress_before_the_answer(server: LocalServer, key: str) -> None:
    code = (
        "console.log('first line');\nawait new Promise((r) => setTimeout(r, 1500));\n"
        "console.log('second line');\nreturn 'done';"
    )

    async def run() -> tuple[list[tuple[float, str]], float, Any]:
        seen: list[tuple[float, str]] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((time.monotonic(), message or ""))

        async with mcp_session(server.url, key) as session:
            answer = await session.call_tool(
                "executeCode", {"code": code}, progress_callback=progress
            )
            return seen, time.monotonic(), returned(answer)

    seen, answered_at, value = asyncio.run(run())
    assert value == "done"
    messages = "\n".join(message for _, message in seen)
    assert "[stdout] first line" in messages and "[stdout] second line" in messages
    first_at = next(at for at, message in seen if "first line" in message)
    assert first_at < answered_at - 1.0  # live, not replayed at the end


def test_a_progress_token_of_zero_gets_progress(server: LocalServer, key: str) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "executeCode",
            "arguments": {"code": "console.log('p0');\nreturn 0"},
            "_meta": {"progressToken": 0},
        },
    }
    headers = {**RPC_HEADERS, "Authorization": f"Bearer {key}"}
    response = httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=60)
    assert response.status_code == 200
    messages = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert progress and progress[0]["params"]["progressToken"] == 0
    assert "[stdout] p0" in progress[0]["params"]["message"]


def test_a_ten_second_program_is_read_to_the_end_with_get_execution(
    server: LocalServer, key: str
) -> None:
    code = (
        "for (let i = 1; i <= 10; i++) { console.log(`tick ${i}`);"
        " await new Promise((r) => setTimeout(r, 1000)); }\nreturn 'finished';"
    )

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with mcp_session(server.url, key, "code") as session:
            started = structured(
                await session.call_tool("executeCode", {"code": code, "async": True})
            )
            polls, cursor = [], 0
            for _ in range(120):
                body = structured(
                    await session.call_tool(
                        "getExecution", {"executionId": started["executionId"], "after": cursor}
                    )
                )
                polls.append(body)
                cursor = body["cursor"]
                if body["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
            return started, polls

    started, polls = asyncio.run(run())
    assert started["executionId"].startswith("ex_") and started["status"] == "queued"
    lines = [line for poll in polls for line in poll["logs"]]
    assert lines == [f"[stdout] tick {i}" for i in range(1, 11)]
    assert any(poll["status"] == "running" and poll["logs"] for poll in polls)  # read live
    final = polls[-1]
    assert final["status"] == "succeeded" and final["success"] is True
    assert final["result"]["output"].startswith('=== Results ===\n"finished"')


# -- no escalation ---------------------------------------------------------------------------------

CAPTURE_TOKEN = """\
import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { iris } from './iris-prime';
let token = null;
const original = http.request;
http.request = function (options, ...rest) {
  const auth = options && options.headers && options.headers.authorization;
  if (auth && !token) token = auth;
  return original.call(this, options, ...rest);
};
syncBuiltinESMExports();  // the tools' client imports node:http as a namespace
await iris.logEvent('capture');
http.request = original;
syncBuiltinESMExports();
const ask = (path, body) => new Promise((resolve) => {
  const req = http.request({ socketPath: '/run/iris/tools.sock', path, method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-06-18', authorization: token } },
    (res) => { let data = ''; res.on('data', (c) => data += c); res.on('end', () => resolve([res.statusCode, data])); });
  req.end(JSON.stringify(body));
});
const list = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };
const call = { jsonrpc: '2.0', id: 2, method: 'tools/call',
  params: { name: 'executeCode', arguments: { code: 'return 1' } } };
return { captured: typeof token === 'string' && token.startsWith('Bearer iet_'),
  list: await ask('/mcp', list), codeList: await ask('/mcp?tools=code', list),
  call: await ask('/mcp?tools=code', call) };
"""


def test_an_execution_token_reaches_the_iris_tools_only(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        answer = client.post("/api/iris/execute", json={"code": CAPTURE_TOKEN}).json()
    assert answer["result"]["success"], answer
    output = answer["result"]["output"]
    value = json.loads(output.removeprefix("=== Results ===\n").split("\n\n=== ")[0])
    assert value["captured"] is True  # the attack did get hold of its own token
    for name in ("list", "codeList"):
        status, body = value[name]
        assert status == 200
        names = {tool["name"] for tool in json.loads(body)["result"]["tools"]}
        assert names == IRIS_TOOLS
    status, body = value["call"]
    reply = json.loads(body)
    refused = reply.get("error") or reply["result"]
    assert "error" in reply or reply["result"]["isError"] is True
    assert "executeCode" in json.dumps(refused)


# -- within a transport's time limit --------------------------------------------------------------


@pytest.fixture(scope="module")
def waiting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """executeCode waits at most 2 s, as on AWS (where API Gateway cuts at 29 s)."""
    with LocalServer(tmp_path_factory.mktemp("mcp-wait") / "data", mcp_wait_s=2) as running:
        yield running


def test_a_run_longer_than_the_wait_answers_with_its_execution_id(
    waiting_server: LocalServer,
) -> None:
    key = waiting_server.create_key("waiting")
    code = (
        "console.log('started');\nawait new Promise((r) => setTimeout(r, 4000));\n"
        "console.log('ended');\nreturn 7;"
    )

    async def run() -> tuple[dict[str, Any], str, dict[str, Any], int]:
        async with mcp_session(waiting_server.url, key) as session:
            quick = returned(
                await session.call_tool("executeCode", {"code": "return 6", "timeoutMs": 1500})
            )
            first = await session.call_tool("executeCode", {"code": code})
            pending = structured(first)
            for _ in range(60):
                body = structured(
                    await session.call_tool(
                        "getExecution",
                        {"executionId": pending["executionId"], "after": pending["cursor"]},
                    )
                )
                if body["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
            return pending, text_of(first), body, quick

    pending, text, final, quick = asyncio.run(run())
    assert quick == 6  # a run within the wait answers as usual
    assert pending["status"] == "running" and pending["executionId"].startswith("ex_")
    assert "call getExecution" in text
    assert final["status"] == "succeeded"
    assert final["result"]["output"].startswith("=== Results ===\n7")


# -- over stdio ------------------------------------------------------------------------------------


def bridge_params(server: LocalServer, key: str, tools: str) -> StdioServerParameters:
    env = {
        "PATH": os.environ["PATH"],
        "IRIS_URL": server.url,
        "IRIS_API_KEY": key,
        "IRIS_MCP_TOOLS": tools,
        "IRIS_DATA_DIR": str(server.data_dir),
    }
    return StdioServerParameters(command=str(IRIS_EXEC), args=["mcp"], env=env)


def test_the_stdio_bridge_runs_code_for_a_desktop_client(server: LocalServer) -> None:
    key = server.create_key("desktop")

    async def run() -> dict[str, Any]:
        seen: list[str] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(message or "")

        async with (
            stdio_client(bridge_params(server, key, "code")) as (read, write),
            ClientSession(read, write) as session,
        ):
            hello = await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            first = await session.call_tool(
                "executeCode",
                {"code": SEED_EXAMPLE_1, "sessionId": "desktop"},
                progress_callback=progress,
            )
            sandbox = structured(first)["sandboxId"]
            again = await session.call_tool(
                "executeCode", {"code": "console.log('again'); return 2", "sandboxId": sandbox}
            )
            missing = await session.call_tool("getSandbox", {"sandboxId": "sb_" + "x" * 20})
            return {
                "server": hello.server_info.name,
                "names": names,
                "first": structured(first),
                "again": returned(again),
                "progress": seen,
                "missing": (missing.is_error, text_of(missing)),
            }

    seen = asyncio.run(run())
    assert seen["server"] == "iris-code"
    assert seen["names"] == EXECUTION_TOOLS
    assert seen["first"]["success"] is True
    assert "Analyzing patterns for project: desktop" in seen["first"]["output"]
    assert seen["again"] == 2
    assert any("Analyzing patterns" in message for message in seen["progress"])
    assert seen["missing"][0] is True and "not found" in seen["missing"][1]


def test_the_stdio_bridge_without_a_key_says_what_to_set(server: LocalServer) -> None:
    import subprocess

    env = {"PATH": os.environ["PATH"], "IRIS_URL": server.url}
    done = subprocess.run(
        [str(IRIS_EXEC), "mcp"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert "set IRIS_API_KEY" in done.stderr
    assert done.stdout == ""


def test_the_stdio_bridge_never_guesses_where_to_send_a_key(tmp_path: Path) -> None:
    import subprocess

    base = {"PATH": os.environ["PATH"], "IRIS_API_KEY": "sk_live_" + "a" * 43}
    nothing_running = {**base, "IRIS_DATA_DIR": str(tmp_path / "empty")}
    cleartext = {**base, "IRIS_URL": "http://iris.example.com"}
    for env, said in (
        (nothing_running, "no local server runs for this data directory"),
        (cleartext, "plain http to another machine; use https"),
    ):
        done = subprocess.run(
            [str(IRIS_EXEC), "mcp"], env=env, capture_output=True, text=True, timeout=30,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert said in done.stderr


def test_the_stdio_bridge_with_a_revoked_key_fails_clearly(server: LocalServer) -> None:
    import subprocess

    env = {
        "PATH": os.environ["PATH"],
        "IRIS_URL": server.url,
        "IRIS_API_KEY": "sk_live_" + "a" * 43,
    }
    done = subprocess.run(
        [str(IRIS_EXEC), "mcp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert f"cannot serve {server.url}" in done.stderr
    assert "answered 401: Invalid or inactive API key" in done.stderr


def test_an_idempotency_key_never_crosses_projects(server: LocalServer) -> None:
    planted = server.create_key("acme:evil")
    victim = server.create_key("acme")
    with server.client(planted) as client:
        first = client.post(
            "/api/iris/execute", json={"code": "return 'planted'"}, headers={"Idempotency-Key": "u"}
        )
    with server.client(victim) as client:
        second = client.post(
            "/api/iris/execute", json={"code": "return 'planted'"},
            headers={"Idempotency-Key": "evil:u"},
        )  # fmt: skip
    assert first.status_code == 200 and second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers  # its own run, not the other's answer
    assert second.json()["result"]["metadata"]["projectId"] == "acme"


def test_a_waited_run_and_an_http_run_do_not_share_an_idempotency_answer(
    waiting_server: LocalServer,
) -> None:
    key = waiting_server.create_key("mixed")
    code = "return 42"
    with waiting_server.client(key) as client:
        http = client.post(
            "/api/iris/execute", json={"code": code, "timeoutMs": 5000},
            headers={"Idempotency-Key": "mixed-1"},
        )  # fmt: skip
    assert http.status_code == 200

    async def run() -> CallToolResult:
        async with mcp_session(waiting_server.url, key) as session:
            return await session.call_tool(
                "executeCode", {"code": code, "timeoutMs": 5000, "idempotencyKey": "mixed-1"}
            )

    answer = asyncio.run(run())
    # Not the HTTP answer in the wrong shape, nor a crash: a different request.
    assert answer.is_error and text_of(answer).startswith("422 Unprocessable")
