"""The services answer typed values, and the HTTP edge documents every answer it gives.

The services return models (``services/answers.py``, ``services/tool_answers.py``), never
wire dicts; the OpenAPI document names a response schema for every route and every status
it declares (the error envelope for each error), and the JSON the routes send fits it."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from pydantic import BaseModel

import iris_exec.services
from iris_exec.composition import Services
from iris_exec.http.app import COMMON_ERRORS, create_app
from iris_exec.services.answers import ExecutionAnswer, RunResult
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio


def service_methods() -> list[tuple[str, Any]]:
    """Every public method of every class the services define."""
    found = []
    for info in pkgutil.iter_modules(iris_exec.services.__path__):
        module = importlib.import_module(f"iris_exec.services.{info.name}")
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            if issubclass(cls, BaseModel | Exception):
                continue  # the answers themselves, and errors
            for name, member in vars(cls).items():
                function = getattr(member, "__func__", member)
                if not name.startswith("_") and inspect.isfunction(function):
                    found.append((f"{module.__name__}.{cls.__qualname__}.{name}", function))
    return found


def test_no_service_method_answers_a_wire_dict() -> None:
    methods = service_methods()
    names = {name.rsplit(".", 2)[-2] for name, _ in methods}
    # The services whose answers reach a caller are all seen (not an empty pass).
    assert {"ExecutionService", "BackgroundExecutions", "SandboxService", "History"} <= names
    assert {"AuditTrail", "ToolService", "IdempotentExecutions"} <= names
    for name, function in methods:
        returns = inspect.get_annotations(function).get("return")
        assert returns is not None, f"{name} has no return annotation"
        assert "dict[str, Any]" not in str(returns), f"{name} answers {returns}"


@pytest.fixture
def container(tmp_path: Path) -> Services:
    return fake_container(tmp_path, FakeProvider(), MovableClock())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_the_openapi_document_has_a_response_schema_for_every_route_and_status(
    container: Services,
) -> None:
    document = create_app(container).openapi()
    schemas = document["components"]["schemas"]
    found = operations(document)
    assert len(found) == 8, [(m, p) for m, p, _ in found]
    for method, path, operation in found:
        responses = operation["responses"]
        assert {str(s) for s in COMMON_ERRORS} <= set(responses), (method, path)
        for status, response in responses.items():
            content = response.get("content")
            assert content, f"{method} {path} {status} has no content"
            for media_type, body in content.items():
                schema = body.get("schema")
                assert schema, f"{method} {path} {status} {media_type} has no schema"
                if status.startswith(("4", "5")):
                    assert media_type == "application/json"
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
                elif media_type == "application/json":
                    name = schema["$ref"].rsplit("/", 1)[-1]
                    assert schemas[name]["properties"], f"{method} {path}: {name} is empty"
    execute = document["paths"]["/api/iris/execute"]["post"]["responses"]
    assert set(execute) == {"200", "202", "400", "401", "403", "404", "409", "410", "413"} | {
        "422",
        "429",
        "500",
        "503",
    }
    assert execute["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ExecutionStarted"
    )
    # FastAPI's own validation error (a 422 this API never sends) is not documented.
    assert "HTTPValidationError" not in schemas
    # The wire's names, not Python's.
    result = schemas["RunResult"]["properties"]
    assert {"returnValue", "executionTime", "logs", "metadata"} <= set(result)
    assert "async" in schemas["ExecutionView"]["properties"]


def validator(document: dict[str, Any], name: str) -> jsonschema_rs.Draft202012Validator:
    """A validator of the component ``name`` of ``document``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


