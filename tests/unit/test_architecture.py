"""Dependencies point one way: the domain and the services import no vendor SDK."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "core" / "iris_exec"
VENDORS = {
    "boto3",
    "botocore",
    "e2b",
    "e2b_code_interpreter",
    "psycopg",
    "sqlite3",
    "mcp",
    "mangum",
}
VENDORS |= {"aws_lambda_powertools", "fastapi", "starlette", "uvicorn", "httpx"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", ["domain", "services"])
def test_core_layers_import_no_vendor_sdk(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    for path in files:
        leaked = imported_modules(path) & VENDORS
        assert not leaked, f"{path.relative_to(PACKAGE)} imports {sorted(leaked)}"


def test_domain_imports_nothing_of_ours_but_the_domain() -> None:
    for path in sorted((PACKAGE / "domain").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("iris_exec")
            ):
                assert node.module.startswith("iris_exec.domain"), f"{path.name}: {node.module}"
