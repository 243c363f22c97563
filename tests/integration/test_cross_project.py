"""Generated cross-project isolation on a real local server.

Several projects, several sandboxes each (created through the API), then (key, sandbox) pairs
where the sandbox is another project's, picked with a seeded random.Random: GET, DELETE and
execute-with-sandboxId must each be the same 404 as for an unknown id, byte for byte but for
the timestamp and request id. IRIS tool records written by each project are invisible to every
other through every read tool, from a sandbox and from /mcp."""

from __future__ import annotations

import concurrent.futures
import json
import random
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.api import result_value
from tests.support.server import LocalServer

PROJECTS = [f"tenant-{name}" for name in ("amber", "birch", "cedar", "dune", "ember", "fjord")]
SANDBOXES_EACH = 4
PAIRS = 110
SEED = 20261126
#: Headers whose values legitimately differ between two answers.
VOLATILE_HEADERS = {"date", "x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset"}
ID_CHARS = string.ascii_letters + string.digits


@dataclass
class Project:
    name: str
    index: int
    key: str
    sandboxes: list[str] = field(default_factory=list)
    lineage_id: str = ""


@dataclass
class World:
    server: LocalServer
    projects: list[Project]

    def client(self, project: Project) -> httpx.Client:
        return self.server.client(project.key)


