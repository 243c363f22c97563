"""State-keeping sandboxes (`"keepState": true`) on a real local server.

Prints: a trivial execution's overhead in a warm state-keeping sandbox (request in ->
response out, minus the code's own `executionTime`), p50 and p95; executions per second
with 10 clients, each on its own state-keeping sandbox (each its own project, so no
project's share of the host's memory is the limit); the server's RSS at the start and
after 1,000 state-keeping executions. Targets (issue 16): overhead p50 <= 5 ms, >= 150
executions/s, RSS flat.

`python -m bench.state [--clients N] [--executions N]`
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.execution import percentile
from tests.support.server import LocalServer

TRIVIAL = "return 1"
#: The same with types, as agents write it: a kept runner blanks them in place (strip.ts).
TYPED = "interface P { x: number }\nconst p: P = { x: 1 };\nreturn p.x as number"
#: What each state-keeping execution does in the throughput run: read and update its state.
STEP = "globalThis.n = (globalThis.n ?? 0) + 1;\nreturn n"


def kept(
    client: httpx.Client, code: str, sandbox: str | None, language: str = "typescript"
) -> tuple[float, dict[str, object]]:
    """One keepState execution: (overhead in ms, the answer)."""
    body: dict[str, object] = {"code": code, "keepState": True, "language": language}
    if sandbox is not None:
        body["sandboxId"] = sandbox
    began = time.perf_counter()
    response = client.post("/api/iris/execute", json=body)
    elapsed = (time.perf_counter() - began) * 1000
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    result = answer["result"]
    assert isinstance(result, dict) and result["success"], answer
    return elapsed - float(result["executionTime"]), answer


def overhead(
    server: LocalServer, runs: int, language: str = "typescript", code: str = TRIVIAL
) -> list[float]:
    key = server.create_key(f"state-overhead-{language}-{len(code)}")
    with server.client(key) as client:
        _, answer = kept(client, code, None, language)
        sandbox = str(answer["sandboxId"])
        for _ in range(20):  # warm: the runner, the compiler, the connection
            kept(client, code, sandbox, language)
        return [kept(client, code, sandbox, language)[0] for _ in range(runs)]


def throughput(server: LocalServer, clients: int, per_client: int) -> tuple[float, int]:
    """Executions/s of ``clients`` threads, each on its own state-keeping sandbox."""
    keys = [server.create_key(f"state-load-{i}") for i in range(clients)]
    sandboxes: list[str] = []
    for key in keys:  # sandboxes and runners exist before the clock starts
        with server.client(key) as client:
            sandboxes.append(str(kept(client, STEP, None)[1]["sandboxId"]))
    start = threading.Barrier(clients + 1)
    done = [0] * clients

    def work(index: int) -> None:
        with server.client(keys[index]) as client:
            start.wait()
            for _ in range(per_client):
                _, answer = kept(client, STEP, sandboxes[index])
                done[index] += 1
            # The state was kept through every execution: the counter counted them all.
            result = answer["result"]
            assert isinstance(result, dict) and result["returnValue"] == per_client + 1, result

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return sum(done) / elapsed, sum(done)


def main(clients: int = 10, executions: int = 1000, overhead_runs: int = 200) -> None:
    settings = {"rate_limit_per_minute": 1_000_000}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServer(Path(tmp) / "data", **settings) as server,
    ):
        time.sleep(1.0)  # let the warm pool fill
        rss_start = server.rss_kib()
        values = overhead(server, overhead_runs)
        typed = overhead(server, overhead_runs, code=TYPED)
        python = overhead(server, overhead_runs, "python")
        rate, count = throughput(server, clients, max(1, executions // clients))
        time.sleep(1.0)
        rss_after = server.rss_kib()
        rate2, count2 = throughput(server, clients, max(1, executions // clients))
        time.sleep(1.0)
        rss_after2 = server.rss_kib()

    print("== state-keeping sandboxes (keepState: true); a shared, noisy machine")
    print(
        f"trivial execution, warm kept runner    median {statistics.median(values):6.1f} ms"
        f"   p95 {percentile(values, 0.95):6.1f} ms   (overhead; target p50 <= 5 ms;"
        f" {len(values)} runs)"
    )
    print(
        f"the same with types (interface, as)    median {statistics.median(typed):6.1f} ms"
        f"   p95 {percentile(typed, 0.95):6.1f} ms"
    )
    print(
        f"the same in Python                     median {statistics.median(python):6.1f} ms"
        f"   p95 {percentile(python, 0.95):6.1f} ms   (no compile step)"
    )
    print(
        f"{clients} clients, own kept sandbox each     {rate:6.1f} executions/s"
        f"   ({count} executions; again: {rate2:6.1f}/s; target >= 150)"
    )
    print(
        f"server RSS (MiB)   start {rss_start / 1024:6.1f}   after {count} kept executions"
        f" {rss_after / 1024:6.1f}   after {count + count2} {rss_after2 / 1024:6.1f}"
        f"   (second {count2}: {(rss_after2 - rss_after) / 1024:+.1f}; target: flat)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--overhead-runs", type=int, default=200)
    args = parser.parse_args()
    main(args.clients, args.executions, args.overhead_runs)
