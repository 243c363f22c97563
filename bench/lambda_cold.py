"""Cold start of each Lambda function's handler module, and the size of the shared layer.

`sam build` (no Docker) twice: arm64 (what is deployed: its size is reported) and x86_64
(so this machine can import it). Each handler is then imported in fresh python3.12
processes laid out as in Lambda: the layer (with its .pyc) as /opt/python, the function as
/var/task, boto3 from the runtime. The figure is the import of `app` (which builds the
function's FastAPI app and adapters at module level), median and p95 of 15 runs."""

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
PROBE = (
    "import sys, time, importlib; sys.path[:0] = sys.argv[1:4];"
    " began = time.perf_counter(); importlib.import_module('app');"
    " print((time.perf_counter() - began) * 1000)"
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
        print("== Lambda cold import of each handler module (python3.12, layer with .pyc)")
        for name, (logical, target) in FUNCTIONS.items():
            task = x86 / logical
            times = []
            for _ in range(RUNS):
                done = subprocess.run(
                    [python, "-I", "-c", PROBE, str(task), str(layer), str(runtime)],
                    cwd=task, env={**env, "AWS_LAMBDA_FUNCTION_NAME": name},
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                times.append(float(done.stdout.strip().splitlines()[-1]))
            median = statistics.median(times)
            goal = f"   (target < {target} ms)" if target else ""
            print(
                f"{name:<15} median {median:6.1f} ms   p95 {percentile(times, 0.95):6.1f} ms{goal}"
            )
        print(f"== shared layer (arm64): {unzipped:.1f} MiB unzipped, {zipped:.1f} MiB zipped")


if __name__ == "__main__":
    main()
