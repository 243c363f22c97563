"""The Python runner (sandbox/python/runner.py) run by the system Python, exactly as a host runs
it: a request on stdin, the event pipe at fd 3 read with the host's own frame parser; and its
`iris_prime` module against the real IRIS tool server on a Unix socket, with a real token."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iris_exec.adapters.frames import Collector, Report
from iris_exec.composition import Services
from iris_exec.domain.models import ApiKeyRecord, SandboxRecord, SandboxStatus
from iris_exec.domain.tools import ToolCaller
from iris_exec.local.server import mcp_endpoint
from iris_exec.local.tools_socket import serve_unix_socket
from iris_exec.settings import Settings
from tests.support.app import sqlite_container
from tests.support.fakes import FakeProvider

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "sandbox" / "python" / "runner.py"
#: What runs in the jails (Debian's python3; E2B's template has Debian's too).
PYTHON = Path("/usr/bin/python3")
BASH = "/bin/bash"
RUN_TIMEOUT_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def system_python() -> None:
    if not os.access(PYTHON, os.X_OK):
        pytest.fail(
            f"{PYTHON} is missing: the sandboxes run Python code with it (apt-get install python3)"
        )
    version = subprocess.run(
        [PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == "True", f"{PYTHON} must be Python 3.11 or later"


# -- running the runner as a host does -------------------------------------------------------


@dataclass
class Ran:
    """What the host saw of one execution."""

    frames: list[dict[str, Any]]
    report: Report
    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed_s: float

    @property
    def result(self) -> dict[str, Any]:
        assert self.report.result is not None, (self.frames, self.stderr)
        return self.report.result

    @property
    def value(self) -> Any:
        assert self.result["ok"], self.result
        raw = self.result["value"]
        return None if raw is None else json.loads(raw)

    @property
    def error(self) -> dict[str, str]:
        assert not self.result["ok"], self.result
        error: dict[str, str] = self.result["error"]
        return error

    @property
    def output(self) -> list[tuple[str, str]]:
        return [(chunk.stream, chunk.text) for chunk in self.report.chunks]

    def kinds(self) -> list[str]:
        return [str(frame.get("t")) for frame in self.frames]


def launch(flags: Sequence[str], cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the runner with the event pipe at fd 3 (as the jail's launcher does); the
    process and the pipe's read end. (-B: in a jail the runner's directory is read-only, and
    here bytecode would land in the source tree.)"""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [BASH, "--noprofile", "--norc", "-c", f'exec "$@" 3>&{write_fd} {write_fd}>&-',
             "iris-runner", str(PYTHON), "-B", *flags, str(RUNNER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(write_fd,), cwd=cwd,
            # A jail's environment: nothing of the host's.
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(cwd), "TZ": "UTC"},
        )  # fmt: skip
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def request_for(source: str, cwd: Path, **fields: Any) -> bytes:
    request = {
        "source": source,
        "projectId": "py-tests",
        "sessionId": None,
        "context": {},
        "cwd": str(cwd),
        "filename": "main.py",
        "tools": None,
        **fields,
    }
    return json.dumps(request).encode()


def run(
    source: str,
    cwd: Path,
    *,
    flags: Sequence[str] = (),
    output_limit: int = 1 << 30,
    **fields: Any,
) -> Ran:
    """Run ``source`` through the runner; everything the host would see."""
    began = time.monotonic()
    proc, read_fd = launch(flags, cwd)
    events: list[bytes] = []
    with open(read_fd, "rb") as pipe:
        reader = threading.Thread(target=lambda: events.append(pipe.read()))
        reader.start()
        try:
            stdout, stderr = proc.communicate(
                request_for(source, cwd, outputLimit=output_limit, **fields), RUN_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"the runner did not finish within {RUN_TIMEOUT_S} s")
        finally:
            reader.join(RUN_TIMEOUT_S)
    data = b"".join(events)
    collector = Collector(output_limit)
    collector.lines(data.split(b"\n"))
    frames = []
    for line in data.split(b"\n"):
        try:
            frame = json.loads(line)
        except ValueError:
            continue
        if isinstance(frame, dict):
            frames.append(frame)
    return Ran(frames, collector.report, proc.returncode, stdout, stderr, time.monotonic() - began)


# -- the protocol ----------------------------------------------------------------------------


