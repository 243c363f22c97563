"""A matrix of hostile programs, each contained with its exact outcome, while the server stays
healthy: `/health` and another project's execution are answered while it runs and right after.

One server of this module's own (512 MiB of memory and 64 MiB of disk per sandbox), so that
the bombs are quick. Rows the service gets wrong today are strict xfails (reason: BUG).

Every row runs twice: in a fresh runner, and with `"keepState": true` in a kept runner, where
the sandbox's next keepState execution must then work, see nothing of the row run into it,
and say why the state was lost when the row cost the runner its life."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import result_value
from tests.support.server import CANARY, ROOT, LocalServer, wait_until_gone

MEMORY_MB = 512
DISK_MB = 64
OUTPUT_CAP = 1024 * 1024
ALLOWED_ENV = {"HOME", "USER", "PATH", "LANG", "TZ", "PWD"}
SQLISH = "'; DROP TABLE tool_events; --"
UNEXPECTED_END = "The program ended unexpectedly"


@dataclass
class Arena:
    server: LocalServer
    attacker: str
    bystander: str
    #: The attacker's project (the keepState rows are another project's: tool records and
    #: write rates are per project).
    project: str = "attacker"
    kept_attacker: str = ""

    def execute(self, key: str, code: str, **fields: Any) -> dict[str, Any]:
        with self.server.client(key) as client:
            response = client.post("/api/iris/execute", json={"code": code, **fields})
        assert response.status_code == 200, response.text[:500]
        answer: dict[str, Any] = response.json()
        return answer

    def healthy(self) -> None:
        """`/health` answers, and another project's trivial execution succeeds."""
        assert httpx.get(self.server.url + "/health", timeout=10).status_code == 200
        result = self.execute(self.bystander, "return 6 * 7")["result"]
        assert result["success"] and result_value(result) == 42, result

    def next_is_clean(self, answer: dict[str, Any]) -> None:
        """After a keepState row: the sandbox's next keepState execution runs, nothing of the
        row's shows in it, and a lost runner is said with the limit or exit that ended it."""
        code = "await new Promise((r) => setTimeout(r, 150));\nreturn 'next';"
        after = self.execute(
            self.attacker, code, sandboxId=answer["sandboxId"], keepState=True, timeoutMs=20_000
        )["result"]
        assert after["success"] is True, after
        assert after["returnValue"] == "next"
        assert after["logs"] == [], after["logs"]
        metadata, first = after["metadata"], answer["result"]
        limit = first["metadata"].get("limitHit")
        if limit is not None:
            assert metadata["stateReset"] is True and metadata["stateResetReason"] == limit
        elif "Process exited with code" in first.get("error", {}).get("message", ""):
            assert metadata["stateResetReason"] == "exit"
        elif metadata["stateReset"]:
            assert metadata["stateResetReason"] in {"exit", "crash", "busy"}, metadata

    def contained(self, code: str, **fields: Any) -> dict[str, Any]:
        """Run hostile code as the attacker; check health while it runs and right after."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            attack = pool.submit(self.execute, self.attacker, code, **fields)
            time.sleep(0.15)
            self.healthy()
            answer = attack.result(timeout=120)
        self.healthy()
        return answer


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    with LocalServer(
        data,
        sandbox_memory_mb=MEMORY_MB,
        sandbox_disk_mb=DISK_MB,
        execution_timeout_s=30,
        rate_limit_per_minute=100_000,
    ) as server:
        yield Arena(
            server,
            server.create_key("attacker"),
            server.create_key("bystander"),
            kept_attacker=server.create_key("attacker-kept"),
        )


def no_process_left(marker: bytes) -> None:
    assert wait_until_gone(marker) == []


# ---- checks: each receives the 200 answer and the arena ----------------------------------

Check = Callable[[dict[str, Any], Arena], None]


def fails_with(name: str, message: str = "", *, truncated: bool = False) -> Check:
    def check(answer: dict[str, Any], arena: Arena) -> None:
        result = answer["result"]
        assert result["success"] is False, result
        assert result["error"]["name"] == name, result["error"]
        assert message in result["error"]["message"]
        assert result["metadata"]["outputTruncated"] is truncated

    return check


def returns(expected: Any) -> Check:
    def check(answer: dict[str, Any], arena: Arena) -> None:
        result = answer["result"]
        assert result["success"] is True, result
        assert result_value(result) == expected

    return check


def value_of(answer: dict[str, Any]) -> Any:
    result = answer["result"]
    assert result["success"] is True, result
    return result_value(result)


def timed_out_after(ms: int) -> Check:
    def check(answer: dict[str, Any], arena: Arena) -> None:
        fails_with("TimeoutError", f"timed out after {ms // 1000} s")(answer, arena)
        assert answer["result"]["executionTime"] == ms

    return check


def fork_bomb_died(answer: dict[str, Any], arena: Arena) -> None:
    timed_out_after(3000)(answer, arena)
    no_process_left(b"iris_bomb_7f3")


def process_cap_held(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    assert 0 < seen["started"] < 256  # the per-sandbox process cap
    assert seen["failed"] == 1000 - seen["started"]
    no_process_left(b"sleep\x00987\x00")


def disk_full_at(mib: int) -> Check:
    def check(answer: dict[str, Any], arena: Arena) -> None:
        seen = value_of(answer)
        assert seen["code"] == "ENOSPC"
        assert mib - 2 <= seen["written"] <= mib

    return check


def output_truncated(answer: dict[str, Any], arena: Arena) -> None:
    fails_with("OutputLimitError", "Output exceeded 1048576 bytes", truncated=True)(answer, arena)
    # What was kept: each log line's text and its newline.
    kept = sum(len(line.split("] ", 1)[1].encode()) + 1 for line in answer["result"]["logs"])
    assert OUTPUT_CAP - 2048 <= kept <= OUTPUT_CAP + 1


def connection_refused(answer: dict[str, Any], arena: Arena) -> None:
    assert value_of(answer) in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"}


def host_invisible(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    assert seen["visible"] == []
    assert set(seen["env"]) <= ALLOWED_ENV
    assert CANARY not in json.dumps(seen)


def no_host_paths(answer: dict[str, Any], arena: Arena) -> None:
    text = json.dumps(value_of(answer))
    for secret in (str(ROOT), str(arena.server.data_dir), CANARY, "/root"):
        assert secret not in text, secret


def proc_shows_only_the_jail(answer: dict[str, Any], arena: Arena) -> None:
    no_host_paths(answer, arena)
    seen = value_of(answer)
    assert seen["pids"] == ["1", "2"]
    assert seen["cmdline"][0] == "/usr/bin/node"


def symlinks_stay_in_the_jail(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    root = seen["root"]
    assert not {"work", "root", "var", "boot", "srv"} & set(root)
    for name in ("proc-self-root", "slash", "proc-1-root"):
        assert seen[name] == root, name
    for name in ("repo", "data", "shadow"):
        assert seen[name] == "ENOENT", name


def ended_unexpectedly(*statuses: str) -> Check:
    """The runner died without a result; its exit status is one of ``statuses``."""

    def check(answer: dict[str, Any], arena: Arena) -> None:
        fails_with("Error", UNEXPECTED_END)(answer, arena)
        message = answer["result"]["error"]["message"]
        assert message in {f"{UNEXPECTED_END} (exit status {s})" for s in statuses}, message

    return check


def reuse_still_works(answer: dict[str, Any], arena: Arena) -> None:
    # The runner keeps its own JSON and Buffer: deleting the program's does not break it.
    logs_are(["[stdout] after"], "=== Results ===\n7\n\n=== Output ===\nafter")(answer, arena)
    again = arena.execute(arena.attacker, "return 'fresh'", sandboxId=answer["sandboxId"])
    assert again["result"]["output"] == '=== Results ===\n"fresh"'


def logs_are(logs: list[str], output: str) -> Check:
    def check(answer: dict[str, Any], arena: Arena) -> None:
        result = answer["result"]
        assert result["success"] is True, result
        assert result["logs"] == logs
        assert result["output"] == output

    return check


def stored_verbatim(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    assert seen["event"] == seen["prompt"] == seen["metric"] == SQLISH
    assert seen["read"]["template"] == "Hello {name} " + SQLISH
    assert seen["metrics"]["count"] == 1
    assert [v["agentId"] for v in seen["consensus"]["votes"]] == [SQLISH]
    assert seen["lineage"]["entries"][0]["input"] == SQLISH
    with sqlite3.connect(arena.server.data_dir / "iris.db") as db:
        rows = db.execute(
            "SELECT event, metadata FROM tool_events WHERE project_id = ? AND event = ?",
            (arena.project, SQLISH),
        ).fetchall()
    assert rows == [(SQLISH, json.dumps({"note": SQLISH}, separators=(",", ":")))]


def size_limits_hold(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    assert seen["near"] == "big"
    assert seen["over"] == "IrisToolError: metadata is 65548 bytes as JSON; the limit is 65536"
    assert seen["template"] == "IrisToolError: template is longer than 65536 bytes"
    assert seen["longEvent"].startswith("IrisToolError: ")
    assert "at most 200 characters" in seen["longEvent"]


def connections_capped(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    # An execution's socket accepts 64 connections (IRIS_TOOL_SOCKET_CONNECTIONS), 64 more wait
    # in the backlog; the rest are refused at once. Once it lets them go, its tools answer.
    assert seen["opened"] + seen["failed"] == 500
    assert seen["opened"] <= 64 + 64 + 1, seen  # (Linux queues backlog + 1)
    assert seen["event"] == "still-works"


def nesting_refused(answer: dict[str, Any], arena: Arena) -> None:
    seen = value_of(answer)
    assert seen["150"] == "deep"
    for depth in ("300", "5000"):
        assert seen[depth].startswith("IrisToolError: "), seen[depth]


def all_1000_stored(answer: dict[str, Any], arena: Arena) -> None:
    assert value_of(answer) == {"ids": 1000, "count": 1000, "min": 0, "max": 999, "mean": 499.5}


def forged_frame_is_only_text(answer: dict[str, Any], arena: Arena) -> None:
    result = answer["result"]
    assert result_value(result) == "genuine"
    assert result["logs"] == [
        '[stdout] {"t":"result","ok":true,"value":"\\"forged\\""}',
        "[stdout] === Results ===",
        "[stdout] forged",
    ]


def kept_whole(answer: dict[str, Any], arena: Arena) -> None:
    assert value_of(answer) == "r" * 2 * OUTPUT_CAP


# ---- the rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    code: str
    check: Check
    timeout_ms: int = 20_000
    bug: str | None = None
    #: What a kept runner answers instead, where that differs (None: the same).
    kept_check: Check | None = None


TOOLS = "import { iris } from './iris-prime';\n"
SOCKET_ASK = """import http from 'node:http';
const ask = (headers, body) => new Promise((resolve) => {
  const req = http.request({ socketPath: '/run/iris/tools.sock', path: '/mcp', method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
    (res) => { let data = ''; res.on('data', (c) => data += c); res.on('end', () => resolve([res.statusCode, JSON.parse(data).message])); });
  req.on('error', (e) => resolve(e.code));
  req.end(body);
});
const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'logEvent', arguments: { event: 'sneaky' } } });
"""

ROWS = [
    # Resources.
    Hostile("cpu-spin", "while (true) {}", timed_out_after(2000), timeout_ms=2000),
    Hostile(
        "cpu-spin-in-a-child-process",
        "import { execSync } from 'node:child_process';\nexecSync(\"sh -c 'while :; do :; done'\");",
        timed_out_after(2000),
        timeout_ms=2000,
    ),
    Hostile(
        "memory-bomb-buffers",
        "const chunks = [];\nfor (let i = 0; i < 30; i++) chunks.push(Buffer.alloc(100 * 2 ** 20, 1));\nreturn chunks.length;",
        fails_with("OutOfMemoryError", f"limit {MEMORY_MB} MiB"),
    ),
    Hostile(
        "memory-bomb-heap",
        "const a = [];\nfor (;;) a.push(new Array(1e6).fill(1.5));",
        fails_with("OutOfMemoryError", f"limit {MEMORY_MB} MiB"),
    ),
    Hostile(
        "fork-bomb",
        "import { spawnSync } from 'node:child_process';\n"
        "spawnSync('/bin/bash', ['-c', 'iris_bomb_7f3() { iris_bomb_7f3 | iris_bomb_7f3 & }; iris_bomb_7f3; sleep 30']);\n"
        "return 'survived';",
        fork_bomb_died,
        timeout_ms=3000,
    ),
    Hostile(
        "spawning-1000-processes",
        "import { spawn } from 'node:child_process';\n"
        "let started = 0, failed = 0;\n"
        "for (let i = 0; i < 1000; i++) {\n"
        "  const child = spawn('sleep', ['987']);\n"
        "  child.on('error', () => { failed++; });\n"
        "  if (child.pid) started++;\n"
        "}\n"
        "await new Promise((r) => setTimeout(r, 300));\n"
        "return { started, failed };",
        process_cap_held,
    ),
    Hostile(
        "disk-fill-home",
        "import fs from 'node:fs';\nconst block = Buffer.alloc(2 ** 20, 1);\nlet written = 0;\n"
        "try { for (let i = 0; i < 10240; i++) { fs.appendFileSync('big.bin', block); written++; } }\n"
        "catch (e) { fs.rmSync('big.bin'); return { code: e.code, written }; }\nreturn { written };",
        disk_full_at(DISK_MB),
    ),
    Hostile(
        "disk-fill-run-iris-exec",
        "import fs from 'node:fs';\nconst block = Buffer.alloc(2 ** 20, 1);\nlet written = 0;\n"
        "try { for (let i = 0; i < 1024; i++) { fs.appendFileSync('/run/iris-exec/big.bin', block); written++; } }\n"
        "catch (e) { return { code: e.code, written }; }\nreturn { written };",
        disk_full_at(16),
    ),
    Hostile(
        "memory-fill-dev-shm",
        "import fs from 'node:fs';\nconst block = Buffer.alloc(2 ** 20, 1);\n"
        "for (let i = 0; i < 4096; i++) fs.appendFileSync('/dev/shm/big.bin', block);\nreturn 'filled';",
        fails_with("OutOfMemoryError", f"limit {MEMORY_MB} MiB"),
    ),
    Hostile(
        "output-flood",
        "const line = 'y'.repeat(1023) + '\\n';\nfor (let i = 0; i < 8 * 1024; i++) process.stdout.write(line);\nreturn 'finished';",
        output_truncated,
    ),
    Hostile(
        "output-flood-from-a-child-process",
        "import { execSync } from 'node:child_process';\nexecSync('yes flood', { stdio: 'inherit' });",
        output_truncated,
    ),
    Hostile(
        "huge-return-value-over-the-frame-cap",
        "return 'z'.repeat(10 * 1024 * 1024);",
        fails_with("OutputLimitError", "Output exceeded", truncated=True),
    ),
    Hostile(
        "return-value-of-2-MiB-is-kept-whole",
        "return 'r'.repeat(2 * 1024 * 1024);",
        kept_whole,
    ),
    Hostile(
        "infinite-recursion",
        "function f(n) { return f(n + 1) + 1; }\nreturn f(0);",
        fails_with("RangeError", "Maximum call stack size exceeded"),
    ),
    # Network.
    Hostile(
        "egress-to-host-loopback-with-net",
        "import net from 'node:net';\nreturn await new Promise((resolve) => {\n"
        "  const socket = net.connect(__PORT__, '127.0.0.1');\n"
        "  socket.on('connect', () => resolve('connected'));\n  socket.on('error', (e) => resolve(e.code));\n});",
        connection_refused,
    ),
    Hostile(
        "egress-to-host-loopback-with-fetch",
        "try { await fetch('http://127.0.0.1:__PORT__/health'); return 'connected'; }\n"
        "catch (e) { return e.cause?.code ?? String(e); }",
        connection_refused,
    ),
    Hostile(
        "egress-to-the-internet",
        "import net from 'node:net';\nreturn await new Promise((resolve) => {\n"
        "  const socket = net.connect(443, '1.1.1.1');\n"
        "  socket.on('connect', () => resolve('connected'));\n  socket.on('error', (e) => resolve(e.code));\n});",
        connection_refused,
    ),
    # Host files, environment, /proc, symlinks.
    Hostile(
        "reading-host-files-and-environment",
        "import fs from 'node:fs';\n"
        "const paths = ['__ROOT__', '__DATA__', '__DATA__/iris.db', '/root', '/etc/shadow', '/sys/class', '/sys/kernel', '/var'];\n"
        "return { visible: paths.filter((p) => fs.existsSync(p)), env: process.env };",
        host_invisible,
    ),
    Hostile(
        "proc-1-environ",
        "import fs from 'node:fs';\nreturn fs.readFileSync('/proc/1/environ', 'utf8').split('\\0');",
        no_host_paths,
    ),
    Hostile(
        "proc-mountinfo-and-cmdline",
        "import fs from 'node:fs';\nreturn {\n"
        "  mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8'),\n"
        "  cmdline: fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\0'),\n"
        "  cmdline1: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0'),\n"
        "  pids: fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)),\n};",
        proc_shows_only_the_jail,
    ),
    Hostile(
        "symlinks-to-host-paths",
        "import fs from 'node:fs';\nconst out = { root: fs.readdirSync('/').sort() };\n"
        "const targets = { 'proc-self-root': '/proc/self/root', slash: '/', 'proc-1-root': '/proc/1/root',\n"
        "  repo: '__ROOT__', data: '__DATA__', shadow: '/etc/shadow' };\n"
        "for (const [name, target] of Object.entries(targets)) {\n"
        "  fs.symlinkSync(target, 'link-' + name);\n"
        "  try { out[name] = fs.statSync('link-' + name).isDirectory() ? fs.readdirSync('link-' + name).sort() : 'file'; }\n"
        "  catch (e) { out[name] = e.code; }\n}\nreturn out;",
        symlinks_stay_in_the_jail,
    ),
    # Signals and exits.
    Hostile(
        "signal-to-the-parent",
        "process.kill(process.ppid);\nprocess.kill(process.ppid, 'SIGKILL');\n"
        "await new Promise((r) => setTimeout(r, 300));\nreturn { ppid: process.ppid, alive: true };",
        returns({"ppid": 1, "alive": True}),
    ),
    Hostile(
        "kill-9-minus-1",
        "import { execSync } from 'node:child_process';\nexecSync('kill -9 -1; sleep 5');\nreturn 'survived';",
        ended_unexpectedly("-9", "137"),  # SIGKILL, seen directly or through the jail's init
        # A kept runner's jail (stdin still open) also ends with bubblewrap's own 255 at
        # times (seen once in 24 runs): the runner died all the same.
        kept_check=ended_unexpectedly("-9", "137", "255"),
    ),
    Hostile(
        "exit-inside-a-promise",
        "Promise.resolve().then(() => process.exit(3));\nawait new Promise((r) => setTimeout(r, 1000));\nreturn 'never';",
        fails_with("Error", "Process exited with code 3"),
    ),
    Hostile(
        "exit-inside-an-exit-handler",
        "process.on('exit', () => { process.exit(5); });\nconsole.log('bye');\nreturn 'value';",
        logs_are(["[stdout] bye"], '=== Results ===\n"value"\n\n=== Output ===\nbye'),
    ),
    Hostile(
        "exit-with-a-pending-timer",
        "setTimeout(() => console.log('late'), 60000);\nprocess.exit(0);",
        logs_are([], "(no output)"),
    ),
    Hostile(
        "unhandled-rejection",
        "Promise.reject(new TypeError('nobody catches me'));\nawait new Promise((r) => setTimeout(r, 200));\nreturn 'after';",
        fails_with("TypeError", "nobody catches me"),
    ),
    Hostile("throw-a-string", "throw 'a plain string';", fails_with("Error", "a plain string")),
    Hostile("throw-null", "throw null;", fails_with("Error", "null")),
    Hostile(
        "throw-an-object",
        "throw { code: 42, why: 'object' };",
        fails_with("Error", '{\n  "code": 42,\n  "why": "object"\n}'),
    ),
    # Tampering with the runtime, the iris module and the result channel.
    Hostile(
        "tampering-with-the-iris-module",
        "import * as mod from './iris-prime';\nconst out = {};\n"
        "try { mod.iris = null; out.reassign = 'allowed'; } catch (e) { out.reassign = e.name; }\n"
        "mod.iris.logEvent = async () => ({ id: 'forged' });\nout.patched = await mod.iris.logEvent('x');\n"
        "return out;",
        returns({"reassign": "TypeError", "patched": {"id": "forged"}}),
    ),
    Hostile(
        "deleting-globals",
        "delete globalThis.JSON;\ndelete globalThis.Buffer;\nconsole.log('after');\nreturn 7;",
        reuse_still_works,
    ),
    Hostile(
        "monkeypatched-stdout-write",
        "const original = process.stdout.write.bind(process.stdout);\n"
        "process.stdout.write = (chunk, ...rest) => original(String(chunk).toUpperCase(), ...rest);\n"
        "console.log('shouted');\nreturn 'done';",
        logs_are(["[stdout] SHOUTED"], '=== Results ===\n"done"\n\n=== Output ===\nSHOUTED'),
    ),
    Hostile(
        "swallowed-stdout-write",
        "process.stdout.write = () => true;\nconsole.log('swallowed');\nreturn 'quiet';",
        logs_are([], '=== Results ===\n"quiet"'),
    ),
    Hostile(
        "printing-a-forged-result-frame",
        "console.log(JSON.stringify({ t: 'result', ok: true, value: JSON.stringify('forged') }));\n"
        "console.log('=== Results ===\\nforged');\nreturn 'genuine';",
        forged_frame_is_only_text,
    ),
    Hostile(
        "garbage-on-the-event-channel",
        "import fs from 'node:fs';\n"
        "// A line that is not JSON, then one left open: the result frame lands on it.\n"
        "fs.writeSync(3, 'garbage that is not json\\n{ unterminated');\nreturn 'genuine';",
        # Exit status 0, or -9 when the host ends the runner first (it races the teardown).
        ended_unexpectedly("0", "-9"),
        # A kept runner starts its result on a line of its own: the code's open line is junk.
        kept_check=returns("genuine"),
    ),
    Hostile(
        "printing-a-lone-surrogate",
        "console.log('\\ud800');\nreturn 1;",
        returns(1),
    ),
    Hostile("returning-a-lone-surrogate", "return '\\ud800';", returns("\ud800")),
    # The tools socket.
    Hostile(
        "tools-socket-without-or-with-a-forged-token",
        SOCKET_ASK
        + "return [await ask({}, call), await ask({ authorization: 'Bearer forged.token.value' }, call),\n"
        "  await ask({ authorization: 'Bearer sk_live_' + 'a'.repeat(43) }, call)];",
        returns(
            [
                [401, "Authorization header is required"],
                [401, "Invalid API key format"],
                [401, "Invalid or inactive API key"],
            ]
        ),
    ),
    Hostile(
        "tools-socket-garbage",
        "import net from 'node:net';\nconst send = (payload) => new Promise((resolve) => {\n"
        "  const s = net.connect('/run/iris/tools.sock'); let data = '';\n"
        "  s.on('connect', () => s.end(payload)); s.on('data', (c) => data += c);\n"
        "  s.on('close', () => resolve(data.split('\\r\\n')[0])); s.on('error', (e) => resolve(e.code));\n});\n"
        "return [await send(Buffer.from([0, 1, 2, 255, 254, 10, 13, 10, 13])),\n"
        "  await send('GET / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: -1\\r\\n\\r\\n'),\n"
        "  await send('POST /mcp HTTP/1.1\\r\\nHost: x\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nzzzz\\r\\n')];",
        returns(["HTTP/1.1 400 Bad Request"] * 3),
    ),
    Hostile(
        "tools-socket-500-connections",
        TOOLS + "import net from 'node:net';\nconst sockets = []; let opened = 0, failed = 0;\n"
        "await Promise.all(Array.from({ length: 500 }, () => new Promise((resolve) => {\n"
        "  const s = net.connect('/run/iris/tools.sock'); sockets.push(s);\n"
        "  s.on('connect', () => { opened++; resolve(); }); s.on('error', () => { failed++; resolve(); });\n})));\n"
        "for (const s of sockets) s.destroy();\nawait new Promise((resolve) => setTimeout(resolve, 200));\n"
        "const event = (await iris.logEvent('still-works')).event;\n"
        "return { opened, failed, event };",
        connections_capped,
    ),
    Hostile(
        "tools-socket-file-tampering",
        "import fs from 'node:fs';\nconst out = {};\n"
        "try { fs.writeFileSync('/run/iris/tools.sock', 'x'); out.write = 'ok'; } catch (e) { out.write = e.code; }\n"
        "try { fs.unlinkSync('/run/iris/tools.sock'); out.unlink = 'ok'; } catch (e) { out.unlink = e.code; }\n"
        "try { fs.symlinkSync('/etc/passwd', '/run/iris/evil'); out.symlink = 'ok'; } catch (e) { out.symlink = e.code; }\n"
        "out.listing = fs.readdirSync('/run/iris');\nreturn out;",
        returns(
            {"write": "ENXIO", "unlink": "EROFS", "symlink": "EROFS", "listing": ["tools.sock"]}
        ),
    ),
    # Tool calls with hostile arguments.
    Hostile(
        "tool-arguments-that-look-like-sql",
        TOOLS + f"const sql = {json.dumps(SQLISH)};\nconst out = {{}};\n"
        "out.event = (await iris.logEvent(sql, { note: sql })).event;\n"
        "out.prompt = (await iris.savePrompt(sql, 'Hello {name} ' + sql)).name;\n"
        "out.read = await iris.getPrompt(sql);\n"
        "out.metric = (await iris.recordMetric(sql, 1, { tag: sql })).metric;\n"
        "out.metrics = await iris.getMetrics(sql);\n"
        "await iris.trackLineage(sql, sql, sql);\nout.lineage = await iris.getLineage(sql);\n"
        "await iris.submitVote(sql, sql, 'approve');\nout.consensus = await iris.getConsensus(sql);\n"
        "return out;",
        stored_verbatim,
    ),
    Hostile(
        "tool-arguments-near-and-over-64-KiB",
        TOOLS + "const out = {};\nconst attempt = async (name, call) => {\n"
        "  try { out[name] = await call(); } catch (e) { out[name] = e.name + ': ' + e.message; } };\n"
        "await attempt('near', async () => (await iris.logEvent('big', { blob: 'x'.repeat(64 * 1024 - 100) })).event);\n"
        "await attempt('over', async () => (await iris.logEvent('big', { blob: 'x'.repeat(64 * 1024 + 1) })).event);\n"
        "await attempt('template', async () => (await iris.savePrompt('huge', 'y'.repeat(2 * 1024 * 1024))).version);\n"
        "await attempt('longEvent', async () => (await iris.logEvent('e'.repeat(201))).event);\n"
        "return out;",
        size_limits_hold,
    ),
    Hostile(
        "tool-arguments-deeply-nested",
        TOOLS + "const out = {};\nfor (const depth of [150, 300, 5000]) {\n"
        "  let nested = {}; let cur = nested; for (let i = 0; i < depth; i++) { cur.a = {}; cur = cur.a; }\n"
        "  try { out[depth] = (await iris.logEvent('deep', nested)).event; } catch (e) { out[depth] = e.name + ': ' + e.message; }\n"
        "}\nreturn out;",
        nesting_refused,
    ),
    Hostile(
        "tool-1000-concurrent-calls",
        TOOLS
        + "const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => iris.recordMetric('burst', i)));\n"
        "const stats = await iris.getMetrics('burst');\n"
        "return { ids: new Set(results.map((r) => r.id)).size, count: stats.count, min: stats.min, max: stats.max, mean: stats.mean };",
        all_1000_stored,
    ),
]


def row_params() -> list[Any]:
    return [
        pytest.param(row, id=row.id, marks=[pytest.mark.xfail(strict=True, reason=row.bug)])
        if row.bug
        else pytest.param(row, id=row.id)
        for row in ROWS
    ]


@pytest.mark.parametrize(
    "keep_state", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["fresh", "keepState"]
)
@pytest.mark.parametrize("row", row_params())
def test_hostile_program_is_contained(arena: Arena, row: Hostile, keep_state: bool) -> None:
    code = (
        row.code.replace("__PORT__", str(arena.server.port))
        .replace("__ROOT__", str(ROOT))
        .replace("__DATA__", str(arena.server.data_dir))
    )
    if not keep_state:
        answer = arena.contained(code, timeoutMs=row.timeout_ms)
        row.check(answer, arena)
        return
    arena = replace(arena, attacker=arena.kept_attacker, project="attacker-kept")
    answer = arena.contained(code, timeoutMs=row.timeout_ms, keepState=True)
    (row.kept_check or row.check)(answer, arena)
    arena.next_is_clean(answer)


def test_symlinks_to_host_paths_are_harmless_when_the_sandbox_closes(
    arena: Arena, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("still here")
    code = (
        "import fs from 'node:fs';\n"
        f"for (const [i, target] of [{json.dumps(str(precious))}, '/', '/proc/self/root', "
        f"{json.dumps(str(ROOT))}].entries()) {{\n"
        "  fs.symlinkSync(target, 'link' + i); fs.symlinkSync(target, '/tmp/link' + i);\n}\n"
        "return fs.readdirSync('.').sort();"
    )
    answer = arena.contained(code)
    assert value_of(answer) == ["link0", "link1", "link2", "link3"]
    with arena.server.client(arena.attacker) as client:
        closed = client.delete("/api/iris/sandbox", params={"sandboxId": answer["sandboxId"]})
        assert closed.status_code == 200
        status = client.get("/api/iris/sandbox", params={"sandboxId": answer["sandboxId"]})
    assert status.json()["status"] == "closed"
    assert (precious / "keep.txt").read_text() == "still here"
    assert (ROOT / "pyproject.toml").is_file()


def test_server_memory_stays_bounded_after_the_matrix(arena: Arena) -> None:
    arena.healthy()
    assert arena.server.rss_kib() < 400 * 1024
