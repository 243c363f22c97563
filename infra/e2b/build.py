"""Builds the E2B template every production sandbox starts from.

    E2B_API_KEY=e2b_... .venv/bin/python infra/e2b/build.py [--name iris-exec]

Node 20 and Python 3 (Debian's), the sandbox assets (the runners, iris-prime and its MCP
client, the Python iris_prime module, esbuild's binary) preinstalled in /opt/iris, 2 CPUs
and 2 GiB: executions never install anything at run time. Run `make assets` first; the
template name goes to the stack's E2BTemplate parameter."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from e2b import AsyncTemplate, Template
from e2b.template.main import TemplateBuilder

ROOT = Path(__file__).resolve().parents[2]
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


def template(assets: Path = ASSETS) -> TemplateBuilder:
    missing = [name for name in FILES if not (assets / name).exists()]
    if missing:
        raise SystemExit(f"sandbox assets missing in {assets}: {missing}; run `make assets`")
    return (
        Template(file_context_path=assets)
        .from_node_image("20-bookworm-slim")
        .apt_install(["python3"])
        .copy([f for f in FILES if "/" not in f], "/opt/iris/", mode=0o755)
        .copy([f for f in FILES if f.startswith("python/")], "/opt/iris/python/", mode=0o755)
        # Compiled once here, so a Python runner starts without compiling its own modules.
        .run_cmd("python3 -m compileall -q /opt/iris/python", user="root")
        .set_envs({"ESBUILD_BINARY_PATH": "/opt/iris/esbuild", "NODE_ENV": "production"})
        .run_cmd("id user >/dev/null 2>&1 || useradd -m -s /bin/bash user", user="root")
        .set_user("user")
        .set_workdir("/home/user")
    )


def _show(entry: object) -> None:
    sys.stderr.write(f"{entry}\n")


async def build(name: str) -> None:
    info = await AsyncTemplate.build(
        template(), name, cpu_count=CPU_COUNT, memory_mb=MEMORY_MB, on_build_logs=_show
    )
    sys.stdout.write(f"built template {name}: {info}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="iris-exec", help="template name (E2BTemplate)")
    parser.add_argument("--dockerfile", action="store_true", help="print it, build nothing")
    args = parser.parse_args()
    if args.dockerfile:
        sys.stdout.write(Template.to_dockerfile(template()) + "\n")
        return
    asyncio.run(build(args.name))


if __name__ == "__main__":
    main()
