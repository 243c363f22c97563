"""AuditLog and IdempotencyStore contracts, against SQLite and DynamoDB Local (the latter
through Powertools' idempotency persistence layer)."""

from __future__ import annotations

import json
import random
import string
import threading
import time

from iris_exec.domain.models import AuditEvent
from iris_exec.domain.ports import AuditLog, IdempotencyStore


def event(n: int, project: str = "p1", at: float = 1_800_000_000.0) -> AuditEvent:
    return AuditEvent(
        event_id=f"au_{n:04d}",
        project_id=project,
        at=at + n,
        kind="execution" if n % 2 else "sandbox.created",
        actor="key_a",
        sandbox_id="sb_1",
        execution_id=f"ex_{n}" if n % 2 else None,
        duration_ms=12.5 if n % 2 else None,
        outcome="ok" if n % 2 else None,
        output_bytes=7 if n % 2 else None,
        detail=None if n % 2 else "created",
    )


def test_the_trail_reads_back_newest_first_per_project(audit_log: AuditLog) -> None:
    for n in range(1, 8):
        audit_log.record(event(n))
    audit_log.record(event(100, project="p2"))
    got = audit_log.query("p1", None, None, 100)
    assert [e.event_id for e in got] == [f"au_{n:04d}" for n in range(7, 0, -1)]
    assert got[0] == event(7)  # every field round-trips
    assert audit_log.query("p1", None, None, 3) == [event(7), event(6), event(5)]
    assert [e.event_id for e in audit_log.query("p2", None, None, 10)] == ["au_0100"]
    assert audit_log.query("p3", None, None, 10) == []


def test_the_trail_filters_by_time(audit_log: AuditLog) -> None:
    for n in range(1, 8):
        audit_log.record(event(n))
    base = 1_800_000_000.0
    got = audit_log.query("p1", base + 3, base + 5, 100)
    assert [e.event_id for e in got] == ["au_0005", "au_0004", "au_0003"]


def test_a_key_is_claimed_once(idempotency_store: IdempotencyStore) -> None:
    now = time.time()
    assert idempotency_store.begin("p1:k", "fp1", now, 60) is None
    taken = idempotency_store.begin("p1:k", "fp1", now, 60)
    assert taken is not None and taken.state == "in_progress"
    other = idempotency_store.begin("p1:k", "fp2", now, 60)
    assert other is not None and other.state == "mismatch"
    assert idempotency_store.begin("p2:k", "fp1", now, 60) is None  # another key


def test_a_completed_key_replays_its_answer(idempotency_store: IdempotencyStore) -> None:
    now = time.time()
    assert idempotency_store.begin("p1:done", "fp", now, 60) is None
    answer = {"success": True, "result": {"output": "=== Results ===\n1"}, "sandboxId": "sb_x"}
    idempotency_store.complete("p1:done", "fp", answer, now)
    hit = idempotency_store.begin("p1:done", "fp", now + 1, 60)
    assert hit is not None and hit.state == "completed" and hit.response == answer
    mismatch = idempotency_store.begin("p1:done", "other", now + 1, 60)
    assert mismatch is not None and mismatch.state == "mismatch"


def test_the_largest_answer_is_stored_and_replayed_whole(
    idempotency_store: IdempotencyStore,
) -> None:
    """An answer at the output cap is several MB of JSON (output and logs), far above
    DynamoDB's 400 KB item limit; random text does not compress below it either."""
    now = time.time()
    rng = random.Random(7)
    lines = ["".join(rng.choices(string.printable, k=60)) for _ in range(17_000)]
    answer = {
        "success": True,
        "result": {"output": "\n".join(lines), "logs": [f"[stdout] {x}" for x in lines]},
        "sandboxId": "sb_big",
    }
    assert len(json.dumps(answer)) > 2_000_000
    assert idempotency_store.begin("p1:big", "fp", now, 60) is None
    idempotency_store.complete("p1:big", "fp", answer, now)
    hit = idempotency_store.begin("p1:big", "fp", now + 1, 60)
    assert hit is not None and hit.state == "completed" and hit.response == answer


def test_a_released_key_can_run_again(idempotency_store: IdempotencyStore) -> None:
    now = time.time()
    assert idempotency_store.begin("p1:failed", "fp", now, 60) is None
    idempotency_store.release("p1:failed", "fp")
    assert idempotency_store.begin("p1:failed", "fp", now, 60) is None


def test_the_claim_of_a_dead_worker_expires(idempotency_store: IdempotencyStore) -> None:
    now = time.time()
    assert idempotency_store.begin("p1:crashed", "fp", now, 1) is None
    time.sleep(1.2)
    assert idempotency_store.begin("p1:crashed", "fp", time.time(), 60) is None


def test_concurrent_claims_have_one_winner(idempotency_store: IdempotencyStore) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        if idempotency_store.begin("p1:race", "fp", time.time(), 60) is None:
            winners.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
