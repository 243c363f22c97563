"""Killing a jail leaves its exit to the event loop: no "exit status already read"."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from iris_exec.adapters.local.provider import LocalSandboxProvider
from iris_exec.domain.models import ExecutionJob
from iris_exec.settings import Settings

pytestmark = pytest.mark.anyio


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_closing_a_sandbox_whose_runner_died_logs_no_asyncio_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = LocalSandboxProvider(Settings(data_dir=tmp_path / "data", sandbox_warm_pool=0))
    await provider.start()
    try:
        ref = (await provider.create("sb_" + uuid.uuid4().hex[:16], "p1", 600)).provider_ref
        runner = await provider._jails[ref].take_runner()
        pid = runner.proc.pid
        # The runner dies (an OOM kill, say) and the loop has not yet seen it exit: no
        # await between the kill and the close, so its child watcher has not run.
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not _is_zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 -- on purpose: the loop must not run
        assert _is_zombie(pid)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await runner.destroy()
            await provider.kill(ref)
        assert runner.proc.returncode == -signal.SIGKILL
        assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    finally:
        await provider.shutdown()


def _groups(provider: LocalSandboxProvider) -> set[str]:
    return {p.name for base in provider.cgroups.bases for p in base.iterdir() if p.is_dir()}


async def test_closed_sandboxes_leave_no_cgroup_behind(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(Settings(data_dir=tmp_path / "data", sandbox_warm_pool=0))
    await provider.start()
    if not provider.cgroups.version:
        await provider.shutdown()
        pytest.skip("no writable cgroup on this machine")
    try:
        for language in ("typescript", "python"):
            ref = (await provider.create("sb_" + uuid.uuid4().hex[:16], "p1", 600)).provider_ref
            job = ExecutionJob(
                execution_id="ex_teardown1", source="return 1", language=language,
                project_id="p1", session_id="s1", context={}, timeout_s=20,
                output_limit_bytes=1 << 20,
            )  # fmt: skip
            assert (await provider.run(ref, job)).succeeded
            # A runner for the next execution waits, warm, in its own cgroup.
            await provider.kill(ref)
        assert _groups(provider) == set()
    finally:
        await provider.shutdown()
