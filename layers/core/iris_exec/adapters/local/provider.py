"""The local SandboxProvider: each sandbox is a set of files on a size-capped tmpfs plus
a warm jailed Node runner; each execution consumes one runner, and the next one starts
while the current execution runs, so a reused sandbox pays no Node start on its request."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from iris_exec.adapters.frames import Report, lost_because, outcome
from iris_exec.adapters.local import seccomp
from iris_exec.adapters.local.cgroups import Cgroups, Limits
from iris_exec.adapters.local.compiler import FILENAME, Compiler
from iris_exec.adapters.local.runner import (
    EXEC_DIR,
    SANDBOX_HOME,
    TOOLS_MOUNT,
    JailConfig,
    Runner,
    wait_for_teardowns,
    write_etc,
)
from iris_exec.domain.errors import BadRequest, ConfigurationError, ProviderUnavailable, SandboxLost
from iris_exec.domain.models import (
    CodeError,
    CreatedSandbox,
    ExecutionJob,
    ProviderSandbox,
    RunOutcome,
)
from iris_exec.domain.ports import ToolSocket, ToolSockets
from iris_exec.settings import Settings

log = logging.getLogger(__name__)

TOOLS_SOCKET_NAME = "tools.sock"
#: The jail reaches the tools through the bound socket, with a token on stdin.
TOOL_CHANNEL = "unix-socket"
JAIL_TOOLS_SOCKET = f"{TOOLS_MOUNT}/{TOOLS_SOCKET_NAME}"
REQUIRED_ASSETS = (
    "python/runner.py",
    "python/iris_prime.py",
    "runner.mjs",
    "compiler.mjs",
    "compile.mjs",
    "iris-prime.mjs",
    "iris-mcp.mjs",
    "esbuild",
)


#: Built into the assets directory but never staged into jails.
WEB_ASSETS = ("console", "docs")


def default_assets_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "assets"


INSTANCE_LOCK = "instance.lock"
#: A runtime directory without a lock file is only taken for stale after this long.
ORPHAN_MIN_AGE_S = 600


#: The oldest Python the runner supports.
PYTHON_MIN = (3, 11)


def find_python(configured: str | None) -> str | None:
    """The interpreter of Python executions: the configured one, else the system's
    (/usr/bin/python3, not a pyenv shim); None when there is none new enough."""
    candidates = [configured] if configured else ["/usr/bin/python3", shutil.which("python3")]
    for candidate in candidates:
        if not candidate or not os.path.exists(candidate):
            continue
        path = os.path.realpath(candidate)
        done = _run([path, "-I", "-c", "import sys; print(*sys.version_info[:2])"])
        if done.returncode == 0 and tuple(map(int, done.stdout.split())) >= PYTHON_MIN:
            return path
    # Only Python is missing then: the server starts, and Python executions are a 503.
    where = f"IRIS_PYTHON_PATH={configured} is not" if configured else "no"
    log.warning("%s Python 3.11+: executions with language 'python' will be refused", where)
    return None


#: mount(2) and umount2(2) themselves: a sandbox's tmpfs costs no mount(8) process.
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_LIBC.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2


def _mount_tmpfs(target: Path, options: str) -> None:
    """`mount -t tmpfs -o nosuid,nodev,<options> iris-sandbox <target>`."""
    flags = MS_NOSUID | MS_NODEV
    if _LIBC.mount(b"iris-sandbox", os.fsencode(target), b"tmpfs", flags, options.encode()):
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), str(target))


def _unmount(target: Path | str) -> None:
    """`umount <target>`, else `umount -l` (lazily, once nothing uses it any more)."""
    path = os.fsencode(target)
    if _LIBC.umount2(path, 0):
        _LIBC.umount2(path, MNT_DETACH)


def _unmount_under(directory: Path) -> None:
    """Unmount everything mounted below ``directory`` (deepest first)."""
    prefix = str(directory) + "/"
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        _unmount(point)


@functools.cache
def _host_memory() -> int:
    """The host's RAM in bytes (MemTotal): read once, not at each admission."""
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)


