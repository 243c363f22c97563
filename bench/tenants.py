"""A bystander's latency while another project attacks the shared parts of a local server.

For each attack of tests/integration/test_tenants.py, the attack runs again and again while
a bystander project runs a trivial TypeScript execution; the figures are the bystander's
p95, quiet and during the attack (target: at most 2x). Timing on a shared machine is noisy.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.execution import percentile
from tests.integration.test_tenants import (
    FORGE_END,
    FRAME_FLOOD,
    NESTED_TS,
    NEXT_EXECUTION,
    hold_connections,
)
from tests.support.server import LocalServer

SAMPLES = 20


def bystander_latencies(server: LocalServer, key: str, samples: int) -> list[float]:
    times: list[float] = []
    sandbox: dict[str, Any] = {}
    with server.client(key) as client:
        for n in range(samples):
            began = time.perf_counter()
            response = client.post(
                "/api/iris/execute", json={"code": f"const n: number = {n}; return n;", **sandbox}
            )
            times.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            sandbox = {"sandboxId": response.json()["sandboxId"]}
    return times


def attacks(server: LocalServer) -> dict[str, Callable[[], object]]:
    """Each attack, from a project of its own (every key has 100 requests a minute)."""
    keys: dict[str, str] = {}

    def execute(code: str, **fields: Any) -> dict[str, Any]:
        name = threading.current_thread().name
        key = keys.get(name) or keys.setdefault(name, server.create_key(f"attacker-{len(keys)}"))
        with server.client(key) as client:
            answer: dict[str, Any] = client.post(
                "/api/iris/execute", json={"code": code, **fields}
            ).json()
            return answer

    def forge() -> None:
        forged = execute(FORGE_END)
        execute(NEXT_EXECUTION, sandboxId=forged["sandboxId"])

    return {
        "nested TypeScript (compiler)": lambda: execute(NESTED_TS),
        "5,000 tool socket connections": lambda: execute(hold_connections(2, 2500, 3)),
        "4 million frames on the runner channel": lambda: execute(FRAME_FLOOD),
        "forged end of execution": forge,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalServer(Path(tmp) / "data") as server:
        bystander = server.create_key("bystander")
        bystander_latencies(server, bystander, 3)  # warm
        quiet = percentile(bystander_latencies(server, bystander, SAMPLES), 0.95)
        print("Bystander p95 (trivial TypeScript execution), quiet vs. during each attack")
        print(f"  {'quiet':40s} {quiet:7.1f} ms")
        for name, attack in attacks(server).items():
            bystander = server.create_key("bystander")
            stop = threading.Event()

            def loop(attack: Callable[[], object] = attack, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    attack()

            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            time.sleep(0.5)
            during = percentile(bystander_latencies(server, bystander, SAMPLES), 0.95)
            stop.set()
            thread.join(120)
            print(f"  {name:40s} {during:7.1f} ms  ({during / quiet:4.1f}x)")


if __name__ == "__main__":
    main()