def test_ready_comes_before_the_request(tmp_path: Path) -> None:
    proc, read_fd = launch((), tmp_path)
    with open(read_fd, "rb") as pipe:
        try:
            assert json.loads(pipe.readline()) == {"t": "ready"}
            assert proc.poll() is None  # warm, and waiting for its request
            stdout, _ = proc.communicate(request_for("return 'late'", tmp_path), RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        frames = [json.loads(line) for line in pipe.read().splitlines()]
    assert [f["t"] for f in frames] == ["start", "result"]
    assert frames[-1]["value"] == '"late"'
    assert stdout == b""


def test_a_run_reports_start_and_result_with_epoch_times(tmp_path: Path) -> None:
    before = time.time() * 1000
    ran = run('return {"answer": 41 + 1, "list": [1, "two"]}', tmp_path)
    after = time.time() * 1000
    assert ran.kinds() == ["ready", "start", "result"]
    start, result = ran.frames[1], ran.frames[2]
    assert before <= start["at"] <= result["at"] <= after
    assert result["ok"] is True
    assert result["value"] == '{\n  "answer": 42,\n  "list": [\n    1,\n    "two"\n  ]\n}'
    assert ran.returncode == 0
    assert (ran.stdout, ran.stderr) == (b"", b"")


def test_no_return_means_no_value(tmp_path: Path) -> None:
    assert run("x = 1", tmp_path).result["value"] is None
    assert run("return None", tmp_path).result["value"] is None
    assert run("return 0", tmp_path).result["value"] == "0"


def test_output_arrives_in_program_order(tmp_path: Path) -> None:
    ran = run(
        "import logging, sys\n"
        "print('one', 1)\n"
        "sys.stderr.write('two\\n')\n"
        "print('three', end='')\n"
        "sys.stderr.write('four')\n"
        "print(' five', flush=True)\n"
        "logging.warning('six')\n"
        "sys.stdout.buffer.write('sept \\u00e9\\n'.encode())\n"
        "print('eight', end='')\n"
        "return 'done'",
        tmp_path,
    )
    assert ran.output == [
        ("stdout", "one 1\n"),
        ("stderr", "two\n"),
        ("stdout", "three"),
        ("stderr", "four"),
        ("stdout", " five\n"),
        ("stderr", "WARNING:root:six\n"),
        ("stdout", "sept \u00e9\neight"),
    ]
    assert ran.value == "done"


def test_child_processes_write_to_the_real_stdout(tmp_path: Path) -> None:
    ran = run("import subprocess\nsubprocess.run(['echo', 'from a child'], check=True)", tmp_path)
    assert ran.stdout == b"from a child\n"
    assert ran.output == []


# -- top-level await and return, module semantics ----------------------------------------------


def test_top_level_await_and_return(tmp_path: Path) -> None:
    ran = run(
        "import asyncio\n"
        "async def double(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return 2 * x\n"
        "values = await asyncio.gather(*(double(i) for i in range(3)))\n"
        "if values:\n"
        "    return {'values': values, 'last': await double(21)}\n"
        "return 'unreachable'",
        tmp_path,
    )
    assert ran.value == {"values": [0, 2, 4], "last": 42}


@pytest.mark.parametrize("guarded", [False, True], ids=["return", "return-in-try"])
def test_code_that_does_not_await_runs_without_an_event_loop(tmp_path: Path, guarded: bool) -> None:
    ending = "try:\n    return result\nfinally:\n    pass" if guarded else "return result"
    ran = run(
        "import asyncio\n"
        "async def answer():\n"
        "    return 42\n"
        "result = asyncio.run(answer())  # fails inside a running loop\n" + ending,
        tmp_path,
    )
    assert ran.value == 42


MODULE_PROGRAM = """\
from __future__ import annotations
import pickle
from dataclasses import dataclass

LIMIT = 3
calls = 0

@dataclass
class Point:
    x: int
    y: int

    def moved(self) -> Point:
        return Point(self.x + step(), self.y)

def step() -> int:
    global calls
    calls += 1
    return LIMIT - 2

def walk(n: int) -> Point:
    point = Point(0, 0)
    for _ in range(n):
        point = point.moved()
    return point

end = walk(LIMIT)
try:
    step(1)
except TypeError as exc:
    message = str(exc)
facts = {
    "end": repr(end), "calls": calls, "qualname": Point.moved.__qualname__, "message": message,
    "pickled": pickle.loads(pickle.dumps(end)) == end, "name": __name__,
    "same_function": pickle.loads(pickle.dumps(step)) is step,
}
"""

#: Ways for the program to end: each takes another path through the runner's compiler.
ENDINGS = {
    "module-code": "print(repr(facts))",
    "return": "return facts",
    "return-in-if": "if facts:\n    return facts",
    "return-in-try": "try:\n    return facts\nfinally:\n    print('finally ran')",
    "await-and-return-in-with": (
        "import asyncio, contextlib\nawait asyncio.sleep(0)\n"
        "with contextlib.nullcontext():\n    return facts"
    ),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_top_level_code_keeps_module_semantics(tmp_path: Path, ending: str) -> None:
    ran = run(MODULE_PROGRAM + ENDINGS[ending], tmp_path)
    if ending == "module-code":
        facts = ast.literal_eval(ran.output[0][1])
        assert ran.result["value"] is None
    else:
        facts = ran.value
    assert facts == {
        "end": "Point(x=3, y=0)",
        "calls": 3,
        "qualname": "Point.moved",
        "message": "step() takes 0 positional arguments but 1 was given",
        "pickled": True,
        "name": "__main__",
        "same_function": True,
    }
    if ending == "return-in-try":
        assert ran.output == [("stdout", "finally ran\n")]


@pytest.mark.parametrize("wrapped", [False, True], ids=["module-code", "return-in-try"])
def test_global_statements(tmp_path: Path, wrapped: bool) -> None:
    ending = "try:\n    return result\nfinally:\n    pass" if wrapped else "return result"
    ran = run(
        "total = 0\n"
        "def add(n):\n"
        "    global total\n"
        "    total += n\n"
        "add(2)\n"
        "add(3)\n"
        "global late\n"
        "late = total * 10\n"
        "def read():\n"
        "    return late\n"
        "def rebind():\n"
        "    global fresh\n"
        "    fresh = 'made inside'\n"
        "rebind()\n"
        "result = [total, read(), fresh, sorted(k for k in globals() if not k.startswith('__'))]\n"
        + ending,
        tmp_path,
    )
    assert ran.value == [5, 50, "made inside", ["add", "fresh", "late", "read", "rebind", "total"]]


def test_wrapped_code_keeps_imports_annotations_and_star_imports(tmp_path: Path) -> None:
    ran = run(
        "from math import *\n"
        "import os.path as osp\n"
        "x: int = 5\n"
        "y: int\n"
        "try:\n"
        "    return [x, floor(2.5), osp.join('a', 'b'), 'y' in globals()]\n"
        "except:\n"
        "    return 'the bare except must not see the return'",
        tmp_path,
    )
    assert ran.value == [5, 2, "a/b", False]


def test_a_return_inside_with_leaves_it_as_a_return(tmp_path: Path) -> None:
    # sqlite3 commits a `with connection:` block that ends normally, and rolls back one that
    # ends with an exception: the top-level return must be a return.
    ran = run(
        "import sqlite3\n"
        "db = sqlite3.connect('t.db')\n"
        "db.execute('create table if not exists t (x)')\n"
        "with db:\n"
        "    db.execute('insert into t values (1)')\n"
        "    return 'inserted'",
        tmp_path,
    )
    assert ran.value == "inserted"
    check = run(
        "import sqlite3\nreturn sqlite3.connect('t.db').execute('select x from t').fetchall()",
        tmp_path,
    )
    assert check.value == [[1]]


# -- errors ----------------------------------------------------------------------------------


def assert_only_user_frames(stack: str) -> None:
    for internal in ("runner.py", "iris_prime.py", "asyncio", "<frozen"):
        assert internal not in stack, stack


def test_an_exception_reports_name_message_and_the_users_lines(tmp_path: Path) -> None:
    ran = run(
        "def divide(a, b):\n"
        "    return a / b\n"
        "\n"
        "def compute():\n"
        "    return divide(1, 0)\n"
        "\n"
        "compute()\n",
        tmp_path,
    )
    assert ran.error["name"] == "ZeroDivisionError"
    assert ran.error["message"] == "division by zero"
    stack = ran.error["stack"]
    assert stack.startswith("Traceback (most recent call last):\n")
    assert 'File "main.py", line 7, in <module>\n    compute()' in stack
    assert 'File "main.py", line 5, in compute\n    return divide(1, 0)' in stack
    assert 'File "main.py", line 2, in divide\n    return a / b' in stack
    assert stack.endswith("ZeroDivisionError: division by zero")
    assert_only_user_frames(stack)
    assert ran.kinds() == ["ready", "start", "result"]
    assert ran.returncode == 1


def test_an_exception_in_async_code_and_its_cause(tmp_path: Path) -> None:
    ran = run(
        "import asyncio\n"
        "async def fetch():\n"
        "    await asyncio.sleep(0)\n"
        "    return {}['key']\n"
        "try:\n"
        "    await fetch()\n"
        "except KeyError as exc:\n"
        "    raise RuntimeError('fetch failed') from exc\n",
        tmp_path,
    )
    assert (ran.error["name"], ran.error["message"]) == ("RuntimeError", "fetch failed")
    stack = ran.error["stack"]
    assert 'File "main.py", line 6, in <module>' in stack
    assert 'File "main.py", line 4, in fetch' in stack
    assert "KeyError: 'key'\n\nThe above exception was the direct cause" in stack
    assert 'File "main.py", line 8, in <module>' in stack
    assert_only_user_frames(stack)


def test_an_exception_in_wrapped_code(tmp_path: Path) -> None:
    ran = run("x = 1\ntry:\n    return x + 'a'\nfinally:\n    pass", tmp_path)
    assert ran.error["name"] == "TypeError"
    assert "File \"main.py\", line 3, in <module>\n    return x + 'a'" in ran.error["stack"]
    assert_only_user_frames(ran.error["stack"])


def test_syntax_error_says_where(tmp_path: Path) -> None:
    ran = run("x = 1\ny = = 2\n", tmp_path)
    assert ran.error["name"] == "SyntaxError"
    assert ran.error["message"] == "invalid syntax (main.py, line 2)"
    lines = ran.error["stack"].splitlines()
    assert lines[0] == '  File "main.py", line 2'
    assert lines[1] == "    y = = 2"
    assert lines[2].index("^") - 4 == "y = = 2".index("= 2")  # the column of the fault
    assert lines[-1] == "SyntaxError: invalid syntax"
    assert ran.kinds() == ["ready", "result"]  # the code never started


def test_yield_at_top_level_is_a_syntax_error(tmp_path: Path) -> None:
    ran = run("try:\n    return 1\nfinally:\n    yield 2\n", tmp_path)
    assert ran.error["name"] == "SyntaxError"
    assert ran.error["message"] == "'yield' outside function (main.py, line 4)"


def test_a_return_in_a_class_body_is_still_a_syntax_error(tmp_path: Path) -> None:
    ran = run("return_value = 1\nclass Config:\n    return 2\nreturn return_value", tmp_path)
    assert ran.error["name"] == "SyntaxError"
    assert ran.error["message"] == "'return' outside function (main.py, line 3)"
    assert "    return 2\n" in ran.error["stack"]


def test_missing_module(tmp_path: Path) -> None:
    ran = run("import json\nimport numpy_is_not_installed\n", tmp_path)
    assert ran.error["name"] == "ModuleNotFoundError"
    assert ran.error["message"] == "No module named 'numpy_is_not_installed'"
    assert 'File "main.py", line 2, in <module>' in ran.error["stack"]


def test_the_users_own_modules_import_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def greet(name):\n    return f'hello {name}'\n")
    assert run("import helpers\nreturn helpers.greet('you')", tmp_path).value == "hello you"


EXITS = {
    "sys.exit()": ("import sys\nprint('bye')\nsys.exit()", 0, ""),
    "exit()": ("exit()", 0, ""),
    "sys.exit(0)": ("import sys\nsys.exit(0)", 0, ""),
    "sys.exit(3)": ("import sys\nsys.exit(3)", 3, ""),
    "sys.exit(True)": ("import sys\nsys.exit(True)", 1, ""),
    "async sys.exit(4)": ("import asyncio, sys\nawait asyncio.sleep(0)\nsys.exit(4)", 4, ""),
    "SystemExit(message)": ("raise SystemExit('went wrong')", 1, "went wrong\n"),
}


@pytest.mark.parametrize("case", EXITS)
def test_exit_codes(tmp_path: Path, case: str) -> None:
    source, code, stderr = EXITS[case]
    ran = run(source, tmp_path)
    assert ran.kinds()[-1] == "exit"
    assert ran.frames[-1]["code"] == code
    assert ran.report.exit_code == code
    assert ran.report.result is None
    assert ran.returncode == code
    assert "".join(text for stream, text in ran.output if stream == "stderr") == stderr


@pytest.mark.parametrize(
    "source",
    [
        "while True:\n    print('x' * 99)",
        "import sys\nsys.stdout.write('y' * 300000)\nimport time\ntime.sleep(60)",
    ],
    ids=["lines", "one-long-line"],
)
def test_output_limit_stops_the_program(tmp_path: Path, source: str) -> None:
    ran = run(source, tmp_path, output_limit=1000)
    assert ran.kinds()[-1] == "limit"
    assert ran.frames[-1]["kind"] == "output"
    assert ran.report.output_exceeded
    assert ran.report.result is None
    assert sum(len(text.encode()) for _, text in ran.output) == 1000
    assert ran.returncode == 1
    assert ran.elapsed_s < 30


def test_unserializable_return_values(tmp_path: Path) -> None:
    ran = run(
        "import datetime, decimal, enum, uuid, pathlib\n"
        "from dataclasses import dataclass\n"
        "from collections import namedtuple, deque\n"
        "class Color(enum.Enum):\n"
        "    RED = 'red'\n"
        "@dataclass\n"
        "class Point:\n"
        "    x: int\n"
        "    y: int\n"
        "Pair = namedtuple('Pair', 'a b')\n"
        "class Opaque:\n"
        "    def __repr__(self):\n"
        "        return '<Opaque>'\n"
        "class Broken:\n"
        "    def __repr__(self):\n"
        "        raise RuntimeError('no repr')\n"
        "loop = {'name': 'loop'}\n"
        "loop['self'] = loop\n"
        "shared = [1]\n"
        "return {\n"
        "    'set': {3, 1, 2}, 'frozenset': frozenset('ba'), 'tuple': (1, 'two'),\n"
        "    'when': datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),\n"
        "    'day': datetime.date(2026, 1, 2), 'nan': float('nan'), 'inf': float('-inf'),\n"
        "    'bytes': b'hi', 'decimal': decimal.Decimal('1.10'), 'uuid': uuid.UUID(int=1),\n"
        "    'path': pathlib.PurePosixPath('/tmp/x'), 'enum': Color.RED, 'point': Point(1, 2),\n"
        "    'pair': Pair(1, 2), 'opaque': Opaque(), 'broken': Broken(), 'loop': loop,\n"
        "    'shared': [shared, shared], 'deque': deque([1, 2]), 'error': ValueError('bad'),\n"
        "    'keys': {1: 'int', None: 'none', (1, 2): 'tuple'}, 'function': len,\n"
        "    'big': 10 ** 30, 'complex': 1 + 2j, 'text': 'caf\\u00e9',\n"
        "}",
        tmp_path,
    )
    assert ran.result["value"].startswith('{\n  "set": [\n    1,\n    2,\n    3\n  ],')
    assert '"text": "caf\u00e9"' in ran.result["value"]  # as JSON.stringify: not escaped
    assert ran.value == {
        "set": [1, 2, 3], "frozenset": ["a", "b"], "tuple": [1, "two"],
        "when": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "nan": None, "inf": None,
        "bytes": "hi", "decimal": "1.10", "uuid": "00000000-0000-0000-0000-000000000001",
        "path": "/tmp/x", "enum": "red", "point": {"x": 1, "y": 2}, "pair": {"a": 1, "b": 2},
        "opaque": "<Opaque>", "broken": "<Broken object>",
        "loop": {"name": "loop", "self": "[Circular]"}, "shared": [[1], [1]], "deque": [1, 2],
        "error": {"name": "ValueError", "message": "bad"},
        "keys": {"1": "int", "null": "none", "(1, 2)": "tuple"},
        "function": "<built-in function len>", "big": 10**30, "complex": "(1+2j)",
        "text": "caf\u00e9",
    }  # fmt: skip


def test_a_value_json_cannot_hold_still_gives_a_result(tmp_path: Path) -> None:
    ran = run("return 10 ** 5000", tmp_path)  # more digits than int-to-str allows
    assert ran.value.startswith("[unserializable result: ValueError")


# -- a hostile or untidy program ----------------------------------------------------------------


def test_garbage_on_the_event_channel_changes_only_the_programs_own_result(tmp_path: Path) -> None:
    ran = run(
        "import os\n"
        'os.write(3, b\'garbage that is not json\\n[1, 2]\\n{"t":"out","s":"o","d":"forged\\\\n"}\\n\')\n'
        "print('genuine')\n"
        "return 'genuine'",
        tmp_path,
    )
    assert ran.output == [("stdout", "forged\ngenuine\n")]
    assert ran.value == "genuine"
    forged = run(
        "import os\n"
        'os.write(3, b\'{"t":"result","ok":true,"value":"\\\\"forged\\\\""}\\n\')\n'
        "return 'genuine'",
        tmp_path,
    )
    assert forged.value == "forged"  # the program's own result, which it controls anyway
    closed = run("import os\nos.close(3)\nreturn 'unreported'", tmp_path)
    assert closed.report.result is None
    assert closed.returncode == 70  # the runner saw the host's channel gone


def test_threads_and_tasks_left_running_do_not_hold_the_runner(tmp_path: Path) -> None:
    ran = run(
        "import asyncio, threading, time\n"
        "def boom():\n"
        "    raise RuntimeError('in a thread')\n"
        "worker = threading.Thread(target=boom, name='worker')\n"
        "worker.start()\n"
        "worker.join()\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()  # not a daemon, never joined\n"
        "async def stubborn():\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.sleep(60)\n"
        "        except asyncio.CancelledError:\n"
        "            pass\n"
        "task = asyncio.get_running_loop().create_task(stubborn())\n"
        "await asyncio.sleep(0)\n"
        "return 'done'",
        tmp_path,
    )
    assert ran.value == "done"
    assert ran.elapsed_s < 10
    [(stream, text)] = ran.output
    assert stream == "stderr"
    assert text.startswith("Exception in thread worker:\nTraceback (most recent call last):\n")
    assert "File \"main.py\", line 3, in boom\n    raise RuntimeError('in a thread')\n" in text
    assert text.endswith("RuntimeError: in a thread\n")


def test_a_forked_child_does_not_report(tmp_path: Path) -> None:
    ran = run(
        "import os\n"
        "pid = os.fork()\n"
        "print('child' if pid == 0 else 'parent')\n"
        "if pid:\n"
        "    os.waitpid(pid, 0)\n"
        "return 'parent' if pid else 'child'",
        tmp_path,
    )
    assert ran.kinds() == ["ready", "start", "out", "out", "result"]  # one result: the parent's
    assert sorted(frame["d"] for frame in ran.frames if frame["t"] == "out") == [
        "child\n",
        "parent\n",
    ]
    assert ran.value == "parent"


def test_open_files_are_flushed_and_atexit_callbacks_run(tmp_path: Path) -> None:
    ran = run(
        "import atexit\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "notes = open('notes.txt', 'w')\n"
        "notes.write('kept although never closed')\n"
        "return 'ok'",
        tmp_path,
    )
    assert ran.value == "ok"
    assert ran.output == [("stdout", "atexit ran\n")]
    assert (tmp_path / "notes.txt").read_text() == "kept although never closed"


def test_the_module_and_the_execution_context_without_tools(tmp_path: Path) -> None:
    ran = run(
        "import os, sys\n"
        "from iris_prime import iris, project_id, session_id, context, IrisToolError\n"
        "import iris_prime\n"
        "try:\n"
        "    iris.log_event('nowhere')\n"
        "except IrisToolError as exc:\n"
        "    problem = [exc.tool, str(exc)]\n"
        "return {'project': project_id, 'session': session_id, 'context': context,\n"
        "        'same': iris_prime.context is context, 'problem': problem, 'cwd': os.getcwd(),\n"
        "        'argv': sys.argv, 'file': __file__, 'name': __name__}",
        tmp_path,
        projectId="proj-1",
        sessionId="session-9",
        context={"user": {"id": 7}, "flags": [True]},
    )
    assert ran.value == {
        "project": "proj-1",
        "session": "session-9",
        "context": {"user": {"id": 7}, "flags": [True]},
        "same": True,
        "problem": ["logEvent", "The IRIS tools are not available in this execution"],
        "cwd": str(tmp_path),
        "argv": ["main.py"],
        "file": "main.py",
        "name": "__main__",
    }


@pytest.mark.parametrize("flags", [["-I"], ["-I", "-S"]], ids=["isolated", "isolated-no-site"])
def test_the_runner_works_in_isolated_mode(tmp_path: Path, flags: list[str]) -> None:
    ran = run(
        "from iris_prime import project_id\nprint(project_id)\nexit(0)", tmp_path, flags=flags
    )
    assert ran.output == [("stdout", "py-tests\n")]
    assert ran.report.exit_code == 0


# -- the tools, against the real tool server -------------------------------------------------------


class ToolServer:
    """The real MCP endpoint (auth, tools, SQLite store) on a Unix socket, served by uvicorn in
    an event loop of its own thread, as the local server serves it to the jails."""

    def __init__(self, data_dir: Path) -> None:
        self.container: Services = sqlite_container(Settings(data_dir=data_dir), FakeProvider())
        self.socket = data_dir / "tools.sock"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="tool-server", daemon=True)

    def start(self) -> ToolServer:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the tool server did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self._failure = exc
            self._started.set()

    async def _main(self) -> None:
        endpoint = mcp_endpoint(self.container)
        self._stop = asyncio.Event()
        async with endpoint.session_manager_run(), serve_unix_socket(endpoint, self.socket):
            self._started.set()
            await self._stop.wait()

    def grant(self, project: str, session: str | None = None) -> dict[str, str]:
        """The ``tools`` field of a request: the socket and a freshly minted token, for an
        execution that holds its sandbox's lease, started by an active key (the token is
        honoured only while both hold)."""
        now = time.time()
        sandbox_id, lease_id, key_id = (f"{p}_{uuid.uuid4().hex[:12]}" for p in ("sb", "ls", "k"))
        self.container.adapters.keys.add(
            ApiKeyRecord(key_id, f"hash-{key_id}", "sk_live_x", project, now)
        )
        record = SandboxRecord(
            sandbox_id, project, "fake", "ref", SandboxStatus.RUNNING, now, now,
            now + 300, now + 300, lease_id=lease_id, lease_until=now + 300,
        )  # fmt: skip
        self.container.adapters.registry.create(record)
        token = self.container.tokens.mint(
            project, sandbox_id, f"ex_{uuid.uuid4().hex[:12]}", session, now + 300,
            lease_id=lease_id, key_id=key_id,
        ).token  # fmt: skip
        return {"url": "http://localhost/mcp", "socket": str(self.socket), "token": token}

    def caller(self, project: str) -> ToolCaller:
        return ToolCaller(project)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServer]:
    server = ToolServer(tmp_path_factory.mktemp("pytools")).start()
    yield server
    server.stop()


