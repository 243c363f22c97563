"""Hostile code is contained by the jail, and the server stays healthy meanwhile."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import pytest

from iris_exec.settings import Settings
from tests.support.api import execute, result_value
from tests.support.server import CANARY, ROOT, LocalServer


def run(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = execute(server, key, code, **fields)["result"]
    return result


def while_busy(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    """Run hostile code; while it runs, the server must keep answering other requests."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        hostile = pool.submit(run, server, key, code, **fields)
        time.sleep(0.3)
        with server.client(key) as client:
            assert client.get("/health").status_code == 200
        other = run(server, key, "return 6 * 7")
        assert result_value(other) == 42
        return hostile.result(timeout=120)


def test_infinite_loop_times_out(server: LocalServer, key: str) -> None:
    result = while_busy(server, key, "while (true) {}", timeoutMs=1500)
    assert result["success"] is False
    assert result["error"]["name"] == "TimeoutError"
    assert result["executionTime"] == 1500


def test_allocating_3_gb_is_out_of_memory(server: LocalServer, key: str) -> None:
    code = (
        "const chunks = [];\n"
        "for (let i = 0; i < 30; i++) chunks.push(Buffer.alloc(100 * 2 ** 20, 1));\n"
        "return chunks.length;"
    )
    result = while_busy(server, key, code)
    assert result["success"] is False
    assert result["error"]["name"] == "OutOfMemoryError"


def test_javascript_heap_exhaustion_is_out_of_memory(server: LocalServer, key: str) -> None:
    result = run(server, key, "const a = []; for (;;) a.push(new Array(1e6).fill(1.5));")
    assert result["error"]["name"] == "OutOfMemoryError"


def test_the_javascript_heap_is_three_quarters_of_the_sandbox_memory(
    server: LocalServer, key: str
) -> None:
    """Sized from the memory the jail shows Node (not a V8 flag, which would make Node
    compile its own modules afresh at every start): V8's heap gives out before the cgroup
    kills, at the same size as ever."""
    code = (
        "const v8 = require('v8');\n"
        "return [v8.getHeapStatistics().heap_size_limit / 2 ** 20, process.execArgv];"
    )
    limit_mib, flags = result_value(run(server, key, code))
    wanted = Settings().sandbox_memory_mb * 3 // 4
    assert wanted <= limit_mib <= wanted + 64  # the old space, and the young generation
    assert not any("max-old-space-size" in flag for flag in flags)


def test_spawning_processes_without_end_is_capped(server: LocalServer, key: str) -> None:
    code = (
        "import { spawn } from 'node:child_process';\n"
        "let started = 0;\n"
        "for (let i = 0; i < 2000; i++) {\n"
        "  const child = spawn('sleep', ['100']);\n"
        "  child.on('error', () => {});\n"
        "  if (child.pid) started++;\n"
        "}\n"
        "return started;"
    )
    result = while_busy(server, key, code)
    assert result["success"] is True, result
    assert 0 < result_value(result) < 256  # the per-sandbox process cap held


def test_filling_the_disk_stops_at_the_sandbox_quota(server: LocalServer, key: str) -> None:
    code = (
        "import fs from 'node:fs';\n"
        "const block = Buffer.alloc(2 ** 20, 1);\n"
        "let written = 0;\n"
        "try {\n"
        "  for (let i = 0; i < 10240; i++) { fs.appendFileSync('big.bin', block); written++; }\n"
        "}\n"
        "catch (e) { fs.rmSync('big.bin'); return { code: e.code, written }; }\n"
        "return { written };"
    )
    result = while_busy(server, key, code)
    assert result["success"] is True, result
    outcome = result_value(result)
    assert outcome["code"] == "ENOSPC"
    assert outcome["written"] <= 512


def test_printing_100_mb_is_truncated_and_flagged(server: LocalServer, key: str) -> None:
    code = (
        "const line = 'y'.repeat(1023) + '\\n';\n"
        "for (let i = 0; i < 100 * 1024; i++) process.stdout.write(line);\n"
        "return 'finished';"
    )
    result = while_busy(server, key, code)
    assert result["success"] is False
    assert result["error"]["name"] == "OutputLimitError"
    assert result["metadata"]["outputTruncated"] is True
    printed = sum(len(line) - len("[stdout] ") for line in result["logs"])
    assert 1_000_000 <= printed <= 1024 * 1024


@pytest.mark.parametrize(
    "code",
    [
        "import net from 'node:net';\n"
        "return await new Promise((resolve) => {\n"
        "  const socket = net.connect(PORT, '127.0.0.1');\n"
        "  socket.on('connect', () => resolve('connected'));\n"
        "  socket.on('error', (e) => resolve(e.code));\n"
        "});",
        "try { await fetch('http://127.0.0.1:PORT/health'); return 'connected'; }\n"
        "catch (e) { return e.cause?.code ?? String(e); }",
    ],
    ids=["net.connect", "fetch"],
)
def test_no_network_to_the_host(server: LocalServer, key: str, code: str) -> None:
    result = run(server, key, code.replace("PORT", str(server.port)))
    assert result["success"] is True, result
    assert result_value(result) in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"}


def test_host_files_and_environment_are_invisible(server: LocalServer, key: str) -> None:
    code = (
        "import fs from 'node:fs';\n"
        f"const paths = [{json.dumps(str(ROOT))}, {json.dumps(str(server.data_dir))},"
        f" {json.dumps(str(server.data_dir / 'iris.db'))}, '/root', '/etc/shadow', '/sys/class',"
        " '/sys/kernel', '/sys/fs/cgroup/memory/memory.usage_in_bytes'];\n"
        "const sys = fs.readdirSync('/sys', { recursive: true }).sort();\n"
        "return {\n"
        "  visible: paths.filter((p) => fs.existsSync(p)),\n"
        "  sys,\n"
        "  env: process.env,\n"
        "  processes: fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).length,\n"
        "  passwd: fs.readFileSync('/etc/passwd', 'utf8'),\n"
        "  uid: process.getuid(),\n"
        "};"
    )
    result = run(server, key, code)
    seen = result_value(result)
    assert seen["visible"] == []
    # No sysfs of the host's: only the memory figure Node sizes its heap from.
    assert seen["sys"] == [
        "fs", "fs/cgroup", "fs/cgroup/memory", "fs/cgroup/memory.high", "fs/cgroup/memory.max",
        "fs/cgroup/memory/memory.limit_in_bytes", "fs/cgroup/memory/memory.soft_limit_in_bytes",
    ]  # fmt: skip
    assert set(seen["env"]) <= {"HOME", "USER", "PATH", "LANG", "TZ", "PWD"}
    assert CANARY not in json.dumps(seen)
    assert seen["processes"] <= 3  # only the jail's own processes
    assert seen["passwd"].startswith("user:x:1000:")
    assert seen["uid"] == 1000


def test_server_is_still_healthy_after_all_that(server: LocalServer, key: str) -> None:
    result = run(server, key, "return 'still here'")
    assert result_value(result) == "still here"
