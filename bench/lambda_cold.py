"""Cold start of each Lambda function, and the size of the shared layer.

`sam build` (no Docker) twice: arm64 (what is deployed: its size is reported) and x86_64
(so this machine can import it). Every figure comes from fresh python3.12 processes laid
out as in Lambda: the layer (with its .pyc) as /opt/python, the function as /var/task,
boto3 from the runtime, the environment template.yaml gives.

1. Import: the import of `app` (which builds the function's FastAPI app and adapters at
   module level), median and p95 of 15 runs, for every function.
2. The floor: the frameworks every API function is built on (FastAPI, Mangum, Powertools
   Logger and Metrics), imported with no line of this service, in the same run.
3. First answer: import plus the first request, for the three API routes, against
   DynamoDB Local, the E2B stand-in and a Secrets Manager stand-in (the E2B key is read
   from "Secrets Manager" by name through the service's own AWS client, as in
   production): `execute` (a new sandbox), `sandbox_get` and `sandbox_delete` of the
   sandbox it made. This is what a caller waits for on a cold start, less the network to
   AWS. Each line gives the process's CPU time too (user + system: on a shared, loaded
   machine it moves far less than the wall clock) and says which heavy modules the first
   answer loaded (boto3, botocore's client machinery, the E2B SDK)."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import zipfile
from pathlib import Path

import boto3
import botocore
import s3transfer

from bench.execution import percentile

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "sandbox_get": ("SandboxGetFunction", 300),
    "sandbox_delete": ("SandboxDeleteFunction", 300),
    "execute": ("ExecuteFunction", 600),
    "audit": ("AuditFunction", None),
    "executions": ("ExecutionsFunction", None),
    "worker": ("WorkerFunction", None),
    "mcp": ("McpFunction", None),
    "authorizer": ("AuthorizerFunction", None),
}
RUNS = 15
#: Each probe prints its wall-clock and CPU milliseconds.
PROBE = (
    "import sys, time, importlib; sys.path[:0] = sys.argv[1:4];"
    " began, cpu = time.perf_counter(), time.process_time(); importlib.import_module('app');"
    " print((time.perf_counter() - began) * 1000, (time.process_time() - cpu) * 1000)"
)
#: The stack every API function is built on, without a line of this service: the floor
#: under the figures above.
STACK_PROBE = (
    "import sys, time; sys.path[:0] = sys.argv[1:4];"
    " began, cpu = time.perf_counter(), time.process_time();"
    " import fastapi, fastapi.responses, mangum, starlette.middleware.cors;"
    " from aws_lambda_powertools import Logger, Metrics;"
    " Logger(service='probe'); Metrics(namespace='probe');"
    " print((time.perf_counter() - began) * 1000, (time.process_time() - cpu) * 1000)"
)


def python312() -> str:
    return subprocess.run(
        [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()


def sam_build(build_dir: Path, arch: str) -> None:
    sam = ROOT / ".tools" / "sam" / "bin" / "sam"
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "IRIS_LAYER_ARCH": arch,
        "PATH": f"{Path(python312()).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        [str(sam), "build", "--no-cached", "--build-dir", str(build_dir)],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip


def layer_size(layer: Path) -> tuple[float, float]:
    """Unzipped and zipped size of the layer, in MiB."""
    files = [p for p in layer.rglob("*") if p.is_file()]
    unzipped = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "layer.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, path.relative_to(layer.parent))
        zipped = archive.stat().st_size
    return unzipped / 2**20, zipped / 2**20


FIRST_ANSWER_RUNS = 7
FIRST_ANSWER_PROBE = """
import importlib, json, sys, time
sys.path[:0] = sys.argv[1:4]
began, cpu_began = time.perf_counter(), time.process_time()
module = importlib.import_module("app")
imported = time.perf_counter()
sys.path.append(sys.argv[6])  # the project, after the layer: tests.support.events
from tests.support.events import LambdaContext
response = module.handler(json.loads(sys.argv[4]), LambdaContext(function_name=sys.argv[5]))
answered, cpu_answered = time.perf_counter(), time.process_time()
print(json.dumps({
    "import_ms": (imported - began) * 1000,
    "first_ms": (answered - began) * 1000,
    "cpu_ms": (cpu_answered - cpu_began) * 1000,
    "status": response["statusCode"],
    "body": response.get("body"),
    "boto3": "boto3" in sys.modules,
    "botocore": "botocore.session" in sys.modules or "botocore.client" in sys.modules,
    "e2b": "e2b" in sys.modules,
}))
"""


def first_answers(python: str, build: Path, runtime: Path, layer: Path, floor: float) -> None:
    """Import + first request of execute, sandbox_get and sandbox_delete, in fresh
    processes, against DynamoDB Local and the E2B and Secrets Manager stand-ins."""
    import json
    import uuid

    from iris_exec.adapters.dynamodb.keys import DynamoKeyStore
    from iris_exec.adapters.dynamodb.tables import TABLES, create_tables
    from iris_exec.services.auth import AuthService
    from iris_exec.services.clock import system_clock
    from tests.support.dynamodb_local import ACCESS_KEY, REGION, SECRET_KEY, DynamoDBLocal
    from tests.support.e2b_standin import E2BStandIn
    from tests.support.events import api_event
    from tests.support.secrets_standin import SecretsStandIn

    suffix = uuid.uuid4().hex[:8]
    tables = {logical: f"{logical}-{suffix}" for logical in TABLES}
    with DynamoDBLocal() as dynamodb, E2BStandIn() as e2b:
        e2b.team.transform_rules = True  # the header-rewrite egress mode needs them
        secrets = {"iris/e2b": e2b.api_key, "iris/signing": "s" * 64}
        with SecretsStandIn(secrets) as manager:
            client = dynamodb.client()
            create_tables(client, tables)
            key = AuthService(DynamoKeyStore(client, tables["keys"]), system_clock)
            api_key = key.create_key("bench")[0]
            env = {
                "PATH": "/usr/bin:/bin",
                "IRIS_BACKEND": "aws",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,  # Lambda sets both; botocore reads this one
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "PYDANTIC_DISABLE_PLUGINS": "__all__",
                **{k: v for k, v in e2b.env.items() if k != "E2B_API_KEY"},
                **manager.env,
                **{f"IRIS_{logical.upper()}_TABLE": table for logical, table in tables.items()},
                "IRIS_SANDBOX_TABLE": tables["sandboxes"],
                "IRIS_DYNAMODB_ENDPOINT": dynamodb.endpoint_url,
                "IRIS_E2B_API_KEY_SECRET": "iris/e2b",
                "IRIS_TOKEN_SIGNING_KEY_SECRET": "iris/signing",
                "IRIS_E2B_ASSETS_DIR": "/opt/iris",
                "IRIS_TOOL_STORE": "postgres",
                "IRIS_DATABASE_URL": "postgresql://unused@127.0.0.1:9/unused",
                "IRIS_PUBLIC_URL": "https://api.example.com/prod",
                "IRIS_RATE_LIMIT_PER_MINUTE": "100000",
            }

            def first(logical: str, event: dict[str, object]) -> dict[str, object]:
                task = build / logical
                done = subprocess.run(
                    [python, "-I", "-c", FIRST_ANSWER_PROBE, str(task), str(layer),
                     str(runtime), json.dumps(event), logical, str(ROOT)],
                    cwd=task, env=env, capture_output=True, text=True, check=True, timeout=120,
                )  # fmt: skip
                result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
                result["log"] = done.stdout[-3000:]
                return result

            figures: dict[str, list[tuple[float, float, float]]] = {}
            loaded: dict[str, tuple[bool, bool, bool]] = {}

            def record(name: str, result: dict[str, object], status: int) -> None:
                if result["status"] != status:
                    answer = f"{result['status']} {result['body']}"
                    raise RuntimeError(f"{name}: {answer}\n{result['log']}")
                times = (
                    float(str(result["import_ms"])),
                    float(str(result["first_ms"])),
                    float(str(result["cpu_ms"])),
                )
                figures.setdefault(name, []).append(times)
                loaded[name] = (
                    bool(result["boto3"]), bool(result["botocore"]), bool(result["e2b"])
                )  # fmt: skip

            for _ in range(FIRST_ANSWER_RUNS):
                code = {"code": "console.log(1 + 1)"}
                ran = first(
                    "ExecuteFunction",
                    api_event("POST", "/api/iris/execute", key=api_key, body=code),
                )
                record("execute", ran, 200)
                sandbox = json.loads(str(ran["body"]))["sandboxId"]
                query = {"sandboxId": sandbox}
                got = first(
                    "SandboxGetFunction",
                    api_event("GET", "/api/iris/sandbox", key=api_key, query=query),
                )
                record("sandbox_get", got, 200)
                closed = first(
                    "SandboxDeleteFunction",
                    api_event("DELETE", "/api/iris/sandbox", key=api_key, query=query),
                )
                record("sandbox_delete", closed, 200)
    print(
        "== Lambda cold start to the first answer (import + first request; median of"
        f" {FIRST_ANSWER_RUNS}; the stack alone imports in {floor:.1f} ms in this run)"
    )
    for name, pairs in figures.items():
        imports = statistics.median(i for i, _, _ in pairs)
        answers = [f for _, f, _ in pairs]
        cpu = statistics.median(c for _, _, c in pairs)
        boto3_loaded, botocore_loaded, e2b_loaded = loaded[name]
        print(
            f"{name:<15} import {imports:6.1f} ms   first answer median"
            f" {statistics.median(answers):6.1f} ms   p95 {percentile(answers, 0.95):6.1f} ms"
            f"   CPU {cpu:6.1f} ms   (loaded by the first answer:"
            f" boto3 {'yes' if boto3_loaded else 'no'},"
            f" botocore client {'yes' if botocore_loaded else 'no'},"
            f" e2b SDK {'yes' if e2b_loaded else 'no'})"
        )


def main() -> None:
    python = python312()
    with tempfile.TemporaryDirectory() as tmp:
        arm, x86 = Path(tmp) / "arm64", Path(tmp) / "x86_64"
        sam_build(arm, "arm64")
        sam_build(x86, "x86_64")
        unzipped, zipped = layer_size(arm / "CoreLayer" / "python")
        runtime = Path(tmp) / "var-runtime"
        runtime.mkdir()
        for package in (boto3, botocore, s3transfer):
            source = Path(str(package.__file__)).parent
            (runtime / source.name).symlink_to(source, target_is_directory=True)
        layer = x86 / "CoreLayer" / "python"
        # As template.yaml's Globals set them (the rest does not change imports).
        env = {
            "PATH": "/usr/bin:/bin",
            "IRIS_BACKEND": "aws",
            "AWS_REGION": "us-east-1",
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
        }

        def imports(probe: str, task: Path, name: str) -> list[tuple[float, float]]:
            times = []
            for _ in range(RUNS):
                done = subprocess.run(
                    [python, "-I", "-c", probe, str(task), str(layer), str(runtime)],
                    cwd=task, env={**env, "AWS_LAMBDA_FUNCTION_NAME": name},
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                wall, cpu = done.stdout.strip().splitlines()[-1].split()
                times.append((float(wall), float(cpu)))
            return times

        def line(label: str, times: list[tuple[float, float]]) -> str:
            walls = [w for w, _ in times]
            return (
                f"{label:<15} median {statistics.median(walls):6.1f} ms"
                f"   p95 {percentile(walls, 0.95):6.1f} ms"
                f"   CPU {statistics.median(c for _, c in times):6.1f} ms"
            )

        print("== Lambda cold import of each handler module (python3.12, layer with .pyc)")
        for name, (logical, target) in FUNCTIONS.items():
            goal = f"   (target < {target} ms)" if target else ""
            print(line(name, imports(PROBE, x86 / logical, name)) + goal)
        stack = imports(STACK_PROBE, x86 / "SandboxGetFunction", "stack")
        print(
            line("(stack alone)", stack)
            + "   (FastAPI, Mangum, Powertools Logger and Metrics: no service code)"
        )
        print(f"== shared layer (arm64): {unzipped:.1f} MiB unzipped, {zipped:.1f} MiB zipped")
        first_answers(python, x86, runtime, layer, statistics.median(w for w, _ in stack))


if __name__ == "__main__":
    main()
