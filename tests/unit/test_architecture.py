"""Dependencies point one way: the contracts in pyproject.toml ([tool.importlinter]) hold.

`make lint` runs the same check (`lint-imports`); this keeps it in the fast tests too."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the iris_exec package found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(ROOT / "pyproject.toml")],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=120,
    )  # fmt: skip


def test_the_layer_contracts_hold() -> None:
    done = lint_imports(ROOT / "layers" / "core")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_service_that_imports_an_adapter_breaks_them(tmp_path: Path) -> None:
    """The contracts can fail: in a copy of the package where a service imports sqlite3
    and an adapter, the check names both imports."""
    shutil.copytree(
        ROOT / "layers" / "core" / "iris_exec",
        tmp_path / "iris_exec",
        ignore=shutil.ignore_patterns("assets", "__pycache__"),
    )
    leak = tmp_path / "iris_exec" / "services" / "leak.py"
    leak.write_text("import sqlite3\n\nfrom iris_exec.adapters.sqlite import database\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "iris_exec.services.leak -> sqlite3" in done.stdout
    assert "iris_exec.services.leak -> iris_exec.adapters.sqlite.database" in done.stdout


EDGES = ("http", "mcp", "aws", "local", "cli.py", "cli_client.py", "doctor.py", "smoke.py")


def test_no_edge_reaches_past_the_services_into_their_adapters() -> None:
    """import-linter sees imports; an edge holding a `Services` could still read
    `services.adapters`: none does."""
    import ast

    package = ROOT / "layers" / "core" / "iris_exec"
    files = [p for edge in EDGES for p in sorted((package / edge).glob("**/*.py"))] + [
        package / edge for edge in EDGES if edge.endswith(".py")
    ]
    assert len(files) > 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            assert not (isinstance(node, ast.Attribute) and node.attr == "adapters"), (
                f"{path.relative_to(package)}:{node.lineno} reads .adapters"
            )
