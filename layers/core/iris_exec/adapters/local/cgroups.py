"""Resource caps for jails through cgroups (v1 or v2, detected), or nothing if none is writable.

Each runner process tree gets its own cgroup under one base group per server data
directory (``iris-<hash>``), so that a restarted server can sweep what a killed
one left behind without touching another server's groups."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
#: How long a kept runner's pause may take (rounds of stop-and-kill) before it gives up.
PAUSE_WAIT_S = 0.5
#: The first round's wait, doubled each round up to 2 ms: a runner stops within a few hundred
#: microseconds, and the next execution waits for the pause (a fixed 2 ms was most of a warm
#: kept execution's overhead).
PAUSE_FIRST_WAIT_S = 0.0001


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int
    max_processes: int
    cpus: float


def _own_cgroup_paths() -> dict[str, str]:
    """Controller (or '' for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            paths[""] = path
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


class CgroupGroup:
    """The cgroup (one directory per controller) of one runner process tree."""

    def __init__(self, dirs: list[Path], version: int) -> None:
        self.dirs = dirs
        self.version = version

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def _file(self, name: str) -> Path | None:
        for d in self.dirs:
            if (d / name).exists():
                return d / name
        return None

    def oom_kills(self) -> int:
        """How many processes of this group the kernel killed for memory."""
        path = self._file("memory.oom_control" if self.version == 1 else "memory.events")
        if path is None:
            return 0
        # Read once per kept execution: os.read, a quarter of read_text's cost.
        with contextlib.suppress(OSError, ValueError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 4096)
            finally:
                os.close(fd)
            for line in text.splitlines():
                key, _, value = line.partition(b" ")
                if key == b"oom_kill":
                    return int(value)
        return 0

    def start_peak(self) -> int | None:
        """Start measuring one execution's peak memory: an open descriptor to read it from
        (``memory_peak``), or None when the group has no peak file.

        v1: writing 0 to memory.max_usage_in_bytes resets the group's peak to its usage now.
        v2: a write to memory.peak resets the peak seen through that descriptor (kernel 6.12
        and later); an older kernel refuses it, and the peak is then the group's over its
        whole life (a kept runner's: every execution of it so far)."""
        path = self._file("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak")
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            # Not writable (v2's memory.peak before 6.12, for a server that is not root):
            # the whole-life peak, read-only, is still evidence.
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        with contextlib.suppress(OSError):
            os.write(fd, b"0" if self.version == 1 else b"reset")
        return fd

    @staticmethod
    def memory_peak(fd: int) -> int | None:
        """The peak memory (bytes) read through ``fd`` of ``start_peak``, which is closed."""
        try:
            return int(os.pread(fd, 64, 0).strip())
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
        return sorted(pids)

    def kill_all(self) -> None:
        """SIGKILL every process in the group (fork bombs included: repeat until empty)."""
        kill_file = self._file("cgroup.kill")
        if kill_file is not None:
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def pause(self, keep: set[int], runner: int | None) -> bool:
        """Between two executions of a kept runner: SIGSTOP the runner's processes (``keep``,
        but ``runner``, the host's own child), and SIGKILL every other process of the group
        (what the execution started), again until none is left and the runner's processes
        are seen stopped. False if that did not happen in time.

        Seen stopped, not merely sent SIGSTOP: a process of the code, between the SIGSTOP and
        its own SIGKILL, can send the runner SIGCONT, and the runner would then run on between
        executions (and start more). Once nothing but the stopped runner is left, nothing can
        wake it."""
        stop = [pid for pid in keep if pid != runner]
        deadline = time.monotonic() + PAUSE_WAIT_S
        wait = PAUSE_FIRST_WAIT_S
        while time.monotonic() < deadline:
            for pid in stop:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            others = [pid for pid in self.pids() if pid not in keep]
            if not others and all(map(_stopped, stop)):
                return True
            for pid in others:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(wait)
            wait = min(wait * 2, 0.002)
        return False

    def resume(self, keep: set[int]) -> None:
        for pid in keep:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        """Remove the group's directories; tolerate ones still busy (the sweeper retries)."""
        for d in self.dirs:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)