class Jail:
    """One sandbox's files and its next runner."""

    def __init__(self, provider: LocalSandboxProvider, jail_id: str) -> None:
        self.provider = provider
        self.jail_id = jail_id
        self.dir = provider.root / jail_id
        self.files = self.dir / "fs"
        #: Bound read-only into the jail: holds this sandbox's own tool socket.
        self.tools_dir = self.dir / "tools"
        self.tools: ToolSocket | None = None
        self.lock = asyncio.Lock()
        #: Which sandbox of which project this jail is (None while it waits in the pool).
        self.owner: tuple[str, str] | None = None
        self.dead: str | None = None
        self.current: Runner | None = None
        #: The runner of the last execution, until every process of it is gone.
        self.last: Runner | None = None
        self._next: asyncio.Future[Runner] | None = None
        self._next_python = False
        self._seq = 0
        #: Kept state: the sandbox's live runner of each language, paused between executions.
        self.kept: dict[str, Runner] = {}
        #: Why a language's kept runner was lost, told by its next keepState execution.
        self.state_lost: dict[str, str] = {}

    async def prepare(self) -> None:
        await asyncio.to_thread(self._make_dirs)
        if self.provider.tool_sockets is not None:
            self.tools = await self.provider.tool_sockets.open(
                self.jail_id, self.tools_dir / TOOLS_SOCKET_NAME
            )
        self.prepare_next()

    def _make_dirs(self) -> None:
        cfg = self.provider.cfg
        self.dir.mkdir(mode=0o711)
        self.files.mkdir(mode=0o711)
        self.tools_dir.mkdir()
        self.tools_dir.chmod(0o755)
        if self.provider.can_mount:
            opts = f"size={cfg.disk_bytes},mode=0711"
            if cfg.host_uid is not None:
                opts += f",uid={cfg.host_uid},gid={cfg.host_gid}"
            try:
                _mount_tmpfs(self.files, opts)
            except OSError as exc:
                raise ProviderUnavailable(f"cannot mount the sandbox's tmpfs: {exc}") from exc
        for name, mode in (("home", 0o755), ("tmp", 0o1777)):
            path = self.files / name
            path.mkdir()
            path.chmod(mode)
            if cfg.host_uid is not None:
                os.chown(path, cfg.host_uid, cfg.host_gid or cfg.host_uid)

    def prepare_next(self, python: bool = False) -> None:
        """Start the runner of the next execution now: for the language this sandbox ran
        last (a sandbox tends to be reused with one language). Not while the host is busy
        starting runners: one started ahead then only competes with those executions need
        now, and is wasted if the sandbox closes first (its next execution starts its own)."""
        if self._next is None and self.dead is None and not self.provider.busy_starting:
            self._next = asyncio.create_task(self._spawn(python))
            self._next_python = python

    async def _spawn(self, python: bool = False) -> Runner:
        self._seq += 1
        self.provider.starting += 1
        try:
            return await Runner.spawn(
                self.provider.cfg,
                self.provider.cgroups,
                f"{self.jail_id}-{self._seq}",
                files_dir=self.files,
                tools_dir=self.tools_dir,
                python=python,
            )
        finally:
            self.provider.starting -= 1

    async def take_runner(self, python: bool = False) -> Runner:
        task, self._next = self._next, None
        runner: Runner | None = None
        if task is not None and self._next_python != python:
            # A warm runner of the other language: not the one wanted this time.
            with contextlib.suppress(Exception):
                await (await task).close()
            task = None
        if task is not None:
            try:
                runner = await task
            except ProviderUnavailable as exc:
                log.warning(
                    "warm runner of %s failed to start (%s); starting another", self.jail_id, exc
                )
        if runner is not None and not runner.alive:
            await runner.close()  # died while it waited: its cgroup goes with it
            runner = None
        if runner is None:
            runner = await self._spawn(python)
        return runner

    async def put_back(self, runner: Runner) -> None:
        """A runner taken but not used (the code did not compile) becomes the next one."""
        if self._next is None and self.dead is None and runner.alive:
            future: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
            future.set_result(runner)
            self._next = asyncio.ensure_future(future)
            self._next_python = False
        else:
            await runner.close()

    def closed(self) -> bool:
        """Whether destroy has begun (a call, not ``dead`` read directly: it changes across
        every await, which a type checker's narrowing does not know)."""
        return self.dead is not None

    async def destroy(self, reason: str) -> None:
        """Stop everything now (a running execution included), then remove the files."""
        if self.dead is None:
            self.dead = reason
        if self.current is not None:
            await self.current.destroy()
        if self.last is not None:
            await self.last.gone()
        kept, self.kept = list(self.kept.values()), {}
        for one in kept:
            await one.close()
        task, self._next = self._next, None
        if task is not None:
            try:
                runner = await task
            except BaseException:
                runner = None
            if runner is not None:
                await runner.close()
        if self.tools is not None:
            await self.tools.aclose()
        async with self.lock:  # the execution that was running has finished reading
            await asyncio.to_thread(self._remove_files)

    def _remove_files(self) -> None:
        if os.path.ismount(self.files):
            _unmount(self.files)
        shutil.rmtree(self.dir, ignore_errors=True)


