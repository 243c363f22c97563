"""The E2B provider under the services, with the real SDK against the stand-in: what users
of E2B complain about most, checked one by one."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iris_exec.adapters.e2b import provider as e2b_provider
from iris_exec.adapters.e2b.provider import (
    CODE_USER,
    EGRESS_HEADER,
    SANDBOX_TOKEN,
    E2BSandboxProvider,
)
from iris_exec.composition import Services
from iris_exec.domain.errors import Gone, ServiceUnavailable, Unauthorized
from iris_exec.domain.models import Principal, SandboxStatus
from iris_exec.http.app import create_app
from iris_exec.services.commands import ExecuteCommand
from iris_exec.services.tokens import ExecutionTokens
from iris_exec.settings import Settings
from tests.support.app import sqlite_container
from tests.support.e2b_standin import E2BStandIn

pytestmark = pytest.mark.anyio
ALPHA = Principal("alpha", "key_a")
IDLE_S = 30.0


@pytest.fixture(scope="module")
def e2b() -> Iterator[E2BStandIn]:
    with E2BStandIn() as standin:
        yield standin


def build(
    tmp_path: Path,
    e2b: E2BStandIn,
    *,
    egress: bool = True,
    api_key: str | None = None,
    max_lifetime_s: float = 3600,
    transform_rules: bool = True,
    stack: str = "local",
    create_grace_s: float = 120,
) -> Services:
    e2b.team.transform_rules = transform_rules  # E2B enables them per team, on request
    settings = Settings(
        data_dir=tmp_path,
        public_url="https://abc123.execute-api.us-east-1.amazonaws.com/dev",
        sandbox_idle_timeout_s=IDLE_S,
        sandbox_max_lifetime_s=max_lifetime_s,
        e2b_egress_mode="header-rewrite" if egress else "request-file",
        stack_name=stack,
        sandbox_create_grace_s=create_grace_s,
    )
    provider = E2BSandboxProvider(settings, api_key=lambda: api_key or e2b.api_key)
    return sqlite_container(settings, provider)


@pytest.fixture
def sdk_env(e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in e2b.env.items():
        monkeypatch.setenv(name, value)


def command(
    code: str = "return 1", sandbox_id: str | None = None, timeout_s: float = 20
) -> ExecuteCommand:
    return ExecuteCommand(
        code=code, language="typescript", timeout_s=timeout_s, sandbox_id=sandbox_id
    )


async def test_a_create_retried_after_a_502_registers_one_sandbox(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b)
    before = set(e2b.sandboxes)
    e2b.fail_next_create(status=502, after_create=True)  # created, but the answer is lost
    answer = (await container.executions.execute(ALPHA, command())).wire()
    assert answer["success"]
    created = set(e2b.sandboxes) - before
    assert len(created) == 1
    requests = [r for r in e2b.create_requests if r.sandbox_id in created]
    assert len(requests) == 2 and requests[1].replayed  # the SDK's retry got the same sandbox
    assert requests[0].headers.get("idempotency-key") == requests[1].headers.get("idempotency-key")
    assert len(container.adapters.registry.list_live("alpha", time.time())) == 1


async def test_reconnecting_never_resets_the_lifetime(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b)
    first = (await container.executions.execute(ALPHA, command(timeout_s=10))).wire()
    record = container.adapters.registry.get("alpha", first["sandboxId"])
    assert record is not None
    await container.executions.execute(ALPHA, command(sandbox_id=first["sandboxId"], timeout_s=10))
    remote = e2b.sandbox(record.provider_ref)
    left = remote.end_at.timestamp() - time.time()
    # This execution, then the idle timeout, then a minute: not E2B's default 5 minutes.
    assert 10 + IDLE_S + 60 - 5 <= left <= 10 + IDLE_S + 60 + 1


async def test_a_reconnect_never_extends_a_sandbox_past_its_lifetime(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b, max_lifetime_s=40)
    first = (await container.executions.execute(ALPHA, command(timeout_s=10))).wire()
    record = container.adapters.registry.get("alpha", first["sandboxId"])
    assert record is not None
    await container.executions.execute(ALPHA, command(sandbox_id=first["sandboxId"], timeout_s=10))
    remote = e2b.sandbox(record.provider_ref)
    assert remote.end_at.timestamp() <= record.lifetime_deadline + 1


async def test_a_sandbox_killed_behind_our_back_is_410_with_the_reason(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b)
    first = (await container.executions.execute(ALPHA, command())).wire()
    record = container.adapters.registry.get("alpha", first["sandboxId"])
    assert record is not None
    e2b.kill_behind_our_back(record.provider_ref)
    with pytest.raises(Gone) as gone:
        await container.executions.execute(ALPHA, command(sandbox_id=first["sandboxId"]))
    assert gone.value.reason in {"expired", "failed"}
    assert "stopped outside this service" in gone.value.message or "killed" in gone.value.message
    after = container.adapters.registry.get("alpha", first["sandboxId"])
    assert after is not None and after.status is not SandboxStatus.RUNNING
    status = (await container.sandboxes.describe(ALPHA, first["sandboxId"])).wire()
    assert status["active"] is False


async def test_rate_limiting_by_e2b_is_503_with_retry_after(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b)
    e2b.rate_limit_next(times=20, retry_after=3)
    try:
        with pytest.raises(ServiceUnavailable) as unavailable:
            await container.executions.execute(ALPHA, command())
    finally:
        e2b.clear_faults()
    assert int(unavailable.value.headers["Retry-After"]) >= 1
    assert container.adapters.registry.list_live("alpha", time.time()) == []


async def test_with_egress_injection_no_token_enters_the_sandbox(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b, egress=True)
    answer = (await container.executions.execute(ALPHA, command("return 1"))).wire()
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None and record.tool_channel == EGRESS_HEADER
    remote = e2b.sandbox(record.provider_ref)
    sent = json.dumps(remote.envs) + json.dumps([c.envs for c in remote.commands])
    sent += "".join(content.decode("utf-8", "replace") for _, content in remote.file_contents)
    assert "iet_" not in sent
    request = json.loads(next(c for p, c in remote.file_contents if p.endswith("request.json")))
    assert request["tools"] == {
        "url": "https://abc123.execute-api.us-east-1.amazonaws.com/dev/mcp",
        "token": None,
    }
    # The token went to E2B's egress proxy, for the tool host only; nothing else may be reached.
    network = remote.network_updates[-1]
    rules = network["rules"]["abc123.execute-api.us-east-1.amazonaws.com"]
    assert rules[0]["transform"]["headers"]["Authorization"].startswith("Bearer iet_")
    assert network["allowOut"] == ["abc123.execute-api.us-east-1.amazonaws.com"]
    assert network["denyOut"] == ["0.0.0.0/0"]
    token = rules[0]["transform"]["headers"]["Authorization"].removeprefix("Bearer ")
    # It was signed for this execution, which has ended: the tool server no longer honours it.
    signed = ExecutionTokens(container.adapters.signing_key, container.clock).verify(token)
    assert (signed.project_id, signed.sandbox_id) == ("alpha", answer["sandboxId"])
    with pytest.raises(Unauthorized, match="has ended"):
        container.tokens.verify(token)


async def test_without_egress_rules_the_token_rides_in_the_request_and_the_record_says_so(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b, egress=False)
    answer = (await container.executions.execute(ALPHA, command("return 1"))).wire()
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None and record.tool_channel == SANDBOX_TOKEN
    remote = e2b.sandbox(record.provider_ref)
    request = json.loads(next(c for p, c in remote.file_contents if p.endswith("request.json")))
    assert request["tools"]["token"].startswith("iet_")
    assert "iet_" not in json.dumps(remote.envs) + json.dumps([c.envs for c in remote.commands])


async def test_an_execution_leaves_no_files_behind(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b)
    answer = (await container.executions.execute(ALPHA, command("return 1"))).wire()
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None
    root = e2b.sandbox(record.provider_ref).root
    for place in (root / "root" / ".iris", root / "home" / CODE_USER / ".iris"):
        assert place.is_dir() and not any(place.iterdir()), place  # made, then emptied


async def test_orphans_are_stopped_by_reconcile(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b, create_grace_s=0)
    provider = container.adapters.provider
    orphan = await provider.create("sb_orphan00000001", "alpha", 600)  # never registered
    kept = (await container.executions.execute(ALPHA, command())).wire()
    assert e2b.sandbox(orphan.provider_ref).alive
    await container.sandboxes.reconcile()
    assert not e2b.sandbox(orphan.provider_ref).alive
    record = container.adapters.registry.get("alpha", kept["sandboxId"])
    assert record is not None and e2b.sandbox(record.provider_ref).alive


async def test_a_rejected_e2b_key_is_a_500_that_says_nothing_of_it(
    tmp_path: Path, e2b: E2BStandIn, sdk_env: None
) -> None:
    container = build(tmp_path, e2b, api_key="e2b_" + "0" * 40)
    key, _ = container.auth.create_key("alpha")
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/api/iris/execute", json={"code": "1"}, headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 500
    assert "e2b_" not in response.text
    assert response.json()["message"].startswith("An internal error occurred")


@pytest.mark.usefixtures("sdk_env")
async def test_output_is_followed_live_while_the_code_runs(tmp_path: Path, e2b: E2BStandIn) -> None:
    """Asynchronous executions read log lines while the code runs: the provider follows the
    runner's frames as they are written instead of reading them once at the end."""
    container = build(tmp_path, e2b)
    lease = await container.sandboxes.acquire(ALPHA, None, wait=True, timeout_s=30)
    heard: list[tuple[float, str]] = []
    code = "console.log('early'); await new Promise(r => setTimeout(r, 2500)); console.log('late');"
    began = time.monotonic()
    answer = await container.executions.run(
        ALPHA,
        command(code=code, timeout_s=30),
        lease,
        "ex_live0000000001",
        on_output=lambda chunk: heard.append((time.monotonic() - began, chunk.text)),
    )
    ended = time.monotonic() - began
    assert answer.result.logs == ["[stdout] early", "[stdout] late"]
    assert [text for _, text in heard] == ["early\n", "late\n"]  # each once, in order
    assert heard[0][0] < ended - 2.0  # 'early' arrived while the code still slept


