"""The SAM template validates offline (sam validate --lint, cfn-lint)."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.server import ROOT


def tool(name: str) -> str:
    path = shutil.which(name) or str(ROOT / ".tools" / "sam" / "bin" / name)
    assert os.path.exists(path), f"{name} not found: run `make sam-tools`"
    return path


def test_sam_validate_lint() -> None:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [tool("sam"), "validate", "--lint", "--template-file", "template.yaml"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_cfn_lint() -> None:
    done = subprocess.run(
        [tool("cfn-lint"), "template.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
