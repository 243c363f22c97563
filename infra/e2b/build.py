"""Builds the E2B template every production sandbox starts from.

    E2B_API_KEY=e2b_... .venv/bin/python infra/e2b/build.py [--name iris-exec]

Node 22 and Python 3 (Debian's), the sandbox assets (the runners, iris-prime and its MCP
client, the Python iris_prime module, esbuild's binary) preinstalled in /opt/iris, 2 CPUs
and 2 GiB: executions never install anything at run time. Run `make assets` first; the
template name goes to the stack's E2BTemplate parameter.

Code cannot tamper with what later executions run. E2B's final build phase gives ``user``
passwordless sudo and makes /usr/local world-writable (where the node images keep
Node), so: the code runs as ``iris``, a user of its own without sudo; the runners,
esbuild and a copy of Node (/opt/node) are root's and read-only to it; Python is
Debian's /usr/bin/python3. E2B Cloud runs x86_64: the template always gets esbuild for
linux-x64, whatever machine builds it (fetched with ``npm pack`` when the local assets
hold another architecture)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from e2b import AsyncTemplate, Template
from e2b.template.main import TemplateBuilder

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "layers" / "core"))

from iris_exec.adapters.e2b.provider import CODE_HOME, CODE_USER, NODE  # noqa: E402

ASSETS = ROOT / "layers" / "core" / "iris_exec" / "assets"
#: What a sandbox needs (the local-only compile service stays out).
FILES = (
    "runner.mjs",
    "compile.mjs",
    "iris-prime.mjs",
    "iris-mcp.mjs",
    "iris-prime.d.ts",
    "esbuild",
    "python/runner.py",
    "python/iris_prime.py",
)
CPU_COUNT = 2
MEMORY_MB = 2048
NODE_IMAGE = "22-bookworm-slim"
#: ELF ``e_machine`` of x86-64: what E2B Cloud's Firecracker VMs run.
EM_X86_64 = 62


def elf_machine(path: Path) -> int | None:
    """The ELF machine of a binary (None if it is not ELF)."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def esbuild_version() -> str:
    package = ROOT / "node_modules" / "esbuild" / "package.json"
    return str(json.loads(package.read_text())["version"])


def npm_pack_linux_x64(into: Path) -> Path:
    """esbuild's linux-x64 binary of the version the assets were built with."""
    spec = f"@esbuild/linux-x64@{esbuild_version()}"
    out = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    with tarfile.open(into / out) as tar:
        member = tar.extractfile("package/bin/esbuild")
        if member is None:
            raise SystemExit(f"{spec} holds no package/bin/esbuild")
        binary = into / "esbuild-linux-x64"
        binary.write_bytes(member.read())
    return binary


def stage(assets: Path, into: Path, fetch_x64: Callable[[Path], Path] = npm_pack_linux_x64) -> Path:
    """The files the template copies, with a linux-x64 esbuild whatever this machine is."""
    missing = [name for name in FILES if not (assets / name).exists()]
    if missing:
        raise SystemExit(f"sandbox assets missing in {assets}: {missing}; run `make assets`")
    for name in FILES:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(assets / name, into / name)
    if elf_machine(into / "esbuild") != EM_X86_64:
        fetched = fetch_x64(into)
        if elf_machine(fetched) != EM_X86_64:
            raise SystemExit(f"{fetched} is not an x86-64 binary")
        shutil.copyfile(fetched, into / "esbuild")
        fetched.unlink()
    return into


def template(staged: Path) -> TemplateBuilder:
    top: list[str | Path] = [f for f in FILES if "/" not in f]
    python: list[str | Path] = [f for f in FILES if f.startswith("python/")]
    node_dir = NODE.rsplit("/", 1)[0]
    return (
        Template(file_context_path=staged)
        .from_node_image(NODE_IMAGE)
        .apt_install(["python3", "procps"])
        # Root's and read-only to the code (COPY would make them the current user's).
        .copy(top, "/opt/iris/", user="root", mode=0o755)
        .copy(python, "/opt/iris/python/", user="root", mode=0o755)
        .run_cmd(
            [
                # Compiled once here, so a Python runner starts without compiling.
                "python3 -m compileall -q /opt/iris/python",
                # Node out of /usr/local, which E2B's last phase makes world-writable.
                f"install -D -m 755 -o root -g root /usr/local/bin/node {NODE}",
                f"chown -R root:root /opt/iris {node_dir} && chmod -R go-w /opt/iris {node_dir}",
                # The code's own user: no sudo, no login shell, a home of its own.
                f"useradd --no-create-home --home-dir {CODE_HOME} --shell /usr/sbin/nologin "
                f"--user-group {CODE_USER}",
                f"install -d -o {CODE_USER} -g {CODE_USER} -m 700 {CODE_HOME}",
            ],
            user="root",
        )
        .set_user("user")
        .set_workdir("/home/user")
    )


def _show(entry: object) -> None:
    sys.stderr.write(f"{entry}\n")


async def build(name: str, staged: Path) -> None:
    info = await AsyncTemplate.build(
        template(staged), name, cpu_count=CPU_COUNT, memory_mb=MEMORY_MB, on_build_logs=_show
    )
    sys.stdout.write(f"built template {name}: {info}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--name", default="iris-exec", help="template name (E2BTemplate)")
    parser.add_argument("--dockerfile", action="store_true", help="print it, build nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iris-e2b-template-") as tmp:
        staged = stage(ASSETS, Path(tmp))
        if args.dockerfile:
            sys.stdout.write(Template.to_dockerfile(template(staged)) + "\n")
            return
        asyncio.run(build(args.name, staged))


if __name__ == "__main__":
    main()