@pytest.mark.usefixtures("sdk_env")
async def test_python_runs_in_an_e2b_sandbox_with_the_same_shapes(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    code = "import sys\nprint('python', sys.version_info[0])\nreturn [1, 2]"
    ok = await container.executions.execute(
        ALPHA, ExecuteCommand(code=code, language="python", timeout_s=20)
    )
    assert ok.result.logs == ["[stdout] python 3"]
    assert ok.result.output.startswith("=== Results ===\n[\n  1,\n  2\n]")
    failed = await container.executions.execute(
        ALPHA,
        ExecuteCommand(
            code="raise RuntimeError('no')", language="python", timeout_s=20,
            sandbox_id=ok.sandbox_id,
        ),
    )  # fmt: skip
    assert failed.result.error is not None and failed.result.error.name == "RuntimeError"
    assert failed.result.metadata.language == "python"


def wired(services: Services) -> Callable[[Principal, ExecuteCommand], Awaitable[dict[str, Any]]]:
    """execute, answering the wire's JSON."""

    async def run(who: Principal, command: ExecuteCommand) -> dict[str, Any]:
        return (await services.executions.execute(who, command)).wire()

    return run


def kept_command(code: str, sandbox_id: str | None, **fields: object) -> ExecuteCommand:
    return ExecuteCommand(
        code=code,
        language=str(fields.pop("language", "typescript")),  # type: ignore[arg-type]
        timeout_s=float(fields.pop("timeout_s", 20)),  # type: ignore[arg-type]
        sandbox_id=sandbox_id,
        keep_state=True,
    )


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_keeps_a_runner_alive_in_the_e2b_sandbox(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    run = wired(container)
    first = await run(ALPHA, kept_command("const base = 40;\nlet n = 1;\nreturn base + n", None))
    assert first["result"]["returnValue"] == 41, first
    assert first["result"]["metadata"]["stateReset"] is False
    sandbox = first["sandboxId"]
    second = await run(ALPHA, kept_command("n++;\nconsole.log('kept');\nreturn base + n", sandbox))
    assert second["result"]["returnValue"] == 42, second
    assert second["result"]["logs"] == ["[stdout] kept"]
    py = await run(ALPHA, kept_command("x = 2", sandbox, language="python"))
    assert py["result"]["success"], py
    py2 = await run(ALPHA, kept_command("return x * 21", sandbox, language="python"))
    assert py2["result"]["returnValue"] == 42, py2
    # What an execution started does not run on into the next.
    await run(
        ALPHA,
        kept_command(
            "import { spawn } from 'node:child_process';\n"
            "spawn('sleep', ['713']);\nsetInterval(() => console.log('tick'), 5);\nreturn 1",
            sandbox,
        ),
    )
    quiet = await run(
        ALPHA,
        kept_command(
            "import { execSync } from 'node:child_process';\n"
            "await new Promise((r) => setTimeout(r, 100));\n"
            "return execSync(\"pgrep -c -f 'slee[p] 713' || true\").toString().trim();",
            sandbox,
        ),
    )
    assert quiet["result"]["returnValue"] == "0", quiet
    assert quiet["result"]["logs"] == []


@pytest.mark.usefixtures("sdk_env")
async def test_a_fresh_execution_leaves_the_kept_runners_alone_on_e2b(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    """As locally: an execution without keepState runs fresh and neither sees nor ends the
    sandbox's kept runners, even if its code tries to wake them."""
    container = build(tmp_path, e2b)
    run = wired(container)
    first = await run(ALPHA, kept_command("const kept = 41;\nreturn kept", None))
    sandbox = first["sandboxId"]
    fresh = await run(
        ALPHA,
        ExecuteCommand(
            code="import { execSync } from 'node:child_process';\n"
            "execSync('pkill -CONT -u iris || true');\nreturn typeof kept",
            language="typescript",
            timeout_s=20,
            sandbox_id=sandbox,
        ),
    )
    assert fresh["result"]["returnValue"] == "undefined", fresh
    after = await run(ALPHA, kept_command("return kept + 1", sandbox))
    assert after["result"]["returnValue"] == 42, after
    assert after["result"]["metadata"]["stateReset"] is False, after["result"]["metadata"]


@pytest.mark.usefixtures("sdk_env")
async def test_kept_code_reads_an_empty_stdin_on_e2b(tmp_path: Path, e2b: E2BStandIn) -> None:
    """As in a fresh run: not the kept runner's request pipe, where reading would wait for
    the time limit (and lose the state)."""
    container = build(tmp_path, e2b)
    run = wired(container)
    first = await run(ALPHA, kept_command("const kept = 1;\nreturn kept", None))
    read = "return [require('node:fs').readFileSync(0, 'utf8').length, kept]"
    answer = await run(ALPHA, kept_command(read, first["sandboxId"], timeout_s=5))
    assert answer["result"]["returnValue"] == [0, 1], answer["result"]
    assert answer["result"]["metadata"]["stateReset"] is False


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_resets_on_e2b_are_said(tmp_path: Path, e2b: E2BStandIn) -> None:
    container = build(tmp_path, e2b)
    run = wired(container)
    first = await run(ALPHA, kept_command("const kept = 1;\nreturn kept", None))
    sandbox = first["sandboxId"]
    exited = await run(ALPHA, kept_command("process.exit(4);", sandbox))
    assert exited["result"]["success"] is False
    after = await run(ALPHA, kept_command("return typeof kept", sandbox))
    assert after["result"]["returnValue"] == "undefined", after
    assert after["result"]["metadata"]["stateReset"] is True
    assert after["result"]["metadata"]["stateResetReason"] == "exit"
    await run(ALPHA, kept_command("const again = 2;\nreturn again", sandbox))
    slow = await run(ALPHA, kept_command("while (true) {}", sandbox, timeout_s=2))
    assert slow["result"]["metadata"]["limitHit"] == "timeout"
    after = await run(ALPHA, kept_command("return typeof again", sandbox))
    assert after["result"]["returnValue"] == "undefined", after
    assert after["result"]["metadata"]["stateResetReason"] == "timeout"


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_forged_state_line_or_a_live_thread(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    run = wired(container)
    forged = await run(
        ALPHA,
        kept_command(
            "import fs from 'node:fs';\n"
            "fs.writeSync(3, JSON.stringify({ t: 'iris-state', reset: 'timeout' }) + '\\n');\n"
            "return 1",
            None,
        ),
    )
    assert forged["result"]["metadata"]["stateReset"] is False, forged
    sandbox = forged["sandboxId"]
    threaded = await run(
        ALPHA,
        kept_command(
            "import threading, time\nkept = 1\n"
            "threading.Thread(target=lambda: time.sleep(600), daemon=True).start()",
            sandbox,
            language="python",
        ),
    )
    assert threaded["result"]["success"], threaded
    after = await run(ALPHA, kept_command("return 'kept' in globals()", sandbox, language="python"))
    assert after["result"]["metadata"]["stateResetReason"] == "busy", after
    assert after["result"]["returnValue"] is False


#: Python kept code: a POSIX timer (which the runner's quiesce does not clear, unlike alarm()
#: and setitimer()) makes the runner write the time to BEAT every 20 ms, whenever it runs.
#: A stopped runner only collects the timer's signal; one that runs between executions beats.
BEAT = f"/home/{CODE_USER}/beat.txt"
BEATING = (
    "import ctypes, os, signal, time\n"
    f"BEAT = '{BEAT}'\n"
    "def beat(*_):\n"  # (a beat may interrupt another: each writes its own file)
    "    new = f'{BEAT}.{time.monotonic_ns()}'\n"
    "    with open(new, 'w') as f:\n        f.write(repr(time.time()))\n"
    f"    os.replace(new, '{BEAT}')\n"
    "signal.signal(signal.SIGUSR1, beat)\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "event = (ctypes.c_int * 16)()\n"  # struct sigevent: value (8 bytes), signo, notify
    "event[2], event[3] = signal.SIGUSR1, 0\n"  # SIGEV_SIGNAL
    "timer = ctypes.c_void_p()\n"
    "assert libc.timer_create(1, event, ctypes.byref(timer)) == 0\n"  # CLOCK_MONOTONIC
    "every = (ctypes.c_long * 4)(0, 20_000_000, 0, 20_000_000)\n"
    "assert libc.timer_settime(timer, 0, every, None) == 0\n"
    "time.sleep(0.1)\n"
    "return 'beating'"
)

#: Then (kept): processes that send the runner, their parent, SIGCONT without end.
WAKING = (
    "runner = os.getpid()\n"
    "for _ in range(4):\n    if os.fork() == 0:\n        while True:\n"
    "            os.kill(runner, signal.SIGCONT)\n"
    "time.sleep(0.05)\nreturn 'woken'"
)


def last_beat(e2b: E2BStandIn, container: Services, sandbox_id: str) -> float:
    record = container.adapters.registry.get("alpha", sandbox_id)
    assert record is not None
    return float((e2b.sandbox(record.provider_ref).root / BEAT.lstrip("/")).read_text())


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_runner_woken_by_its_children_is_stopped_all_the_same(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    # The code leaves processes that send the runner SIGCONT as fast as they can: between
    # root's SIGSTOP and their own SIGKILL they wake it, and the runner would run on
    # between executions (here its timer beats). Several rounds: it is a race.
    container = build(tmp_path, e2b)
    run = wired(container)
    armed = await run(ALPHA, kept_command(BEATING, None, language="python"))
    assert armed["result"]["returnValue"] == "beating", armed
    sandbox = armed["sandboxId"]
    for round_ in range(4):
        woken = await run(ALPHA, kept_command(WAKING, sandbox, language="python"))
        answered = time.time()
        assert woken["result"].get("returnValue") == "woken", woken
        await asyncio.sleep(1.0)
        # Nothing of the runner ran after its answer (beyond a moment for the pause to land).
        assert last_beat(e2b, container, sandbox) < answered + 0.3, round_
    after = await run(
        ALPHA, kept_command("return 'timer' in globals()", sandbox, language="python")
    )
    meta = after["result"]["metadata"]
    # Either the runner was kept, stopped, or it was given up and the answer says so.
    assert (after["result"]["returnValue"], meta["stateReset"]) in {(True, False), (False, True)}
    assert meta["stateReset"] is False or meta["stateResetReason"] == "busy", after


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_runner_woken_by_another_languages_code_is_stopped_again(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    # A JavaScript execution wakes the sandbox's (stopped) Python runner: the pause after it
    # must stop that runner too, or it runs on between executions.
    container = build(tmp_path, e2b)
    run = wired(container)
    armed = await run(ALPHA, kept_command(BEATING, None, language="python"))
    assert armed["result"]["returnValue"] == "beating", armed
    sandbox = armed["sandboxId"]
    woke = await run(
        ALPHA,
        kept_command(
            "import fs from 'node:fs';\n"
            "const runners = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).filter((p) => {\n"
            "  try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('runner.py'); }\n"
            "  catch { return false; }\n"
            "});\n"
            "for (const p of runners) process.kill(Number(p), 'SIGCONT');\n"
            "await new Promise((r) => setTimeout(r, 100));\n"
            "return runners.length",
            sandbox,
            language="javascript",
        ),
    )
    answered = time.time()
    assert woke["result"]["returnValue"] == 1, woke
    assert last_beat(e2b, container, sandbox) > answered - 1  # it did run while woken
    await asyncio.sleep(1.0)
    assert last_beat(e2b, container, sandbox) < answered + 0.3
    after = await run(
        ALPHA, kept_command("return 'timer' in globals()", sandbox, language="python")
    )
    assert after["result"]["returnValue"] is True, after
    assert after["result"]["metadata"]["stateReset"] is False


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_pause_that_cannot_hold_gives_the_runner_up(
    tmp_path: Path, e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no round to spare, the SIGCONT senders outlast the pause: the runner is killed
    # rather than left running, and the next execution says why.
    monkeypatch.setattr(e2b_provider, "_PAUSE", e2b_provider._pause(rounds=0))
    container = build(tmp_path, e2b)
    run = wired(container)
    armed = await run(ALPHA, kept_command(BEATING, None, language="python"))
    assert armed["result"]["returnValue"] == "beating", armed
    sandbox = armed["sandboxId"]
    woken = await run(ALPHA, kept_command(WAKING, sandbox, language="python"))
    answered = time.time()
    assert woken["result"].get("returnValue") == "woken", woken
    await asyncio.sleep(1.0)
    assert last_beat(e2b, container, sandbox) < answered + 0.3
    after = await run(
        ALPHA, kept_command("return 'timer' in globals()", sandbox, language="python")
    )
    assert after["result"]["returnValue"] is False, after
    assert after["result"]["metadata"]["stateResetReason"] == "busy", after


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_dead_runners_pid_taken_by_the_code_is_not_spared(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    # The Python runner exits; its pid file stays until Python runs again. A process of the
    # code that gets that pid (the code can cycle pids; here the test hands it over, keeping
    # the dead runner's start time) must be killed like any other, not spared as a runner.
    container = build(tmp_path, e2b)
    run = wired(container)
    first = await run(ALPHA, kept_command("x = 1", None, language="python"))
    sandbox = first["sandboxId"]
    record = container.adapters.registry.get("alpha", sandbox)
    assert record is not None
    root = e2b.sandbox(record.provider_ref).root
    exited = await run(ALPHA, kept_command("raise SystemExit(3)", sandbox, language="python"))
    assert exited["result"]["success"] is False, exited
    home = root / "home" / CODE_USER
    taking = asyncio.ensure_future(
        run(
            ALPHA,
            kept_command(
                "import { execSync } from 'node:child_process';\n"
                "import fs from 'node:fs';\n"
                # Not the runner's child (it ends those): a process of the code left behind.
                "const pid = execSync(`sh -c 'trap \"\" HUP; sleep 611 >/dev/null 2>&1 & echo $!'`);\n"
                "fs.writeFileSync('/home/iris/impostor.pid', pid.toString().trim());\n"
                "while (!fs.existsSync('/home/iris/go')) await new Promise(r => setTimeout(r, 20));\n"
                "return 1",
                sandbox,
                language="javascript",
            ),
        )
    )
    pid_file = root / "root" / ".iris-kept" / "python" / "pid"
    async with asyncio.timeout(15):
        while not (home / "impostor.pid").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    fields = pid_file.read_text().split()
    assert (home / "impostor.pid").read_text().isdigit()
    pid_file.write_text(" ".join([(home / "impostor.pid").read_text(), *fields[1:]]) + "\n")
    (home / "go").write_text("")
    assert (await taking)["result"]["returnValue"] == 1
    left = await run(
        ALPHA,
        kept_command(
            "import { execSync } from 'node:child_process';\n"
            "return execSync(\"pgrep -c -f 'slee[p] 611' || true\").toString().trim();",
            sandbox,
            language="javascript",
        ),
    )
    assert left["result"]["returnValue"] == "0", left
    after = await run(ALPHA, kept_command("return 'x' in globals()", sandbox, language="python"))
    assert after["result"]["returnValue"] is False, after
    assert after["result"]["metadata"]["stateResetReason"] == "exit", after


@pytest.mark.usefixtures("sdk_env")
async def test_keep_state_on_e2b_a_runner_in_a_group_of_its_own_is_not_woken_by_the_kernel(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    # The kernel sends SIGHUP and SIGCONT to a process group that becomes orphaned with a
    # stopped member. A runner that made a group of its own while its parent was root's
    # shell (in the same session) would be woken when that shell exits, after the pause.
    container = build(tmp_path, e2b)
    run = wired(container)
    code = BEATING.replace(
        "time.sleep(0.1)\n",
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "try:\n    os.setpgid(0, 0)\nexcept PermissionError:\n    pass\n"
        "time.sleep(0.1)\n",
    )
    armed = await run(ALPHA, kept_command(code, None, language="python"))
    answered = time.time()
    assert armed["result"].get("returnValue") == "beating", armed
    assert armed["result"]["logs"] == [], armed  # (nothing of root's shell either)
    await asyncio.sleep(1.0)
    assert last_beat(e2b, container, armed["sandboxId"]) < answered + 0.3
    after = await run(
        ALPHA, kept_command("return 'timer' in globals()", armed["sandboxId"], language="python")
    )
    assert after["result"]["returnValue"] is True, after
