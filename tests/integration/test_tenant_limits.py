"""One tenant cannot make the shared parts spend without bound (issue 18, the store's half):
each attack runs on a real server with real jails, while a bystander project's trivial
execution is checked during and after it."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import execute
from tests.support.server import LocalServer

FINAL = {"succeeded", "failed", "timed_out"}
MIB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("tenants") / "data"
    with LocalServer(data, execution_heartbeat_s=1, rate_limit_per_minute=1000) as running:
        yield running


def stored_bytes(data_dir: Path) -> int:
    """The local database's bytes on disk (the file and its write-ahead log)."""
    return sum(p.stat().st_size for p in data_dir.glob("*.db*"))


def bystander_ok(server: LocalServer, key: str) -> None:
    answer = execute(server, key, "return 6 * 7")
    assert answer["success"], answer
    assert answer["result"]["output"].startswith("=== Results ===\n42")


def wait_final(server: LocalServer, key: str, execution_id: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    with server.client(key) as client:
        while time.monotonic() < deadline:
            body = client.get(f"/api/iris/executions/{execution_id}", params={"limit": 1}).json()
            if body["status"] in FINAL:
                return body
            time.sleep(0.5)
    raise AssertionError(f"{execution_id} did not finish")


def test_a_megabyte_of_newlines_is_stored_in_about_a_megabyte(server: LocalServer) -> None:
    """1 MiB of bare newlines is a million log lines: kept one row per line (and again in
    the stored answer) it cost ~120 MB of SQLite per execution; now a few MB, and a reader
    still pages through every line with the cursor."""
    attacker, bystander = server.create_key("flood-logs"), server.create_key("bystander-logs")
    bystander_ok(server, bystander)
    before = stored_bytes(server.data_dir)
    code = 'process.stdout.write("\\n".repeat(1024 * 1024 - 16)); return "done";'
    with server.client(attacker) as client:
        submitted = client.post("/api/iris/execute", json={"code": code, "async": True})
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        final = pool.submit(wait_final, server, attacker, execution_id)
        bystander_ok(server, bystander)  # during
        body = final.result()
    bystander_ok(server, bystander)  # after
    assert body["status"] == "succeeded", body
    lines = 1024 * 1024 - 16
    assert len(body["result"]["logs"]) == lines
    assert body["result"]["logs"][:2] == ["[stdout] ", "[stdout] "]
    grown = stored_bytes(server.data_dir) - before
    assert grown < 6 * MIB, f"{grown} bytes stored for 1 MiB printed"
    with server.client(attacker) as client:
        page = client.get(
            f"/api/iris/executions/{execution_id}", params={"after": 500_000, "limit": 10_000}
        ).json()
        assert page["logs"] == ["[stdout] "] * 10_000 and page["cursor"] == 510_000
        last = client.get(
            f"/api/iris/executions/{execution_id}", params={"after": lines - 3}
        ).json()
        assert last["logs"] == ["[stdout] "] * 3 and last["cursor"] == lines
