"""ToolStore contract, against SQLite and a real PostgreSQL server (schema applied by psql)."""

from __future__ import annotations

import threading
import uuid

import pytest

from iris_exec.domain.ports import ToolStore
from iris_exec.domain.tools import LineageEntry, MetricSummary, ToolCaller
from tests.contract.conftest import ToolStores


@pytest.fixture
def project() -> str:
    """A project of its own per test: the PostgreSQL server is shared by the session."""
    return f"p-{uuid.uuid4().hex[:12]}"


def test_evaluations_return_the_projects_running_totals(
    tool_store: ToolStore, project: str
) -> None:
    caller = ToolCaller(project, "s1", "ex_1")
    tool_store.add_evaluation(caller, f"{project}-e1", "in", "out", "correct", 1.0, 10.0)
    stats = tool_store.add_evaluation(caller, f"{project}-e2", "in", "out", "partial", 0.5, 11.0)
    assert (stats.total, stats.correct, stats.partial, stats.incorrect) == (2, 1, 1, 0)
    assert stats.score_sum == 1.5
    other = tool_store.add_evaluation(
        ToolCaller(project + "-other"), f"{project}-e3", "i", "o", "incorrect", 0.0, 12.0
    )
    assert other.total == 1  # another project's evaluations never count


def test_a_second_vote_by_the_same_agent_replaces_the_first(
    tool_store: ToolStore, project: str
) -> None:
    caller = ToolCaller(project)
    tool_store.put_vote(caller, "c1", "a1", "approve", 1.0)
    tool_store.put_vote(caller, "c1", "a2", "approve", 2.0)
    tally = tool_store.put_vote(caller, "c1", "a1", "reject", 3.0)
    assert (tally.approve, tally.reject, tally.abstain) == (1, 1, 0)
    votes, _ = tool_store.get_votes(project, "c1", 10)
    assert [(v.agent_id, v.vote) for v in votes] == [("a1", "reject"), ("a2", "approve")]
    listed, counted = tool_store.get_votes(project, "c1", 1)  # the list is capped, not the tally
    assert [v.agent_id for v in listed] == ["a1"] and counted == tally
    other, none = tool_store.get_votes(project + "-other", "c1", 10)
    assert other == [] and (none.approve, none.reject, none.abstain) == (0, 0, 0)


def test_prompt_versions_count_per_name(tool_store: ToolStore, project: str) -> None:
    first = tool_store.save_prompt(project, "greet", "Hi {name}", ["name"], 1.0)
    second = tool_store.save_prompt(project, "greet", "Hello {name}", ["name"], 2.0)
    other = tool_store.save_prompt(project, "other", "x", [], 3.0)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    latest = tool_store.get_prompt(project, "greet", None)
    assert latest is not None
    assert (latest.version, latest.template, latest.variables) == (2, "Hello {name}", ["name"])
    assert tool_store.get_prompt(project, "greet", 1).template == "Hi {name}"  # type: ignore[union-attr]
    assert tool_store.get_prompt(project, "greet", 3) is None
    assert tool_store.get_prompt(project + "-other", "greet", None) is None
    listed = tool_store.list_prompts(project, None, 10)
    assert [(p.name, p.latest_version) for p in listed] == [("greet", 2), ("other", 1)]
    assert [p.name for p in tool_store.list_prompts(project, None, 1)] == ["greet"]
    assert [p.name for p in tool_store.list_prompts(project, "greet", 10)] == ["other"]


def test_concurrent_saves_get_distinct_versions(tool_stores: ToolStores, project: str) -> None:
    stores = [tool_stores.new() for _ in range(6)]
    versions: list[int] = []
    barrier = threading.Barrier(len(stores))
    lock = threading.Lock()

    def save(store: ToolStore) -> None:
        barrier.wait()
        for _ in range(5):
            saved = store.save_prompt(project, "race", "t", [], 1.0)
            with lock:
                versions.append(saved.version)

    threads = [threading.Thread(target=save, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 31))


def test_lineage_parents_must_exist_in_the_project(tool_store: ToolStore, project: str) -> None:
    assert tool_store.add_lineage(project, f"{project}-l1", "sig", None, {"a": 1}, [1, 2], 1.0)
    assert tool_store.add_lineage(project, f"{project}-l2", "sig", f"{project}-l1", "x", None, 2.0)
    assert not tool_store.add_lineage(project, f"{project}-l3", "sig", "missing", 1, 2, 3.0)
    assert not tool_store.add_lineage(
        project + "-other", f"{project}-l4", "sig", f"{project}-l1", 1, 2, 4.0
    )
    assert tool_store.get_lineage(project, "sig", None, 10, 1 << 20) == (
        [
            LineageEntry(f"{project}-l1", "sig", None, {"a": 1}, [1, 2], 1.0),
            LineageEntry(f"{project}-l2", "sig", f"{project}-l1", "x", None, 2.0),
        ],
        False,
    )
    assert tool_store.get_lineage(project + "-other", "sig", None, 10, 1 << 20) == ([], False)