def new_project() -> str:
    return f"py-{uuid.uuid4().hex[:10]}"


EVERY_TOOL = """\
from iris_prime import iris, IrisToolError
import datetime

out = {}
out["event"] = iris.log_event("checkout", {"plan": "pro"})
out["versions"] = [iris.save_prompt("greet", "Hello {name}")["version"],
                   iris.save_prompt("greet", "Hi {name}, from {place}", ["name", "place"])["version"]]
out["latest"] = iris.get_prompt("greet")
out["first"] = iris.get_prompt("greet", version=1)
out["missing"] = iris.get_prompt("nothing-here")
out["prompts"] = iris.list_prompts()
out["evaluation"] = iris.evaluate_output("2 + 2", "4", "correct")
out["partial"] = iris.evaluate_output("2 + 3", "about 5", "partial")["stats"]
out["votes"] = [iris.submit_vote("release-7", "agent-a", "approve")["status"],
                iris.submit_vote("release-7", "agent-a", "reject")["tally"],
                iris.submit_vote("release-7", "agent-b", "approve")["status"]]
out["consensus"] = iris.get_consensus("release-7")
parent = iris.track_lineage("pipeline", {"step": 1}, [1, 2])
child = iris.track_lineage("pipeline", "raw", None, parent_id=parent["id"])
out["lineage"] = [parent, child, iris.get_lineage("pipeline")]
for value in (10, 20, 30, 40, 50):
    iris.record_metric("latency", value, {"route": "/x"})
out["metric"] = iris.record_metric("latency", 0.5)
out["stats"] = iris.get_metrics("latency")
out["since"] = [
    iris.get_metrics("latency", since=datetime.datetime.now() + datetime.timedelta(minutes=1))["count"],
    iris.get_metrics("latency", since="2000-01-01T00:00:00Z")["count"],
    iris.get_metrics("latency", since=0)["count"],
]
out["patterns"] = iris.discover_patterns(min_support=0.5, min_confidence=0.5, max_patterns=3)
iris.close()
iris.close()
out["after_close"] = iris.list_prompts()[0]["latestVersion"]
return out
"""


