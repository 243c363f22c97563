"""`iris-exec doctor`: what this machine has for the local server, what is wrong, and how
to fix it. Each check stands alone, so one problem does not hide the next."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iris_exec.domain.errors import ConfigurationError

NODE_MIN = 20


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_settings() -> Finding:
    from iris_exec.settings import Settings

    try:
        Settings()
    except ConfigurationError as exc:
        return Finding("settings", False, str(exc).replace("\n", "; "), "fix the IRIS_* variables")
    return Finding("settings", True, "every IRIS_* variable is valid")


def check_bubblewrap() -> Finding:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Finding(
            "bubblewrap", False, "bwrap is not on PATH; no code runs without a sandbox",
            "apt-get install bubblewrap (or make setup)",
        )  # fmt: skip
    done = _run([bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "true"])
    if done.returncode != 0:
        return Finding(
            "bubblewrap", False, f"{bwrap} cannot start a jail: {done.stderr.strip()}",
            "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)",
        )  # fmt: skip
    return Finding(
        "bubblewrap", True, f"{bwrap} starts jails ({_run([bwrap, '--version']).stdout.strip()})"
    )


def check_cgroups() -> Finding:
    from iris_exec.adapters.local.cgroups import Cgroups

    probe = Cgroups(f"iris-doctor-{os.getpid()}")
    mode = probe.mode
    for base in probe.bases:
        if base.is_dir():
            base.rmdir()
    if mode == "none":
        return Finding(
            "cgroups", True, "not writable: memory and process caps fall back to rlimits (weaker)",
            "run as root, or delegate a cgroup v2 subtree to this user",
        )  # fmt: skip
    return Finding("cgroups", True, f"{mode}: memory, process and CPU caps per sandbox")


def check_node(configured: str | None) -> Finding:
    node = configured or shutil.which("node")
    if node is None:
        return Finding("node", False, "Node.js is not installed", "install Node.js 20+")
    version = _run([node, "--version"]).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return Finding("node", False, f"{node} did not say its version", "reinstall Node.js 20+")
    if major < NODE_MIN:
        return Finding("node", False, f"{node} is {version}", f"install Node.js {NODE_MIN}+")
    return Finding("node", True, f"{node} {version}")


def check_python(configured: str | None) -> Finding:
    from iris_exec.adapters.local.provider import PYTHON_MIN, find_python

    wanted = ".".join(map(str, PYTHON_MIN))
    python = find_python(configured)
    if python is None:
        where = configured or "/usr/bin/python3"
        return Finding(
            "python", False,
            f"no Python {wanted}+ at {where}: \"language\": \"python\" is answered 503",
            f"install python3 ({wanted}+) or set IRIS_PYTHON_PATH",
        )  # fmt: skip
    return Finding("python", True, f'{python} for "language": "python"')


def check_assets() -> Finding:
    from iris_exec.adapters.local.provider import REQUIRED_ASSETS, default_assets_dir

    where = default_assets_dir()
    missing = [a for a in REQUIRED_ASSETS if not (where / a).exists()]
    if missing:
        return Finding("assets", False, f"missing in {where}: {', '.join(missing)}", "make assets")
    return Finding("assets", True, f"sandbox assets in {where}")


def check_data_dir(data_dir: Path) -> Finding:
    where = data_dir.resolve()
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".doctor-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Finding(
            "data dir", False, f"{where} is not writable: {exc.strerror}",
            "set IRIS_DATA_DIR to a folder you can write",
        )  # fmt: skip
    return Finding("data dir", True, f"{where} (IRIS_DATA_DIR)")


def check_port(host: str, port: int, ours: str | None) -> Finding:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Finding("port", False, f"cannot listen on {host}:{port}: {exc.strerror}")
            if ours is not None:
                return Finding("port", True, f"{host}:{port} is this data directory's server")
            return Finding(
                "port", False, f"{host}:{port} is in use by another program",
                "stop it, or choose another port with --port or IRIS_PORT",
            )  # fmt: skip
    return Finding("port", True, f"{host}:{port} is free")


def diagnose() -> list[Finding]:
    """Every check, in the order a fix is usually needed."""
    from iris_exec.settings import Settings

    findings = [check_settings()]
    try:
        settings = Settings()
    except ConfigurationError:
        settings = None
    checks: list[Callable[[], Finding]] = [check_bubblewrap, check_cgroups, check_assets]
    if settings is not None:
        from iris_exec.local.server import running_server

        ours = running_server(settings)
        checks += [
            lambda: check_node(settings.node_path),
            lambda: check_python(settings.python_path),
            lambda: check_data_dir(settings.data_dir),
            lambda: check_port(settings.host, settings.port, ours["url"] if ours else None),
        ]
    for check in checks:
        try:
            findings.append(check())
        except (OSError, subprocess.SubprocessError) as exc:
            findings.append(Finding(check.__name__.removeprefix("check_"), False, str(exc)))
    return findings