class LocalSandboxProvider:
    """Sandboxes as bubblewrap jails on this machine. Refuses to start without bubblewrap."""

    name = "local"
    #: Runs keepState executions in a runner kept per sandbox and language.
    keeps_state = True

    def __init__(self, settings: Settings, *, assets_dir: Path | None = None) -> None:
        self.settings = settings
        self.assets_dir = (assets_dir or default_assets_dir()).resolve()
        self.instance = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
        # Runtime state of the jails. As root, the jails run as another uid that must reach
        # these paths, and a data directory under /root or /tmp/pytest-of-root would not be
        # reachable: so it lives under /run, one directory per data directory.
        if os.geteuid() == 0:
            self.runtime = Path("/run/iris-exec") / self.instance
        else:
            self.runtime = settings.data_dir.resolve() / "run"
        self.root = self.runtime / "jails"
        #: Opens each sandbox's tool socket (set by the local server before start).
        self.tool_sockets: ToolSockets | None = None
        self._jails: dict[str, Jail] = {}
        self._pool: list[Jail] = []
        self._pool_tasks: set[asyncio.Task[None]] = set()
        #: Executions running now, by project (memory is reserved for them; see _admit).
        self._running: dict[str, int] = {}
        self._memory_freed = asyncio.Event()
        #: Runners starting now; from one per core on, none is started ahead of its need.
        self.starting = 0
        self._cores = len(os.sched_getaffinity(0))
        self._started = False
        self._instance_lock = -1
        self.isolation = "not started"

    @property
    def busy_starting(self) -> bool:
        return self.starting >= self._cores

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.cfg, self.cgroups, self.can_mount = await asyncio.to_thread(self._detect)
        removed = await asyncio.to_thread(self._sweep)
        if removed:
            log.warning("swept %d stale jail(s) left by an earlier server", removed)
        self.compiler = Compiler(
            self.cfg,
            workers=self.settings.compile_workers,
            deadline_s=self.settings.compile_deadline_s,
        )
        try:
            await self.compiler.start()
        except ProviderUnavailable as exc:
            raise ConfigurationError(
                f"bubblewrap could not start a jail here: {exc}. Unprivileged user namespaces "
                "must be enabled (sysctl kernel.unprivileged_userns_clone=1)."
            ) from exc
        self._started = True
        self._refill_pool()
        log.info("local sandboxes ready: %s", self.isolation)

    def _detect(self) -> tuple[JailConfig, Cgroups, bool]:
        if not sys.platform.startswith("linux"):
            raise ConfigurationError(
                "local sandboxes need Linux (bubblewrap); use IRIS_BACKEND=aws"
            )
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise ConfigurationError("the local sandbox provider is refused inside AWS Lambda")
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise ConfigurationError(
                "bubblewrap (bwrap) is not installed, and the local provider never runs code "
                "outside a sandbox. Install it (Debian/Ubuntu: apt-get install bubblewrap) or "
                "run `make setup`."
            )
        node = self.settings.node_path or shutil.which("node")
        if node is None:
            raise ConfigurationError("Node.js (node) is not installed; the sandboxes run Node 20+")
        node = os.path.realpath(node)
        missing = [a for a in REQUIRED_ASSETS if not (self.assets_dir / a).exists()]
        if missing:
            raise ConfigurationError(
                f"sandbox assets missing in {self.assets_dir} ({', '.join(missing)}):"
                " run `make assets`"
            )
        python = find_python(self.settings.python_path)
        extra: tuple[str, ...] = ()
        for binary in (node, python):
            if binary is not None and not binary.startswith("/usr/"):
                extra += (str(Path(binary).parent.parent),)
        root = os.geteuid() == 0
        host_uid = self.settings.sandbox_host_uid if root else None
        help_text = _run([bwrap, "--help"]).stdout
        cgroups = Cgroups(f"iris-{self.instance}")
        limits = Limits(
            memory_bytes=self.settings.sandbox_memory_mb * 1024 * 1024,
            max_processes=self.settings.sandbox_max_processes,
            cpus=self.settings.sandbox_cpus,
        )
        for path in (self.runtime.parent, self.runtime, self.root):
            path.mkdir(exist_ok=True, parents=True)
            path.chmod(0o711)
        self._hold_instance_lock()
        if root:
            orphans = self._sweep_orphans()
            if orphans:
                log.warning("removed %d runtime director(ies) of servers that were killed", orphans)
        write_etc(self.runtime / "etc", limits)
        seccomp_path: Path | None = None
        if self.settings.sandbox_seccomp:
            seccomp_path = self.runtime / "seccomp.bpf"
            seccomp_path.write_bytes(seccomp.program(seccomp.arch_of()))
            seccomp_path.chmod(0o644)
        assets = self._stage_assets()
        cfg = JailConfig(
            bwrap=bwrap,
            node=node,
            python=python,
            assets_dir=assets,
            etc_dir=self.runtime / "etc",
            limits=limits,
            disk_bytes=self.settings.sandbox_disk_mb * 1024 * 1024,
            host_uid=host_uid,
            host_gid=host_uid,
            disable_userns="--disable-userns" in help_text,
            rlimit_fallback=cgroups.version == 0,
            extra_ro_binds=extra,
            seccomp=seccomp_path,
        )
        version = _run([bwrap, "--version"]).stdout.strip()
        caps = (
            f"cgroups {cgroups.mode} (memory {self.settings.sandbox_memory_mb} MiB, "
            f"{self.settings.sandbox_max_processes} processes, {self.settings.sandbox_cpus:g} CPU)"
            if cgroups.version
            else "rlimits (no writable cgroup: memory and process caps are weaker)"
        )
        disk = (
            f"tmpfs {self.settings.sandbox_disk_mb} MiB"
            if root
            else f"plain directory, files capped at {self.settings.sandbox_disk_mb} MiB each"
        )
        who = f"host uid {host_uid}" if host_uid is not None else f"uid {os.geteuid()} (not root)"
        syscalls = "seccomp filter" if seccomp_path else "no seccomp filter"
        self.isolation = (
            f"{version}; {caps}; files: {disk}; jails run as {who}; no network; {syscalls}"
        )
        return cfg, cgroups, root

    def _hold_instance_lock(self) -> None:
        """Held for the life of this engine: a runtime directory whose lock nobody holds
        belongs to a server that was killed (see _sweep_orphans)."""
        fd = os.open(self.runtime / INSTANCE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._instance_lock = fd

    def _sweep_orphans(self) -> int:
        """Remove the runtime directories (mounts, cgroups, staged assets) that killed servers
        of other data directories left under /run/iris-exec."""
        removed = 0
        for entry in self.runtime.parent.iterdir():
            if entry == self.runtime or not entry.is_dir():
                continue
            lock = entry / INSTANCE_LOCK
            fd = -1
            try:
                if lock.exists():
                    fd = os.open(lock, os.O_RDWR)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a live server's
                elif time.time() - entry.stat().st_mtime < ORPHAN_MIN_AGE_S:
                    continue  # maybe a server starting right now
                _unmount_under(entry)
                Cgroups(f"iris-{entry.name}").sweep()
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            except OSError as exc:
                log.warning("could not remove the stale runtime directory %s: %s", entry, exc)
            finally:
                if fd >= 0:
                    os.close(fd)
        return removed

    def _stage_assets(self) -> Path:
        """A private copy of the assets: reachable by the jail uid, and unchanged by a
        rebuild (`make assets`) while the server runs."""
        staged = self.runtime / "assets"
        shutil.rmtree(staged, ignore_errors=True)
        # The web console and /docs are the server's, not the sandboxes'.
        shutil.copytree(self.assets_dir, staged, ignore=shutil.ignore_patterns(*WEB_ASSETS))
        for path in [staged, *staged.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        return staged

    def _sweep(self) -> int:
        removed = 0
        for entry in self.root.iterdir():
            files = entry / "fs"
            if os.path.ismount(files):
                _unmount(files)
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        self.cgroups.sweep()
        return removed

    async def shutdown(self) -> None:
        for task in list(self._pool_tasks):
            task.cancel()
        jails = [*self._jails.values(), *self._pool]
        self._jails.clear()
        self._pool.clear()
        await asyncio.gather(*(j.destroy("server stopped") for j in jails), return_exceptions=True)
        await wait_for_teardowns()
        if self._started:
            await self.compiler.close()
            # Nothing of this engine stays behind in /run (a killed one is swept at the next start).
            await asyncio.to_thread(shutil.rmtree, self.runtime, True)
        if self._instance_lock >= 0:
            os.close(self._instance_lock)
            self._instance_lock = -1
        self._started = False

    # -- the host's memory -----------------------------------------------------------
    #
    # A sandbox reserves its tmpfs (when the files are one) for as long as it lives, and its
    # memory limit while an execution runs in it. Admission keeps the sum of what is reserved
    # within the server's budget (IRIS_SANDBOX_MEMORY_BUDGET_MB, default: the host's RAM), and
    # one project within its share of it (IRIS_SANDBOX_PROJECT_SHARE): past either, that
    # project gets a 503 with Retry-After, and the others go on.

    @property
    def memory_budget(self) -> int:
        configured = self.settings.sandbox_memory_budget_mb
        return configured * 1024 * 1024 if configured else _host_memory()

    def _tmpfs_bytes(self) -> int:
        return self.cfg.disk_bytes if self.can_mount else 0

    def _reserved(self, project_id: str | None = None) -> int:
        # A kept runner holds its memory between executions too (one not running counts
        # here; a running one is in _running).
        if project_id is None:
            jails = len(self._jails) + len(self._pool) + len(self._pool_tasks)
            running = sum(self._running.values())
            running += sum(len(j.kept) for j in self._jails.values())
        else:
            owned = [j for j in self._jails.values() if j.owner and j.owner[1] == project_id]
            jails = len(owned)
            running = self._running.get(project_id, 0) + sum(len(j.kept) for j in owned)
        return jails * self._tmpfs_bytes() + running * self.cfg.limits.memory_bytes

    def _admit(self, project_id: str, extra: int, what: str) -> None:
        budget = self.memory_budget
        # A project may always hold one sandbox running one execution (if the server has room).
        one = self._tmpfs_bytes() + self.cfg.limits.memory_bytes
        share = max(one, int(budget * self.settings.sandbox_project_share))
        if self._reserved() + extra > budget:
            raise ProviderUnavailable(
                f"the server's memory for sandboxes ({budget // 2**20} MiB) is fully reserved;"
                f" cannot {what}",
                retry_after_s=5,
            )
        if self._reserved(project_id) + extra > share:
            raise ProviderUnavailable(
                f"this project holds its share of the server's memory for sandboxes"
                f" ({share // 2**20} MiB); cannot {what} until one of its executions ends or"
                " one of its sandboxes is closed",
                retry_after_s=5,
            )

    # -- the port --------------------------------------------------------------------

    async def create(self, sandbox_id: str, project_id: str, lifetime_s: float) -> CreatedSandbox:
        jail = self._pool.pop(0) if self._pool else None
        try:
            # A spare jail's tmpfs is reserved already (as the pool's): it becomes the project's.
            extra = 0 if jail else self._tmpfs_bytes()
            await self._admit_waiting(project_id, extra, "create a sandbox")
        except ProviderUnavailable:
            if jail is not None:
                self._pool.insert(0, jail)
            raise
        if jail is None:
            jail = await self._new_jail()
        jail.owner = (sandbox_id, project_id)
        self._jails[jail.jail_id] = jail
        self._refill_pool()
        log.debug("jail %s is sandbox %s of project %s", jail.jail_id, sandbox_id, project_id)
        return CreatedSandbox(jail.jail_id, TOOL_CHANNEL)

    async def _new_jail(self) -> Jail:
        jail = Jail(self, "jl_" + secrets.token_hex(8))
        try:
            await jail.prepare()
        except BaseException:
            await jail.destroy("failed to start")
            raise
        return jail

    def _refill_pool(self) -> None:
        missing = self.settings.sandbox_warm_pool - len(self._pool) - len(self._pool_tasks)
        room = self.memory_budget - self._reserved()
        if self._tmpfs_bytes():
            missing = min(missing, room // self._tmpfs_bytes())
        for _ in range(max(0, missing)):
            task = asyncio.create_task(self._add_to_pool())
            self._pool_tasks.add(task)
            task.add_done_callback(self._pool_tasks.discard)

    async def _add_to_pool(self) -> None:
        try:
            self._pool.append(await self._new_jail())
        except ProviderUnavailable as exc:
            log.warning("could not prepare a spare sandbox: %s", exc)

    async def is_alive(self, provider_ref: str) -> bool:
        jail = self._jails.get(provider_ref)
        return jail is not None and jail.dead is None and jail.files.is_dir()

    async def list_sandboxes(self) -> list[ProviderSandbox]:
        return [
            ProviderSandbox(ref, jail.owner[0], jail.owner[1])
            for ref, jail in self._jails.items()
            if jail.owner is not None and jail.dead is None
        ]

    async def kill(self, provider_ref: str) -> None:
        jail = self._jails.pop(provider_ref, None)
        if jail is not None:
            await jail.destroy("closed")

    async def run(self, provider_ref: str, job: ExecutionJob) -> RunOutcome:
        jail = self._jails.get(provider_ref)
        if jail is None or jail.dead is not None:
            raise SandboxLost(f"jail {provider_ref} is not running on this server")
        python = job.language == "python"
        project = job.project_id
        async with jail.lock:
            # A kept runner's memory is reserved already (see _reserved).
            held = job.keep_state and job.language in jail.kept
            extra = 0 if held else self.cfg.limits.memory_bytes
            await self._admit_waiting(project, extra, "start an execution")
            self._running[project] = self._running.get(project, 0) + 1
            try:
                return await self._run(jail, job, python)
            finally:
                self._running[project] -= 1
                if not self._running[project]:
                    del self._running[project]
                self._memory_freed.set()

    async def _admit_waiting(self, project: str, extra: int, what: str) -> None:
        """Admit, waiting up to IRIS_SANDBOX_ADMISSION_WAIT_S for memory that executions
        hold (a burst of one project's executions queues, then gets 503s)."""
        deadline = time.monotonic() + self.settings.sandbox_admission_wait_s
        while True:
            try:
                self._admit(project, extra, what)
                return
            except ProviderUnavailable:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
            self._memory_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._memory_freed.wait(), left)

    def _request(self, job: ExecutionJob) -> dict[str, Any]:
        """The runner's request, but the code (see _run)."""
        return {
            "projectId": job.project_id,
            "sessionId": job.session_id,
            "context": job.context,
            "cwd": SANDBOX_HOME,
            "workdir": EXEC_DIR,
            "tools": None
            if job.grant is None
            else {
                "url": "http://localhost/mcp",
                "socket": JAIL_TOOLS_SOCKET,
                "token": job.grant.token,
            },
        }

    async def _code(self, job: ExecutionJob, python: bool) -> dict[str, Any] | CodeError:
        """The code's part of the request: the source for Python and for a kept runner (each
        compiles in its runner), else the module the shared compiler made; the compile error
        of code that does not compile."""
        if python:
            return {
                "source": job.source,
                "filename": "main.py",
                "outputLimit": job.output_limit_bytes,
            }
        filename = FILENAME if job.language == "typescript" else "main.js"
        if job.keep_state:
            # A kept runner compiles for itself, in its own time and memory: types stripped
            # in place, no round trip to the shared compiler (sandbox/src/strip.ts).
            return {"source": job.source, "language": job.language, "filename": filename}
        compiled = await self.compiler.compile(job.source, job.language, job.project_id)
        if compiled.error is not None:
            return compiled.error
        return {"code": compiled.code, "specifiers": compiled.specifiers, "filename": filename}

    async def _run(self, jail: Jail, job: ExecutionJob, python: bool) -> RunOutcome:
        began = time.monotonic()
        if jail.last is not None:
            # The last execution answered; its processes may still be ending (or it
            # forged its end): this one starts once they are all gone.
            await jail.last.gone()
            jail.last = None
        if jail.dead is not None:
            # Closed while this execution waited: nothing may start in it any more.
            raise SandboxLost(f"the sandbox was stopped before the execution ({jail.dead})")
        if job.keep_state:
            return await self._run_kept(jail, job, python, began)
        runner_task = asyncio.create_task(jail.take_runner(python))
        request = self._request(job)
        try:
            code = await self._code(job, python)
        except BaseException:
            with contextlib.suppress(Exception):
                await jail.put_back(await runner_task)
            raise
        if isinstance(code, CodeError):
            await jail.put_back(await runner_task)
            setup_ms = (time.monotonic() - began) * 1000
            return RunOutcome(error=code, setup_ms=setup_ms)
        request |= code
        runner = await runner_task
        jail.prepare_next(python)
        try:
            report = await self._execute(jail, runner, request, job)
        finally:
            jail.last = runner
        if jail.dead is not None:
            raise SandboxLost(f"the sandbox was stopped during the execution ({jail.dead})")
        return outcome(report, began, job, self.settings.sandbox_memory_mb)

    @staticmethod
    async def _execute(
        jail: Jail, runner: Runner, request: dict[str, Any], job: ExecutionJob
    ) -> Report:
        """Run the request in ``runner``, the jail's current one meanwhile (what
        Jail.destroy stops), with the tool socket's per-execution state reset."""
        if jail.tools is not None:
            jail.tools.reset()
        jail.current = runner
        try:
            return await runner.execute(
                request, job.timeout_s, job.output_limit_bytes, job.on_output
            )
        finally:
            jail.current = None

    async def _run_kept(
        self, jail: Jail, job: ExecutionJob, python: bool, began: float
    ) -> RunOutcome:
        """Run in the sandbox's kept runner of the job's language (started now if there is
        none). A runner that does not come back from an execution (time limit, memory,
        output, exit, crash) is gone, and the next keepState execution says why."""
        if not self.cgroups.version:
            raise KeepStateUnavailable(
                "keepState needs cgroups on this server (to stop what an execution leaves"
                " running between executions); run without keepState"
            )
        language = job.language
        runner = jail.kept.pop(language, None)
        lost = jail.state_lost.pop(language, None)
        if runner is not None and not await runner.ready():
            lost = lost or ("busy" if runner.busy or runner.alive else "crash")
            await runner.close()
            runner = None
        request = self._request(job) | {"keep": True, "nonce": secrets.token_hex(16)}
        try:
            code = await self._code(job, python)
        except BaseException:
            if runner is not None:
                jail.kept[language] = runner
            raise
        if isinstance(code, CodeError):
            if runner is not None:
                jail.kept[language] = runner
            setup_ms = (time.monotonic() - began) * 1000
            return RunOutcome(error=code, setup_ms=setup_ms, state_reset=lost)
        request |= code
        if runner is None:
            runner = await jail.take_runner(python)
            jail.prepare_next(python)
        if jail.closed():
            # Closed while this execution compiled or waited for its runner: Jail.destroy
            # did not see this runner (neither kept nor current), so it goes here.
            await runner.close()
            raise SandboxLost(f"the sandbox was stopped before the execution ({jail.dead})")
        report = await self._execute(jail, runner, request, job)
        result = outcome(report, began, job, self.settings.sandbox_memory_mb)
        result.state_reset = lost
        if report.kept and jail.dead is None:
            jail.kept[language] = runner
        else:
            jail.last = runner
            jail.state_lost[language] = lost_because(report, result)
        if jail.closed():
            await runner.close()  # kept (paused) or not: Jail.destroy has run past it
            raise SandboxLost(f"the sandbox was stopped during the execution ({jail.dead})")
        return result


class KeepStateUnavailable(BadRequest):
    """keepState asked of a server that cannot keep a runner safely."""
