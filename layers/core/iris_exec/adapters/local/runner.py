"""Runners: the processes that run code, each in a bubblewrap jail (the sandbox itself,
its files and tool socket, is ``provider.Jail``).

A *runner* is one jail (own user, pid, mount, ipc, uts, cgroup and network
namespaces) with one fresh Node process that has loaded the runner asset and
waits for its request. It runs one execution and dies with it, or, kept (keepState),
waits stopped for the sandbox's next one. The
sandbox's files live in a host directory (a size-capped tmpfs when we are root)
that every runner of that sandbox mounts as ``/home/user`` and ``/tmp``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_exec.adapters.frames import Collector, Report
from iris_exec.adapters.local.cgroups import CgroupGroup, Cgroups, Limits
from iris_exec.domain.errors import ProviderUnavailable
from iris_exec.domain.models import OutputChunk, Stream

log = logging.getLogger(__name__)

SANDBOX_HOME = "/home/user"
ASSETS_MOUNT = "/opt/iris"
TOOLS_MOUNT = "/run/iris"
EXEC_DIR = "/run/iris-exec"
JAIL_TMP = "/tmp"  # noqa: S108 - the jail's own /tmp, not the host's
JAIL_UID = 1000
READY_TIMEOUT_S = 20.0
EXIT_GRACE_S = 1.0
READ_CHUNK = 64 * 1024

# Moves the launcher into its cgroups before bubblewrap forks anything, then puts
# the event pipe at fd 3, a copy of the request pipe (stdin) at fd 4, and replaces itself
# with bubblewrap. (bash, not dash: dash cannot redirect file descriptors above 9.) A kept
# Node runner reads its requests from fd 4 and gives the code /dev/null as stdin (Node
# cannot dup a descriptor; Python's runner dups its own).
BASH = "/bin/bash"
SETPRIV = "/usr/bin/setpriv"
LAUNCHER = r"""
fd=$1; shift
while [ "$1" != "--" ]; do printf '%s\n' "$$" > "$1" || exit 97; shift; done; shift
ulimit -c 0
if [ -n "$IRIS_DATA_KB" ]; then ulimit -d "$IRIS_DATA_KB"; fi
if [ -n "$IRIS_FSIZE_KB" ]; then ulimit -f "$IRIS_FSIZE_KB"; fi
if [ -n "$IRIS_NPROC" ]; then ulimit -u "$IRIS_NPROC" 2>/dev/null || ulimit -p "$IRIS_NPROC"; fi
# Nothing of this launcher's environment (PWD, the limits above) reaches the jail.
eval "exec /usr/bin/env -i \"\$@\" 3>&$fd 4<&0 $fd>&-"
"""

ETC_FILES = {
    "passwd": f"user:x:{JAIL_UID}:{JAIL_UID}:sandbox:{SANDBOX_HOME}:/bin/sh\n",
    "group": f"user:x:{JAIL_UID}:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
}


@dataclass(frozen=True, slots=True)
class JailConfig:
    """Everything needed to start a jail, decided once at provider start."""

    bwrap: str
    node: str
    #: The Python 3.11+ interpreter of `"language": "python"` (None: not available here).
    python: str | None
    assets_dir: Path
    etc_dir: Path
    limits: Limits
    disk_bytes: int
    #: Host uid/gid the jail runs as (None: the server's own, when not root).
    host_uid: int | None
    host_gid: int | None
    disable_userns: bool
    #: rlimits used when no cgroup is available.
    rlimit_fallback: bool
    extra_ro_binds: tuple[str, ...] = ()
    #: The seccomp program bubblewrap installs (see seccomp.py); None: none.
    seccomp: Path | None = None


#: Where libuv looks for the memory limit of a process in its own cgroup namespace, on
#: cgroup v1 (limit, soft limit) and v2 (max, high): Node sizes V8's heap from it.
NODE_MEMORY_FILES = (
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory.high",
)
#: The file (in the runtime's etc directory) bound at each of them.
NODE_MEMORY = "node-memory"
#: The heaps V8 sizes from memory as wanted (its floor is 256 MiB of old space, its cap
#: 2 GiB below 16 GiB of memory); outside them, the flag it is.
NODE_SIZED_HEAP_MB = (256, 2000)


def write_etc(etc_dir: Path, limits: Limits) -> None:
    etc_dir.mkdir(parents=True, exist_ok=True)
    for name, text in {**ETC_FILES, NODE_MEMORY: f"{node_memory_bytes(limits)}\n"}.items():
        (etc_dir / name).write_text(text)
        (etc_dir / name).chmod(0o644)


def bwrap_command(
    cfg: JailConfig,
    argv: Sequence[str],
    *,
    files_dir: Path | None,
    tools_dir: Path | None,
    env: dict[str, str],
    seccomp_fd: int | None = None,
) -> list[str]:
    """The bubblewrap command line for one jail running ``argv``."""
    cmd = [cfg.bwrap, "--unshare-all", "--unshare-user"]
    if cfg.disable_userns:
        cmd.append("--disable-userns")
    cmd += [
        "--die-with-parent",
        "--new-session",
        "--uid", str(JAIL_UID),
        "--gid", str(JAIL_UID),
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
    ]  # fmt: skip
    for path in cfg.extra_ro_binds:
        cmd += ["--ro-bind", path, path]
    for name in ETC_FILES:
        cmd += ["--ro-bind", str(cfg.etc_dir / name), f"/etc/{name}"]
    for target in NODE_MEMORY_FILES:
        cmd += ["--ro-bind", str(cfg.etc_dir / NODE_MEMORY), target]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    if files_dir is not None:
        cmd += ["--bind", str(files_dir / "home"), SANDBOX_HOME]
        cmd += ["--bind", str(files_dir / "tmp"), JAIL_TMP]
    else:
        cmd += ["--size", str(cfg.disk_bytes), "--tmpfs", JAIL_TMP]
    cmd += ["--ro-bind", str(cfg.assets_dir), ASSETS_MOUNT]
    if tools_dir is not None:
        cmd += ["--ro-bind", str(tools_dir), TOOLS_MOUNT]
    cmd += ["--size", str(16 * 1024 * 1024), "--tmpfs", EXEC_DIR]
    cmd += ["--remount-ro", "/"]
    cmd += ["--chdir", SANDBOX_HOME if files_dir is not None else JAIL_TMP]
    cmd += ["--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    cmd += ["--cap-drop", "ALL", "--", *argv]
    return cmd


def jail_env() -> dict[str, str]:
    return {
        "HOME": SANDBOX_HOME,
        "USER": "user",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }


async def spawn_jailed(
    cfg: JailConfig,
    argv: Sequence[str],
    *,
    files_dir: Path | None,
    tools_dir: Path | None,
    env: dict[str, str],
    group: CgroupGroup | None,
    events_fd: int,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new jail; ``events_fd`` becomes fd 3 inside."""
    launcher_env = {"PATH": "/usr/bin:/bin"}
    if cfg.rlimit_fallback:
        launcher_env["IRIS_DATA_KB"] = str(cfg.limits.memory_bytes // 1024)
        launcher_env["IRIS_NPROC"] = str(cfg.limits.max_processes)
        if files_dir is None or not _is_mountpoint(files_dir):
            launcher_env["IRIS_FSIZE_KB"] = str(cfg.disk_bytes // 1024)
    procs = [str(p) for p in group.procs_files] if group else []
    seccomp_fd = None
    if cfg.seccomp is not None:
        # bubblewrap reads the program from this descriptor (above 9: the launcher moves
        # the event pipe to fd 3).
        opened = os.open(cfg.seccomp, os.O_RDONLY | os.O_CLOEXEC)
        seccomp_fd = fcntl.fcntl(opened, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(opened)
    cmd = bwrap_command(
        cfg, argv, files_dir=files_dir, tools_dir=tools_dir, env=env, seccomp_fd=seccomp_fd
    )
    # If the server dies (even by SIGKILL), its jails die with it: bubblewrap gets SIGKILL,
    # and the jail's pid namespace with it. Nothing runs on, orphaned.
    privileges = ["--pdeathsig", "SIGKILL", "--no-new-privs"]
    if cfg.host_uid is not None:
        # Root starts the launcher (to join the cgroups), the jail runs as an unprivileged uid.
        privileges += [f"--reuid={cfg.host_uid}", f"--regid={cfg.host_gid}", "--clear-groups"]
    cmd = [SETPRIV, *privileges, "--", *cmd]
    launcher = [BASH, "--noprofile", "--norc", "-c", LAUNCHER, "iris-jail", str(events_fd)]
    try:
        return await asyncio.create_subprocess_exec(
            *launcher, *procs, "--", *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(events_fd,) if seccomp_fd is None else (events_fd, seccomp_fd),
            env=launcher_env,
            cwd="/",  # not the server's directory: nothing of it shows in the jail's /proc
            start_new_session=True,
            close_fds=True,
            limit=2**24,
        )  # fmt: skip
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)


def runner_argv(cfg: JailConfig, python: bool) -> list[str]:
    if python:
        if cfg.python is None:
            raise ProviderUnavailable("Python 3.11+ is not installed on this server")
        # -I: no environment variables, user site or script directory on the module path.
        return [cfg.python, "-I", f"{ASSETS_MOUNT}/python/runner.py"]
    heap_mb = node_heap_mb(cfg.limits)
    # A heap this size comes from the memory the jail tells Node it has (node_memory_bytes):
    # the --max-old-space-size flag would change V8's flag hash, and Node then compiles its
    # own modules afresh instead of from their embedded code cache (~10 ms of CPU a start).
    low, high = NODE_SIZED_HEAP_MB
    flag = [] if low <= heap_mb <= high else [f"--max-old-space-size={heap_mb}"]
    return [cfg.node, "--enable-source-maps", *flag, f"{ASSETS_MOUNT}/runner.mjs"]


def node_heap_mb(limits: Limits) -> int:
    """V8's old-space limit for a jail's Node: 3/4 of its memory (the rest for buffers, code
    and the young generation), so the heap gives out before the cgroup kills."""
    return max(32, limits.memory_bytes * 3 // 4 // (1024 * 1024))


def node_memory_bytes(limits: Limits) -> int:
    """The memory a jail's Node is told it has, for V8 to size its heap from: V8 gives the
    old space a quarter of it times its heap multiplier, 2 on 64-bit Node (Heap::
    HeapSizeFromPhysicalMemory), so twice the heap wanted. Read by libuv's
    uv_get_constrained_memory from NODE_MEMORY_FILES; the code sees that figure there too
    (docs/limits.md); a test checks the heap it gives."""
    return 2 * node_heap_mb(limits) * 1024 * 1024


async def first_frame(stream: asyncio.StreamReader, timeout_s: float) -> dict[str, Any]:
    """The first line a starting process writes, as a JSON object; {} for anything else
    (nothing in time, noise, a value that is not an object)."""
    try:
        line = await asyncio.wait_for(stream.readline(), timeout_s)
        frame = json.loads(line) if line else None
    except (TimeoutError, ValueError):
        return {}
    return frame if isinstance(frame, dict) else {}


async def start_failure(proc: asyncio.subprocess.Process) -> str:
    """Why a process did not start: the head of what it wrote to stderr."""
    err = b""
    if proc.stderr is not None:
        with contextlib.suppress(TimeoutError):
            err = await asyncio.wait_for(proc.stderr.read(4096), 1.0)
    return err.decode("utf-8", "replace").strip() or "no ready signal"


def _is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


async def open_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24, loop=loop)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0)
    )
    return reader


