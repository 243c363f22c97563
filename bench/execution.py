"""Execution overhead and server memory of the local engine, measured on a real server.

Overhead = time from sending the request to receiving the response, minus the code's
own run time (`executionTime`). The floor is a bare `node -e 0` measured in the same run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.server import LocalServer

TRIVIAL = "return 1"
WORK = "console.log('x'.repeat(1000)); return [1, 2, 3]"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms   p95 {percentile(values, 0.95):6.1f} ms"


def node_start(runs: int) -> list[float]:
    node = shutil.which("node") or "node"
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([node, "-e", "0"], check=True)
        times.append((time.perf_counter() - began) * 1000)
    return times


def overhead(client: httpx.Client, body: dict[str, object]) -> tuple[float, str]:
    began = time.perf_counter()
    response = client.post("/api/iris/execute", json=body)
    elapsed = (time.perf_counter() - began) * 1000
    response.raise_for_status()
    answer = response.json()
    assert answer["result"]["success"], answer
    return elapsed - answer["result"]["executionTime"], answer["sandboxId"]


def measure(runs: int, pause_s: float, step: Callable[[], float], warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        step()
        time.sleep(pause_s)
    values = []
    for _ in range(runs):
        values.append(step())
        time.sleep(pause_s)
    return values


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status")
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(c) for c in children)
    return total


def main() -> None:
    # The per-key rate limit would stop a benchmark; everything else is the default.
    settings = {"rate_limit_per_minute": 1_000_000}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(Path(tmp) / "data", **settings) as server,
    ):
        key = server.create_key("bench")
        with server.client(key) as client:
            time.sleep(1.0)  # let the warm pool fill
            idle_rss = server.rss_kib()
            idle_tree = tree_rss_kib(server.proc.pid) if server.proc else 0

            floor = node_start(30)

            def new_sandbox() -> float:
                value, sandbox = overhead(client, {"code": TRIVIAL})
                client.delete("/api/iris/sandbox", params={"sandboxId": sandbox})
                return value

            fresh = measure(30, 0.25, new_sandbox)
            fresh_b2b = measure(20, 0.0, new_sandbox)

            sandbox = overhead(client, {"code": TRIVIAL})[1]

            def reuse() -> float:
                return overhead(client, {"code": TRIVIAL, "sandboxId": sandbox})[0]

            reused = measure(50, 0.1, reuse)
            reused_b2b = measure(30, 0.0, reuse)

            rss = []
            for _ in range(2):
                for _ in range(100):
                    overhead(client, {"code": WORK, "sandboxId": sandbox})
                time.sleep(1.0)
                rss.append((server.rss_kib(), tree_rss_kib(server.proc.pid) if server.proc else 0))

    floor_median = statistics.median(floor)
    print("== execution overhead (request in -> response out, minus the code's own time)")
    print(f"bare `node -e 0` start (floor)          {summary(floor)}")
    print(
        f"new sandbox                             {summary(fresh)}"
        f"   ({statistics.median(fresh) / floor_median:.2f}x floor; target <= 1.5x)"
    )
    print(f"new sandbox, back to back               {summary(fresh_b2b)}")
    print(
        f"reused sandbox                          {summary(reused)}"
        f"   ({statistics.median(reused) / floor_median:.2f}x floor; target <= 1x)"
    )
    print(f"reused sandbox, back to back            {summary(reused_b2b)}")
    mib = [(a / 1024, b / 1024) for a, b in rss]
    print("== server memory (RSS, MiB)")
    print(
        f"server process   idle {idle_rss / 1024:6.1f}   after 100 executions {mib[0][0]:6.1f}"
        f"   after 200 {mib[1][0]:6.1f}   (second hundred {mib[1][0] - mib[0][0]:+.1f})"
    )
    print(
        f"with its jails   idle {idle_tree / 1024:6.1f}   after 100 executions {mib[0][1]:6.1f}"
        f"   after 200 {mib[1][1]:6.1f}   (second hundred {mib[1][1] - mib[0][1]:+.1f})"
    )


if __name__ == "__main__":
    main()
