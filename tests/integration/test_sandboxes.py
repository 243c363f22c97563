"""Sandbox reuse, inspection, closing, quotas, idle reaping and project isolation."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import LocalServer


def execute(client: httpx.Client, code: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_files_persist_within_a_sandbox_only(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        first = execute(
            client,
            "import fs from 'fs';\n"
            "fs.writeFileSync('note.txt', 'kept');\n"
            "fs.writeFileSync('/tmp/t.txt', 'tmp too');",
        )
        sandbox = first["sandboxId"]
        assert first["result"]["metadata"]["sandboxCreated"] is True
        second = execute(
            client,
            "import fs from 'fs';\n"
            "return [fs.readFileSync('note.txt', 'utf8'), fs.readFileSync('/tmp/t.txt', 'utf8')];",
            sandboxId=sandbox,
        )
        assert second["sandboxId"] == sandbox
        assert second["result"]["metadata"]["sandboxCreated"] is False
        assert second["result"]["output"] == '=== Results ===\n[\n  "kept",\n  "tmp too"\n]'
        other = execute(client, "import fs from 'fs'; return fs.existsSync('note.txt');")
        assert other["sandboxId"] != sandbox
        assert other["result"]["output"] == "=== Results ===\nfalse"


def test_each_execution_is_a_fresh_process(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        first = execute(client, "globalThis.leftover = 1; return process.pid;")
        second = execute(client, "return typeof globalThis.leftover;", sandboxId=first["sandboxId"])
        assert second["result"]["output"] == '=== Results ===\n"undefined"'


def test_get_reports_a_live_sandbox(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        sandbox = execute(client, "1")["sandboxId"]
        body = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
    assert body["sandboxId"] == sandbox
    assert body["active"] is True
    assert body["status"] == "running"
    assert body["totalActive"] >= 1
    for field in ("createdAt", "lastUsedAt", "expiresAt", "timestamp"):
        assert body[field].endswith("Z")


def test_delete_closes_and_is_idempotent(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        sandbox = execute(client, "1")["sandboxId"]
        closed = client.delete("/api/iris/sandbox", params={"sandboxId": sandbox})
        assert closed.status_code == 200
        assert closed.json()["message"] == f"Sandbox {sandbox} closed"
        again = client.delete("/api/iris/sandbox", params={"sandboxId": sandbox})
        assert again.status_code == 200
        status = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
        assert status["active"] is False and status["status"] == "closed"
        reuse = client.post("/api/iris/execute", json={"code": "1", "sandboxId": sandbox})
        assert reuse.status_code == 410
        assert reuse.json()["reason"] == "closed"
        assert reuse.json()["goneAt"].endswith("Z")


def test_other_projects_cannot_see_or_close_a_sandbox(
    server: LocalServer, key: str, other_key: str
) -> None:
    with server.client(key) as mine, server.client(other_key) as theirs:
        sandbox = execute(mine, "1")["sandboxId"]
        assert theirs.get("/api/iris/sandbox", params={"sandboxId": sandbox}).status_code == 404
        assert theirs.delete("/api/iris/sandbox", params={"sandboxId": sandbox}).status_code == 404
        reuse = theirs.post("/api/iris/execute", json={"code": "1", "sandboxId": sandbox})
        assert reuse.status_code == 404
        unknown = mine.get("/api/iris/sandbox", params={"sandboxId": "sb_doesnotexist0"})
        assert unknown.status_code == 404
        assert reuse.json()["message"] == unknown.json()["message"].replace(
            "sb_doesnotexist0", sandbox
        )
        assert mine.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()["active"]


def test_delete_all_closes_only_the_callers_sandboxes(
    server: LocalServer, key: str, other_key: str
) -> None:
    with server.client(key) as mine, server.client(other_key) as theirs:
        their_sandbox = execute(theirs, "1")["sandboxId"]
        mine_a = execute(mine, "1")["sandboxId"]
        response = mine.delete("/api/iris/sandbox", params={"all": "true"})
        assert response.status_code == 200
        body = response.json()
        assert body["message"] == "All sandboxes closed"
        assert body["closed"] >= 1
        assert mine.get("/api/iris/sandbox", params={"sandboxId": mine_a}).json()["active"] is False
        status = theirs.get("/api/iris/sandbox", params={"sandboxId": their_sandbox}).json()
        assert status["active"] is True
        assert status["totalActive"] >= 1


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """Quota of 2 sandboxes, 1.5 s idle timeout, a fast reaper."""
    data: Path = tmp_path_factory.mktemp("small") / "data"
    with LocalServer(
        data,
        max_sandboxes_per_project=2,
        sandbox_idle_timeout_s=1.5,
        reaper_interval_s=0.2,
        sandbox_warm_pool=0,
    ) as running:
        yield running


def test_quota_evicts_the_least_recently_used_idle_sandbox(small_server: LocalServer) -> None:
    key = small_server.create_key("quota")
    with small_server.client(key) as client:
        first = execute(client, "1")["sandboxId"]
        second = execute(client, "1")["sandboxId"]
        execute(client, "1", sandboxId=first)  # first is now the most recently used
        third = execute(client, "1")["sandboxId"]
        gone = client.post("/api/iris/execute", json={"code": "1", "sandboxId": second})
        assert gone.status_code == 410
        assert gone.json()["reason"] == "evicted"
        assert execute(client, "2", sandboxId=first)["result"]["success"]
        status = client.get("/api/iris/sandbox", params={"sandboxId": third}).json()
        assert status["totalActive"] == 2


def test_quota_with_every_sandbox_busy_is_429(small_server: LocalServer) -> None:
    key = small_server.create_key("busy")

    def slow() -> dict[str, Any]:
        with small_server.client(key) as own:
            return execute(own, "await new Promise(r => setTimeout(r, 2500))")

    with small_server.client(key) as client, concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(slow) for _ in range(2)]
        time.sleep(1.0)
        response = client.post("/api/iris/execute", json={"code": "1"})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert "busy" in response.json()["message"]
        for future in busy:
            assert future.result()["result"]["success"]


def test_idle_sandboxes_are_reaped(small_server: LocalServer) -> None:
    key = small_server.create_key("idle")
    with small_server.client(key) as client:
        sandbox = execute(client, "1")["sandboxId"]
        deadline = time.monotonic() + 10
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
            if not status["active"]:
                break
            time.sleep(0.3)
        assert status["active"] is False
        assert status["status"] == "expired"
        gone = client.post("/api/iris/execute", json={"code": "1", "sandboxId": sandbox})
        assert gone.status_code == 410
        assert gone.json()["reason"] == "expired"
