"""A bounded load test on loopback: a real local server, N concurrent clients for a while.

Each client (a thread with its own keep-alive connection) mixes executions in new and reused
sandboxes (trivial code), GET and DELETE of its own sandboxes, keeping at most a few alive.
Prints throughput, p50/p95/p99 latency per operation, the count of every status, and the
server's memory (RSS) at start and end; exits 1 if any answer was a 5xx or a transport error.

Run by hand (not by pytest):

    .venv/bin/python -m bench.load                       # 50 clients, 60 s
    .venv/bin/python -m bench.load --clients 10 --seconds 5
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.execution import percentile, tree_rss_kib
from tests.support.server import LocalServer

CODE = "let s = 0;\nfor (let i = 0; i < 1000; i++) s += i;\nreturn s;"
OUTPUT = "=== Results ===\n499500"
#: Operations and their weights; a client without a sandbox creates one instead.
MIX = {"execute-new": 2, "execute-reuse": 5, "get": 3, "delete": 1}
#: Sandboxes one client keeps alive at most (it closes its oldest before making another).
MAX_LIVE = 2


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    wrong_results: int = 0

    def merge(self, other: Tally) -> None:
        for op, values in other.latencies.items():
            self.latencies[op].extend(values)
        self.statuses.update(other.statuses)
        self.wrong_results += other.wrong_results


def client_loop(url: str, key: str, seed: int, until: float) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    live: list[str] = []
    ops, weights = list(MIX), list(MIX.values())
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:

        def timed(op: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
            began = time.perf_counter()
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                tally.statuses[op, type(exc).__name__] += 1
                return None
            tally.latencies[op].append((time.perf_counter() - began) * 1000)
            tally.statuses[op, str(response.status_code)] += 1
            return response

        def delete(sandbox_id: str) -> None:
            live.remove(sandbox_id)
            timed("delete", "DELETE", "/api/iris/sandbox", params={"sandboxId": sandbox_id})

        while time.monotonic() < until:
            op = rng.choices(ops, weights)[0]
            if not live:
                op = "execute-new"
            if op == "execute-new" and len(live) >= MAX_LIVE:
                delete(live[0])
            if op.startswith("execute"):
                body: dict[str, object] = {"code": CODE}
                if op == "execute-reuse":
                    body["sandboxId"] = rng.choice(live)
                response = timed(op, "POST", "/api/iris/execute", json=body)
                if response is not None and response.status_code == 200:
                    answer = response.json()
                    if answer["result"]["output"] != OUTPUT:
                        tally.wrong_results += 1
                    if answer["sandboxId"] not in live:
                        live.append(answer["sandboxId"])
            elif op == "get":
                timed(op, "GET", "/api/iris/sandbox", params={"sandboxId": rng.choice(live)})
            else:
                delete(rng.choice(live))
    return tally


def report(tally: Tally, elapsed: float, rss: tuple[int, int], tree: tuple[int, int]) -> bool:
    """Print the figures; True if no 5xx, no transport error and no wrong result."""
    total = sum(tally.statuses.values())
    print(f"requests: {total} in {elapsed:.1f} s = {total / elapsed:.1f} requests/s")
    print(f"{'operation':<15}{'count':>8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for op in MIX:
        values = tally.latencies.get(op, [])
        if values:
            print(
                f"{op:<15}{len(values):>8}{len(values) / elapsed:>8.1f}"
                f"{percentile(values, 0.5):>9.1f}{percentile(values, 0.95):>9.1f}"
                f"{percentile(values, 0.99):>9.1f}"
            )
    print("statuses:")
    for (op, status), count in sorted(tally.statuses.items()):
        print(f"  {op:<15}{status:>20}{count:>8}")
    server_errors = sum(c for (_, s), c in tally.statuses.items() if s.startswith("5"))
    transport_errors = sum(c for (_, s), c in tally.statuses.items() if not s.isdigit())
    print(f"5xx: {server_errors}   transport errors: {transport_errors}")
    print(f"wrong results: {tally.wrong_results}")
    print(f"server RSS: {rss[0] / 1024:.1f} MiB at start, {rss[1] / 1024:.1f} MiB at end")
    print(
        f"server + compiler + jails RSS: {tree[0] / 1024:.1f} MiB at start,"
        f" {tree[1] / 1024:.1f} MiB at end"
    )
    return server_errors == 0 and transport_errors == 0 and tally.wrong_results == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--projects", type=int, default=10, help="keys the clients share")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="iris-load-") as tmp:
        server = LocalServer(
            Path(tmp) / "data",
            rate_limit_per_minute=10_000_000,
            max_sandboxes_per_project=max(10, 2 * MAX_LIVE * args.clients),
        )
        with server:
            assert server.proc is not None
            keys = [server.create_key(f"load-{i}") for i in range(args.projects)]
            rss_start, tree_start = server.rss_kib(), tree_rss_kib(server.proc.pid)
            print(
                f"{args.clients} clients, {args.seconds:g} s, {args.projects} projects,"
                f" server pid {server.proc.pid}"
            )
            began = time.monotonic()
            until = began + args.seconds
            tally = Tally()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                jobs = [
                    pool.submit(client_loop, server.url, keys[i % len(keys)], args.seed + i, until)
                    for i in range(args.clients)
                ]
                for job in jobs:
                    tally.merge(job.result())
            elapsed = time.monotonic() - began
            rss_end, tree_end = server.rss_kib(), tree_rss_kib(server.proc.pid)
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    ok = report(tally, elapsed, (rss_start, rss_end), (tree_start, tree_end))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
