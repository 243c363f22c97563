"""What running out of memory leaves for the host to see, real and forged, in real jails.

For each case (real allocations until a limit stops them; code that only claims to have
run out), fresh and in a kept runner, prints what the host saw: the cgroup's OOM kills of
the execution, its peak memory as a share of the limit, the exit status, whether Node's
heap-exhaustion words came on stderr, the error the code's result frame carried, and the
service's reading (limitHit). The threshold of frames.NEAR_MEMORY_LIMIT is chosen from
these figures (docs/CONTRACT.md, "When limitHit is memory").

`python -m bench.memory_evidence [--memory-mb N]` (root: cgroups and jails)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from iris_exec.adapters.frames import Report
from iris_exec.adapters.local.provider import LocalSandboxProvider
from iris_exec.adapters.local.runner import Runner
from iris_exec.domain.models import ExecutionJob, Language
from iris_exec.settings import Settings

CASES: list[tuple[str, Language, str]] = [
    ("real: JS heap grows until V8 dies", "javascript",
     "const a = [];\nfor (;;) a.push(new Array(1e6).fill(1.5));"),
    ("real: Buffers until the cgroup kills", "javascript",
     "const c = [];\nfor (;;) c.push(Buffer.alloc(16 * 2 ** 20, 1));"),
    ("real: ArrayBuffers until the cgroup kills", "javascript",
     "const c = [];\nfor (;;) c.push(new Uint8Array(new ArrayBuffer(16 * 2 ** 20)).fill(1));"),
    ("real: Python lists until OOM", "python",
     "a = []\nwhile True:\n    a.append([1.5] * 10**6)"),
    ("real: Python bytearray of 4x the limit", "python", "x = bytearray(4 * LIMIT)"),
    ("forged: JS throws the RangeError", "javascript",
     "throw new RangeError('Array buffer allocation failed');"),
    ("forged: JS ArrayBuffer(2**40)", "javascript", "new ArrayBuffer(2 ** 40);"),
    ("forged: JS prints V8's words, aborts", "javascript",
     "console.error('FATAL ERROR: Reached heap limit Allocation failed -"
     " JavaScript heap out of memory');\nprocess.abort();"),
    ("forged: Python raises MemoryError", "python", "raise MemoryError()"),
    ("forged: Python bytearray(10**13)", "python", "x = bytearray(10**13)"),
]  # fmt: skip


async def measure(memory_mb: int, only: str) -> None:
    seen: list[Report] = []
    original = Runner.execute

    async def execute(self: Runner, *args: Any, **kwargs: Any) -> Report:
        report = await original(self, *args, **kwargs)
        seen.append(report)
        return report

    Runner.execute = execute  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), sandbox_memory_mb=memory_mb, sandbox_warm_pool=0)
        provider = LocalSandboxProvider(settings)
        await provider.start()
        limit = memory_mb * 2**20
        print(f"memory limit {memory_mb} MiB (V8 heap {memory_mb * 3 // 4} MiB); cgroup"
              f" {provider.cgroups.mode}")  # fmt: skip
        print(f"{'case':44} {'run':5} {'oom':>3} {'peak':>5} {'exit':>5} {'v8':>3}"
              f" {'error':>12}  limitHit")  # fmt: skip
        try:
            for n, (name, language, code) in enumerate(CASES):
                if only not in name:
                    continue
                for keep in (False, True):
                    ref = (await provider.create(f"sb{n}{keep}", "bench", 600)).provider_ref
                    job = ExecutionJob(
                        f"ex{n}{keep}", code.replace("LIMIT", str(limit)), language, "bench",
                        None, {}, 30.0, 100_000, keep_state=keep,
                    )  # fmt: skip
                    if keep:  # a kept runner that ran something first
                        warm = ExecutionJob(
                            f"w{n}", "x0 = 1", language, "bench", None, {}, 30.0, 100_000,
                            keep_state=True,
                        )  # fmt: skip
                        await provider.run(ref, warm)
                    result = await provider.run(ref, job)
                    report = seen[-1]
                    peak = (
                        "-" if report.memory_peak is None else f"{report.memory_peak / limit:.2f}"
                    )
                    error = report.result.get("error") if report.result else None
                    name_ = error.get("name", "") if isinstance(error, dict) else ""
                    print(f"{name:44} {'kept' if keep else 'fresh':5} {report.oom_kills:>3}"
                          f" {peak:>5} {report.returncode!s:>5} {str(report.heap_exhausted)[0]:>3}"
                          f" {name_:>12}  {result.limit_hit}")  # fmt: skip
                    await provider.kill(ref)
        finally:
            await provider.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--only", default="", help="only the cases whose name holds this")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.memory_mb, args.only))


if __name__ == "__main__":
    main()
