"""Faults with real parts: the server killed in the middle of an execution, and the tool
store going down while code runs."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import execute
from tests.support.postgres import PostgresServer
from tests.support.server import LocalServer


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (e.g. a server's runtime dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def runtime_dir(server: LocalServer) -> str:
    """Where that server keeps its jails (see LocalSandboxProvider.runtime)."""
    instance = hashlib.sha256(str(server.data_dir.resolve()).encode()).hexdigest()[:10]
    return f"/run/iris-exec/{instance}" if os.geteuid() == 0 else str(server.data_dir / "run")


def test_a_server_killed_mid_execution_leaves_nothing_running_and_recovers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = LocalServer(data).start()
    key = first.create_key("crash")
    sandbox = execute(first, key, "import fs from 'fs'; fs.writeFileSync('kept', '1');")[
        "sandboxId"
    ]
    jails = runtime_dir(first)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        spinning = pool.submit(
            execute, first, key, "while (true) {}", sandboxId=sandbox, timeoutMs=120_000
        )
        time.sleep(1.0)
        assert processes_mentioning(jails)  # the spinning jail is there
        assert first.proc is not None
        first.proc.kill()  # SIGKILL: no cleanup of any kind
        first.proc.wait()
        with pytest.raises(httpx.TransportError):
            spinning.result(timeout=30)  # the connection died with the server
    deadline = time.monotonic() + 10
    while processes_mentioning(jails) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(jails) == []  # every jail died with its server
    first.stop()

    with LocalServer(data) as second:
        with second.client(key) as client:
            status = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
            assert status["active"] is False
            assert status["status"] == "failed"
            reuse = client.post("/api/iris/execute", json={"code": "1", "sandboxId": sandbox})
            assert reuse.status_code == 410 and reuse.json()["reason"] == "failed"
            fresh = client.post("/api/iris/execute", json={"code": "return 'back'"})
            assert fresh.json()["result"]["output"] == '=== Results ===\n"back"'
        leftover = sorted(p.name for p in Path(jails, "jails").iterdir())
        assert len(leftover) <= 2  # the new server's own jails only (pool + the one just used)


@pytest.fixture
def doomed_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    server.migrate()
    yield server
    server.stop()


def test_the_tool_store_going_down_is_a_tool_error_not_a_crash(
    tmp_path: Path, doomed_postgres: PostgresServer
) -> None:
    settings = {"tool_store": "postgres", "database_url": doomed_postgres.dsn}
    with LocalServer(tmp_path / "data", **settings) as server:
        key = server.create_key("tools-down")
        code = (
            "import { iris } from './iris-prime';\n"
            "try { await iris.logEvent('still-here'); return 'stored'; }\n"
            "catch (e) { return [e.name, e.message]; }"
        )
        assert execute(server, key, code)["result"]["output"] == '=== Results ===\n"stored"'
        doomed_postgres.stop()
        answer = execute(server, key, code)
        assert answer["result"]["success"] is True  # the code saw an error it could handle
        name, message = json.loads(answer["result"]["output"].removeprefix("=== Results ===\n"))
        assert name == "IrisToolError"
        assert "unavailable" in message
        assert "postgres" not in answer["result"]["output"].lower()  # nothing internal
        assert execute(server, key, "return 1 + 1")["result"]["output"] == "=== Results ===\n2"
        with server.client(key) as client:
            assert client.get("/health").status_code == 200
