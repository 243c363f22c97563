"""The TypeScript client library (clients/typescript) against the real local server: its
tests (clients/typescript/test, Node's own test runner) compiled with the repository's
TypeScript and run with the server's URL and keys in the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.server import LocalServer
from tests.support.typescript import build_client


def test_the_typescript_client_passes_its_tests_against_the_server(
    server: LocalServer, tmp_path: Path
) -> None:
    dist = build_client(tmp_path / "dist")  # its own copy: other tests build the package's
    env = {
        **os.environ,
        "IRIS_URL": server.url,
        "IRIS_API_KEY": server.create_key("ts-client"),
        "IRIS_SECOND_API_KEY": server.create_key("ts-client-sandboxes"),
    }
    done = subprocess.run(
        ["node", "--test", str(dist / "test" / "client.test.js")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    # Every test ran and passed (a file that failed to load would report none).
    assert "# fail 0" in report and "# pass 11" in report, report
