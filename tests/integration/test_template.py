"""The SAM template validates offline (sam validate --lint, cfn-lint)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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


def sam_build(build_dir: Path, arch: str) -> None:
    """`sam build` (no Docker) of the whole template; `arch` is the layer's wheels."""
    python_bin = os.path.dirname(subprocess.run(
        [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, check=True
    ).stdout.strip())  # fmt: skip
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "IRIS_LAYER_ARCH": arch,
        "PATH": f"{python_bin}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        # Not cached: the cache is keyed by the sources, not by the architecture asked for.
        [tool("sam"), "build", "--no-cached", "--build-dir", str(build_dir)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_dir = tmp_path_factory.mktemp("sam-arm64")
    sam_build(build_dir, "arm64")
    return build_dir


@pytest.fixture(scope="module")
def x86_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_dir = tmp_path_factory.mktemp("sam-x86")
    sam_build(build_dir, "x86_64")
    return build_dir


FUNCTIONS = {
    "ExecuteFunction": "execute",
    "SandboxGetFunction": "sandbox_get",
    "SandboxDeleteFunction": "sandbox_delete",
    "AuditFunction": "audit",
    "McpFunction": "mcp",
    "AuthorizerFunction": "authorizer",
    "ReaperFunction": "reaper",
    "ExecutionsFunction": "executions",
    "WorkerFunction": "worker",
}


def test_sam_build_makes_an_arm64_layer_with_pyc(arm64_build: Path) -> None:
    layer = arm64_build / "CoreLayer" / "python"  # unzipped at /opt/python
    assert (layer / "iris_exec" / "__init__.py").exists()
    assert not (layer / "python").exists()  # no /opt/python/python
    native = list(layer.glob("pydantic_core/_pydantic_core.cpython-312-*.so"))
    assert native and all("aarch64" in p.name for p in native)
    compiled = list((layer / "iris_exec" / "services").glob("__pycache__/*.cpython-312.pyc"))
    assert len(compiled) >= 5
    assert (layer / "iris_exec" / "assets" / "runner.mjs").exists()
    assert not (layer / "iris_exec" / "assets" / "esbuild").exists()  # local-only
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    print(f"\nlayer unzipped: {size / 2**20:.1f} MiB")  # noqa: T201 - the size is reported
    assert size < 250 * 2**20  # Lambda's limit for function + layers, unzipped
    for logical in FUNCTIONS:
        assert (arm64_build / logical / "app.py").exists()


#: Modules a function's cold start must not import: botocore's sessions and clients (its
#: top-level package is light, and Powertools imports it), boto3, pydantic-settings, the
#: E2B SDK, psycopg. The MCP function needs the MCP SDK and the reaper E2B's listing.
HEAVY = ("botocore.session", "botocore.client", "boto3", "pydantic_settings", "e2b", "psycopg")


def test_every_handler_imports_from_the_built_layout(x86_build: Path) -> None:
    """Each function imports with only /opt/python (the layer) and /var/task (its code) on
    the path, as in Lambda, with no access to the project's own packages."""
    python = subprocess.run(
        [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    layer = x86_build / "CoreLayer" / "python"
    # The runtime brings boto3 (the layer leaves it out): stand in for /var/runtime.
    runtime = x86_build / "var-runtime"
    runtime.mkdir(exist_ok=True)
    import boto3
    import botocore
    import s3transfer

    for package in (boto3, botocore, s3transfer):
        source = Path(str(package.__file__)).parent
        (runtime / source.name).symlink_to(source, target_is_directory=True)
    for logical, name in FUNCTIONS.items():
        task = x86_build / logical
        probe = (
            "import sys, importlib; sys.path[:0] = [sys.argv[2], sys.argv[1], sys.argv[3]];"
            " module = importlib.import_module('app'); assert callable(module.handler);"
            " import iris_exec; assert iris_exec.__file__.startswith(sys.argv[1]);"
            " print(' '.join(m for m in sys.modules if m in sys.argv[4].split(',')))"
        )
        env = {"PATH": "/usr/bin:/bin", "IRIS_BACKEND": "aws", "AWS_REGION": "us-east-1",
               "AWS_LAMBDA_FUNCTION_NAME": f"iris-{name}"}  # fmt: skip
        done = subprocess.run(
            [python, "-I", "-c", probe, str(layer), str(task), str(runtime), ",".join(HEAVY)],
            capture_output=True, text=True, env=env, cwd=task, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        # The cold start budget (bench/lambda_cold.py): these load on first use, if ever.
        heavy = set(done.stdout.split())
        if name not in ("mcp", "reaper"):
            assert not heavy, f"{name} loads {sorted(heavy)} at cold start"


def _cloudformation(path: Path) -> dict[str, object]:
    """template.yaml with its intrinsic-function tags (!Ref, !Sub...) read as plain data."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        assert isinstance(node, yaml.MappingNode)
        return {suffix: loader.construct_mapping(node, deep=True)}

    Loader.add_multi_constructor("!", tagged)
    loaded: dict[str, object] = yaml.load(path.read_text(), Loader=Loader)  # noqa: S506
    return loaded


def test_the_template_declares_the_tables_the_adapters_create() -> None:
    """tables.py (used by tests and `create_tables`) and template.yaml must agree."""
    from iris_exec.adapters.dynamodb.tables import TABLES, TTL_ATTRIBUTES

    resources = _cloudformation(ROOT / "template.yaml")["Resources"]
    assert isinstance(resources, dict)
    logical_names = {
        "sandboxes": "SandboxTable",
        "keys": "KeysTable",
        "rate": "RateTable",
        "audit": "AuditTable",
        "idempotency": "IdempotencyTable",
        "executions": "ExecutionsTable",
    }
    assert set(logical_names) == set(TABLES)
    for logical, resource in logical_names.items():
        declared = resources[resource]["Properties"]
        wanted = TABLES[logical]
        assert declared["KeySchema"] == wanted["KeySchema"], logical
        assert sorted(declared["AttributeDefinitions"], key=str) == sorted(
            wanted["AttributeDefinitions"], key=str
        ), logical
        assert declared.get("GlobalSecondaryIndexes", []) == wanted.get(
            "GlobalSecondaryIndexes", []
        ), logical
        ttl = declared.get("TimeToLiveSpecification", {}).get("AttributeName")
        assert ttl == TTL_ATTRIBUTES.get(logical), logical
