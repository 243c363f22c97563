"""One tenant cannot make the shared parts spend without bound (issue 18, the store's half):
each attack runs on a real server with real jails, while a bystander project's trivial
execution is checked during and after it."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iris_exec.adapters.sqlite.database import Database
from iris_exec.adapters.sqlite.tools import TOOL_SCHEMA, SqliteToolStore
from iris_exec.domain.tools import ToolCaller
from tests.support.api import execute, run_value
from tests.support.server import LocalServer

FINAL = {"succeeded", "failed", "timed_out"}
MIB = 1 << 20
IMPORT = "import { iris } from './iris-prime';\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("tenants") / "data"
    with LocalServer(
        data,
        execution_heartbeat_s=1,
        rate_limit_per_minute=1000,
        tool_storage_quota_bytes=4 * MIB,
        tool_writes_per_minute=400,
    ) as running:
        yield running


def stored_bytes(data_dir: Path) -> int:
    """The local database's bytes on disk (the file and its write-ahead log)."""
    return sum(p.stat().st_size for p in data_dir.glob("*.db*"))


def bystander_ok(server: LocalServer, key: str) -> None:
    answer = execute(server, key, "return 6 * 7")
    assert answer["success"], answer
    assert answer["result"]["output"].startswith("=== Results ===\n42")


