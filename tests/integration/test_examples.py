"""Every example in examples/ runs: the seed's programs (TypeScript and Python) through the
API, the client scripts as a user runs them (IRIS_URL and IRIS_API_KEY in the environment),
and the MCP client config started as a desktop client starts it, over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from tests.support.api import execute, result_value
from tests.support.server import ROOT, LocalServer
from tests.support.typescript import build_client, tsc

EXAMPLES = ROOT / "examples"
CODE = sorted(p for p in (EXAMPLES / "code").iterdir() if p.suffix in (".ts", ".py"))


def check_pattern_discovery(result: dict[str, Any], project: str) -> None:
    assert result["logs"] == [
        f"[stdout] Analyzing patterns for project: {project}",
        "[stdout] Found 0 patterns",
    ]


def check_multi_agent_workflow(result: dict[str, Any], project: str) -> None:
    assert result["output"] == "=== Output ===\nWorkflow completed!"


def check_prompt_evolution(result: dict[str, Any], project: str) -> None:
    assert result["output"] == "(no output)"


def check_batch_operations(result: dict[str, Any], project: str) -> None:
    value = result_value(result)
    assert (value["patterns"], value["prompt"]) == ([], None)
    assert value["evaluation"]["verdict"] == "correct"


#: What each program of examples/code shows when it has run (TypeScript and Python alike).
CHECKS = {
    "pattern_discovery": check_pattern_discovery,
    "multi_agent_workflow": check_multi_agent_workflow,
    "prompt_evolution": check_prompt_evolution,
    "batch_operations": check_batch_operations,
}


@pytest.mark.parametrize("path", CODE, ids=[p.name for p in CODE])
def test_each_seed_example_runs_through_the_api(server: LocalServer, path: Path) -> None:
    name = path.stem.replace("-", "_")
    assert name in CHECKS, f"examples/code/{path.name} is new: say in CHECKS what it shows"
    project = f"example-{path.stem}-{path.suffix[1:]}"
    key = server.create_key(project)
    fields: dict[str, Any] = {"sessionId": "workflow-42"}
    if path.suffix == ".py":
        fields["language"] = "python"
    answer = execute(server, key, path.read_text(), **fields)
    assert answer["result"]["success"], answer
    CHECKS[name](answer["result"], project)


def client_env(server: LocalServer, key: str) -> dict[str, str]:
    return {**os.environ, "IRIS_URL": server.url, "IRIS_API_KEY": key}


def check_client_script_output(stdout: str) -> None:
    assert "Found 0 patterns" in stdout
    ticks = re.findall(r"^\[stdout\] tick (\d)$", stdout, re.MULTILINE)
    assert ticks == ["1", "2", "3"], stdout
    assert "status: succeeded" in stdout
    assert "=== Output ===\nhello from Python" in stdout
    assert re.search(r"^sandbox active: (True|true)$", stdout, re.MULTILINE), stdout
    assert re.search(r"^Sandbox sb_\w+ closed$", stdout, re.MULTILINE), stdout


def test_the_python_client_script_runs(server: LocalServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "client.py")],
        env=client_env(server, server.create_key("example-client-py")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_client_script_output(done.stdout)


def test_the_typescript_client_script_runs(server: LocalServer, tmp_path: Path) -> None:
    build_client()  # what `@iris-exec/client` resolves to
    # As its header says: npm links the client (offline: it is a local path), tsc builds.
    npm = subprocess.run(
        ["npm", "ci", "--offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert npm.returncode == 0, npm.stdout + npm.stderr
    tsc(EXAMPLES / "tsconfig.json")
    done = subprocess.run(
        ["node", str(EXAMPLES / "dist" / "client.js")],
        env=client_env(server, server.create_key("example-client-ts")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_client_script_output(done.stdout)


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def test_the_mcp_client_config_starts_a_working_server(server: LocalServer, tmp_path: Path) -> None:
    config = json.loads((EXAMPLES / "mcp" / "claude_desktop_config.json").read_text())
    entry = config["mcpServers"]["iris"]
    # The placeholders a user replaces: the checkout's path, the URL and the key.
    assert entry["command"].startswith("/path/to/iris-exec/")
    assert entry["env"] == {"IRIS_URL": "http://127.0.0.1:8000", "IRIS_API_KEY": "sk_live_..."}
    command = entry["command"].replace("/path/to/iris-exec", str(ROOT))
    env = {"IRIS_URL": server.url, "IRIS_API_KEY": server.create_key("example-mcp")}
    params = StdioServerParameters(command=command, args=entry["args"], env=env, cwd=tmp_path)
    code = (EXAMPLES / "code" / "pattern-discovery.ts").read_text()

    async def run() -> tuple[str, set[str], CallToolResult]:
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            hello = await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            answer = await session.call_tool("executeCode", {"code": code})
            return hello.server_info.name, names, answer

    name, names, answer = asyncio.run(run())
    assert name == "iris-code"  # code mode, as "--tools code" asks
    assert names == {"executeCode", "getSandbox", "closeSandbox", "getExecution"}
    assert not answer.is_error, text_of(answer)
    assert isinstance(answer.structured_content, dict)
    assert answer.structured_content["success"] is True
    assert "Found 0 patterns" in answer.structured_content["output"]
