"""`"keepState": true`: a sandbox keeps one live runner per language, as a notebook keeps its
kernel. Real jails, a real server: what one execution declares, the next sees; a runner lost
to a limit or an exit is replaced, and the next answer says so; nothing of one execution
runs into the next; no state crosses sandboxes or projects."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iris_exec.domain.errors import BadRequest
from iris_exec.domain.models import Principal
from iris_exec.services.clock import system_clock
from iris_exec.services.commands import ExecuteCommand
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider
from tests.support.server import LocalServer, processes_with, wait_until_gone

MEMORY_MB = 256


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("keep-state") / "data"
    with LocalServer(data, sandbox_memory_mb=MEMORY_MB, rate_limit_per_minute=100_000) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: LocalServer) -> str:
    return server.create_key("keeper")


def run(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text[:500]
    answer: dict[str, Any] = response.json()
    return answer


def kept(server: LocalServer, key: str, code: str, sandbox: str | None, **fields: Any) -> Any:
    """Run with keepState; the result (which must say the state was kept)."""
    extra = {"sandboxId": sandbox} if sandbox else {}
    answer = run(server, key, code, keepState=True, **extra, **fields)
    result: dict[str, Any] = answer["result"]
    result["sandboxId"] = answer["sandboxId"]
    return result


def value(result: dict[str, Any]) -> Any:
    assert result["success"] is True, result
    assert result["metadata"]["stateReset"] is False, result["metadata"]
    return result.get("returnValue")


# -- state persists --------------------------------------------------------------------------


def test_typescript_declarations_imports_and_globals_persist(server: LocalServer, key: str) -> None:
    first = kept(
        server,
        key,
        "import { join } from 'node:path';\nimport * as os from 'node:os';\n"
        "const base: number = 40;\nlet count = 0;\nconst { a, b: [c] } = { a: 1, b: [2] };\n"
        "function bump(by: number): number { count += by; return count; }\n"
        "class Box<T> { constructor(public v: T) {} }\n"
        "globalThis.shared = 'g';\n"
        "await new Promise((r) => setTimeout(r, 5));\nreturn bump(base + a + c - 1);",
        None,
    )
    assert value(first) == 42
    assert first["metadata"]["stateReset"] is False
    sandbox = first["sandboxId"]
    second = kept(
        server,
        key,
        "const box = new Box(bump(1));\n"
        "return [count, box.v, join('x', 'y'), typeof os.cpus, shared, base];",
        sandbox,
    )
    assert value(second) == [43, 43, "x/y", "function", "g", 40]
    # Declared again: the new value (a REPL, not a module that refuses a second `const`).
    assert value(kept(server, key, "const base = 1;\nreturn base + count;", sandbox)) == 44


def test_javascript_state_persists_and_return_ends_the_code(server: LocalServer, key: str) -> None:
    first = kept(
        server,
        key,
        "let items = [];\nfunction add(x) { items.push(x); return items.length; }\nadd('a');\n"
        "if (items.length === 1) return 'early';\nreturn 'late';",
        None,
        language="javascript",
    )
    assert value(first) == "early"
    again = kept(server, key, "add('b');\nreturn items;", first["sandboxId"], language="javascript")
    assert value(again) == ["a", "b"]


def test_python_state_persists(server: LocalServer, key: str) -> None:
    first = kept(
        server,
        key,
        "import asyncio, math\nfrom collections import Counter\n"
        "seen = Counter('abca')\nlock = asyncio.Lock()\n"
        "def area(r):\n    return round(math.pi * r * r, 2)\n"
        "class Point:\n    def __init__(self, x): self.x = x\n"
        "async with lock:\n    await asyncio.sleep(0.01)\n"
        "try:\n    return area(1)\nfinally:\n    total = 10",
        None,
        language="python",
    )
    assert value(first) == 3.14
    sandbox = first["sandboxId"]
    second = kept(
        server,
        key,
        "async with lock:  # the same event loop: asyncio objects of an earlier run work\n"
        "    pass\ntotal += 1\n"
        "return [seen['a'], area(2), Point(total).x, __name__]",
        sandbox,
        language="python",
    )
    assert value(second) == [2, 12.57, 11, "__main__"]
    # One runner per language: Python's names are not TypeScript's.
    assert value(kept(server, key, "return typeof total", sandbox)) == "undefined"


def test_an_error_of_the_code_keeps_the_state(server: LocalServer, key: str) -> None:
    first = kept(server, key, "const kept = 'yes';\nthrow new TypeError('boom');", None)
    assert first["success"] is False and first["error"]["name"] == "TypeError"
    sandbox = first["sandboxId"]
    syntax = kept(server, key, "const = ;", sandbox)
    assert syntax["error"]["name"] == "SyntaxError"
    assert value(kept(server, key, "return kept", sandbox)) == "yes"
    py = kept(server, key, "x = 5\nraise ValueError('no')", sandbox, language="python")
    assert py["error"]["name"] == "ValueError"
    assert value(kept(server, key, "return x", sandbox, language="python")) == 5


def test_without_keep_state_every_execution_is_fresh(server: LocalServer, key: str) -> None:
    first = kept(server, key, "globalThis.mark = 1;\nconst kept = 2;\nreturn 0", None)
    sandbox = first["sandboxId"]
    fresh = run(server, key, "return [typeof mark, typeof kept]", sandboxId=sandbox)["result"]
    assert fresh["returnValue"] == ["undefined", "undefined"]
    assert "stateReset" not in fresh["metadata"]
    # ...and the kept runner is still there for the next keepState execution.
    assert value(kept(server, key, "return [mark, kept]", sandbox)) == [1, 2]


# -- resets ----------------------------------------------------------------------------------


def reset_after(server: LocalServer, key: str, code: str, reason: str, **fields: Any) -> None:
    first = kept(server, key, "const before = 'kept';\nreturn before", None, **fields)
    sandbox = first["sandboxId"]
    lost = kept(server, key, code, sandbox, **fields)
    assert lost["success"] is False, lost
    after = kept(server, key, "return typeof before", sandbox, **fields)
    assert after["success"] is True, after
    assert after["metadata"]["stateReset"] is True
    assert after["metadata"]["stateResetReason"] == reason
    assert after["returnValue"] == "undefined"
    # Said once: the new runner keeps its own state from then on.
    assert value(kept(server, key, "const again = 1;\nreturn again", sandbox, **fields)) == 1
    assert value(kept(server, key, "return again", sandbox, **fields)) == 1


def test_a_timeout_resets_the_state(server: LocalServer, key: str) -> None:
    reset_after(server, key, "while (true) {}", "timeout", timeoutMs=1000)


def test_running_out_of_memory_resets_the_state(server: LocalServer, key: str) -> None:
    reset_after(
        server,
        key,
        "const chunks = [];\nfor (;;) chunks.push(Buffer.alloc(16 * 2 ** 20, 1));",
        "memory",
    )


def test_process_exit_resets_the_state(server: LocalServer, key: str) -> None:
    reset_after(server, key, "process.exit(3);", "exit")


def test_python_exit_and_memory_reset_the_state(server: LocalServer, key: str) -> None:
    sandbox = kept(server, key, "before = 1", None, language="python")["sandboxId"]
    assert kept(server, key, "raise SystemExit(2)", sandbox, language="python")["success"] is False
    after = kept(server, key, "return 'before' in globals()", sandbox, language="python")
    assert after["metadata"]["stateResetReason"] == "exit" and after["returnValue"] is False
    hog = kept(server, key, "x = bytearray(1024 * 2**20)", sandbox, language="python")
    assert hog["metadata"]["limitHit"] == "memory"
    after = kept(server, key, "return 1", sandbox, language="python")
    assert after["metadata"]["stateResetReason"] == "memory"


def test_a_crash_resets_the_state(server: LocalServer, key: str) -> None:
    reset_after(server, key, "process.kill(process.pid, 'SIGKILL');", "crash")


# -- nothing of one execution runs into the next ---------------------------------------------


def test_timers_and_promises_of_an_execution_do_not_run_in_the_next(
    server: LocalServer, key: str
) -> None:
    first = kept(
        server,
        key,
        "import { setTimeout as sleep } from 'node:timers/promises';\n"
        "globalThis.ticks = 0;\nsetInterval(() => { ticks++; console.log('tick'); }, 5);\n"
        "setTimeout(() => console.log('late'), 100);\nsetImmediate(() => console.log('soon'));\n"
        "sleep(50).then(() => console.log('promise'));\n"
        "await new Promise((r) => setTimeout(r, 30));\nreturn ticks > 0;",
        None,
    )
    assert value(first) is True
    second = kept(
        server,
        key,
        "const seen = ticks;\nawait new Promise((r) => setTimeout(r, 200));\nreturn ticks - seen;",
        first["sandboxId"],
    )
    assert value(second) == 0
    assert second["logs"] == []


def test_child_processes_and_servers_are_gone_after_an_execution(
    server: LocalServer, key: str
) -> None:
    first = kept(
        server,
        key,
        "import { spawn } from 'node:child_process';\nimport net from 'node:net';\n"
        "globalThis.child = spawn('sleep', ['612']);\n"
        "globalThis.srv = net.createServer().listen(4567);\n"
        "await new Promise((r) => setTimeout(r, 100));\nreturn child.pid > 0;",
        None,
    )
    assert value(first) is True
    assert wait_until_gone(b"sleep\x00612\x00") == []
    second = kept(
        server,
        key,
        "import net from 'node:net';\n"
        "return await new Promise((resolve) => {\n"
        "  const s = net.createServer().listen(4567, () => { s.close(); resolve('port free'); });\n"
        "  s.on('error', (e) => resolve(e.code));\n});",
        first["sandboxId"],
    )
    assert value(second) == "port free"


def test_python_tasks_are_cancelled_and_a_live_thread_means_a_new_runner(
    server: LocalServer, key: str
) -> None:
    first = kept(
        server,
        key,
        "import asyncio\nhits = []\n"
        "async def forever():\n    while True:\n        hits.append(1)\n"
        "        await asyncio.sleep(0.01)\n"
        "task = asyncio.get_running_loop().create_task(forever())\n"
        "await asyncio.sleep(0.05)\nreturn len(hits) > 0",
        None,
        language="python",
    )
    assert value(first) is True
    sandbox = first["sandboxId"]
    second = kept(
        server,
        key,
        "import time\nseen = len(hits)\ntime.sleep(0.2)\nawait asyncio.sleep(0.1)\n"
        "return [len(hits) - seen, task.cancelled()]",
        sandbox,
        language="python",
    )
    assert value(second) == [0, True]
    threaded = kept(
        server,
        key,
        "import threading, time\n"
        "threading.Thread(target=lambda: time.sleep(600), daemon=True).start()\nreturn 'started'",
        sandbox,
        language="python",
    )
    assert value(threaded) == "started"
    after = kept(server, key, "return 'hits' in globals()", sandbox, language="python")
    assert after["metadata"]["stateReset"] is True
    assert after["metadata"]["stateResetReason"] == "busy"
    assert after["returnValue"] is False


def test_output_limits_count_per_execution(server: LocalServer, key: str) -> None:
    """A kept runner's output is counted from zero at each execution, as a fresh one's."""
    sandbox = None
    for _ in range(3):
        result = kept(server, key, "console.log('x'.repeat(400 * 1024));\nreturn 1", sandbox)
        assert value(result) == 1
        sandbox = result["sandboxId"]


# -- isolation and lifetime ------------------------------------------------------------------


def test_no_state_is_shared_between_sandboxes_or_projects(server: LocalServer, key: str) -> None:
    mine = kept(server, key, "globalThis.secret = 's3';\nconst hidden = 1;\nreturn 1", None)
    value(mine)
    other_sandbox = kept(server, key, "return [typeof secret, typeof hidden]", None)
    assert value(other_sandbox) == ["undefined", "undefined"]
    other_key = server.create_key("keeper-other")
    other_project = kept(server, other_key, "return [typeof secret, typeof hidden]", None)
    assert value(other_project) == ["undefined", "undefined"]
    py = kept(server, key, "secret = 'p'", None, language="python")
    other_py = kept(server, other_key, "return 'secret' in globals()", None, language="python")
    assert value(other_py) is False
    # Another project naming my sandbox: the contract's 404, no state reached.
    with server.client(other_key) as client:
        response = client.post(
            "/api/iris/execute",
            json={"code": "return secret", "keepState": True, "sandboxId": py["sandboxId"]},
        )
    assert response.status_code == 404


def test_closing_the_sandbox_ends_its_kept_runners(server: LocalServer, key: str) -> None:
    result = kept(server, key, "process.title = 'iris_kept_marker_5e1';\nreturn 1", None)
    value(result)
    assert processes_with(b"iris_kept_marker_5e1") != []
    with server.client(key) as client:
        closed = client.delete("/api/iris/sandbox", params={"sandboxId": result["sandboxId"]})
    assert closed.status_code == 200
    assert wait_until_gone(b"iris_kept_marker_5e1") == []


def test_mcp_execute_code_keeps_state(server: LocalServer, key: str) -> None:
    def call(arguments: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            server.url + "/mcp",
            headers={
                "authorization": f"Bearer {key}",
                "accept": "application/json, text/event-stream",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "executeCode", "arguments": arguments},
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        structured: dict[str, Any] = response.json()["result"]["structuredContent"]
        return structured

    first = call({"code": "const n = 20;\nreturn n", "keepState": True})
    assert first["returnValue"] == 20
    second = call({"code": "return n + 1", "keepState": True, "sandboxId": first["sandboxId"]})
    assert second["returnValue"] == 21
    assert second["metadata"]["stateReset"] is False
    refused = httpx.post(
        server.url + "/mcp",
        headers={"authorization": f"Bearer {key}", "accept": "application/json"},
        json={
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "executeCode", "arguments": {"code": "1", "keepState": "yes"}},
        },
        timeout=60,
    ).json()
    assert refused["result"]["isError"] is True
    assert "keepState" in json.dumps(refused["result"]["content"])


def test_keep_state_must_be_a_boolean(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": "1", "keepState": 1})
    assert response.status_code == 400
    assert "keepState" in response.json()["message"]


def test_a_provider_that_cannot_keep_state_refuses_before_taking_a_sandbox(
    tmp_path: Path,
) -> None:
    """Not silently fresh: a 400 before any sandbox is created."""
    container = fake_container(tmp_path, FakeProvider(), system_clock)
    principal = Principal("p", "k")
    command = ExecuteCommand(code="return 1", language="typescript", timeout_s=5, keep_state=True)
    with pytest.raises(BadRequest, match="keepState is not available with the 'fake'"):
        asyncio.run(container.executions.execute(principal, command))
    assert container.adapters.registry.list_live("p", time.time()) == []


def test_worker_threads_and_file_watchers_are_stopped(server: LocalServer, key: str) -> None:
    first = kept(
        server,
        key,
        "import { Worker } from 'node:worker_threads';\nimport fs from 'node:fs';\n"
        "fs.writeFileSync('watched.txt', 'a');\nglobalThis.events = 0;\n"
        "fs.watch('watched.txt', () => { events++; });\n"
        "globalThis.worker = new Worker("
        '\'setInterval(() => require("node:fs").appendFileSync("beat.txt", "b"), 5)\','
        " { eval: true });\n"
        "// A worker takes a while to start on a busy machine: wait for its first beat.\n"
        "for (let i = 0; i < 500 && !fs.existsSync('beat.txt'); i++)"
        " await new Promise((r) => setTimeout(r, 20));\n"
        "return fs.readFileSync('beat.txt', 'utf8').length > 0;",
        None,
    )
    assert value(first) is True
    second = kept(
        server,
        key,
        "import fs from 'node:fs';\nconst beats = fs.readFileSync('beat.txt', 'utf8').length;\n"
        "const seen = events;\nfs.writeFileSync('watched.txt', 'b');\n"
        "await new Promise((r) => setTimeout(r, 200));\n"
        "return [fs.readFileSync('beat.txt', 'utf8').length - beats, events - seen];",
        first["sandboxId"],
    )
    assert value(second) == [0, 0]


def test_a_promise_that_never_settles_ends_as_in_a_fresh_run(server: LocalServer, key: str) -> None:
    code = "console.log('waiting');\nawait new Promise(() => {});\nreturn 'never';"
    fresh = run(server, key, code, timeoutMs=10_000)["result"]
    kept_run = kept(server, key, code, None, timeoutMs=10_000)
    assert fresh["success"] is kept_run["success"] is True
    assert fresh["output"] == kept_run["output"] == "=== Output ===\nwaiting"
    assert value(kept(server, key, "return 'still here'", kept_run["sandboxId"])) == "still here"


def test_an_asynchronous_execution_keeps_state_too(server: LocalServer, key: str) -> None:
    with server.client(key) as client:
        started = client.post(
            "/api/iris/execute",
            json={"code": "const fromAsync = 'a';\nreturn 1", "keepState": True, "async": True},
        )
        assert started.status_code == 202, started.text
        body = started.json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            polled = client.get(f"/api/iris/executions/{body['executionId']}").json()
            if polled["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
    assert polled["status"] == "succeeded", polled
    assert polled["result"]["metadata"]["stateReset"] is False
    assert value(kept(server, key, "return fromAsync", body["sandboxId"])) == "a"


def test_typescript_declaration_forms_are_kept(server: LocalServer, key: str) -> None:
    first = kept(
        server,
        key,
        "import type { ParsedPath } from 'node:path';\nimport path = require('node:path');\n"
        "import def, { sep as separator } from 'node:path';\nimport 'node:os';\n"
        "let later!: string;\nexport const exported: number = 1;\n"
        "const { a = 5, ...rest } = { b: 2, c: 3 } as Record<string, number>;\n"
        "const [first, , third = 9] = [1, 2];\n"
        "export default function named(): string { return 'named'; }\n"
        "enum Color { Red, Green }\nabstract class Shape { abstract area(): number; }\n"
        "class Square extends Shape { constructor(private s: number) { super(); }"
        " area() { return this.s ** 2; } }\n"
        "declare const ambient: number;\nlet parsed: ParsedPath | null = null;\n"
        "later = 'set';\nreturn 'ok';",
        None,
    )
    assert value(first) == "ok"
    second = kept(
        server,
        key,
        "return [typeof path.join, def.sep, separator, later, exported, a, rest, first, third,"
        " named(), Color.Green, new Square(3).area(), parsed, typeof ambient];",
        first["sandboxId"],
    )
    assert value(second) == [
        "function", "/", "/", "set", 1, 5, {"b": 2, "c": 3}, 1, 9, "named", 1, 9, None, "undefined"
    ]  # fmt: skip


def test_the_iris_tools_work_in_every_kept_execution(server: LocalServer, key: str) -> None:
    """Each execution has its own token: a kept runner's module is re-initialized for each."""
    ts = "import { iris, context } from './iris-prime';\n" \
        "return [(await iris.logEvent('kept-ts')).event, context.n];"  # fmt: skip
    py = "from iris_prime import iris, context\nreturn [iris.log_event('kept-py')['event'], context['n']]"
    sandbox = None
    for n in (1, 2, 3):
        result = kept(server, key, ts, sandbox, context={"n": n})
        assert value(result) == ["kept-ts", n]
        sandbox = result["sandboxId"]
        result = kept(server, key, py, sandbox, context={"n": n}, language="python")
        assert value(result) == ["kept-py", n]


