"""Idempotent execute, the audit trail, and failing closed when a store is down."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
from iris_exec.adapters.dynamodb.ratelimit import DynamoRateLimitStore
from iris_exec.adapters.dynamodb.registry import DynamoSandboxRegistry
from iris_exec.adapters.dynamodb.tables import create_tables
from iris_exec.composition import Services
from iris_exec.composition.local import build_local
from iris_exec.http.app import create_app
from iris_exec.settings import Settings
from tests.support.api import execute
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.fakes import FakeProvider
from tests.support.server import LocalServer

COUNTING = (
    "import fs from 'fs';\n"
    "const n = fs.existsSync('runs') ? Number(fs.readFileSync('runs', 'utf8')) + 1 : 1;\n"
    "fs.writeFileSync('runs', String(n));\n"
    "return n;"
)


def post(server: LocalServer, key: str, body: dict[str, Any], idem: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": idem} if idem is not None else {}
    with server.client(key) as client:
        return client.post("/api/iris/execute", json=body, headers=headers)


def test_a_retried_post_returns_the_first_answer_and_runs_once(server: LocalServer) -> None:
    key = server.create_key("idem-retry")
    idem = f"order-{uuid.uuid4()}"
    first = post(server, key, {"code": COUNTING}, idem)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = post(server, key, {"code": COUNTING}, idem)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    sandbox = first.json()["sandboxId"]
    check = "import fs from 'fs';\nreturn Number(fs.readFileSync('runs', 'utf8'));"
    counted = execute(server, key, check, sandboxId=sandbox)
    assert counted["result"]["output"] == "=== Results ===\n1"  # the code ran once


def test_the_same_key_with_another_body_is_422(server: LocalServer) -> None:
    key = server.create_key("idem-mismatch")
    idem = f"k-{uuid.uuid4()}"
    assert post(server, key, {"code": "return 1"}, idem).status_code == 200
    other = post(server, key, {"code": "return 2"}, idem)
    assert other.status_code == 422
    body = other.json()
    assert body["error"] == "Unprocessable Entity"
    assert "different request body" in body["message"]


def test_a_key_in_flight_is_409_and_then_replays(server: LocalServer) -> None:
    key = server.create_key("idem-flight")
    idem = f"slow-{uuid.uuid4()}"
    slow = {"code": "await new Promise(r => setTimeout(r, 1500)); return 'slow';"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, server, key, slow, idem)
        time.sleep(0.5)
        busy = post(server, key, slow, idem)
        assert busy.status_code == 409
        assert "still running" in busy.json()["message"]
        assert first.result().status_code == 200
    replay = post(server, key, slow, idem)
    assert replay.headers["idempotent-replayed"] == "true"


def test_keys_are_per_project_and_errors_are_not_remembered(server: LocalServer) -> None:
    mine, theirs = server.create_key("idem-a"), server.create_key("idem-b")
    idem = f"shared-{uuid.uuid4()}"
    assert post(server, mine, {"code": "return 'a'"}, idem).status_code == 200
    their = post(server, theirs, {"code": "return 'b'"}, idem)
    assert their.status_code == 200 and "idempotent-replayed" not in their.headers
    assert their.json()["result"]["output"] == '=== Results ===\n"b"'
    # A request that failed (404) is not remembered: the retry is evaluated again.
    lost = {"code": "1", "sandboxId": "sb_nowhere000000"}
    fail_key = f"fail-{uuid.uuid4()}"
    assert post(server, mine, lost, fail_key).status_code == 404
    assert post(server, mine, lost, fail_key).status_code == 404
    bad = post(server, mine, {"code": "1"}, "has space")
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["message"]


def test_the_audit_trail_tells_who_did_what(server: LocalServer) -> None:
    key = server.create_key("audited")
    other = server.create_key("not-audited")
    with server.client(key) as client:
        ran = client.post("/api/iris/execute", json={"code": "console.log('hi'); return 1"})
        sandbox = ran.json()["sandboxId"]
        failed = client.post(
            "/api/iris/execute", json={"code": "throw new TypeError('x')", "sandboxId": sandbox}
        )
        assert failed.status_code == 200
        client.delete("/api/iris/sandbox", params={"sandboxId": sandbox})
        trail = client.get("/api/iris/audit").json()["events"]
        limited = client.get("/api/iris/audit", params={"limit": "2"}).json()["events"]
        assert client.get("/api/iris/audit", params={"limit": "0"}).status_code == 400
        assert client.get("/api/iris/audit", params={"since": "yesterday"}).status_code == 400
        later = client.get("/api/iris/audit", params={"since": "2099-01-01T00:00:00Z"}).json()
    kinds = [e["kind"] for e in trail]
    # An execution is stamped when it starts: the first one before its sandbox existed.
    assert kinds == ["sandbox.closed", "execution", "sandbox.created", "execution"]
    closed, failure, created, success = trail
    actor = created["actor"]
    assert actor.startswith("key_") and {e["actor"] for e in trail} == {actor}
    assert {e["sandboxId"] for e in trail} == {sandbox}
    assert success["outcome"] == "ok" and success["outputBytes"] == 3
    assert (failure["outcome"], failure["detail"]) == ("error", "TypeError")
    assert success["durationMs"] >= 0 and success["executionId"].startswith("ex_")
    assert closed["detail"] == "closed by request"
    assert [e["id"] for e in limited] == [closed["id"], failure["id"]]
    assert later["events"] == []
    with server.client(other) as client:
        assert client.get("/api/iris/audit").json()["events"] == []


@pytest.fixture
def dynamo_down() -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local of its own, to stop in the middle of a test."""
    with DynamoDBLocal() as dynamo:
        yield dynamo


@pytest.mark.anyio
async def test_when_dynamodb_stops_requests_fail_closed_with_503(
    dynamo_down: DynamoDBLocal, tmp_path: Path
) -> None:
    client = dynamo_down.client(connect_timeout=1, read_timeout=2, max_attempts=1)
    names = {"sandboxes": "sbx", "keys": "keys", "rate": "rate"}
    create_tables(client, names)
    settings = Settings(data_dir=tmp_path)
    local = build_local(settings, provider=FakeProvider(), signing_key=b"s" * 32)
    # The local services, with the registry, keys and rate limits on DynamoDB.
    adapters = replace(
        local.adapters,
        registry=DynamoSandboxRegistry(client, names["sandboxes"]),
        keys=DynamoKeyStore(client, names["keys"]),
        rate_limits=DynamoRateLimitStore(client, names["rate"]),
    )
    container = Services(settings, adapters)
    key, _ = container.auth.create_key("closed")
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
        assert (await http.post("/api/iris/execute", json={"code": "1"})).status_code == 200
        dynamo_down.kill()  # the key store and the rate limits are gone
        for response in (
            await http.post("/api/iris/execute", json={"code": "1"}),
            await http.get("/api/iris/sandbox", params={"sandboxId": "sb_12345678"}),
            await http.delete("/api/iris/sandbox", params={"all": "true"}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert "unavailable" in response.json()["message"]
            assert "127.0.0.1" not in response.text  # nothing internal
