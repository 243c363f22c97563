"""The E2B provider against what real E2B does and a naive stand-in did not
(reviews/e2b-production-7e7bfd2.md): its egress proxy re-signs TLS, header rules are a
per-team feature, stacks share a key, a sandbox is listed before its create returns,
kill ends one process, teams have caps, and the template's ``user`` has sudo. Each test
here failed against the provider of 7e7bfd2."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
import uvicorn
from e2b import AsyncSandbox

from iris_exec.adapters.e2b.provider import (
    CODE_USER,
    EGRESS_HEADER,
    NODE,
    SANDBOX_TOKEN,
    SERVICE,
    E2BSandboxProvider,
)
from iris_exec.composition import Services
from iris_exec.domain.errors import ServiceUnavailable
from iris_exec.domain.models import Principal
from iris_exec.http.app import create_app
from iris_exec.local.server import WithMcp, mcp_endpoint
from iris_exec.services.commands import ExecuteCommand
from iris_exec.settings import Settings
from tests.support.app import sqlite_container
from tests.support.e2b_standin import E2BStandIn

pytestmark = pytest.mark.anyio
ALPHA = Principal("alpha", "harness")  # the service's own principal: no API key behind it
API_HOST = "api.iris.test"
Language = Literal["typescript", "javascript", "python"]


@pytest.fixture(scope="module")
def e2b() -> Iterator[E2BStandIn]:
    with E2BStandIn() as standin:
        if not standin.jailed:
            pytest.skip("the E2B stand-in's sandboxes need root and bubblewrap here")
        yield standin


@pytest.fixture
def sdk_env(e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in e2b.env.items():
        monkeypatch.setenv(name, value)
    e2b.team.transform_rules = True
    e2b.team.max_concurrent = 20
    yield
    e2b.clear_faults()


def build(
    tmp_path: Path,
    e2b: E2BStandIn,
    *,
    mode: str = "header-rewrite",
    stack: str = "local",
    create_grace_s: float = 120,
) -> Services:
    settings = Settings(
        data_dir=tmp_path / stack,
        public_url=f"https://{API_HOST}:{e2b.egress_port}",
        e2b_egress_mode=mode,
        stack_name=stack,
        sandbox_create_grace_s=create_grace_s,
        sandbox_idle_timeout_s=60,
    )
    provider = E2BSandboxProvider(settings, api_key=lambda: e2b.api_key)
    return sqlite_container(settings, provider)


@contextlib.asynccontextmanager
async def served(container: Services, e2b: E2BStandIn) -> AsyncIterator[None]:
    """This service's HTTP API on a loopback port, which E2B's egress proxy reaches as
    ``https://api.iris.test:<egress port>`` from the sandboxes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    e2b.route(API_HOST, f"http://127.0.0.1:{sock.getsockname()[1]}")
    mcp = mcp_endpoint(container)
    app = WithMcp(create_app(container), mcp)
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    async with mcp.session_manager_run():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            server.should_exit = True
            await task


def ts(
    code: str, sandbox_id: str | None = None, language: Language = "typescript"
) -> ExecuteCommand:
    return ExecuteCommand(code=code, language=language, timeout_s=30, sandbox_id=sandbox_id)


LOG_EVENT_TS = "import { iris } from './iris-prime';\nconst r = await iris.logEvent('through_e2b', { n: 1 }); return r.event;"
LOG_EVENT_PY = (
    "from iris_prime import iris\nr = iris.log_event('through_e2b', {'n': 1})\nreturn r['event']"
)


# ---- B1, B2: tool calls through E2B's egress proxy -----------------------------------------


@pytest.mark.usefixtures("sdk_env")
@pytest.mark.parametrize("mode", ["header-rewrite", "request-file"])
@pytest.mark.parametrize(
    ("language", "code"), [("typescript", LOG_EVENT_TS), ("python", LOG_EVENT_PY)]
)
async def test_tool_calls_pass_the_egress_proxy_in_both_modes(
    tmp_path: Path, e2b: E2BStandIn, mode: str, language: Language, code: str
) -> None:
    """The proxy re-signs TLS with a CA only the system bundle has: Node must be told."""
    e2b.team.transform_rules = mode == "header-rewrite"
    container = build(tmp_path, e2b, mode=mode)
    seen = len(e2b.egress_requests)
    async with served(container, e2b):
        answer = (await container.executions.execute(ALPHA, ts(code, language=language))).wire()
    assert answer["success"], answer["result"]["output"]
    assert answer["result"]["output"].startswith('=== Results ===\n"through_e2b"')
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None
    assert record.tool_channel == (EGRESS_HEADER if mode == "header-rewrite" else SANDBOX_TOKEN)
    calls = e2b.egress_requests[seen:]
    assert calls and all(c["host"] == API_HOST and c["path"] == "/mcp" for c in calls)
    assert all(c["headers"]["authorization"].startswith("Bearer iet_") for c in calls)