def test_a_fork_bomb_left_behind_does_not_outlive_its_execution(
    server: LocalServer, key: str
) -> None:
    first = kept(
        server,
        key,
        "import { spawn } from 'node:child_process';\n"
        "spawn('/bin/bash', ['-c', 'iris_bomb_k9e() { iris_bomb_k9e | iris_bomb_k9e & };"
        " iris_bomb_k9e; sleep 30'], { detached: true, stdio: 'ignore' });\n"
        "await new Promise((r) => setTimeout(r, 50));\nreturn 'left';",
        None,
    )
    assert value(first) == "left"
    assert wait_until_gone(b"iris_bomb_k9e") == []
    after = kept(server, key, "return 'next'", first["sandboxId"])
    assert after["success"] is True and after["returnValue"] == "next"
    if after["metadata"]["stateReset"]:
        assert after["metadata"]["stateResetReason"] == "busy"


def test_stopping_the_server_ends_its_kept_runners(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data", rate_limit_per_minute=100_000) as own:
        own_key = own.create_key("stopper")
        result = kept(own, own_key, "process.title = 'iris_kept_marker_7c2';\nreturn 1", None)
        value(result)
        assert processes_with(b"iris_kept_marker_7c2") != []
    assert wait_until_gone(b"iris_kept_marker_7c2") == []


def test_a_process_that_continues_its_runner_cannot_outrun_the_pause(
    server: LocalServer, key: str
) -> None:
    # The code's children send SIGCONT to the runner as fast as they can: between the
    # runner's SIGSTOP and their own SIGKILL they would wake it, and the runner (here a
    # thread of it) would run on between executions.
    armed = kept(
        server,
        key,
        "import os, signal, threading, time\n"
        "def beat():\n    while True:\n"
        "        with open('beat.new', 'w') as f:\n            f.write(repr(time.time()))\n"
        "        os.replace('beat.new', 'beat.txt')\n        time.sleep(0.02)\n"
        "threading.Thread(target=beat, daemon=True).start()\n"
        "runner = os.getpid()\n"
        "for _ in range(4):\n    if os.fork() == 0:\n        while True:\n"
        "            os.kill(runner, signal.SIGCONT)\n"
        "time.sleep(0.1)\nreturn 'armed'",
        None,
        language="python",
    )
    answered = time.time()
    assert armed["success"] is True, armed
    time.sleep(2.5)
    read = run(
        server,
        key,
        "with open('beat.txt') as f:\n    return float(f.read())",
        language="python",
        sandboxId=armed["sandboxId"],
    )
    assert read["result"]["success"] is True, read["result"]
    last_beat = read["result"]["returnValue"]
    # Nothing of the runner ran after its answer (beyond a moment for the pause to land).
    assert last_beat < answered + 0.5, last_beat - answered


def test_closing_the_sandbox_while_a_kept_execution_waits_leaves_no_runner(
    server: LocalServer, key: str
) -> None:
    # A fresh run forges its end and runs on: the next execution waits (up to a second) for
    # it to be gone. The sandbox is closed during that wait: the kept execution must not
    # then start a runner in it that nothing ends.
    marker = "iris_late_kept_" + str(time.time_ns())[-6:]
    forged = run(
        server,
        key,
        "require('node:fs').writeSync(3, JSON.stringify({ t: 'result', ok: true }) + '\\n');\n"
        "await new Promise((r) => setTimeout(r, 5000));",
        language="javascript",
    )
    sandbox = forged["sandboxId"]
    answers: list[httpx.Response] = []

    def late_kept() -> None:
        with server.client(key) as client:
            answers.append(
                client.post(
                    "/api/iris/execute",
                    json={
                        "code": f"process.title = '{marker}';\nreturn 1",
                        "sandboxId": sandbox,
                        "keepState": True,
                    },
                )
            )

    waiting = threading.Thread(target=late_kept)
    waiting.start()
    time.sleep(0.3)
    with server.client(key) as client:
        closed = client.delete("/api/iris/sandbox", params={"sandboxId": sandbox})
    waiting.join(30)
    assert closed.status_code == 200
    assert [a.status_code for a in answers] == [410], [a.text for a in answers]
    assert wait_until_gone(marker.encode()) == []


def test_the_code_cannot_claim_a_limit_it_did_not_hit(server: LocalServer, key: str) -> None:
    """limitHit is the service's reading: a runner's "limit" frame written by the code, or
    Node's out-of-memory words printed by a program that then answers, are not one. Kept or
    fresh, the answer is the code's own, and a kept runner stays."""
    forged_limit = (
        "require('node:fs').writeSync(3, JSON.stringify({ t: 'limit', kind: 'output' }) + '\\n');\n"
    )
    forged_heap = (
        "console.error('FATAL ERROR: Reached heap limit - JavaScript heap out of memory');\n"
    )
    for keep in (False, True):
        for forged in (forged_limit, forged_heap):
            answer = run(server, key, forged + "return 7", language="javascript", keepState=keep)[
                "result"
            ]
            assert answer["success"] is True, answer
            assert answer["returnValue"] == 7
            assert "limitHit" not in answer["metadata"], answer["metadata"]
    sandbox = kept(server, key, forged_limit + "globalThis.still = 1;\nreturn 1", None)
    after = kept(server, key, "return still", sandbox["sandboxId"])
    assert value(after) == 1


#: Code that says it ran out of memory without coming near the limit (256 MiB): the claim
#: thrown or raised, an allocation larger than the machine (refused at once, using nothing),
#: Node's heap-exhaustion words printed before an abort. (language, code, the error name the
#: answer gives: the code's own, or None for a process that ended without an answer.)
FORGED_OUT_OF_MEMORY = [
    ("javascript", "throw new RangeError('Array buffer allocation failed');", "RangeError"),
    ("javascript", "const huge = new ArrayBuffer(2 ** 40);", "RangeError"),
    (
        "javascript",
        "console.error('FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap"
        " out of memory');\nprocess.abort();",
        None,
    ),
    ("python", "raise MemoryError()", "MemoryError"),
    ("python", "huge = bytearray(10**13)", "MemoryError"),
]


@pytest.mark.parametrize(("language", "code", "error"), FORGED_OUT_OF_MEMORY)
def test_the_code_cannot_claim_it_ran_out_of_memory(
    server: LocalServer, key: str, language: str, code: str, error: str | None
) -> None:
    """limitHit "memory" is the host's reading (the cgroup's OOM kills, or a claim backed by
    the execution's peak memory near the limit), not the code's: a claim alone is an
    ordinary error or exit, fresh or kept, and a kept runner lost to it was lost to a crash,
    not to memory."""
    fresh = run(server, key, code, language=language)["result"]
    kept_first = kept(server, key, "before = 1" if language == "python" else "var before = 1;",
                      None, language=language)  # fmt: skip
    sandbox = kept_first["sandboxId"]
    claimed = kept(server, key, code, sandbox, language=language)
    for answer in (fresh, claimed):
        assert answer["success"] is False, answer
        assert "limitHit" not in answer["metadata"], answer["metadata"]
        assert answer["error"]["name"] != "OutOfMemoryError", answer["error"]
        if error is not None:
            assert answer["error"]["name"] == error, answer["error"]
    probe = (
        "return 'before' in globals()" if language == "python" else "return 'before' in globalThis"
    )
    after = kept(server, key, probe, sandbox, language=language)
    assert after["success"] is True, after
    if error is not None:  # an error of the code: the state is kept, as ever
        assert after["metadata"]["stateReset"] is False, after["metadata"]
        assert after["returnValue"] is True
    else:  # the runner aborted: lost, and not to memory
        assert after["metadata"]["stateReset"] is True, after["metadata"]
        assert after["metadata"]["stateResetReason"] == "crash", after["metadata"]
        assert after["returnValue"] is False


def test_memory_an_earlier_execution_freed_does_not_back_a_claim(
    server: LocalServer, key: str
) -> None:
    """A kept runner's peak memory is measured per execution: 180 MiB of the 256 used and
    freed by one execution are not near the limit in the next, which only claims to be."""
    sandbox = kept(server, key, "big = b'x' * (180 << 20)\ndel big", None, language="python")
    claimed = kept(server, key, "raise MemoryError()", sandbox["sandboxId"], language="python")
    assert claimed["error"]["name"] == "MemoryError", claimed
    assert "limitHit" not in claimed["metadata"], claimed["metadata"]


def test_an_earlier_executions_oom_kill_is_not_the_next_ones(server: LocalServer, key: str) -> None:
    """A child process the kernel killed for memory in one execution, which the runner
    survived, does not make the next execution's exit a memory limit."""
    hog = (
        "import subprocess, sys\n"
        "child = subprocess.run([sys.executable, '-c', 'b = b\"x\" * (400 << 20)'])\n"
        "return child.returncode"
    )
    survived = kept(server, key, hog, None, language="python")
    assert value(survived) == -9  # SIGKILL: the kernel's OOM kill of the child
    sandbox = survived["sandboxId"]
    exited = kept(server, key, "raise SystemExit(2)", sandbox, language="python")
    assert "limitHit" not in exited["metadata"], exited["metadata"]
    after = kept(server, key, "return 1", sandbox, language="python")
    assert after["metadata"]["stateResetReason"] == "exit", after["metadata"]


def test_a_runner_that_stops_reading_requests_still_answers_at_the_time_limit(
    server: LocalServer, key: str
) -> None:
    # The code makes its kept runner never read again; the next request is larger than the
    # pipe holds (control characters are six bytes each in JSON): writing it must not wait
    # past the time limit.
    first = kept(
        server,
        key,
        "import gc, types, time\n"
        "for m in gc.get_objects():\n"
        "    if isinstance(m, types.ModuleType) and hasattr(m, 'read_request'):\n"
        "        m.read_request = lambda stream: time.sleep(10**6)\n"
        "return 1",
        None,
        language="python",
    )
    assert value(first) == 1
    began = time.monotonic()
    with server.client(key, timeout=60) as client:
        stuck = client.post(
            "/api/iris/execute",
            json={
                "code": "# " + "\x01" * 90_000 + "\nreturn 2",
                "language": "python",
                "keepState": True,
                "sandboxId": first["sandboxId"],
                "timeoutMs": 3000,
            },
        )
    assert stuck.status_code == 200, stuck.text[:300]
    assert stuck.json()["result"]["metadata"]["limitHit"] == "timeout"
    assert time.monotonic() - began < 30
    after = kept(server, key, "return 3", first["sandboxId"], language="python")
    assert after["returnValue"] == 3
    assert after["metadata"]["stateResetReason"] == "timeout"


# -- the code against its own runner ----------------------------------------------------------
#
# What the runner does in the jail between executions, with state the code can reach (its
# globals, its environment, the request pipe), must neither hold the host past the time
# limit nor turn the next execution's compile against it.


def kept_after(server: LocalServer, key: str, first: str, then: str, **fields: Any) -> Any:
    """Run ``first`` kept in a new sandbox, then ``then`` in its kept runner: the second result."""
    armed = kept(server, key, first, None, **fields)
    assert armed["success"] is True, armed
    return kept(server, key, then, armed["sandboxId"], **fields)


#: Ways code reads its standard input (none is given: a fresh run reads nothing, at once).
READ_STDIN = [
    ("javascript", "return require('node:fs').readFileSync(0, 'utf8').length"),
    (
        "javascript",
        "let n = 0;\nconst lines = require('node:readline').createInterface({ input: process.stdin });\n"
        "for await (const _ of lines) n++;\nreturn n",
    ),
    ("python", "import sys\nreturn len(sys.stdin.read())"),
]


@pytest.mark.parametrize(("language", "code"), READ_STDIN)
def test_code_reading_stdin_answers_kept_as_fresh(
    server: LocalServer, key: str, language: str, code: str
) -> None:
    fresh = run(server, key, code, language=language, timeoutMs=3000)["result"]
    assert fresh["success"] is True and fresh["returnValue"] == 0, fresh
    first = "x = 1" if language == "python" else "var x = 1;"
    kept = kept_after(server, key, first, code, language=language, timeoutMs=3000)
    assert "limitHit" not in kept["metadata"], kept["metadata"]
    assert kept["returnValue"] == 0, kept
    assert kept["metadata"]["stateReset"] is False


def test_a_read_of_the_request_pipe_left_pending_holds_nothing_past_the_time_limit(
    server: LocalServer, key: str
) -> None:
    """The code leaves reads of fd 0 running in libuv's thread pool (no handle: nothing the
    runner stops sees them). One of them may take the next request from the runner: each
    execution still answers within its time limit, and the state lost to a timeout is said."""
    steal = (
        "const fs = require('node:fs');\n"
        "for (let i = 0; i < 4; i++) { const b = Buffer.alloc(1 << 16);"
        " fs.read(0, b, 0, b.length, null, (e, n) => fs.writeFileSync('stolen', b.subarray(0, n))); }\n"
        "return 1"
    )
    armed = kept(server, key, steal, None, language="javascript")
    assert armed["returnValue"] == 1, armed
    sandbox = armed["sandboxId"]
    timed_out = False
    for n in range(3):
        began = time.monotonic()
        answer = kept(server, key, f"return {n}", sandbox, language="javascript", timeoutMs=2000)
        assert time.monotonic() - began < 15
        if timed_out:
            assert answer["metadata"]["stateResetReason"] == "timeout", answer["metadata"]
        timed_out = answer["metadata"].get("limitHit") == "timeout"
        assert timed_out or answer["returnValue"] == n, answer


def test_a_compile_the_code_broke_is_stopped_at_the_time_limit(
    server: LocalServer, key: str
) -> None:
    """The next execution's compile runs in the kept runner, among the code's globals: one
    that never ends (a `sort` that spins) ends at that execution's time limit."""
    began = time.monotonic()
    stuck = kept_after(
        server, key, "Array.prototype.sort = function () { for (;;); };\nreturn 1",
        "const a: number = 2;\nreturn a", timeoutMs=3000,
    )  # fmt: skip
    assert stuck["metadata"]["limitHit"] == "timeout", stuck
    assert time.monotonic() - began < 20


def test_the_codes_environment_does_not_choose_the_compilers_binary(
    server: LocalServer, key: str
) -> None:
    """esbuild's module takes its binary from ESBUILD_BINARY_PATH when it first loads, in a
    compile of the kept runner: the code's own value there is not the runner's, and the code
    finds its value as it left it."""
    answer = kept_after(
        server, key, "process.env.ESBUILD_BINARY_PATH = '/tmp/mine';\nreturn 1",
        "enum E { A = 3 }\nreturn [E.A, process.env.ESBUILD_BINARY_PATH]",
    )  # fmt: skip
    assert answer["success"] is True, answer
    assert answer["returnValue"] == [3, "/tmp/mine"]
    assert answer["output"] == '=== Results ===\n[\n  3,\n  "/tmp/mine"\n]', answer["output"]


def test_a_read_only_emit_warning_does_not_break_the_next_script(
    server: LocalServer, key: str
) -> None:
    """The runner silences Node's one-time warning about its script loader before any code
    runs: a first execution compiled by esbuild (an enum) that makes process.emitWarning its
    own does not turn the next execution, a script, into the runner's error."""
    answer = kept_after(
        server,
        key,
        "enum E { A }\nObject.defineProperty(process, 'emitWarning', { value: () => {}, writable: false });\n"
        "return E.A",
        "const m = await import('node:path');\nreturn m.sep",
    )
    assert answer["success"] is True, answer
    assert answer["returnValue"] == "/"
    assert answer["metadata"]["stateReset"] is False


def test_the_server_holds_no_more_descriptors_after_many_kept_executions(
    server: LocalServer, key: str
) -> None:
    """Each execution opens the cgroup's peak-memory file (and pipes for a replaced runner):
    answered, failed, exited or stopped at its time limit, nothing of it stays open."""

    def descriptors() -> int:
        time.sleep(1.5)  # teardowns run after the answer
        assert server.proc is not None
        return len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))

    sandbox = kept(server, key, "return 0", None)["sandboxId"]
    before = descriptors()
    for code in ("return 1", "throw new Error('e')", "process.exit(2)", "while (true) {}") * 6:
        kept(server, key, code, sandbox, timeoutMs=500)
    assert kept(server, key, "return 'last'", sandbox)["returnValue"] == "last"
    assert descriptors() - before < 12
