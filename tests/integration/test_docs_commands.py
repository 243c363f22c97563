"""Every command block of the README and the docs that can run on this machine is run, as
a reader would paste it, against a real local server: docs that are true.

A block that cannot run here says so in a comment just before it
(`<!-- docs-test: skip: why -->`); a Python block of sandboxed code is marked
`<!-- docs-test: sandbox -->` and runs in a sandbox. Pages that are about AWS or E2B
(deploy.md, e2b.md) are not run: neither can be reached from here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.support.server import ROOT, LocalServer

PAGES = [
    "README.md",
    "docs/api.md",
    "docs/mcp.md",
    "docs/configuration.md",
    "docs/iris-prime.md",
    "docs/console.md",
    "docs/limits.md",
    "examples/README.md",
    "clients/python/README.md",
    "clients/typescript/README.md",
]
BLOCK = re.compile(
    r"^(?P<indent> *)(?:<!-- docs-test: (?P<mark>[^>]*?) -->\n(?P=indent))?"
    r"```(?P<lang>bash|sh|python)\n(?P<body>.*?)^(?P=indent)```",
    re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    mark: str
    body: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = (ROOT / page).read_text()
        for match in BLOCK.finditer(text):
            indent = len(match["indent"])
            body = "\n".join(line[indent:] for line in match["body"].splitlines())
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(page, line, match["lang"], match["mark"] or "", body))
    return found


ALL = blocks()


def test_the_pages_have_blocks_to_run() -> None:
    runnable = [b for b in ALL if not b.mark.startswith("skip")]
    assert len(runnable) >= 5, [b.name for b in ALL]
    for block in ALL:
        if block.mark:
            assert block.mark == "sandbox" or block.mark.startswith("skip: "), block.name


def failures_in(output: str) -> list[str]:
    """Answers in the contract's error shape, or executions that failed, in what a block
    printed (a curl prints the body whatever the status)."""
    problems = []
    for line in output.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and (
            int(value.get("statusCode", 200)) >= 400 or value.get("success") is False
        ):
            problems.append(line[:300])
    return problems


@pytest.mark.parametrize(
    "block", [b for b in ALL if not b.mark.startswith("skip")], ids=lambda b: b.name
)
def test_a_documented_block_runs(block: Block, server: LocalServer, key: str) -> None:
    if block.mark == "sandbox":
        with server.client(key) as client:
            answer = client.post(
                "/api/iris/execute", json={"code": block.body, "language": block.lang}
            ).json()
        assert answer["result"]["success"], answer
        return
    body = block.body.replace("http://127.0.0.1:8000", server.url).replace("sk_live_...", key)
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "IRIS_DATA_DIR": str(server.data_dir),
        "IRIS_URL": server.url,
        "IRIS_API_KEY": key,
        "KEY": key,
    }
    command = (
        ["bash", "-euo", "pipefail", "-c", body]
        if block.lang in ("bash", "sh")
        else [sys.executable, "-c", body]
    )
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{block.name}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert failures_in(done.stdout) == [], block.name