#: Teardowns of finished runners, kept referenced until done.
_BACKGROUND: set[asyncio.Task[None]] = set()


async def wait_for_teardowns() -> None:
    """Wait until every finished runner has been torn down (used at shutdown)."""
    while _BACKGROUND:
        await asyncio.gather(*list(_BACKGROUND), return_exceptions=True)


class Runner:
    """A warm Node process in its own jail, waiting for one request."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        events: asyncio.StreamReader,
        group: CgroupGroup | None,
    ) -> None:
        self.proc = proc
        self.events = events
        self.group = group
        #: The teardown that runs after an answer was given (see ``gone``).
        self.finished: asyncio.Task[None] | None = None
        #: Kept state: the processes of the runner itself (bubblewrap's and the runner's),
        #: which live on between executions; everything else in the group is the code's.
        self.own_pids: set[int] = set()
        #: A kept runner is stopped (SIGSTOP) between executions.
        self.paused = False
        #: A kept runner said it could not stop everything its last execution started.
        self.busy = False
        #: A kept runner is being paused, off the answer's path (see _pause).
        self.pausing: asyncio.Task[bool] | None = None

    @classmethod
    async def spawn(
        cls,
        cfg: JailConfig,
        cgroups: Cgroups,
        name: str,
        *,
        files_dir: Path,
        tools_dir: Path | None,
        python: bool = False,
    ) -> Runner:
        """A runner in a new jail: Node's (TypeScript and JavaScript), or Python's."""
        group = cgroups.create(name, cfg.limits)
        read_fd, write_fd = os.pipe()
        proc: asyncio.subprocess.Process | None = None
        try:
            argv = runner_argv(cfg, python)
            proc = await spawn_jailed(
                cfg, argv, files_dir=files_dir, tools_dir=tools_dir, env=jail_env(),
                group=group, events_fd=write_fd,
            )  # fmt: skip
            os.close(write_fd)
            write_fd = -1
            events = await open_reader(read_fd)
            read_fd = -1
            runner = cls(proc, events, group)
            if (await first_frame(events, READY_TIMEOUT_S)).get("t") != "ready":
                why = await start_failure(proc)
                await runner.destroy()
                raise ProviderUnavailable(
                    f"a sandbox process failed to start: {why}",
                    retry_after_s=2,
                )
            if group is not None:
                runner.own_pids = set(await asyncio.to_thread(group.pids))
            return runner
        except BaseException:
            if write_fd >= 0:
                os.close(write_fd)
            if read_fd >= 0:
                os.close(read_fd)
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # see destroy()
            if group is not None:
                await asyncio.to_thread(_kill_and_remove, group)
            raise

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def execute(
        self,
        request: dict[str, Any],
        timeout_s: float,
        output_limit: int,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> Report:
        """Run one request. With ``"keep": true`` in it (and a nonce), a runner that answers
        stays: ``report.kept`` says so, and it is paused until its next ``execute``."""
        keep = bool(request.get("keep"))
        # The group's OOM kills before this execution (a kept runner's earlier ones are not
        # this execution's), and the descriptor its peak memory is read from at the end.
        oom_before = 0
        if keep and self.paused:
            assert self.group is not None
            self.group.resume(self.own_pids)  # two signals: not worth a thread
            self.paused = False
            oom_before = self.group.oom_kills()
        peak = self.group.start_peak() if self.group is not None else None
        collector = Collector(
            output_limit, on_output=on_output, nonce=request.get("nonce") if keep else None
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.stderr is not None
        readers = [
            asyncio.create_task(self._read_events(collector)),
            asyncio.create_task(_read_raw(self.proc.stdout, "stdout", collector)),
            asyncio.create_task(_read_raw(self.proc.stderr, "stderr", collector)),
        ]
        exited = asyncio.create_task(self.proc.wait())
        began = time.monotonic()
        try:
            # One request per line for a kept runner (stdin stays open for the next one).
            self.proc.stdin.write(json.dumps(request).encode() + (b"\n" if keep else b""))
            # Under the time limit too: a kept runner whose reading an earlier execution's
            # code stopped never takes a request larger than the pipe holds.
            await asyncio.wait_for(self.proc.stdin.drain(), timeout_s)
            if not keep:
                self.proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            collector.report.timed_out = True
        except asyncio.CancelledError:
            _forget(peak)
            await asyncio.shield(self.destroy())  # see below
            raise
        try:
            if not collector.report.timed_out:
                left = max(0.0, began + timeout_s - time.monotonic())
                await asyncio.wait_for(collector.done.wait(), left)
        except TimeoutError:
            collector.report.timed_out = True
        except asyncio.CancelledError:
            # Nobody waits for this execution any more: its processes must not run on.
            _forget(peak)
            await asyncio.shield(self.destroy())
            raise
        report = collector.report
        if report.ended_at is None:
            report.ended_at = time.monotonic()
        if report.started_at is None:
            report.started_at = min(began, report.ended_at)
        if (
            keep
            and report.result is not None
            and not report.timed_out
            and not report.output_exceeded
        ):
            # Output written before the result frame is already in the pipes: take it, stop
            # reading, answer, and pause the runner off the answer's path.
            for _ in range(3):
                await asyncio.sleep(0)
            collector.stopped = True
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            report.memory_peak = _peak(peak)
            report.kept = True
            self.busy = report.result.get("idle") is False
            self.pausing = asyncio.create_task(self._pause(exited))
            return report
        if report.result is not None and not report.timed_out and not report.output_exceeded:
            # Output written before the result frame is already in the pipes: let the
            # readers take it, answer, and tear the jail down off the request's path.
            for _ in range(3):
                await asyncio.sleep(0)
            collector.stopped = True
            report.memory_peak = _peak(peak)
            task = asyncio.create_task(self._teardown(exited, readers))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
            self.finished = task
            return report
        collector.stopped = collector.stopped or report.timed_out
        await self.destroy()
        await exited
        report.returncode = self.proc.returncode
        # Output still in the pipes when the process tree died is kept (up to the cap).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 2.0)
        for task in readers:
            task.cancel()
        report.memory_peak = _peak(peak)
        if self.group is not None:
            report.oom_kills = self.group.oom_kills() - oom_before
            await asyncio.to_thread(self.group.remove)
        return report

    async def _pause(self, exited: asyncio.Task[int]) -> bool:
        """A kept runner answered: stop it and kill every other process of its group (what
        the code started). False when that could not be done (the runner is then not used
        again: see ready)."""
        if self.group is None or not self.alive:
            return False
        if not await asyncio.to_thread(self.group.pause, self.own_pids, self.proc.pid):
            # What the code started outran the kills (a fork bomb): nothing of it may run
            # on until the next execution, so the runner goes with it, now.
            self.busy = True
            await self.destroy()
            await asyncio.to_thread(self.group.kill_all)
            return False
        self.paused = True
        exited.cancel()
        return self.alive

    async def ready(self) -> bool:
        """Whether this kept runner is alive, paused with nothing of its last execution left,
        and said it stopped everything that execution started."""
        paused = True
        if self.pausing is not None:
            try:
                paused = await asyncio.shield(self.pausing)
            except Exception:
                paused = False
            self.pausing = None
        return paused and self.alive and not self.busy

    async def close(self) -> None:
        """Kill the runner and remove its group: a kept runner, which no execution ends, or
        a warm one that will run nothing (an execution removes its own group once it has
        read its figures)."""
        if self.pausing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.pausing)
            self.pausing = None
        await self.destroy()
        if self.group is not None:
            await asyncio.to_thread(self.group.remove)

    async def gone(self) -> None:
        """Return once every process of this runner is gone. A result frame can be forged
        by the code itself, which then runs on: nothing else may use the sandbox (its
        files, its tool socket) until then."""
        if self.finished is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.finished)
        if self.alive or (self.group is not None and self.group.pids()):
            await self.destroy()

    async def _teardown(self, exited: asyncio.Task[int], readers: list[asyncio.Task[None]]) -> None:
        # The runner exits by itself right after its result; give it a moment, then make sure.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), EXIT_GRACE_S)
        await self.destroy()
        await exited
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 2.0)
        for task in readers:
            task.cancel()
        if self.group is not None:
            await asyncio.to_thread(self.group.remove)

    async def _read_events(self, collector: Collector) -> None:
        # A line's pieces wait in a list until its newline comes: a long line is not
        # copied once per read.
        pieces: list[bytes] = []
        pending = 0
        # One frame can be as large as the output cap (plus JSON escaping); not more.
        max_line = collector.limit * 7 + 65536
        while True:
            data = await self.events.read(READ_CHUNK)
            if not data:
                # Every holder of fd 3 is gone: the process tree has ended.
                collector.done.set()
                return
            pieces.append(data)
            if b"\n" in data:
                *lines, rest = b"".join(pieces).split(b"\n")
                pieces, pending = [rest], len(rest)
                collector.lines(lines)
            else:
                pending += len(data)
            if pending > max_line:
                collector.report.output_exceeded = True
                collector.stopped = True
                collector.done.set()
                return

    async def destroy(self) -> None:
        """Kill the whole process tree: the jail's pid namespace dies with bubblewrap."""
        ended = self.proc.returncode is not None
        if not ended:
            # The launcher leads its own process group, so this kills it too. Not
            # ``self.proc.kill()``: Popen polls (and so reaps) before it signals, and the
            # event loop's child watcher then warns "exit status already read".
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        # A runner that ended by itself has usually left nothing: no thread for nothing.
        if self.group is not None and (not ended or self.group.pids()):
            await asyncio.to_thread(self.group.kill_all)
        with contextlib.suppress(ProcessLookupError):
            await self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()


def _peak(fd: int | None) -> int | None:
    return None if fd is None else CgroupGroup.memory_peak(fd)


def _forget(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _kill_and_remove(group: CgroupGroup) -> None:
    group.kill_all()
    group.remove()


async def _read_raw(stream: asyncio.StreamReader, name: Stream, collector: Collector) -> None:
    """Output written straight to fd 1/2 (child processes, fs.writeSync) arrives here."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        data = await stream.read(READ_CHUNK)
        if not data:
            collector.add(name, decoder.decode(b"", final=True))
            return
        collector.add(name, decoder.decode(data))
