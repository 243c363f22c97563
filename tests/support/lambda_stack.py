"""The Lambda functions of template.yaml, loaded from functions/<name>/app.py as Lambda
loads them, over DynamoDB Local, PostgreSQL, the E2B stand-in and the Lambda Invoke
stand-in (which runs the worker function in processes of its own)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
from iris_exec.adapters.dynamodb.tables import TABLES, create_tables
from iris_exec.services.auth import AuthService
from iris_exec.services.clock import system_clock
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.e2b_standin import E2BStandIn
from tests.support.events import LambdaContext, api_event
from tests.support.lambda_standin import LambdaStandIn
from tests.support.postgres import PostgresServer
from tests.support.server import ROOT

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
FUNCTIONS = (
    "execute",
    "sandbox_get",
    "sandbox_delete",
    "audit",
    "executions",
    "mcp",
    "authorizer",
    "reaper",
    "console",
)
WORKER = "iris-worker"


@dataclass
class Stack:
    handlers: dict[str, Handler]
    keys: AuthService
    loop: asyncio.AbstractEventLoop
    e2b: E2BStandIn
    lambdas: LambdaStandIn
    tables: dict[str, str]

    def key(self, project: str) -> str:
        return self.keys.create_key(project)[0]

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        # Lambda keeps one event loop per container (Mangum's); so do these tests.
        asyncio.set_event_loop(self.loop)
        return self.handlers[function](event, LambdaContext(function_name=f"iris-{function}"))

    def call(self, function: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = self.invoke(function, api_event(method, path, **kwargs))
        body = response.get("body") or ""
        return int(response["statusCode"]), json.loads(body) if body else None


def load_function(function: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"lambda_{function}", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def lambda_stack(
    dynamodb_local: DynamoDBLocal, postgres: PostgresServer, log_dir: Path, **settings: str
) -> Iterator[Stack]:
    """Fresh tables and a fresh "Lambda container" of every function; ``settings`` are
    extra IRIS_* variables (every function and worker sees them)."""
    from iris_exec.aws import runtime

    suffix = uuid.uuid4().hex[:8]
    tables = {logical: f"{logical}-{suffix}" for logical in TABLES}
    client = dynamodb_local.client()
    create_tables(client, tables)
    worker = {WORKER: ROOT / "functions" / "worker"}
    with (
        E2BStandIn() as e2b,
        LambdaStandIn(worker, log_dir) as lambdas,
        pytest.MonkeyPatch.context() as env,
    ):
        e2b.team.transform_rules = True  # the header-rewrite egress mode needs them
        for name, value in {
            **e2b.env,
            "IRIS_BACKEND": "aws",
            **{f"IRIS_{logical.upper()}_TABLE": table for logical, table in tables.items()},
            "IRIS_SANDBOX_TABLE": tables["sandboxes"],
            "IRIS_DYNAMODB_ENDPOINT": dynamodb_local.endpoint_url,
            "IRIS_WORKER_FUNCTION": WORKER,
            "IRIS_LAMBDA_ENDPOINT": lambdas.endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "x",
            "IRIS_TOOL_STORE": "postgres",
            "IRIS_DATABASE_URL": postgres.dsn,
            "IRIS_TOKEN_SIGNING_KEY": "s" * 64,
            "IRIS_E2B_API_KEY": e2b.api_key,
            "POWERTOOLS_METRICS_NAMESPACE": "IrisExecTest",
            **{f"IRIS_{k.upper()}": v for k, v in settings.items()},
        }.items():
            env.setenv(name, value)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runtime.reset()  # a fresh "Lambda container"
        handlers = {name: load_function(name).handler for name in FUNCTIONS}
        keys = AuthService(DynamoKeyStore(client, tables["keys"]), system_clock)
        try:
            yield Stack(handlers, keys, loop, e2b, lambdas, tables)
        finally:
            runtime.reset()
            loop.close()
            asyncio.set_event_loop(None)
