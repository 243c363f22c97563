"""The `iris-exec` command line, run for real."""

from __future__ import annotations

import json
import os
import subprocess
import time
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
    # The output as it was printed, then the returned value.
    assert done.stdout == 'hello\n=== Results ===\n{\n  "n": 2\n}\n'
    assert "ok | code" in done.stderr and "project local" in done.stderr


def test_run_of_a_py_file_runs_python(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text("print('hello from python')\nreturn {'n': 2}\n")
    done = cli(data_dir, "run", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'hello from python\n=== Results ===\n{\n  "n": 2\n}\n'


def test_run_exits_1_when_the_code_fails(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "bad.ts"
    script.write_text("throw new Error('broken');\n")
    done = cli(data_dir, "run", str(script), "--json")
    assert done.returncode == 1
    assert '"name": "Error"' in done.stdout and "broken" in done.stdout


def test_runs_in_process_log_no_asyncio_warnings(tmp_path: Path, data_dir: Path) -> None:
    # Killing a jail used to reap its process behind the event loop's back, which then
    # warned "child process pid N exit status already read" on about half of the runs.
    ok, spin = tmp_path / "ok.ts", tmp_path / "spin.ts"
    ok.write_text("return 1;\n")
    spin.write_text("while (true) {}\n")
    for script, limit, code in ((ok, "20000", 0), (spin, "300", 1)):
        done = cli(data_dir, "run", str(script), "--timeout-ms", limit)
        assert done.returncode == code, done.stderr
        assert "asyncio" not in done.stderr, done.stderr


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
    sandbox = json.loads(first.stdout)["sandboxId"]
    read = tmp_path / "read.ts"
    read.write_text("import fs from 'fs';\nreturn fs.readFileSync('cli.txt', 'utf8');\n")
    second = server.cli("run", str(read), "--project", "gamma", "--sandbox", sandbox)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith('=== Results ===\n"from the cli"')
    # The keys the CLI used for these runs are gone, not left revoked.
    assert server.cli("keys", "list", "--project", "gamma").stdout == ""


def test_run_keeps_state_between_runs_in_one_sandbox(server: LocalServer, tmp_path: Path) -> None:
    declare = tmp_path / "declare.ts"
    declare.write_text("const total: number = 40;\n")
    first = server.cli("run", str(declare), "--project", "delta", "--keep-state", "--json")
    assert first.returncode == 0, first.stderr
    sandbox = json.loads(first.stdout)["sandboxId"]
    use = tmp_path / "use.ts"
    use.write_text("return total + 2;\n")
    kept = server.cli("run", str(use), "--project", "delta", "--sandbox", sandbox, "--keep-state")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.startswith("=== Results ===\n42")
    fresh = server.cli("run", str(use), "--project", "delta", "--sandbox", sandbox)
    assert fresh.returncode == 1  # a fresh process: `total` is not defined there
    assert "ReferenceError" in fresh.stdout + fresh.stderr


def test_run_streams_lines_as_they_are_printed(server: LocalServer, tmp_path: Path) -> None:
    script = tmp_path / "slow.js"
    script.write_text(
        "console.log('first');\nawait new Promise((r) => setTimeout(r, 2500));\n"
        "console.error('warned');\nconsole.log('last');\nreturn 3;\n"
    )
    env = {**os.environ, **server.env}
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(IRIS_EXEC), "run", str(script)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_at = time.monotonic() - started
    rest, errors = proc.communicate(timeout=60)
    ended_at = time.monotonic() - started
    assert first == "first\n"
    assert ended_at - first_at > 1.5, (first_at, ended_at)  # shown live, not at the end
    assert rest == "last\n=== Results ===\n3\n"
    assert errors.startswith("warned\n") and "-- ok |" in errors
    assert proc.returncode == 0


def test_run_reads_stdin_with_a_language_session_and_context(server: LocalServer) -> None:
    code = (
        "from iris_prime import session_id, context\n"
        "print('py', flush=True)\nreturn {'s': session_id, 'c': context}\n"
    )
    done = subprocess.run(
        [str(IRIS_EXEC), "run", "-", "--language", "python", "--session", "cli-s1",
         "--context", '{"user": "ada"}', "--json"],
        input=code, env={**os.environ, **server.env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["output"].startswith(
        '=== Results ===\n{\n  "s": "cli-s1",\n  "c": {\n    "user": "ada"\n  }\n}'
    )


def test_run_refuses_what_it_cannot_run(tmp_path: Path, data_dir: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("print(1)")
    unknown = cli(data_dir, "run", str(notes))
    assert unknown.returncode == 2
    assert "cannot tell the language of" in unknown.stderr and "--language" in unknown.stderr
    bad_context = cli(data_dir, "run", str(notes), "--language", "python", "--context", "[1]")
    assert bad_context.returncode == 2 and "--context must be a JSON object" in bad_context.stderr
    env = {**os.environ, "IRIS_DATA_DIR": str(data_dir), "IRIS_API_KEY": "sk_live_" + "a" * 43}
    unreachable = subprocess.run(
        [str(IRIS_EXEC), "run", str(notes), "--language", "python", "--url", "http://127.0.0.1:9"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 3
    assert "cannot reach http://127.0.0.1:9" in unreachable.stderr


def test_run_with_a_refused_key_is_a_service_error(server: LocalServer, tmp_path: Path) -> None:
    script = tmp_path / "ok.ts"
    script.write_text("return 1;\n")
    env = {**os.environ, **server.env, "IRIS_API_KEY": "sk_live_" + "b" * 43}
    done = subprocess.run(
        [str(IRIS_EXEC), "run", str(script), "--url", server.url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3
    assert "401: Invalid or inactive API key" in done.stderr and "requestId req_" in done.stderr


def test_the_default_data_directory_is_the_same_from_any_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IRIS_DATA_DIR"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    elsewhere = [tmp_path / "a", tmp_path / "b"]
    for folder in elsewhere:
        folder.mkdir()

    def keys(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(IRIS_EXEC), "keys", *args], env=env, cwd=folder, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip

    created = keys(elsewhere[0], "create", "--project", "roams")
    assert created.returncode == 0, created.stderr
    listed = keys(elsewhere[1], "list")
    assert "roams" in listed.stdout
    data_dir = tmp_path / "xdg" / "iris-exec"
    assert f"local data directory {data_dir}" in listed.stderr  # said every time
    assert (data_dir / "iris.db").exists()
    assert not (elsewhere[0] / ".iris").exists() and not (elsewhere[1] / ".iris").exists()


def test_a_bad_setting_is_one_line_without_a_traceback(data_dir: Path) -> None:
    env = {**os.environ, "IRIS_DATA_DIR": str(data_dir), "IRIS_PORT": "99999"}
    done = subprocess.run(
        [str(IRIS_EXEC), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "iris-exec: IRIS_PORT='99999' is not valid; it must be an integer from 0 to 65535"
    )
    assert done.stdout == ""


def test_a_busy_port_is_said_before_any_key_is_made(data_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "IRIS_DATA_DIR": str(data_dir), "IRIS_PORT": str(port)}
        done = subprocess.run(
            [str(IRIS_EXEC), "serve"], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert f"127.0.0.1:{port} is in use by another program; stop it" in done.stderr
    assert done.stdout == ""  # no key printed
    assert "no keys" in cli(data_dir, "keys", "list").stderr


def test_revoking_by_a_prefix_that_several_keys_share_says_so(data_dir: Path) -> None:
    for _ in range(2):
        assert cli(data_dir, "keys", "create", "--project", "twins").returncode == 0
    done = cli(data_dir, "keys", "revoke", "sk_live_")
    assert done.returncode == 1
    assert "2 key(s) start with 'sk_live_'" in done.stderr
    assert "revoked" not in cli(data_dir, "keys", "list").stdout


def test_a_clean_restart_calls_no_sandbox_failed(tmp_path: Path) -> None:
    data = tmp_path / "restart"
    with LocalServer(data) as first:
        key = first.create_key("restarts")
        with first.client(key) as client:
            sandbox = client.post("/api/iris/execute", json={"code": "return 1"}).json()[
                "sandboxId"
            ]
    first_log = first.log_path.read_text()  # the second server writes the same file
    with LocalServer(data) as second:
        with second.client(key) as client:
            described = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
        log = second.log_path.read_text()
    assert described["status"] == "closed" and described["active"] is False
    assert "marked failed" not in log
    assert "asyncio" not in first_log + log


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with this machine's tools except ``missing`` (symlinks in a folder)."""
    import shutil

    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in ("node", "python3", "bwrap", "setpriv", "umount", "mount"):
        found = shutil.which(tool)
        if found and tool not in missing:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_doctor_finds_a_missing_bubblewrap_and_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "PATH": _path_without(tmp_path, "bwrap"),
            "IRIS_DATA_DIR": str(tmp_path / "data"),
            "IRIS_PORT": str(port),
        }
        done = subprocess.run(
            [str(IRIS_EXEC), "doctor"], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("FAIL bubblewrap") and "not on PATH" in line for line in lines)
    assert "fix: apt-get install bubblewrap (or make setup)" in done.stdout
    assert any(
        line.startswith("FAIL port") and f"127.0.0.1:{port} is in use" in line for line in lines
    )
    assert any(line.startswith("ok   node") for line in lines)
    assert "2 problem(s): bubblewrap, port" in done.stderr


def test_doctor_passes_on_a_machine_that_has_everything(tmp_path: Path) -> None:
    env = {**os.environ, "IRIS_DATA_DIR": str(tmp_path / "data"), "IRIS_PORT": "0"}
    done = subprocess.run(
        [str(IRIS_EXEC), "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout
    assert "all checks passed" in done.stderr


def test_a_bad_python_path_disables_python_only(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data", python_path="/nonexistent/python3") as running:
        key = running.create_key("no-python")
        with running.client(key) as client:
            typescript = client.post("/api/iris/execute", json={"code": "return 1"})
            python = client.post(
                "/api/iris/execute", json={"code": "return 1", "language": "python"}
            )
        log = running.log_path.read_text()
    assert typescript.status_code == 200
    assert python.status_code == 503
    assert "IRIS_PYTHON_PATH=/nonexistent/python3 is not Python 3.11+" in log


def test_executions_follow_and_show_audit_and_close_through_the_server(
    server: LocalServer,
) -> None:
    key = server.create_key("operator")
    with server.client(key) as client:
        started = client.post(
            "/api/iris/execute",
            json={
                "async": True,
                "code": "console.log('a');\nawait new Promise((r) => setTimeout(r, 800));\nconsole.log('b');\nreturn 'z';",
            },
        ).json()
    execution, sandbox = started["executionId"], started["sandboxId"]
    followed = server.cli("executions", "follow", execution, "--project", "operator")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == 'a\nb\n=== Results ===\n"z"\n'
    shown = server.cli("executions", "show", execution, "--project", "operator")
    assert json.loads(shown.stdout)["status"] == "succeeded"
    trail = server.cli("audit", "--json", "--project", "operator")
    kinds = {(e["kind"], e["executionId"]) for e in json.loads(trail.stdout)["events"]}
    assert any(execution == executed for _, executed in kinds)
    closed = server.cli("sandboxes", "close", sandbox, "--project", "operator")
    assert closed.returncode == 0 and f"Sandbox {sandbox} closed" in closed.stderr
    with server.client(key) as client:
        described = client.get("/api/iris/sandbox", params={"sandboxId": sandbox}).json()
    assert described["status"] == "closed"
    # Another project's view: the same execution is not found, and says so.
    other = server.cli("executions", "show", execution, "--project", "someone-else")
    assert other.returncode == 3 and "404: Execution" in other.stderr
    # The commands' own keys are gone.
    listing = server.cli("keys", "list", "--project", "operator").stdout
    assert listing.count("\n") == 2  # the header and the one key made above


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["ex"], ["executions"]),
        (["executions", "f"], ["follow"]),
        (["run", "--la"], ["--language"]),
        (["sandboxes", "close", "--a"], ["--all"]),
        (["keys", "create", "--pro"], ["--project"]),
    ],
)
def test_bash_completion_completes_commands_actions_and_options(
    words: list[str], expected: list[str]
) -> None:
    script = subprocess.run(
        [str(IRIS_EXEC), "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    probe = (
        f"{script}\nCOMP_WORDS=(iris-exec {' '.join(words)}); COMP_CWORD={len(words)};"
        ' _iris_exec; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == expected


def test_sandboxes_and_executions_are_listed_newest_first(server: LocalServer) -> None:
    key = server.create_key("lister")
    with server.client(key) as client:
        first = client.post("/api/iris/execute", json={"code": "return 1"}).json()
        second = client.post("/api/iris/execute", json={"code": "return 2"}).json()
    sandboxes = server.cli("sandboxes", "list", "--project", "lister")
    assert sandboxes.returncode == 0, sandboxes.stderr
    rows = sandboxes.stdout.splitlines()
    assert rows[0].split() == ["SANDBOX", "STATUS", "CREATED", "LAST", "USED", "EXPIRES"]
    assert [row.split()[0] for row in rows[1:]] == [second["sandboxId"], first["sandboxId"]]
    listed = json.loads(server.cli("executions", "list", "--json", "--project", "lister").stdout)
    assert [e["executionId"] for e in listed["executions"]] == [
        second["result"]["metadata"]["executionId"],
        first["result"]["metadata"]["executionId"],
    ]
    running = server.cli("sandboxes", "list", "--status", "closed", "--project", "lister")
    assert running.stdout.splitlines()[1:] == []
