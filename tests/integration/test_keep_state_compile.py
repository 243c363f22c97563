"""A kept runner compiles its TypeScript itself: types blanked in place, the program run as a
script (sandbox/src/strip.ts), esbuild only for what does not simply erase. Whatever path a
program takes, a kept execution answers what a fresh one does. Real jails, a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import LocalServer

#: Programs whose answer is the same kept or fresh, on every path: stripped in place (most),
#: compiled by esbuild (enums, namespaces, parameter properties, decorators), or a stripped
#: program that would change meaning (`b as number` then `(...)` on the next line).
PROGRAMS = [
    "let a = 1\nlet b: number = 2\nconst [c] = [3]\nimport { sep } from 'node:path'\nreturn a + b + c + sep",
    "const x: number = 1; let y: Array<string> = ['a']; return [x, y]",
    "interface P { x: number }\ntype Q = P | null\nconst p: P = { x: 2 }\nreturn p.x",
    "function f<T>(a: T, b?: number): T { return a }\nreturn f<string>('s')",
    "function g(this: { v: number }, a: number) { return this.v + a }\nreturn g.call({ v: 1 }, 2)",
    "abstract class A { abstract area(): number; describe(): string { return 'a' + this.area() } }\n"
    "class B extends A implements Object { private readonly s: number = 3; public static z?: number;"
    " w!: string; area() { return this.s } }\nreturn [new B().describe(), 'w' in new B()]",
    "const v = (1 as any) as number; const w = <number>(v); const n = [1]!; return [v, w, n]",
    "const obj = { a: 1 } satisfies Record<string, number>; return obj",
    "declare const ambient: number; declare function df(): void;\nreturn typeof ambient",
    "function over(a: string): string;\nfunction over(a: number): number;\n"
    "function over(a: any) { return a }\nreturn over(3)",
    "const arrow = <T,>(a: T): T => a; const opt = (a?: number) => a ?? 7; return [arrow(1), opt()]",
    "enum Color { Red, Green }\nreturn Color.Green",
    "class S { constructor(private s: number) {} get v() { return this.s } }\nreturn new S(4).v",
    "namespace NS { export const a = 1 }\nreturn NS.a",
    "function sealed(c: Function) { return c }\n@sealed class D { m() { return 'd' } }\nreturn new D().m()",
    "try { throw new Error('e') } catch (e: unknown) { return (e as Error).message }",
    "const a = 1\ninterface I {}\n;[1, 2].forEach(() => {})\nreturn a",
    "let b = 2\nconst c = b as number\n(function () {})\nreturn c",
    "class Pv { #x: number = 1; static #y?: number; get x(): number { return this.#x } }\n"
    "return new Pv().x",
    "const e = [1, 2, 3].map((n): number => n * 2) as number[]; return e",
    "import type { ParsedPath } from 'node:path';\nimport { sep } from 'node:path';\n"
    "let pp: ParsedPath | null = null; return [sep, pp]",
    "const os = await import('node:os'); return typeof os.platform",
    "return typeof import.meta.url",
    "console.log('out'); console.error('err'); return 1",
    "const t: string = 'x';\nconst u: number = 2;\nnull.boom",
    "const broken: number = ;",
    # Found by differential testing against esbuild: blanked, each changed meaning.
    "const a = 1 + 2 as number * 3; return a",  # (1 + 2) * 3, not 1 + 2 * 3
    "let c; const b = 1; c = b as number // note\n(function () { return 5 })\nreturn c",
    "function f() { const b = 1; const c = b as number\u2028(function () { return 5 })\n"
    "return c }\nreturn f()",
    "const f = () => <any>{ a: 1 }; return f()",  # not a block
    "<any>function notDeclared() {}\nreturn typeof notDeclared",  # not a declaration
    "class K { get: number\n foo() { return 1 } }\nreturn typeof new K().foo",  # not a getter
    "const k = 'k'\nclass M { x = 1\nprivate [k] = 2 }\nreturn new M()",  # not 1[k] = 2
    "class R {\nreadonly\nx = 1\n}\nreturn Object.keys(new R())",  # esbuild: a modifier
    "const n: any = 1\nreturn n as const | 2",  # the type `const | 2`, as TypeScript reads it
    # What esbuild rejects, a kept run rejects too.
    "declare module 'm' { export const x: number }\nreturn 1",
    "class P { declare #x: number }\nreturn 1",
    "let a = 1, b = 2\nreturn a <!--b",  # a comment in a script, an error in a module
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("keep-compile") / "data"
    with LocalServer(data, rate_limit_per_minute=100_000) as running:
        yield running


@pytest.fixture(scope="module")
def key(server: LocalServer) -> str:
    return server.create_key("kept-compile")


def execute(server: LocalServer, key: str, code: str, **fields: Any) -> dict[str, Any]:
    with server.client(key) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text[:500]
    answer: dict[str, Any] = response.json()
    return answer


def seen(result: dict[str, Any]) -> dict[str, Any]:
    """What the user reads in an answer, but timings and ids; a stack's `main.ts` lines (kept
    state rewrites declarations, which may move columns)."""
    error = result.get("error")
    return {
        "success": result["success"],
        "output": result["output"],
        "returnValue": result.get("returnValue"),
        "error": error
        and {
            "name": error["name"],
            "message": error["message"],
            "lines": re.findall(r"main\.ts:(\d+)", error.get("stack") or ""),
        },
    }


@pytest.fixture(scope="module")
def sandbox(server: LocalServer, key: str) -> str:
    """One kept sandbox for the whole corpus: each program also runs after all the others."""
    answer = execute(server, key, "return 0", keepState=True)
    return str(answer["sandboxId"])


@pytest.mark.parametrize("code", PROGRAMS, ids=range(len(PROGRAMS)))
def test_a_kept_execution_answers_what_a_fresh_one_does(
    server: LocalServer, key: str, sandbox: str, code: str
) -> None:
    fresh = execute(server, key, code)["result"]
    kept = execute(server, key, code, keepState=True, sandboxId=sandbox)["result"]
    assert seen(kept) == seen(fresh)
    assert kept["metadata"]["stateReset"] is False


def test_errors_point_at_the_users_line_and_column(server: LocalServer, key: str) -> None:
    code = "type T = { a: number }\nconst t: T | null = null as T | null;\nconst n: number = t!.a;"
    kept = execute(server, key, code, keepState=True)["result"]
    assert kept["error"]["name"] == "TypeError"
    # `t!.a` reads `a` of null: line 3, the column of `.a` where the user wrote it.
    assert "main.ts:3:" in kept["error"]["stack"], kept["error"]["stack"]
    column = int(re.findall(r"main\.ts:3:(\d+)", kept["error"]["stack"])[0])
    assert abs(column - (code.split("\n")[2].index("!.a") + 2)) <= 1


def test_no_warning_of_the_runner_reaches_the_output(server: LocalServer, key: str) -> None:
    """Node 20 calls the loader option kept scripts use experimental, once per process: the
    runner takes that warning before any code runs."""
    first = execute(
        server, key, "const m = await import('node:path'); return m.sep", keepState=True
    )
    second = execute(
        server,
        key,
        "const os = await import('node:os'); return typeof os.cpus",
        keepState=True,
        sandboxId=first["sandboxId"],
    )
    for answer in (first, second):
        assert answer["result"]["success"] is True, answer
        assert "Warning" not in answer["result"]["output"], answer["result"]["output"]


def test_state_persists_through_every_compile_path(server: LocalServer, key: str) -> None:
    first = execute(server, key, "const kept: number = 41;", keepState=True)
    sandbox = first["sandboxId"]
    # esbuild's path (an enum), then the stripped one, each sees what the other declared.
    second = execute(
        server, key, "enum E { A = 1 }\nreturn kept + E.A", keepState=True, sandboxId=sandbox
    )
    third = execute(server, key, "return (E.A as number) + kept", keepState=True, sandboxId=sandbox)
    assert second["result"]["returnValue"] == 42, second
    assert third["result"]["returnValue"] == 42, third