@pytest.mark.usefixtures("sdk_env")
async def test_header_rules_off_for_the_team_is_a_loud_500_not_a_503_to_retry(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    e2b.team.transform_rules = False  # E2B's default for a team
    container = build(tmp_path, e2b, mode="header-rewrite")
    key, _ = container.auth.create_key("alpha")
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/api/iris/execute",
            json={"code": "return 1"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 500
    assert "Retry-After" not in response.headers


# ---- B3, L1, L2: a stack-scoped reaper ------------------------------------------------------


@pytest.mark.usefixtures("sdk_env")
async def test_two_stacks_sharing_one_e2b_key_leave_each_other_alone(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    dev = build(tmp_path, e2b, stack="iris-dev", create_grace_s=0)
    prod = build(tmp_path, e2b, stack="iris-prod", create_grace_s=0)
    on_dev = (await dev.executions.execute(ALPHA, ts("return 1"))).wire()
    on_prod = (await prod.executions.execute(ALPHA, ts("return 2"))).wire()
    await dev.sandboxes.reconcile()
    await prod.sandboxes.reconcile()
    for container, answer in ((dev, on_dev), (prod, on_prod)):
        record = container.adapters.registry.get("alpha", answer["sandboxId"])
        assert record is not None
        assert e2b.sandbox(record.provider_ref).alive
        assert e2b.sandbox(record.provider_ref).metadata["stack"] in {"iris-dev", "iris-prod"}
    again = (await prod.executions.execute(ALPHA, ts("return 3", on_prod["sandboxId"]))).wire()
    assert again["success"]


@pytest.mark.usefixtures("sdk_env")
async def test_the_reaper_leaves_a_sandbox_that_is_being_created_alone(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    before = set(e2b.sandboxes)
    e2b.set_create_latency(1.5)  # E2B lists it at once; the create call returns later
    running = asyncio.create_task(container.executions.execute(ALPHA, ts("return 1")))
    while not set(e2b.sandboxes) - before:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await container.sandboxes.reconcile()  # the registry has no record of it yet
    answer = await running
    assert answer.success, answer.result.output


@pytest.mark.usefixtures("sdk_env")
async def test_a_second_e2b_sandbox_for_one_record_is_stopped(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b, create_grace_s=0)
    answer = (await container.executions.execute(ALPHA, ts("return 1"))).wire()
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None
    twin = await AsyncSandbox.create(
        template="iris-exec",
        metadata=dict(e2b.sandbox(record.provider_ref).metadata),
        api_key=e2b.api_key,
    )  # as if E2B had not honoured the create's idempotency key
    await container.sandboxes.reconcile()
    assert not e2b.sandbox(twin.sandbox_id).alive
    assert e2b.sandbox(record.provider_ref).alive


# ---- L3, S1: code that deletes or tampers ---------------------------------------------------


@pytest.mark.usefixtures("sdk_env")
async def test_code_deleting_its_files_is_not_taken_for_a_dead_sandbox(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    code = (
        "import fs from 'node:fs'; import os from 'node:os';\n"
        "for (const f of fs.readdirSync(os.homedir())) "
        "fs.rmSync(os.homedir() + '/' + f, { recursive: true, force: true });\n"
        "return 'gone';"
    )
    answer = (await container.executions.execute(ALPHA, ts(code))).wire()
    assert answer["success"], answer["result"]["output"]
    again = (await container.executions.execute(ALPHA, ts("return 2", answer["sandboxId"]))).wire()
    assert again["success"], again


TAMPER = f"""
import fs from 'node:fs';
import {{ spawn, execSync }} from 'node:child_process';
const tried: Record<string, string> = {{}};
const targets = [process.env.IRIS_ASSETS + '/runner.mjs', process.env.IRIS_ASSETS + '/esbuild',
  process.env.IRIS_ASSETS + '/python/runner.py', '{NODE}'];
for (const path of targets) {{
  try {{ fs.appendFileSync(path, '\\n// trojan'); tried[path] = 'written'; }}
  catch (e) {{ tried[path] = (e as NodeJS.ErrnoException).code ?? 'error'; }}
}}
// E2B leaves /usr/local world-writable, and the node image keeps Node there (closed now
// before the code runs: the attempt may fail, and if it did not, the trojan must not run).
try {{
  fs.rmSync('/usr/local/bin/node', {{ force: true }});
  fs.writeFileSync('/usr/local/bin/node', '#!/bin/sh\\necho trojan; exit 3\\n', {{ mode: 0o755 }});
  tried.usrLocal = 'written';
}} catch (e) {{ tried.usrLocal = (e as NodeJS.ErrnoException).code ?? 'error'; }}
try {{ execSync('sudo -n true', {{ stdio: 'ignore' }}); tried.sudo = 'root'; }} catch {{ tried.sudo = 'no'; }}
spawn('sleep', ['300'], {{ detached: true, stdio: 'ignore' }}).unref();
return tried;
"""


@pytest.mark.usefixtures("sdk_env")
async def test_code_cannot_tamper_with_later_executions(tmp_path: Path, e2b: E2BStandIn) -> None:
    container = build(tmp_path, e2b)
    answer = (await container.executions.execute(ALPHA, ts(TAMPER))).wire()
    assert answer["success"], answer["result"]["output"]
    assert '"written"' not in answer["result"]["output"], answer["result"]["output"]
    assert '"root"' not in answer["result"]["output"]
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None
    remote = e2b.sandbox(record.provider_ref)
    # Nothing the code started outlives its execution (envd's kill ends one process).
    leftovers = [c for c in remote.commands if c.running]
    assert leftovers == []
    probe = "import { execSync } from 'node:child_process';\n"
    probe += "return execSync('ps -eo user:12,args').toString();"
    after = (await container.executions.execute(ALPHA, ts(probe, answer["sandboxId"]))).wire()
    assert after["success"], after["result"]["output"]  # the trojan Node did not run it
    assert "sleep 300" not in after["result"]["output"]
    assert f"{CODE_USER}" in after["result"]["output"]  # the probe itself ran as the code's user


PLANT_ROOT_COMMANDS = r"""
import fs from 'node:fs';
const names = ['pgrep', 'head', 'pkill', 'rm', 'find', 'install', 'setpriv', 'env', 'sleep',
  'ionice', 'nice', 'tail', 'kill', 'mkdir', 'chmod', 'chown', 'touch'];
const planted: string[] = [];
for (const dir of ['/usr/local/sbin', '/usr/local/bin']) {
  try { fs.mkdirSync(dir, { recursive: true }); } catch {}
  for (const name of names) {
    try {
      fs.writeFileSync(`${dir}/${name}`, `#!/bin/sh\necho "$(id -un) ran ${dir}/${name}" >> /tmp/ran\nchmod 666 /tmp/ran\nexec /usr/bin/${name} "$@"\n`, { mode: 0o755 });
      planted.push(`${dir}/${name}`);
    } catch {}
  }
}
return planted.length;
"""
READ_RAN = (
    "import fs from 'node:fs';\n"
    "try { return fs.readFileSync('/tmp/ran', 'utf8'); } catch { return ''; }"
)


@pytest.mark.usefixtures("sdk_env")
async def test_commands_planted_in_usr_local_never_run_as_root(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    """E2B leaves /usr/local world-writable, first on root's (and envd's) PATH: code that
    plants `pgrep` or `rm` there must not have root run them (found by review: root in
    the next execution)."""
    container = build(tmp_path, e2b)
    planted = (await container.executions.execute(ALPHA, ts(PLANT_ROOT_COMMANDS))).wire()
    assert planted["success"], planted["result"]["output"]
    assert planted["result"]["returnValue"] == 0  # /usr/local was closed before the code ran
    after = (await container.executions.execute(ALPHA, ts(READ_RAN, planted["sandboxId"]))).wire()
    assert after["success"], after["result"]["output"]
    assert "root ran" not in str(after["result"]["returnValue"])


# ---- L6, P1: E2B's limits and our round trips -----------------------------------------------


@pytest.mark.usefixtures("sdk_env")
async def test_the_teams_sandbox_cap_is_a_503_with_retry_after(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    e2b.team.max_concurrent = len([s for s in e2b.sandboxes.values() if s.alive])
    container = build(tmp_path, e2b)
    with pytest.raises(ServiceUnavailable) as unavailable:
        await container.executions.execute(ALPHA, ts("return 1"))
    assert int(unavailable.value.headers["Retry-After"]) >= 1


@pytest.mark.usefixtures("sdk_env")
async def test_an_execution_costs_five_round_trips_new_and_four_reused(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b)
    async with served(container, e2b):
        start = len(e2b.requests)
        first = (await container.executions.execute(ALPHA, ts(LOG_EVENT_TS))).wire()
        middle = len(e2b.requests)
        second = (
            await container.executions.execute(ALPHA, ts(LOG_EVENT_TS, first["sandboxId"]))
        ).wire()
        end = len(e2b.requests)
    assert first["success"] and second["success"]
    assert (middle - start, end - middle) == (5, 4)


@pytest.mark.usefixtures("sdk_env")
async def test_sandboxes_carry_the_stack_and_list_only_their_own(
    tmp_path: Path, e2b: E2BStandIn
) -> None:
    container = build(tmp_path, e2b, stack="iris-blue")
    answer = (await container.executions.execute(ALPHA, ts("return 1"))).wire()
    listed = await container.adapters.provider.list_sandboxes()
    record = container.adapters.registry.get("alpha", answer["sandboxId"])
    assert record is not None
    assert [s.provider_ref for s in listed] == [record.provider_ref]
    assert e2b.sandbox(record.provider_ref).metadata["service"] == SERVICE
    assert listed[0].started_at is not None and abs(listed[0].started_at - time.time()) < 60
