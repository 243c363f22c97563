"""`"language": "python"` through the API: the same jail, limits, shapes and errors as
TypeScript, and an `iris_prime` module whose tools (snake_case) give the same results: the
seed's examples, rewritten in Python, leave the same answers and the same tool records."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.test_tools import (
    EXAMPLES,
    SEED_BATCH,
    SEED_EXAMPLE_1,
    SEED_EXAMPLE_2,
    SEED_EXAMPLE_3,
)
from tests.support.api import execute, result_value, run_value
from tests.support.server import LocalServer

PY_EXAMPLE_1 = (EXAMPLES / "pattern_discovery.py").read_text()
PY_EXAMPLE_2 = (EXAMPLES / "multi_agent_workflow.py").read_text()
PY_EXAMPLE_3 = (EXAMPLES / "prompt_evolution.py").read_text()
PY_BATCH = (EXAMPLES / "batch_operations.py").read_text()

#: Reads back everything the examples may have stored (the same TypeScript for both).
STATE = """\
import { iris } from './iris-prime';
return {
  consensus: await iris.getConsensus('workflow-42'),
  workflow: await iris.getLineage('multi-agent-workflow'),
  evolution: await iris.getLineage('prompt-evolution'),
  prompts: await iris.listPrompts(),
  v1: await iris.getPrompt('analysis-v1'),
  v2: await iris.getPrompt('analysis-v2'),
  patterns: await iris.discoverPatterns({ minSupport: 0.1, minConfidence: 0.1 }),
};
"""

VOLATILE = re.compile(
    r"(?P<key>\"(?:id|createdAt|timestamp|at|votedAt|updatedAt|executionId|parentId)\": )"
    r"\"[^\"]*\""
)


def comparable(value: Any, project: str) -> str:
    """A result with its ids and times blanked and the project named generically."""
    import json

    text = json.dumps(value, sort_keys=True).replace(project, "<project>")
    return VOLATILE.sub(r'\g<key>"*"', text)


@pytest.mark.parametrize(
    ("name", "typescript", "python", "session"),
    [
        ("one", SEED_EXAMPLE_1, PY_EXAMPLE_1, None),
        ("two", SEED_EXAMPLE_2, PY_EXAMPLE_2, "workflow-42"),
        ("three", SEED_EXAMPLE_3, PY_EXAMPLE_3, None),
        ("batch", SEED_BATCH, PY_BATCH, None),
    ],
)
def test_the_seed_examples_in_python_give_the_typescript_results(
    server: LocalServer, name: str, typescript: str, python: str, session: str | None
) -> None:
    ts_project, py_project = f"ts-seed-{name}", f"py-seed-{name}"
    ts_key, py_key = server.create_key(ts_project), server.create_key(py_project)
    extra = {"sessionId": session} if session else {}
    ts = execute(server, ts_key, typescript, **extra)["result"]
    py = execute(server, py_key, python, language="python", **extra)["result"]
    assert ts["success"] and py["success"], (ts, py)
    if ts["output"].startswith("=== Results ===\n"):
        # The returned values, read back as JSON (their ids and times differ).
        assert comparable(result_value(py), py_project) == comparable(result_value(ts), ts_project)
    else:
        assert comparable(py["output"], py_project) == comparable(ts["output"], ts_project)
    assert comparable(py["logs"], py_project) == comparable(ts["logs"], ts_project)
    assert py["metadata"]["language"] == "python"
    # What the tools stored is the same too.
    ts_state = run_value(server, ts_key, STATE)
    py_state = run_value(server, py_key, STATE)
    assert comparable(py_state, py_project) == comparable(ts_state, ts_project)


def test_python_errors_have_the_contract_shape(server: LocalServer, key: str) -> None:
    thrown = execute(server, key, "print('before')\nraise KeyError('missing')", language="python")
    result = thrown["result"]
    assert thrown["success"] is False and result["success"] is False
    assert result["error"]["name"] == "KeyError"
    assert result["error"]["message"] == "'missing'"
    assert 'File "main.py", line 2' in result["error"]["stack"]
    assert result["logs"] == ["[stdout] before"]
    assert result["output"].startswith("=== Output ===\nbefore\n\n=== Errors ===\nTraceback")
    syntax = execute(server, key, "def broken(:\n    pass", language="python")["result"]
    assert syntax["error"]["name"] == "SyntaxError"
    assert "line 1" in syntax["error"]["message"]


def test_python_limits_are_the_same(server: LocalServer, key: str) -> None:
    spin = execute(server, key, "while True:\n    pass", language="python", timeoutMs=1500)
    assert spin["result"]["error"]["name"] == "TimeoutError"
    flood = execute(server, key, "while True:\n    print('x' * 1000)", language="python")
    assert flood["result"]["error"]["name"] == "OutputLimitError"
    assert flood["result"]["metadata"]["outputTruncated"] is True
    hog = execute(
        server, key, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))",
        language="python", timeoutMs=30_000,
    )  # fmt: skip
    assert hog["result"]["error"]["name"] == "OutOfMemoryError", hog["result"]
    # And after all that the sandbox still answers.
    again = execute(server, key, "return 1 + 1", language="python", sandboxId=hog["sandboxId"])
    assert again["result"]["output"] == "=== Results ===\n2"


def test_python_is_jailed_like_node(server: LocalServer, key: str) -> None:
    seen = run_value(
        server,
        key,
        "import os, socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
        "    net = 'open'\n"
        "except OSError as exc:\n"
        "    net = type(exc).__name__\n"
        "return {'net': net, 'uid': os.getuid(), 'cwd': os.getcwd(),\n"
        "        'env': sorted(os.environ), 'root': sorted(os.listdir('/'))}",
        language="python",
    )
    assert seen["net"] != "open"
    assert seen["cwd"] == "/home/user"
    assert seen["uid"] != 0
    assert not any("IRIS" in name or "AWS" in name for name in seen["env"])
    assert "work" not in seen["root"] and "root" not in seen["root"]


def test_one_sandbox_runs_both_languages_over_the_same_files(server: LocalServer, key: str) -> None:
    first = execute(
        server, key, "import fs from 'fs';\nfs.writeFileSync('shared.json', '{\"n\": 41}');"
    )
    sandbox = first["sandboxId"]
    value = run_value(
        server,
        key,
        "import json\nn = json.load(open('shared.json'))['n']\n"
        "open('back.txt', 'w').write(str(n + 1))\nreturn n + 1",
        language="python",
        sandboxId=sandbox,
    )
    assert value == 42
    back = run_value(
        server, key, "import fs from 'fs';\nreturn fs.readFileSync('back.txt', 'utf8');",
        sandboxId=sandbox,
    )  # fmt: skip
    assert back == "42"


def test_python_sees_its_context_and_session(server: LocalServer, key: str) -> None:
    value = run_value(
        server,
        key,
        "from iris_prime import context, session_id, project_id\n"
        "return {'context': context, 'session': session_id, 'project': project_id}",
        language="python",
        sessionId="py-session",
        context={"user": "ada", "n": [1, 2]},
    )
    assert value == {"context": {"user": "ada", "n": [1, 2]}, "session": "py-session",
                     "project": "alpha"}  # fmt: skip


def test_python_top_level_await_and_return(server: LocalServer, key: str) -> None:
    result = execute(
        server,
        key,
        "import asyncio\nasync def twice(x):\n    await asyncio.sleep(0.01)\n    return 2 * x\n"
        "values = await asyncio.gather(twice(1), twice(2))\nreturn values",
        language="python",
    )["result"]
    assert result_value(result) == [2, 4]


def test_a_tool_error_is_an_iris_tool_error(server: LocalServer, key: str) -> None:
    value = run_value(
        server,
        key,
        "from iris_prime import iris, IrisToolError\n"
        "try:\n    iris.submit_vote('c', 'a', 'maybe')\n"
        "except IrisToolError as exc:\n    return {'tool': exc.tool, 'message': str(exc)}",
        language="python",
    )
    assert value["tool"] == "submitVote"
    assert "vote" in value["message"]
