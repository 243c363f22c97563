"""Sandbox lifecycle rules, with a movable clock and a fake provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from iris_exec.composition import Services
from iris_exec.domain.errors import (
    Conflict,
    Gone,
    NotFound,
    ProviderUnavailable,
    ServiceUnavailable,
    TooManyRequests,
)
from iris_exec.domain.models import Principal
from iris_exec.services.commands import ExecuteCommand
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio
ALPHA = Principal("alpha", "key_a")
BETA = Principal("beta", "key_b")


@pytest.fixture
def container(tmp_path: Path, provider: FakeProvider, clock: MovableClock) -> Services:
    return fake_container(
        tmp_path, provider, clock, max_sandboxes_per_project=2, sandbox_idle_timeout_s=300
    )


def command(sandbox_id: str | None = None, wait: bool = True) -> ExecuteCommand:
    return ExecuteCommand(
        code="1", language="typescript", timeout_s=10, sandbox_id=sandbox_id, wait=wait
    )


async def run(container: Services, who: Principal = ALPHA, sandbox_id: str | None = None) -> str:
    answer = (await container.executions.execute(who, command(sandbox_id))).wire()
    sandbox: str = answer["sandboxId"]
    return sandbox


async def test_idle_sandbox_is_reaped_after_its_idle_timeout(
    container: Services, clock: MovableClock, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    clock.advance(299)
    assert await container.sandboxes.reap() == 0
    clock.advance(2)
    assert await container.sandboxes.reap() == 1
    assert provider.alive == set()
    with pytest.raises(Gone) as gone:
        await run(container, sandbox_id=sandbox)
    assert gone.value.reason == "expired"


async def test_use_pushes_the_idle_deadline_but_not_past_max_lifetime(
    container: Services, clock: MovableClock
) -> None:
    sandbox = await run(container)
    for _ in range(12):  # 12 x 299 s = just under an hour of steady use
        clock.advance(299)
        await run(container, sandbox_id=sandbox)
    assert await container.sandboxes.reap() == 0
    clock.advance(300)
    assert await container.sandboxes.reap() == 1
    status = (await container.sandboxes.describe(ALPHA, sandbox)).wire()
    assert status["status"] == "expired" and status["active"] is False


async def test_an_expired_sandbox_is_gone_even_before_the_reaper_runs(
    container: Services, clock: MovableClock
) -> None:
    sandbox = await run(container)
    clock.advance(301)
    status = (await container.sandboxes.describe(ALPHA, sandbox)).wire()
    assert status["active"] is False and status["reason"] == "expired"


async def test_quota_evicts_least_recently_used(container: Services, clock: MovableClock) -> None:
    first = await run(container)
    clock.advance(1)
    second = await run(container)
    clock.advance(1)
    await run(container, sandbox_id=first)
    clock.advance(1)
    await run(container)
    with pytest.raises(Gone) as gone:
        await run(container, sandbox_id=second)
    assert gone.value.reason == "evicted"
    await run(container, sandbox_id=first)


async def test_quota_is_per_project(container: Services) -> None:
    for _ in range(2):
        await run(container, ALPHA)
    beta = [await run(container, BETA) for _ in range(2)]
    for sandbox in beta:
        assert (await container.sandboxes.describe(BETA, sandbox)).wire()["active"]


async def test_all_busy_at_quota_is_429(container: Services, provider: FakeProvider) -> None:
    provider.run_delay = 0.3
    busy = [asyncio.create_task(run(container)) for _ in range(2)]
    await asyncio.sleep(0.1)
    with pytest.raises(TooManyRequests):
        await run(container)
    await asyncio.gather(*busy)


async def test_busy_sandbox_without_wait_is_409(
    container: Services, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    provider.run_delay = 0.3
    holder = asyncio.create_task(run(container, sandbox_id=sandbox))
    await asyncio.sleep(0.1)
    with pytest.raises(Conflict):
        await container.executions.execute(ALPHA, command(sandbox, wait=False))
    provider.run_delay = 0
    assert await run(container, sandbox_id=sandbox) == sandbox  # waits for the holder
    await holder


async def test_lease_of_a_crashed_holder_expires(container: Services, clock: MovableClock) -> None:
    sandbox = await run(container)
    assert container.adapters.registry.acquire_lease(
        "alpha", sandbox, "ls_crashed", clock() + 40, clock()
    )
    with pytest.raises(Conflict):
        await container.executions.execute(ALPHA, command(sandbox, wait=False))
    clock.advance(41)
    assert await run(container, sandbox_id=sandbox) == sandbox


async def test_sandbox_lost_behind_our_back_is_410_failed(
    container: Services, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    provider.alive.clear()
    with pytest.raises(Gone) as gone:
        await run(container, sandbox_id=sandbox)
    assert gone.value.reason == "failed"
    assert (await container.sandboxes.describe(ALPHA, sandbox)).wire()["status"] == "failed"


async def test_provider_failing_on_create_leaves_nothing_behind(
    container: Services, provider: FakeProvider
) -> None:
    provider.fail_create = ProviderUnavailable("E2B is down", retry_after_s=7)
    with pytest.raises(ServiceUnavailable) as unavailable:
        await run(container)
    assert unavailable.value.headers["Retry-After"] == "7"
    assert container.adapters.registry.list_live("alpha", 2e9) == []


async def test_provider_failing_on_run_releases_the_lease(
    container: Services, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    provider.fail_run = ProviderUnavailable("busy")
    with pytest.raises(ServiceUnavailable):
        await run(container, sandbox_id=sandbox)
    provider.fail_run = None
    assert await run(container, sandbox_id=sandbox) == sandbox


async def test_reconcile_marks_lost_sandboxes_failed(
    container: Services, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    provider.alive.clear()
    assert await container.sandboxes.reconcile() == 1
    assert (await container.sandboxes.describe(ALPHA, sandbox)).wire()["status"] == "failed"


async def test_other_projects_get_not_found(container: Services) -> None:
    sandbox = await run(container)
    with pytest.raises(NotFound):
        await container.sandboxes.describe(BETA, sandbox)
    with pytest.raises(NotFound):
        await container.sandboxes.close(BETA, sandbox)
    with pytest.raises(NotFound):
        await run(container, BETA, sandbox)
    assert await container.sandboxes.close_all(BETA) == 0
    assert (await container.sandboxes.describe(ALPHA, sandbox)).wire()["active"]


async def test_a_provider_failing_to_kill_leaves_an_orphan_that_reconcile_stops(
    container: Services, provider: FakeProvider
) -> None:
    sandbox = await run(container)
    provider.fail_kill = ProviderUnavailable("E2B is down")
    await container.sandboxes.close(ALPHA, sandbox)  # still answered: the registry says closed
    assert (await container.sandboxes.describe(ALPHA, sandbox)).wire()["status"] == "closed"
    assert len(provider.alive) == 1  # but the provider still runs it
    await container.sandboxes.reconcile()  # the provider is still failing: nothing lost
    provider.fail_kill = None
    assert await container.sandboxes.reconcile() == 1
    assert provider.alive == set()


async def test_lifecycle_changes_are_audited_with_who_did_them(
    container: Services, clock: MovableClock
) -> None:
    kept = await run(container)
    closed = await run(container)
    await container.sandboxes.close(ALPHA, closed)
    clock.advance(301)
    await container.sandboxes.reap()
    trail = container.audit.query(ALPHA, None, None, 50).wire()["events"]
    by_kind = [(e["kind"], e["sandboxId"], e["actor"]) for e in trail if e["kind"] != "execution"]
    assert ("sandbox.created", kept, "key_a") in by_kind
    assert ("sandbox.closed", closed, "key_a") in by_kind
    assert ("sandbox.expired", kept, "system") in by_kind
    assert sum(1 for e in trail if e["kind"] == "execution") == 2
