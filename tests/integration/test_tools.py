"""The IRIS tools from inside sandboxes (real TS MCP client, real Python MCP server), and from
an external MCP client with a project API key."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from fractions import Fraction
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from tests.support.api import execute, result_value, run_value
from tests.support.server import ROOT, LocalServer

#: The seed's examples, as files in examples/code (tests/integration/test_examples.py runs
#: every file there; these tests check what each one stored).
EXAMPLES = ROOT / "examples" / "code"
SEED_EXAMPLE_1 = (EXAMPLES / "pattern-discovery.ts").read_text()
SEED_EXAMPLE_2 = (EXAMPLES / "multi-agent-workflow.ts").read_text()
SEED_EXAMPLE_3 = (EXAMPLES / "prompt-evolution.ts").read_text()
SEED_BATCH = (EXAMPLES / "batch-operations.ts").read_text()


def test_seed_example_1_pattern_discovery(server: LocalServer) -> None:
    key = server.create_key("seed-one")
    result = execute(server, key, SEED_EXAMPLE_1)["result"]
    assert result["success"], result
    assert result["logs"] == [
        "[stdout] Analyzing patterns for project: seed-one",
        "[stdout] Found 0 patterns",
    ]
    # The telemetry it logged is stored, scoped to its project.
    with sqlite3.connect(server.data_dir / "iris.db") as db:
        rows = db.execute(
            "SELECT project_id, event, metadata FROM tool_events WHERE event = ?",
            ("pattern_discovery_completed",),
        ).fetchall()
    assert ("seed-one", "pattern_discovery_completed", '{"patternsFound":0}') in rows


def test_seed_example_2_multi_agent_workflow(server: LocalServer) -> None:
    key = server.create_key("seed-two")
    result = execute(server, key, SEED_EXAMPLE_2, sessionId="workflow-42")["result"]
    assert result["success"], result
    assert result["output"] == "=== Output ===\nWorkflow completed!"
    after = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const consensus = await iris.getConsensus('workflow-42');\n"
        "const lineage = await iris.getLineage('multi-agent-workflow');\n"
        "const stats = (await iris.evaluateOutput('x', 'y', 'incorrect')).stats;\n"
        "return { consensus, lineage, stats };",
    )
    assert after["consensus"]["tally"] == {"approve": 3, "reject": 0, "abstain": 0, "total": 3}
    assert after["consensus"]["status"] == "approved"
    assert [v["agentId"] for v in after["consensus"]["votes"]] == [
        "analyst",
        "optimizer",
        "validator",
    ]
    (entry,) = after["lineage"]["entries"]
    assert entry["input"]["agents"] == ["analyst", "validator", "optimizer"]
    assert [e["result"]["verdict"] for e in entry["input"]["evaluations"]] == ["correct"] * 3
    assert entry["output"] == {"consensusId": "workflow-42", "approved": True}
    assert after["stats"] == {
        "total": 4, "correct": 3, "partial": 0, "incorrect": 1, "accuracy": 0.75,
    }  # fmt: skip


def test_seed_example_3_prompt_evolution(server: LocalServer) -> None:
    key = server.create_key("seed-three")
    result = execute(server, key, SEED_EXAMPLE_3)["result"]
    assert result["success"], result
    assert result["output"] == "(no output)"
    after = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "return { v2: await iris.getPrompt('analysis-v2'), all: await iris.listPrompts(),\n"
        "  lineage: (await iris.getLineage('prompt-evolution')).entries.map(e => e.output) };",
    )
    assert after["v2"]["version"] == 1
    assert after["v2"]["template"] == "Deeply analyze {data} with focus on {aspect} and {context}"
    assert after["v2"]["variables"] == ["data", "aspect", "context"]
    assert [(p["name"], p["latestVersion"]) for p in after["all"]] == [
        ("analysis-v1", 1),
        ("analysis-v2", 1),
    ]
    assert after["lineage"] == [{"version": "v2", "improvement": "Added context parameter"}]


def test_seed_batch_operations(server: LocalServer) -> None:
    key = server.create_key("seed-batch")
    value = run_value(server, key, SEED_BATCH)
    assert value["patterns"] == []  # nothing recorded yet in this project
    assert value["prompt"] is None
    evaluation = value["evaluation"]
    assert (evaluation["verdict"], evaluation["score"]) == ("correct", 1)
    assert evaluation["stats"] == {
        "total": 1, "correct": 1, "partial": 0, "incorrect": 0, "accuracy": 1,
    }  # fmt: skip
    # Run again: the prompt now exists, the evaluation counts add up.
    save = "import { iris } from './iris-prime';\nawait iris.savePrompt('my-template', 'Hi {who}');"
    assert execute(server, key, save)["result"]["success"]
    again = run_value(server, key, SEED_BATCH)
    assert again["prompt"]["variables"] == ["who"]
    assert again["evaluation"]["stats"]["total"] == 2


def test_discover_patterns_finds_the_hand_computed_rules(server: LocalServer) -> None:
    key = server.create_key("patterns")
    sessions = {
        "s1": "await iris.logEvent('checkout', { plan: 'pro' }); await iris.logEvent('upgrade');",
        "s2": "await iris.logEvent('checkout', { plan: 'pro' }); await iris.logEvent('upgrade');",
        "s3": "await iris.logEvent('checkout', { plan: 'free' });",
        "s4": "await iris.logEvent('browse');",
        "s5": "await iris.logEvent('checkout', { plan: 'pro' }); await iris.logEvent('upgrade');"
        " await iris.evaluateOutput('q', 'a', 'correct');",
    }
    for session, body in sessions.items():
        code = f"import {{ iris }} from './iris-prime';\n{body}"
        assert execute(server, key, code, sessionId=session)["result"]["success"]
    found = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "return await iris.discoverPatterns({ minSupport: 0.6, minConfidence: 0.9, maxPatterns: 20 });",
    )
    pro, checkout, upgrade = "event:checkout.plan=pro", "event:checkout", "event:upgrade"
    expected = [
        ([checkout, pro], [upgrade], Fraction(5, 3)),
        ([checkout, upgrade], [pro], Fraction(5, 3)),
        ([pro], [checkout, upgrade], Fraction(5, 3)),
        ([pro], [upgrade], Fraction(5, 3)),
        ([upgrade], [checkout, pro], Fraction(5, 3)),
        ([upgrade], [pro], Fraction(5, 3)),
        ([pro], [checkout], Fraction(5, 4)),
        ([pro, upgrade], [checkout], Fraction(5, 4)),
        ([upgrade], [checkout], Fraction(5, 4)),
    ]
    assert [(p["antecedent"], p["consequent"]) for p in found] == [(a, c) for a, c, _ in expected]
    for pattern, (_, _, lift) in zip(found, expected, strict=True):
        assert pattern["support"] == 0.6
        assert pattern["confidence"] == 1
        assert pattern["count"] == 3
        assert pattern["lift"] == pytest.approx(float(lift), rel=1e-12)


def test_thresholds_outside_0_1_are_tool_errors(server: LocalServer) -> None:
    key = server.create_key("thresholds")
    value = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const errors = [];\n"
        "for (const options of [{ minSupport: 0 }, { minConfidence: 1.5 }, { maxPatterns: 0 }]) {\n"
        "  try { await iris.discoverPatterns(options); } catch (e) { errors.push([e.name, e.message]); }\n"
        "}\n"
        "return errors;",
    )
    assert [name for name, _ in value] == ["IrisToolError"] * 3
    assert "minSupport" in value[0][1] and "greater than 0" in value[0][1]
    assert "minConfidence" in value[1][1]
    assert "maxPatterns" in value[2][1]
    assert all("pydantic.dev" not in message for _, message in value)


def test_concurrent_saves_get_versions_1_and_2(server: LocalServer) -> None:
    key = server.create_key("versions")
    inside = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const saved = await Promise.all([iris.savePrompt('p', 'a'), iris.savePrompt('p', 'b')]);\n"
        "return saved.map(s => s.version).sort();",
    )
    assert inside == [1, 2]
    code = "import { iris } from './iris-prime';\nreturn (await iris.savePrompt('q', 'x {y}')).version;"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        versions = list(pool.map(lambda _: run_value(server, key, code), range(2)))
    assert sorted(versions) == [1, 2]


def test_voting_again_replaces_the_vote(server: LocalServer) -> None:
    key = server.create_key("votes")
    value = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const first = await iris.submitVote('release-7', 'agent-a', 'approve');\n"
        "const second = await iris.submitVote('release-7', 'agent-a', 'reject');\n"
        "const third = await iris.submitVote('release-7', 'agent-b', 'approve');\n"
        "return [first, second, third].map(v => [v.tally, v.status]);",
    )
    assert value == [
        [{"approve": 1, "reject": 0, "abstain": 0, "total": 1}, "approved"],
        [{"approve": 0, "reject": 1, "abstain": 0, "total": 1}, "rejected"],
        [{"approve": 1, "reject": 1, "abstain": 0, "total": 2}, "tied"],
    ]


def test_prompt_variable_rules(server: LocalServer) -> None:
    key = server.create_key("prompt-rules")
    value = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const out = [];\n"
        "for (const args of [['a', 'Hi {x}', ['y']], ['a', 'Hi {x} {z}', ['x']]]) {\n"
        "  try { await iris.savePrompt(...args); out.push('saved'); } catch (e) { out.push(e.message); }\n"
        "}\n"
        "out.push((await iris.savePrompt('a', 'Hi {x} and {x}')).variables);\n"
        "return out;",
    )
    assert "['y'] are declared but do not appear" in value[0]
    assert "{z}" in value[1] and "does not declare" in value[1]
    assert value[2] == ["x"]


def test_lineage_parent_must_be_this_projects(server: LocalServer) -> None:
    mine, theirs = server.create_key("lineage-a"), server.create_key("lineage-b")
    parent = run_value(
        server,
        mine,
        "import { iris } from './iris-prime';\nreturn (await iris.trackLineage('s', 1, 2)).id;",
    )
    child = run_value(
        server,
        mine,
        f"import {{ iris }} from './iris-prime';\nreturn await iris.trackLineage('s', 2, 3, {json.dumps(parent)});",
    )
    assert child["parentId"] == parent
    stolen = execute(
        server,
        theirs,
        f"import {{ iris }} from './iris-prime';\nawait iris.trackLineage('s', 2, 3, {json.dumps(parent)});",
    )["result"]
    assert stolen["error"]["name"] == "IrisToolError"
    assert "not a lineage id of this project" in stolen["error"]["message"]


def test_a_project_never_sees_another_projects_records(server: LocalServer) -> None:
    alice, bob = server.create_key("tenant-alice"), server.create_key("tenant-bob")
    setup = execute(
        server,
        alice,
        "import { iris } from './iris-prime';\n"
        "await iris.savePrompt('secret', 'alice only');\n"
        "await iris.submitVote('shared-name', 'a1', 'approve');\n"
        "await iris.recordMetric('latency', 5);\n"
        "await iris.trackLineage('sig', 'a', 'b');\n"
        "for (let i = 0; i < 3; i++) await iris.logEvent('alice-event');",
    )
    assert setup["result"]["success"], setup
    seen = run_value(
        server,
        bob,
        "import { iris } from './iris-prime';\n"
        "return { prompt: await iris.getPrompt('secret'), prompts: await iris.listPrompts(),\n"
        "  consensus: await iris.getConsensus('shared-name'), metrics: await iris.getMetrics('latency'),\n"
        "  lineage: await iris.getLineage('sig'),\n"
        "  patterns: await iris.discoverPatterns({ minSupport: 0.01, minConfidence: 0.01 }) };",
    )
    assert seen["prompt"] is None and seen["prompts"] == []
    assert seen["consensus"]["tally"]["total"] == 0
    assert seen["metrics"]["count"] == 0
    assert seen["lineage"]["entries"] == []
    assert seen["patterns"] == []


def test_metrics_statistics(server: LocalServer) -> None:
    key = server.create_key("metrics")
    value = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "for (const v of [10, 20, 30, 40, 50]) await iris.recordMetric('latency', v, { route: '/x' });\n"
        "const bad = [];\n"
        "for (const v of [NaN, Infinity]) { try { await iris.recordMetric('latency', v); } catch (e) { bad.push(e.name); } }\n"
        "try { await iris.recordMetric('latency', 1, { nested: { a: 1 } }); } catch (e) { bad.push(e.name); }\n"
        "return { stats: await iris.getMetrics('latency'), later: await iris.getMetrics('latency', { since: new Date(Date.now() + 60000) }), bad };",
    )
    assert value["stats"] == {
        "metric": "latency", "count": 5, "min": 10, "max": 50, "mean": 30, "p50": 30, "p95": 48,
        "sampled": 5,
    }  # fmt: skip
    assert value["later"]["count"] == 0
    assert value["bad"] == ["IrisToolError"] * 3


def test_many_concurrent_tool_calls(server: LocalServer) -> None:
    key = server.create_key("concurrency")
    value = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const results = await Promise.all(Array.from({ length: 200 }, (_, i) => iris.recordMetric('m', i)));\n"
        "const stats = await iris.getMetrics('m');\n"
        "return { ids: new Set(results.map(r => r.id)).size, count: stats.count, sum: stats.mean * stats.count };",
    )
    assert value == {"ids": 200, "count": 200, "sum": sum(range(200))}


def test_calls_left_running_finish_before_the_runner_closes(server: LocalServer) -> None:
    key = server.create_key("unawaited")
    # The code ends without awaiting, and without close(): the runner waits, then closes.
    execute(server, key, "import { iris } from './iris-prime';\niris.logEvent('fire-and-forget');")
    count = run_value(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const p = await iris.discoverPatterns({ minSupport: 0.01, minConfidence: 0.01 });\n"
        "await iris.close(); await iris.close();\n"
        "return (await iris.listPrompts()).length;",
    )
    assert count == 0  # calls after close() reconnect; close() twice is fine
    with sqlite3.connect(server.data_dir / "iris.db") as db:
        (n,) = db.execute(
            "SELECT COUNT(*) FROM tool_events WHERE project_id = 'unawaited'"
        ).fetchone()
    assert n == 1


def test_no_credential_is_visible_inside_the_sandbox(server: LocalServer) -> None:
    key = server.create_key("no-secrets")
    signing_key = (server.data_dir / "signing.key").read_text().strip()
    code = (
        "import fs from 'node:fs';\nimport path from 'node:path';\n"
        "import { iris } from './iris-prime';\n"
        "await iris.logEvent('connect first');\n"
        "const texts = [JSON.stringify(process.env)];\n"
        "const walk = (dir) => { let entries = []; try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }\n"
        "  for (const e of entries) { const p = path.join(dir, e.name);\n"
        "    if (e.isDirectory()) walk(p);\n"
        "    else if (e.isFile() && fs.statSync(p).size < 100000) { try { texts.push(fs.readFileSync(p, 'latin1')); } catch {} } } };\n"
        "for (const dir of ['/home', '/tmp', '/etc', '/opt', '/run']) walk(dir);\n"
        "for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {\n"
        "  for (const f of ['cmdline', 'environ']) { try { texts.push(fs.readFileSync(`/proc/${pid}/${f}`, 'latin1')); } catch {} } }\n"
        "return { files: texts.length, blob: Buffer.from(texts.join('\\n')).toString('base64') };"
    )
    value = run_value(server, key, code)
    import base64

    blob = base64.b64decode(value["blob"]).decode("latin-1")
    assert value["files"] > 5  # it did read the sandbox's files
    assert key not in blob
    assert signing_key not in blob
    assert "sk_live_" not in blob
    assert "canary-secret" not in blob


async def _external_client(url: str, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
        saved = await session.call_tool("savePrompt", {"name": "ext", "template": "Hi {who}"})
        fetched = await session.call_tool("getPrompt", {"name": "ext"})
        vote = {"consensusId": "c", "agentId": "a", "vote": "maybe"}
        wrong = await session.call_tool("submitVote", vote)
        return {
            "tools": sorted(t.name for t in tools.tools),
            "saved": saved.structured_content,
            "fetched": fetched.structured_content,
            "wrong": (
                wrong.is_error,
                [c.text for c in wrong.content if isinstance(c, TextContent)],
            ),
        }


def test_an_external_mcp_client_uses_the_tools_with_a_project_key(server: LocalServer) -> None:
    key = server.create_key("external")
    seen = asyncio.run(_external_client(server.url + "/mcp", key))
    assert seen["tools"] == sorted(
        [
            "discoverPatterns", "evaluateOutput", "submitVote", "getConsensus", "logEvent",
            "savePrompt", "getPrompt", "listPrompts", "trackLineage", "getLineage",
            "recordMetric", "getMetrics",
            # With a project key, code execution too (tests/integration/test_mcp_agents.py).
            "executeCode", "getSandbox", "closeSandbox", "getExecution",
        ]
    )  # fmt: skip
    assert seen["saved"]["version"] == 1 and seen["saved"]["variables"] == ["who"]
    assert seen["fetched"]["prompt"]["template"] == "Hi {who}"
    assert seen["wrong"][0] is True
    assert seen["wrong"][1] == [
        "invalid arguments: vote: Input should be 'approve', 'reject' or 'abstain'"
    ]  # plain words: no pydantic error codes, echoed input or documentation links
    # The same project sees it from a sandbox; another project does not.
    code = "import { iris } from './iris-prime';\nreturn await iris.getPrompt('ext');"
    assert run_value(server, key, code)["template"] == "Hi {who}"
    assert run_value(server, server.create_key("not-external"), code) is None


def test_mcp_without_a_valid_credential_is_401(server: LocalServer) -> None:
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=server.url) as client:
        for auth in (None, "Bearer sk_live_" + "a" * 43, "Bearer iet_forged.token"):
            sent = {**headers, **({"Authorization": auth} if auth else {})}
            response = client.post("/mcp", json=body, headers=sent)
            assert response.status_code == 401
            assert response.json()["statusCode"] == 401


def test_tool_results_are_values_not_strings(server: LocalServer) -> None:
    key = server.create_key("shapes")
    result = execute(
        server,
        key,
        "import { iris } from './iris-prime';\n"
        "const e = await iris.logEvent('x', { a: [1, 2] });\n"
        "return { id: e.id.startsWith('evt_'), ts: typeof e.timestamp, m: await iris.recordMetric('m', 1.5, { k: 'v' }) };",
    )["result"]
    value = result_value(result)
    assert value["id"] is True and value["ts"] == "string"
    assert value["m"]["value"] == 1.5 and value["m"]["tags"] == {"k": "v"}