async def test_the_answers_sent_fit_their_documented_schemas(container: Services) -> None:
    """One of each answer, through the app: the JSON sent fits the schema the document
    gives for that route and status (schemathesis does the same over a real server)."""
    app = create_app(container)
    document = app.openapi()
    key = container.auth.create_key("alpha")[0]
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
        ran = await http.post("/api/iris/execute", json={"code": "return 1", "sessionId": "s1"})
        assert ran.status_code == 200, ran.text
        sandbox = ran.json()["sandboxId"]
        started = await http.post(
            "/api/iris/execute", json={"code": "return 2", "async": True, "sandboxId": sandbox}
        )
        assert started.status_code == 202, started.text
        execution = started.json()["executionId"]
        answers = {
            "ExecutionAnswer": ran,
            "ExecutionStarted": started,
            "ExecutionView": await http.get(f"/api/iris/executions/{execution}"),
            "ExecutionPage": await http.get("/api/iris/executions"),
            "SandboxPage": await http.get("/api/iris/sandboxes"),
            "SandboxView": await http.get("/api/iris/sandbox", params={"sandboxId": sandbox}),
            "AuditPage": await http.get("/api/iris/audit"),
            "SandboxesClosed": await http.delete("/api/iris/sandbox", params={"all": "true"}),
        }
        closed = await http.get("/api/iris/sandbox", params={"sandboxId": sandbox})
        missing = await http.get("/api/iris/sandbox", params={"sandboxId": "sb_00000000"})
    for name, response in answers.items():
        assert response.status_code in (200, 202), (name, response.text)
        validator(document, name).validate(response.json())
    assert closed.json()["reason"] == "closed" and "closedAt" in closed.json()
    validator(document, "SandboxView").validate(closed.json())
    assert missing.status_code == 404
    validator(document, "ErrorBody").validate(missing.json())
    # A key left out is not a null: a run that succeeded has no `error`.
    assert "error" not in ran.json()["result"]
    assert ran.json()["result"]["metadata"]["sessionId"] == "s1"
    assert "limitHit" not in ran.json()["result"]["metadata"]


def test_an_answer_read_back_from_its_json_is_the_same_answer() -> None:
    """Idempotent replays and stored results go through JSON and back: a returnValue of
    null stays a null, and a key that was absent stays absent."""
    metadata = {
        "sandboxId": "sb_1",
        "projectId": "p",
        "timestamp": "t",
        "executionId": "ex_1",
        "language": "typescript",
        "setupTime": 0,
        "sandboxCreated": True,
        "outputTruncated": False,
    }
    result: dict[str, Any] = {"success": True, "output": "x", "returnValue": None}
    result["executionTime"] = 1
    whole = {**result, "logs": [], "metadata": metadata}
    wire = {
        "success": True,
        "result": whole,
        "sandboxId": "sb_1",
        "timestamp": "t",
    }
    answer = ExecutionAnswer.model_validate(wire)
    assert answer.wire() == wire
    assert answer.result.stored() == {**result, "metadata": metadata}
    without = {key: value for key, value in whole.items() if key != "returnValue"}
    assert "returnValue" not in RunResult.model_validate(without).wire()


def test_documenting_the_answers_costs_a_lambda_function_no_validators() -> None:
    """A function's app documents its answers without FastAPI's response_model= (which
    builds a validator per model and imports pydantic.v1 at start: ~100 ms of CPU of every
    cold start); the schemas are made when the document is asked for."""
    program = (
        "import sys, types\n"
        "from iris_exec.settings import Settings\n"
        "from iris_exec.http.app import SANDBOX_GET, create_app\n"
        "app = create_app(types.SimpleNamespace(settings=Settings()), routes={SANDBOX_GET})\n"
        "assert 'pydantic.v1' not in sys.modules, 'pydantic.v1 was imported'\n"
        "assert all(getattr(r, 'response_model', None) is None for r in app.routes)\n"
        "assert '/api/iris/sandbox' in app.openapi()['paths']\n"
    )
    root = Path(__file__).resolve().parents[2]
    ran = subprocess.run(  # a fresh interpreter, as a cold start
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONPATH": str(root / "layers" / "core")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr


async def test_ids_are_checked_whole_in_the_body_and_in_the_query(container: Services) -> None:
    """The schema's patterns and the hand-read parameters agree: an id followed by a
    newline is no id (Python's `$` alone would have let it through)."""
    key = container.auth.create_key("alpha")[0]
    transport = httpx.ASGITransport(app=create_app(container))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
        answers = [
            await http.post("/api/iris/execute", json={"code": "1", "sandboxId": "sb_12345678\n"}),
            await http.post("/api/iris/execute", json={"code": "1", "sessionId": "s\n"}),
            await http.get("/api/iris/sandbox", params={"sandboxId": "sb_12345678\n"}),
            await http.get("/api/iris/executions/ex_12345678%0A"),
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["statusCode"] == 400
