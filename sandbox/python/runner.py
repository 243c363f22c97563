"""Runs one execution of Python code in a fresh interpreter inside the sandbox.

The Python twin of sandbox/src/runner.ts, with the same protocol. Life of a runner: it starts
before any request exists (the host keeps one warm per sandbox), imports what every
execution needs, says ``ready``, then reads one JSON request from stdin (until EOF), runs the
user's code and reports on the event channel (file descriptor 3, JSON lines)::

    {"t":"ready"}                                   warm, waiting for the request
    {"t":"start","at":ms}                           the user's code starts now
    {"t":"out","s":"o"|"e","d":"text"}              print / sys.stdout / sys.stderr / logging,
                                                    in program order
    {"t":"result","ok":true,"value":"<json>"|null,"at":ms}
    {"t":"result","ok":false,"error":{"name","message","stack"},"at":ms}
    {"t":"exit","code":N,"at":ms}                   the program exited by itself (sys.exit)
    {"t":"limit","kind":"output","at":ms}           output passed ``outputLimit``; stopped

Kept state (``"keep": true`` in the request): the runner does not exit after its result. It
stops what the execution left pending (asyncio tasks and callbacks of its event loop,
``signal.alarm`` and interval timers), then sends its result frame, which then carries the
request's ``nonce`` and ``idle`` (false: threads the code started still run), and reads the
next request, one JSON line. The code of every execution runs in the same ``__main__``
namespace and the same event loop: what one defines, the next sees, as in a notebook.

``at`` is epoch milliseconds. The request: ``source``, ``filename`` (e.g. ``main.py``, the
name tracebacks show), ``projectId``, ``sessionId``, ``context``, ``tools`` (null or
``{"url", "socket"?, "token"?}``), ``cwd`` (default: the current directory), ``outputLimit``
(bytes of output; optional). ``workdir`` is accepted and unused: nothing is written to disk.

The code runs as the ``__main__`` module, with top-level ``await`` and top-level ``return``
(whose value becomes the result, as pretty JSON). Output written straight to fd 1 and 2
(child processes) is left alone: the host reads those pipes itself. The result never travels
on stdout: whatever the program prints, it cannot make the host believe in another result.
(A program that writes to fd 3 on purpose can only change its own result, which it controls
anyway.) Standard library only; Python 3.11+.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import builtins
import codecs
import collections.abc
import datetime
import enum
import errno
import gc
import importlib
import io
import json
import linecache
import math
import os
import signal
import stat
import symtable
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO, cast

if TYPE_CHECKING:
    from collections.abc import Buffer

EVENTS_FD = 3
#: How long the tools may take to finish calls in flight when the code ends.
CLOSE_GRACE_S = 2.0
#: A partial line is sent once this long (characters), newline or not.
PENDING_MAX = 65536
RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))
#: inspect.CO_COROUTINE (inspect itself is slow to import): code compiled with top-level
#: await that does await returns a coroutine when evaluated.
CO_COROUTINE = 0x0080
TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

# The module sits beside this file; the runner may have been started with -I (no script dir).
if RUNNER_DIR not in sys.path:
    sys.path.insert(0, RUNNER_DIR)
if TYPE_CHECKING:  # mypy knows this directory as the package sandbox.python
    from sandbox.python import iris_prime
else:
    import iris_prime


def now_ms() -> float:
    return time.time() * 1000


# -- the event channel ---------------------------------------------------------------------


class Channel:
    """Frames to the host on fd 3, and the program's output counted against its limit.

    Output is line-buffered, like a terminal's: a frame per completed line, not per write
    (``print("a", i)`` writes four times). A partial line goes out when its stream is
    flushed, before any output of the other stream or any other frame (so the order across
    both streams is the program's), at the end, and when it reaches PENDING_MAX."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # Reentrant: a signal handler may print while the main thread is writing a frame.
        self._lock = threading.RLock()
        self.output_limit: int | None = None
        self._output_bytes = 0
        self._pending: dict[str, list[str]] = {"o": [], "e": []}
        self._pending_size = 0

    def send(self, frame: dict[str, Any]) -> None:
        with self._lock:
            self.flush()
            self._write(frame)

    def output(self, stream: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            other = "e" if stream == "o" else "o"
            if self._pending[other]:
                self._emit(other)
            pending = self._pending[stream]
            pending.append(text)
            self._pending_size += len(text)
            if "\n" in text or self._pending_size >= PENDING_MAX:
                self._emit(stream, whole_lines=self._pending_size < PENDING_MAX)

    def flush(self, stream: str | None = None) -> None:
        with self._lock:
            for name in (stream,) if stream else ("o", "e"):
                if self._pending[name]:
                    self._emit(name)

    def reset(self) -> None:
        """A new execution (kept runner): its output is counted from zero."""
        with self._lock:
            self.flush()
            self._output_bytes = 0
            self.output_limit = None

    def after_fork_in_child(self) -> None:
        # Another thread may have held the lock when the program forked.
        self._lock = threading.RLock()

    def _emit(self, stream: str, *, whole_lines: bool = False) -> None:
        """Send the stream's pending text (up to its last newline, if ``whole_lines``)."""
        text = "".join(self._pending[stream])
        cut = text.rfind("\n") + 1 if whole_lines else len(text)
        rest = text[cut:]
        self._pending[stream] = [rest] if rest else []
        self._pending_size = len(rest)
        if cut:
            self._count(stream, text[:cut])
            self._write({"t": "out", "s": stream, "d": text[:cut]})

    def _count(self, stream: str, text: str) -> None:
        encoded = text.encode("utf-8", "surrogatepass")
        limit = self.output_limit
        if limit is not None and self._output_bytes + len(encoded) > limit:
            # Keep what fits, say why, and stop: nothing past the cap is worth producing.
            room = max(0, limit - self._output_bytes)
            kept = encoded[:room].decode("utf-8", "ignore")
            if kept:
                self._write({"t": "out", "s": stream, "d": kept})
            self._write({"t": "limit", "kind": "output", "at": now_ms()})
            os._exit(1)
        self._output_bytes += len(encoded)

    def _write(self, frame: dict[str, Any]) -> None:
        # ASCII JSON (lone surrogates escaped): always one valid UTF-8 line.
        data = memoryview((json.dumps(frame, separators=(",", ":")) + "\n").encode("ascii"))
        while data:
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:  # the program made fd 3 non-blocking
                time.sleep(0.001)
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF):
                    os._exit(70)  # the host is gone: nobody to report to
                raise
            data = data[written:]


class FrameStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: writes go to the channel at once (line-buffered
    there, in program order across both streams)."""

    encoding = "utf-8"
    errors = "strict"
    line_buffering = True

    def __init__(self, channel: Channel, stream: str, fd: int, name: str) -> None:
        super().__init__()
        self._channel = channel
        self._stream = stream
        self._fd = fd
        self._name = name
        self._buffer = FrameBuffer(self)

    def write(self, s: str, /) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self._channel.output(self._stream, s)
        return len(s)

    @property
    def buffer(self) -> FrameBuffer:
        return self._buffer

    @property
    def name(self) -> str:
        return self._name

    def fileno(self) -> int:
        # The real descriptor, for code that hands it to a child process (the host reads it).
        return self._fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        self._channel.flush(self._stream)

    def close(self) -> None:
        pass  # the runner still reports through it after the code ends

    def reconfigure(self, **_options: object) -> None:
        pass  # always UTF-8 text, line-buffered


class FrameBuffer(io.BufferedIOBase):
    """``sys.stdout.buffer``: bytes are decoded (UTF-8) and written as text."""

    def __init__(self, text: FrameStream) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lock = threading.Lock()

    def write(self, buffer: Buffer, /) -> int:
        data = bytes(buffer)
        with self._lock:
            text = self._decoder.decode(data)
        self._text.write(text)
        return len(data)

    def fileno(self) -> int:
        return self._text.fileno()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._text.flush()

    def close(self) -> None:
        pass


# -- compiling the program -----------------------------------------------------------------

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_GUARDS = (ast.Try, ast.TryStar, ast.With, ast.AsyncWith)
_ASYNC = (ast.Await, ast.AsyncFor, ast.AsyncWith)
_WRAPPER = "<module>"
_NESTED = f"{_WRAPPER}.<locals>."


class TopLevelReturn(BaseException):
    """How a top-level ``return`` leaves module code (see compile_with_return). A BaseException,
    so that ``except Exception`` in the program does not catch it."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value


@dataclass(frozen=True)
class Program:
    """Compiled user code: module code, or the body of a function that stands for it."""

    code: types.CodeType
    is_async: bool
    is_function: bool


def module_scope(tree: ast.Module) -> Iterator[tuple[ast.AST, bool]]:
    """Every node of the module's own scope, with whether it is inside a try or with block.
    Functions and classes are yielded, their bodies are not. Iterative: a long expression
    is a deep tree."""
    stack: list[tuple[ast.AST, bool]] = [(node, False) for node in reversed(tree.body)]
    while stack:
        node, guarded = stack.pop()
        yield node, guarded
        if isinstance(node, _SCOPES):
            continue
        inner = guarded or isinstance(node, _GUARDS)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def rewrite_statements(tree: ast.Module, rewrite: Callable[[ast.stmt], ast.stmt | None]) -> None:
    """Replace statements of the module's own scope by ``rewrite(statement)`` (None: keep)."""
    holders: list[ast.AST] = [tree]
    holders += [node for node, _ in module_scope(tree) if not isinstance(node, _SCOPES)]
    for holder in holders:
        for _, value in ast.iter_fields(holder):
            if not isinstance(value, list):
                continue
            for index, item in enumerate(value):
                if isinstance(item, ast.stmt):
                    replacement = rewrite(item)
                    if replacement is not None:
                        value[index] = replacement


def located(node: ast.AST, like: ast.AST) -> Any:
    """``node`` placed where ``like`` is (tracebacks then show the user's line)."""
    return ast.copy_location(node, like)


def builtin_call(name: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    func = located(ast.Name(id=name, ctx=ast.Load()), like)
    return cast(ast.Call, located(ast.Call(func=func, args=args, keywords=[]), like))


def compile_program(source: str, filename: str) -> Program:
    """Compile the user's code as a module, with top-level ``await`` and ``return``.

    Code without a top-level ``return`` compiles as it is, as module code (with top-level
    await allowed: evaluating it then gives a coroutine): exact module semantics. Only when
    the compiler finds a ``return`` outside any function is the code parsed and rewritten
    (see compile_with_return)."""
    try:
        code = compile(source, filename, "exec", flags=TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        if exc.msg != "'return' outside function":
            raise
    else:
        return Program(code, bool(code.co_flags & CO_COROUTINE), is_function=False)
    try:
        return compile_with_return(ast.parse(source, filename), source, filename)
    except SyntaxError as exc:
        if exc.text is None and exc.lineno:  # compiled from a tree: no source line to show
            exc.text = location_text(source, exc.lineno)
        raise


def compile_with_return(tree: ast.Module, source: str, filename: str) -> Program:
    """A top-level ``return`` outside any try/with block becomes ``raise TopLevelReturn(value)``,
    which nothing in between can intercept: still exact module semantics. A ``return`` inside a
    try or with block must run ``finally`` and ``__exit__`` as a return, not as an exception
    (``except:`` would catch it, a database connection would roll back): then the body runs
    inside a function (see wrap_in_function)."""
    returns = [(n, guarded) for n, guarded in module_scope(tree) if isinstance(n, ast.Return)]
    if any(guarded for _, guarded in returns):
        return wrap_in_function(tree, source, filename)
    rewrite_statements(tree, raise_top_level_return)
    code = compile(tree, filename, "exec", flags=TOP_LEVEL_AWAIT, dont_inherit=True)
    return Program(code, bool(code.co_flags & CO_COROUTINE), is_function=False)


def raise_top_level_return(statement: ast.stmt) -> ast.stmt | None:
    if not isinstance(statement, ast.Return):
        return None
    value = statement.value or located(ast.Constant(value=None), statement)
    call = builtin_call("__iris_return__", [value], statement)
    return cast(ast.stmt, located(ast.Raise(exc=call, cause=None), statement))


def wrap_in_function(tree: ast.Module, source: str, filename: str) -> Program:
    """The module's body as the body of ``def <module>():`` (``async def`` if it awaits).

    So that it still behaves as module code: every name the module binds is declared
    ``global`` (functions and classes see them, ``global`` statements at top level, now
    redundant, are dropped); annotated names lose their annotation (a global cannot have one);
    ``from m import *`` becomes a call; qualified names lose the ``<module>.<locals>.``
    prefix (reprs, error messages and pickle see ``f``, not ``<module>.<locals>.f``).
    Unlike a module, ``locals()`` at top level is the function's (empty) namespace."""
    for node, _ in module_scope(tree):
        if isinstance(node, ast.Yield | ast.YieldFrom):
            raise SyntaxError("'yield' outside function", location(node, source, filename))
    is_async = any(isinstance(node, _ASYNC) or is_async_comprehension(node)
                   for node, _ in module_scope(tree))  # fmt: skip
    names = sorted(symtable.symtable(source, filename, "exec").get_identifiers())
    rewrite_statements(tree, as_function_statement)
    futures, rest = split_future_imports(tree)
    template = "async def _(): pass" if is_async else "def _(): pass"
    function = cast(ast.FunctionDef, ast.parse(template).body[0])
    function.name = _WRAPPER
    body: list[ast.stmt] = rest or [ast.Pass()]
    if names:
        body.insert(0, located(ast.Global(names=names), body[0]))
    function.body = body
    located(function, body[0])
    # `from __future__` imports stay at module level, where they apply to the function too.
    module = ast.Module(body=[*futures, function], type_ignores=[])
    module_code = compile(module, filename, "exec", dont_inherit=True)
    code = next(c for c in module_code.co_consts if isinstance(c, types.CodeType))
    return Program(unnest(code), is_async, is_function=True)


def split_future_imports(tree: ast.Module) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """The ``from __future__`` imports the module starts with (after its docstring, if
    any), and the rest of its body."""
    futures: list[ast.stmt] = []
    rest = list(tree.body)
    index = 1 if rest and is_docstring(rest[0]) else 0
    while index < len(rest) and is_future_import(rest[index]):
        futures.append(rest.pop(index))
    return futures, rest


def is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def is_future_import(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.ImportFrom) and statement.module == "__future__"


def is_async_comprehension(node: ast.AST) -> bool:
    return isinstance(node, ast.comprehension) and bool(node.is_async)


def as_function_statement(statement: ast.stmt) -> ast.stmt | None:
    if isinstance(statement, ast.Global):
        return cast(ast.stmt, located(ast.Pass(), statement))
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        if statement.value is None:
            return cast(ast.stmt, located(ast.Pass(), statement))
        assign = ast.Assign(targets=[statement.target], value=statement.value)
        return cast(ast.stmt, located(assign, statement))
    if isinstance(statement, ast.ImportFrom) and any(a.name == "*" for a in statement.names):
        module = "." * (statement.level or 0) + (statement.module or "")
        name = located(ast.Constant(value=module), statement)
        call = builtin_call("__iris_import_star__", [name], statement)
        return cast(ast.stmt, located(ast.Expr(value=call), statement))
    return None


def unnest(code: types.CodeType) -> types.CodeType:
    """``code`` with ``<module>.<locals>.`` removed from the qualified names inside it (a
    function's comes from its code object; a class's from a constant in its body)."""
    consts = tuple(
        unnest(c) if isinstance(c, types.CodeType)
        else c.removeprefix(_NESTED) if isinstance(c, str) else c
        for c in code.co_consts
    )  # fmt: skip
    return code.replace(co_consts=consts, co_qualname=code.co_qualname.removeprefix(_NESTED))


def location(node: ast.AST, source: str, filename: str) -> tuple[str, int, int, str]:
    """Where ``node`` is, as SyntaxError takes it."""
    lineno = getattr(node, "lineno", 1)
    return filename, lineno, getattr(node, "col_offset", 0) + 1, location_text(source, lineno)


def location_text(source: str, lineno: int) -> str:
    lines = source.splitlines()
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def import_star(namespace: dict[str, Any]) -> Callable[[str], None]:
    """``from module import *`` into ``namespace``, for code run as a function."""

    def run(name: str) -> None:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None)
        if public is None:
            public = [key for key in vars(module) if not key.startswith("_")]
        namespace.update({key: getattr(module, key) for key in public})

    return run


def run_program(
    program: Program, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None
) -> Any:
    """Run the program; the value of its top-level ``return`` (None without one). ``loop``:
    the kept runner's event loop (a fresh one otherwise)."""
    try:
        if program.is_function:
            outcome = types.FunctionType(program.code, namespace, _WRAPPER)()
        else:
            # The user's own code, in its own module namespace: running it is the point.
            outcome = eval(program.code, namespace)  # noqa: S307
        if program.is_async:
            if loop is None:
                loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            outcome = loop.run_until_complete(outcome)
    except TopLevelReturn as returned:
        return returned.value
    return outcome if program.is_function else None


# -- reporting -----------------------------------------------------------------------------


def serialize(value: object) -> str | None:
    """JSON (indent 2) for the ``=== Results ===`` section; never fails."""
    if value is None:
        return None
    try:
        return json.dumps(to_json(value, set()), indent=2, ensure_ascii=False, allow_nan=False)
    except Exception as exc:
        return json.dumps(f"[unserializable result: {type(exc).__name__}: {exc}]")


def to_json(value: object, active: set[int]) -> Any:
    """``value`` as JSON data: what JSON.stringify would make of its JavaScript look-alike,
    and ``repr`` for what has none. ``active``: containers being converted (cycles)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # like JSON.stringify(NaN)
    if id(value) in active:
        return "[Circular]"
    if isinstance(value, enum.Enum):
        return to_json(value.value, active)
    active.add(id(value))
    try:
        return container_to_json(value, active)
    finally:
        active.discard(id(value))


def container_to_json(value: object, active: set[int]) -> Any:
    fields = getattr(type(value), "__dataclass_fields__", None)
    if isinstance(fields, dict) and not isinstance(value, type):
        return {name: to_json(getattr(value, name, None), active) for name in fields}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a namedtuple
        return to_json(dict(value._asdict()), active)
    if isinstance(value, collections.abc.Mapping):
        return {json_key(k): to_json(v, active) for k, v in value.items()}
    if isinstance(value, collections.abc.Set):
        return [to_json(item, active) for item in sorted_if_possible(value)]
    if isinstance(value, collections.abc.Sequence | collections.abc.ValuesView) and not isinstance(
        value, bytes | bytearray
    ):
        return [to_json(item, active) for item in value]
    return scalar_to_json(value)


def scalar_to_json(value: object) -> Any:
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return value.isoformat() if not isinstance(value, datetime.timedelta) else str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, BaseException):
        return {"name": type(value).__name__, "message": safe_str(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ in ("decimal", "fractions", "uuid", "ipaddress"):
        return str(value)  # exact as text, as JSON has no such numbers
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def sorted_if_possible(items: collections.abc.Iterable[object]) -> list[object]:
    try:
        return sorted(items)  # type: ignore[type-var]
    except Exception:
        return list(items)


def json_key(key: object) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)  # what json.dumps does with such keys
    return safe_str(key.value if isinstance(key, enum.Enum) else key)


def safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def describe(exc: BaseException, filename: str) -> dict[str, str]:
    """The error of a failed execution: class name, ``str(exc)`` and a traceback of the
    user's frames only."""
    name = type(exc).__name__
    message = safe_str(exc)
    try:
        summary = traceback.TracebackException.from_exception(exc, compact=True)
        prune(summary, filename, set())
        stack = "".join(summary.format()).rstrip("\n")
    except Exception:
        stack = f"{name}: {message}"
    return {"name": name, "message": message, "stack": stack}


def prune(summary: traceback.TracebackException, filename: str, seen: set[int]) -> None:
    """Drop the runner's frames (and asyncio's, which ran the code) from a traceback and the
    tracebacks chained to it: they start at the user's first frame, without this file's
    frames or iris_prime's."""
    if id(summary) in seen:
        return
    seen.add(id(summary))
    frames = list(summary.stack)
    first = next((i for i, f in enumerate(frames) if f.filename == filename), len(frames))
    mine = RUNNER_DIR + os.sep
    kept = [f for f in frames[first:] if not f.filename.startswith(mine)]
    summary.stack = traceback.StackSummary.from_list(kept)
    for chained in (summary.__cause__, summary.__context__, *(summary.exceptions or ())):
        if chained is not None:
            prune(chained, filename, seen)


def report_thread_error(args: threading.ExceptHookArgs) -> None:
    """threading's default hook, but through the traceback module: it shows the lines of
    the user's code (held in linecache, as there is no file to read them from)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    lines = traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
    sys.stderr.write(f"Exception in thread {name}:\n" + "".join(lines))


def exit_code(exc: SystemExit, channel: Channel) -> int:
    """The status ``sys.exit(arg)`` means; a message is printed, as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)  # sys.exit(True) is 1
    channel.output("e", f"{code}\n")
    return 1


def run_atexit_callbacks() -> None:
    """The program's ``atexit`` callbacks (the runner leaves with os._exit, which skips them;
    Python prints a failing callback's error itself)."""
    atexit._run_exitfuncs()


def flush_open_files() -> None:
    """Flush files the program left open: the interpreter would at exit, os._exit does not,
    and the next execution in the sandbox may read them. Regular files only (a pipe to a
    child that does not read could block)."""
    for obj in gc.get_objects():
        if isinstance(obj, io.TextIOWrapper | io.BufferedWriter | io.BufferedRandom):
            try:
                if not obj.closed and stat.S_ISREG(os.fstat(obj.fileno()).st_mode):
                    obj.flush()
            except Exception:  # noqa: S112 - detached, closed meanwhile, disk full: best effort
                continue
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: S112 - the pipe is gone: nothing to keep
            continue


# -- one execution -------------------------------------------------------------------------


class Execution:
    """One request, from its arrival to the runner's exit."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.filename = "main.py"
        self.pid = os.getpid()
        #: Kept state: the namespace, event loop and request stream every execution shares.
        self.keep = False
        self.nonce: object = None
        self.namespace: dict[str, Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.requests: io.BufferedReader | None = None
        self.threads: set[threading.Thread] = set()
        self.module: types.ModuleType | None = None

    def start_keeping(self) -> None:
        """From now on this process serves one execution after another. Requests come on a
        descriptor of the runner's own: the code's stdin is empty, as in a fresh run."""
        self.keep = True
        self.requests = os.fdopen(os.dup(0), "rb")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.loop = asyncio.new_event_loop()
        self.threads = set(threading.enumerate())

    def prepare(self, request: dict[str, Any]) -> tuple[Program, dict[str, Any]]:
        """Everything before the user's code runs: place, limits, module, compiled code."""
        cwd = str(request.get("cwd") or os.getcwd())
        os.chdir(cwd)
        self.filename = str(request.get("filename") or "main.py")
        limit = request.get("outputLimit")
        self.channel.reset()
        if isinstance(limit, int | float) and not isinstance(limit, bool):
            self.channel.output_limit = int(limit)
        self.nonce = request.get("nonce")
        if self.keep:
            iris_prime._initialized = False  # once per execution, by the runner alone
        source = str(request.get("source") or "")
        context = request.get("context")
        session = request.get("sessionId")
        iris_prime._init_execution(
            project=str(request.get("projectId") or ""),
            session=session if isinstance(session, str) else None,
            execution_context=context if isinstance(context, dict) else {},
            tools=request.get("tools"),
        )
        if self.namespace is None or not self.keep:
            self.namespace = main_module(self.filename)
            self.module = sys.modules["__main__"]
        elif self.module is not None:  # the same module again (the code may have replaced it)
            sys.modules["__main__"] = self.module
        namespace = self.namespace
        # What compile_program's rewritten statements call.
        vars(builtins)["__iris_return__"] = TopLevelReturn
        vars(builtins)["__iris_import_star__"] = import_star(namespace)
        # Like `python main.py` run in cwd: the user's own modules first, then iris_prime's.
        sys.path[:] = [cwd, RUNNER_DIR, *(p for p in sys.path if p not in ("", cwd, RUNNER_DIR))]
        sys.argv = [self.filename]
        # Tracebacks and inspect read the code from here, never from a file of that name.
        linecache.cache[self.filename] = (len(source), None, source.splitlines(True), self.filename)
        return compile_program(source, self.filename), namespace

    def run(self, program: Program, namespace: dict[str, Any]) -> None:
        self.channel.send({"t": "start", "at": now_ms()})
        try:
            value = run_program(program, namespace, self.loop)
        except SystemExit as exc:
            ended = now_ms()
            frame = {"t": "exit", "code": exit_code(exc, self.channel)}
        except BaseException as exc:
            ended = now_ms()
            frame = self.error_frame(exc)
        else:
            ended = now_ms()  # the code's time ends here, not after the tools close
            frame = {"t": "result", "ok": True, "value": serialize(value)}
        self.finish(frame, ended)

    def quiesce(self) -> bool:
        """Stop what the execution left pending; False when threads it started still run
        (a thread cannot be stopped from outside: the host then starts a new runner)."""
        signal.alarm(0)
        for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
            signal.setitimer(timer, 0)
        idle = True
        loop = self.loop
        if loop is not None and not loop.is_closed() and not loop.is_running():
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                try:
                    _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=0.5))
                except BaseException:  # the code's tasks may raise anything
                    pending = {task for task in tasks if not task.done()}
                idle = not pending
            # Callbacks scheduled for later (call_later, call_soon) never run.
            for handle in [*getattr(loop, "_scheduled", ()), *getattr(loop, "_ready", ())]:
                handle.cancel()
        if loop is None or loop.is_closed():
            self.loop = asyncio.new_event_loop()
        threads = [t for t in threading.enumerate() if t not in self.threads and t.is_alive()]
        return idle and not threads

    def error_frame(self, exc: BaseException) -> dict[str, Any]:
        return {"t": "result", "ok": False, "error": describe(exc, self.filename)}

    def finish(self, frame: dict[str, Any], ended: float) -> None:
        """Close down (atexit callbacks, the tools, open files), report, and leave at once:
        threads and asyncio tasks the program left running do not hold the runner. A kept
        runner that has a result stops what the code left pending, reports and stays."""
        code = frame.get("code", 0 if frame.get("ok") else 1)
        if os.getpid() != self.pid:  # a forked copy of the program: the parent reports
            self.channel.flush()
            os._exit(code & 0xFF)
        if self.keep and frame.get("t") == "result":
            iris_prime._shutdown(CLOSE_GRACE_S)
            idle = self.quiesce()
            self.channel.flush()
            # A line of the code's own left open on fd 3 must not swallow the result.
            os.write(self.channel.fd, b"\n")
            self.channel.send({**frame, "at": ended, "nonce": self.nonce, "idle": idle})
            return
        run_atexit_callbacks()
        iris_prime._shutdown(CLOSE_GRACE_S)
        flush_open_files()
        self.channel.send({**frame, "at": ended})
        os._exit(code & 0xFF)


