"""A sandbox's machine: a throwaway bubblewrap jail that looks like an E2B sandbox.

What E2B's template builder leaves behind (``infra packages/orchestrator/.../template/
build/phases``), and what the stand-in reproduces:

- the users ``root`` and ``user`` (uid 1000), plus those the template adds; every
  envd command runs through ``/bin/bash -l -c`` as the user the SDK names;
- the final phase's ``chmod -R 777 /usr/local`` (the ``node`` images keep Node there);
- the template's files, owned by root and read-only (``TemplateFiles``);
- the egress proxy's CA appended to ``/etc/ssl/certs/ca-certificates.crt`` by envd
  ``/init``, and only there: Node's own CA store does not have it;
- one PID namespace per sandbox: ``pkill -u user`` sees that sandbox's processes, never
  this host's.

Not reproduced: ``sudo`` (bubblewrap mounts are ``nosuid``), so ``user``'s passwordless
sudo is not there; E2B's network firewall (the jail shares this host's network; the
stand-in's egress proxy answers for the hosts the sandbox is routed to, see
``egress.py``). The rest of this host's file system is visible read-only.

Needs root (real uids for the users) and bubblewrap; ``available()`` says whether the
stand-in can jail here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_USERS = {"root": 0, "user": 1000}
#: Directories of the sandbox that live in its own root directory (the file API's view).
OWN_DIRS = ("home", "tmp", "root", "usr/local", "opt")
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


#: Run by nsenter inside the jail: fork, become the user, die with the launcher, exec.
LAUNCH = """
import ctypes, os, signal, sys
uid, cwd, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
child = os.fork()
if child == 0:
    os.chdir(cwd)
    if uid:
        os.setgroups([uid]); os.setgid(uid); os.setuid(uid)
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, after the uid change
    os.execvp(argv[0], argv)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda s, _f: os.kill(child, s))
_, status = os.waitpid(child, 0)
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.WEXITSTATUS(status))
"""


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("bwrap") is not None


@dataclass(frozen=True)
class StandInTemplate:
    """What a template adds to E2B's base: users (name -> uid; home ``/home/<name>``,
    theirs), files (sandbox path -> host path, root-owned, read-only) and what its image
    keeps in /usr/local (which E2B's last phase makes world-writable)."""

    users: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    #: Symbolic links in /usr/local (name -> target), as writable as all of /usr/local.
    usr_local: dict[str, str] = field(default_factory=dict)

    def all_users(self) -> dict[str, int]:
        return {**BASE_USERS, **self.users}


def iris_template() -> StandInTemplate:
    """What infra/e2b/build.py adds to E2B's base image: the code's own user, the sandbox
    assets in /opt/iris and Node in /opt/node, root-owned and read-only."""
    from iris_exec.adapters.e2b.provider import CODE_USER, NODE
    from iris_exec.adapters.local.provider import default_assets_dir

    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the stand-in's template needs Node on this host")
    return StandInTemplate(
        users={CODE_USER: 1001},
        files={"/opt/iris": default_assets_dir(), NODE: Path(os.path.realpath(node))},
        usr_local={"bin/node": NODE},  # the node image's /usr/local/bin/node
    )


class Jail:
    """The PID and mount namespaces of one sandbox, kept alive by an idle init."""

    def __init__(
        self, root: Path, template: StandInTemplate, *, hosts: dict[str, str], ca_pem: bytes
    ) -> None:
        self.root = root
        self.template = template
        self.users = template.all_users()
        etc = root.parent / f"{root.name}.etc"
        etc.mkdir()
        (etc / "passwd").write_text(
            "".join(
                f"{name}:x:{uid}:{uid}::{'/root' if uid == 0 else f'/home/{name}'}:/bin/bash\n"
                for name, uid in self.users.items()
            )
        )
        (etc / "group").write_text(
            "".join(f"{name}:x:{uid}:\n" for name, uid in self.users.items())
        )
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{ip} {host}\n" for host, ip in hosts.items())
        )
        system = Path(SYSTEM_BUNDLE)
        bundle = system.read_bytes() if system.exists() else b""
        (etc / "ca-certificates.crt").write_bytes(bundle + b"\n" + ca_pem)
        for own in OWN_DIRS:
            (root / own).mkdir(parents=True, exist_ok=True)
        (root / "usr/local").chmod(0o777)
        for name, points_to in template.usr_local.items():
            link = root / "usr/local" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.parent.chmod(0o777)  # chmod -R 777 /usr/local
            link.symlink_to(points_to)
        (root / "tmp").chmod(0o1777)
        (root / "root").chmod(0o700)
        for name, uid in self.users.items():
            if uid == 0:
                continue
            home = root / "home" / name
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, uid, uid)
            home.chmod(0o750)
        argv = [
            "bwrap",
            "--unshare-pid",
            "--die-with-parent",
            "--ro-bind", "/", "/",
            *(a for own in OWN_DIRS for a in ("--bind", str(root / own), f"/{own}")),
            "--ro-bind", str(etc / "passwd"), "/etc/passwd",
            "--ro-bind", str(etc / "group"), "/etc/group",
            "--ro-bind", str(etc / "hosts"), "/etc/hosts",
            "--ro-bind", str(etc / "ca-certificates.crt"), SYSTEM_BUNDLE,
        ]  # fmt: skip
        for sandbox_path, host_path in template.files.items():
            target = root / sandbox_path.lstrip("/")
            if host_path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            argv += ["--ro-bind", str(host_path), sandbox_path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--cap-add", "ALL", "--", "sleep", "infinity"]
        self._init = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self._etc = etc
        self._pid1: int | None = None

    def pid_of_init(self) -> int:
        """The jail's PID 1 (bubblewrap's child), once it runs its idle process."""
        if self._pid1 is not None:
            return self._pid1
        children = Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children")
        for _ in range(1000):
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                        self._pid1 = int(pid)
                        return self._pid1
            time.sleep(0.005)
        raise RuntimeError("the sandbox's jail did not start")

    def argv(self, user: str, cwd: str, argv: list[str]) -> list[str]:
        """``argv`` as ``user`` in ``cwd`` inside the jail.

        nsenter enters the sandbox's namespaces and runs ``LAUNCH``, the pid envd reports:
        it forks the command into the sandbox's PID namespace (a process that only
        entered it could not start threads), and killing it kills that child alone
        (parent-death signal): the command's own children live on, as with envd."""
        return [
            "nsenter", "-F", f"--target={self.pid_of_init()}", "--pid", "--mount", "--root",
            "--", "/usr/bin/python3", "-I", "-S", "-c", LAUNCH,
            str(self.users[user]), cwd, *argv,
        ]  # fmt: skip

    def close(self) -> None:
        """End the sandbox: its PID 1 dies, and with it every process it had."""
        with contextlib.suppress(ProcessLookupError):
            self._init.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._init.wait(5)
        shutil.rmtree(self._etc, ignore_errors=True)
