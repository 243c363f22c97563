"""Client of the long-lived compile service (``compiler.mjs``), itself run in a jail:
it only parses untrusted code, but a parser is attack surface too."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from iris_exec.adapters.local.runner import (
    ASSETS_MOUNT,
    SANDBOX_HOME,
    JailConfig,
    first_frame,
    spawn_jailed,
    start_failure,
)
from iris_exec.domain.errors import ProviderUnavailable
from iris_exec.domain.models import CodeError, Language

log = logging.getLogger(__name__)

#: Only a compile service that stopped answering altogether takes this long (a slow parse
#: is stopped by the service itself, at the compile deadline, as its caller's SyntaxError).
COMPILE_TIMEOUT_S = 30.0
START_TIMEOUT_S = 20.0
IRIS_PRIME_URL = f"file://{ASSETS_MOUNT}/iris-prime.mjs"
FILENAME = "main.ts"


@dataclass(frozen=True, slots=True)
class Compiled:
    code: str | None
    specifiers: dict[str, str]
    error: CodeError | None


class Compiler:
    """One Node process compiling for every sandbox; restarted if it dies or hangs.

    Parses run in its pool of ``workers`` threads, each stopped at ``deadline_s``; a project
    compiles one program at a time, so one project occupies at most one of them."""

    def __init__(self, cfg: JailConfig, *, workers: int = 2, deadline_s: float = 2.0) -> None:
        self._cfg = cfg
        self._workers = workers
        self._deadline_s = deadline_s
        #: Per project: its lock, and how many compiles hold or wait for it.
        self._per_project: dict[str, tuple[asyncio.Lock, int]] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                await self._spawn()

    async def _spawn(self) -> None:
        # fd 3 is unused by the compiler; give it /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            env = {
                "PATH": "/usr/bin:/bin",
                "ESBUILD_BINARY_PATH": f"{ASSETS_MOUNT}/esbuild",
                "IRIS_COMPILE_WORKERS": str(self._workers),
                "IRIS_COMPILE_DEADLINE_MS": str(round(self._deadline_s * 1000)),
            }
            # No memory reducer: between requests a second apart, V8 otherwise ran a full
            # collection of every parser thread's heap each time (a compile then cost 6-10 ms
            # of CPU instead of 2-3); heaps are still collected as they fill.
            proc = await spawn_jailed(
                self._cfg,
                [self._cfg.node, "--no-memory-reducer", f"{ASSETS_MOUNT}/compiler.mjs"],
                files_dir=None,
                tools_dir=None,
                env=env,
                group=None,
                events_fd=devnull,
            )
        finally:
            os.close(devnull)
        assert proc.stdout is not None
        if (await first_frame(proc.stdout, START_TIMEOUT_S)).get("ready") is not True:
            why = await start_failure(proc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)  # not proc.kill(): it reaps (Runner.destroy)
            raise ProviderUnavailable(f"the code compiler failed to start: {why}")
        self._proc = proc
        self._reader_task = asyncio.create_task(self._read(proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        reader: asyncio.StreamReader = proc.stdout
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                break
            if not line:
                break
            with contextlib.suppress(ValueError):
                answer = json.loads(line)
                future = self._pending.pop(answer.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(answer)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProviderUnavailable("the code compiler stopped"))
        self._pending.clear()

    async def compile(self, source: str, language: Language, project_id: str = "") -> Compiled:
        """A fresh runner's module (a kept runner compiles for itself: runner.ts)."""
        lock, users = self._per_project.get(project_id, (asyncio.Lock(), 0))
        self._per_project[project_id] = (lock, users + 1)
        try:
            async with lock:
                return await self._compile(source, language)
        finally:
            lock, users = self._per_project[project_id]
            if users == 1:
                del self._per_project[project_id]
            else:
                self._per_project[project_id] = (lock, users - 1)

    async def _compile(self, source: str, language: Language) -> Compiled:
        await self.start()
        assert self._proc is not None and self._proc.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = {
            "id": request_id,
            "source": source,
            "language": language,
            "cwd": SANDBOX_HOME,
            "irisPrimeUrl": IRIS_PRIME_URL,
            "filename": FILENAME if language == "typescript" else "main.js",
        }
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        try:
            await self._proc.stdin.drain()
            answer = await asyncio.wait_for(future, COMPILE_TIMEOUT_S)
        except TimeoutError:
            self._pending.pop(request_id, None)
            log.warning("compiler did not answer in %.0f s; restarting it", COMPILE_TIMEOUT_S)
            await self._restart()
            return Compiled(
                None,
                {},
                CodeError(
                    "SyntaxError", f"The code could not be compiled in {COMPILE_TIMEOUT_S:.0f} s"
                ),
            )
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._pending.pop(request_id, None)
            await self._restart()
            raise ProviderUnavailable("the code compiler stopped; retry") from exc
        if answer.get("ok"):
            return Compiled(answer["code"], dict(answer.get("specifiers") or {}), None)
        if "fatal" in answer:
            log.error("compiler failure: %s", answer["fatal"])
            raise ProviderUnavailable("the code compiler failed on this input", retry_after_s=1)
        err = answer.get("error") or {}
        return Compiled(
            None,
            {},
            CodeError(
                str(err.get("name", "SyntaxError")), str(err.get("message", "")), err.get("stack")
            ),
        )

    async def _restart(self) -> None:
        async with self._lock:
            await self._stop()
            await self._spawn()

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader_task, 1.0)

    async def close(self) -> None:
        async with self._lock:
            await self._stop()
