"""Each Lambda function's `handler(event, context)`, called with real API Gateway REST proxy
events (from `sam local generate-event`), against DynamoDB Local, PostgreSQL and the E2B
stand-in (real SDK, real Node)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.events import api_event, authorizer_event
from tests.support.lambda_stack import FUNCTIONS, Stack, lambda_stack
from tests.support.postgres import PostgresServer
from tests.support.server import ROOT


@pytest.fixture(scope="module")
def stack(
    dynamodb_local: DynamoDBLocal,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with lambda_stack(dynamodb_local, postgres, tmp_path_factory.mktemp("lambda")) as built:
        yield built


def test_execute_then_reuse_the_sandbox_in_a_warm_invocation(stack: Stack) -> None:
    key = stack.key("alpha")
    code = "import fs from 'fs';\nfs.writeFileSync('n.txt', '41');\nconsole.log('hi');\nreturn 1;"
    status, first = stack.call("execute", "POST", "/api/iris/execute", key=key, body={"code": code})
    assert status == 200, first
    assert first["success"] is True
    assert first["result"]["logs"] == ["[stdout] hi"]
    assert first["result"]["output"].startswith("=== Results ===\n1")
    sandbox = first["sandboxId"]
    assert sandbox.startswith("sb_")
    again = "import fs from 'fs';\nreturn Number(fs.readFileSync('n.txt', 'utf8')) + 1;"
    status, second = stack.call(
        "execute", "POST", "/api/iris/execute", key=key, body={"code": again, "sandboxId": sandbox}
    )
    assert status == 200, second
    assert second["result"]["output"] == "=== Results ===\n42"
    assert second["result"]["metadata"]["sandboxCreated"] is False


def test_sandbox_get_and_delete_through_their_functions(stack: Stack) -> None:
    key, other = stack.key("gamma"), stack.key("delta")
    _, answer = stack.call("execute", "POST", "/api/iris/execute", key=key, body={"code": "1"})
    sandbox = answer["sandboxId"]
    status, body = stack.call(
        "sandbox_get", "GET", "/api/iris/sandbox", key=key, query={"sandboxId": sandbox}
    )
    assert status == 200 and body["active"] is True and body["totalActive"] == 1
    for function, method in (("sandbox_get", "GET"), ("sandbox_delete", "DELETE")):
        status, body = stack.call(
            function, method, "/api/iris/sandbox", key=other, query={"sandboxId": sandbox}
        )
        assert status == 404, body
    status, body = stack.call(
        "sandbox_delete", "DELETE", "/api/iris/sandbox", key=key, query={"sandboxId": sandbox}
    )
    assert (status, body["message"]) == (200, f"Sandbox {sandbox} closed")
    status, body = stack.call(
        "sandbox_get", "GET", "/api/iris/sandbox", key=key, query={"sandboxId": sandbox}
    )
    assert (status, body["active"], body["status"]) == (200, False, "closed")
    status, body = stack.call(
        "sandbox_delete", "DELETE", "/api/iris/sandbox", key=key, query={"all": "true"}
    )
    assert (status, body["closed"]) == (200, 0)


@pytest.mark.parametrize(
    ("function", "method", "path", "kwargs", "status", "message"),
    [
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "1"}},
            401,
            "Authorization header is required",
        ),
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "1"}, "headers": {"Authorization": "Basic x"}},
            401,
            "Invalid API key format",
        ),
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "1"}, "headers": {"Authorization": "Bearer sk_live_" + "x" * 43}},
            401,
            "Invalid or inactive API key",
        ),
        ("execute", "POST", "/api/iris/execute", {"raw_body": "{not json"}, 400, "not valid JSON"),
        ("execute", "POST", "/api/iris/execute", {"body": {"code": ""}}, 400, "must not be empty"),
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "1", "projectId": "other"}},
            403,
            "projectId",
        ),
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "1", "sandboxId": "sb_nothere00000"}},
            404,
            "not found",
        ),
        (
            "execute",
            "POST",
            "/api/iris/execute",
            {"body": {"code": "x" * (100 * 1024 + 1)}},
            413,
            "102401 bytes",
        ),
        ("execute", "GET", "/api/iris/execute", {}, 405, "GET is not allowed"),
        ("sandbox_get", "GET", "/api/iris/sandbox", {}, 400, "sandboxId"),
        ("sandbox_delete", "DELETE", "/api/iris/sandbox", {}, 400, "sandboxId"),
    ],
)
def test_contract_statuses_through_the_handlers(
    stack: Stack,
    function: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    key = stack.key("statuses")
    needs_key = "headers" not in kwargs and status != 401
    got, body = stack.call(function, method, path, key=key if needs_key else None, **kwargs)
    assert got == status, body
    assert body["statusCode"] == status and message in body["message"]
    assert body["requestId"]  # API Gateway's request id


def test_the_101st_request_in_a_minute_is_429(stack: Stack) -> None:
    key = stack.key("busy-client")
    for _ in range(100):
        status, _ = stack.call(
            "sandbox_get", "GET", "/api/iris/sandbox", key=key, query={"sandboxId": "sb_12345678"}
        )
        assert status == 404
    response = stack.invoke(
        "sandbox_get",
        api_event("GET", "/api/iris/sandbox", key=key, query={"sandboxId": "sb_12345678"}),
    )
    assert response["statusCode"] == 429
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining"] == "0"


def _rpc(method: str, params: dict[str, Any], request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def test_the_mcp_function_survives_consecutive_warm_invocations(stack: Stack) -> None:
    key = stack.key("mcp-client")
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    init = _rpc(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
        1,
    )
    calls = [
        init,
        _rpc("tools/list", {}, 2),
        _rpc(
            "tools/call",
            {"name": "savePrompt", "arguments": {"name": "lambda", "template": "Hi {who}"}},
            3,
        ),
        _rpc("tools/call", {"name": "getPrompt", "arguments": {"name": "lambda"}}, 4),
    ]
    answers = []
    for call in calls:
        status, body = stack.call("mcp", "POST", "/mcp", key=key, body=call, headers=headers)
        assert status == 200, body
        answers.append(body)
    assert answers[0]["result"]["serverInfo"]["name"] == "iris"
    assert "savePrompt" in {tool["name"] for tool in answers[1]["result"]["tools"]}
    assert answers[2]["result"]["structuredContent"]["version"] == 1
    assert answers[3]["result"]["structuredContent"]["prompt"]["template"] == "Hi {who}"
    status, body = stack.call("mcp", "POST", "/mcp", body=calls[1], headers=headers)
    assert status == 401 and body["message"] == "Authorization header is required"


def test_the_authorizer_names_the_project_and_the_usage_key(stack: Stack) -> None:
    key, record = stack.keys.create_key(
        "metered", usage_key=lambda key_id: f"iris-usage-{key_id}-0000"
    )
    allowed = stack.invoke("authorizer", authorizer_event(f"Bearer {key}"))
    assert allowed["principalId"] == "metered"
    assert allowed["usageIdentifierKey"] == record.usage_key
    assert allowed["context"] == {
        "authenticated": "true",
        "projectId": "metered",
        "keyId": record.key_id,
    }
    statement = allowed["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    # Cached per token, so it must cover every route of the stage.
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/*/*"
    stranger = stack.invoke("authorizer", authorizer_event("Bearer sk_live_" + "z" * 43))
    assert stranger["principalId"] == "anonymous"
    assert stranger["usageIdentifierKey"] == "iris-exec-anonymous-usage-key"
    assert stranger["context"] == {"authenticated": "false"}


def test_execution_tokens_are_metered_on_their_callers_key_not_the_anonymous_plan(
    stack: Stack,
) -> None:
    """A sandbox's tool calls (Bearer iet_...) count against the usage-plan key of the
    caller who started the execution; a token naming none (asynchronous executions) against
    the tools plan; a forged or expired one is junk, on the anonymous plan."""
    import time

    from iris_exec.aws.runtime import container

    tokens = container().tokens
    deadline = time.time() + 60
    grant = tokens.mint("tooled", "sb_1", "ex_1", None, deadline, usage_key="iris-usage-k1")
    metered = stack.invoke("authorizer", authorizer_event(f"Bearer {grant.token}"))
    assert metered["principalId"] == "tooled"
    assert metered["usageIdentifierKey"] == "iris-usage-k1"
    unnamed = tokens.mint("tooled", "sb_1", "ex_2", None, deadline).token
    tools = stack.invoke("authorizer", authorizer_event(f"Bearer {unnamed}"))
    assert tools["usageIdentifierKey"] == "iris-exec-tools-usage-key"
    forged = grant.token[:-4] + ("AAAA" if not grant.token.endswith("AAAA") else "BBBB")
    expired = tokens.mint("tooled", "sb_1", "ex_3", None, time.time() - 1, usage_key="u").token
    for junk in (forged, expired):
        answer = stack.invoke("authorizer", authorizer_event(f"Bearer {junk}"))
        assert answer["usageIdentifierKey"] == "iris-exec-anonymous-usage-key"
        assert answer["context"] == {"authenticated": "false"}


def test_the_tokens_of_a_metered_keys_execution_name_its_usage_key(stack: Stack) -> None:
    """What the execute function mints: the caller's usage key goes into the token."""
    from iris_exec.aws.runtime import container

    key, record = stack.keys.create_key("minted", usage_key=lambda key_id: f"iris-usage-{key_id}")
    principal = container().auth.authenticate(f"Bearer {key}")
    assert principal.usage_key == record.usage_key


