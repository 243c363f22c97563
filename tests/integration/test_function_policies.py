"""Every function's IAM policy, as the SAM transform generates it, allows what its code
calls: each function runs its routes through its real handler (real API Gateway events,
DynamoDB Local, the E2B stand-in, the Lambda Invoke stand-in) while every DynamoDB
operation, secret and Lambda invocation it makes is recorded; each is then looked up in
the function's role in the transformed template (tests/support/sam_transform.py). An
AccessDenied that only a real account would show is found here.

The worker function runs in a process of its own (the Lambda stand-in): its calls are not
recorded here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iris_exec.adapters.awsapi import DynamoDB, LambdaApi
from iris_exec.composition import aws as composition
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.events import api_event, authorizer_event
from tests.support.lambda_stack import WORKER, Stack, lambda_stack
from tests.support.postgres import PostgresServer
from tests.support.sam_transform import transformed

LOGICAL = {
    "execute": "ExecuteFunction",
    "sandbox_get": "SandboxGetFunction",
    "sandbox_delete": "SandboxDeleteFunction",
    "audit": "AuditFunction",
    "executions": "ExecutionsFunction",
    "mcp": "McpFunction",
    "authorizer": "AuthorizerFunction",
    "reaper": "ReaperFunction",
}

#: (function, IAM action, what it acted on)
Call = tuple[str, str, tuple[str, ...]]


class Recorder:
    def __init__(self) -> None:
        self.function = "?"
        self.calls: set[Call] = set()

    def add(self, action: str, *target: str) -> None:
        self.calls.add((self.function, action, target))


@pytest.fixture(scope="module")
def recorded(
    dynamodb_local: DynamoDBLocal,
    postgres: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, Recorder]]:
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        call = DynamoDB.call

        def recording_call(self: DynamoDB, operation: str, request: Any) -> dict[str, Any]:
            target = [str(request.get("TableName", ""))]
            if request.get("IndexName"):
                target.append("index")
            recorder.add(f"dynamodb:{operation}", *target)
            return call(self, operation, request)

        patch.setattr(DynamoDB, "call", recording_call)
        invoke = LambdaApi.invoke_event

        def recording_invoke(self: LambdaApi, function: str, payload: bytes) -> int:
            recorder.add("lambda:InvokeFunction", function)
            return invoke(self, function, payload)

        patch.setattr(LambdaApi, "invoke_event", recording_invoke)
        from iris_exec.adapters.secrets import secret

        def recording_secret(
            direct: str | None, name: str | None, setting: str, *args: Any, **options: Any
        ) -> Callable[[], str]:
            value = secret(direct, name, setting, *args, **options)

            def read() -> str:
                recorder.add("secretsmanager:GetSecretValue", setting)
                return value()

            return read

        patch.setattr(composition, "secret", recording_secret)
        with lambda_stack(dynamodb_local, postgres, tmp_path_factory.mktemp("policies")) as stack:
            exercise(stack, recorder)
            yield stack, recorder


def exercise(stack: Stack, recorder: Recorder) -> None:
    """Every route of every function, as a first day of traffic would."""

    def on(function: str, event: dict[str, Any]) -> dict[str, Any]:
        recorder.function = function
        try:
            return stack.invoke(function, event)
        finally:
            recorder.function = "?"  # the test's own calls

    key, _ = stack.keys.create_key("policy", usage_key=lambda key_id: f"iris-usage-{key_id}")
    on("authorizer", authorizer_event(f"Bearer {key}"))
    code = {"code": "console.log('hi'); return 1"}
    idem = {"Idempotency-Key": uuid.uuid4().hex}
    big = {"code": "for (let i = 0; i < 40000; i++) console.log('line ' + i);"}
    answer = on("execute", api_event("POST", "/api/iris/execute", key=key, body=code))
    sandbox = __import__("json").loads(answer["body"])["sandboxId"]
    on("execute", api_event("POST", "/api/iris/execute", key=key, body=big, headers=idem))
    on("execute", api_event("POST", "/api/iris/execute", key=key, body=big, headers=idem))
    submitted = on(
        "execute", api_event("POST", "/api/iris/execute", key=key, body={**code, "async": True})
    )
    execution = __import__("json").loads(submitted["body"])["executionId"]
    query = {"sandboxId": sandbox}
    on("sandbox_get", api_event("GET", "/api/iris/sandbox", key=key, query=query))
    on("audit", api_event("GET", "/api/iris/audit", key=key))
    path = f"/api/iris/executions/{execution}"
    for _ in range(60):
        read = on(
            "executions",
            api_event("GET", path, key=key, resource="/api/iris/executions/{executionId}"),
        )
        if '"succeeded"' in read["body"]:
            break
        time.sleep(0.5)
    from iris_exec.aws.runtime import container

    token = container().tokens.mint("policy", sandbox, "ex_1", None, time.time() + 60).token
    on("authorizer", authorizer_event(f"Bearer {token}"))
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    call = {**rpc, "params": {"name": "savePrompt", "arguments": {"name": "p", "template": "x"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    on("mcp", api_event("POST", "/mcp", key=key, body=call, headers=headers))
    on("mcp", api_event("POST", "/mcp", key=token, body=call, headers=headers))
    on("sandbox_delete", api_event("DELETE", "/api/iris/sandbox", key=key, query=query))
    on("reaper", {})


def _statements(function: str) -> list[dict[str, Any]]:
    role = transformed()["Resources"][f"{LOGICAL[function]}Role"]["Properties"]
    return [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def _resources(statement: dict[str, Any]) -> list[Any]:
    found = statement["Resource"]
    return found if isinstance(found, list) else [found]


def _environment(function: str) -> dict[str, Any]:
    variables: dict[str, Any] = transformed()["Resources"][LOGICAL[function]]["Properties"][
        "Environment"
    ]["Variables"]
    return variables


def _allowed(function: str, action: str, resource: Any) -> bool:
    return any(
        s["Effect"] == "Allow" and action in s["Action"] and resource in _resources(s)
        for s in _statements(function)
    )


def test_each_function_called_something_of_each_kind(recorded: tuple[Stack, Recorder]) -> None:
    """The recording itself works (a test that records nothing would pass anything)."""
    _, recorder = recorded
    by_function = {f for f, _, _ in recorder.calls} - {"?"}
    assert set(LOGICAL) <= by_function, set(LOGICAL) - by_function
    actions = {a for _, a, _ in recorder.calls}
    assert {"lambda:InvokeFunction", "secretsmanager:GetSecretValue", "dynamodb:Query"} <= actions


def test_every_call_is_allowed_by_the_functions_policy(recorded: tuple[Stack, Recorder]) -> None:
    stack, recorder = recorded
    by_table = {name: logical for logical, name in stack.tables.items()}
    denied = []
    for function, action, target in sorted(recorder.calls):
        if function == "?":
            continue
        env = _environment(function)
        if action.startswith("dynamodb:"):
            logical = by_table[target[0]]
            variable = (
                "IRIS_SANDBOX_TABLE" if logical == "sandboxes" else f"IRIS_{logical.upper()}_TABLE"
            )
            table = env[variable]["Ref"]
            arn: Any = {"Fn::GetAtt": [table, "Arn"]}
            if target[1:] == ("index",):
                arn = {"Fn::Sub": f"${{{table}.Arn}}/index/*"}
        elif action == "secretsmanager:GetSecretValue":
            arn = env[f"IRIS_{target[0]}_SECRET"]
        else:
            assert target == (WORKER,)
            arn = {"Fn::GetAtt": [env["IRIS_WORKER_FUNCTION"]["Ref"], "Arn"]}
        if not _allowed(function, action, arn):
            denied.append(f"{LOGICAL[function]}: {action} on {arn}")
    assert not denied, denied
