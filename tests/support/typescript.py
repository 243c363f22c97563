"""Builds the TypeScript client (clients/typescript) with the repository's TypeScript."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.server import ROOT

CLIENT = ROOT / "clients" / "typescript"
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def tsc(project: Path, out_dir: Path | None = None) -> None:
    """`tsc -p project` (type-checks, then writes its outDir); fails the test on any error."""
    args = [str(TSC), "-p", str(project)]
    if out_dir is not None:
        args += ["--outDir", str(out_dir)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def build_client(out_dir: Path | None = None) -> Path:
    """The client compiled (``src``: the library, ``test``: its tests) into ``out_dir``, by
    default the package's own ``dist`` (what ``@iris-exec/client`` resolves to)."""
    tsc(CLIENT / "tsconfig.json", out_dir)
    return out_dir or CLIENT / "dist"
