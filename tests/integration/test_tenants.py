"""Tenants can't hurt each other: for each shared part a sandbox makes the server use, a
hostile project attacks it while a bystander project runs trivial code, and the bystander's
answers (and, loosely, latency) are checked during and after the attack."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import execute, result_value, run_value
from tests.support.server import LocalServer

pytestmark = pytest.mark.jail

#: What a bystander's trivial execution may take while an attack runs (it takes ~50 ms
#: quiet; the machine running the tests is shared, so this is loose on purpose).
BYSTANDER_MAX_S = 3.0


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("tenants") / "data"
    settings = {
        "compile_deadline_s": 1.5,
        "tool_calls_per_minute": 150,
        "tool_socket_header_s": 1,
        # The bystander runs back to back for the whole module: more than 100 a minute.
        "rate_limit_per_minute": 100_000,
    }
    with LocalServer(data, **settings) as server:
        yield server


@pytest.fixture(scope="module")
def attacker_key(tenants: LocalServer) -> str:
    return tenants.create_key("attacker")


@pytest.fixture
def attacker(tenants: LocalServer, attacker_key: str) -> Iterator[str]:
    """The hostile project's key; its sandboxes are closed after each test."""
    yield attacker_key
    with tenants.client(attacker_key) as client:
        client.delete("/api/iris/sandbox", params={"all": "true"})


@pytest.fixture(scope="module")
def bystander(tenants: LocalServer) -> str:
    # A project of its own per test: its tool budget (150 a minute here) is per project.
    return tenants.create_key(f"bystander-{uuid.uuid4().hex[:8]}")


