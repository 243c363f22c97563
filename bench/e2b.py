"""E2B provider: round trips to E2B per execution, and the Lambda's memory for large output.

Runs the real provider and SDK against the E2B stand-in (tests/support/e2b_standin), which
counts every request it gets. Round trips are what decides latency from Lambda to E2B
(each is one Lambda-E2B RTT, ~1-30 ms by region); the stand-in's own timings say nothing
about E2B's. Memory: the peak of Python allocations (tracemalloc) in the process running
the execution, as the Lambda would, while the code writes 1 MiB (and 16 MiB) of output.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

from iris_exec.adapters.e2b.provider import E2BSandboxProvider
from iris_exec.domain.models import Principal
from iris_exec.services.commands import ExecuteCommand
from iris_exec.settings import Settings
from tests.support.app import sqlite_container
from tests.support.e2b_standin import E2BStandIn

PRINCIPAL = Principal("bench", "key_bench")
#: The code writes `n` bytes to stdout, in 64 KiB writes.
OUTPUT = "const n = {n}; const chunk = 'x'.repeat(65536);\n"
OUTPUT += "for (let i = 0; i < n; i += 65536) process.stdout.write(chunk);\nreturn n;"


def kinds(requests: list[tuple[str, str, str | None]]) -> str:
    counted = Counter("envd" if sandbox else "api" for _, _, sandbox in requests)
    paths = ", ".join(
        f"{method} {re.sub(r'/sandboxes/[a-z0-9]+', '/sandboxes/{id}', path)}"
        for method, path, _ in requests
    )
    return f"{len(requests)} ({counted['api']} API + {counted['envd']} envd: {paths})"


async def run(e2b: E2BStandIn, data: Path) -> None:
    settings = Settings(
        data_dir=data,
        public_url="https://api.iris.test",
        e2b_egress_mode="header-rewrite",
        rate_limit_per_minute=1_000_000,
    )
    container = sqlite_container(
        settings, E2BSandboxProvider(settings, api_key=lambda: e2b.api_key)
    )
    command = ExecuteCommand(code="return 1", language="typescript", timeout_s=30)

    start = len(e2b.requests)
    first = await container.executions.execute(PRINCIPAL, command)
    new = e2b.requests[start:]
    start = len(e2b.requests)
    reuse = ExecuteCommand("return 1", "typescript", timeout_s=30, sandbox_id=first.sandbox_id)
    await container.executions.execute(PRINCIPAL, reuse)
    reused = e2b.requests[start:]
    print(f"  round trips, new sandbox:    {kinds(new)}   (target <= 6)")
    print(f"  round trips, reused sandbox: {kinds(reused)}   (target <= 4)")
    print("  (with a tool grant, header-rewrite mode; request-file mode saves the network call)")

    for size in (1 << 20, 16 << 20):
        code = OUTPUT.replace("{n}", str(size))
        job = ExecuteCommand(code, "typescript", timeout_s=60, sandbox_id=first.sandbox_id)
        tracemalloc.start()
        tracemalloc.reset_peak()
        answer = await container.executions.execute(PRINCIPAL, job)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        kept = len(answer.result.output)
        print(
            f"  {size >> 20:2d} MiB of stdout: peak Python allocations {peak / 2**20:5.1f} MiB"
            f" (output kept: {kept / 2**20:.2f} MiB, the output limit)"
        )


def main() -> None:
    print("E2B provider (real SDK, E2B stand-in; machine shared, so timings are not shown)")
    with E2BStandIn() as e2b:
        if not e2b.jailed:
            print("  skipped: the stand-in's sandboxes need root and bubblewrap")
            return
        e2b.team.transform_rules = True
        saved = dict(os.environ)
        os.environ.update(e2b.env)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                asyncio.run(run(e2b, Path(tmp)))
        finally:
            os.environ.clear()
            os.environ.update(saved)


if __name__ == "__main__":
    main()
