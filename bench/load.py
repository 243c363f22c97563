"""A bounded load test on loopback: a real local server, N concurrent clients for a while.

Each client (a thread with its own keep-alive connection) mixes executions in new and reused
sandboxes (trivial code), GET and DELETE of its own sandboxes, keeping at most a few alive.
Prints throughput, p50/p95/p99 latency per operation, the count of every status, the
server's memory (RSS) at start and end, and what the executions cost: executions/s, CPU ms
per execution (the server, its compiler and its jails together) against the ceiling the cores
allow (cores / CPU seconds of a bare `node -e 0`, measured in the same run: every execution
starts one fresh Node process). Exits 1 if any answer was a 5xx or a transport error.

Run by hand (not by pytest):

    .venv/bin/python -m bench.load                       # 50 clients, 60 s
    .venv/bin/python -m bench.load --clients 10 --seconds 5
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import random
import resource
import shutil
import subprocess
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
EXECUTES = ("execute-new", "execute-reuse")
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def node_cpu_ms(runs: int, env: dict[str, str] | None = None) -> float:
    """CPU (user + system) of one bare `node -e 0`, averaged over ``runs`` starts (in this
    process's environment unless ``env`` is given)."""
    node = shutil.which("node") or "node"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run([node, "-e", "0"], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return used * 1000 / runs


def tree_pids(pid: int) -> list[int]:
    """A process and all its live descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return found


def stat_ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of a process, in clock ticks; zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0, 0
    # Fields 14-17 of proc(5); the split above starts at field 3.
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return utime + stime, cutime + cstime


class CpuMeter:
    """CPU used by the server and everything it starts (compiler, jails, mount, ...).

    As root with cgroup v1, the server's process tree is moved into a cpuacct group of its
    own before the run: every process it starts from then on is counted there, killed jails
    included. Otherwise the live tree's /proc counters are summed (own time plus reaped
    children's): a lower bound, as a killed jail's processes are reaped outside the tree."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.group: Path | None = CPUACCT / f"iris-load-{pid}"
        try:
            self.group.mkdir()
            for _ in range(2):  # the second pass takes what the first one's pids started
                for member in tree_pids(pid):
                    with contextlib.suppress(ProcessLookupError):
                        (self.group / "cgroup.procs").write_text(str(member))
        except OSError:
            self.close()
            self.group = None

    @property
    def method(self) -> str:
        return "cgroup cpuacct" if self.group else "/proc of the live tree (a lower bound)"

    def total_ms(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e6
        return sum(sum(stat_ticks(p)) for p in tree_pids(self.pid)) * TICK_MS

    def server_ms(self) -> float:
        """The server process alone (its threads, not its children)."""
        return stat_ticks(self.pid)[0] * TICK_MS

    def close(self) -> None:
        """Remove the group (once the server and its jails are gone)."""
        if self.group is not None:
            for _ in range(50):
                try:
                    self.group.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.1)


@dataclass(frozen=True)
class Cost:
    """CPU of the server's tree over the run, and the ceiling measured in the same run."""

    total_ms: float
    server_ms: float
    node_ms: float
    #: `node -e 0` with an empty environment, as the jails start Node (NODE_EXTRA_CA_CERTS,
    #: when set, makes every Node start read the CA bundle).
    bare_node_ms: float
    cores: int
    method: str


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


def report(
    tally: Tally, elapsed: float, rss: tuple[int, int], tree: tuple[int, int], cost: Cost
) -> bool:
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
    executions = sum(tally.statuses[op, "200"] for op in EXECUTES)
    rate = executions / elapsed
    ceiling = cost.cores / (cost.node_ms / 1000)
    per = max(executions, 1)
    print(f"executions: {executions} = {rate:.1f}/s")
    others_ms = cost.total_ms - cost.server_ms
    print(
        f"CPU per execution: {cost.total_ms / per:.1f} ms (server process"
        f" {cost.server_ms / per:.1f} ms, its compiler and jails {others_ms / per:.1f} ms;"
        f" every request of the run counted; {cost.method})"
    )
    print(
        f"ceiling: {ceiling:.1f} executions/s ({cost.cores} cores / {cost.node_ms:.1f} ms of CPU"
        f" per `node -e 0`); reached {rate / ceiling:.2f}x of it (target >= 0.7x)"
    )
    # On a shared machine the tree gets only part of the cores: what its CPU per execution
    # would allow with the cores to itself tells the cost apart from the contention.
    alone = cost.cores / (cost.total_ms / per / 1000)
    print(
        f"the server's tree used {cost.total_ms / elapsed / 1000:.2f} of {cost.cores} cores;"
        f" with all of them, {cost.total_ms / per:.1f} ms per execution allows {alone:.1f}/s"
        f" = {alone / ceiling:.2f}x the ceiling"
    )
    print(
        f"`node -e 0` in an empty environment (as the jails start it): {cost.bare_node_ms:.1f} ms"
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
            # Measured with the server idle, before the load: the ceiling of this run.
            node_ms, bare_node_ms = node_cpu_ms(20), node_cpu_ms(20, env={})
            meter = CpuMeter(server.proc.pid)
            cpu_start, server_start = meter.total_ms(), meter.server_ms()
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
            cost = Cost(
                meter.total_ms() - cpu_start,
                meter.server_ms() - server_start,
                node_ms,
                bare_node_ms,
                len(os.sched_getaffinity(0)),
                meter.method,
            )
            rss_end, tree_end = server.rss_kib(), tree_rss_kib(server.proc.pid)
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        meter.close()
    ok = report(tally, elapsed, (rss_start, rss_end), (tree_start, tree_end), cost)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
