"""ExecutionStore contract (asynchronous executions), against SQLite and DynamoDB Local."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from iris_exec.domain.models import ExecutionEnd, ExecutionRecord, ExecutionStatus
from iris_exec.domain.ports import ExecutionStore

NOW = 1_800_000_000.0


def record(n: int = 1, project: str = "p1", **changes: object) -> ExecutionRecord:
    base = ExecutionRecord(
        execution_id=f"ex_{n:016d}",
        project_id=project,
        sandbox_id="sb_0000000000000001",
        status="queued",
        request={"code": "return 1", "language": "typescript", "timeoutS": 30.0, "context": {}},
        lease_id="ls_1",
        sandbox_created=True,
        created_at=NOW,
        alive_until=NOW + 120,
        actor="key_a",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_record_round_trips_and_is_private_to_its_project(
    execution_store: ExecutionStore,
) -> None:
    execution_store.create(record())
    assert execution_store.get("p1", record().execution_id) == record()
    assert execution_store.get("p2", record().execution_id) is None
    assert execution_store.get("p1", "ex_0000000000000404") is None


def test_an_execution_starts_beats_and_ends_once(execution_store: ExecutionStore) -> None:
    ex = record()
    execution_store.create(ex)
    assert execution_store.start("p1", ex.execution_id, started_at=NOW + 1, alive_until=NOW + 31)
    # A second delivery of the same worker event finds it no longer queued.
    assert not execution_store.start(
        "p1", ex.execution_id, started_at=NOW + 2, alive_until=NOW + 32
    )
    # Another project cannot touch it.
    assert not execution_store.beat("p2", ex.execution_id, alive_until=NOW + 99)
    assert not execution_store.finish("p2", ex.execution_id, ExecutionEnd("failed", NOW))
    assert execution_store.beat("p1", ex.execution_id, alive_until=NOW + 41)
    answer = {"success": True, "output": "=== Results ===\n1", "logs": ["[stdout] hi"]}
    done = ExecutionEnd("succeeded", NOW + 5, result=answer, log_lines=1)
    assert execution_store.finish("p1", ex.execution_id, done)
    got = execution_store.get("p1", ex.execution_id)
    assert got == replace(
        ex,
        status="succeeded",
        started_at=NOW + 1,
        alive_until=NOW + 41,
        finished_at=NOW + 5,
        result=answer,
        log_lines=1,
    )
    # Ended is ended: a late heartbeat or a late "declared dead" changes nothing.
    assert not execution_store.beat("p1", ex.execution_id, alive_until=NOW + 99)
    assert not execution_store.finish(
        "p1", ex.execution_id, ExecutionEnd("failed", NOW + 6, reason="x")
    )
    assert execution_store.get("p1", ex.execution_id) == got


def test_an_ending_without_a_count_keeps_the_log_lines_stored(
    execution_store: ExecutionStore,
) -> None:
    ex = record(log_lines=7)
    execution_store.create(ex)
    assert execution_store.finish("p1", ex.execution_id, ExecutionEnd("failed", NOW, reason="x"))
    got = execution_store.get("p1", ex.execution_id)
    assert got is not None and got.log_lines == 7 and got.reason == "x"


def test_an_execution_cannot_end_unfinished() -> None:
    with pytest.raises(ValueError, match="cannot end running"):
        ExecutionEnd("running", NOW)


def test_declaring_dead_needs_the_signs_of_life_to_have_stopped(
    execution_store: ExecutionStore,
) -> None:
    ex = record(alive_until=NOW + 30)
    execution_store.create(ex)
    dead = ExecutionEnd("failed", NOW + 40, reason="worker stopped")
    assert not execution_store.finish("p1", ex.execution_id, dead, alive_before=NOW + 29)
    assert execution_store.finish("p1", ex.execution_id, dead, alive_before=NOW + 31)
    got = execution_store.get("p1", ex.execution_id)
    assert got is not None and got.status == "failed" and got.reason == "worker stopped"
    assert got.result is None


def test_stale_executions_are_listed_oldest_first_until_they_end(
    execution_store: ExecutionStore,
) -> None:
    for n, alive in ((1, NOW + 10), (2, NOW + 5), (3, NOW + 100)):
        execution_store.create(record(n, alive_until=alive))
    execution_store.create(record(4, project="p2", alive_until=NOW + 1))
    stale = execution_store.list_stale(NOW + 50, 10)
    assert [r.execution_id for r in stale] == [record(n).execution_id for n in (4, 2, 1)]
    assert len(execution_store.list_stale(NOW + 50, 2)) == 2
    execution_store.finish("p1", record(2).execution_id, ExecutionEnd("timed_out", NOW + 60))
    assert [r.execution_id for r in execution_store.list_stale(float("inf"), 10)] == [
        record(n).execution_id for n in (4, 1, 3)
    ]


def test_log_lines_read_back_by_cursor(execution_store: ExecutionStore) -> None:
    ex = record()
    execution_store.create(ex)
    execution_store.append_logs("p1", ex.execution_id, 0, ["[stdout] a", "[stdout] b"])
    execution_store.append_logs("p1", ex.execution_id, 2, ["[stderr] c"])
    execution_store.append_logs("p1", ex.execution_id, 2, ["[stderr] c"])  # a retried flush
    execution_store.append_logs("p1", ex.execution_id, 3, ["[stdout] d", "[stdout] e"])
    read = execution_store.logs
    assert read("p1", ex.execution_id, 0, 100) == [
        "[stdout] a", "[stdout] b", "[stderr] c", "[stdout] d", "[stdout] e"
    ]  # fmt: skip
    assert read("p1", ex.execution_id, 1, 2) == ["[stdout] b", "[stderr] c"]
    assert read("p1", ex.execution_id, 3, 100) == ["[stdout] d", "[stdout] e"]
    assert read("p1", ex.execution_id, 5, 100) == []
    assert read("p2", ex.execution_id, 0, 100) == []  # another project's execution


def test_large_output_is_kept_whole(execution_store: ExecutionStore) -> None:
    """A DynamoDB item holds 400 KB; one line alone may be the whole 1 MiB of output."""
    ex = record()
    execution_store.create(ex)
    huge = "[stdout] " + "é" * 600_000  # 1.2 MB of UTF-8 in one line
    lines = [huge, *(f"[stdout] {i}" for i in range(20_000))]
    execution_store.append_logs("p1", ex.execution_id, 0, lines)
    answer = {"success": True, "output": huge, "logs": lines}
    execution_store.finish("p1", ex.execution_id, ExecutionEnd("succeeded", NOW, result=answer))
    got = execution_store.get("p1", ex.execution_id)
    assert got is not None and got.result == answer
    assert execution_store.logs("p1", ex.execution_id, 0, 100_000) == lines


def test_concurrent_enders_agree_on_one_ending(execution_store: ExecutionStore) -> None:
    ex = record(alive_until=NOW)
    execution_store.create(ex)
    wins: list[str] = []

    def end(status: ExecutionStatus) -> None:
        end = ExecutionEnd(status, NOW, reason=status)
        if execution_store.finish("p1", ex.execution_id, end):
            wins.append(status)

    threads = [threading.Thread(target=end, args=(s,)) for s in ["failed", "succeeded"] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    got = execution_store.get("p1", ex.execution_id)
    assert got is not None and got.status == wins[0]


def test_purge_drops_only_finished_executions(execution_store: ExecutionStore) -> None:
    execution_store.create(record(1))
    execution_store.create(record(2))
    execution_store.finish("p1", record(2).execution_id, ExecutionEnd("succeeded", NOW))
    purged = execution_store.purge(NOW + 10)
    if purged:  # SQLite purges; DynamoDB leaves it to its TTL (and says 0)
        assert execution_store.get("p1", record(2).execution_id) is None
    assert execution_store.get("p1", record(1).execution_id) is not None


def test_many_short_lines_read_by_cursor_across_chunks(execution_store: ExecutionStore) -> None:
    """Lines are kept in chunks: a cursor anywhere, a page of any size, reads the same lines
    as one row per line did, whatever the tags (or a line that has none)."""
    ex = record()
    execution_store.create(ex)
    lines = [
        ("[stdout] " if i % 3 else "[stderr] ") + ("" if i % 2 else str(i)) for i in range(9000)
    ]
    lines[4500] = "no tag at all: = o e"
    execution_store.append_logs("p1", ex.execution_id, 0, lines[:6000])
    execution_store.append_logs("p1", ex.execution_id, 6000, lines[6000:])
    read = execution_store.logs
    assert read("p1", ex.execution_id, 0, 10_000) == lines
    for after, limit in [(1, 5), (4095, 3), (4096, 1), (4499, 2), (5998, 4), (8990, 100)]:
        assert read("p1", ex.execution_id, after, limit) == lines[after : after + limit]
    assert read("p1", ex.execution_id, 9000, 10) == []
    assert read("p2", ex.execution_id, 4000, 10) == []
