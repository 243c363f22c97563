"""SandboxRegistry contract: scoped reads, conditional writes, atomic leases."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from iris_exec.domain.errors import AlreadyExists
from iris_exec.domain.models import GoneReason, SandboxRecord, SandboxStatus
from iris_exec.domain.ports import SandboxRegistry

NOW = 1_800_000_000.0


def record(
    sandbox_id: str = "sb_aaaaaaaa", project: str = "p1", **changes: object
) -> SandboxRecord:
    base = SandboxRecord(
        sandbox_id=sandbox_id,
        project_id=project,
        provider="local",
        provider_ref="jl_1",
        status=SandboxStatus.RUNNING,
        created_at=NOW,
        last_used_at=NOW,
        expires_at=NOW + 300,
        lifetime_deadline=NOW + 3600,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_create_then_get_round_trips(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.get("p1", "sb_aaaaaaaa") == record()


def test_create_twice_is_refused(registry: SandboxRegistry) -> None:
    registry.create(record())
    with pytest.raises(AlreadyExists):
        registry.create(record(project="p2"))


def test_reads_are_scoped_to_the_project(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.get("p2", "sb_aaaaaaaa") is None
    assert registry.list_live("p2", NOW) == []
    assert not registry.acquire_lease("p2", "sb_aaaaaaaa", "ls_x", NOW + 10, NOW)
    assert not registry.mark_gone("p2", "sb_aaaaaaaa", GoneReason.CLOSED, NOW)
    assert registry.get("p1", "sb_aaaaaaaa") == record()


def test_live_means_running_and_not_past_the_deadline(registry: SandboxRegistry) -> None:
    registry.create(record("sb_live0001", last_used_at=NOW - 10))
    registry.create(record("sb_old00001", expires_at=NOW - 1))
    registry.create(record("sb_closed01"))
    registry.mark_gone("p1", "sb_closed01", GoneReason.CLOSED, NOW)
    registry.create(record("sb_busyold1", expires_at=NOW - 1))
    assert registry.acquire_lease("p1", "sb_busyold1", "ls_1", NOW + 60, NOW - 5)
    live = [r.sandbox_id for r in registry.list_live("p1", NOW)]
    assert sorted(live) == ["sb_busyold1", "sb_live0001"]


def test_only_one_of_many_concurrent_leases_wins(registry: SandboxRegistry) -> None:
    registry.create(record())
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def take(i: int) -> None:
        barrier.wait()
        if registry.acquire_lease("p1", "sb_aaaaaaaa", f"ls_{i}", NOW + 60, NOW):
            winners.append(f"ls_{i}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert registry.get("p1", "sb_aaaaaaaa").lease_id == winners[0]  # type: ignore[union-attr]


def test_an_expired_lease_can_be_taken_over(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_crashed", NOW + 30, NOW)
    assert not registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_new", NOW + 90, NOW + 29)
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_new", NOW + 90, NOW + 31)


def test_release_only_by_the_holder_and_records_use(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_mine", NOW + 30, NOW)
    registry.release_lease("p1", "sb_aaaaaaaa", "ls_other", NOW + 5, NOW + 305)
    assert registry.get("p1", "sb_aaaaaaaa").lease_id == "ls_mine"  # type: ignore[union-attr]
    registry.release_lease("p1", "sb_aaaaaaaa", "ls_mine", NOW + 5, NOW + 305)
    after = registry.get("p1", "sb_aaaaaaaa")
    assert after is not None
    assert after.lease_id is None and after.executions == 1
    assert after.last_used_at == NOW + 5 and after.expires_at == NOW + 305


def test_release_never_extends_past_the_lifetime(registry: SandboxRegistry) -> None:
    registry.create(record(lifetime_deadline=NOW + 100))
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 30, NOW)
    registry.release_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 5, NOW + 305)
    assert registry.get("p1", "sb_aaaaaaaa").expires_at == NOW + 100  # type: ignore[union-attr]


def test_mark_gone_is_final_and_keeps_the_reason(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.mark_gone("p1", "sb_aaaaaaaa", GoneReason.EVICTED, NOW + 1, "quota")
    assert not registry.mark_gone("p1", "sb_aaaaaaaa", GoneReason.FAILED, NOW + 2)
    gone = registry.get("p1", "sb_aaaaaaaa")
    assert gone is not None
    assert gone.status is SandboxStatus.CLOSED
    assert gone.closed_reason is GoneReason.EVICTED
    assert gone.closed_at == NOW + 1 and gone.detail == "quota"
    assert not registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 30, NOW + 3)


def test_mark_gone_only_if_idle_spares_a_busy_sandbox(registry: SandboxRegistry) -> None:
    registry.create(record())
    assert registry.acquire_lease("p1", "sb_aaaaaaaa", "ls_1", NOW + 30, NOW)
    assert not registry.mark_gone(
        "p1", "sb_aaaaaaaa", GoneReason.EVICTED, NOW + 1, only_if_idle=True
    )
    assert registry.mark_gone("p1", "sb_aaaaaaaa", GoneReason.EVICTED, NOW + 31, only_if_idle=True)


def test_due_lists_idle_expired_sandboxes_of_every_project(registry: SandboxRegistry) -> None:
    registry.create(record("sb_due00001", expires_at=NOW - 1))
    registry.create(record("sb_due00002", project="p2", expires_at=NOW - 2))
    registry.create(record("sb_notdue01", expires_at=NOW + 1))
    registry.create(record("sb_busy0001", expires_at=NOW - 1))
    assert registry.acquire_lease("p1", "sb_busy0001", "ls_1", NOW + 30, NOW - 5)
    due = [r.sandbox_id for r in registry.list_due(NOW, limit=10)]
    assert due == ["sb_due00002", "sb_due00001"]
    assert [r.sandbox_id for r in registry.list_running("local")] != []
