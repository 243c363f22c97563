"""The E2B stand-in, driven by the real E2B SDK (async API) and e2b_code_interpreter.

Each test talks to the stand-in exactly as production code talks to E2B: through
``e2b.AsyncSandbox`` with the environment variables ``E2BStandIn.env`` sets.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import ssl
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import certifi
import httpx
import pytest
from e2b import (
    AsyncSandbox,
    AuthenticationException,
    CommandExitException,
    FileNotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxQuery,
    ServiceBusyException,
    TimeoutException,
)

from tests.support.e2b_standin import CommandRecord, E2BStandIn

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def e2b() -> Iterator[E2BStandIn]:
    with E2BStandIn() as standin:
        yield standin


@pytest.fixture(autouse=True)
def point_sdk_at_standin(e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in e2b.env.items():
        monkeypatch.setenv(name, value)
    yield
    e2b.clear_faults()


def code_interpreter_sandbox() -> type[AsyncSandbox]:
    """``e2b_code_interpreter.AsyncSandbox`` (the package ships no type information)."""
    cls = importlib.import_module("e2b_code_interpreter").AsyncSandbox
    assert isinstance(cls, type) and issubclass(cls, AsyncSandbox)
    return cls


async def ended(record: CommandRecord) -> CommandRecord:
    """Wait until the stand-in has reaped the command (its end is recorded after the answer)."""
    async with asyncio.timeout(5):
        while record.running:  # noqa: ASYNC110 (filled in by the stand-in's thread)
            await asyncio.sleep(0.02)
    return record


async def host_process_alive(pid: int) -> bool:
    """Whether a process runs on this host (a zombie awaiting its reaper does not)."""
    try:
        stat = await anyio.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def host_pid_of(pid: int, cmdline: str) -> int:
    """This host's pid of a process the sandbox knows as ``pid`` (a jail has its own PID
    namespace; without a jail they are the same)."""
    async for proc in anyio.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (await (proc / "cmdline").read_bytes()).replace(b"\0", b" ").strip()
            status = await (proc / "status").read_text()
        except OSError:
            continue
        nspid = next(
            (line.split()[1:] for line in status.splitlines() if line.startswith("NSpid")), []
        )
        if args.decode() == cmdline and nspid and int(nspid[-1]) == pid:
            return int(proc.name)
    raise LookupError(f"no process {pid} ({cmdline}) on this host")


# ---- control plane -----------------------------------------------------------------------


async def test_create_records_what_the_sdk_sent(e2b: E2BStandIn) -> None:
    sandbox = await AsyncSandbox.create(
        template="iris-node20",
        timeout=120,
        metadata={"project": "p1", "purpose": "create"},
        envs={"IRIS_TOKEN": "t-1"},
        network={"allow_out": ["api.example.com"], "deny_out": ["0.0.0.0/0"]},
        idempotency_key="create-1",
    )

    record = e2b.sandbox(sandbox.sandbox_id)
    assert record.alive
    assert record.template_id == "iris-node20"
    assert record.metadata == {"project": "p1", "purpose": "create"}
    assert record.envs == {"IRIS_TOKEN": "t-1"}
    assert record.timeout_s == 120
    assert record.end_at - record.started_at == timedelta(seconds=120)
    assert record.network == {"allowOut": ["api.example.com"], "denyOut": ["0.0.0.0/0"]}
    assert record.idempotency_key == "create-1"
    last = e2b.create_requests[-1]
    assert (last.status, last.sandbox_id, last.idempotency_key) == (
        201,
        record.sandbox_id,
        "create-1",
    )
    assert last.headers["x-api-key"] == e2b.api_key

    info = await sandbox.get_info()
    assert info.sandbox_id == sandbox.sandbox_id
    assert info.template_id == "iris-node20"
    assert info.metadata == {"project": "p1", "purpose": "create"}
    assert info.end_at == record.end_at
    assert info.network == {"allow_out": ["api.example.com"], "deny_out": ["0.0.0.0/0"]}
    await sandbox.kill()


async def test_api_params_work_without_the_environment(
    e2b: E2BStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in e2b.env:
        monkeypatch.delenv(name)
    sandbox = await AsyncSandbox.create(**e2b.api_params)
    assert (await sandbox.commands.run("echo ok")).stdout == "ok\n"
    assert await AsyncSandbox.kill(sandbox.sandbox_id, **e2b.api_params)


async def test_code_interpreter_sandbox_creates_and_connects(e2b: E2BStandIn) -> None:
    interpreter = code_interpreter_sandbox()
    sandbox = await interpreter.create(metadata={"kind": "ci"})
    assert type(sandbox) is interpreter
    assert e2b.sandbox(sandbox.sandbox_id).template_id == "code-interpreter-v1"

    again = await interpreter.connect(sandbox.sandbox_id)
    assert type(again) is interpreter
    assert (await again.commands.run("echo $E2B_SANDBOX_ID")).stdout == f"{sandbox.sandbox_id}\n"
    await again.kill()


async def test_create_retried_after_a_502_creates_one_sandbox(e2b: E2BStandIn) -> None:
    before = len(e2b.sandboxes)
    e2b.fail_next_create(502)

    sandbox = await AsyncSandbox.create(idempotency_key="retry-502")

    attempts = [r for r in e2b.create_requests if r.idempotency_key == "retry-502"]
    assert [r.status for r in attempts] == [502, 201]
    assert len(e2b.sandboxes) == before + 1
    assert attempts[-1].sandbox_id == sandbox.sandbox_id
    await sandbox.kill()


async def test_lost_create_answer_is_replayed_for_the_same_idempotency_key(
    e2b: E2BStandIn,
) -> None:
    before = len(e2b.sandboxes)
    e2b.fail_next_create(502, after_create=True)

    sandbox = await AsyncSandbox.create(idempotency_key="lost-answer")

    attempts = [r for r in e2b.create_requests if r.idempotency_key == "lost-answer"]
    assert [(r.status, r.replayed) for r in attempts] == [(502, False), (201, True)]
    assert attempts[0].sandbox_id == attempts[1].sandbox_id == sandbox.sandbox_id
    assert attempts[0].body == attempts[1].body
    assert len(e2b.sandboxes) == before + 1
    # The sandbox works: the replay carried the same envd access token.
    assert (await sandbox.commands.run("echo ok")).stdout == "ok\n"
    await sandbox.kill()


async def test_503_surfaces_after_the_sdks_retries(e2b: E2BStandIn) -> None:
    before = len(e2b.sandboxes)
    e2b.fail_next_create(503, times=4)
    with pytest.raises(ServiceBusyException, match="503"):
        await AsyncSandbox.create(idempotency_key="busy")
    assert len(e2b.sandboxes) == before


async def test_429_is_retried_then_succeeds(e2b: E2BStandIn) -> None:
    e2b.rate_limit_next(times=1, retry_after=0)
    sandbox = await AsyncSandbox.create(idempotency_key="limited-once")
    attempts = [r for r in e2b.create_requests if r.idempotency_key == "limited-once"]
    assert [r.status for r in attempts] == [429, 201]
    await sandbox.kill()


async def test_429_beyond_the_retries_is_a_rate_limit_exception(e2b: E2BStandIn) -> None:
    e2b.rate_limit_next(times=4, retry_after=0)
    with pytest.raises(RateLimitException):
        await AsyncSandbox.create(idempotency_key="limited-always")
    attempts = [r for r in e2b.create_requests if r.idempotency_key == "limited-always"]
    assert [r.status for r in attempts] == [429] * 4
    assert {r.headers["idempotency-key"] for r in attempts} == {"limited-always"}


async def test_wrong_api_key_is_an_authentication_exception(e2b: E2BStandIn) -> None:
    with pytest.raises(AuthenticationException, match="401"):
        await AsyncSandbox.create(api_key="e2b_" + "0" * 40)
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.list(api_key="e2b_" + "0" * 40).next_items()


async def test_list_filters_by_metadata_and_paginates(e2b: E2BStandIn) -> None:
    mine = [await AsyncSandbox.create(metadata={"suite": "list", "n": str(i)}) for i in range(3)]
    other = await AsyncSandbox.create(metadata={"suite": "other"})

    listed = await AsyncSandbox.list(query=SandboxQuery(metadata={"suite": "list"})).next_items()
    assert sorted(s.sandbox_id for s in listed) == sorted(s.sandbox_id for s in mine)
    assert all(s.metadata["suite"] == "list" for s in listed)

    one = await AsyncSandbox.list(
        query=SandboxQuery(metadata={"suite": "list", "n": "1"})
    ).next_items()
    assert [s.sandbox_id for s in one] == [mine[1].sandbox_id]

    paginator = AsyncSandbox.list(query=SandboxQuery(metadata={"suite": "list"}), limit=2)
    pages = []
    while paginator.has_next:
        pages.append(await paginator.next_items())
    assert [len(p) for p in pages] == [2, 1]
    assert {s.sandbox_id for p in pages for s in p} == {s.sandbox_id for s in mine}

    for sandbox in [*mine, other]:
        await sandbox.kill()
    assert (
        await AsyncSandbox.list(query=SandboxQuery(metadata={"suite": "list"})).next_items() == []
    )


async def test_kill_is_true_then_false(e2b: E2BStandIn) -> None:
    sandbox = await AsyncSandbox.create()
    assert await sandbox.kill() is True
    assert await AsyncSandbox.kill(sandbox.sandbox_id) is False
    assert await AsyncSandbox.kill("nosuchsandbox0000000") is False
    record = e2b.sandbox(sandbox.sandbox_id)
    assert (record.alive, record.end_reason) == (False, "killed")


async def test_connect_to_a_killed_sandbox_fails(e2b: E2BStandIn) -> None:
    sandbox = await AsyncSandbox.create()
    await sandbox.kill()
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.connect(sandbox.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        await sandbox.get_info()


async def test_set_timeout_moves_the_end_time_and_connect_only_lengthens_it(
    e2b: E2BStandIn,
) -> None:
    sandbox = await AsyncSandbox.create(timeout=300)
    await sandbox.set_timeout(30)
    short = (await sandbox.get_info()).end_at
    record = e2b.sandbox(sandbox.sandbox_id)
    assert record.started_at < short < record.started_at + timedelta(seconds=60)

    await AsyncSandbox.connect(sandbox.sandbox_id, timeout=10)
    assert (await sandbox.get_info()).end_at == short

    await AsyncSandbox.connect(sandbox.sandbox_id, timeout=600)
    longer = (await sandbox.get_info()).end_at
    assert longer > short + timedelta(seconds=500)
    await sandbox.kill()


async def test_a_sandbox_past_its_end_time_is_gone(e2b: E2BStandIn) -> None:
    sandbox = await AsyncSandbox.create(timeout=1)
    assert (await sandbox.commands.run("echo alive")).stdout == "alive\n"
    await asyncio.sleep(1.2)
    with pytest.raises(SandboxNotFoundException):
        await sandbox.get_info()
    assert e2b.sandbox(sandbox.sandbox_id).end_reason == "timeout"

    other = await AsyncSandbox.create()
    e2b.expire(other.sandbox_id)
    assert not await other.is_running()
    with pytest.raises(SandboxNotRunningException):
        await other.commands.run("echo too late")


async def test_a_sandbox_killed_behind_our_back(e2b: E2BStandIn) -> None:
    sandbox = await AsyncSandbox.create()
    running = await sandbox.commands.run("sleep 30", background=True)
    await asyncio.sleep(0.1)

    e2b.kill_behind_our_back(sandbox.sandbox_id)

    with pytest.raises(SandboxNotRunningException):
        await running.wait()
    with pytest.raises(SandboxNotRunningException):
        await sandbox.commands.run("echo hi")
    with pytest.raises(SandboxNotRunningException):
        await sandbox.files.read("anything")
    assert not await sandbox.is_running()
    with pytest.raises(SandboxNotFoundException):
        await sandbox.get_info()
    assert await AsyncSandbox.kill(sandbox.sandbox_id) is False
    assert e2b.sandbox(sandbox.sandbox_id).end_reason == "killed_behind_our_back"


# ---- commands ----------------------------------------------------------------------------


@pytest.fixture
async def sandbox(e2b: E2BStandIn) -> AsyncSandbox:
    return await AsyncSandbox.create(envs={"FROM_CREATE": "c", "SHARED": "create"})


async def test_command_output_and_exit_code(sandbox: AsyncSandbox) -> None:
    ok = await sandbox.commands.run("echo hi; echo err >&2")
    assert (ok.stdout, ok.stderr, ok.exit_code, ok.error) == ("hi\n", "err\n", 0, None)

    with pytest.raises(CommandExitException) as caught:
        await sandbox.commands.run("echo hi; echo err >&2; exit 3")
    assert (caught.value.stdout, caught.value.stderr) == ("hi\n", "err\n")
    assert caught.value.exit_code == 3
    assert caught.value.error == "exit status 3"
    await sandbox.kill()


async def test_command_environment_is_minimal_and_merged(
    e2b: E2BStandIn, sandbox: AsyncSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_ONLY_SECRET", "must-not-leak")
    result = await sandbox.commands.run(
        "env | sort", envs={"FROM_RUN": "r", "SHARED": "run"}, cwd="/tmp"
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["FROM_CREATE"] == "c"
    assert env["FROM_RUN"] == "r"
    assert env["SHARED"] == "run"
    assert env["E2B_SANDBOX_ID"] == sandbox.sandbox_id
    assert env["USER"] == "user"
    assert "HOST_ONLY_SECRET" not in env
    assert "E2B_API_KEY" not in env

    record = e2b.sandbox(sandbox.sandbox_id).command("env | sort")
    assert record.envs == {"FROM_RUN": "r", "SHARED": "run"}
    assert record.argv == ["/bin/bash", "-l", "-c", "env | sort"]
    assert record.cwd == "/tmp"
    assert env["PWD"] == "/tmp"  # the sandbox's own /tmp, not this host's
    await sandbox.kill()


async def test_command_past_its_timeout_fails_and_is_killed(
    e2b: E2BStandIn, sandbox: AsyncSandbox
) -> None:
    with pytest.raises(TimeoutException):
        await sandbox.commands.run("sleep 10", timeout=0.5)
    record = await ended(e2b.sandbox(sandbox.sandbox_id).command("sleep 10"))
    assert record.timed_out
    assert (record.exit_code, record.status) == (-1, "signal: killed")
    assert record.timeout_s == 0.5
    await sandbox.kill()


async def test_background_command_can_be_listed_fed_and_killed(
    e2b: E2BStandIn, sandbox: AsyncSandbox
) -> None:
    echo = await sandbox.commands.run("read line; echo got $line", background=True, stdin=True)
    await sandbox.commands.send_stdin(echo.pid, "hello\n")
    assert (await echo.wait()).stdout == "got hello\n"

    sleeper = await sandbox.commands.run("sleep 30", background=True)
    assert [p.pid for p in await sandbox.commands.list()] == [sleeper.pid]
    assert await sandbox.commands.kill(sleeper.pid) is True
    with pytest.raises(CommandExitException) as caught:
        await sleeper.wait()
    assert caught.value.exit_code == -1
    assert caught.value.error == "signal: killed"
    assert await sandbox.commands.kill(sleeper.pid) is False
    assert e2b.sandbox(sandbox.sandbox_id).command("sleep 30").signals == ["SIGKILL"]
    await sandbox.kill()


async def test_background_children_hold_the_command_till_its_timeout_and_die_with_the_sandbox(
    sandbox: AsyncSandbox,
) -> None:
    # envd's end event waits for the output pipes (Handler.Wait), which the child holds, or
    # for the command's deadline.
    began = time.monotonic()
    with pytest.raises(TimeoutException):
        await sandbox.commands.run("sleep 30.25 & echo $! > /tmp/bg", timeout=2)
    assert 2 <= time.monotonic() - began < 10
    started = await sandbox.commands.run("cat /tmp/bg")
    child = await host_pid_of(int(started.stdout), "sleep 30.25")
    assert await host_process_alive(child)
    await sandbox.kill()
    async with asyncio.timeout(5):
        while await host_process_alive(child):  # noqa: ASYNC110 (no event for another's death)
            await asyncio.sleep(0.02)


async def test_large_output_streams_in_chunks(sandbox: AsyncSandbox) -> None:
    chunks: list[str] = []
    result = await sandbox.commands.run(
        "head -c 4000000 /dev/zero | tr '\\0' a", on_stdout=chunks.append
    )
    assert result.stdout == "a" * 4_000_000
    assert len(chunks) > 1
    await sandbox.kill()


# ---- files -------------------------------------------------------------------------------


async def test_files_round_trip_and_commands_see_them(
    e2b: E2BStandIn, sandbox: AsyncSandbox
) -> None:
    info = await sandbox.files.write("/home/user/code/main.ts", "console.log(1)\n")
    assert (info.path, info.name) == ("/home/user/code/main.ts", "main.ts")
    assert await sandbox.files.read("/home/user/code/main.ts") == "console.log(1)\n"
    # Relative paths are taken from the home directory, like envd does.
    assert await sandbox.files.read("code/main.ts") == "console.log(1)\n"

    payload = bytes(range(256)) * 64
    await sandbox.files.write("/tmp/blob.bin", payload)
    assert await sandbox.files.read("/tmp/blob.bin", format="bytes") == payload

    assert (await sandbox.commands.run("cat code/main.ts")).stdout == "console.log(1)\n"
    assert (await sandbox.commands.run("cat ~/code/main.ts")).stdout == "console.log(1)\n"
    await sandbox.commands.run("echo made-by-command > note.txt")
    assert await sandbox.files.read("/home/user/note.txt") == "made-by-command\n"

    record = e2b.sandbox(sandbox.sandbox_id)
    assert record.files_written == ["/home/user/code/main.ts", "/tmp/blob.bin"]
    assert record.host_path("/tmp/blob.bin").read_bytes() == payload
    assert await sandbox.files.exists("/home/user/code")
    assert not await sandbox.files.exists("/home/user/missing")
    await sandbox.kill()


async def test_sandboxes_do_not_see_each_others_files(e2b: E2BStandIn) -> None:
    first, second = await AsyncSandbox.create(), await AsyncSandbox.create()
    await first.files.write("/home/user/secret.txt", "first only")

    assert not await second.files.exists("/home/user/secret.txt")
    with pytest.raises(FileNotFoundException):
        await second.files.read("/home/user/secret.txt")
    with pytest.raises(CommandExitException):
        await second.commands.run("cat secret.txt")
    assert (await first.commands.run("cat secret.txt")).stdout == "first only"
    assert os.path.commonpath(
        [e2b.sandbox(first.sandbox_id).root, e2b.sandbox(second.sandbox_id).root]
    ) == str(e2b.base_dir)
    await first.kill()
    await second.kill()


# ---- where real E2B differs from a naive stand-in (reviews/e2b-production-7e7bfd2.md) ------


def needs_jail(e2b: E2BStandIn) -> None:
    if not e2b.jailed:
        pytest.skip("the stand-in's sandboxes need root and bubblewrap here")


async def test_header_rules_are_a_400_unless_the_team_has_them(e2b: E2BStandIn) -> None:
    network: Any = {
        "allow_out": ["api.example.test"],
        "deny_out": ["0.0.0.0/0"],
        "rules": {"api.example.test": [{"transform": {"headers": {"Authorization": "x"}}}]},
    }
    with pytest.raises(SandboxException, match="not available for your team"):
        await AsyncSandbox.create(network=network)
    sandbox = await AsyncSandbox.create(
        network={"allow_out": ["api.example.test"], "deny_out": ["0.0.0.0/0"]}
    )
    with pytest.raises(SandboxException, match="not available for your team"):
        await sandbox.update_network(network)
    e2b.team.transform_rules = True
    try:
        await sandbox.update_network(network)
    finally:
        e2b.team.transform_rules = False
    assert e2b.sandbox(sandbox.sandbox_id).network_updates[-1]["rules"]


async def test_the_team_cap_is_a_429_and_a_sandbox_lives_an_hour_at_most(e2b: E2BStandIn) -> None:
    e2b.team.max_concurrent = len([s for s in e2b.sandboxes.values() if s.alive])
    try:
        with pytest.raises(RateLimitException, match="maximum number of concurrent"):
            await AsyncSandbox.create()
    finally:
        e2b.team.max_concurrent = 20
    with pytest.raises(SandboxException, match="cannot be greater than 1 hours"):
        await AsyncSandbox.create(timeout=3601)


async def test_a_sandbox_is_listed_before_its_create_returns(e2b: E2BStandIn) -> None:
    e2b.set_create_latency(1.0)
    creating = asyncio.create_task(AsyncSandbox.create(metadata={"purpose": "early"}))
    listed: list[str] = []
    async with asyncio.timeout(5):
        while not listed:
            paginator = AsyncSandbox.list(query=SandboxQuery(metadata={"purpose": "early"}))
            listed = [s.sandbox_id for s in await paginator.next_items()]
    assert not creating.done()
    assert (await creating).sandbox_id == listed[0]


async def test_commands_run_as_user_in_a_login_shell_with_e2bs_usr_local(
    e2b: E2BStandIn, sandbox: AsyncSandbox
) -> None:
    needs_jail(e2b)
    result = await sandbox.commands.run(
        "id -un; shopt -q login_shell && echo login; stat -c %a /usr/local; pgrep -c . ; echo $HOME"
    )
    name, login, mode, processes, home = result.stdout.split()
    assert (name, login, mode, home) == ("user", "login", "777", "/home/user")
    assert int(processes) < 10  # the sandbox's own processes, not this host's
    as_root = await sandbox.commands.run("id -un", user="root")
    assert as_root.stdout == "root\n"


async def test_kill_ends_the_process_and_not_its_children(
    e2b: E2BStandIn, sandbox: AsyncSandbox
) -> None:
    needs_jail(e2b)
    handle = await sandbox.commands.run("sleep 300 & echo $! > /tmp/child; wait", background=True)
    async with asyncio.timeout(5):
        while not (await sandbox.commands.run("cat /tmp/child || true")).stdout:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await handle.kill()
    alive = await sandbox.commands.run("kill -0 $(cat /tmp/child) && echo alive")
    assert alive.stdout == "alive\n"  # envd signals the pid alone


async def test_the_egress_ca_is_in_the_system_bundle_only(e2b: E2BStandIn) -> None:
    """Node's own CA store lacks E2B's egress CA: a fetch fails unless Node is told."""
    needs_jail(e2b)
    e2b.route("api.example.test", e2b.url)
    sandbox = await AsyncSandbox.create(
        network={"allow_out": ["api.example.test"], "deny_out": ["0.0.0.0/0"]}
    )
    url = f"https://api.example.test:{e2b.egress_port}/sandboxes"  # the API: 401 without a key
    fetch = f"fetch('{url}').then(r => console.log(r.status), e => console.log(e.cause.code))"
    bare = await sandbox.commands.run(f'node -e "{fetch}"')
    assert bare.stdout.strip() == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    told = await sandbox.commands.run(
        f'node -e "{fetch}"', envs={"NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt"}
    )
    assert told.stdout.strip() == "401"
    python = await sandbox.commands.run(
        'python3 -I -c "import urllib.request as u, urllib.error as e\n'
        f"try: u.urlopen('{url}')\nexcept e.HTTPError as x: print(x.code)\""
    )
    assert python.stdout.strip() == "401"


async def test_the_api_and_envd_are_https_and_a_client_must_trust_their_ca(
    e2b: E2BStandIn,
) -> None:
    assert e2b.url.startswith("https://")
    untrusted = ssl.create_default_context(cafile=certifi.where())  # public CAs only
    async with httpx.AsyncClient(verify=untrusted) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(e2b.url + "/sandboxes")
    trusting = ssl.create_default_context(cafile=str(e2b.trusted_cas))
    async with httpx.AsyncClient(verify=trusting) as client:
        answer = await client.get(e2b.url + "/sandboxes")
    assert answer.status_code == 401  # reached the API, which wants a key