def main_module(filename: str) -> dict[str, Any]:
    """A fresh ``__main__`` module for the user's code (pickle and dataclasses look classes
    up in sys.modules['__main__']); its namespace."""
    module = types.ModuleType("__main__")
    module.__file__ = filename
    vars(module)["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module.__dict__


def read_request(stream: BinaryIO | io.BufferedReader) -> dict[str, Any] | None:
    """One request: a line, or everything up to the end (a fresh run's host closes stdin
    after it); None when there is none (the host is gone)."""
    line = stream.readline()
    if not line.strip():
        return None
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request


#: This module's own object, kept alive once sys.modules['__main__'] is the user's.
RUNNER_MODULE = sys.modules[__name__]


def main() -> NoReturn:
    channel = Channel(EVENTS_FD)
    # Child processes must not hold the event channel: the host reads its end as the end.
    os.set_inheritable(EVENTS_FD, False)
    sys.stdout = cast(TextIO, FrameStream(channel, "o", 1, "<stdout>"))
    sys.stderr = cast(TextIO, FrameStream(channel, "e", 2, "<stderr>"))
    # Started with -S there is no site module, hence no exit() and quit().
    vars(builtins).setdefault("exit", sys.exit)
    vars(builtins).setdefault("quit", sys.exit)
    threading.excepthook = report_thread_error
    os.register_at_fork(before=channel.flush, after_in_child=channel.after_fork_in_child)
    execution = Execution(channel)
    # Warm: everything above is imported and set up; only the request is missing.
    channel.send({"t": "ready"})
    stream: BinaryIO | io.BufferedReader = sys.stdin.buffer
    while True:
        try:
            request = read_request(stream)
            if request is None:
                os._exit(0)
            if request.get("keep") is True and not execution.keep:
                execution.start_keeping()
                assert execution.requests is not None
                stream = execution.requests
            program, namespace = execution.prepare(request)
        except BaseException as exc:
            execution.finish(execution.error_frame(exc), now_ms())
        else:
            execution.run(program, namespace)
        if not execution.keep:
            os._exit(0)  # finish() left already; never reached


if __name__ == "__main__":
    main()
