"""Asynchronous execution rules, with a movable clock, a fake provider and fake workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from iris_exec.composition import Services
from iris_exec.domain.errors import Gone, NotFound, ServiceUnavailable
from iris_exec.domain.models import Principal, SandboxStatus
from iris_exec.services.commands import ExecuteCommand
from iris_exec.services.sandboxes import LEASE_GRACE_S
from tests.support.app import fake_container
from tests.support.fakes import FakeProvider, MovableClock

pytestmark = pytest.mark.anyio
ALPHA = Principal("alpha", "key_a")


class Dispatcher:
    """Remembers what it was asked to start; can refuse, as an unavailable Lambda does."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    def dispatch(self, project_id: str, execution_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.started.append((project_id, execution_id))


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture
def container(
    tmp_path: Path, provider: FakeProvider, clock: MovableClock, dispatcher: Dispatcher
) -> Services:
    built = fake_container(tmp_path, provider, clock, execution_heartbeat_s=10)
    built.background.dispatcher = dispatcher
    return built


def command(code: str = "return 1", sandbox_id: str | None = None) -> ExecuteCommand:
    return ExecuteCommand(
        code=code, language="typescript", timeout_s=30, sandbox_id=sandbox_id, background=True
    )


async def test_submit_records_the_execution_and_starts_one_worker(
    container: Services, dispatcher: Dispatcher
) -> None:
    queued = (await container.background.submit(ALPHA, command())).wire()
    assert queued["status"] == "queued"
    assert dispatcher.started == [("alpha", queued["executionId"])]
    # The sandbox is leased to this execution from the start: nobody else can take it.
    record = container.adapters.registry.get("alpha", queued["sandboxId"])
    assert record is not None and record.lease_id is not None
    assert await container.background.work("alpha", queued["executionId"]) == "succeeded"
    # A second delivery of the same event does nothing.
    assert await container.background.work("alpha", queued["executionId"]) is None
    body = container.background.describe(ALPHA, queued["executionId"]).wire()
    assert body["status"] == "succeeded" and body["logs"] == ["[stdout] return 1"]
    record = container.adapters.registry.get("alpha", queued["sandboxId"])
    assert record is not None and record.lease_id is None  # given back


async def test_a_worker_that_cannot_start_leaves_nothing_behind(
    container: Services, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    dispatcher.fail = ServiceUnavailable("the worker function is unavailable", retry_after_s=5)
    with pytest.raises(ServiceUnavailable):
        await container.background.submit(ALPHA, command())
    # The sandbox made for it is closed, and no execution waits forever.
    assert provider.alive == set()
    assert container.adapters.registry.list_live("alpha", container.clock()) == []
    assert container.background.store.list_stale(float("inf"), 10) == []


async def test_an_existing_sandbox_given_back_when_the_worker_cannot_start(
    container: Services, dispatcher: Dispatcher, provider: FakeProvider
) -> None:
    first = (await container.executions.execute(ALPHA, command())).wire()
    dispatcher.fail = ServiceUnavailable("no", retry_after_s=5)
    with pytest.raises(ServiceUnavailable):
        await container.background.submit(ALPHA, command(sandbox_id=first["sandboxId"]))
    record = container.adapters.registry.get("alpha", first["sandboxId"])
    assert record is not None and record.status is SandboxStatus.RUNNING
    assert record.lease_id is None  # free for the next request


async def test_a_worker_that_stops_beating_is_declared_dead_once(
    container: Services, clock: MovableClock
) -> None:
    queued = (await container.background.submit(ALPHA, command())).wire()
    store = container.background.store
    store.start("alpha", queued["executionId"], started_at=clock(), alive_until=clock() + 30)
    clock.advance(29)
    assert container.background.describe(ALPHA, queued["executionId"]).wire()["status"] == "running"
    assert container.background.sweep() == 0
    clock.advance(2)
    assert container.background.sweep() == 1
    assert container.background.sweep() == 0
    body = container.background.describe(ALPHA, queued["executionId"]).wire()
    assert body["status"] == "failed" and "worker stopped" in body["reason"]


async def test_a_worker_declared_dead_stops_its_run(
    container: Services, clock: MovableClock, provider: FakeProvider, tmp_path: Path
) -> None:
    """If the worker was only slow, it finds out at its next beat and gives up the run
    rather than overwrite the ending everyone has already seen."""
    fast = fake_container(
        tmp_path / "fast", provider, clock, execution_heartbeat_s=0.05, execution_log_flush_s=0.01
    )
    fast.background.dispatcher = Dispatcher()
    provider.run_delay = 5.0
    queued = (await fast.background.submit(ALPHA, command())).wire()
    worker = asyncio.create_task(fast.background.work("alpha", queued["executionId"]))
    await asyncio.sleep(0.1)
    clock.advance(3600)  # every sign of life is now far in the past
    assert fast.background.sweep() == 1
    assert await asyncio.wait_for(worker, 2) is None  # it stopped instead of finishing
    body = fast.background.describe(ALPHA, queued["executionId"]).wire()
    assert body["status"] == "failed" and "worker stopped" in body["reason"]


async def test_the_worker_records_why_the_infrastructure_failed(
    container: Services, provider: FakeProvider
) -> None:
    queued = (await container.background.submit(ALPHA, command())).wire()
    provider.alive.clear()  # the sandbox died between the 202 and the worker
    assert await container.background.work("alpha", queued["executionId"]) == "failed"
    body = container.background.describe(ALPHA, queued["executionId"]).wire()
    assert body["success"] is False and "result" not in body
    assert queued["sandboxId"] in body["reason"]


async def test_a_queued_execution_waits_for_its_busy_sandbox(
    container: Services, provider: FakeProvider
) -> None:
    first = (await container.background.submit(ALPHA, command("return 1"))).wire()
    second = (
        await container.background.submit(ALPHA, command("return 2", first["sandboxId"]))
    ).wire()
    record = container.background.store.get("alpha", second["executionId"])
    assert record is not None and record.lease_id == ""  # it will lease the sandbox itself
    later = asyncio.create_task(container.background.work("alpha", second["executionId"]))
    await asyncio.sleep(0.05)
    assert not later.done()  # waiting for the first to give the sandbox back
    assert await container.background.work("alpha", first["executionId"]) == "succeeded"
    assert await asyncio.wait_for(later, 5) == "succeeded"


async def test_a_lease_lost_while_queued_fails_clearly(
    container: Services, clock: MovableClock
) -> None:
    queued = (await container.background.submit(ALPHA, command())).wire()
    clock.advance(30 + LEASE_GRACE_S + 1)  # the worker came far too late: the lease lapsed
    await container.executions.execute(ALPHA, command(sandbox_id=queued["sandboxId"]))
    assert await container.background.work("alpha", queued["executionId"]) == "failed"
    body = container.background.describe(ALPHA, queued["executionId"]).wire()
    assert "given to another execution" in body["reason"]


async def test_unknown_and_foreign_executions_are_404(container: Services) -> None:
    queued = (await container.background.submit(ALPHA, command())).wire()
    with pytest.raises(NotFound):
        container.background.describe(Principal("beta", "key_b"), queued["executionId"])
    with pytest.raises(NotFound):
        container.background.describe(ALPHA, "ex_0000000000000000")


async def test_a_closed_sandbox_is_410_at_submit(container: Services) -> None:
    first = (await container.executions.execute(ALPHA, command())).wire()
    await container.sandboxes.close(ALPHA, first["sandboxId"])
    with pytest.raises(Gone):
        await container.background.submit(ALPHA, command(sandbox_id=first["sandboxId"]))
