"""A tenant's code against its own kept runner (keepState): what the runner does in the jail
between executions, with state the code can reach (its globals, its environment, the
runner's request channel), must neither hold the host past the time limit nor turn the
next execution's compile against it. Real jails, a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import LocalServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("keep-hostile") / "data"
    with LocalServer(data, rate_limit_per_minute=100_000) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: LocalServer) -> str:
    return server.create_key("kept-hostile")


def execute(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    """The answer's result (with its sandboxId in metadata)."""
    with server.client(key, timeout=60) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text[:500]
    result: dict[str, Any] = response.json()["result"]
    return result


def kept_after(
    server: LocalServer, key: str, first: str, then: str, **fields: Any
) -> dict[str, Any]:
    """Run ``first`` kept in a new sandbox, then ``then`` in its kept runner: the second answer."""
    armed = execute(server, key, first, keepState=True, **fields)
    assert armed["success"] is True, armed
    sandbox = armed["metadata"]["sandboxId"]
    return execute(server, key, then, keepState=True, sandboxId=sandbox, **fields)


#: Ways code reads its standard input (none is given: a fresh run reads nothing, at once).
READ_STDIN = [
    ("javascript", "return require('node:fs').readFileSync(0, 'utf8').length"),
    (
        "javascript",
        "let n = 0;\nconst lines = require('node:readline').createInterface({ input: process.stdin });\n"
        "for await (const _ of lines) n++;\nreturn n",
    ),
    ("python", "import sys\nreturn len(sys.stdin.read())"),
]


@pytest.mark.parametrize(("language", "code"), READ_STDIN)
def test_code_reading_stdin_answers_kept_as_fresh(
    server: LocalServer, key: str, language: str, code: str
) -> None:
    fresh = execute(server, key, code, language=language, timeoutMs=3000)
    assert fresh["success"] is True and fresh["returnValue"] == 0, fresh
    first = "x = 1" if language == "python" else "var x = 1;"
    kept = kept_after(server, key, first, code, language=language, timeoutMs=3000)
    assert "limitHit" not in kept["metadata"], kept["metadata"]
    assert kept["returnValue"] == 0, kept
    assert kept["metadata"]["stateReset"] is False


def test_a_read_of_the_request_pipe_left_pending_holds_nothing_past_the_time_limit(
    server: LocalServer, key: str
) -> None:
    """The code leaves reads of fd 0 running in libuv's thread pool (no handle: nothing the
    runner stops sees them). One of them may take the next request from the runner: each
    execution still answers within its time limit, and the state lost to a timeout is said."""
    steal = (
        "const fs = require('node:fs');\n"
        "for (let i = 0; i < 4; i++) { const b = Buffer.alloc(1 << 16);"
        " fs.read(0, b, 0, b.length, null, (e, n) => fs.writeFileSync('stolen', b.subarray(0, n))); }\n"
        "return 1"
    )
    armed = execute(server, key, steal, language="javascript", keepState=True)
    assert armed["returnValue"] == 1, armed
    sandbox = armed["metadata"]["sandboxId"]
    timed_out = False
    for n in range(3):
        began = time.monotonic()
        answer = execute(
            server, key, f"return {n}", language="javascript", keepState=True,
            sandboxId=sandbox, timeoutMs=2000,
        )  # fmt: skip
        assert time.monotonic() - began < 15
        if timed_out:
            assert answer["metadata"]["stateResetReason"] == "timeout", answer["metadata"]
        timed_out = answer["metadata"].get("limitHit") == "timeout"
        assert timed_out or answer["returnValue"] == n, answer


def test_a_compile_the_code_broke_is_stopped_at_the_time_limit(
    server: LocalServer, key: str
) -> None:
    """The next execution's compile runs in the kept runner, among the code's globals: one
    that never ends (a `sort` that spins) ends at that execution's time limit."""
    began = time.monotonic()
    stuck = kept_after(
        server, key, "Array.prototype.sort = function () { for (;;); };\nreturn 1",
        "const a: number = 2;\nreturn a", timeoutMs=3000,
    )  # fmt: skip
    assert stuck["metadata"]["limitHit"] == "timeout", stuck
    assert time.monotonic() - began < 20


def test_the_codes_environment_does_not_choose_the_compilers_binary(
    server: LocalServer, key: str
) -> None:
    """esbuild's module takes its binary from ESBUILD_BINARY_PATH when it first loads, in a
    compile of the kept runner: the code's own value there is not the runner's, and the code
    finds its value as it left it."""
    answer = kept_after(
        server, key, "process.env.ESBUILD_BINARY_PATH = '/tmp/mine';\nreturn 1",
        "enum E { A = 3 }\nreturn [E.A, process.env.ESBUILD_BINARY_PATH]",
    )  # fmt: skip
    assert answer["success"] is True, answer
    assert answer["returnValue"] == [3, "/tmp/mine"]
    assert answer["output"] == '=== Results ===\n[\n  3,\n  "/tmp/mine"\n]', answer["output"]


def test_a_read_only_emit_warning_does_not_break_the_next_script(
    server: LocalServer, key: str
) -> None:
    """The runner silences Node's one-time warning about its script loader before any code
    runs: a first execution compiled by esbuild (an enum) that makes process.emitWarning its
    own does not turn the next execution, a script, into the runner's error."""
    answer = kept_after(
        server,
        key,
        "enum E { A }\nObject.defineProperty(process, 'emitWarning', { value: () => {}, writable: false });\n"
        "return E.A",
        "const m = await import('node:path');\nreturn m.sep",
    )
    assert answer["success"] is True, answer
    assert answer["returnValue"] == "/"
    assert answer["metadata"]["stateReset"] is False