def wait_final(server: LocalServer, key: str, execution_id: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    with server.client(key) as client:
        while time.monotonic() < deadline:
            body = client.get(f"/api/iris/executions/{execution_id}", params={"limit": 1}).json()
            if body["status"] in FINAL:
                return body
            time.sleep(0.5)
    raise AssertionError(f"{execution_id} did not finish")


@pytest.mark.slow
def test_a_megabyte_of_newlines_is_stored_in_about_a_megabyte(server: LocalServer) -> None:
    """1 MiB of bare newlines is a million log lines: kept one row per line (and again in
    the stored answer) it cost ~120 MB of SQLite per execution; now a few MB, and a reader
    still pages through every line with the cursor."""
    attacker, bystander = server.create_key("flood-logs"), server.create_key("bystander-logs")
    bystander_ok(server, bystander)
    before = stored_bytes(server.data_dir)
    code = 'process.stdout.write("\\n".repeat(1024 * 1024 - 16)); return "done";'
    with server.client(attacker) as client:
        submitted = client.post("/api/iris/execute", json={"code": code, "async": True})
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        final = pool.submit(wait_final, server, attacker, execution_id)
        bystander_ok(server, bystander)  # during
        body = final.result()
    bystander_ok(server, bystander)  # after
    assert body["status"] == "succeeded", body
    lines = 1024 * 1024 - 16
    assert len(body["result"]["logs"]) == lines
    assert body["result"]["logs"][:2] == ["[stdout] ", "[stdout] "]
    grown = stored_bytes(server.data_dir) - before
    assert grown < 6 * MIB, f"{grown} bytes stored for 1 MiB printed"
    with server.client(attacker) as client:
        page = client.get(
            f"/api/iris/executions/{execution_id}", params={"after": 500_000, "limit": 10_000}
        ).json()
        assert page["logs"] == ["[stdout] "] * 10_000 and page["cursor"] == 510_000
        last = client.get(
            f"/api/iris/executions/{execution_id}", params={"after": lines - 3}
        ).json()
        assert last["logs"] == ["[stdout] "] * 3 and last["cursor"] == lines


def cpu_seconds(server: LocalServer) -> float:
    """CPU time the server process has used (user + system)."""
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_lineage_reads_are_paged_and_writes_stop_at_the_projects_quota(
    server: LocalServer,
) -> None:
    """A lineage of megabytes used to come back whole (76 MB stored became a 155 MB
    answer); now a page holds at most 100 entries and about 1 MiB, with `next`. Writes
    stop at the project's storage quota with a tool error; another project is untouched."""
    attacker, bystander = server.create_key("hoard"), server.create_key("bystander-hoard")
    written = run_value(
        server,
        attacker,
        """import { iris } from './iris-prime';
const big = "x".repeat(60 * 1024 - 100);
let stored = 0, refusal = null;
for (let i = 0; i < 100 && refusal === null; i++) {
  try { await iris.trackLineage("sig", big, i); stored++; }
  catch (e) { refusal = { name: e.name, message: e.message }; }
}
return { stored, refusal };
""",
    )
    assert written["refusal"]["name"] == "IrisToolError"
    assert "storage quota" in written["refusal"]["message"]
    assert 55 <= written["stored"] <= 70  # about 4 MiB of 60 KiB entries
    bystander_ok(server, bystander)  # during: its own quota, its own writes
    assert run_value(
        server, bystander, IMPORT + 'return (await iris.trackLineage("sig", 1, 2)).signature'
    )
    pages = run_value(
        server,
        attacker,
        """import { iris } from './iris-prime';
const pages = [];
let after;
do {
  const page = await iris.getLineage("sig", { after });
  pages.push({ n: page.entries.length, bytes: JSON.stringify(page).length, next: page.next });
  after = page.next ?? undefined;
} while (after !== undefined);
const small = await iris.getLineage("sig", { limit: 3 });
return { pages, small: small.entries.map((e) => e.output) };
""",
    )["pages"]
    assert all(page["bytes"] <= 1.2 * MIB for page in pages), pages
    assert sum(page["n"] for page in pages) == written["stored"]
    assert len(pages) >= 4 and pages[-1]["next"] is None
    bystander_ok(server, bystander)  # after


def test_tool_writes_past_the_projects_rate_fail_as_its_tool_error(server: LocalServer) -> None:
    attacker, bystander = server.create_key("chatty"), server.create_key("bystander-chatty")
    value = run_value(
        server,
        attacker,
        """import { iris } from './iris-prime';
let ok = 0, refusal = null;
for (let i = 0; i < 450 && refusal === null; i++) {
  try { await iris.recordMetric("m", i); ok++; }
  catch (e) { refusal = { name: e.name, message: e.message }; }
}
return { ok, refusal };
""",
    )
    assert value["ok"] == 400, value
    assert value["refusal"]["name"] == "IrisToolError"
    assert "write rate of 400 per minute" in value["refusal"]["message"]
    # Another project writes as usual, at the same moment.
    assert (
        run_value(server, bystander, IMPORT + 'return (await iris.recordMetric("m", 1)).value') == 1
    )
    bystander_ok(server, bystander)


@pytest.mark.slow
def test_pattern_mining_over_crafted_data_stops_at_its_budget(server: LocalServer) -> None:
    """20 000 transactions over 6 000 items, each item in 3 or 4 of them and no two
    together: at minSupport 0.00015 every item is frequent, and Eclat intersects 18 M
    pairs of 20 000-bit sets (seconds of server CPU for one call before, while nothing is
    found). The call now fails at once as the caller's tool error."""
    project = "miner"
    attacker, bystander = server.create_key(project), server.create_key("bystander-miner")
    # The data is cheap to write; it goes straight into the server's store to keep this fast.
    db = Database(server.data_dir / "iris.db", (TOOL_SCHEMA,))
    try:
        store = SqliteToolStore(db)
        for n in range(20_000):
            store.add_event(ToolCaller(project, f"s{n}"), f"evt_{n}", f"e{n % 6000}", {}, 1.0 + n)
    finally:
        db.close()
    before = cpu_seconds(server)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        mined = pool.submit(
            execute,
            server,
            attacker,
            IMPORT + "try { await iris.discoverPatterns({ minSupport: 0.00015 }); return 'mined'; }"
            " catch (e) { return { name: e.name, message: e.message }; }",
        )
        bystander_ok(server, bystander)  # during
        answer = mined.result()
    spent = cpu_seconds(server) - before
    value = answer["result"]["output"]
    assert "IrisToolError" in value and "raise minSupport" in value, value
    assert spent < 1.5, f"the server spent {spent:.1f} s of CPU on one discoverPatterns call"
    bystander_ok(server, bystander)  # after


def test_a_programs_error_name_cannot_forge_the_audit_or_the_log(server: LocalServer) -> None:
    """The audit outcome is the service's own reading, whatever the program names its error
    ("ok" was audited as a success); the name reaches the log quoted and cut, so a newline
    in it cannot start a forged log line."""
    key = server.create_key("forger")
    forged = "ok\nINFO iris_exec.services.executions: execution ex_forged0000 ok"
    code = (
        f"const e = new Error('boom'); e.name = {json.dumps(forged)} + 'x'.repeat(5000); throw e;"
    )
    answer = execute(server, key, code)
    assert not answer["success"]
    assert (
        execute(server, key, "const e = new Error('no'); e.name = 'ok'; throw e;")["success"]
        is False
    )
    with server.client(key) as client:
        trail = client.get("/api/iris/audit").json()["events"]
    executions = [e for e in trail if e["kind"] == "execution"]
    assert [e["outcome"] for e in executions] == ["error", "error"]
    assert executions[0]["detail"] == "ok"
    assert executions[1]["detail"].startswith("ok\nINFO") and len(executions[1]["detail"]) <= 100
    log = server.log_path.read_text()
    assert "ex_forged0000" in log  # it was logged...
    assert not any(
        line.startswith("INFO iris_exec.services.executions: execution ex_forged0000")
        for line in log.splitlines()
    )  # ...never as a line of its own
    assert "x" * 200 not in log  # and cut


def test_printed_text_cannot_pose_as_the_result(server: LocalServer) -> None:
    key = server.create_key("poser")
    code = (
        'console.log("=== Results ===\\n{\\"admin\\": true}");'
        ' console.error("=== Output ===\\nfake"); return { admin: false };'
    )
    result = execute(server, key, code)["result"]
    assert result["returnValue"] == {"admin": False}
    output = result["output"]
    assert output.count("\n=== ") + output.startswith("=== ") == 3  # only the real sections
    assert output.startswith('=== Results ===\n{\n  "admin": false\n}')
    assert '\\=== Results ===\n{"admin": true}' in output
    assert "\\=== Output ===\nfake" in output
    assert "returnValue" not in execute(server, key, "console.log(1)")["result"]
    # A JavaScript string may hold a lone surrogate: the value stays valid UTF-8 JSON.
    assert execute(server, key, "return '\\ud800';")["result"]["returnValue"] == "\ufffd"


def test_a_program_naming_its_error_timeout_is_failed_not_timed_out(server: LocalServer) -> None:
    key = server.create_key("pretender")
    code = "const e = new Error('pretend'); e.name = 'TimeoutError'; throw e;"
    with server.client(key) as client:
        submitted = client.post("/api/iris/execute", json={"code": code, "async": True})
    body = wait_final(server, key, submitted.json()["executionId"])
    assert body["status"] == "failed" and body["result"]["error"]["name"] == "TimeoutError"


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("after", "\u00b2"),  # superscript two: str.isdigit() says yes, int() says no
        ("after", "\u0663"),  # Arabic-Indic three: int() reads it as 3
        ("after", "1" * 40),
        ("after", "-1"),
        ("limit", " 5"),
        ("Last-Event-ID", "\u00b2"),
        ("Last-Event-ID", "9" * 40),  # overflowed SQLite inside the stream: a cut stream
        ("Last-Event-ID", "1.5"),
    ],
)
def test_malformed_numbers_are_a_400_in_the_error_shape(
    server: LocalServer, where: str, value: str
) -> None:
    key = server.create_key("numbers")
    with server.client(key) as client:
        submitted = client.post("/api/iris/execute", json={"code": "return 1", "async": True})
        execution_id = submitted.json()["executionId"]
        if where == "Last-Event-ID":
            url = f"/api/iris/executions/{execution_id}/events"
            response = client.get(url, headers={b"Last-Event-ID": value.encode()})
        else:
            url = f"/api/iris/executions/{execution_id}"
            response = client.get(url, params={where: value})
        audit = client.get("/api/iris/audit", params={"limit": value})
    for answer in (response, audit):
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["statusCode"] == 400 and body["error"] and body["requestId"]
    assert "must be an integer" in response.json()["message"]
