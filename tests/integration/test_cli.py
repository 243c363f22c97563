"""The `iris-exec` command line, run for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import IRIS_EXEC, KEY_PATTERN, LocalServer


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IRIS_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [str(IRIS_EXEC), *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_run_prints_the_result_and_exits_0_on_success(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "ok.ts"
    script.write_text("const n: number = 2;\nconsole.log('hello');\nreturn { n };\n")
    done = cli(data_dir, "run", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout == '=== Results ===\n{\n  "n": 2\n}\n\n=== Output ===\nhello\n'
    assert "ok | code" in done.stderr and "project local" in done.stderr


def test_run_of_a_py_file_runs_python(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('hello from python')\nreturn {'n': 2}\n")
    done = cli(data_dir, "run", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout == '=== Results ===\n{\n  "n": 2\n}\n\n=== Output ===\nhello from python\n'


def test_run_exits_1_when_the_code_fails(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "bad.ts"
    script.write_text("throw new Error('broken');\n")
    done = cli(data_dir, "run", str(script), "--json")
    assert done.returncode == 1
    assert '"name": "Error"' in done.stdout and "broken" in done.stdout


def test_run_of_a_missing_file_is_a_usage_error(tmp_path: Path, data_dir: Path) -> None:
    done = cli(data_dir, "run", str(tmp_path / "nope.ts"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_keys_create_list_revoke(data_dir: Path) -> None:
    created = cli(data_dir, "keys", "create", "--project", "demo")
    assert created.returncode == 0
    key = created.stdout.strip().splitlines()[-1]
    assert KEY_PATTERN.match(key)
    assert len(key) == 51
    listed = cli(data_dir, "keys", "list")
    assert key[:14] in listed.stdout and "demo" in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout  # only a prefix is ever shown
    db = (data_dir / "iris.db").read_bytes()
    assert key.encode() not in db  # only the hash is stored
    revoked = cli(data_dir, "keys", "revoke", key[:14])
    assert revoked.returncode == 0
    assert "revoked" in cli(data_dir, "keys", "list").stdout
    assert cli(data_dir, "keys", "revoke", "sk_live_nothing_like_it").returncode == 1


def test_first_serve_creates_the_local_project_key_once(tmp_path: Path) -> None:
    data = tmp_path / "first"
    with LocalServer(data) as first:
        key = first.first_key
        assert KEY_PATTERN.match(key)
        with first.client(key) as client:
            response = client.post("/api/iris/execute", json={"code": "return 1"})
        assert response.json()["result"]["metadata"]["projectId"] == "local"
    with LocalServer(data) as second:
        assert second.first_key == ""  # not shown again


def test_run_goes_through_a_running_server_and_reuses_its_sandbox(
    server: LocalServer, tmp_path: Path
) -> None:
    write = tmp_path / "write.ts"
    write.write_text("import fs from 'fs';\nfs.writeFileSync('cli.txt', 'from the cli');\n")
    first = server.cli("run", str(write), "--project", "gamma", "--json")
    assert first.returncode == 0, first.stderr
    import json

    sandbox = json.loads(first.stdout)["sandboxId"]
    read = tmp_path / "read.ts"
    read.write_text("import fs from 'fs';\nreturn fs.readFileSync('cli.txt', 'utf8');\n")
    second = server.cli("run", str(read), "--project", "gamma", "--sandbox", sandbox)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith('=== Results ===\n"from the cli"')
    # The temporary keys the CLI used are revoked.
    listing = server.cli("keys", "list", "--project", "gamma").stdout
    assert "active" not in listing