def test_get_and_delete_on_mcp_answer_405_with_allow_post(stack: Stack) -> None:
    """MCP Streamable HTTP: a server without a GET stream MUST answer 405 (not 403/404)."""
    key = stack.key("mcp-get")
    for method in ("GET", "DELETE"):
        response = stack.invoke(
            "mcp", api_event(method, "/mcp", key=key, headers={"Accept": "text/event-stream"})
        )
        assert response["statusCode"] == 405, response
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
        assert headers.get("allow") == "POST" or multi.get("allow") == ["POST"]
        body = json.loads(response["body"])
        assert body["statusCode"] == 405 and body["error"] == "Method Not Allowed"


def test_the_reaper_runs_twice_in_a_row(stack: Stack) -> None:
    for _ in range(2):
        result = stack.invoke("reaper", {})
        assert set(result) == {"reaped", "lost", "deadExecutions"}


def test_every_handler_module_is_a_few_lines() -> None:
    for function in FUNCTIONS:
        source = (ROOT / "functions" / function / "app.py").read_text()
        code = [
            line
            for line in source.splitlines()
            if line.strip() and not line.startswith(('"""', "#"))
        ]
        assert len(code) <= 4, f"functions/{function}/app.py holds logic; it belongs in the layer"


def test_layer_requirements_match_the_lock() -> None:
    import subprocess

    exported = subprocess.run(
        ["make", "-s", "--no-print-directory", "layer-requirements-check"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr


def test_idempotent_execute_and_the_audit_trail_through_the_functions(stack: Stack) -> None:
    key = stack.key("retrying-client")
    body = {"code": "console.log('once'); return 7"}
    headers = {"Idempotency-Key": f"job-{uuid.uuid4()}"}
    first = stack.invoke(
        "execute", api_event("POST", "/api/iris/execute", key=key, body=body, headers=headers)
    )
    again = stack.invoke(
        "execute", api_event("POST", "/api/iris/execute", key=key, body=body, headers=headers)
    )
    assert first["statusCode"] == again["statusCode"] == 200
    assert json.loads(again["body"]) == json.loads(first["body"])
    assert {k.lower(): v for k, v in again["headers"].items()}["idempotent-replayed"] == "true"
    changed = {"code": "return 8"}
    status, problem = stack.call(
        "execute", "POST", "/api/iris/execute", key=key, body=changed, headers=headers
    )
    assert status == 422 and "different request body" in problem["message"]
    status, trail = stack.call("audit", "GET", "/api/iris/audit", key=key)
    assert status == 200
    assert [e["kind"] for e in trail["events"]] == ["sandbox.created", "execution"]
    assert trail["events"][1]["outcome"] == "ok"


def test_python_through_the_execute_function(stack: Stack) -> None:
    key = stack.key("python-client")
    body = {"code": "print('from python')\nreturn {'ok': True}", "language": "python"}
    status, answer = stack.call("execute", "POST", "/api/iris/execute", key=key, body=body)
    assert status == 200, answer
    assert answer["result"]["logs"] == ["[stdout] from python"]
    assert answer["result"]["output"].startswith('=== Results ===\n{\n  "ok": true\n}')


def test_the_lists_through_their_functions_on_dynamodb(stack: Stack) -> None:
    key = stack.key("lists")
    _, ran = stack.call("execute", "POST", "/api/iris/execute", key=key, body={"code": "return 7"})
    sandbox, execution = ran["sandboxId"], ran["result"]["metadata"]["executionId"]
    stack.call("sandbox_delete", "DELETE", "/api/iris/sandbox", key=key, query={"all": "true"})
    status, body = stack.call("executions", "GET", "/api/iris/executions", key=key)
    assert status == 200, body
    assert [(e["executionId"], e["sandboxId"], e["success"]) for e in body["executions"]] == [
        (execution, sandbox, True)
    ]
    status, detail = stack.call(
        "executions",
        "GET",
        f"/api/iris/executions/{execution}",
        key=key,
        resource="/api/iris/executions/{executionId}",
    )
    assert status == 200 and detail["code"] == "return 7" and detail["async"] is False
    status, body = stack.call("sandbox_get", "GET", "/api/iris/sandboxes", key=key)
    assert status == 200 and [s["sandboxId"] for s in body["sandboxes"]] == [sandbox]
    assert body["sandboxes"][0]["status"] == "closed" and body["nextCursor"] is None
    status, body = stack.call(
        "executions", "GET", "/api/iris/executions", key=key, query={"cursor": "x"}
    )
    assert status == 400 and body["error"] == "Bad Request"


def test_the_console_function_serves_the_page_under_its_policy(stack: Stack) -> None:
    page = stack.invoke("console", api_event("GET", "/", resource="/"))
    assert page["statusCode"] == 200
    headers = {k.lower(): v for k, v in page["headers"].items()}
    assert headers["content-type"].startswith("text/html")
    assert "script-src 'self';" in headers["content-security-policy"]
    # Relative references: the page works under the stage prefix (https://.../Prod/).
    assert 'src="console/app.js"' in page["body"] and "{{style-nonce}}" not in page["body"]
    script = stack.invoke(
        "console", api_event("GET", "/console/app.js", resource="/console/{name}")
    )
    assert script["statusCode"] == 200 and "api/iris/execute" in script["body"]
    # https://host/prod (no final slash): the page's relative files would miss the stage.
    bare = api_event("GET", "/", resource="/")
    bare["requestContext"]["path"] = "/prod"
    moved = stack.invoke("console", bare)
    assert moved["statusCode"] == 301
    assert {k.lower(): v for k, v in moved["headers"].items()}["location"] == "/prod/"
    missing = stack.invoke(
        "console", api_event("GET", "/console/secrets.txt", resource="/console/{name}")
    )
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"] == "Not Found"