def execute(world: World, project: Project, code: str, **fields: Any) -> dict[str, Any]:
    with world.client(project) as client:
        response = client.post("/api/iris/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text[:500]
    answer: dict[str, Any] = response.json()
    assert answer["result"]["success"], answer["result"]
    return answer


def write_records(world: World, project: Project) -> None:
    """Prompts, votes, metrics, lineage, events and an evaluation, under names every project
    also uses ("shared-...") and names only this one uses ("only-...")."""
    p, i = project.name, project.index
    code = (
        "import { iris } from './iris-prime';\n"
        f"await iris.savePrompt('shared-prompt', 'Prompt of {{who}} in {p}');\n"
        f"await iris.savePrompt('only-{p}', 'mine');\n"
        f"await iris.submitVote('shared-consensus', 'agent-{p}', '{'approve' if i % 2 else 'reject'}');\n"
        f"await iris.recordMetric('shared-metric', {i + 1});\n"
        f"await iris.recordMetric('only-metric-{p}', 1);\n"
        f"const lineage = await iris.trackLineage('shared-sig', {{ project: '{p}' }}, {i});\n"
        f"await iris.trackLineage('only-sig-{p}', 1, 2);\n"
        f"await iris.logEvent('event-{p}', {{ owner: '{p}' }});\n"
        "await iris.logEvent('shared-event');\n"
        "await iris.evaluateOutput('in', 'out', 'correct');\n"
        "return lineage.id;"
    )
    answer = execute(world, project, code, sessionId=f"session-{p}")
    project.lineage_id = result_value(answer["result"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("cross-project") / "data"
    with LocalServer(data, rate_limit_per_minute=100_000) as server:
        projects = [Project(name, i, server.create_key(name)) for i, name in enumerate(PROJECTS)]
        world = World(server, projects)

        def create(project: Project) -> str:
            code = f"import fs from 'fs'; fs.writeFileSync('owner.txt', '{project.name}');"
            return str(execute(world, project, code)["sandboxId"])

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            jobs = [(p, pool.submit(create, p)) for p in projects for _ in range(SANDBOXES_EACH)]
            for project, job in jobs:
                project.sandboxes.append(job.result())
            list(pool.map(lambda p: write_records(world, p), projects))
        yield world


def unknown_like(sandbox_id: str, rng: random.Random) -> str:
    """A well-formed id of the same length that no sandbox has."""
    return "sb_" + "".join(rng.choice(ID_CHARS) for _ in range(len(sandbox_id) - 3))


def request(client: httpx.Client, operation: str, sandbox_id: str) -> httpx.Response:
    if operation == "GET":
        return client.get("/api/iris/sandbox", params={"sandboxId": sandbox_id})
    if operation == "DELETE":
        return client.delete("/api/iris/sandbox", params={"sandboxId": sandbox_id})
    code = "import fs from 'fs'; fs.writeFileSync('pwned.txt', 'x'); return 'ran';"
    return client.post("/api/iris/execute", json={"code": code, "sandboxId": sandbox_id})


def fingerprint(response: httpx.Response, sandbox_id: str) -> tuple[int, str, list[Any]]:
    """Status, body with the id, timestamp and request id blanked, and the stable headers."""
    text = response.text.replace(sandbox_id, "<ID>")
    text = re.sub(r'"(timestamp|requestId)":\s*"[^"]*"', r'"\1":"-"', text)
    headers = sorted(
        (name, "-" if name in VOLATILE_HEADERS else value)
        for name, value in response.headers.items()
    )
    return response.status_code, text, headers


def differences(world: World, pairs: list[tuple[Project, str]], rng: random.Random) -> list[str]:
    """Every (key, foreign sandbox) request whose answer differs from the unknown-id one."""
    found = []
    for project, sandbox_id in pairs:
        with world.client(project) as client:
            for operation in ("GET", "DELETE", "EXECUTE"):
                foreign = request(client, operation, sandbox_id)
                unknown_id = unknown_like(sandbox_id, rng)
                unknown = request(client, operation, unknown_id)
                assert unknown.status_code == 404, unknown.text
                if fingerprint(foreign, sandbox_id) != fingerprint(unknown, unknown_id):
                    found.append(f"{project.name} {operation} {sandbox_id}: {foreign.text[:200]}")
    return found


def foreign_pairs(world: World, owners: list[Project]) -> list[tuple[Project, str]]:
    return [
        (caller, sandbox_id)
        for caller in world.projects
        for owner in owners
        if owner is not caller
        for sandbox_id in owner.sandboxes
    ]


def describe(world: World, project: Project, sandbox_id: str) -> dict[str, Any]:
    with world.client(project) as client:
        response = client.get("/api/iris/sandbox", params={"sandboxId": sandbox_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_another_projects_sandbox_is_the_same_404_as_an_unknown_id(world: World) -> None:
    rng = random.Random(SEED)
    candidates = foreign_pairs(world, world.projects)
    pairs = rng.sample(candidates, PAIRS)
    assert len(pairs) >= 100
    before = {s: describe(world, p, s) for p in world.projects for s in p.sandboxes}

    assert differences(world, pairs, rng) == []

    # Nothing happened to any sandbox: alive, untouched (lastUsedAt), no file written.
    for project in world.projects:
        for sandbox_id in project.sandboxes:
            now = describe(world, project, sandbox_id)
            assert (now["active"], now["status"]) == (True, "running")
            assert now["lastUsedAt"] == before[sandbox_id]["lastUsedAt"]
        listing = "import fs from 'fs'; return [fs.readdirSync('.'), fs.readFileSync('owner.txt', 'utf8')];"
        for sandbox_id in project.sandboxes:
            seen = result_value(execute(world, project, listing, sandboxId=sandbox_id)["result"])
            assert seen == [["owner.txt"], project.name]


def test_delete_all_closes_only_the_callers_sandboxes_and_closed_ones_stay_404_to_others(
    world: World,
) -> None:
    closer = Project("tenant-closer", len(world.projects), world.server.create_key("tenant-closer"))
    for _ in range(3):
        closer.sandboxes.append(str(execute(world, closer, "1")["sandboxId"]))
    with world.client(closer) as client:
        response = client.delete("/api/iris/sandbox", params={"all": "true"})
    assert response.status_code == 200
    assert response.json()["closed"] == 3
    for sandbox_id in closer.sandboxes:
        assert describe(world, closer, sandbox_id)["status"] == "closed"
    for project in world.projects:
        for sandbox_id in project.sandboxes:
            assert describe(world, project, sandbox_id)["active"] is True
    # Closed, another project's: still the unknown-id 404 (a 410 would tell it existed).
    rng = random.Random(SEED + 1)
    assert differences(world, foreign_pairs(world, [closer]), rng) == []


# ---- tool records --------------------------------------------------------------------------


def mcp_call(world: World, project: Project, tool: str, arguments: dict[str, Any]) -> Any:
    """One tools/call at /mcp with the project's key: the structured result, or the error."""
    response = httpx.post(
        world.server.url + "/mcp",
        headers={
            "Authorization": f"Bearer {project.key}",
            "Accept": "application/json, text/event-stream",
        },
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    if result["isError"]:
        return {"error": result["content"][0]["text"]}
    return result["structuredContent"]


def view_through_mcp(world: World, project: Project) -> dict[str, Any]:
    others = [p for p in world.projects if p is not project]

    def call(tool: str, **arguments: Any) -> Any:
        return mcp_call(world, project, tool, arguments)

    patterns = call("discoverPatterns", minSupport=0.01, minConfidence=0.01, maxPatterns=100)
    return {
        "prompt": call("getPrompt", name="shared-prompt")["prompt"],
        "prompts": call("listPrompts")["prompts"],
        "othersPrompts": [call("getPrompt", name=f"only-{q.name}")["prompt"] for q in others],
        "consensus": call("getConsensus", consensusId="shared-consensus"),
        "metrics": call("getMetrics", metric="shared-metric"),
        "othersMetrics": [call("getMetrics", metric=f"only-metric-{q.name}") for q in others],
        "lineage": call("getLineage", signature="shared-sig"),
        "othersLineage": [call("getLineage", signature=f"only-sig-{q.name}") for q in others],
        "parents": [
            call("trackLineage", signature="s", input=1, output=2, parentId=q.lineage_id)["error"]
            for q in others
        ],
        "patterns": patterns["patterns"],
        "transactions": patterns["transactions"],
    }


def view_from_a_sandbox(world: World, project: Project) -> dict[str, Any]:
    others = json.dumps([{"name": q.name, "lineage": q.lineage_id} for q in world.projects
                         if q is not project])  # fmt: skip
    code = (
        "import { iris } from './iris-prime';\n"
        f"const others = {others};\n"
        "const parents = [];\n"
        "for (const q of others) {\n"
        "  try { await iris.trackLineage('s', 1, 2, q.lineage); parents.push('linked'); }\n"
        "  catch (e) { parents.push(e.name + ': ' + e.message); }\n"
        "}\n"
        "return {\n"
        "  prompt: await iris.getPrompt('shared-prompt'),\n"
        "  prompts: await iris.listPrompts(),\n"
        "  othersPrompts: await Promise.all(others.map((q) => iris.getPrompt('only-' + q.name))),\n"
        "  consensus: await iris.getConsensus('shared-consensus'),\n"
        "  metrics: await iris.getMetrics('shared-metric'),\n"
        "  othersMetrics: await Promise.all(others.map((q) => iris.getMetrics('only-metric-' + q.name))),\n"
        "  lineage: await iris.getLineage('shared-sig'),\n"
        "  othersLineage: await Promise.all(others.map((q) => iris.getLineage('only-sig-' + q.name))),\n"
        "  parents,\n"
        "  patterns: await iris.discoverPatterns({ minSupport: 0.01, minConfidence: 0.01, maxPatterns: 100 }),\n"
        "};"
    )
    value: dict[str, Any] = result_value(execute(world, project, code)["result"])
    return value


def check_view(world: World, project: Project, view: dict[str, Any]) -> None:
    """What the project sees is its own records only."""
    p, i = project.name, project.index
    assert view["prompt"]["template"] == f"Prompt of {{who}} in {p}"
    assert view["prompt"]["version"] == 1  # not 6: the other projects' saves are not versions
    assert sorted(x["name"] for x in view["prompts"]) == sorted([f"only-{p}", "shared-prompt"])
    assert view["othersPrompts"] == [None] * (len(world.projects) - 1)
    assert [v["agentId"] for v in view["consensus"]["votes"]] == [f"agent-{p}"]
    assert view["consensus"]["tally"]["total"] == 1
    assert (view["metrics"]["count"], view["metrics"]["mean"]) == (1, i + 1)
    assert [m["count"] for m in view["othersMetrics"]] == [0] * (len(world.projects) - 1)
    (entry,) = view["lineage"]["entries"]
    assert entry["input"] == {"project": p}
    assert all(seen["entries"] == [] for seen in view["othersLineage"])
    for error in view["parents"]:
        assert "is not a lineage id of this project" in error, error
    items = {item for pattern in view["patterns"] for part in ("antecedent", "consequent")
             for item in pattern[part]}  # fmt: skip
    assert items, "the project's own records give patterns"
    assert items <= {
        f"event:event-{p}",
        f"event:event-{p}.owner={p}",
        "event:shared-event",
        "verdict:correct",
        "vote:approve" if i % 2 else "vote:reject",
        "metric:shared-metric",
        f"metric:only-metric-{p}",
    }, items


@pytest.mark.parametrize("channel", ["mcp", "sandbox"])
def test_tool_records_are_invisible_to_every_other_project(world: World, channel: str) -> None:
    for project in world.projects:
        if channel == "mcp":
            view = view_through_mcp(world, project)
            # One session of its own; the other projects' sessions are not transactions here.
            assert view["transactions"] == 1
        else:
            view = view_from_a_sandbox(world, project)
        check_view(world, project, view)
