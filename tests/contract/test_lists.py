"""The console's lists (SandboxRegistry.list_recent, ExecutionStore.list_recent): newest
first, filtered, a page at a time, one project's only; against SQLite and DynamoDB Local."""

from __future__ import annotations

from dataclasses import replace

from iris_exec.domain.models import ExecutionEnd, GoneReason, Position
from iris_exec.domain.ports import ExecutionStore, SandboxRegistry
from tests.contract.test_execution_store import record as execution
from tests.contract.test_registry import NOW
from tests.contract.test_registry import record as sandbox


def _all_pages(read: object, limit: int) -> list[list[str]]:
    """Every page's ids, following the positions the store hands back."""
    pages: list[list[str]] = []
    before: Position | None = None
    for _ in range(20):
        ids, before = read(limit, before)  # type: ignore[operator]
        pages.append(ids)
        if before is None:
            return pages
    raise AssertionError("the pages never end")


def test_sandboxes_newest_first_a_page_at_a_time(registry: SandboxRegistry) -> None:
    for i in range(7):
        registry.create(sandbox(f"sb_proj1_{i:03d}", created_at=NOW + i))
    registry.create(sandbox("sb_other_001", project="p2", created_at=NOW + 100))
    registry.mark_gone("p1", "sb_proj1_002", GoneReason.CLOSED, NOW + 50)

    def read(limit: int, before: Position | None) -> tuple[list[str], Position | None]:
        records, following = registry.list_recent("p1", None, limit, before)
        return [r.sandbox_id for r in records], following

    pages = _all_pages(read, 3)
    assert pages == [
        ["sb_proj1_006", "sb_proj1_005", "sb_proj1_004"],
        ["sb_proj1_003", "sb_proj1_002", "sb_proj1_001"],
        ["sb_proj1_000"],
    ]
    closed, following = registry.list_recent("p1", "closed", 10, None)
    assert [r.sandbox_id for r in closed] == ["sb_proj1_002"] and following is None
    assert closed[0].closed_reason is GoneReason.CLOSED
    assert registry.list_recent("p3", None, 10, None) == ([], None)


def test_sandboxes_of_one_creation_time_each_come_once(registry: SandboxRegistry) -> None:
    for i in range(4):
        registry.create(sandbox(f"sb_same_{i:04d}"))

    def read(limit: int, before: Position | None) -> tuple[list[str], Position | None]:
        records, following = registry.list_recent("p1", "running", limit, before)
        return [r.sandbox_id for r in records], following

    flat = [i for page in _all_pages(read, 2) for i in page]
    # DynamoDB orders equal sort keys its own way: each comes once, none is lost.
    assert sorted(flat) == [f"sb_same_{i:04d}" for i in range(4)]


def test_executions_newest_first_filtered_and_private(execution_store: ExecutionStore) -> None:
    for i in range(5):
        execution_store.create(
            execution(i + 1, created_at=NOW + i, sandbox_id=f"sb_{'ab'[i % 2] * 16}")
        )
    execution_store.create(execution(99, project="p2", created_at=NOW + 10))
    answer = {"success": True, "executionTime": 41, "logs": []}
    done = ExecutionEnd("succeeded", NOW + 20, result=answer)
    assert execution_store.finish("p1", execution(3).execution_id, done)

    def read(limit: int, before: Position | None) -> tuple[list[str], Position | None]:
        records, following = execution_store.list_recent(
            "p1", sandbox_id=None, status=None, limit=limit, before=before
        )
        return [r.execution_id[-2:] for r in records], following

    assert _all_pages(read, 2) == [["05", "04"], ["03", "02"], ["01"]]

    records, following = execution_store.list_recent(
        "p1", sandbox_id="sb_" + "a" * 16, status=None, limit=10, before=None
    )
    assert [r.execution_id[-2:] for r in records] == ["05", "03", "01"] and following is None
    records, _ = execution_store.list_recent(
        "p1", sandbox_id=None, status="succeeded", limit=10, before=None
    )
    assert len(records) == 1
    # Lists carry the code's run time without the whole answer.
    assert replace(records[0], result=None) == records[0] and records[0].execution_ms == 41
    assert records[0].request["code"] == "return 1"
    records, _ = execution_store.list_recent(
        "p2", sandbox_id=None, status=None, limit=10, before=None
    )
    assert [r.execution_id[-2:] for r in records] == ["99"]


def test_a_filtered_page_is_full_even_when_most_rows_do_not_match(
    execution_store: ExecutionStore,
) -> None:
    for i in range(12):
        execution_store.create(execution(i + 1, created_at=NOW + i))
    for n in (2, 9):
        assert execution_store.finish(
            "p1", execution(n).execution_id, ExecutionEnd("failed", NOW + 30, reason="x")
        )
    records, following = execution_store.list_recent(
        "p1", sandbox_id=None, status="failed", limit=2, before=None
    )
    assert [r.execution_id[-2:] for r in records] == ["09", "02"]
    if following is not None:  # a store may not know yet that nothing follows
        rest, _ = execution_store.list_recent(
            "p1", sandbox_id=None, status="failed", limit=2, before=following
        )
        assert rest == []