def test_lineage_pages_by_rows_and_by_bytes(tool_store: ToolStore, project: str) -> None:
    """A page stops at its row limit, or once its entries add up to the byte limit (the
    first entry always comes), and says whether more follow."""
    big = "x" * 5000
    for i in range(5):
        tool_store.add_lineage(project, f"{project}-{i}", "sig", None, big, i, 1.0)  # same time
    read = tool_store.get_lineage
    page, more = read(project, "sig", None, 2, 1 << 20)  # type: ignore[misc]
    assert [e.output for e in page] == [0, 1] and more
    page, more = read(project, "sig", f"{project}-1", 10, 1 << 20)  # type: ignore[misc]
    assert [e.output for e in page] == [2, 3, 4] and not more
    page, more = read(project, "sig", None, 10, 12_000)  # type: ignore[misc]
    assert [e.output for e in page] == [0, 1, 2] and more  # the third one crosses 12 000
    page, more = read(project, "sig", None, 10, 10)  # type: ignore[misc]
    assert [e.output for e in page] == [0] and more
    assert read(project, "sig", "missing", 10, 1 << 20) is None
    assert read(project + "-other", "sig", f"{project}-1", 10, 1 << 20) is None


def test_storage_is_charged_up_to_the_quota(tool_store: ToolStore, project: str) -> None:
    assert tool_store.charge(project, 600, 1000) == 600
    assert tool_store.charge(project, 500, 1000) is None  # would pass it: nothing added
    assert tool_store.charge(project, 400, 1000) == 1000
    assert tool_store.charge(project, 1, 1000) is None
    assert tool_store.charge(project + "-other", 1000, 1000) == 1000  # its own quota
    assert tool_store.charge(project + "-big", 1001, 1000) is None


def test_metric_summary_since(tool_store: ToolStore, project: str) -> None:
    caller = ToolCaller(project)
    for i, value in enumerate([3.0, 1.0, 2.0]):
        tool_store.add_metric(caller, f"{project}-m{i}", "latency", value, {"k": "v"}, 10.0 + i)
    everything = tool_store.metric_summary(project, "latency", None, 10)
    assert everything == MetricSummary(3, 1.0, 3.0, 6.0, [2.0, 1.0, 3.0])  # newest first
    assert tool_store.metric_summary(project, "latency", 11.0, 10) == MetricSummary(
        2, 1.0, 2.0, 3.0, [2.0, 1.0]
    )
    # The aggregates are exact; only the sample of recent values is capped.
    assert tool_store.metric_summary(project, "latency", None, 1) == MetricSummary(
        3, 1.0, 3.0, 6.0, [2.0]
    )
    assert tool_store.metric_summary(project, "other", None, 10).count == 0


def test_mining_records_group_by_session_then_execution(
    tool_store: ToolStore, project: str
) -> None:
    in_session = ToolCaller(project, "s1", "ex_1")
    no_session = ToolCaller(project, None, "ex_2")
    outside = ToolCaller(project)
    tool_store.add_event(in_session, f"{project}-ev1", "login", {"plan": "pro"}, 1.0)
    tool_store.add_evaluation(in_session, f"{project}-ev2", "i", "o", "correct", 1.0, 2.0)
    tool_store.put_vote(no_session, "c1", "a1", "approve", 3.0)
    tool_store.add_metric(no_session, f"{project}-ev3", "latency", 1.0, {}, 4.0)
    tool_store.add_event(outside, f"{project}-ev4", "ping", {}, 5.0)
    records = tool_store.mining_records(project, 100, 1 << 20)
    seen = {(r.transaction, r.kind, r.name) for r in records}
    assert seen == {
        ("s1", "event", "login"),
        ("s1", "evaluation", "correct"),
        ("ex_2", "vote", "approve"),
        ("ex_2", "metric", "latency"),
        (f"{project}-ev4", "event", "ping"),
    }
    login = next(r for r in records if r.name == "login")
    assert login.metadata == {"plan": "pro"}
    assert [r.name for r in tool_store.mining_records(project, 2, 1 << 20)] == ["ping", "latency"]
    assert tool_store.mining_records(project + "-other", 100, 1 << 20) == []
    # Metadata counts against a byte budget: the newest records that fit it.
    assert [r.name for r in tool_store.mining_records(project, 100, 2)] == [
        "ping", "latency", "approve", "correct"
    ]  # fmt: skip