def test_every_tool_from_python(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    ran = run(
        EVERY_TOOL,
        tmp_path,
        projectId=project,
        sessionId="s-py",
        tools=tools.grant(project, "s-py"),
    )
    out = ran.value
    assert out["event"]["event"] == "checkout" and out["event"]["id"]
    assert out["versions"] == [1, 2]
    assert out["latest"]["version"] == 2
    assert out["latest"]["template"] == "Hi {name}, from {place}"
    assert out["latest"]["variables"] == ["name", "place"]
    assert (out["first"]["version"], out["first"]["variables"]) == (1, ["name"])
    assert out["missing"] is None
    assert [(p["name"], p["latestVersion"]) for p in out["prompts"]] == [("greet", 2)]
    assert (out["evaluation"]["verdict"], out["evaluation"]["score"]) == ("correct", 1)
    assert out["evaluation"]["stats"] == {
        "total": 1, "correct": 1, "partial": 0, "incorrect": 0, "accuracy": 1,
    }  # fmt: skip
    assert (out["partial"]["total"], out["partial"]["accuracy"]) == (2, 0.75)
    assert out["votes"] == [
        "approved",
        {"approve": 0, "reject": 1, "abstain": 0, "total": 1},
        "tied",
    ]
    assert [(v["agentId"], v["vote"]) for v in out["consensus"]["votes"]] == [
        ("agent-a", "reject"),
        ("agent-b", "approve"),
    ]
    assert out["consensus"]["status"] == "tied"
    parent, child, lineage = out["lineage"]
    assert (parent["signature"], parent["parentId"]) == ("pipeline", None)
    assert child["parentId"] == parent["id"]
    assert [(e["input"], e["output"]) for e in lineage["entries"]] == [
        ({"step": 1}, [1, 2]),
        ("raw", None),
    ]
    assert (out["metric"]["metric"], out["metric"]["value"], out["metric"]["tags"]) == (
        "latency",
        0.5,
        {},
    )
    assert out["stats"] == {
        "metric": "latency", "count": 6, "min": 0.5, "max": 50, "mean": 150.5 / 6,
        "p50": 25, "p95": 47.5, "sampled": 6,
    }  # fmt: skip
    assert out["since"] == [0, 6, 6]
    assert len(out["patterns"]) == 3
    assert all(set(p) == {"antecedent", "consequent", "support", "confidence", "lift", "count"}
               for p in out["patterns"])  # fmt: skip
    assert out["after_close"] == 2
    # The records are the project's, on the server.
    caller = tools.caller(project)
    assert tools.container.tools.get_metrics(caller, "latency", None).count == 6


def test_tool_errors_carry_the_servers_message(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    ran = run(
        "from iris_prime import iris, IrisToolError\n"
        "errors = []\n"
        "calls = [lambda: iris.evaluate_output('q', 'a', 'maybe'),\n"
        "         lambda: iris.save_prompt('p', 'Hi {x}', ['y']),\n"
        "         lambda: iris.discover_patterns(min_support=0),\n"
        "         lambda: iris.track_lineage('s', 1, 2, parent_id='lin_nope'),\n"
        "         lambda: iris.record_metric('m', float('nan'))]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except IrisToolError as exc:\n"
        "        errors.append([type(exc).__name__, exc.tool, str(exc), isinstance(exc, Exception)])\n"
        "return errors",
        tmp_path,
        projectId=project,
        tools=tools.grant(project),
    )
    verdict, prompt, support, lineage, nan = ran.value
    assert verdict[:2] == ["IrisToolError", "evaluateOutput"]
    assert verdict[2] == (
        "invalid arguments: verdict: Input should be 'correct', 'incorrect' or 'partial'"
    )
    assert verdict[3] is True
    assert prompt[1:3] == [
        "savePrompt",
        "variables ['y'] are declared but do not appear in the template as {y}",
    ]
    assert support[1] == "discoverPatterns" and "minSupport" in support[2]
    assert lineage[1] == "trackLineage" and "not a lineage id of this project" in lineage[2]
    assert nan[1:3] == [
        "recordMetric",
        "recordMetric failed: arguments must be JSON: NaN and infinity are not JSON numbers",
    ]
    for error in (verdict, prompt, support, lineage):
        assert "Error executing tool" not in error[2] and "pydantic.dev" not in error[2]


def test_an_uncaught_tool_error_fails_the_execution(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    ran = run(
        "from iris_prime import iris\niris.submit_vote('c', 'a', 'perhaps')",
        tmp_path, projectId=project, tools=tools.grant(project),
    )  # fmt: skip
    assert ran.error["name"] == "IrisToolError"
    assert ran.error["message"].startswith("invalid arguments: vote: Input should be")
    assert 'File "main.py", line 2, in <module>' in ran.error["stack"]
    assert_only_user_frames(ran.error["stack"])


def test_a_bad_token_is_a_tool_error(tools: ToolServer, tmp_path: Path) -> None:
    grant = {**tools.grant("anyone"), "token": "iet_forged.token"}
    ran = run(
        "from iris_prime import iris, IrisToolError\n"
        "try:\n"
        "    iris.log_event('x')\n"
        "except IrisToolError as exc:\n"
        "    return str(exc)",
        tmp_path, tools=grant,
    )  # fmt: skip
    assert ran.value == "logEvent failed: HTTP 401: Invalid execution token"


def test_fifty_concurrent_calls_from_threads(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    ran = run(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from iris_prime import iris\n"
        "with ThreadPoolExecutor(max_workers=50) as pool:\n"
        "    records = list(pool.map(lambda i: iris.record_metric('load', i), range(50)))\n"
        "    versions = list(pool.map(lambda i: iris.save_prompt('p', f'v{i}')['version'], range(10)))\n"
        "return {'ids': len({r['id'] for r in records}), 'values': sorted(r['value'] for r in records),\n"
        "        'versions': sorted(versions)}",
        tmp_path,
        projectId=project,
        tools=tools.grant(project),
    )
    assert ran.value == {"ids": 50, "values": list(range(50)), "versions": list(range(1, 11))}
    stats = tools.container.tools.get_metrics(tools.caller(project), "load", None)
    assert (stats.count, stats.mean) == (50, sum(range(50)) / 50)


def test_calls_in_flight_finish_before_the_runner_exits(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    ran = run(
        "import threading\n"
        "from iris_prime import iris\n"
        "started = threading.Event()\n"
        "def late_call():\n"
        "    started.set()\n"
        "    iris.log_event('in-flight')\n"
        "threading.Thread(target=late_call).start()\n"
        "started.wait()\n"
        "return 'ended while the call was in flight'",
        tmp_path,
        projectId=project,
        tools=tools.grant(project),
    )
    assert ran.value == "ended while the call was in flight"
    patterns = tools.container.tools.discover_patterns(tools.caller(project), 1.0, 1.0, 10)
    assert patterns.transactions == 1  # the event was stored


def test_the_token_lives_only_in_memory(tools: ToolServer, tmp_path: Path) -> None:
    project = new_project()
    grant = tools.grant(project)
    ran = run(
        "import os\n"
        "from iris_prime import iris\n"
        "iris.log_event('token-check')\n"
        "def read(path):\n"
        "    with open(path, 'rb') as f:\n"
        "        return f.read().decode('latin-1')\n"
        "files = {}\n"
        "for folder, _, names in os.walk(os.getcwd()):\n"
        "    for name in names:\n"
        "        try:\n"
        "            files[os.path.join(folder, name)] = read(os.path.join(folder, name))\n"
        "        except OSError:\n"
        "            pass  # gone meanwhile, or a link to another process's descriptor\n"
        "return {'environ': read('/proc/self/environ'), 'cmdline': read('/proc/self/cmdline'),\n"
        "        'env': dict(os.environ), 'files': files}",
        tmp_path,
        projectId=project,
        tools=grant,
    )
    token = grant["token"]
    seen = ran.value
    assert seen["env"] and seen["cmdline"]  # it did look
    assert token not in json.dumps(seen)
    assert token.encode() not in ran.stdout + ran.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    # ...and yet the calls were made with it.
    caller = tools.caller(project)
    assert tools.container.tools.discover_patterns(caller, 1.0, 1.0, 10).transactions == 1
