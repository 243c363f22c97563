"""Small helpers over the execute API, shared by the integration tests."""

from __future__ import annotations

import json
from typing import Any

from tests.support.server import LocalServer


def execute(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    """POST /api/iris/execute; the whole 200 answer."""
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def result_value(result: dict[str, Any]) -> Any:
    """The top-level return value, read back from the `=== Results ===` section."""
    output: str = result["output"]
    assert output.startswith("=== Results ===\n"), output
    return json.loads(output.removeprefix("=== Results ===\n").split("\n\n=== ")[0])


def run_value(server: LocalServer, key: str, code: str, **fields: Any) -> Any:
    """Run code that must succeed; its return value."""
    result = execute(server, key, code, **fields)["result"]
    assert result["success"], result
    return result_value(result)