def run(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = execute(server, key, code, **fields)["result"]
    return result


#: The bystander's program: N is replaced by a number, the answer must be twice it.
TRIVIAL = "const n: number = N; return n * 2;"
#: The same through the IRIS tools (its own tool socket, its own project's tool budget).
WITH_TOOLS = (
    "import { iris } from './iris-prime';\n"
    "const n: number = N;\n"
    "await iris.recordMetric('calm', n);\n"
    "return n * 2;"
)


class Bystander:
    """Runs a trivial TypeScript program again and again until stopped; keeps latencies."""

    def __init__(self, server: LocalServer, key: str, code: str = TRIVIAL) -> None:
        self.server = server
        self.key = key
        self.code = code
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.sandbox_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def one(self, n: int) -> None:
        began = time.monotonic()
        try:
            with self.server.client(self.key, timeout=60) as client:
                body: dict[str, Any] = {"code": self.code.replace("N", str(n))}
                if self.sandbox_id is not None:
                    body["sandboxId"] = self.sandbox_id
                response = client.post("/api/iris/execute", json=body)
            if response.status_code != 200:
                self.failures.append(f"{response.status_code}: {response.text[:200]}")
            else:
                result = response.json()["result"]
                self.sandbox_id = response.json()["sandboxId"]
                if not result["success"] or result_value(result) != n * 2:
                    self.failures.append(str(result)[:300])
        except Exception as exc:
            self.failures.append(repr(exc))
        self.latencies.append(time.monotonic() - began)

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.one(n)
            # With tool calls, at a pace within the module's per-project tool budget
            # (150 a minute, a sliding window): the bystander must not be its own attacker.
            time.sleep(0.05 if self.code == TRIVIAL else 0.5)

    def __enter__(self) -> Bystander:
        self.one(0)  # its sandbox exists before the attack starts
        self.latencies.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def check(self) -> None:
        assert self.failures == [], self.failures
        assert self.latencies, "the bystander never ran"
        assert max(self.latencies) < BYSTANDER_MAX_S, sorted(self.latencies)[-5:]
        self.one(-1)  # and after the attack
        assert self.failures == [], self.failures


def attack_while_watched(
    server: LocalServer,
    bystander: str,
    attack: Callable[[], Any],
    *,
    min_runs: int = 3,
    code: str = TRIVIAL,
) -> Any:
    """Run ``attack`` while a bystander runs; the bystander must not notice."""
    with Bystander(server, bystander, code) as watcher:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(attack).result(timeout=240)
        while len(watcher.latencies) < min_runs and not watcher.failures:
            time.sleep(0.05)
    watcher.check()
    return outcome


# -- 1. the shared compiler ----------------------------------------------------------------

#: A few hundred bytes the TypeScript parser backtracks on for minutes (exponential in depth).
NESTED_TS = "<T>(" * 40 + "x" + ")" * 40


def test_nested_typescript_fails_fast_and_others_keep_compiling(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    def attack() -> list[tuple[dict[str, Any], float]]:
        seen = []
        fields: dict[str, Any] = {}
        for _ in range(3):
            began = time.monotonic()
            answer = execute(tenants, attacker, NESTED_TS, **fields)
            fields["sandboxId"] = answer["sandboxId"]
            seen.append((answer["result"], time.monotonic() - began))
        return seen

    for result, took in attack_while_watched(tenants, bystander, attack):
        assert result["success"] is False
        assert result["error"]["name"] == "SyntaxError", result["error"]
        assert "did not parse within 1.5 s" in result["error"]["message"]
        assert took < 10
    # The attacker's own ordinary code still compiles afterwards.
    assert result_value(run(tenants, attacker, "const a: number = 1; return a;")) == 1


def test_many_nested_compiles_at_once_stall_only_their_project(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    def attack() -> list[dict[str, Any]]:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            runs = [pool.submit(run, tenants, attacker, NESTED_TS) for _ in range(4)]
            return [r.result(timeout=120) for r in runs]

    for result in attack_while_watched(tenants, bystander, attack):
        assert result["error"]["name"] == "SyntaxError", result["error"]


# -- 3. tool tokens ------------------------------------------------------------------------

#: Hostile code that lifts its own execution's tool token off the MCP client's requests,
#: prints it, then holds the execution open for HOLD seconds.
LEAK_TOKEN = """
import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { iris } from './iris-prime';
let token = null;
const request = http.request;
http.request = function (options, ...rest) {
  token ??= options?.headers?.authorization;
  return request.call(this, options, ...rest);
};
syncBuiltinESMExports();
await iris.logEvent('probe', {});
console.log('TOKEN ' + token);
await new Promise((resolve) => setTimeout(resolve, HOLD * 1000));
return 'done';
"""


def leak_token(server: LocalServer, key: str, hold_s: float) -> tuple[str, str, str]:
    """Start an execution that leaks its token: (execution id, sandbox id, Authorization)."""
    code = LEAK_TOKEN.replace("HOLD", str(hold_s))
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, "async": True})
        assert response.status_code == 202, response.text
        queued = response.json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = client.get(f"/api/iris/executions/{queued['executionId']}").json()
            for line in body.get("logs", []):
                if line.startswith("[stdout] TOKEN "):
                    return queued["executionId"], queued["sandboxId"], line.split(" ", 1)[1][6:]
            assert body["status"] in {"queued", "running"}, body
            time.sleep(0.2)
    raise AssertionError("the token never showed")


def tool_call(server: LocalServer, authorization: str) -> int:
    """One MCP `tools/list` with this Authorization: the HTTP status."""
    with server.client(None) as client:
        response = client.post(
            "/mcp",
            headers={
                "Authorization": authorization,
                "Accept": "application/json, text/event-stream",
            },
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    return response.status_code


def wait_until_finished(server: LocalServer, key: str, execution_id: str) -> dict[str, Any]:
    with server.client(key) as client:
        for _ in range(200):
            body: dict[str, Any] = client.get(f"/api/iris/executions/{execution_id}").json()
            if body["status"] not in {"queued", "running"}:
                return body
            time.sleep(0.1)
    raise AssertionError(f"{execution_id} did not finish")


def test_a_token_dies_with_its_execution(tenants: LocalServer, attacker: str) -> None:
    execution_id, _, authorization = leak_token(tenants, attacker, hold_s=0.5)
    assert authorization.startswith("Bearer iet_")
    assert wait_until_finished(tenants, attacker, execution_id)["status"] == "succeeded"
    assert tool_call(tenants, authorization) == 401


def test_a_token_dies_when_its_sandbox_closes(tenants: LocalServer, attacker: str) -> None:
    _, sandbox_id, authorization = leak_token(tenants, attacker, hold_s=30)
    assert tool_call(tenants, authorization) == 200  # live while its execution runs
    with tenants.client(attacker) as client:
        closed = client.delete("/api/iris/sandbox", params={"sandboxId": sandbox_id})
    assert closed.status_code == 200, closed.text
    assert tool_call(tenants, authorization) == 401


def test_a_token_dies_when_its_key_is_revoked(tenants: LocalServer) -> None:
    key = tenants.create_key("attacker")
    _, _, authorization = leak_token(tenants, key, hold_s=30)
    assert tool_call(tenants, authorization) == 200
    assert tenants.cli("keys", "revoke", key).returncode == 0
    deadline = time.monotonic() + 5  # a key known active is looked up again after 2 s
    while tool_call(tenants, authorization) != 401:
        assert time.monotonic() < deadline, "the token outlived its revoked key"
        time.sleep(0.2)


def test_tool_calls_are_rate_limited_per_project(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    flood = """
import { iris } from './iris-prime';
let ok = 0, refused = 0;
for (let i = 0; i < 400; i++) {
  try { await iris.logEvent('flood', { i }); ok++; } catch (e) { refused++; }
}
return { ok, refused };
"""
    counts = result_value(run(tenants, attacker, flood, timeoutMs=120_000))
    # 150 a minute: even across a minute boundary, at most 300 of the 400 get through.
    assert counts["ok"] <= 300 and counts["refused"] >= 100, counts
    # Another project's tools are untouched by that budget.
    calm = "import { iris } from './iris-prime';\nawait iris.logEvent('calm', {});\nreturn 1;"
    assert result_value(run(tenants, bystander, calm)) == 1


# -- 2. the tool socket ----------------------------------------------------------------------

#: Hostile code: PROCS processes each open CONNS connections to the tool socket and hold
#: them HOLD seconds; the answer is how many connected.
HOLD_CONNECTIONS = """
import { spawn } from 'node:child_process';
const child = `
const net = require('node:net');
let open = 0, failed = 0;
const sockets = [];
for (let i = 0; i < CONNS; i++) {
  const s = net.connect('/run/iris/tools.sock');
  s.on('connect', () => open++);
  s.on('error', () => failed++);
  s.on('close', () => {});
  sockets.push(s);
}
setTimeout(() => { process.stdout.write(JSON.stringify({ open, failed })); process.exit(0); }, HOLD * 1000);
`;
const runs = Array.from({ length: PROCS }, () => new Promise((resolve) => {
  const p = spawn(process.execPath, ['-e', child]);
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.on('close', () => resolve(out ? JSON.parse(out) : { open: 0, failed: 0 }));
}));
const all = await Promise.all(runs);
return { open: all.reduce((a, r) => a + r.open, 0), failed: all.reduce((a, r) => a + r.failed, 0) };
"""


def hold_connections(procs: int, conns: int, hold_s: float) -> str:
    return (
        HOLD_CONNECTIONS.replace("PROCS", str(procs))
        .replace("CONNS", str(conns))
        .replace("HOLD", str(hold_s))
    )


def test_an_execution_cannot_hold_more_than_its_share_of_tool_connections(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    def attack() -> Any:
        return result_value(run(tenants, attacker, hold_connections(1, 1000, 3)))

    held = attack_while_watched(tenants, bystander, attack, code=WITH_TOOLS)
    # 64 accepted, and at most a backlog's worth waiting in the kernel; the rest refused.
    assert held["open"] <= 64 + 128, held
    assert held["failed"] >= 1000 - 64 - 128, held


def test_a_connection_that_never_sends_a_whole_request_is_closed(
    tenants: LocalServer, attacker: str
) -> None:
    code = """
import net from 'node:net';
return await new Promise((resolve) => {
  const s = net.connect('/run/iris/tools.sock');
  const began = Date.now();
  s.on('connect', () => s.write('POST /mcp HTTP/1.1\\r\\nHost: x\\r\\n'));
  s.on('close', () => resolve({ closedAfterMs: Date.now() - began }));
  setTimeout(() => resolve({ closedAfterMs: null }), 5000);
});
"""
    closed = result_value(run(tenants, attacker, code))["closedAfterMs"]
    assert closed is not None and 500 <= closed <= 4000, closed


@pytest.mark.slow
def test_tens_of_thousands_of_connections_leave_the_server_answering(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    log_size = tenants.log_path.stat().st_size
    health: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def poll_health() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                with tenants.client(None, timeout=5) as client:
                    status = client.get("/health").status_code
                if status != 200:
                    failures.append(str(status))
            except Exception as exc:
                failures.append(repr(exc))
            health.append(time.monotonic() - began)
            time.sleep(0.1)

    def attack() -> Any:
        return result_value(run(tenants, attacker, hold_connections(4, 6000, 8), timeoutMs=60_000))

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    try:
        held = attack_while_watched(tenants, bystander, attack, code=WITH_TOOLS)
    finally:
        stop.set()
        poller.join(10)
    assert failures == [] and max(health) < BYSTANDER_MAX_S, (failures, sorted(health)[-3:])
    # A few hundred got in over the seconds (the header timeout frees slots), not 24,000.
    assert held["open"] < 2000, held
    # No flood of tracebacks: the server's log grew by a few lines at most.
    assert tenants.log_path.stat().st_size - log_size < 64 * 1024


# -- 5. one execution at a time ----------------------------------------------------------------

#: Forges its own end on the runner's channel (fd 3), then runs on: it stamps the time into
#: a file of its sandbox every 10 ms (it could as well read what comes next).
FORGE_END = """
import fs from 'node:fs';
fs.writeSync(3, JSON.stringify({ t: 'result', ok: true, value: '"forged"' }) + '\\n');
const until = Date.now() + 8000;
while (Date.now() < until) {
  fs.writeFileSync('alive.txt', String(Date.now()));
  await new Promise((resolve) => setTimeout(resolve, 10));
}
"""

#: The next execution of the same sandbox: did anything write the stamp while it ran?
NEXT_EXECUTION = """
import fs from 'node:fs';
const start = Date.now();
while (Date.now() - start < 1500) {
  if (Number(fs.readFileSync('alive.txt', 'utf8')) > start) return 'overlapped';
  await new Promise((resolve) => setTimeout(resolve, 10));
}
return 'alone';
"""


def test_a_forged_end_does_not_run_into_the_next_execution(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    def attack() -> list[str]:
        seen = []
        for _ in range(3):  # (the window it tries to use was about a second wide)
            forged = execute(tenants, attacker, FORGE_END)
            assert result_value(forged["result"]) == "forged"  # it did fool the channel...
            sandbox_id = forged["sandboxId"]
            seen.append(run_value(tenants, attacker, NEXT_EXECUTION, sandboxId=sandbox_id))
        return seen

    # ...but the next execution started only once all of it was gone.
    assert attack_while_watched(tenants, bystander, attack) == ["alone"] * 3


# -- 6. the kernel -----------------------------------------------------------------------------

#: Tries the kernel's riskier doors from Python inside the jail (Node has no raw syscall()).
KERNEL_PROBE = r"""
import { spawnSync } from 'node:child_process';
const probe = `
import ctypes, errno, json, platform, socket, threading
out = {}
for name, family, kind, proto in [("vsock", 40, 1, 0), ("packet", 17, 3, 0), ("raw", 2, 3, 1),
                                  ("netlink_audit", 16, 3, 9), ("netlink_route", 16, 3, 0),
                                  ("unix", 1, 1, 0), ("inet", 2, 1, 0)]:
    try:
        socket.socket(family, kind, proto).close()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
x86 = platform.machine() == "x86_64"
calls = {"io_uring_setup": 425, "userfaultfd": 323 if x86 else 282, "bpf": 321 if x86 else 280,
         "perf_event_open": 298 if x86 else 241, "keyctl": 250 if x86 else 219,
         "add_key": 248 if x86 else 217, "kexec_load": 246 if x86 else 104,
         "unshare": 272 if x86 else 97}
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in calls.items():
    out[name] = "ok" if libc.syscall(nr, 0, 0, 0, 0, 0) >= 0 else errno.errorcode[ctypes.get_errno()]
threading.Thread(target=lambda: None).start()
out["threads"] = "ok"
print(json.dumps(out))
`;
const done = spawnSync('python3', ['-c', probe], { encoding: 'utf8' });
if (done.status !== 0) throw new Error(done.stderr);
return JSON.parse(done.stdout);
"""


def test_the_kernel_surface_is_filtered(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    seen = attack_while_watched(
        tenants, bystander, lambda: result_value(run(tenants, attacker, KERNEL_PROBE))
    )
    for family in ("vsock", "packet", "netlink_audit"):
        assert seen[family] == "EAFNOSUPPORT", seen
    assert seen["raw"] == "EPERM", seen
    for call in ("io_uring_setup", "userfaultfd", "bpf", "perf_event_open", "keyctl", "add_key"):
        assert seen[call] == "EPERM", seen
    assert seen["kexec_load"] == "EPERM" and seen["unshare"] == "EPERM", seen
    # What programs need still works: Unix and IP sockets, route netlink, threads.
    assert {seen[k] for k in ("unix", "inet", "netlink_route", "threads")} == {"ok"}, seen


# -- 6. the host's memory --------------------------------------------------------------------


def test_one_project_cannot_reserve_the_hosts_memory(tmp_path: Path) -> None:
    # Each execution reserves 128 MiB (plus 16 MiB of files when they are a tmpfs): a project
    # may hold half of 1 GiB, so at most four executions at once, whatever its quota (10);
    # the others wait half a second for room, then get a 503.
    settings = {
        "sandbox_memory_mb": 128,
        "sandbox_disk_mb": 16,
        "sandbox_memory_budget_mb": 1024,
        "sandbox_warm_pool": 0,
        "sandbox_admission_wait_s": 0.5,
    }
    with LocalServer(tmp_path / "data", **settings) as server:
        attacker, bystander = server.create_key("hog"), server.create_key("calm")

        def one() -> httpx.Response:
            code = "await new Promise((resolve) => setTimeout(resolve, 4000)); return 1;"
            with server.client(attacker) as client:
                return client.post("/api/iris/execute", json={"code": code})

        def hog() -> list[httpx.Response]:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                calls = [pool.submit(one) for _ in range(8)]
                return [c.result(timeout=120) for c in calls]

        answers = attack_while_watched(server, bystander, hog)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) <= 4 and statuses.count(503) >= 4, statuses
    refused = next(a for a in answers if a.status_code == 503)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "share of the server's memory" in refused.json()["message"]


# -- 4. the runner's channel -------------------------------------------------------------------

#: Frames of a kind the host ignores, by the million, on the runner's channel (fd 3).
FRAME_FLOOD = """
import fs from 'node:fs';
const block = '{"t":"noop"}\\n'.repeat(100000);
for (let i = 0; i < 40; i++) fs.writeSync(3, block);
return 'flooded';
"""


def test_frames_that_are_not_output_count_against_the_channels_budget(
    tenants: LocalServer, attacker: str, bystander: str
) -> None:
    result = attack_while_watched(tenants, bystander, lambda: run(tenants, attacker, FRAME_FLOOD))
    assert result["success"] is False
    assert result["error"]["name"] == "OutputLimitError", result["error"]
