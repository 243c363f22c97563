"""The lists the console reads, through the real local server: every execution (synchronous
ones too) in the history, kept after its sandbox is closed; sandboxes newest first; strict
parameters; one project's objects only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import LocalServer


def _get(server: LocalServer, key: str, path: str, **params: Any) -> dict[str, Any]:
    with server.client(key) as client:
        response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_synchronous_run_is_in_the_history_after_its_sandbox_is_closed(
    server: LocalServer, key: str, other_key: str
) -> None:
    with server.client(key) as client:
        ran = client.post(
            "/api/iris/execute",
            json={"code": "console.log('hi'); throw new TypeError('boom')", "sessionId": "s-1"},
        ).json()
        sandbox_id = ran["sandboxId"]
        execution_id = ran["result"]["metadata"]["executionId"]
        assert (
            client.delete("/api/iris/sandbox", params={"sandboxId": sandbox_id}).status_code == 200
        )

    listed = _get(server, key, "/api/iris/executions", sandboxId=sandbox_id)
    assert [e["executionId"] for e in listed["executions"]] == [execution_id]
    row = listed["executions"][0]
    assert row["status"] == "failed" and row["success"] is False and row["async"] is False
    assert row["language"] == "typescript" and row["sessionId"] == "s-1"
    assert row["executionTime"] == ran["result"]["executionTime"]

    detail = _get(server, key, f"/api/iris/executions/{execution_id}")
    assert detail["code"] == "console.log('hi'); throw new TypeError('boom')"
    assert detail["logs"][0] == "[stdout] hi"
    assert detail["result"]["error"]["name"] == "TypeError"
    assert "boom" in detail["result"]["error"]["stack"]

    sandboxes = _get(server, key, "/api/iris/sandboxes", status="closed")["sandboxes"]
    closed = next(s for s in sandboxes if s["sandboxId"] == sandbox_id)
    assert closed["active"] is False and closed["reason"] == "closed"

    # Another project sees none of it.
    assert _get(server, other_key, "/api/iris/executions", sandboxId=sandbox_id)["executions"] == []
    with server.client(other_key) as client:
        assert client.get(f"/api/iris/executions/{execution_id}").status_code == 404


def test_pages_chain_newest_first(server: LocalServer) -> None:
    key = server.create_key("history-pages")
    with server.client(key) as client:
        first = client.post("/api/iris/execute", json={"code": "return 1"}).json()
        sandbox_id = first["sandboxId"]
        ids = [first["result"]["metadata"]["executionId"]]
        for n in (2, 3):
            body = client.post(
                "/api/iris/execute", json={"code": f"return {n}", "sandboxId": sandbox_id}
            ).json()
            ids.append(body["result"]["metadata"]["executionId"])
        queued = client.post("/api/iris/execute", json={"code": "return 4", "async": True})
        assert queued.status_code == 202
    ids.append(queued.json()["executionId"])

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = _get(server, key, "/api/iris/executions", **params)
        seen += [e["executionId"] for e in page["executions"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    sandboxes = _get(server, key, "/api/iris/sandboxes")["sandboxes"]
    assert sandboxes[0]["status"] == "running" and sandboxes[0]["active"] is True
    created = [s["createdAt"] for s in sandboxes]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/iris/executions", {"limit": "0"}, "limit"),
        ("/api/iris/executions", {"limit": "101"}, "limit"),
        ("/api/iris/executions", {"limit": "ten"}, "limit"),
        ("/api/iris/executions", {"limit": "٣"}, "limit"),
        ("/api/iris/executions", {"cursor": "junk!"}, "cursor"),
        ("/api/iris/executions", {"cursor": "WzEsMl0"}, "cursor"),  # [1,2]
        ("/api/iris/executions", {"status": "done"}, "status"),
        ("/api/iris/executions", {"sandboxId": "nope"}, "sandboxId"),
        ("/api/iris/sandboxes", {"status": "alive"}, "status"),
        ("/api/iris/sandboxes", {"cursor": ""}, "cursor"),
    ],
)
def test_junk_parameters_are_refused_in_the_one_error_shape(
    server: LocalServer, key: str, path: str, params: dict[str, str], message: str
) -> None:
    with server.client(key) as client:
        response = client.get(path, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request" and message in body["message"]
    assert body["requestId"] and body["path"] == path


def test_lists_need_a_key(server: LocalServer) -> None:
    with server.client(None) as client:
        for path in ("/api/iris/executions", "/api/iris/sandboxes"):
            response = client.get(path)
            assert response.status_code == 401
            assert "hint" in response.json()
