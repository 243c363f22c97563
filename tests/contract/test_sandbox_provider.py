"""SandboxProvider contract, against the local jail and the E2B adapter (the real SDK talking
to the stand-in, whose commands run real Node). Same code, same answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from iris_exec.adapters.e2b.provider import E2BSandboxProvider
from iris_exec.adapters.local.provider import LocalSandboxProvider
from iris_exec.domain.errors import SandboxLost
from iris_exec.domain.models import ExecutionJob
from iris_exec.domain.ports import SandboxProvider
from iris_exec.settings import Settings
from tests.support.e2b_standin import E2BStandIn

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="session")
def e2b() -> Iterator[E2BStandIn]:
    with E2BStandIn() as standin:
        yield standin


@pytest.fixture(params=["local", "e2b"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SandboxProvider]:
    if request.param == "local":
        local = LocalSandboxProvider(Settings(data_dir=tmp_path / "data", sandbox_warm_pool=0))
        await local.start()
        yield local
        await local.shutdown()
        return
    standin: E2BStandIn = request.getfixturevalue("e2b")
    for name, value in standin.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(public_url="https://api.example.test/dev")
    remote = E2BSandboxProvider(settings, api_key=lambda: standin.api_key)
    await remote.start()
    yield remote
    await remote.shutdown()


def new_id() -> str:
    return "sb_" + uuid.uuid4().hex[:16]


def job(code: str, *, timeout_s: float = 20, output_limit: int = 1 << 20) -> ExecutionJob:
    return ExecutionJob(
        execution_id="ex_contract1",
        source=code,
        language="typescript",
        project_id="p1",
        session_id="s1",
        context={"k": "v"},
        timeout_s=timeout_s,
        output_limit_bytes=output_limit,
    )


async def test_runs_code_and_returns_its_value_and_output(provider: SandboxProvider) -> None:
    ref = (await provider.create(new_id(), "p1", 600)).provider_ref
    code = (
        "import { projectId, sessionId, context } from './iris-prime';\n"
        "const n: number = 41;\n"
        "console.log('out', projectId);\nconsole.error('err', sessionId);\n"
        "return { n: n + 1, context };"
    )
    result = await provider.run(ref, job(code))
    assert result.succeeded, result
    assert json.loads(result.value_json or "null") == {"n": 42, "context": {"k": "v"}}
    assert [(c.stream, c.text) for c in result.output] == [
        ("stdout", "out p1\n"),
        ("stderr", "err s1\n"),
    ]
    assert result.execution_ms >= 0
    await provider.kill(ref)


async def test_files_persist_in_a_sandbox_and_only_there(provider: SandboxProvider) -> None:
    first = (await provider.create(new_id(), "p1", 600)).provider_ref
    second = (await provider.create(new_id(), "p1", 600)).provider_ref
    write = "import fs from 'fs';\nfs.writeFileSync('kept.txt', 'yes');"
    read = "import fs from 'fs';\nreturn fs.existsSync('kept.txt') ? fs.readFileSync('kept.txt', 'utf8') : null;"
    assert (await provider.run(first, job(write))).succeeded
    assert (await provider.run(first, job(read))).value_json == '"yes"'
    assert (await provider.run(second, job(read))).value_json == "null"
    for ref in (first, second):
        await provider.kill(ref)


async def test_a_killed_sandbox_is_gone(provider: SandboxProvider) -> None:
    sandbox_id = new_id()
    ref = (await provider.create(sandbox_id, "p1", 600)).provider_ref
    assert await provider.is_alive(ref)
    listed = {s.provider_ref: s for s in await provider.list_sandboxes()}
    assert listed[ref].sandbox_id == sandbox_id
    assert listed[ref].project_id == "p1"
    await provider.kill(ref)
    assert not await provider.is_alive(ref)
    assert ref not in {s.provider_ref for s in await provider.list_sandboxes()}
    with pytest.raises(SandboxLost):
        await provider.run(ref, job("return 1"))
    await provider.kill(ref)  # idempotent


@pytest.mark.parametrize(
    ("code", "name", "message"),
    [
        ("const x: number = ;", "SyntaxError", ""),
        (
            "import x from './missing';\nx();",
            "ModuleNotFoundError",
            "Cannot find module './missing'",
        ),
        ("throw new TypeError('bad');", "TypeError", "bad"),
        ("process.exit(3);", "Error", "Process exited with code 3"),
    ],
    ids=["syntax", "missing-module", "thrown", "exit-code"],
)
async def test_errors_of_the_code_are_data(
    provider: SandboxProvider, code: str, name: str, message: str
) -> None:
    ref = (await provider.create(new_id(), "p1", 600)).provider_ref
    result = await provider.run(ref, job(code))
    assert not result.succeeded
    assert result.error is not None
    assert result.error.name == name
    assert message in result.error.message
    await provider.kill(ref)


async def test_the_time_limit_stops_the_code(provider: SandboxProvider) -> None:
    ref = (await provider.create(new_id(), "p1", 600)).provider_ref
    result = await provider.run(ref, job("while (true) {}", timeout_s=1.5))
    assert result.error is not None and result.error.name == "TimeoutError"
    assert result.limit_hit == "timeout"
    # The sandbox is still usable afterwards.
    assert (await provider.run(ref, job("return 2"))).value_json == "2"
    await provider.kill(ref)


async def test_the_output_cap_stops_the_code(provider: SandboxProvider) -> None:
    ref = (await provider.create(new_id(), "p1", 600)).provider_ref
    code = "for (let i = 0; i < 100000; i++) console.log('line ' + i);\nreturn 'done';"
    result = await provider.run(ref, job(code, output_limit=2000))
    assert result.error is not None and result.error.name == "OutputLimitError"
    assert result.output_truncated
    assert sum(len(c.text.encode()) for c in result.output) <= 2000
    await provider.kill(ref)
