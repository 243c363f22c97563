"""A runner's cgroup holds its limits (memory, processes, CPU), however it is written."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from iris_exec.adapters.local.cgroups import CPU_PERIOD_US, Cgroups, Limits


def _read(group_dirs: list[Path], name: str) -> str:
    for directory in group_dirs:
        if (directory / name).exists():
            return (directory / name).read_text().strip()
    raise AssertionError(f"{name} is in none of {group_dirs}")


def test_a_runner_group_gets_its_memory_processes_and_cpu_limits() -> None:
    cgroups = Cgroups(f"iris-test-{os.getpid()}")
    if not cgroups.version:
        pytest.skip("no writable cgroup here (the jails fall back to rlimits)")
    limits = Limits(memory_bytes=64 * 1024 * 1024, max_processes=16, cpus=0.5)
    groups = [cgroups.create(f"runner-{i}", limits) for i in range(2)]
    try:
        for group in groups:
            assert group is not None
            if cgroups.version == 1:
                assert _read(group.dirs, "memory.limit_in_bytes") == str(64 * 1024 * 1024)
                assert _read(group.dirs, "cpu.cfs_period_us") == str(CPU_PERIOD_US)
                assert _read(group.dirs, "cpu.cfs_quota_us") == str(CPU_PERIOD_US // 2)
            else:
                assert _read(group.dirs, "memory.max") == str(64 * 1024 * 1024)
                assert _read(group.dirs, "cpu.max") == f"{CPU_PERIOD_US // 2} {CPU_PERIOD_US}"
            assert _read(group.dirs, "pids.max") == "16"
    finally:
        for group in groups:
            if group is not None:
                group.remove()
        for base in cgroups.bases:
            with contextlib.suppress(OSError):
                base.rmdir()
