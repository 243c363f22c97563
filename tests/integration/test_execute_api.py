"""POST /api/iris/execute against the real local server: real jails, real Node."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import LocalServer


def execute(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_monitoring_example_keeps_stdout_and_stderr_in_order(server: LocalServer, key: str) -> None:
    # The seed's "Monitoring & Debugging" example.
    body = execute(
        server,
        key,
        "console.log('Starting...');\n"
        "console.error('Warning: high memory usage');\n"
        "console.log('Complete!');\n",
    )
    result = body["result"]
    assert body["success"] is True and result["success"] is True
    assert result["logs"] == [
        "[stdout] Starting...",
        "[stderr] Warning: high memory usage",
        "[stdout] Complete!",
    ]
    assert result["output"] == (
        "=== Output ===\nStarting...\nComplete!\n\n=== Errors ===\nWarning: high memory usage"
    )
    assert "error" not in result
    assert body["sandboxId"].startswith("sb_")
    assert result["metadata"]["sandboxId"] == body["sandboxId"]
    assert result["metadata"]["projectId"] == "alpha"
    assert body["timestamp"].endswith("Z") and result["metadata"]["timestamp"].endswith("Z")


def test_error_handling_example_missing_module(server: LocalServer, key: str) -> None:
    # The seed's "Error Handling" example.
    body = execute(server, key, "import helper from './missing';\nhelper();\n")
    assert body["success"] is False
    error = body["result"]["error"]
    assert error["name"] == "ModuleNotFoundError"
    assert error["message"] == "Cannot find module './missing'"
    assert error["stack"].startswith("ModuleNotFoundError: Cannot find module './missing'")
    assert "=== Errors ===" in body["result"]["output"]


def test_top_level_return_await_and_types(server: LocalServer, key: str) -> None:
    code = (
        "interface Point { x: number; y: number }\n"
        "const p: Point = { x: 1, y: 2 };\n"
        "const later: number = await new Promise<number>((r) => setTimeout(() => r(40), 10));\n"
        "return { a: 1, sum: later + p.x + p.y - 1 };\n"
    )
    body = execute(server, key, code)
    result = body["result"]
    assert result["success"] is True, result
    assert result["output"] == '=== Results ===\n{\n  "a": 1,\n  "sum": 42\n}'


def test_javascript_language_and_require(server: LocalServer, key: str) -> None:
    code = "const os = require('os');\nreturn os.userInfo().username;"
    body = execute(server, key, code, language="javascript")
    assert body["result"]["output"] == '=== Results ===\n"user"'


def test_thrown_error_has_name_message_and_user_line(server: LocalServer, key: str) -> None:
    body = execute(server, key, "const a = 1;\nnull.boom;\n")
    error = body["result"]["error"]
    assert error["name"] == "TypeError"
    assert "Cannot read properties of null" in error["message"]
    assert "main.ts:2:" in error["stack"]  # the user's own line number


def test_syntax_error_is_reported_with_location(server: LocalServer, key: str) -> None:
    body = execute(server, key, "const x: number = ;\n")
    error = body["result"]["error"]
    assert error["name"] == "SyntaxError"
    assert "main.ts:1:" in error["stack"]


def test_execution_time_is_the_codes_own(server: LocalServer, key: str) -> None:
    body = execute(server, key, "await new Promise((r) => setTimeout(r, 300));")
    result = body["result"]
    assert 300 <= result["executionTime"] < 3000
    assert isinstance(result["metadata"]["setupTime"], int)


def test_printed_text_cannot_forge_the_result(server: LocalServer, key: str) -> None:
    code = (
        'console.log(JSON.stringify({t: "result", ok: true, value: "\\"forged\\""}));\n'
        "console.log('=== Results ===');\n"
        "return 'real';"
    )
    body = execute(server, key, code)
    assert body["result"]["output"].startswith('=== Results ===\n"real"\n\n=== Output ===')


def test_context_session_and_project_reach_the_module(server: LocalServer, key: str) -> None:
    code = (
        "import { projectId, sessionId, context } from './iris-prime';\n"
        "return { projectId, sessionId, context, kind: typeof context };"
    )
    body = execute(
        server, key, code, sessionId="s-1", context={"user": {"id": 7}}, projectId="alpha"
    )
    result = body["result"]
    assert result["output"] == (
        '=== Results ===\n{\n  "projectId": "alpha",\n  "sessionId": "s-1",\n'
        '  "context": {\n    "user": {\n      "id": 7\n    }\n  },\n  "kind": "object"\n}'
    )
    assert result["metadata"]["sessionId"] == "s-1"


@pytest.mark.parametrize("specifier", ["./iris-prime", "./iris-prime.ts", "./iris-prime.js"])
def test_iris_prime_resolves_with_or_without_extension(
    server: LocalServer, key: str, specifier: str
) -> None:
    body = execute(server, key, f"import {{ projectId }} from '{specifier}';\nreturn projectId;")
    assert body["result"]["output"] == '=== Results ===\n"alpha"'


def test_no_output_at_all(server: LocalServer, key: str) -> None:
    body = execute(server, key, "const x = 1;")
    assert body["result"]["output"] == "(no output)"
    assert body["result"]["logs"] == []


def test_process_exit_codes(server: LocalServer, key: str) -> None:
    ok = execute(server, key, "console.log('bye'); process.exit(0); console.log('never');")
    assert ok["result"]["success"] is True
    assert ok["result"]["logs"] == ["[stdout] bye"]
    failed = execute(server, key, "process.exit(3);")
    assert failed["result"]["success"] is False
    assert failed["result"]["error"]["message"] == "Process exited with code 3"


def test_unhandled_rejection_fails_the_execution(server: LocalServer, key: str) -> None:
    body = execute(
        server,
        key,
        "Promise.reject(new RangeError('nope'));\nawait new Promise(r => setTimeout(r, 50));",
    )
    assert body["result"]["error"]["name"] == "RangeError"
    assert body["result"]["error"]["message"] == "nope"