class Cgroups:
    """Factory of per-runner cgroups. ``mode`` says what the server got: 'v1', 'v2' or 'none'."""

    def __init__(self, base_name: str) -> None:
        self.base_name = base_name
        self.version = 0
        self.bases: list[Path] = []
        self._detect()

    @property
    def mode(self) -> str:
        return f"v{self.version}" if self.version else "none"

    def _detect(self) -> None:
        own = _own_cgroup_paths()
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            self._try_v2(CGROUP_ROOT / own.get("", "/").lstrip("/"))
        elif all((CGROUP_ROOT / c).is_dir() for c in V1_CONTROLLERS):
            self._try_v1(own)

    def _try_v1(self, own: dict[str, str]) -> None:
        bases = [
            CGROUP_ROOT / c / own.get(c, "/").lstrip("/") / self.base_name for c in V1_CONTROLLERS
        ]
        try:
            for base in bases:
                base.mkdir(exist_ok=True)
        except OSError as exc:
            log.info("cgroup v1 not writable (%s); falling back to rlimits", exc)
            return
        self.version, self.bases = 1, bases

    def _try_v2(self, own_dir: Path) -> None:
        # v2 forbids processes in a group that delegates controllers, so our groups are
        # siblings of the server's own group, under its parent.
        parent = own_dir.parent if own_dir != CGROUP_ROOT else CGROUP_ROOT
        base = parent / self.base_name
        try:
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
            wanted = {"memory", "pids", "cpu"}
            if not wanted <= enabled:
                (parent / "cgroup.subtree_control").write_text(
                    " ".join(f"+{c}" for c in sorted(wanted - enabled))
                )
            base.mkdir(exist_ok=True)
            (base / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        except OSError as exc:
            log.info("cgroup v2 not writable (%s); falling back to rlimits", exc)
            return
        self.version, self.bases = 2, [base]

    def create(self, name: str, limits: Limits) -> CgroupGroup | None:
        """A new group with the limits applied, or None when cgroups are unavailable."""
        if not self.version:
            return None
        dirs = [base / name for base in self.bases]
        try:
            for d in dirs:
                d.mkdir()
            group = CgroupGroup(dirs, self.version)
            self._apply(group, limits)
        except OSError:
            CgroupGroup(dirs, self.version).remove()
            raise
        return group

    def _apply(self, group: CgroupGroup, limits: Limits) -> None:
        quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
        if self.version == 1:
            mem_dir, pids_dir, cpu_dir = group.dirs
            (mem_dir / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            swap = mem_dir / "memory.memsw.limit_in_bytes"
            if swap.exists():
                with contextlib.suppress(OSError):
                    swap.write_text(str(limits.memory_bytes))
            (pids_dir / "pids.max").write_text(str(limits.max_processes))
            # Each write of a bandwidth walks every cpu cgroup of the host (the kernel's
            # tg_set_bandwidth): the period is written only if it is not the default already.
            period = cpu_dir / "cpu.cfs_period_us"
            if period.read_text().strip() != str(CPU_PERIOD_US):
                period.write_text(str(CPU_PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (d,) = group.dirs
            (d / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(limits.max_processes))
            (d / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")

    def sweep(self) -> int:
        """Kill and remove every group left under our base (by a server that was killed)."""
        removed = 0
        names: set[str] = set()
        for base in self.bases:
            with contextlib.suppress(OSError):
                names.update(p.name for p in base.iterdir() if p.is_dir())
        for name in names:
            group = CgroupGroup([base / name for base in self.bases], self.version)
            group.kill_all()
            group.remove()
            removed += 1
        return removed


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped by a signal (or the process is gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        # "pid (comm) S ...": comm may hold anything, so the state follows the last ')'.
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"T", b"Z", b"X"):
            return False
    return True
